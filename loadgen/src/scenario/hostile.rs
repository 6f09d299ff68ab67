//! The `hostile` scenario: `--clients` randomized clients (one thread each) throw valid
//! and invalid frames at our broker for `--duration`, then all leave; `--rounds` times.
//! After each round it waits until `STATS` shows only its observer connection and an
//! empty router, waits `--drain` seconds more, and prints the broker's RSS
//! (`--broker-pid`), so memory the broker keeps after load leaves shows up round by round.
//!
//! Every client's actions come from a seeded RNG (the run's seed is printed; `--seed`
//! replays it). A client's session mixes PUBLISH of messages up to `--max-message` bytes,
//! SUBSCRIBE and UNSUBSCRIBE of exact and wildcard patterns (sometimes hundreds in one
//! write), PING, STATS and HELLO with malformed lines of every kind; it writes each frame
//! cut at random offsets, sometimes never reads (so the broker cuts it as a slow
//! consumer), and ends by closing, half-closing, resetting (RST), or leaving in the middle
//! of a frame. Bounded: every socket call has a timeout, every loop a deadline, and only
//! 127.0.0.x targets are accepted.

use super::observe::{clock_seed, mib, rss, sub_seed, Counters, Observer};
use super::ScenarioError;
use crate::adapter::Protocol;
use crate::cli::{Args, Target};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Default number of hostile clients.
const CLIENTS_DEFAULT: usize = 12;
/// Most hostile clients one run may start (one thread each).
const CLIENTS_MAX: usize = 1000;
/// Timeout of every blocking socket call a hostile client makes.
const IO_WAIT: Duration = Duration::from_secs(2);
/// How long a half-closed client waits for the broker's end of stream.
const HALF_CLOSE_WAIT: Duration = Duration::from_secs(3);
/// How long, after a round, the broker may take to close every hostile connection and
/// empty its router (its own close grace is 2 s).
const SETTLE_WAIT: Duration = Duration::from_secs(30);
/// Frames in one session, at most.
const SESSION_FRAMES_MAX: usize = 200;

/// What one hostile client did in a round.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Connections opened.
    pub sessions: u64,
    /// Connections that could not be opened.
    pub connect_failed: u64,
    /// Frames written (whole or in pieces).
    pub frames: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Sessions the broker ended first (our write or read failed, or EOF).
    pub ended_by_broker: u64,
    /// Sessions ended with a reset (SO_LINGER 0).
    pub resets: u64,
    /// Sessions ended with a half-close.
    pub half_closes: u64,
    /// Sessions ended in the middle of a frame.
    pub mid_frame: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.sessions += o.sessions;
        self.connect_failed += o.connect_failed;
        self.frames += o.frames;
        self.bytes_out += o.bytes_out;
        self.bytes_in += o.bytes_in;
        self.ended_by_broker += o.ended_by_broker;
        self.resets += o.resets;
        self.half_closes += o.half_closes;
        self.mid_frame += o.mid_frame;
    }
}

/// Settings of a hostile run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The broker (json:// only).
    pub target: Target,
    /// `--token` for `HELLO`.
    pub token: Option<String>,
    /// Hostile clients per round.
    pub clients: usize,
    /// Length of one round.
    pub duration: Duration,
    /// Rounds.
    pub rounds: usize,
    /// The run's seed.
    pub seed: u64,
    /// Largest message published (bytes of the JSON string's content).
    pub max_message: usize,
}

impl Settings {
    /// From the command line.
    pub fn from_args(args: &Args, target: Target) -> Result<Settings, ScenarioError> {
        if target.protocol != Protocol::Json {
            return Err(ScenarioError::Usage(
                "hostile speaks our broker's protocol: use a json:// target".into(),
            ));
        }
        let clients = args.clients.unwrap_or(CLIENTS_DEFAULT);
        if !(1..=CLIENTS_MAX).contains(&clients) {
            return Err(ScenarioError::Usage(format!(
                "--clients must be 1 to {CLIENTS_MAX} for hostile"
            )));
        }
        if args.rounds == 0 {
            return Err(ScenarioError::Usage("--rounds must be at least 1".into()));
        }
        Ok(Settings {
            target,
            token: args.token.clone(),
            clients,
            duration: Duration::from_secs_f64(args.duration),
            rounds: args.rounds,
            seed: args.seed.unwrap_or_else(clock_seed),
            max_message: args.max_message.max(1),
        })
    }
}

