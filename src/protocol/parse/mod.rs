//! Parsing one frame (a complete line) into a borrowed [`Frame`].
//!
//! Owns the mapping from JSON text to commands and the choice of error code for every
//! malformed input. Values the broker only forwards (`message`, `id`) are kept as raw
//! JSON text borrowed from the read buffer, so they are never re-serialised: integers
//! beyond 64 bits, `1.0`, long decimals and escapes reach subscribers byte for byte.
//! It must never allocate for a well-formed PUBLISH whose strings hold no escapes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::json;

mod fast;
pub use fast::{publish as parse_publish, Publish};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::ErrorCode;
use super::link::Path;

/// The raw text of a JSON value, exactly as it appeared in the frame. Only the
/// parser makes one, after checking the text is valid JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw<'a> {
    text: &'a str,
    /// Whether the text may hold a backslash escape (exact for strings the scanner
    /// read; `true` when unknown).
    escaped: bool,
}

impl<'a> Raw<'a> {
    /// The JSON text.
    pub fn get(&self) -> &'a str {
        self.text
    }

    /// Wraps text the caller knows to be one valid JSON value.
    pub fn trusted(json: &'a str) -> Raw<'a> {
        Raw {
            text: json,
            escaped: true,
        }
    }
}

/// A parsed frame: its command and the raw `id` to echo in the reply.
#[derive(Debug)]
pub struct Frame<'a> {
    /// The `id` field exactly as sent (`null` included), if present.
    pub id: Option<Raw<'a>>,
    /// What the frame asks for.
    pub command: Command<'a>,
}

/// The optional fields of a `HELLO`.
#[derive(Debug, Default)]
pub struct Hello<'a> {
    /// Client name, for logs.
    pub name: Option<Cow<'a, str>>,
    /// Whether the connection receives its own publications (default true).
    pub echo: bool,
    /// Authentication token.
    pub token: Option<Cow<'a, str>>,
    /// Set by a broker opening a federation link (broker-only field).
    pub link: bool,
    /// On a link `HELLO`: the longest frame the dialling broker accepts (broker-only
    /// field; `None` from a broker that does not say).
    pub max_frame: Option<u64>,
}

/// A client command. Channel names are unescaped but not yet validated.
#[derive(Debug)]
pub enum Command<'a> {
    /// `HELLO`: identify, authenticate, set options.
    Hello(Hello<'a>),
    /// `SUBSCRIBE` to a channel or pattern.
    Subscribe {
        /// Channel or pattern.
        channel: Cow<'a, str>,
    },
    /// `UNSUBSCRIBE` from exactly this channel text.
    Unsubscribe {
        /// Channel or pattern.
        channel: Cow<'a, str>,
    },
    /// `PUBLISH` a message.
    Publish {
        /// Target channel (no wildcards).
        channel: Cow<'a, str>,
        /// The message as raw JSON text.
        message: Raw<'a>,
        /// Whether to reply `PUBLISHED`.
        ack: bool,
        /// The channel is plain ([`crate::protocol::is_plain`]): a valid channel to
        /// publish on that needs no escaping in a JSON string. The parser found out while
        /// reading it, so the codec need not check the channel again.
        plain: bool,
    },
    /// `PING`.
    Ping,
    /// `STATS`: the broker's counters (an extension to protocol v1).
    Stats,
    /// Broker-only: the brokers on `path` want messages matching `channel`.
    Interest {
        /// The pattern.
        channel: Cow<'a, str>,
        /// Origin first, sender last.
        path: Path<'a>,
    },
    /// Broker-only: `origin` no longer wants `channel` through the sender.
    NoInterest {
        /// The pattern.
        channel: Cow<'a, str>,
        /// The broker whose interest ends.
        origin: Cow<'a, str>,
    },
    /// Broker-only: a message crossing a link.
    Route {
        /// The channel it was published on.
        channel: Cow<'a, str>,
        /// The origin broker's sequence number for it.
        seq: u64,
        /// Brokers crossed, origin first.
        path: Path<'a>,
        /// The payload.
        payload: RoutePayload<'a>,
    },
    /// Broker-only: the upstream's reply to a link `HELLO`.
    Welcome {
        /// The upstream broker's name.
        server: Cow<'a, str>,
        /// The longest frame the upstream accepts, when it says.
        max_frame: Option<u64>,
    },
    /// Broker-only: an `ERROR` received on a link.
    Error {
        /// The error code.
        code: Cow<'a, str>,
        /// The explanation.
        text: Cow<'a, str>,
    },
}

