//! Memory that is never given back (issue 9): after hostile load leaves, the broker's
//! resident memory must come back near where it started.
//!
//! The load is a fixed amount of work, not a length of time: every loader thread
//! publishes large messages (64 KB to 700 KB, cut at random offsets so the broker holds
//! unfinished frames) to a subscriber that never reads, so the broker queues them all;
//! it mixes in malformed large lines, small messages (the write queue's pooled chunks),
//! and a connection that leaves in the middle of a frame. Once every loader has its
//! PONG, the broker provably holds the load (checked: RSS well above the bound). Then
//! every connection goes (resets and half-closes), and the test polls RSS until it is
//! within [`TOLERANCE_KIB`] of the baseline or [`RETURN_DEADLINE`] passes. Polling, not
//! a sleep: a fast machine passes at once, a slow one gets the whole deadline.
//!
//! With glibc's malloc this failed: the freed memory stayed resident (a fragmented heap
//! and a raised mmap threshold), 94 MiB above the baseline two minutes later. `MEMORY_RETURN_BROKER=/path/to/broker` runs the test against another build.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::{Broker, Conn};

/// Loader threads, each with its own channel, deaf subscriber and publisher.
const LOADERS: usize = 6;
/// Large lines each loader sends (about 380 KB on average; three in four are messages
/// its deaf subscriber is owed: ~18 MB per loader).
const LARGE_MESSAGES: usize = 64;
/// Small messages each loader publishes (copied into pooled 16 KiB chunks).
const SMALL_MESSAGES: usize = 2_000;
/// How far above its baseline the broker's RSS may stay once the load has left: room
/// for the write-queue pool's idle chunks (about 1 MiB with this load) and the
/// allocator's caches. Measured: jemalloc came back to +2 MiB within 21 s, glibc stayed
/// at +94 MiB of the ~100 MiB the load makes the broker hold.
const TOLERANCE_KIB: u64 = 8 * 1024;
/// How long RSS may take to come back (jemalloc returns freed pages about ten seconds
/// after the broker goes quiet). A failure guard, not a pacing device.
const RETURN_DEADLINE: Duration = Duration::from_secs(120);
/// How long the broker may take to close every loader connection.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);
/// Every socket call's timeout: a broken broker fails the test instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The broker under test (`MEMORY_RETURN_BROKER=path` runs another build), killed when
/// dropped.
fn start_broker() -> Broker {
    Broker::builder()
        .program(std::env::var("MEMORY_RETURN_BROKER").ok())
        // The deaf subscribers must hold their queues until the test measures, however
        // slowly a loaded machine writes the load: no write deadline within the test.
        .args(&["--log-level", "error", "--write-deadline", "60m"])
        .start()
}

/// A small deterministic generator (xorshift64*), so every run does the same work.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo) as u64) as usize
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Writes `bytes` in pieces cut at random offsets.
fn write_split(s: &mut TcpStream, rng: &mut Rng, bytes: &[u8]) {
    let mut at = 0;
    while at < bytes.len() {
        let n = rng.range(1, (bytes.len() - at).min(256 * 1024) + 1);
        s.write_all(&bytes[at..at + n]).expect("write to broker");
        at += n;
    }
}

/// Reads lines until one holds `needle`.
fn read_until(r: &mut BufReader<TcpStream>, needle: &str) {
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line).expect("read from broker");
        assert!(n > 0, "broker closed the connection before {needle}");
        if line.contains(needle) {
            return;
        }
    }
}

/// A subscriber of `channel` whose receive buffer is small and which never reads
/// again, so the broker keeps what it owes it.
fn deaf_subscriber(addr: SocketAddr, channel: &str) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut w = s.try_clone().unwrap();
    w.write_all(format!("{{\"command\":\"SUBSCRIBE\",\"channel\":\"{channel}\"}}\n").as_bytes())
        .unwrap();
    read_until(&mut BufReader::new(s.try_clone().unwrap()), "SUBSCRIBED");
    s
}

