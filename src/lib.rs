//! `pubsub`: a publish/subscribe message broker speaking newline-delimited JSON over
//! TCP, and a blocking client library for it.
//!
//! # Layout
//! - [`protocol`]: framing, parsing and encoding of protocol v1 (no I/O).
//! - [`router`]: the subscription index, exact channels and a wildcard trie.
//! - [`connection`]: one connection's socket, buffers, subscriptions and lifecycle.
//! - `reactor`: the single-threaded `mio` event loop that moves bytes between
//!   connections through the router.
//! - [`federation`]: links between brokers: interest table and loop prevention.
//! - [`broker`]: configuration and start-up of a broker process.
//! - [`client`]: the blocking client library ([`Client`]).
//! - [`cli`]: what the `client`, `publisher` and `chat` programs share (flags, output).
//! - [`stats`]: broker-wide counters.
//!
//! A frame travels: socket -> read buffer -> `protocol::scan_frame` ->
//! `protocol::parse_frame` -> reactor command -> `Router::lookup` -> each subscriber's
//! write queue -> socket. `docs/architecture.md` follows it in detail.

pub mod broker;
pub mod cli;
pub mod client;
pub mod connection;
pub mod federation;
pub mod protocol;
mod reactor;
pub mod router;
pub mod stats;

pub use client::{Client, ClientError, Hello, Message, Welcome};
