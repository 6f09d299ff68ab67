//! The client library's error type.

use crate::protocol::ErrorCode;

/// Everything that can go wrong talking to a broker.
///
/// [`ClientError::code`] classifies what the broker said, whether it answered a call
/// (`Broker`) or closed the connection (`Closed` with the reason it sent last):
///
/// ```
/// use pubsub::protocol::ErrorCode;
/// use pubsub::ClientError;
///
/// // What a client refused at the broker's --max-connections sees.
/// let refused = ClientError::Closed {
///     reason: Some(Box::new(ClientError::Broker {
///         code: "limit".into(),
///         message: "too many connections".into(),
///     })),
/// };
/// assert_eq!(refused.code(), Some(ErrorCode::Limit));
/// assert_eq!(
///     refused.to_string(),
///     "connection closed: broker error limit: too many connections"
/// );
/// // Closed without a word (the broker went away): no code.
/// assert_eq!(ClientError::Closed { reason: None }.code(), None);
/// // Whether the broker closes the connection after an error depends on its code.
/// assert!(ErrorCode::FrameTooLarge.is_fatal() && !ErrorCode::BadChannel.is_fatal());
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The broker answered with an `ERROR` frame.
    #[error("broker error {code}: {message}")]
    Broker {
        /// The error code (`bad_channel`, `unauthorized`, ...).
        code: String,
        /// The broker's explanation.
        message: String,
    },
    /// The connection is closed; `reason` says why when the broker said so.
    #[error("connection closed{}", .reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed {
        /// The broker's final error, if it sent one.
        reason: Option<Box<ClientError>>,
    },
    /// No reply within the client's timeout.
    #[error("timed out waiting for the broker")]
    Timeout,
    /// The broker sent something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A message could not be serialised to JSON.
    #[error("cannot encode message as JSON: {0}")]
    Encode(#[from] serde_json::Error),
    /// The channel name breaks the channel rules (checked before sending).
    #[error("bad channel: {0}")]
    BadChannel(#[from] crate::protocol::ChannelError),
}

impl ClientError {
    /// The broker's error code, when this is an `ERROR` from the broker (directly or as
    /// the reason the connection closed).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Broker { code, .. } => ErrorCode::from_wire(code),
            ClientError::Closed { reason: Some(r) } => r.code(),
            _ => None,
        }
    }
}
