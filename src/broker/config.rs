//! The broker's command line.
//!
//! Owns flags, their defaults and their help text. Parsing only: what the values mean
//! at run time is decided in `broker::run` and the reactor.

use std::net::SocketAddr;

use clap::Parser;

use crate::protocol::MAX_FRAME_DEFAULT;

/// Default `--max-pending`: 64 MiB of unsent output per connection before it is a slow
/// consumer (NATS uses 64 MiB for its `max_pending` too).
pub const MAX_PENDING_DEFAULT: usize = 64 << 20;

/// Default `--max-subscriptions` per connection.
pub const MAX_SUBSCRIPTIONS_DEFAULT: usize = 10_000;

/// A publish/subscribe broker speaking newline-delimited JSON over TCP.
///
/// Clients SUBSCRIBE to channels (with `*` and `>` wildcards) and PUBLISH to them; the
/// broker fans each message out to every matching subscriber. See docs/protocol.md.
#[derive(Debug, Clone, Parser)]
#[command(name = "broker", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port. The bound address is printed as
    /// `listening on ADDR`.
    #[arg(long, default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,

    /// Longest frame accepted, in bytes (newline excluded); longer ones get
    /// `frame_too_large` and the connection is closed. 64 to 1073741824.
    #[arg(long, value_name = "BYTES", default_value_t = MAX_FRAME_DEFAULT,
          value_parser = in_range::<usize>(64, 1 << 30))]
    pub max_frame: usize,

    /// Most unsent output per connection, in bytes; a connection past it is a slow
    /// consumer and is closed. 1024 to 2^40.
    #[arg(long, value_name = "BYTES", default_value_t = MAX_PENDING_DEFAULT,
          value_parser = in_range::<usize>(1024, 1 << 40))]
    pub max_pending: usize,

    /// Most concurrent client connections [default: the open-file limit minus a small
    /// reserve]. Connections past it get `ERROR limit`. 1 to 100000000.
    #[arg(long, value_name = "N", value_parser = in_range::<u64>(1, 100_000_000))]
    pub max_connections: Option<u64>,

    /// Most subscriptions per connection. 1 to 100000000.
    #[arg(long, value_name = "N", default_value_t = MAX_SUBSCRIPTIONS_DEFAULT,
          value_parser = in_range::<usize>(1, 100_000_000))]
    pub max_subscriptions: usize,

    /// Most memory, in bytes, that all connections together may hold in unfinished
    /// input frames and queued output; past it the broker sheds the connections holding
    /// the most [default: a quarter of physical memory]. At least 1048576.
    #[arg(long, value_name = "BYTES", value_parser = in_range::<u64>(1 << 20, u64::MAX))]
    pub max_memory: Option<u64>,

    /// How long an unfinished frame may go without a new byte before the connection
    /// is closed with `stale` (e.g. 30, 2.5, 500ms, 1m).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub frame_timeout: std::time::Duration,

    /// With --token: how long a connection may take to authenticate before it is
    /// closed with `unauthorized`.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    pub auth_timeout: std::time::Duration,

    /// How long a connection with output pending may accept no byte before it is
    /// closed as a slow consumer, even below --max-pending.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub write_deadline: std::time::Duration,

    /// Require every connection to start with HELLO carrying this token (and, without
    /// --link-token, every broker opening a link).
    #[arg(long, value_name = "T")]
    pub token: Option<String>,

    /// Require brokers opening a federation link to present this token in their link
    /// HELLO; client tokens then no longer open links. See docs/federation.md.
    #[arg(long, value_name = "T")]
    pub link_token: Option<String>,

    /// Broker name, sent in WELCOME and used in logs [default: the listen address].
    #[arg(long)]
    pub name: Option<String>,

    /// Log level or filter: off, error, warn, info, debug, trace, or comma-separated
    /// TARGET=LEVEL directives. Overrides RUST_LOG. [default: info]
    #[arg(long, value_name = "LEVEL", value_parser = log_filter)]
    pub log_level: Option<String>,

    /// Log every frame received, to watch clients talk.
    #[arg(long, short)]
    pub verbose: bool,

    /// Join the hub topology: open a federation link to the broker at ADDR (repeat for
    /// several). Messages cross links only where the other side has a matching
    /// subscription. See docs/federation.md.
    #[arg(long, value_name = "ADDR")]
    pub upstream: Vec<String>,

    /// Token to present to upstream brokers [default: --link-token, else --token].
    #[arg(long, value_name = "T")]
    pub upstream_token: Option<String>,

    /// Longest wait between attempts to re-open a broken link, in milliseconds. 100 to
    /// 3600000.
    #[arg(long, value_name = "MS", default_value_t = 5000,
          value_parser = in_range::<u64>(100, 3_600_000))]
    pub link_backoff_max_ms: u64,
}

