//! Watching the broker from outside while a robustness scenario (`hostile`, `soak`) or
//! `fleet` runs: one long-lived observer connection that asks for `STATS`, and the
//! broker's RSS and open fds from `/proc` (with `--broker-pid`). Read-only: it never
//! loads the broker.

use crate::cli::Target;
use crate::procinfo;
use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long one `STATS` round trip may take before it counts as a failure.
const STATS_WAIT: Duration = Duration::from_secs(10);

/// The `STATS` counters the robustness scenarios check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Client connections now (the observer included).
    pub connections: u64,
    /// Exact channels in the router now.
    pub exact_channels: u64,
    /// Wildcard subscriptions in the router now.
    pub wildcard_subscriptions: u64,
    /// Connections closed since start.
    pub closed: u64,
    /// Frames received since start.
    pub frames_in: u64,
    /// `ERROR` frames sent since start, every code.
    pub errors: u64,
    /// `ERROR slow_consumer` sent since start.
    pub slow_consumer: u64,
}

impl Counters {
    /// Whether the router holds no subscription.
    pub fn router_empty(&self) -> bool {
        self.exact_channels == 0 && self.wildcard_subscriptions == 0
    }
}

/// One connection that asks the broker for `STATS`.
pub struct Observer {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    line: String,
}

impl Observer {
    /// Connects (sending `HELLO` with `token` first when one is given).
    pub fn connect(target: Target, token: Option<&str>) -> io::Result<Observer> {
        let stream = TcpStream::connect_timeout(&target.addr, STATS_WAIT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(STATS_WAIT))?;
        stream.set_write_timeout(Some(STATS_WAIT))?;
        let reader = BufReader::new(stream.try_clone()?);
        let mut obs = Observer {
            stream,
            reader,
            line: String::new(),
        };
        if let Some(token) = token {
            let hello = serde_json::json!({"command": "HELLO", "name": "observer", "token": token});
            obs.stream.write_all(format!("{hello}\n").as_bytes())?;
        }
        Ok(obs)
    }

    /// Sends one line and returns the first reply whose `command` is `want`, skipping
    /// others; an `ERROR` or the deadline is an error.
    fn ask(&mut self, line: &[u8], want: &str) -> io::Result<serde_json::Value> {
        self.stream.write_all(line)?;
        let deadline = Instant::now() + STATS_WAIT;
        loop {
            self.line.clear();
            if self.reader.read_line(&mut self.line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "broker closed the observer connection",
                ));
            }
            let v: serde_json::Value = serde_json::from_str(&self.line)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            match v["command"].as_str() {
                Some(c) if c == want => return Ok(v),
                Some("ERROR") => return Err(io::Error::other(format!("broker said {v}"))),
                _ if Instant::now() > deadline => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no reply"))
                }
                _ => {}
            }
        }
    }

    /// The broker's whole `STATS` reply now, as JSON.
    pub fn stats_json(&mut self) -> io::Result<serde_json::Value> {
        self.ask(b"{\"command\":\"STATS\"}\n", "STATS")
    }

    /// The broker's counters now.
    pub fn stats(&mut self) -> io::Result<Counters> {
        let v = self.stats_json()?;
        let n = |x: &serde_json::Value| x.as_u64().unwrap_or(0);
        let errors = v["errors"]
            .as_object()
            .map_or(0, |m| m.values().map(n).sum());
        Ok(Counters {
            connections: n(&v["connections"]),
            exact_channels: n(&v["router"]["exact_channels"]),
            wildcard_subscriptions: n(&v["router"]["wildcard_subscriptions"]),
            closed: n(&v["closed"]),
            frames_in: n(&v["frames_in"]),
            errors,
            slow_consumer: n(&v["errors"]["slow_consumer"]),
        })
    }

    /// Polls `STATS` until `done` holds or `within` passes; returns the last counters
    /// read and whether `done` held.
    pub fn wait_until(
        &mut self,
        within: Duration,
        mut done: impl FnMut(&Counters) -> bool,
    ) -> io::Result<(Counters, bool)> {
        let deadline = Instant::now() + within;
        loop {
            let c = self.stats()?;
            if done(&c) {
                return Ok((c, true));
            }
            if Instant::now() >= deadline {
                return Ok((c, false));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `bytes` as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// RSS of `pid` in bytes, if readable.
pub fn rss(pid: Option<u32>) -> Option<u64> {
    pid.and_then(procinfo::pid_rss_bytes)
}

/// A seed from the clock, for runs not given `--seed`.
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// Mixes a run seed with a round and client number into an independent stream's seed
/// (splitmix64), so client `i` of round `r` replays the same actions for the same seed.
pub fn sub_seed(seed: u64, round: u64, client: u64) -> u64 {
    let mut z = seed
        .wrapping_add(round.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(client.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_seeds_differ_and_repeat() {
        assert_eq!(sub_seed(7, 1, 2), sub_seed(7, 1, 2));
        assert_ne!(sub_seed(7, 1, 2), sub_seed(7, 2, 1));
        assert_ne!(sub_seed(7, 0, 0), sub_seed(8, 0, 0));
    }

    #[test]
    fn mib_formats() {
        assert_eq!(mib(3 * 1024 * 1024 / 2), "1.5");
    }
}