/// The payload of a `ROUTE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutePayload<'a> {
    /// `message`: JSON text, spliced into frames as is.
    Json(Raw<'a>),
    /// `data`: base64 text of a payload that is not JSON.
    Base64(Cow<'a, str>),
}

/// A frame that could not be turned into a command: the code to answer with, a human
/// text, and the `id` when the frame was readable enough to have one.
#[derive(Debug)]
pub struct FrameError<'a> {
    /// Error code for the `ERROR` frame.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: Cow<'static, str>,
    /// The bad frame's `id`, when it had a readable one.
    pub id: Option<Raw<'a>>,
}

impl<'a> FrameError<'a> {
    fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>, id: Option<Raw<'a>>) -> Self {
        FrameError {
            code,
            message: message.into(),
            id,
        }
    }
}

/// The fields the broker knows, each kept as raw JSON until the command says how to read
/// it. Unknown fields are skipped (but still syntax-checked). A repeated field keeps its
/// last value, as JavaScript's `JSON.parse` does.
#[derive(Default)]
struct RawFields<'a> {
    command: Option<Raw<'a>>,
    id: Option<Raw<'a>>,
    channel: Option<Raw<'a>>,
    message: Option<Raw<'a>>,
    ack: Option<Raw<'a>>,
    name: Option<Raw<'a>>,
    echo: Option<Raw<'a>>,
    token: Option<Raw<'a>>,
    link: Option<Raw<'a>>,
    path: Option<Raw<'a>>,
    seq: Option<Raw<'a>>,
    origin: Option<Raw<'a>>,
    server: Option<Raw<'a>>,
    code: Option<Raw<'a>>,
    error: Option<Raw<'a>>,
    max_frame: Option<Raw<'a>>,
    data: Option<Raw<'a>>,
}

impl<'a> RawFields<'a> {
    /// The slot a key fills, or `None` for a field the broker does not know.
    fn slot(&mut self, key: &str) -> Option<&mut Option<Raw<'a>>> {
        Some(match key {
            "command" => &mut self.command,
            "id" => &mut self.id,
            "channel" => &mut self.channel,
            "message" => &mut self.message,
            "ack" => &mut self.ack,
            "name" => &mut self.name,
            "echo" => &mut self.echo,
            "token" => &mut self.token,
            "link" => &mut self.link,
            "path" => &mut self.path,
            "seq" => &mut self.seq,
            "origin" => &mut self.origin,
            "server" => &mut self.server,
            "code" => &mut self.code,
            "error" => &mut self.error,
            "max_frame" => &mut self.max_frame,
            "data" => &mut self.data,
            _ => return None,
        })
    }

    /// Fast path: fills the fields with the hand-written scanner, in place (the struct
    /// is a few hundred bytes: not worth moving per frame). False when it gives up.
    fn scan(&mut self, text: &'a str) -> bool {
        json::scan_object(text, |key, value, escaped| {
            if let Some(slot) = self.slot(key) {
                *slot = Some(Raw {
                    text: value,
                    escaped,
                });
            }
        })
        .is_ok()
    }
}

