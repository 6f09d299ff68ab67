//! The `soak` scenario: a long, modest, mixed load on our broker, then checks that it
//! came back to where it started.
//!
//! For `--duration`, at once: `--clients` churn threads (connect, subscribe exact and
//! wildcard patterns, publish a little, unsubscribe some, then leave by close, half-close
//! or reset with SO_LINGER 0); a publisher of max-size messages (`--max-message` bytes)
//! with one reader that must get every one, and a stream of slow consumers (a small
//! receive buffer, never read) that the broker must cut (`ERROR slow_consumer`: run the
//! broker with a small `--max-pending`); `--flows` checked publisher -> subscriber flows
//! with sequence numbers (each reconnects every [`FLOW_CYCLE`]; within a cycle nothing
//! may be lost, duplicated or reordered); and a PING every 100 ms on a dedicated
//! connection, recording the longest wait for a PONG.
//!
//! At the end, once everything has left: the broker's open fds (`/proc/PID/fd`) equal
//! their baseline, `STATS` shows the baseline connections and an empty router, and RSS
//! comes back within `--rss-tolerance-mib` of its baseline (polled, up to
//! [`RSS_WAIT`]). It prints a summary and fails if any check does.

use super::observe::{clock_seed, mib, rss, sub_seed, Observer};
use super::ScenarioError;
use crate::adapter::Protocol;
use crate::cli::{Args, Target};
use crate::procinfo;
use socket2::{Domain, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Timeout of every blocking socket call.
const IO_WAIT: Duration = Duration::from_secs(5);
/// How often the watchdog pings.
const PING_EVERY: Duration = Duration::from_millis(100);
/// Longest wait for a PONG the run accepts. Generous: the machine is shared.
const PING_BOUND: Duration = Duration::from_secs(2);
/// How long a checked flow keeps one pair of connections before reconnecting both.
const FLOW_CYCLE: Duration = Duration::from_secs(30);
/// Time between max-size messages.
const BIG_EVERY: Duration = Duration::from_millis(500);
/// Time between two slow consumers.
const SLOW_EVERY: Duration = Duration::from_secs(3);
/// Receive buffer of a slow consumer's socket, so the broker's queue for it fills fast.
const SLOW_RCVBUF: usize = 16 * 1024;
/// How long, after the load left, the broker may take to close every connection.
const SETTLE_WAIT: Duration = Duration::from_secs(30);
/// How long RSS may take to come back within the tolerance after the load left.
const RSS_WAIT: Duration = Duration::from_secs(60);
/// Pause between two churn sessions of one thread (the soak is modest by design).
const CHURN_PAUSE_MS: u64 = 20;
/// Default churn threads.
const CHURN_DEFAULT: usize = 4;

/// Counters every thread adds to.
#[derive(Default)]
struct Totals {
    churn_sessions: AtomicU64,
    churn_resets: AtomicU64,
    churn_half_closes: AtomicU64,
    subscribes: AtomicU64,
    unsubscribes: AtomicU64,
    big_published: AtomicU64,
    big_received: AtomicU64,
    big_reader_failures: AtomicU64,
    slow_started: AtomicU64,
    slow_cut: AtomicU64,
    flow_cycles: AtomicU64,
    flow_messages: AtomicU64,
    flow_lost: AtomicU64,
    flow_duplicated: AtomicU64,
    flow_reordered: AtomicU64,
    flow_failures: AtomicU64,
    pings: AtomicU64,
    ping_failures: AtomicU64,
    /// Longest PING -> PONG wait, microseconds.
    ping_max_us: AtomicU64,
    /// Problems worth printing (first few).
    notes: Mutex<Vec<String>>,
}

impl Totals {
    fn note(&self, text: String) {
        if let Ok(mut notes) = self.notes.lock() {
            if notes.len() < 20 {
                notes.push(text);
            }
        }
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// A connection read line by line.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    chunk: Vec<u8>,
}

impl Conn {
    fn connect(target: Target, token: Option<&str>) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&target.addr, IO_WAIT)?;
        Conn::from_stream(stream, token)
    }

    fn from_stream(stream: TcpStream, token: Option<&str>) -> io::Result<Conn> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(IO_WAIT))?;
        let mut c = Conn {
            stream,
            buf: Vec::new(),
            chunk: vec![0; 64 * 1024],
        };
        if let Some(token) = token {
            let hello = serde_json::json!({"command": "HELLO", "token": token});
            c.send(format!("{hello}\n").as_bytes())?;
        }
        Ok(c)
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Hands each complete line to `f` until it returns true (`Ok(true)`). Without a
    /// deadline it reads only what is waiting (`Ok(false)` when nothing more is);
    /// with one, it blocks until then (`Ok(false)` when it passed). EOF is an error.
    fn lines(
        &mut self,
        deadline: Option<Instant>,
        mut f: impl FnMut(&[u8]) -> bool,
    ) -> io::Result<bool> {
        loop {
            let mut at = 0;
            while let Some(end) = memchr::memchr(b'\n', &self.buf[at..]) {
                let stop = f(&self.buf[at..at + end]);
                at += end + 1;
                if stop {
                    self.buf.drain(..at);
                    return Ok(true);
                }
            }
            self.buf.drain(..at);
            let read = match deadline {
                None => {
                    self.stream.set_nonblocking(true)?;
                    let r = self.stream.read(&mut self.chunk);
                    self.stream.set_nonblocking(false)?;
                    r
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(false);
                    }
                    self.stream
                        .set_read_timeout(Some((d - now).max(Duration::from_millis(1))))?;
                    self.stream.read(&mut self.chunk)
                }
            };
            match read {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&self.chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if deadline.is_none() {
                        return Ok(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `line` and waits for a reply whose `command` is `want`, handing every other
    /// line to `other`.
    fn call(&mut self, line: &[u8], want: &str, mut other: impl FnMut(&[u8])) -> io::Result<()> {
        self.send(line)?;
        let tag = format!("\"command\":\"{want}\"");
        let mut refused = None;
        let got = self.lines(Some(Instant::now() + IO_WAIT), |l| {
            if memchr::memmem::find(l, tag.as_bytes()).is_some() {
                return true;
            }
            if l.starts_with(b"{\"command\":\"ERROR\"") {
                refused = Some(String::from_utf8_lossy(l).into_owned());
                return true;
            }
            other(l);
            false
        })?;
        match (got, refused) {
            (_, Some(e)) => Err(io::Error::other(e)),
            (true, None) => Ok(()),
            (false, None) => Err(io::Error::new(io::ErrorKind::TimedOut, "no reply")),
        }
    }
}

/// A run's shared settings.
struct Ctx<'a> {
    target: Target,
    token: Option<&'a str>,
    seed: u64,
    max_message: usize,
    flow_rate: f64,
    stop: &'a AtomicBool,
    totals: &'a Totals,
}

impl Ctx<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps up to `d`, waking early when the run stops.
    fn nap(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.stopped() {
            let now = Instant::now();
            if now >= until {
                return;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }
}

/// Runs the soak; prints the summary; `Ok(true)` when every check passed.
pub fn run(args: &Args, target: Target) -> Result<bool, ScenarioError> {
    if target.protocol != Protocol::Json {
        return Err(ScenarioError::Usage(
            "soak speaks our broker's protocol: use a json:// target".into(),
        ));
    }
    if !(args.flow_rate > 0.0 && args.flow_rate <= 10_000.0) {
        return Err(ScenarioError::Usage(
            "--flow-rate must be above 0 and at most 10000".into(),
        ));
    }
    let churners = args.clients.unwrap_or(CHURN_DEFAULT).clamp(1, 64);
    let flows = args.flows.clamp(1, 64);
    let seed = args.seed.unwrap_or_else(clock_seed);
    let pid = args.broker_pid;
    let duration = Duration::from_secs_f64(args.duration);
    let tolerance = (args.rss_tolerance_mib * 1024.0 * 1024.0) as u64;
    println!(
        "soak: seed {seed}, {:.0} s, {churners} churn threads, {flows} checked flows at {} msg/s, \
         max-size messages of {} bytes, target {target}",
        duration.as_secs_f64(),
        args.flow_rate,
        args.max_message
    );
    let mut obs = Observer::connect(target, args.token.as_deref())?;
    let base = obs.stats()?;
    let base_fds = pid.and_then(procinfo::pid_open_fds);
    let base_rss = rss(pid);
    println!(
        "baseline: rss {} MiB, fds {}, connections {}, exact_channels {}, wildcard_subscriptions {}",
        base_rss.map_or("?".into(), mib),
        base_fds.map_or("?".into(), |n| n.to_string()),
        base.connections,
        base.exact_channels,
        base.wildcard_subscriptions
    );

    let stop = AtomicBool::new(false);
    let totals = Totals::default();
    let ctx = Ctx {
        target,
        token: args.token.as_deref(),
        seed,
        max_message: args.max_message.max(1),
        flow_rate: args.flow_rate,
        stop: &stop,
        totals: &totals,
    };
    let started = Instant::now();
    let mut peak_rss = base_rss;
    let mut peak_conns = base.connections;
    std::thread::scope(|scope| {
        let ctx = &ctx;
        scope.spawn(move || watchdog(ctx));
        scope.spawn(move || big_messages(ctx));
        scope.spawn(move || slow_consumers(ctx));
        for i in 0..flows {
            scope.spawn(move || flow(ctx, i));
        }
        for i in 0..churners {
            scope.spawn(move || churn(ctx, i));
        }
        let mut next_report = started + Duration::from_secs(60);
        while started.elapsed() < duration {
            std::thread::sleep(Duration::from_millis(250));
            peak_rss = peak_rss.max(rss(pid));
            if Instant::now() >= next_report {
                next_report += Duration::from_secs(60);
                let c = obs.stats().ok();
                peak_conns = peak_conns.max(c.map_or(0, |c| c.connections));
                println!(
                    "  {:>5.0} s: rss {} MiB, fds {}, connections {}, flow messages {}, churn sessions {}, slow consumers cut {}, longest PONG wait {} ms",
                    started.elapsed().as_secs_f64(),
                    rss(pid).map_or("?".into(), mib),
                    pid.and_then(procinfo::pid_open_fds).map_or("?".into(), |n| n.to_string()),
                    c.map_or("?".into(), |c| c.connections.to_string()),
                    get(&totals.flow_messages),
                    get(&totals.churn_sessions),
                    get(&totals.slow_cut),
                    get(&totals.ping_max_us) / 1000,
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
    });

    // Everything has left: check the broker came back.
    let (after, settled) = obs.wait_until(SETTLE_WAIT, |c| {
        c.connections <= base.connections && c.router_empty()
    })?;
    std::thread::sleep(Duration::from_secs_f64(args.drain));
    let fds = pid.and_then(procinfo::pid_open_fds);
    let rss_bound = base_rss.map(|b| b + tolerance);
    let rss_deadline = Instant::now() + RSS_WAIT;
    let mut end_rss = rss(pid);
    while let (Some(now), Some(bound)) = (end_rss, rss_bound) {
        if now <= bound || Instant::now() >= rss_deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        end_rss = rss(pid);
    }
    let final_stats = obs.stats()?;

    let t = &totals;
    let mut failed = Vec::new();
    if !settled {
        failed.push(format!(
            "STATS after the load: connections {} (baseline {}), exact_channels {}, wildcard_subscriptions {}",
            after.connections, base.connections, after.exact_channels, after.wildcard_subscriptions
        ));
    }
    if let (Some(b), Some(f)) = (base_fds, fds) {
        if f != b {
            failed.push(format!("open fds {f}, baseline {b}"));
        }
    }
    if let (Some(now), Some(bound)) = (end_rss, rss_bound) {
        if now > bound {
            failed.push(format!(
                "rss {} MiB after {} s, above baseline + {} MiB",
                mib(now),
                RSS_WAIT.as_secs(),
                args.rss_tolerance_mib
            ));
        }
    }
    let flow_bad = get(&t.flow_lost) + get(&t.flow_duplicated) + get(&t.flow_reordered);
    if flow_bad > 0 || get(&t.flow_failures) > 0 || get(&t.flow_messages) == 0 {
        failed.push("checked flows".into());
    }
    if get(&t.big_published) == 0 || get(&t.big_reader_failures) > 0 {
        failed.push("max-size messages".into());
    }
    let ping_max = Duration::from_micros(get(&t.ping_max_us));
    if ping_max > PING_BOUND || get(&t.ping_failures) > 0 {
        failed.push(format!(
            "PING: longest wait {} ms (bound {} ms), failures {}",
            ping_max.as_millis(),
            PING_BOUND.as_millis(),
            get(&t.ping_failures)
        ));
    }
    if get(&t.slow_started) > 0 && get(&t.slow_cut) == 0 {
        failed.push("no slow consumer was cut (is --max-pending small?)".into());
    }

    println!(
        "soak summary (seed {seed}, {:.0} s):",
        duration.as_secs_f64()
    );
    println!(
        "  churn: {} sessions ({} resets, {} half-closes), {} subscribes, {} unsubscribes",
        get(&t.churn_sessions),
        get(&t.churn_resets),
        get(&t.churn_half_closes),
        get(&t.subscribes),
        get(&t.unsubscribes)
    );
    println!(
        "  checked flows: {} cycles, {} messages, lost {}, duplicated {}, reordered {}, connection failures {}",
        get(&t.flow_cycles),
        get(&t.flow_messages),
        get(&t.flow_lost),
        get(&t.flow_duplicated),
        get(&t.flow_reordered),
        get(&t.flow_failures)
    );
    println!(
        "  max-size messages: {} published, {} received by the reader (reader failures {})",
        get(&t.big_published),
        get(&t.big_received),
        get(&t.big_reader_failures)
    );
    println!(
        "  slow consumers: {} started, {} cut with ERROR slow_consumer (broker counted {})",
        get(&t.slow_started),
        get(&t.slow_cut),
        final_stats.slow_consumer.saturating_sub(base.slow_consumer)
    );
    println!(
        "  PING: {} answered, longest wait {} ms (bound {} ms), failures {}",
        get(&t.pings),
        ping_max.as_millis(),
        PING_BOUND.as_millis(),
        get(&t.ping_failures)
    );
    println!(
        "  broker: connections peak {} (sampled each minute), closed {}; rss baseline {} MiB, peak {} MiB, end {} MiB (tolerance {} MiB); fds baseline {}, end {}",
        peak_conns,
        final_stats.closed.saturating_sub(base.closed),
        base_rss.map_or("?".into(), mib),
        peak_rss.map_or("?".into(), mib),
        end_rss.map_or("?".into(), mib),
        args.rss_tolerance_mib,
        base_fds.map_or("?".into(), |n| n.to_string()),
        fds.map_or("?".into(), |n| n.to_string()),
    );
    println!(
        "  end STATS: connections {}, exact_channels {}, wildcard_subscriptions {}",
        final_stats.connections, final_stats.exact_channels, final_stats.wildcard_subscriptions
    );
    if let Ok(notes) = t.notes.lock() {
        for n in notes.iter() {
            println!("  note: {n}");
        }
    }
    if failed.is_empty() {
        println!("soak: every check passed");
    } else {
        for f in &failed {
            println!("soak: FAILED: {f}");
        }
    }
    Ok(failed.is_empty())
}

/// PING every [`PING_EVERY`] on one connection; records the longest wait for PONG.
fn watchdog(ctx: &Ctx<'_>) {
    let t = ctx.totals;
    let mut conn = match Conn::connect(ctx.target, ctx.token) {
        Ok(c) => c,
        Err(e) => {
            add(&t.ping_failures, 1);
            t.note(format!("watchdog connect: {e}"));
            return;
        }
    };
    while !ctx.stopped() {
        let t0 = Instant::now();
        match conn.call(b"{\"command\":\"PING\"}\n", "PONG", |_| {}) {
            Ok(()) => {
                add(&t.pings, 1);
                t.ping_max_us
                    .fetch_max(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                add(&t.ping_failures, 1);
                t.note(format!("PING: {e}"));
                return;
            }
        }
        ctx.nap(PING_EVERY.saturating_sub(t0.elapsed()));
    }
}

/// A max-size message every [`BIG_EVERY`] on `soak.big`; one reader must get each.
fn big_messages(ctx: &Ctx<'_>) {
    let t = ctx.totals;
    let run = || -> io::Result<()> {
        let mut reader = Conn::connect(ctx.target, ctx.token)?;
        reader.call(
            b"{\"command\":\"SUBSCRIBE\",\"channel\":\"soak.big\"}\n",
            "SUBSCRIBED",
            |_| {},
        )?;
        let mut publisher = Conn::connect(ctx.target, ctx.token)?;
        let mut frame = Vec::with_capacity(ctx.max_message + 100);
        let mut got = 0u64;
        let mut sent = 0u64;
        let mut count = |l: &[u8]| {
            if l.starts_with(b"{\"command\":\"MESSAGE\"") {
                got += 1;
            }
            false
        };
        while !ctx.stopped() {
            frame.clear();
            frame.extend_from_slice(
                b"{\"command\":\"PUBLISH\",\"channel\":\"soak.big\",\"ack\":false,\"message\":\"",
            );
            let fill = b'a' + (sent % 26) as u8;
            frame.resize(frame.len() + ctx.max_message, fill);
            frame.extend_from_slice(b"\"}\n");
            publisher.send(&frame)?;
            sent += 1;
            add(&t.big_published, 1);
            let until = Instant::now() + BIG_EVERY;
            while Instant::now() < until && !ctx.stopped() {
                reader.lines(None, &mut count)?;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // Barrier: the publisher's PONG means every publish was handled; the reader's
        // PONG then follows every MESSAGE it is owed.
        publisher.call(b"{\"command\":\"PING\"}\n", "PONG", |_| {})?;
        reader.call(b"{\"command\":\"PING\"}\n", "PONG", |l| {
            count(l);
        })?;
        add(&t.big_received, got);
        if got != sent {
            add(&t.big_reader_failures, 1);
            t.note(format!("max-size reader got {got} of {sent}"));
        }
        Ok(())
    };
    if let Err(e) = run() {
        add(&t.big_reader_failures, 1);
        t.note(format!("max-size messages: {e}"));
    }
}

/// Every [`SLOW_EVERY`], a subscriber of `soak.big` with a small receive buffer that
/// reads nothing for a while, then reads to the end: the broker must have cut it.
fn slow_consumers(ctx: &Ctx<'_>) {
    let t = ctx.totals;
    while !ctx.stopped() {
        let one = || -> io::Result<bool> {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
            socket.set_recv_buffer_size(SLOW_RCVBUF)?;
            socket.connect_timeout(&ctx.target.addr.into(), IO_WAIT)?;
            let mut conn = Conn::from_stream(socket.into(), ctx.token)?;
            conn.send(b"{\"command\":\"SUBSCRIBE\",\"channel\":\"soak.big\"}\n")?;
            ctx.nap(SLOW_EVERY);
            if ctx.stopped() {
                return Ok(false); // cut short by the end of the run: not counted
            }
            add(&t.slow_started, 1);
            let mut cut = false;
            let until = Instant::now() + IO_WAIT;
            let r = conn.lines(Some(until), |l| {
                if memchr::memmem::find(l, b"\"code\":\"slow_consumer\"").is_some() {
                    cut = true;
                }
                false
            });
            match r {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(cut),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(cut),
                Err(e) => Err(e),
                Ok(_) => Ok(cut),
            }
        };
        match one() {
            Ok(true) => add(&t.slow_cut, 1),
            Ok(false) => {}
            Err(e) => t.note(format!("slow consumer: {e}")),
        }
    }
}

/// A checked flow: a publisher and a subscriber on `soak.flow.I.x` (the subscriber
/// alternates between the exact channel and `soak.flow.I.*`), reconnected every
/// [`FLOW_CYCLE`]. Each message carries a sequence number; within a cycle the subscriber
/// must receive 0, 1, 2, ... with nothing missing, repeated or out of order.
fn flow(ctx: &Ctx<'_>, i: usize) {
    let t = ctx.totals;
    let gap = Duration::from_secs_f64(1.0 / ctx.flow_rate);
    let mut cycle = 0u64;
    while !ctx.stopped() {
        cycle += 1;
        let pattern = if cycle.is_multiple_of(2) {
            format!("soak.flow.{i}.*")
        } else {
            format!("soak.flow.{i}.x")
        };
        let one = || -> io::Result<()> {
            let mut sub = Conn::connect(ctx.target, ctx.token)?;
            sub.call(
                format!("{{\"command\":\"SUBSCRIBE\",\"channel\":\"{pattern}\"}}\n").as_bytes(),
                "SUBSCRIBED",
                |_| {},
            )?;
            let mut publ = Conn::connect(ctx.target, ctx.token)?;
            let mut next = 0u64;
            let mut check = |l: &[u8]| {
                if !l.starts_with(b"{\"command\":\"MESSAGE\"") {
                    return false;
                }
                let v: serde_json::Value = serde_json::from_slice(l).unwrap_or_default();
                let Some(seq) = v["message"].as_u64() else {
                    t.note(format!("flow {i}: unreadable MESSAGE"));
                    add(&t.flow_lost, 1);
                    return false;
                };
                match seq.cmp(&next) {
                    std::cmp::Ordering::Equal => next += 1,
                    std::cmp::Ordering::Greater => {
                        add(&t.flow_lost, seq - next);
                        t.note(format!("flow {i}: expected {next}, got {seq}"));
                        next = seq + 1;
                    }
                    std::cmp::Ordering::Less => {
                        add(&t.flow_duplicated, 1);
                        add(&t.flow_reordered, 1);
                        t.note(format!("flow {i}: {seq} after {next}"));
                    }
                }
                add(&t.flow_messages, 1);
                false
            };
            let end = Instant::now() + FLOW_CYCLE;
            let mut sent = 0u64;
            let mut due = Instant::now();
            while Instant::now() < end && !ctx.stopped() {
                publ.send(
                    format!("{{\"command\":\"PUBLISH\",\"channel\":\"soak.flow.{i}.x\",\"message\":{sent},\"ack\":false}}\n")
                        .as_bytes(),
                )?;
                sent += 1;
                sub.lines(None, &mut check)?;
                due += gap;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            publ.call(b"{\"command\":\"PING\"}\n", "PONG", |_| {})?;
            sub.call(b"{\"command\":\"PING\"}\n", "PONG", |l| {
                check(l);
            })?;
            if next != sent {
                add(&t.flow_lost, sent.saturating_sub(next));
                t.note(format!("flow {i} cycle {cycle}: received {next} of {sent}"));
            }
            add(&t.flow_cycles, 1);
            Ok(())
        };
        if let Err(e) = one() {
            add(&t.flow_failures, 1);
            t.note(format!("flow {i}: {e}"));
            ctx.nap(Duration::from_secs(1));
        }
    }
}

/// Churn: connect, subscribe a few exact and wildcard patterns, publish a little,
/// unsubscribe some, leave by close, half-close or reset.
fn churn(ctx: &Ctx<'_>, i: usize) {
    let t = ctx.totals;
    let mut rng = fastrand::Rng::with_seed(sub_seed(ctx.seed, 0, i as u64));
    while !ctx.stopped() {
        let mut one = || -> io::Result<()> {
            let mut c = Conn::connect(ctx.target, ctx.token)?;
            add(&t.churn_sessions, 1);
            let mut patterns = Vec::new();
            for _ in 0..rng.usize(1..20) {
                let p = match rng.u8(..6) {
                    0 => format!("soak.c.{}.*", rng.u8(..10)),
                    1 => format!("soak.c.{}.>", rng.u8(..10)),
                    2 => "soak.c.*.x".to_string(),
                    _ => format!("soak.c.{}.{}", rng.u8(..10), rng.u16(..1000)),
                };
                c.send(format!("{{\"command\":\"SUBSCRIBE\",\"channel\":\"{p}\"}}\n").as_bytes())?;
                add(&t.subscribes, 1);
                patterns.push(p);
            }
            for _ in 0..rng.usize(0..10) {
                let n = rng.usize(1..2000);
                let msg: String = std::iter::repeat_with(|| rng.alphanumeric())
                    .take(n)
                    .collect();
                c.send(
                    format!(
                        "{{\"command\":\"PUBLISH\",\"channel\":\"soak.c.{}.x\",\"message\":\"{msg}\",\"ack\":false}}\n",
                        rng.u8(..10)
                    )
                    .as_bytes(),
                )?;
            }
            for p in patterns.iter().filter(|_| rng.bool()) {
                c.send(
                    format!("{{\"command\":\"UNSUBSCRIBE\",\"channel\":\"{p}\"}}\n").as_bytes(),
                )?;
                add(&t.unsubscribes, 1);
            }
            if rng.bool() {
                c.call(b"{\"command\":\"PING\"}\n", "PONG", |_| {})?;
            }
            match rng.u8(..3) {
                0 => {}
                1 => {
                    add(&t.churn_half_closes, 1);
                    c.stream.shutdown(Shutdown::Write)?;
                    let _ = c.lines(Some(Instant::now() + IO_WAIT), |_| false);
                }
                _ => {
                    add(&t.churn_resets, 1);
                    socket2::SockRef::from(&c.stream).set_linger(Some(Duration::ZERO))?;
                }
            }
            Ok(())
        };
        if let Err(e) = one() {
            t.note(format!("churn: {e}"));
        }
        ctx.nap(Duration::from_millis(rng.u64(..=2 * CHURN_PAUSE_MS)));
    }
}