/// Runs the rounds and prints one line per round; returns whether every round ended
/// with the broker back to one connection (the observer) and an empty router.
pub fn run(args: &Args, target: Target) -> Result<bool, ScenarioError> {
    let s = Settings::from_args(args, target)?;
    let pid = args.broker_pid;
    let settle = Duration::from_secs_f64(args.drain);
    println!(
        "hostile: seed {} ({} clients, {:.1} s per round, {} rounds, messages up to {} bytes, target {})",
        s.seed,
        s.clients,
        s.duration.as_secs_f64(),
        s.rounds,
        s.max_message,
        s.target
    );
    let mut obs = Observer::connect(s.target, s.token.as_deref())?;
    let before = obs.stats()?;
    let baseline = rss(pid);
    println!(
        "baseline: rss {} MiB, connections {}, exact_channels {}, wildcard_subscriptions {}",
        baseline.map_or("?".into(), mib),
        before.connections,
        before.exact_channels,
        before.wildcard_subscriptions
    );
    let mut ok = true;
    let mut per_round = Vec::new();
    for round in 0..s.rounds {
        let (tally, peak) = run_round(&s, round as u64, pid);
        let (after, settled) = obs.wait_until(SETTLE_WAIT, |c| {
            c.connections <= before.connections && c.router_empty()
        })?;
        std::thread::sleep(settle);
        let now = rss(pid);
        per_round.push(now);
        ok &= settled;
        print_round(round, s.rounds, now, peak, &after, &tally, settled);
    }
    let figures: Vec<String> = per_round
        .iter()
        .map(|r| r.map_or("?".into(), mib))
        .collect();
    println!(
        "rss per round (MiB): {} (baseline {})",
        figures.join(" "),
        baseline.map_or("?".into(), mib)
    );
    Ok(ok)
}

fn print_round(
    round: usize,
    rounds: usize,
    now: Option<u64>,
    peak: Option<u64>,
    c: &Counters,
    t: &Tally,
    settled: bool,
) {
    println!(
        "round {}/{}: rss {} MiB (peak {}), connections {}, exact_channels {}, wildcard_subscriptions {}{}, \
         slow_consumer {} (total); sessions {}, frames {}, {} MiB out, {} MiB in, ended by broker {}, resets {}, half-closes {}, mid-frame {}, connect failures {}",
        round + 1,
        rounds,
        now.map_or("?".into(), mib),
        peak.map_or("?".into(), mib),
        c.connections,
        c.exact_channels,
        c.wildcard_subscriptions,
        if settled { "" } else { " (NOT SETTLED)" },
        c.slow_consumer,
        t.sessions,
        t.frames,
        mib(t.bytes_out),
        mib(t.bytes_in),
        t.ended_by_broker,
        t.resets,
        t.half_closes,
        t.mid_frame,
        t.connect_failed,
    );
}

/// One round: every client on its own thread until the round's deadline. Returns the
/// clients' tallies summed and the highest RSS sampled meanwhile.
pub fn run_round(s: &Settings, round: u64, pid: Option<u32>) -> (Tally, Option<u64>) {
    let deadline = Instant::now() + s.duration;
    let mut peak = rss(pid);
    let tallies = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..s.clients)
            .map(|i| {
                let mut client = Hostile {
                    rng: fastrand::Rng::with_seed(sub_seed(s.seed, round, i as u64)),
                    settings: s,
                    deadline,
                    tally: Tally::default(),
                    buf: vec![0; 64 * 1024],
                };
                scope.spawn(move || {
                    client.run();
                    client.tally
                })
            })
            .collect();
        while handles.iter().any(|h| !h.is_finished()) {
            std::thread::sleep(Duration::from_millis(100));
            peak = peak.max(rss(pid));
        }
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect::<Vec<_>>()
    });
    let mut total = Tally::default();
    for t in &tallies {
        total.add(t);
    }
    (total, peak)
}

/// One hostile client.
struct Hostile<'a> {
    rng: fastrand::Rng,
    settings: &'a Settings,
    deadline: Instant,
    tally: Tally,
    buf: Vec<u8>,
}

/// Why a session stopped early.
struct Ended;

impl From<io::Error> for Ended {
    fn from(_: io::Error) -> Ended {
        Ended
    }
}

