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

impl Settings {
    /// The command line's defaults for a broker named `name`, with a 1 GiB memory bound
    /// and no connection limit beyond 100,000: for benchmarks and embedding, where no
    /// command line was parsed.
    pub fn defaults(name: &str) -> Settings {
        Settings {
            name: name.into(),
            max_frame: crate::protocol::MAX_FRAME_DEFAULT,
            max_pending: crate::broker::MAX_PENDING_DEFAULT,
            max_connections: 100_000,
            max_subscriptions: crate::broker::MAX_SUBSCRIPTIONS_DEFAULT,
            token: None,
            link_token: None,
            verbose: false,
            upstreams: Vec::new(),
            upstream_token: None,
            link_backoff_max: Duration::from_secs(5),
            max_memory: 1 << 30,
            frame_timeout: Duration::from_secs(30),
            auth_timeout: Duration::from_secs(5),
            write_deadline: Duration::from_secs(10),
        }
    }
}
