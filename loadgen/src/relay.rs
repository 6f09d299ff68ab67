//! `loadgen relay`: a deliberately minimal single-threaded JSON pub/sub relay that
//! measures this machine's ceiling for a single-threaded broker. It does not parse JSON:
//! it finds `"command"`, `"channel"` and `"message"` by scanning, supports exact channels
//! only, encodes each MESSAGE once and copies it to every subscriber's buffer, and writes
//! every dirty buffer once per loop turn. It is a yardstick, not a broker: no wildcards,
//! no echo suppression, no auth, little validation.

use memchr::memmem;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// Token of the listening socket.
const LISTENER: Token = Token(usize::MAX);
/// Bytes read per call.
const READ_CHUNK: usize = 64 * 1024;
/// Reads per connection per turn before serving others.
const READS_PER_TURN: usize = 4;
/// A subscriber with more unsent output than this is disconnected (as slow).
const MAX_PENDING: usize = 64 * 1024 * 1024;
/// Longest line accepted, as the broker's default --max-frame.
const MAX_FRAME: usize = 1 << 20;
/// Listen backlog; the kernel caps it at net.core.somaxconn (4096 here).
const BACKLOG: i32 = 4096;
/// Connections accepted per turn, so a connect storm cannot starve traffic.
const ACCEPTS_PER_TURN: usize = 64;

struct Client {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    channels: Vec<Vec<u8>>,
    dirty: bool,
}

/// The relay's state.
struct Relay {
    poll: Poll,
    listener: TcpListener,
    clients: Slab<Client>,
    channels: HashMap<Vec<u8>, Vec<usize>>,
    dirty: Vec<usize>,
    again: Vec<usize>,
    to_close: Vec<usize>,
    frame: Vec<u8>,
    chunk: Vec<u8>,
}

/// Listens on `addr`, prints `listening on ADDR`, and relays until killed.
pub fn run(addr: SocketAddr) -> io::Result<()> {
    let mut listener = listen(addr)?;
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    let mut relay = Relay {
        poll,
        listener,
        clients: Slab::new(),
        channels: HashMap::new(),
        dirty: Vec::new(),
        again: Vec::new(),
        to_close: Vec::new(),
        frame: Vec::new(),
        chunk: vec![0; READ_CHUNK],
    };
    relay.serve()
}

/// Binds with a listen backlog of [`BACKLOG`] (mio's `bind` uses 128, which a connect
/// storm overflows: every dropped SYN then waits a 1 s retransmission).
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

