//! Shared plumbing for the programs `client`, `publisher` and `chat`.
//!
//! Owns the flags every program takes (`--addr`, `--token`), connecting with a clear
//! error message, printing to stdout line by line, and the small helpers the programs
//! share (UTC timestamps, durations like `500ms`, message arguments). It never speaks the
//! protocol itself: all talking to the broker goes through [`crate::Client`].

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;

use crate::{Client, ClientError, Hello, Welcome};

/// Where the programs look for a broker unless `--addr` says otherwise (the broker's
/// default `--listen`).
pub const DEFAULT_ADDR: &str = "127.0.0.1:7400";

/// How long connecting may take before a program gives up (10 s: long enough for a slow
/// network, short enough that a typo in `--addr` does not hang a script).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Flags shared by every program: which broker, and its token.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// Broker address, HOST:PORT.
    #[arg(long, global = true, value_name = "HOST:PORT", default_value = DEFAULT_ADDR)]
    pub addr: String,

    /// Token for a broker started with `--token` (sent in HELLO).
    #[arg(long, global = true, value_name = "T")]
    pub token: Option<String>,
}

/// Connects to the broker named by `args` and sends `HELLO` (with the token, if any).
///
/// The error is a sentence for the user, e.g. `cannot connect to 127.0.0.1:7400:
/// Connection refused`; the caller prefixes its program name.
pub fn connect(args: &ConnectArgs, hello: Hello) -> Result<(Client, Welcome), String> {
    let client = Client::connect_timeout(args.addr.as_str(), CONNECT_TIMEOUT)
        .map_err(|e| format!("cannot connect to {}: {}", args.addr, describe(&e)))?;
    let hello = match &args.token {
        Some(token) => hello.token(token.clone()),
        None => hello,
    };
    let welcome = client
        .hello(&hello)
        .map_err(|e| format!("broker at {} refused HELLO: {}", args.addr, describe(&e)))?;
    Ok((client, welcome))
}

/// A client error as a short sentence: no `(os error N)` tail, and broker errors as
/// `CODE: text`.
pub fn describe(err: &ClientError) -> String {
    match err {
        ClientError::Io(e) => io_reason(e),
        ClientError::Broker { code, message } if message.is_empty() => code.clone(),
        ClientError::Broker { code, message } => format!("{code}: {message}"),
        ClientError::Closed { reason: Some(r) } => {
            format!("connection closed by the broker ({})", describe(r))
        }
        ClientError::Closed { reason: None } => "connection closed by the broker".to_string(),
        other => other.to_string(),
    }
}

/// An I/O error's text without the `(os error N)` suffix std adds.
fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Writes one line to stdout and flushes it, so a pipe or a test sees each line as soon
/// as it is printed.
///
/// When stdout is closed (`client sub news | head -1`), the program has nothing left to
/// do: it exits quietly with status 0, as Unix filters do. Any other write error ends it
/// with status 1.
pub fn print_line(line: &str) {
    let mut out = io::stdout().lock();
    let result = out
        .write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("cannot write to stdout: {}", io_reason(&e));
            std::process::exit(1);
        }
    }
}

/// `1 receiver`, `2 receivers`: a PUBLISHED count for people (the number comes first,
/// so scripts can take the first word).
pub fn receivers(n: usize) -> String {
    if n == 1 {
        "1 receiver".to_string()
    } else {
        format!("{n} receivers")
    }
}

/// The JSON text to publish for a command-line `MESSAGE`: the argument itself when it
/// is valid JSON (`42`, `"hi"`, `{"a":1}`), else the argument as a JSON string (`hi`
/// becomes `"hi"`).
pub fn message_json(arg: &str) -> String {
    match serde_json::from_str::<Box<RawValue>>(arg) {
        Ok(raw) => raw.get().to_string(),
        Err(_) => serde_json::Value::from(arg).to_string(),
    }
}

/// Parses a duration: `500ms`, `1s`, `1.5s`, `2m`, or a bare number of seconds (`0.25`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("'{text}' is not a duration (try 500ms, 1s, 1.5 or 2m)");
    let secs = crate::flags::seconds(text).ok_or_else(bad)?;
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `ms` (since the Unix epoch) as RFC 3339 in UTC with milliseconds:
/// `2024-05-01T12:34:56.789Z`.
pub fn rfc3339_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// `ms` (since the Unix epoch) as `HH:MM:SS` in UTC.
pub fn hms_utc(ms: u64) -> String {
    let rem = ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch and well before year 10,000).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("NaN").is_err());
    }

    #[test]
    fn message_arguments() {
        assert_eq!(message_json("42"), "42");
        assert_eq!(message_json("\"hi\""), "\"hi\"");
        assert_eq!(message_json("{\"a\": 1.0}"), "{\"a\": 1.0}");
        assert_eq!(message_json("hello world"), "\"hello world\"");
        assert_eq!(message_json("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(message_json(""), "\"\"");
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        // 2024-02-29T23:59:58.123Z, a leap day.
        assert_eq!(rfc3339_utc(1_709_251_198_123), "2024-02-29T23:59:58.123Z");
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(hms_utc(1_709_251_198_123), "23:59:58");
    }

    #[test]
    fn io_errors_lose_the_os_error_tail() {
        let e = io::Error::from_raw_os_error(111);
        assert!(!io_reason(&e).contains("os error"));
    }
}
