//! Protocol hot path: finding a PUBLISH frame in a read buffer, parsing it, and
//! encoding the MESSAGE that goes to subscribers.
//!
//! Besides the whole steps, the parse is split into its parts (UTF-8 check, a bare
//! JSON syntax pass, channel validation) so a regression or an optimisation can be
//! attributed. Throughput is in bytes of the frame, so 16 B and 1 KiB payloads compare.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pubsub::protocol::{
    encode_message, parse_frame, scan_frame, validate_publish, Command, Scan, MAX_FRAME_DEFAULT,
};
use serde::de::IgnoredAny;

/// The channel every bench publishes to: three tokens, as a typical `app.area.topic`.
const CHANNEL: &str = "bench.sensors.temperature";

/// A JSON string message whose text (quotes included) is `len` bytes.
fn string_message(len: usize) -> String {
    assert!(len >= 2);
    format!("\"{}\"", "x".repeat(len - 2))
}

/// A JSON object message of about `len` bytes: numbers and short strings, as a
/// structured event would carry (more tokens per byte than a plain string).
fn object_message(len: usize) -> String {
    let mut s = String::from("{");
    let mut i = 0;
    while s.len() + 24 < len {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("\"k{i}\":{},\"s{i}\":\"v{i}\"", i * 7919));
        i += 1;
    }
    s.push('}');
    s
}

/// A PUBLISH line as a client sends it, newline included.
fn publish_line(message: &str, with_id: bool) -> Vec<u8> {
    let id = if with_id { ",\"id\":42" } else { "" };
    format!("{{\"command\":\"PUBLISH\",\"channel\":\"{CHANNEL}\",\"message\":{message}{id}}}\n")
        .into_bytes()
}

/// The payload cases: name and message text.
fn payloads() -> Vec<(&'static str, String)> {
    vec![
        ("str_16B", string_message(16)),
        ("str_1KiB", string_message(1024)),
        ("obj_1KiB", object_message(1024)),
    ]
}

fn scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("scan_frame");
    for (name, msg) in payloads() {
        let line = publish_line(&msg, false);
        g.throughput(Throughput::Bytes(line.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &line, |b, line| {
            b.iter(|| scan_frame(black_box(line), MAX_FRAME_DEFAULT))
        });
    }
    g.finish();
}

/// Parses `line` (no newline) as the reactor does and returns the channel length, so
/// the result is used.
fn parse_publish(line: &[u8]) -> usize {
    match parse_frame(line) {
        Ok(f) => match f.command {
            Command::Publish { channel, .. } => channel.len(),
            _ => 0,
        },
        Err(_) => usize::MAX,
    }
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_publish");
    for (name, msg) in payloads() {
        let line = publish_line(&msg, true);
        let frame = &line[..line.len() - 1];
        assert_eq!(parse_publish(frame), CHANNEL.len());
        g.throughput(Throughput::Bytes(line.len() as u64));

        // What the reactor does per PUBLISH before routing: scan, parse, validate.
        g.bench_with_input(
            BenchmarkId::new("scan_parse_validate", name),
            &line,
            |b, l| {
                b.iter(|| {
                    let Scan::Frame { line: (s, e), .. } =
                        scan_frame(black_box(l), MAX_FRAME_DEFAULT)
                    else {
                        unreachable!("bench input is one whole frame")
                    };
                    match parse_frame(&l[s..e]) {
                        Ok(f) => match f.command {
                            Command::Publish { channel, .. } => validate_publish(&channel).is_ok(),
                            _ => false,
                        },
                        Err(_) => false,
                    }
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("parse_frame", name), frame, |b, f| {
            b.iter(|| parse_publish(black_box(f)))
        });
        // The floor parse_frame builds on: UTF-8 validation, then serde_json walking the
        // same text without keeping anything.
        g.bench_with_input(BenchmarkId::new("utf8_only", name), frame, |b, f| {
            b.iter(|| std::str::from_utf8(black_box(f)).is_ok())
        });
        g.bench_with_input(BenchmarkId::new("json_skip_only", name), frame, |b, f| {
            let text = std::str::from_utf8(f).expect("bench input is UTF-8");
            b.iter(|| serde_json::from_str::<IgnoredAny>(black_box(text)).is_ok())
        });
    }
    // Channel validation alone; it does not depend on the payload.
    g.throughput(Throughput::Bytes(CHANNEL.len() as u64));
    g.bench_function("validate_publish", |b| {
        b.iter(|| validate_publish(black_box(CHANNEL)).is_ok())
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode_message");
    let mut out = Vec::with_capacity(4096);
    for (name, msg) in payloads() {
        out.clear();
        encode_message(&mut out, CHANNEL, &msg);
        g.throughput(Throughput::Bytes(out.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &msg, |b, msg| {
            b.iter(|| {
                // The reactor reuses one frame buffer: clear, not reallocate.
                out.clear();
                encode_message(&mut out, black_box(CHANNEL), black_box(msg));
                out.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, scan, parse, encode);
criterion_main!(benches);
