//! The broker's limits and identity, fixed at start.
//!
//! Owns nothing but values; the command line lives in `broker::config`. Read at use
//! time (never copied into other structures), so a later reload has one place to swap.

use std::net::SocketAddr;
use std::time::Duration;

/// Limits and identity the reactor enforces.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Broker name, sent in `WELCOME` and logs.
    pub name: String,
    /// Longest frame accepted, newline excluded.
    pub max_frame: usize,
    /// Most unsent output bytes per connection before it is a slow consumer.
    pub max_pending: usize,
    /// Most concurrent client connections.
    pub max_connections: usize,
    /// Most subscriptions per connection.
    pub max_subscriptions: usize,
    /// Token every connection must present in `HELLO`, if set.
    pub token: Option<String>,
    /// Credential a broker must present to open a link, if set (else `token`).
    pub link_token: Option<String>,
    /// Log every frame received.
    pub verbose: bool,
    /// Brokers to open federation links to.
    pub upstreams: Vec<SocketAddr>,
    /// Token to present on links to upstreams.
    pub upstream_token: Option<String>,
    /// Longest wait between attempts to re-open a link.
    pub link_backoff_max: Duration,
    /// Most bytes all connections may hold in unfinished input and queued output.
    pub max_memory: usize,
    /// How long an unfinished frame may go without progress.
    pub frame_timeout: Duration,
    /// How long a connection may take to authenticate (with a token).
    pub auth_timeout: Duration,
    /// How long pending output may go without a byte accepted by the socket.
    pub write_deadline: Duration,
}
