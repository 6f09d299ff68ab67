//! A small blocking client for the coordinating thread: the interest barrier's probe
//! publishers and the `propagation` scenario's publisher and subscribers. Not for load:
//! one socket, plain blocking reads with a deadline, every read timestamped so callers
//! can time what arrived.

use crate::adapter::{Event, Protocol};
use crate::cli::Target;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Bytes read per `read` call.
const CHUNK: usize = 64 * 1024;
/// Shortest read timeout handed to the kernel (zero would mean "block forever").
const MIN_WAIT: Duration = Duration::from_millis(1);

/// What a caller's frame handler decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Keep reading.
    Continue,
    /// Stop: [`BlockingClient::read_until`] returns `Ok(true)`; unread frames stay buffered.
    Stop,
}

/// One blocking connection speaking `protocol`.
pub struct BlockingClient {
    protocol: Protocol,
    stream: TcpStream,
    buf: Vec<u8>,
    chunk: Vec<u8>,
}

impl BlockingClient {
    /// Connects to `target`, sends the protocol's hello (`client_id` must be unique per
    /// connection for MQTT) and a ping, and waits for the pong, so the connection is
    /// known to be accepted when this returns.
    pub fn connect(target: Target, client_id: u64, timeout: Duration) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&target.addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(timeout))?;
        let mut client = BlockingClient {
            protocol: target.protocol,
            stream,
            buf: Vec::new(),
            chunk: vec![0; CHUNK],
        };
        let mut out = Vec::new();
        client.protocol.hello(&mut out, client_id);
        client.protocol.ping(&mut out);
        client.send(&out)?;
        client.ping_wait(Instant::now() + timeout, false)?;
        Ok(client)
    }

    /// The protocol this connection speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Waits for the pong of a ping (sent first when `send_ping`), answering server pings
    /// and skipping other frames; a server error or the deadline is an error.
    pub fn ping_wait(&mut self, deadline: Instant, send_ping: bool) -> io::Result<()> {
        if send_ping {
            let mut out = Vec::new();
            self.protocol.ping(&mut out);
            self.send(&out)?;
        }
        let mut failure = None;
        let done = self.read_until(deadline, |event, _| match event {
            Event::Pong => Next::Stop,
            Event::ServerError { code, text } => {
                failure = Some(format!("ERROR {code}: {text}"));
                Next::Stop
            }
            _ => Next::Continue,
        })?;
        match (done, failure) {
            (_, Some(text)) => Err(io::Error::other(text)),
            (true, None) => Ok(()),
            (false, None) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no PONG before the deadline",
            )),
        }
    }

    /// Hands every frame to `on`, with the time the read that brought it returned, until
    /// `on` says [`Next::Stop`] (`Ok(true)`) or `deadline` passes (`Ok(false)`). Server
    /// pings are answered here. EOF and malformed frames are errors.
    pub fn read_until(
        &mut self,
        deadline: Instant,
        mut on: impl FnMut(&Event<'_>, Instant) -> Next,
    ) -> io::Result<bool> {
        let mut arrived = Instant::now();
        loop {
            // Frames already buffered first (left over from a previous call or this read).
            let mut at = 0;
            let mut stop = false;
            let mut pong_due = false;
            while !stop {
                match self.protocol.decode(&self.buf[at..]) {
                    Ok(Some((event, used))) => {
                        at += used;
                        if event == Event::Ping {
                            pong_due = true;
                        }
                        stop = on(&event, arrived) == Next::Stop;
                    }
                    Ok(None) => break,
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                }
            }
            self.buf.drain(..at);
            if pong_due {
                let mut out = Vec::new();
                self.protocol.pong(&mut out);
                self.send(&out)?;
            }
            if stop {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            self.stream
                .set_read_timeout(Some((deadline - now).max(MIN_WAIT)))?;
            match self.stream.read(&mut self.chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "broker closed the connection",
                    ))
                }
                Ok(n) => {
                    arrived = Instant::now();
                    self.buf.extend_from_slice(&self.chunk[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
}
