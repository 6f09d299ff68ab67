//! Error codes of protocol v1: the `code` field of an `ERROR` frame.
//!
//! Owns the closed list of codes and whether each one ends the connection. It must
//! never grow a code that is not documented in `docs/protocol.md`.

/// The `code` of an `ERROR` frame. The set is part of the wire contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The line is not JSON, or not UTF-8.
    BadJson,
    /// The JSON is not an object, or has no string `command`.
    BadFrame,
    /// `command` names no known command.
    UnknownCommand,
    /// A required field is missing or has the wrong type.
    BadField,
    /// A channel name breaks the channel rules.
    BadChannel,
    /// The frame is longer than `--max-frame`; the connection is closed.
    FrameTooLarge,
    /// Authentication failed or was missing; the connection is closed.
    Unauthorized,
    /// The connection's unsent output exceeded `--max-pending`; it is closed.
    SlowConsumer,
    /// A configured limit was reached (connections, subscriptions).
    Limit,
    /// An unfinished frame made no progress for `--frame-timeout`, or was dropped
    /// because the broker is over `--max-memory`; the connection is closed.
    Stale,
    /// Broker-only: a federation link was refused (a link to itself, a duplicate
    /// broker name); the connection is closed.
    LinkRefused,
}

impl ErrorCode {
    /// The code as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::BadField => "bad_field",
            ErrorCode::BadChannel => "bad_channel",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::Limit => "limit",
            ErrorCode::Stale => "stale",
            ErrorCode::LinkRefused => "link_refused",
        }
    }

    /// Parses a wire code; `None` for a code this version does not know.
    pub fn from_wire(code: &str) -> Option<ErrorCode> {
        Some(match code {
            "bad_json" => ErrorCode::BadJson,
            "bad_frame" => ErrorCode::BadFrame,
            "unknown_command" => ErrorCode::UnknownCommand,
            "bad_field" => ErrorCode::BadField,
            "bad_channel" => ErrorCode::BadChannel,
            "frame_too_large" => ErrorCode::FrameTooLarge,
            "unauthorized" => ErrorCode::Unauthorized,
            "slow_consumer" => ErrorCode::SlowConsumer,
            "limit" => ErrorCode::Limit,
            "stale" => ErrorCode::Stale,
            "link_refused" => ErrorCode::LinkRefused,
            _ => return None,
        })
    }

    /// Whether the broker closes the connection after sending this error.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorCode::FrameTooLarge
                | ErrorCode::Unauthorized
                | ErrorCode::SlowConsumer
                | ErrorCode::Stale
                | ErrorCode::LinkRefused
        )
    }

    /// Every code, for counters and tests.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::BadJson,
        ErrorCode::BadFrame,
        ErrorCode::UnknownCommand,
        ErrorCode::BadField,
        ErrorCode::BadChannel,
        ErrorCode::FrameTooLarge,
        ErrorCode::Unauthorized,
        ErrorCode::SlowConsumer,
        ErrorCode::Limit,
        ErrorCode::Stale,
        ErrorCode::LinkRefused,
    ];
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_wire(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::from_wire("nope"), None);
    }
}
