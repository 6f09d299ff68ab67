//! Starting a broker: from a [`Config`] to a running reactor.
//!
//! Owns start-up policy: raising the fd limit, deriving the connection limit from it,
//! binding the listener, and announcing `listening on ADDR` on stdout (scripts and
//! tests wait for that line). It never handles traffic itself.

mod config;

use std::io::Write;
use std::net::SocketAddr;

use mio::net::TcpListener;
use tracing::{info, warn};

pub use config::Config;

use crate::reactor::{Reactor, ReactorError, Settings};

/// File descriptors kept back from the connection limit for the listener, the poll
/// instance, the signal pipe, stdio, the spare fd and log files.
const FD_RESERVE: u64 = 32;

/// Why the broker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The event loop failed.
    #[error(transparent)]
    Reactor(#[from] ReactorError),
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (as Redis does) and returns the
/// resulting soft limit.
fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// Runs a broker until SIGINT/SIGTERM. Prints `listening on ADDR` once bound.
pub fn run(config: Config) -> Result<(), BrokerError> {
    let fd_limit = raise_fd_limit();
    let fd_capacity = fd_limit.saturating_sub(FD_RESERVE).max(1) as usize;
    let max_connections = match config.max_connections {
        Some(n) if n as usize > fd_capacity => {
            warn!(
                requested = n,
                fd_limit,
                "--max-connections is above what the open-file limit allows; connections past {fd_capacity} will be refused as the process runs out of fds"
            );
            n as usize
        }
        Some(n) => n as usize,
        None => fd_capacity,
    };
    let listener = TcpListener::bind(config.listen).map_err(|source| BrokerError::Bind {
        addr: config.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| BrokerError::Bind {
        addr: config.listen,
        source,
    })?;
    let name = config.name.clone().unwrap_or_else(|| addr.to_string());
    info!(
        name = %name,
        fd_limit,
        max_connections,
        max_frame = config.max_frame,
        max_pending = config.max_pending,
        auth = config.token.is_some(),
        "broker starting; open-file limit {fd_limit} allows about {fd_capacity} client connections"
    );
    let settings = Settings {
        name,
        max_frame: config.max_frame,
        max_pending: config.max_pending,
        max_connections,
        max_subscriptions: config.max_subscriptions,
        token: config.token.clone(),
        verbose: config.verbose,
    };
    let mut reactor = Reactor::new(listener, settings)?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {addr}");
        let _ = out.flush();
    }
    info!("listening on {addr}");
    reactor.run()?;
    Ok(())
}