impl Relay {
    fn serve(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut accept_pending = false;
        loop {
            let timeout = if self.again.is_empty() && !accept_pending {
                None
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => accept_pending = true,
                    Token(key) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(key);
                        }
                        if event.is_writable() {
                            self.mark_dirty(key);
                        }
                    }
                }
            }
            for key in std::mem::take(&mut self.again) {
                self.read(key);
            }
            if accept_pending {
                accept_pending = self.accept();
            }
            self.flush_all();
            for key in std::mem::take(&mut self.to_close) {
                self.close(key);
            }
        }
    }

    /// Accepts up to a few connections; true when more may be waiting.
    fn accept(&mut self) -> bool {
        for _ in 0..ACCEPTS_PER_TURN {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    // Small writes must not wait for Nagle; failure only costs latency.
                    let _ = stream.set_nodelay(true);
                    let entry = self.clients.vacant_entry();
                    if self
                        .poll
                        .registry()
                        .register(
                            &mut stream,
                            Token(entry.key()),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_ok()
                    {
                        entry.insert(Client {
                            stream,
                            input: Vec::new(),
                            output: Vec::new(),
                            channels: Vec::new(),
                            dirty: false,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: back off by leaving the rest for the next turn.
                    eprintln!("relay: accept: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    return true;
                }
            }
        }
        true
    }

    fn mark_dirty(&mut self, key: usize) {
        if let Some(client) = self.clients.get_mut(key) {
            if !client.dirty {
                client.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    fn read(&mut self, key: usize) {
        let mut chunk = std::mem::take(&mut self.chunk);
        for turn in 0..=READS_PER_TURN {
            if turn == READS_PER_TURN {
                self.again.push(key);
                break;
            }
            let Some(client) = self.clients.get_mut(key) else {
                break;
            };
            match client.stream.read(&mut chunk) {
                Ok(0) => {
                    self.to_close.push(key);
                    break;
                }
                Ok(n) => {
                    // Usually no partial line is pending: parse straight from the chunk
                    // and keep only the tail.
                    let mut input = std::mem::take(&mut client.input);
                    let rest = if input.is_empty() {
                        let used = self.frames(key, &chunk[..n]);
                        input.extend_from_slice(&chunk[used..n]);
                        input
                    } else {
                        input.extend_from_slice(&chunk[..n]);
                        let used = self.frames(key, &input);
                        input.drain(..used);
                        input
                    };
                    if rest.len() > MAX_FRAME {
                        self.to_close.push(key);
                    }
                    if let Some(client) = self.clients.get_mut(key) {
                        client.input = rest;
                    }
                    // A short read emptied the socket; new data raises a new edge.
                    if n < chunk.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.to_close.push(key);
                    break;
                }
            }
        }
        self.chunk = chunk;
    }

    /// Handles every complete line in `input`; returns the bytes used.
    fn frames(&mut self, key: usize, input: &[u8]) -> usize {
        let mut at = 0;
        while let Some(nl) = memchr::memchr(b'\n', &input[at..]) {
            let line = &input[at..at + nl];
            at += nl + 1;
            self.line(key, line);
        }
        at
    }

    fn line(&mut self, key: usize, line: &[u8]) {
        let Some(command) = string_field(line, b"\"command\"") else {
            if !line.iter().all(u8::is_ascii_whitespace) {
                self.reply(
                    key,
                    b"{\"command\":\"ERROR\",\"code\":\"bad_frame\",\"error\":\"no command\"}\n",
                );
            }
            return;
        };
        if command.eq_ignore_ascii_case(b"PUBLISH") {
            self.publish(key, line);
        } else if command.eq_ignore_ascii_case(b"SUBSCRIBE") {
            self.subscribe(key, line);
        } else if command.eq_ignore_ascii_case(b"PING") {
            self.reply(key, b"{\"command\":\"PONG\"}\n");
        } else if command.eq_ignore_ascii_case(b"HELLO") {
            let mut reply =
                b"{\"command\":\"WELCOME\",\"server\":\"loadgen-relay\",\"version\":\"".to_vec();
            reply.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
            reply.extend_from_slice(b"\",\"max_frame\":");
            crate::adapter::push_decimal(&mut reply, MAX_FRAME as u64);
            reply.extend_from_slice(b",\"client_id\":");
            crate::adapter::push_decimal(&mut reply, key as u64);
            reply.extend_from_slice(b"}\n");
            self.reply(key, &reply);
        } else {
            self.reply(key, b"{\"command\":\"ERROR\",\"code\":\"unknown_command\",\"error\":\"the relay knows HELLO, SUBSCRIBE, PUBLISH, PING\"}\n");
        }
    }

    fn subscribe(&mut self, key: usize, line: &[u8]) {
        let Some(channel) = string_field(line, b"\"channel\"") else {
            self.reply(
                key,
                b"{\"command\":\"ERROR\",\"code\":\"bad_field\",\"error\":\"channel\"}\n",
            );
            return;
        };
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        if !client.channels.iter().any(|c| c == channel) {
            client.channels.push(channel.to_vec());
            self.channels.entry(channel.to_vec()).or_default().push(key);
        }
        let count = client.channels.len() as u64;
        let mut reply = b"{\"command\":\"SUBSCRIBED\",\"channel\":\"".to_vec();
        reply.extend_from_slice(channel);
        reply.extend_from_slice(b"\",\"subscriptions\":");
        crate::adapter::push_decimal(&mut reply, count);
        reply.extend_from_slice(b"}\n");
        self.reply(key, &reply);
    }

    fn publish(&mut self, key: usize, line: &[u8]) {
        let (Some(channel), Some(message)) = (
            string_field(line, b"\"channel\""),
            raw_field(line, b"\"message\""),
        ) else {
            self.reply(key, b"{\"command\":\"ERROR\",\"code\":\"bad_field\",\"error\":\"channel and message\"}\n");
            return;
        };
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        frame.extend_from_slice(b"{\"command\":\"MESSAGE\",\"channel\":\"");
        frame.extend_from_slice(channel);
        frame.extend_from_slice(b"\",\"message\":");
        frame.extend_from_slice(message);
        frame.extend_from_slice(b"}\n");
        let mut receivers = 0u64;
        if let Some(subs) = self.channels.get(channel) {
            for &sub in subs {
                let Some(client) = self.clients.get_mut(sub) else {
                    continue;
                };
                if client.output.len() > MAX_PENDING {
                    self.to_close.push(sub);
                    continue;
                }
                client.output.extend_from_slice(&frame);
                receivers += 1;
                if !client.dirty {
                    client.dirty = true;
                    self.dirty.push(sub);
                }
            }
        }
        self.frame = frame;
        if memmem::find(line, b"\"ack\":false").is_none() {
            let mut reply = b"{\"command\":\"PUBLISHED\",\"channel\":\"".to_vec();
            reply.extend_from_slice(channel);
            reply.extend_from_slice(b"\",\"receivers\":");
            crate::adapter::push_decimal(&mut reply, receivers);
            reply.extend_from_slice(b"}\n");
            self.reply(key, &reply);
        }
    }

    fn reply(&mut self, key: usize, bytes: &[u8]) {
        if let Some(client) = self.clients.get_mut(key) {
            client.output.extend_from_slice(bytes);
        }
        self.mark_dirty(key);
    }

    /// One write pass over every connection with pending output.
    fn flush_all(&mut self) {
        for key in std::mem::take(&mut self.dirty) {
            let Some(client) = self.clients.get_mut(key) else {
                continue;
            };
            client.dirty = false;
            let mut written = 0;
            while written < client.output.len() {
                match client.stream.write(&client.output[written..]) {
                    Ok(0) => break,
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        self.to_close.push(key);
                        break;
                    }
                }
            }
            client.output.drain(..written);
            // Leftover output waits for the writable event, which marks it dirty again.
        }
    }

    fn close(&mut self, key: usize) {
        if !self.clients.contains(key) {
            return;
        }
        let mut client = self.clients.remove(key);
        // The socket is dropped right after; a failed deregister changes nothing.
        let _ = self.poll.registry().deregister(&mut client.stream);
        for channel in client.channels {
            if let Some(subs) = self.channels.get_mut(&channel) {
                subs.retain(|&k| k != key);
                if subs.is_empty() {
                    self.channels.remove(&channel);
                }
            }
        }
    }
}

/// The text of a string field `key` (given with its quotes), without escapes processing.
fn string_field<'a>(line: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let value = value_start(line, key)?;
    let body = value.strip_prefix(b"\"")?;
    let end = memchr::memchr(b'"', body)?;
    Some(&body[..end])
}

/// The raw JSON text of field `key`'s value: a string (escapes skipped), or any other value
/// up to the `,` or `}` that closes it at depth zero.
fn raw_field<'a>(line: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let value = value_start(line, key)?;
    if value.first() == Some(&b'"') {
        let mut i = 1;
        while i < value.len() {
            match value[i] {
                b'\\' => i += 2,
                b'"' => return Some(&value[..=i]),
                _ => i += 1,
            }
        }
        return None;
    }
    let mut depth = 0i32;
    let mut in_string = false;
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth == 0 => return Some(value[..i].trim_ascii_end()),
                b'}' | b']' => depth -= 1,
                b',' if depth == 0 => return Some(value[..i].trim_ascii_end()),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// The bytes after `key` and its colon, leading whitespace skipped.
fn value_start<'a>(line: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = memmem::find(line, key)? + key.len();
    let rest = line[at..].trim_ascii_start();
    let rest = rest.strip_prefix(b":")?;
    Some(rest.trim_ascii_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_without_parsing() {
        let line =
            br#"{"command":"PUBLISH","channel":"a.b","message":{"x":[1,2],"y":"}"},"ack":false}"#;
        assert_eq!(string_field(line, b"\"command\""), Some(&b"PUBLISH"[..]));
        assert_eq!(string_field(line, b"\"channel\""), Some(&b"a.b"[..]));
        assert_eq!(
            raw_field(line, b"\"message\""),
            Some(&br#"{"x":[1,2],"y":"}"}"#[..])
        );
        let s = br#"{"command" : "PUBLISH", "message" : "q\"uote", "channel":"c"}"#;
        assert_eq!(raw_field(s, b"\"message\""), Some(&br#""q\"uote""#[..]));
        let n = br#"{"command":"PUBLISH","channel":"c","message": 12.50 }"#;
        assert_eq!(raw_field(n, b"\"message\""), Some(&b"12.50"[..]));
        assert_eq!(raw_field(b"{\"message\":\"open", b"\"message\""), None);
    }
}
