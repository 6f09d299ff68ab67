//! The README's commands, checked against the real programs (issue 7, item 7: `cargo run
//! -p loadgen` could not choose a binary, the hub tour ran a `broker` that is not on
//! PATH, and flags were promised that no program had).
//!
//! Every command line of the README's `sh` and `console` blocks is taken from the README
//! itself, never copied here, and:
//! - every `cargo run ...` is run through cargo as written, `--release` aside (same
//!   binary, same flags, a debug build), with `--help` appended: cargo must choose the
//!   binary and the program's own parser must accept every argument before `--help`;
//! - the tour is then run for real with the built programs, each README address
//!   (`127.0.0.1:7400`, ...) moved to an ephemeral port: the broker, the subscriber whose
//!   output must be the README's `text` block, the publishes, `publisher`, `chat`, the
//!   `nc` exchange, the hub of three brokers, and loadgen against a `--token` broker;
//! - a command the test does not know fails it, so a new README command comes with a
//!   check.
//!
//! Waits are on what the programs print; [`common::TIMEOUT`] is only a failure guard.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::programs;
use common::{Program, TIMEOUT as WAIT};

const README: &str = include_str!("../README.md");

/// How long one nested `cargo run` may take: the first one may compile loadgen.
const CARGO_WAIT: Duration = Duration::from_secs(600);

/// One fenced block of the README: its language and its lines.
struct Block {
    lang: String,
    lines: Vec<String>,
}

fn blocks() -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for line in README.lines() {
        if let Some(fence) = line.strip_prefix("```") {
            match current.take() {
                Some(block) => out.push(block),
                None => {
                    current = Some(Block {
                        lang: fence.trim().to_string(),
                        lines: Vec::new(),
                    })
                }
            }
        } else if let Some(block) = &mut current {
            block.lines.push(line.to_string());
        }
    }
    assert!(current.is_none(), "README has an unclosed code block");
    out
}

/// A command with what the README shows right after it in the same block (typed input
/// and expected output, for `nc`).
struct Cmd {
    words: Vec<String>,
    after: Vec<String>,
}

/// Every command the README tells a reader to run, in order: each line of a `sh` block,
/// each `$ ` line of a `console` block.
fn commands() -> Vec<Cmd> {
    let mut out: Vec<Cmd> = Vec::new();
    for block in blocks() {
        match block.lang.as_str() {
            "sh" => out.extend(
                block
                    .lines
                    .iter()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| Cmd {
                        words: shell_words(l),
                        after: Vec::new(),
                    }),
            ),
            "console" => {
                for line in &block.lines {
                    match line.strip_prefix("$ ") {
                        Some(cmd) => out.push(Cmd {
                            words: shell_words(cmd),
                            after: Vec::new(),
                        }),
                        None => match out.last_mut() {
                            Some(cmd) => cmd.after.push(line.clone()),
                            None => panic!("console block line without a command: {line}"),
                        },
                    }
                }
            }
            _ => {}
        }
    }
    assert!(!out.is_empty(), "no commands found in the README");
    out
}

/// Splits a command line as a POSIX shell would for what the README uses: words,
/// single and double quotes, and a trailing `# comment`.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    w.push(q);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        _ => w.push(q),
                    }
                }
            }
            '#' if word.is_none() => break,
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// A `cargo run` command cut into cargo's arguments and the program's.
struct CargoRun {
    cargo: Vec<String>,
    args: Vec<String>,
}

impl CargoRun {
    fn parse(words: &[String]) -> Option<CargoRun> {
        if words.len() < 2 || words[0] != "cargo" || words[1] != "run" {
            return None;
        }
        let rest = &words[2..];
        let (cargo, args) = match rest.iter().position(|w| w == "--") {
            Some(at) => (rest[..at].to_vec(), rest[at + 1..].to_vec()),
            None => (rest.to_vec(), Vec::new()),
        };
        Some(CargoRun { cargo, args })
    }