/// One loader's work; waits at `loaded` (holding its connections) until the main
/// thread has measured, then leaves.
fn load(addr: SocketAddr, i: usize, loaded: &Barrier, measured: &Barrier) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1));
    let channel = format!("mem.{i}");
    let deaf = deaf_subscriber(addr, &channel);
    let mut publisher = connect(addr);
    let mut replies = BufReader::new(publisher.try_clone().unwrap());
    let mut frame = Vec::new();
    for n in 0..LARGE_MESSAGES {
        let size = rng.range(64_000, 700_000);
        frame.clear();
        if n % 4 == 3 {
            // Malformed: a large line that is not JSON (answered with bad_json).
            frame.resize(size, b'z');
        } else {
            frame.extend_from_slice(
                format!("{{\"command\":\"PUBLISH\",\"channel\":\"{channel}\",\"ack\":false,\"message\":\"")
                    .as_bytes(),
            );
            frame.resize(frame.len() + size, b'a' + (n % 26) as u8);
            frame.extend_from_slice(b"\"}");
        }
        frame.push(b'\n');
        write_split(&mut publisher, &mut rng, &frame);
    }
    let mut small = Vec::new();
    for n in 0..SMALL_MESSAGES {
        small.extend_from_slice(
            format!("{{\"command\":\"PUBLISH\",\"channel\":\"{channel}\",\"ack\":false,\"message\":{n}}}\n")
                .as_bytes(),
        );
    }
    write_split(&mut publisher, &mut rng, &small);
    // Half of a large frame, left unfinished on a connection of its own.
    let mut unfinished = connect(addr);
    frame.clear();
    frame.extend_from_slice(b"{\"command\":\"PUBLISH\",\"channel\":\"mem.x\",\"message\":\"");
    frame.resize(frame.len() + rng.range(100_000, 900_000), b'q');
    write_split(&mut unfinished, &mut rng, &frame);
    // The PONG comes after every frame above was handled: the broker holds the load.
    publisher.write_all(b"{\"command\":\"PING\"}\n").unwrap();
    read_until(&mut replies, "PONG");
    loaded.wait();
    measured.wait();
    // Leave: the deaf subscriber resets, the publisher half-closes, the unfinished
    // frame's connection resets or just closes.
    socket2::SockRef::from(&deaf)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(deaf);
    publisher.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut replies, &mut rest);
    if i.is_multiple_of(2) {
        socket2::SockRef::from(&unfinished)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    drop(unfinished);
}

/// Polls `STATS` until only `conn` is connected and the router is empty.
fn wait_for_empty_broker(conn: &mut Conn) -> serde_json::Value {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        let stats = conn.request("{\"command\":\"STATS\"}");
        let router = &stats["router"];
        if stats["connections"] == 1
            && router["exact_channels"] == 0
            && router["wildcard_subscriptions"] == 0
        {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "the load's connections did not go away: {stats}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn memory_is_given_back_after_hostile_load_leaves() {
    let broker = start_broker();
    let broker_addr: SocketAddr = broker.addr().parse().expect("address");
    let mut observer = Conn::connect(broker_addr);
    observer.ping();
    let baseline = broker.rss_kib();
    let bound = baseline + TOLERANCE_KIB;

    let loaded = Barrier::new(LOADERS + 1);
    let measured = Barrier::new(LOADERS + 1);
    let held = std::thread::scope(|scope| {
        for i in 0..LOADERS {
            let (addr, loaded, measured) = (broker_addr, &loaded, &measured);
            scope.spawn(move || load(addr, i, loaded, measured));
        }
        loaded.wait();
        let held = broker.rss_kib();
        measured.wait();
        held
    });
    // The load was real: the broker held far more than the bound allows afterwards.
    assert!(
        held > baseline + 4 * TOLERANCE_KIB,
        "the load did not show in RSS: baseline {baseline} KiB, loaded {held} KiB"
    );

    wait_for_empty_broker(&mut observer);
    let left = Instant::now();
    let deadline = left + RETURN_DEADLINE;
    let mut now = broker.rss_kib();
    while now > bound && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        now = broker.rss_kib();
    }
    eprintln!(
        "broker RSS: baseline {baseline} KiB, loaded {held} KiB, {now} KiB {:.1} s after the load left",
        left.elapsed().as_secs_f64()
    );
    assert!(
        now <= bound,
        "RSS stayed at {now} KiB after the load left: baseline {baseline} KiB, loaded \
         {held} KiB, allowed {TOLERANCE_KIB} KiB above the baseline (waited {RETURN_DEADLINE:?})"
    );
    // Still serving.
    observer.ping();
}
