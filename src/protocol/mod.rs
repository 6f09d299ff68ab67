//! Protocol v1: the wire format between clients and the broker.
//!
//! Owns framing (splitting a byte stream into `\n`-terminated lines), parsing a line
//! into a borrowed [`Frame`], channel-name rules, and encoding every frame the broker
//! writes. It never touches sockets, connections or the subscription index: it turns
//! bytes into values and values into bytes, nothing more. See `docs/protocol.md`.

mod block;
mod channel;
mod encode;
mod error;
mod json;
mod link;
mod parse;
mod scan;

pub use channel::{is_plain, validate_pattern, validate_publish, ChannelError, MAX_CHANNEL_LEN};
pub use encode::{
    encode_error, encode_message, encode_message_bytes, encode_pong, encode_published,
    encode_subscription, encode_welcome, message_len, write_json_str, Welcome,
};
pub use error::ErrorCode;
pub use link::{
    encode_interest, encode_link_hello, encode_no_interest, encode_route, encode_route_head,
    validate_name, NameError, Path, LINK_ENVELOPE, MAX_HOPS, MAX_NAME_LEN,
};
pub use parse::{
    parse_frame, parse_link_frame, parse_publish, Command, Frame, FrameError, Hello, Publish, Raw,
    RoutePayload,
};
pub use scan::{scan_frame, Scan};

/// Default maximum frame length in bytes, newline excluded (1 MiB, as NATS's
/// `max_payload`): large enough for real payloads, small enough that one client cannot
/// make the broker buffer an unbounded line.
pub const MAX_FRAME_DEFAULT: usize = 1 << 20;

/// The protocol version string sent in `WELCOME`.
pub const PROTOCOL_VERSION: &str = "1";