/// A key as serde_json hands it over, unescaped if it had to be.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Slow path: serde_json, which also names the error precisely.
impl<'de> Deserialize<'de> for RawFields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = RawFields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            // Only objects are frames: no visit_seq, so `[..]` is a type error (bad_frame).
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut f = RawFields::default();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    match f.slot(&key.0) {
                        Some(slot) => {
                            *slot = Some(Raw::trusted(map.next_value::<&'de RawValue>()?.get()))
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(f)
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
}

/// Reads a raw JSON value as a string, borrowing when it holds no escapes.
fn raw_str(raw: Raw<'_>) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !raw.escaped || memchr::memchr(b'\\', inner.as_bytes()).is_none() {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

/// Reads a raw JSON value as a boolean.
fn raw_bool(raw: Raw<'_>) -> Option<bool> {
    match raw.get() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A required string field, or `bad_field` naming it.
fn required_str<'a>(
    raw: Option<Raw<'a>>,
    field: &'static str,
    id: Option<Raw<'a>>,
) -> Result<Cow<'a, str>, FrameError<'a>> {
    match raw {
        None => Err(FrameError::new(
            ErrorCode::BadField,
            format!("missing field '{field}'"),
            id,
        )),
        Some(v) => raw_str(v).ok_or_else(|| {
            FrameError::new(
                ErrorCode::BadField,
                format!("field '{field}' must be a string"),
                id,
            )
        }),
    }
}

/// An optional string field: absent or `null` is `None`; any other non-string is
/// `bad_field`.
fn optional_str<'a>(
    raw: Option<Raw<'a>>,
    field: &'static str,
    id: Option<Raw<'a>>,
) -> Result<Option<Cow<'a, str>>, FrameError<'a>> {
    match raw {
        None => Ok(None),
        Some(v) if v.get() == "null" => Ok(None),
        Some(v) => raw_str(v).map(Some).ok_or_else(|| {
            FrameError::new(
                ErrorCode::BadField,
                format!("field '{field}' must be a string"),
                id,
            )
        }),
    }
}

/// An optional boolean field with a default; `null` means the default.
fn optional_bool<'a>(
    raw: Option<Raw<'a>>,
    field: &'static str,
    default: bool,
    id: Option<Raw<'a>>,
) -> Result<bool, FrameError<'a>> {
    match raw {
        None => Ok(default),
        Some(v) if v.get() == "null" => Ok(default),
        Some(v) => raw_bool(v).ok_or_else(|| {
            FrameError::new(
                ErrorCode::BadField,
                format!("field '{field}' must be a boolean"),
                id,
            )
        }),
    }
}

/// An optional unsigned integer field: absent or `null` is `None`.
fn optional_uint<'a>(
    raw: Option<Raw<'a>>,
    field: &'static str,
    id: Option<Raw<'a>>,
) -> Result<Option<u64>, FrameError<'a>> {
    match raw {
        None => Ok(None),
        Some(v) if v.get() == "null" => Ok(None),
        Some(v) => v.get().parse::<u64>().map(Some).map_err(|_| {
            FrameError::new(
                ErrorCode::BadField,
                format!("field '{field}' must be an unsigned integer"),
                id,
            )
        }),
    }
}

/// Parses one frame (a line without its `\n`) from a client. The whole line must be
/// one JSON object, optionally surrounded by whitespace. Broker-only commands (`ROUTE`,
/// `INTEREST`, `NOINTEREST`, `WELCOME`, `ERROR`) are `unknown_command` here, whatever
/// their fields: a client is never told about the link protocol.
pub fn parse_frame(line: &[u8]) -> Result<Frame<'_>, FrameError<'_>> {
    parse_with(line, false)
}

/// Parses one frame received on a federation link: the client commands plus the
/// broker-only ones.
pub fn parse_link_frame(line: &[u8]) -> Result<Frame<'_>, FrameError<'_>> {
    parse_with(line, true)
}

#[inline]
fn parse_with(line: &[u8], link: bool) -> Result<Frame<'_>, FrameError<'_>> {
    if let Some(publish) = fast::publish(line) {
        return Ok(publish.into_frame());
    }
    general(line, link)
}

/// Every frame the fast path does not take: the scanner, else serde_json, then
/// [`interpret`].
fn general(line: &[u8], link: bool) -> Result<Frame<'_>, FrameError<'_>> {
    let text = std::str::from_utf8(line)
        .map_err(|_| FrameError::new(ErrorCode::BadJson, "frame is not valid UTF-8", None))?;
    let mut fields = RawFields::default();
    if !fields.scan(text) {
        fields = slow_fields(text)?;
    }
    interpret(&fields, link)
}

/// Parses with serde_json; used when the scanner gave up, and to name the error.
#[cold]
#[inline(never)]
fn slow_fields(text: &str) -> Result<RawFields<'_>, FrameError<'_>> {
    if json::too_deep(text) {
        return Err(FrameError::new(
            ErrorCode::BadJson,
            "invalid JSON: nested deeper than 127 arrays and objects",
            None,
        ));
    }
    if json::lone_surrogate(text) {
        return Err(FrameError::new(
            ErrorCode::BadJson,
            "invalid JSON: a \\u escape holds a lone surrogate",
            None,
        ));
    }
    serde_json::from_str(text).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            // serde_json names the wrong type at the first token; the rest must still
            // be JSON for the frame to be `bad_frame` rather than `bad_json`.
            Category::Data => match serde_json::from_str::<IgnoredAny>(text) {
                Ok(_) => FrameError::new(ErrorCode::BadFrame, "frame must be a JSON object", None),
                Err(e) => FrameError::new(ErrorCode::BadJson, format!("invalid JSON: {e}"), None),
            },
            _ => FrameError::new(ErrorCode::BadJson, format!("invalid JSON: {e}"), None),
        }
    })
}

