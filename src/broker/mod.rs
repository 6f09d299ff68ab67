//! Starting a broker: from a [`Config`] to a running reactor.
//!
//! Owns start-up policy: raising the fd limit, deriving the connection limit from it,
//! binding the listener, and announcing `listening on ADDR` on stdout (scripts and
//! tests wait for that line). [`Broker`] is a bound, not yet running broker and its
//! [`Control`]; [`spawn`] runs one on a thread of this process (tests do). It never
//! handles traffic itself and installs no signal handler (the program does).

mod config;

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use mio::net::TcpListener;
use tracing::{info, warn};

pub use config::{log_filter, Config, LOG_LEVELS, MAX_PENDING_DEFAULT, MAX_SUBSCRIPTIONS_DEFAULT};

use crate::core::Settings;
pub use crate::reactor::Control;
use crate::reactor::{Reactor, ReactorError};

/// Listen backlog: connections the kernel queues before `accept` (the kernel caps it
/// at `net.core.somaxconn`). mio's default of 128 drops SYNs under a connect storm,
/// and each dropped SYN costs the client a one-second retransmit.
const LISTEN_BACKLOG: i32 = 4096;

/// Binds a non-blocking listener with SO_REUSEADDR (a restarted broker can take its
/// port back at once) and a deep backlog.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

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
    /// `--name` is not a valid broker name.
    #[error("invalid --name '{name}': {source}")]
    Name {
        /// The name given.
        name: String,
        /// What is wrong with it.
        source: crate::protocol::NameError,
    },
    /// The broker's thread panicked.
    #[error("the broker thread panicked")]
    Panicked,
    /// An `--upstream` address cannot be resolved.
    #[error("invalid --upstream '{addr}': {reason}")]
    Upstream {
        /// The address given.
        addr: String,
        /// What went wrong.
        reason: String,
    },
}

/// Resolves each `--upstream` to one socket address.
fn resolve_upstreams(list: &[String]) -> Result<Vec<SocketAddr>, BrokerError> {
    list.iter()
        .map(|addr| {
            let bad = |reason: String| BrokerError::Upstream {
                addr: addr.clone(),
                reason,
            };
            addr.to_socket_addrs()
                .map_err(|e| bad(e.to_string()))?
                .next()
                .ok_or_else(|| bad("no address found".into()))
        })
        .collect()
}

/// The default broker name: the bound address, with the host name instead of an
/// unspecified IP (`0.0.0.0:7400` is not unique across machines).
fn default_name(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            let host = host.trim();
            if !host.is_empty() {
                return format!("{host}:{}", addr.port());
            }
        }
    }
    addr.to_string()
}

/// Physical memory in bytes (`MemTotal` of `/proc/meminfo`), if known.
fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
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

/// A bound broker, ready to run.
pub struct Broker {
    reactor: Reactor,
    control: Control,
    addr: SocketAddr,
}

impl Broker {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that stops it from any thread.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Prints `listening on ADDR` on stdout (and logs it).
    pub fn announce(&self) {
        let addr = self.addr;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {addr}");
        let _ = out.flush();
        info!("listening on {addr}");
    }

    /// Runs until stopped through its [`Control`].
    pub fn run(mut self) -> Result<(), BrokerError> {
        self.reactor.run()?;
        Ok(())
    }
}

/// Binds and sets up a broker from `config` (raising the fd limit first).
pub fn start(config: &Config) -> Result<Broker, BrokerError> {
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
    let listener = bind(config.listen).map_err(|source| BrokerError::Bind {
        addr: config.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| BrokerError::Bind {
        addr: config.listen,
        source,
    })?;
    let name = config.name.clone().unwrap_or_else(|| default_name(addr));
    crate::protocol::validate_name(&name).map_err(|source| BrokerError::Name {
        name: name.clone(),
        source,
    })?;
    let upstreams = resolve_upstreams(&config.upstream)?;
    let max_memory = config
        .max_memory
        .or_else(|| physical_memory().map(|m| m / 4))
        .unwrap_or(1 << 30)
        .try_into()
        .unwrap_or(usize::MAX);
    info!(
        name = %name,
        fd_limit,
        max_connections,
        max_frame = config.max_frame,
        max_pending = config.max_pending,
        max_memory,
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
        link_token: config.link_token.clone(),
        verbose: config.verbose,
        upstreams,
        upstream_token: config
            .upstream_token
            .clone()
            .or_else(|| config.link_token.clone())
            .or_else(|| config.token.clone()),
        link_backoff_max: Duration::from_millis(config.link_backoff_max_ms),
        max_memory,
        frame_timeout: config.frame_timeout,
        auth_timeout: config.auth_timeout,
        write_deadline: config.write_deadline,
    };
    let (reactor, control) = Reactor::new(listener, settings)?;
    Ok(Broker {
        reactor,
        control,
        addr,
    })
}

/// Runs a broker until it is stopped through its [`Control`] (which this function
/// does not hand out: a program that wants signals uses [`start`]).
pub fn run(config: Config) -> Result<(), BrokerError> {
    let broker = start(&config)?;
    broker.announce();
    broker.run()
}

/// A broker running on a thread of this process (for tests and embedding).
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    control: Control,
    thread: Option<std::thread::JoinHandle<Result<(), BrokerError>>>,
}

impl Running {
    /// Stops it gracefully and waits for its thread.
    pub fn stop(mut self) -> Result<(), BrokerError> {
        self.control.shutdown();
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(BrokerError::Panicked),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.control.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts a broker from `config` on a new thread and returns once it listens.
pub fn spawn(config: Config) -> Result<Running, BrokerError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("broker".into())
        .spawn(move || {
            let broker = match start(&config) {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return Ok(());
                }
            };
            let _ = tx.send(Ok((broker.addr(), broker.control())));
            broker.run()
        })
        .map_err(|e| BrokerError::Reactor(ReactorError::Setup(e)))?;
    match rx.recv() {
        Ok(Ok((addr, control))) => Ok(Running {
            addr,
            control,
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err(BrokerError::Panicked),
    }
}
