//! A message received from the broker.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

/// One `MESSAGE`: the channel it was published on and the payload as raw JSON text,
/// exactly as the publisher wrote it.
///
/// ```
/// use pubsub::Message;
///
/// // A frame as the broker writes it (the client's reader thread does this).
/// let m: Message = serde_json::from_str(
///     r#"{"command":"MESSAGE","channel":"news","message":{"score":1.0,"tags":["a"]}}"#,
/// )?;
/// assert_eq!(m.channel, "news");
/// assert_eq!(m.raw(), r#"{"score":1.0,"tags":["a"]}"#); // 1.0 stays 1.0
/// #[derive(serde::Deserialize)]
/// struct News { score: f64, tags: Vec<String> }
/// let news: News = m.json()?;
/// assert_eq!((news.score, news.tags.len()), (1.0, 1));
///
/// let s: Message = serde_json::from_str(r#"{"command":"MESSAGE","channel":"c","message":"hi"}"#)?;
/// assert_eq!((s.text(), s.raw()), ("hi".to_string(), r#""hi""#));
/// # Ok::<(), serde_json::Error>(())
/// ```
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
