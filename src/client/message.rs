//! A message received from the broker.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

/// One `MESSAGE`: the channel it was published on and the payload as raw JSON text,
/// exactly as the publisher wrote it.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// The channel the message was published on.
    pub channel: String,
    #[serde(rename = "message")]
    payload: Box<RawValue>,
}

impl Message {
    /// The payload's JSON text, byte for byte as published.
    pub fn raw(&self) -> &str {
        self.payload.get()
    }

    /// The payload decoded into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.payload.get())
    }

    /// The payload as text: the string itself for a JSON string, else the JSON text.
    pub fn text(&self) -> String {
        match serde_json::from_str::<String>(self.payload.get()) {
            Ok(s) => s,
            Err(_) => self.payload.get().to_string(),
        }
    }
}