    /// The program cargo runs: `--bin X`, or the default binary of `-p P`.
    fn program(&self) -> String {
        let value = |flag: &str| {
            self.cargo
                .iter()
                .position(|w| w == flag)
                .and_then(|i| self.cargo.get(i + 1))
                .cloned()
        };
        value("--bin")
            .or_else(|| value("-p"))
            .unwrap_or_else(|| "broker".to_string())
    }

    /// Its argument after `flag`, if given.
    fn arg(&self, flag: &str) -> Option<&str> {
        let i = self.args.iter().position(|w| w == flag)?;
        self.args.get(i + 1).map(String::as_str)
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo puts this profile's binaries (the test's own `broker` is there).
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_broker"))
        .parent()
        .expect("binary directory")
        .to_path_buf()
}

/// Runs `cargo ARGS` in the repository root, bounded by [`CARGO_WAIT`]:
/// (success, stdout, stderr).
fn cargo(args: &[String]) -> (bool, String, String) {
    let child = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cargo");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(CARGO_WAIT) {
        Ok(out) => {
            let out = out.expect("cargo output");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("cargo {args:?} still running after {CARGO_WAIT:?}");
        }
    }
}

#[test]
fn every_readme_command_is_known_and_cargo_runs_it_with_its_arguments() {
    for cmd in commands() {
        let words = &cmd.words;
        let line = words.join(" ");
        if let Some(run) = CargoRun::parse(words) {
            // Only flags that change nothing but the profile are dropped.
            let mut cargo_args: Vec<String> = vec!["run".into(), "--quiet".into()];
            cargo_args.extend(run.cargo.iter().filter(|w| *w != "--release").cloned());
            cargo_args.push("--".into());
            cargo_args.extend(run.args.iter().cloned());
            cargo_args.push("--help".into());
            let (ok, stdout, stderr) = cargo(&cargo_args);
            assert!(
                ok && stdout.contains("Usage:"),
                "README command `{line}` does not run as written:\n{stderr}\n{stdout}"
            );
        } else if words[..] == ["cargo", "test", "--workspace"] {
            // This test is part of it.
        } else if words[0] == "nc" {
            assert_eq!(words[1..], ["127.0.0.1", "7400"], "{line}");
        } else if words[0] == "scripts/bench.sh" {
            let path = root().join(&words[0]);
            let script = std::fs::read_to_string(&path).expect("scripts/bench.sh exists");
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert!(mode & 0o111 != 0, "{} is not executable", path.display());
            for flag in &words[1..] {
                assert!(
                    script.contains(&format!("{flag})")),
                    "bench.sh takes no {flag}"
                );
            }
        } else {
            panic!("README command `{line}` is not checked by tests/readme.rs; add it");
        }
    }
}

/// The README's addresses, moved to real ones as the brokers start.
#[derive(Default)]
struct Addrs(HashMap<String, String>);

impl Addrs {
    /// The real address for a README address (`127.0.0.1:7400` when none is given).
    fn real(&self, readme: Option<&str>) -> String {
        let readme = readme.unwrap_or("127.0.0.1:7400");
        self.0
            .get(readme)
            .unwrap_or_else(|| panic!("no broker started for {readme}"))
            .clone()
    }

    /// `args` with every README address replaced by its real one, and `--addr` added
    /// (the programs' default is the README's `127.0.0.1:7400`).
    fn client_args(&self, args: &[String]) -> Vec<String> {
        let mut out: Vec<String> = args
            .iter()
            .map(|a| self.0.get(a).cloned().unwrap_or_else(|| a.clone()))
            .collect();
        if !args.iter().any(|a| a == "--addr") {
            out.extend(["--addr".to_string(), self.real(None)]);
        }
        out
    }
}