impl Hostile<'_> {
    fn run(&mut self) {
        while Instant::now() < self.deadline {
            match TcpStream::connect_timeout(&self.settings.target.addr, IO_WAIT) {
                Ok(stream) => {
                    self.tally.sessions += 1;
                    if self.session(&stream).is_err() {
                        self.tally.ended_by_broker += 1;
                    }
                }
                Err(_) => {
                    self.tally.connect_failed += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// One connection's life: random frames, then a random way of leaving.
    fn session(&mut self, stream: &TcpStream) -> Result<(), Ended> {
        stream.set_write_timeout(Some(IO_WAIT))?;
        stream.set_read_timeout(Some(IO_WAIT))?;
        stream.set_nodelay(self.rng.bool())?;
        // One session in ten never reads: the broker's queue for it grows until the
        // broker cuts it (or the session ends first).
        let deaf = self.rng.u8(..10) == 0;
        if let Some(token) = &self.settings.token {
            let hello = serde_json::json!({"command": "HELLO", "token": token});
            self.send_split(stream, format!("{hello}\n").as_bytes())?;
        }
        if deaf {
            // Everyone's messages pile up in this connection's queue.
            self.send_split(stream, b"{\"command\":\"SUBSCRIBE\",\"channel\":\"h.>\"}\n")?;
        }
        let frames = self.rng.usize(1..=SESSION_FRAMES_MAX);
        for _ in 0..frames {
            if Instant::now() >= self.deadline {
                break;
            }
            let frame = self.frame();
            self.send_split(stream, &frame)?;
            self.tally.frames += 1;
            if !deaf {
                self.drain(stream)?;
            }
        }
        match self.rng.u8(..5) {
            0 => {} // plain close
            1 => {
                self.tally.half_closes += 1;
                stream.shutdown(Shutdown::Write)?;
                self.read_to_eof(stream);
            }
            2 => {
                self.tally.resets += 1;
                socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO))?;
            }
            _ => {
                // Leave in the middle of a frame, by a close or a reset.
                self.tally.mid_frame += 1;
                let frame = self.frame();
                let cut = self.rng.usize(..frame.len().max(1));
                self.write(stream, &frame[..cut])?;
                if self.rng.bool() {
                    self.tally.resets += 1;
                    socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO))?;
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, stream: &TcpStream, bytes: &[u8]) -> Result<(), Ended> {
        (&*stream).write_all(bytes)?;
        self.tally.bytes_out += bytes.len() as u64;
        Ok(())
    }

    /// Writes `frame` in up to 16 pieces cut at random offsets, sometimes pausing
    /// between pieces (so the broker holds an unfinished frame for a while).
    fn send_split(&mut self, stream: &TcpStream, frame: &[u8]) -> Result<(), Ended> {
        if self.rng.bool() {
            return self.write(stream, frame);
        }
        let pieces = self.rng.usize(2..=16);
        let mut cuts: Vec<usize> = (1..pieces)
            .map(|_| self.rng.usize(..=frame.len()))
            .collect();
        cuts.push(0);
        cuts.push(frame.len());
        cuts.sort_unstable();
        for w in cuts.windows(2) {
            self.write(stream, &frame[w[0]..w[1]])?;
            if self.rng.u8(..10) == 0 {
                std::thread::sleep(Duration::from_micros(self.rng.u64(..2000)));
            }
        }
        Ok(())
    }

    /// Reads whatever is waiting, without blocking. EOF or an error ends the session.
    fn drain(&mut self, stream: &TcpStream) -> Result<(), Ended> {
        stream.set_nonblocking(true)?;
        let result = loop {
            match (&*stream).read(&mut self.buf) {
                Ok(0) => break Err(Ended),
                Ok(n) => self.tally.bytes_in += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break Err(Ended),
            }
        };
        stream.set_nonblocking(false)?;
        result
    }

    /// After a half-close: reads until the broker's end of stream, bounded in time.
    fn read_to_eof(&mut self, stream: &TcpStream) {
        let until = Instant::now() + HALF_CLOSE_WAIT;
        while Instant::now() < until {
            match (&*stream).read(&mut self.buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => self.tally.bytes_in += n as u64,
            }
        }
    }

    /// A channel from a small namespace, so clients meet each other.
    fn channel(&mut self) -> String {
        let a = self.rng.u8(..8);
        if self.rng.bool() {
            format!("h.{a}")
        } else {
            format!("h.{a}.{}", self.rng.u8(..4))
        }
    }

    /// A subscription pattern: mostly exact, some wildcards, rarely everything.
    fn pattern(&mut self) -> String {
        match self.rng.u8(..20) {
            0 => ">".into(),
            1..=3 => "h.>".into(),
            4..=6 => format!("h.{}.*", self.rng.u8(..8)),
            7 => "h.*".into(),
            8 => format!("h.*.{}", self.rng.u8(..4)),
            _ => self.channel(),
        }
    }

    /// A message length: mostly small, some a chunk's size, some up to the maximum.
    fn message_len(&mut self) -> usize {
        let max = self.settings.max_message;
        match self.rng.u8(..20) {
            0..=11 => self.rng.usize(1..=100.min(max)),
            12..=16 => self.rng.usize(1..=16_384.min(max)),
            _ => self.rng.usize(1..=max),
        }
    }

    /// `n` random letters.
    fn letters(&mut self, n: usize) -> String {
        std::iter::repeat_with(|| self.rng.lowercase())
            .take(n)
            .collect()
    }

    /// One frame, with its newline: valid or not.
    fn frame(&mut self) -> Vec<u8> {
        let mut f = match self.rng.u8(..100) {
            0..=29 => {
                let n = self.message_len();
                let ack = if self.rng.bool() { "" } else { ",\"ack\":false" };
                format!(
                    "{{\"command\":\"PUBLISH\",\"channel\":\"{}\",\"message\":\"{}\"{ack}}}",
                    self.channel(),
                    self.letters(n)
                )
                .into_bytes()
            }
            30..=44 => format!(
                "{{\"command\":\"SUBSCRIBE\",\"channel\":\"{}\",\"id\":{}}}",
                self.pattern(),
                self.rng.u32(..)
            )
            .into_bytes(),
            45..=54 => format!(
                "{{\"command\":\"unsubscribe\",\"channel\":\"{}\"}}",
                self.pattern()
            )
            .into_bytes(),
            55..=57 => b"{\"command\":\"PING\",\"id\":null}".to_vec(),
            58 => b"{\"command\":\"STATS\"}".to_vec(),
            59 => b"{\"command\":\"HELLO\",\"name\":\"hostile\",\"echo\":false}".to_vec(),
            60..=61 => {
                // Hundreds of distinct patterns in one write, half of them removed again.
                let n = self.rng.usize(50..500);
                let mut burst = String::new();
                for i in 0..n {
                    let verb = if i % 2 == 0 { "SUBSCRIBE" } else { "UNSUBSCRIBE" };
                    let salt = self.rng.u32(..);
                    burst.push_str(&format!(
                        "{{\"command\":\"{verb}\",\"channel\":\"burst.{salt}.{}\"}}\n",
                        if self.rng.bool() { "*" } else { "x" }
                    ));
                }
                burst.pop();
                burst.into_bytes()
            }
            62..=66 => {
                // Random bytes, no newline among them.
                let n = self.rng.usize(1..300);
                std::iter::repeat_with(|| self.rng.u8(..))
                    .map(|b| if b == b'\n' { b'?' } else { b })
                    .take(n)
                    .collect()
            }
            67..=70 => {
                // A large line that is not JSON at all.
                let n = self.message_len();
                self.letters(n).into_bytes()
            }
            71..=74 => {
                // A large publish whose JSON is cut short.
                let n = self.message_len();
                format!(
                    "{{\"command\":\"PUBLISH\",\"channel\":\"{}\",\"message\":\"{}",
                    self.channel(),
                    self.letters(n)
                )
                .into_bytes()
            }
            75..=77 => b"[1,2,3]".to_vec(),
            78..=80 => b"{\"command\":\"ROUTE\",\"channel\":\"h.1\"}".to_vec(),
            81..=83 => b"{\"command\":\"SUBSCRIBE\",\"channel\":\"h..x\"}".to_vec(),
            84..=85 => b"{\"command\":\"PUBLISH\",\"channel\":\"h.*\",\"message\":1}".to_vec(),
            86..=87 => b"{\"command\":\"PUBLISH\",\"message\":1}".to_vec(),
            88..=89 => {
                let mut v = b"{\"command\":\"PUBLISH\",\"channel\":\"h.1\",\"message\":\"".to_vec();
                v.extend_from_slice(&[0xff, 0xfe, 0xc3]);
                v.extend_from_slice(b"\"}");
                v
            }
            90..=91 => {
                let depth = self.rng.usize(100..300);
                let mut v = b"{\"command\":\"PUBLISH\",\"channel\":\"h.1\",\"message\":".to_vec();
                v.extend(std::iter::repeat_n(b'[', depth));
                v.extend(std::iter::repeat_n(b']', depth));
                v.push(b'}');
                v
            }
            92..=93 => b"   \r".to_vec(),
            94..=95 => b"{\"command\":null}".to_vec(),
            96..=97 => format!(
                "{{\"command\":\"PUBLISH\",\"channel\":\"{}\",\"message\":{{\"k\":[1.0,true,null,\"\\u00e9\"]}},\"id\":{{\"x\":1}}}}",
                self.channel()
            )
            .into_bytes(),
            _ => b"{\"command\":\"SUBSCRIBE\",\"channel\":42}".to_vec(),
        };
        f.push(b'\n');
        f
    }
}
