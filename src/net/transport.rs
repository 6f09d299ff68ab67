//! The one socket abstraction: plain TCP today, TLS and WebSocket framing next.
//!
//! Owns every system call on a connection's socket. It is an enum, not a trait
//! object, so the hot path pays one predictable branch per call. The contract the
//! reactor relies on (and a TLS variant must honour):
//! - `read` returns `Ok(0)` only at end of stream and `WouldBlock` only when nothing
//!   more can be had now; a transport that buffers decrypted data must hand it out
//!   before reporting `WouldBlock`, because readiness is edge-triggered.
//! - `wants_write` is true when the transport has bytes of its own to send (a
//!   handshake flight, an alert) even though the connection's queue is empty; the
//!   flush then calls `write_vectored` with no data.
//! - `shutdown_write` ends the sending side (TCP FIN; TLS close_notify then FIN).
//!
//! It never interprets or frames the bytes it carries.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::net::TcpStream;

/// A connection's byte carrier. See the module documentation.
#[derive(Debug)]
pub enum Transport {
    /// A plain TCP socket.
    Tcp(TcpStream),
}

impl Transport {
    /// Reads into `buf`, retrying `EINTR`.
    #[inline]
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => loop {
                match s.read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => return other,
                }
            },
        }
    }

    /// Writes from `bufs` (one `writev`), retrying `EINTR`.
    #[inline]
    pub fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => loop {
                match s.write_vectored(bufs) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => return other,
                }
            },
        }
    }

    /// Whether the transport has output of its own pending (never, for plain TCP).
    pub fn wants_write(&self) -> bool {
        match self {
            Transport::Tcp(_) => false,
        }
    }

    /// Ends the sending side; the peer reads end of stream after what was sent.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.shutdown(Shutdown::Write),
        }
    }

    /// Makes the coming close abortive (SO_LINGER 0: the peer sees a reset, not an end
    /// of stream), for a connection given up on with output unsent, so the peer never
    /// mistakes a cut-off frame for a clean end.
    pub fn abort_on_close(&mut self) {
        match self {
            Transport::Tcp(s) => {
                let _ = socket2::SockRef::from(&*s).set_linger(Some(std::time::Duration::ZERO));
            }
        }
    }

    /// Whether an outbound connection finished its TCP handshake: `Ok(true)` once
    /// connected, `Ok(false)` while still in progress, `Err` when it failed.
    pub fn connect_finished(&mut self) -> io::Result<bool> {
        match self {
            Transport::Tcp(s) => {
                if let Some(e) = s.take_error()? {
                    return Err(e);
                }
                match s.peer_addr() {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Transport::Tcp(s) => s.peer_addr(),
        }
    }

    /// The socket, for readiness (de)registration only.
    pub fn source(&mut self) -> &mut TcpStream {
        match self {
            Transport::Tcp(s) => s,
        }
    }
}

/// The write queue writes through this.
impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Transport::write_vectored(self, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