fn exe(name: &str) -> String {
    match name {
        "broker" => env!("CARGO_BIN_EXE_broker").to_string(),
        "client" => env!("CARGO_BIN_EXE_client").to_string(),
        "publisher" => env!("CARGO_BIN_EXE_publisher").to_string(),
        "chat" => env!("CARGO_BIN_EXE_chat").to_string(),
        other => panic!("unknown program {other}"),
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The tour as a reader runs it, on ephemeral ports.
#[test]
fn readme_tour_runs_as_written_on_ephemeral_ports() {
    let expected_output: Vec<String> = blocks()
        .into_iter()
        .find(|b| b.lang == "text")
        .expect("the README shows the subscriber's output in a text block")
        .lines;
    let mut addrs = Addrs::default();
    let mut brokers: HashMap<String, Program> = HashMap::new();
    let mut subscribers: Vec<(String, Program)> = Vec::new();
    let mut chats: Vec<(String, Program)> = Vec::new();
    let mut published = 0;
    for cmd in commands() {
        let line = cmd.words.join(" ");
        if cmd.words[0] == "nc" {
            nc_exchange(&addrs.real(None), &cmd.after);
            continue;
        }
        let Some(run) = CargoRun::parse(&cmd.words) else {
            continue; // checked by the other test
        };
        match run.program().as_str() {
            "broker" => {
                let readme_addr = run.arg("--listen").unwrap_or("127.0.0.1:7400").to_string();
                let mut args: Vec<String> = Vec::new();
                let mut words = run.args.iter();
                while let Some(w) = words.next() {
                    args.push(w.clone());
                    if w == "--listen" {
                        words.next();
                        args.push("127.0.0.1:0".into());
                    } else if w == "--upstream" {
                        let up = words.next().expect("--upstream ADDR");
                        args.push(addrs.real(Some(up)));
                    }
                }
                if run.arg("--listen").is_none() {
                    args.extend(["--listen".into(), "127.0.0.1:0".into()]);
                }
                // "Stop the tour's broker first": a new broker takes over its address.
                drop(brokers.remove(&readme_addr));
                let mut broker = Program::spawn(&exe("broker"), &strs(&args));
                let announced = broker.stdout.wait_for(|l| l.starts_with("listening on "));
                let real = announced["listening on ".len()..].trim().to_string();
                if let Some(up) = run.arg("--upstream") {
                    // The link is up once the broker logs it (checked through STATS).
                    wait_for_link(&real, &addrs.real(Some(up)));
                }
                addrs.0.insert(readme_addr.clone(), real);
                brokers.insert(readme_addr, broker);
            }
            "client" if run.args.iter().any(|a| a == "sub") => {
                let args = addrs.client_args(&run.args);
                let mut sub = Program::spawn(&exe("client"), &strs(&args));
                sub.stderr.wait_for(|l| l.starts_with("subscribed to "));
                let target = args[args.iter().position(|a| a == "--addr").unwrap() + 1].clone();
                subscribers.push((target, sub));
            }
            "client" if run.args.iter().any(|a| a == "pub") => {
                let args = addrs.client_args(&run.args);
                let target = args[args.iter().position(|a| a == "--addr").unwrap() + 1].clone();
                // The hub tour subscribes on one broker and publishes on another.
                let subscriber_elsewhere = subscribers.iter().any(|(addr, _)| *addr != target);
                if subscriber_elsewhere {
                    // Interest crosses the links asynchronously: wait until the
                    // publishing broker knows of a subscriber somewhere.
                    wait_for_interest(&target);
                }
                let (status, stdout, stderr) = programs::run(&exe("client"), &strs(&args));
                assert!(status.success(), "`{line}`: {stderr:?}");
                assert!(
                    stdout.iter().any(|l| l.starts_with("published to ")),
                    "`{line}`: {stdout:?}"
                );
                published += 1;
                let (_, sub) = subscribers
                    .iter_mut()
                    .rev()
                    .find(|(addr, _)| !subscriber_elsewhere || *addr != target)
                    .expect("a subscriber started before the publish");
                let got = sub
                    .stdout
                    .next_line()
                    .expect("the subscriber prints the message");
                if published <= expected_output.len() {
                    assert_eq!(got, expected_output[published - 1], "after `{line}`");
                } else {
                    assert!(got.starts_with("news: "), "after `{line}`: {got}");
                }
            }
            "publisher" => {
                let args = addrs.client_args(&run.args);
                let mut publisher = Program::spawn(&exe("publisher"), &strs(&args));
                let first = publisher
                    .stdout
                    .next_line()
                    .expect("publisher prints a line");
                assert!(!first.is_empty(), "`{line}`");
            }
            "chat" => {
                let args = addrs.client_args(&run.args);
                let mut chat = Program::spawn(&exe("chat"), &strs(&args));
                let room = run.arg("--room").expect("--room");
                chat.stderr
                    .wait_for(|l| l.contains(&format!("joined {room}")));
                chats.push((run.arg("--name").expect("--name").to_string(), chat));
                if let [(first, a), (_, b)] = &mut chats[..] {
                    // "type lines": the first one's line reaches the second, signed.
                    a.send_line("hello from the README");
                    let got = b.stdout.wait_for(|l| l.contains("hello from the README"));
                    assert!(got.contains(first.as_str()), "{got}");
                }
            }
            "loadgen" => loadgen_run(&run),
            other => panic!("README runs `{other}`: teach tests/readme.rs to run it"),
        }
    }
    assert!(
        published >= expected_output.len(),
        "fewer publishes than lines the README says the subscriber prints"
    );
}

/// Types the README's `nc` line and compares the broker's answer with the next line.
fn nc_exchange(addr: &str, after: &[String]) {
    let [typed, expected, ..] = after else {
        panic!("the nc example needs a typed line and the broker's answer")
    };
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    writeln!(stream, "{typed}").expect("send");
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .expect("answer");
    assert_eq!(
        answer.trim_end(),
        expected,
        "the broker's answer to `{typed}`"
    );
}

/// One raw `STATS` request.
fn stats(addr: &str) -> serde_json::Value {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream
        .write_all(b"{\"command\":\"STATS\"}\n")
        .expect("send STATS");
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).expect("STATS");
    serde_json::from_str(&line).expect("STATS is JSON")
}

/// Polls `STATS` of `addr` until `cond` holds; fails after [`WAIT`]. Links and interest
/// are set up asynchronously and announce themselves nowhere else.
fn poll_stats(addr: &str, what: &str, cond: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = stats(addr);
        if cond(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not seen within {WAIT:?}: {s}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn links(s: &serde_json::Value) -> Vec<serde_json::Value> {
    s["links"].as_array().cloned().unwrap_or_default()
}

fn wait_for_link(leaf: &str, hub: &str) {
    poll_stats(leaf, &format!("{leaf}'s link to {hub}"), |s| {
        !links(s).is_empty()
    });
}

fn wait_for_interest(publisher_broker: &str) {
    poll_stats(publisher_broker, "interest from a link", |s| {
        links(s)
            .iter()
            .any(|l| l["interest_in"].as_u64().unwrap_or(0) > 0)
    });
}

/// Runs a README loadgen command for real, briefly: against a broker started as the
/// command needs (`--token T` when it passes one), with its target moved.
fn loadgen_run(run: &CargoRun) {
    let Some(token) = run.arg("--token") else {
        return; // 10,000 clients are for a real machine; its flags were checked.
    };
    let loadgen = bin_dir().join("loadgen");
    if !loadgen.exists() {
        let (ok, _, stderr) = cargo(&[
            "build".into(),
            "--quiet".into(),
            "-p".into(),
            "loadgen".into(),
        ]);
        assert!(ok, "building loadgen: {stderr}");
    }
    let mut broker = Program::spawn(
        &exe("broker"),
        &["--listen", "127.0.0.1:0", "--token", token],
    );
    let line = broker.stdout.wait_for(|l| l.starts_with("listening on "));
    let addr = line["listening on ".len()..].trim().to_string();
    let mut args: Vec<String> = Vec::new();
    let mut words = run.args.iter();
    while let Some(w) = words.next() {
        args.push(w.clone());
        if w == "--target" {
            words.next();
            args.push(format!("json://{addr}"));
        }
    }
    args.extend(
        ["--duration", "0.3", "--warmup", "0.1", "--drain", "2"]
            .into_iter()
            .map(String::from),
    );
    let (status, stdout, stderr) = programs::run(loadgen.to_str().expect("path"), &strs(&args));
    assert!(
        status.success(),
        "loadgen {args:?} against a --token broker: {stdout:#?} {stderr:#?}"
    );
    assert!(stdout.iter().any(|l| l.contains("errors 0")), "{stdout:#?}");
}
