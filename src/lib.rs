//! `pubsub`: a publish/subscribe message broker speaking newline-delimited JSON over
//! TCP, and a blocking client library for it.
//!
//! # Layout
//! Four layers; a frame goes transport -> codec -> core -> write queues -> transport,
//! driven by the reactor (`docs/architecture.md` follows it in detail).
//! - [`net`]: transports; every system call on a connection's socket.
//! - [`codec`]: wire protocols: framing, frames to core operations, outcomes and
//!   deliveries to frames, goodbyes ([`codec::json`] for clients, [`codec::link`] for
//!   federation).
//! - [`protocol`]: protocol v1's wire format: scanner, parser, encoders (no I/O).
//! - [`core`]: broker semantics without a wire format: subscriptions, fan-out, limits,
//!   closing, the counters' snapshot.
//! - [`router`]: the subscription index, exact channels and a wildcard trie.
//! - [`connection`]: one connection (transport, buffers, stage) and the table of them.
//! - [`ids`]: connection keys with generations.
//! - [`federation`]: links between brokers: interest table, loop prevention, dedupe.
//! - `reactor`: the single-threaded `mio` event loop, timers, accepting, dialling.
//! - [`broker`]: configuration, start-up and the in-process [`broker::spawn`].
//! - [`client`]: the blocking client library ([`Client`]).
//! - [`cli`]: what the `client`, `publisher` and `chat` programs share (flags, output).
//! - [`stats`]: broker-wide counters.
//! - [`flags`]: reading flag values the programs share (durations).
//! - [`logsafe`]: escaping peer-supplied text for logs, and rate-limiting warnings.
//!
//! # Features
//! - `broker` (default): `net`, `codec`, `core`, `router`, `connection`, `ids`,
//!   `reactor`, `federation`, `broker`, `stats` and the `broker` program, with their
//!   dependencies (mio, tracing, ...).
//! - `cli` (default): the module `cli` and the programs `client`, `publisher`, `chat`.
//!
//! A program that only talks to a broker depends on
//! `pubsub = { version = "0.1", default-features = false }` and gets [`protocol`] and
//! [`client`], built from serde, serde_json, thiserror and memchr alone.
//!

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
pub mod flags;
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