/// Turns the known fields into a command, checking their types.
#[inline]
fn interpret<'a>(fields: &RawFields<'a>, link: bool) -> Result<Frame<'a>, FrameError<'a>> {
    let id = fields.id;
    let name = match fields.command.and_then(raw_str) {
        Some(name) => name,
        None => {
            return Err(FrameError::new(
                ErrorCode::BadFrame,
                "frame has no string field 'command'",
                id,
            ))
        }
    };
    let command = if name.eq_ignore_ascii_case("PUBLISH") {
        let channel = required_str(fields.channel, "channel", id)?;
        let message = fields
            .message
            .ok_or_else(|| FrameError::new(ErrorCode::BadField, "missing field 'message'", id))?;
        let ack = optional_bool(fields.ack, "ack", true, id)?;
        Command::Publish {
            plain: crate::protocol::is_plain(&channel),
            channel,
            message,
            ack,
        }
    } else if name.eq_ignore_ascii_case("SUBSCRIBE") {
        Command::Subscribe {
            channel: required_str(fields.channel, "channel", id)?,
        }
    } else if name.eq_ignore_ascii_case("UNSUBSCRIBE") {
        Command::Unsubscribe {
            channel: required_str(fields.channel, "channel", id)?,
        }
    } else if name.eq_ignore_ascii_case("PING") {
        Command::Ping
    } else if name.eq_ignore_ascii_case("STATS") {
        Command::Stats
    } else if name.eq_ignore_ascii_case("HELLO") {
        let is_link = optional_bool(fields.link, "link", false, id)?;
        Command::Hello(Hello {
            name: optional_str(fields.name, "name", id)?,
            echo: optional_bool(fields.echo, "echo", true, id)?,
            token: optional_str(fields.token, "token", id)?,
            link: is_link,
            max_frame: match is_link {
                true => optional_uint(fields.max_frame, "max_frame", id)?,
                false => None,
            },
        })
    } else if !link {
        let shown: String = name.chars().take(64).collect();
        return Err(FrameError::new(
            ErrorCode::UnknownCommand,
            format!("unknown command '{shown}'"),
            id,
        ));
    } else if name.eq_ignore_ascii_case("ROUTE") {
        let bad = |what: &'static str| FrameError::new(ErrorCode::BadField, what, id);
        Command::Route {
            channel: required_str(fields.channel, "channel", id)?,
            seq: fields
                .seq
                .and_then(|v| v.get().parse::<u64>().ok())
                .ok_or_else(|| bad("field 'seq' must be an unsigned integer"))?,
            path: fields
                .path
                .and_then(|v| Path::parse(v.get()))
                .ok_or_else(|| bad("field 'path' must be an array of broker names"))?,
            payload: match (fields.message, fields.data) {
                (Some(message), _) => RoutePayload::Json(message),
                (None, Some(data)) => RoutePayload::Base64(
                    raw_str(data).ok_or_else(|| bad("field 'data' must be a string"))?,
                ),
                (None, None) => return Err(bad("missing field 'message'")),
            },
        }
    } else if name.eq_ignore_ascii_case("INTEREST") {
        Command::Interest {
            channel: required_str(fields.channel, "channel", id)?,
            path: fields
                .path
                .and_then(|v| Path::parse(v.get()))
                .ok_or_else(|| {
                    FrameError::new(
                        ErrorCode::BadField,
                        "field 'path' must be an array of broker names",
                        id,
                    )
                })?,
        }
    } else if name.eq_ignore_ascii_case("NOINTEREST") {
        Command::NoInterest {
            channel: required_str(fields.channel, "channel", id)?,
            origin: required_str(fields.origin, "origin", id)?,
        }
    } else if name.eq_ignore_ascii_case("WELCOME") {
        Command::Welcome {
            server: required_str(fields.server, "server", id)?,
            max_frame: optional_uint(fields.max_frame, "max_frame", id)?,
        }
    } else if name.eq_ignore_ascii_case("ERROR") {
        Command::Error {
            code: optional_str(fields.code, "code", id)?.unwrap_or(Cow::Borrowed("")),
            text: optional_str(fields.error, "error", id)?.unwrap_or(Cow::Borrowed("")),
        }
    } else {
        let shown: String = name.chars().take(64).collect();
        return Err(FrameError::new(
            ErrorCode::UnknownCommand,
            format!("unknown command '{shown}'"),
            id,
        ));
    };
    Ok(Frame { id, command })
}

#[cfg(test)]
mod tests;
