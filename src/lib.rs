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
//! - [`logsafe`]: escaping peer-supplied text for logs, and rate-limiting warnings.
//!
//! # Features
//! - `broker` (default): `router`, `connection`, `reactor`, `federation`, `broker`,
//!   `stats` and the `broker` program, with their dependencies (mio, tracing, ...).
//! - `cli` (default): the module `cli` and the programs `client`, `publisher`, `chat`.
//!
//! A program that only talks to a broker depends on
//! `pubsub = { version = "0.1", default-features = false }` and gets [`protocol`] and
//! [`client`], built from serde, serde_json, thiserror and memchr alone.
//!
//! A frame travels: socket -> read buffer -> `protocol::scan_frame` ->
//! `protocol::parse_frame` -> reactor command -> `Router::lookup` -> each subscriber's
//! write queue -> socket. `docs/architecture.md` follows it in detail.

#[cfg(feature = "broker")]
pub mod broker;
#[cfg(feature = "cli")]
pub mod cli;
pub mod client;
#[cfg(feature = "broker")]
pub mod codec;
#[cfg(feature = "broker")]
pub mod connection;
#[cfg(feature = "broker")]
pub mod core;
#[cfg(feature = "broker")]
pub mod federation;
#[cfg(feature = "broker")]
pub mod ids;
pub mod logsafe;
#[cfg(feature = "broker")]
pub mod net;
pub mod protocol;
#[cfg(feature = "broker")]
mod reactor;
#[cfg(feature = "broker")]
pub mod router;
#[cfg(feature = "broker")]
pub mod stats;

pub use client::{Client, ClientError, Hello, Message, Welcome};
