//! The broker's command line.
//!
//! Owns flags, their defaults and their help text. Parsing only: what the values mean
//! at run time is decided in `broker::run` and the reactor.

use std::net::SocketAddr;

use clap::Parser;

use crate::protocol::MAX_FRAME_DEFAULT;

/// Default `--max-pending`: 64 MiB of unsent output per connection before it is a slow
/// consumer (NATS uses 64 MiB for its `max_pending` too).
pub const MAX_PENDING_DEFAULT: usize = 64 << 20;

/// Default `--max-subscriptions` per connection.
pub const MAX_SUBSCRIPTIONS_DEFAULT: usize = 10_000;

/// A publish/subscribe broker speaking newline-delimited JSON over TCP.
///
/// Clients SUBSCRIBE to channels (with `*` and `>` wildcards) and PUBLISH to them; the
/// broker fans each message out to every matching subscriber. See docs/protocol.md.
#[derive(Debug, Clone, Parser)]
#[command(name = "broker", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port. The bound address is printed as
    /// `listening on ADDR`.
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,

    /// Longest frame accepted, in bytes (newline excluded); longer ones get
    /// `frame_too_large` and the connection is closed.
    #[arg(long, value_name = "BYTES", default_value_t = MAX_FRAME_DEFAULT)]
    pub max_frame: usize,

    /// Most unsent output per connection, in bytes; a connection past it is a slow
    /// consumer and is closed.
    #[arg(long, value_name = "BYTES", default_value_t = MAX_PENDING_DEFAULT)]
    pub max_pending: usize,

    /// Most concurrent client connections [default: the open-file limit minus a small
    /// reserve]. Connections past it get `ERROR limit`.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<u64>,

    /// Most subscriptions per connection.
    #[arg(long, value_name = "N", default_value_t = MAX_SUBSCRIPTIONS_DEFAULT)]
    pub max_subscriptions: usize,

    /// Require every connection to start with HELLO carrying this token.
    #[arg(long, value_name = "T")]
    pub token: Option<String>,

    /// Broker name, sent in WELCOME and used in logs [default: the listen address].
    #[arg(long)]
    pub name: Option<String>,

    /// Log level or filter (error, warn, info, debug, trace; or a RUST_LOG-style
    /// directive). Overrides RUST_LOG. [default: info]
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log every frame received, to watch clients talk.
    #[arg(long, short)]
    pub verbose: bool,

    /// Join the hub topology: open a federation link to the broker at ADDR (repeat for
    /// several). Messages cross links only where the other side has a matching
    /// subscription. See docs/federation.md.
    #[arg(long, value_name = "ADDR")]
    pub upstream: Vec<String>,

    /// Token to present to upstream brokers [default: the value of --token].
    #[arg(long, value_name = "T")]
    pub upstream_token: Option<String>,

    /// Longest wait between attempts to re-open a broken link, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub link_backoff_max_ms: u64,
}