/// A clap parser for an integer in `lo..=hi`; the error names the accepted range.
fn in_range<T>(lo: T, hi: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
{
    move |text: &str| {
        let value: T = text
            .trim()
            .parse()
            .map_err(|_| format!("'{text}' is not a whole number; expected {lo} to {hi}"))?;
        if value < lo || value > hi {
            return Err(format!("{value} is out of range; expected {lo} to {hi}"));
        }
        Ok(value)
    }
}

/// Parses a duration: a number of seconds (`30`, `2.5`) or a number with a unit
/// (`500ms`, `30s`, `1m`); between 1 ms and 1 day.
pub fn duration(text: &str) -> Result<std::time::Duration, String> {
    match crate::flags::seconds(text) {
        Some(secs) if (0.001..=86_400.0).contains(&secs) => {
            Ok(std::time::Duration::from_secs_f64(secs))
        }
        _ => Err(format!(
            "'{text}' is not a duration; expected seconds (30, 2.5) or 500ms, 30s, 1m, from 1ms to 1 day"
        )),
    }
}

/// Log levels `--log-level` and `RUST_LOG` accept.
pub const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a log filter: a level, or comma-separated directives each of which is a
/// level or `TARGET=LEVEL`. A bare word that is not a level (`warning`) would silently
/// mean "only the target named warning", so it is refused.
pub fn log_filter(text: &str) -> Result<String, String> {
    let is_level = |w: &str| LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(w.trim()));
    for directive in text.split(',').filter(|d| !d.trim().is_empty()) {
        let level = match directive.split_once('=') {
            Some((target, level)) if !target.trim().is_empty() => level,
            Some(_) => directive,
            None => directive,
        };
        if !is_level(level) {
            return Err(format!(
                "'{}' is not a log level; expected one of {} (or TARGET=LEVEL, comma-separated)",
                level.trim(),
                LOG_LEVELS.join(", ")
            ));
        }
    }
    if text.trim().is_empty() {
        return Err(format!("expected one of {}", LOG_LEVELS.join(", ")));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsense_settings_are_refused_with_the_range() {
        for (flag, value) in [
            ("--max-frame", "0"),
            ("--max-pending", "0"),
            ("--max-connections", "0"),
            ("--max-subscriptions", "0"),
            ("--link-backoff-max-ms", "0"),
            ("--log-level", "warning"),
            ("--log-level", "hub=loud"),
            ("--max-memory", "0"),
            ("--frame-timeout", "0"),
            ("--auth-timeout", "soon"),
            ("--write-deadline", "2d"),
        ] {
            let e = Config::try_parse_from(["broker", flag, value]).expect_err(flag);
            let text = e.to_string();
            assert!(text.contains(flag), "{text}");
            assert!(text.contains("expected"), "{text}");
        }
    }

    #[test]
    fn small_positive_limits_stay_valid() {
        let c = Config::try_parse_from([
            "broker",
            "--max-frame",
            "100",
            "--max-pending",
            "1048576",
            "--max-connections",
            "1",
            "--log-level",
            "pubsub=debug,warn",
        ])
        .expect("valid");
        assert_eq!(c.max_frame, 100);
        assert_eq!(c.max_pending, 1 << 20);
        assert_eq!(c.max_connections, Some(1));
    }

    #[test]
    fn durations_take_seconds_or_a_unit() {
        use std::time::Duration;
        assert_eq!(duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1m"), Ok(Duration::from_secs(60)));
        assert!(duration("0").is_err() && duration("2d").is_err());
    }
}
