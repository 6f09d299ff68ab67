//! `loadgen fleet` end to end, small: worker processes of the real binary hold 300
//! clients on `loadgen relay`s (JSON pub/sub targets without STATS, so the interest wait
//! is skipped). On one relay every check must arrive exactly once; on two relays that
//! are not linked, checks published through the other relay must be reported lost.
//! Bounded: every wait is on a process's output or exit, with a deadline after which
//! the processes are killed.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Longest one fleet run may take (they need about 3 s).
const DEADLINE: Duration = Duration::from_secs(120);

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

/// A `loadgen relay` on an ephemeral port, killed however the test ends.
struct Relay {
    child: Child,
    addr: String,
}

impl Relay {
    fn start() -> Relay {
        let mut child = Command::new(LOADGEN)
            .args(["relay", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start loadgen relay");
        let stdout = child.stdout.take().expect("relay stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("relay prints its address");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected relay line {line:?}"))
            .to_string();
        Relay { child, addr }
    }

    fn url(&self) -> String {
        format!("json://{}", self.addr)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one `loadgen fleet` run left behind.
struct Run {
    status: ExitStatus,
    text: String,
    record: serde_json::Value,
}

/// Runs `loadgen fleet ARGS --json FILE` to completion (killing it past [`DEADLINE`]).
fn fleet(name: &str, args: &[&str]) -> Run {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("loadgen-fleet-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let record_path = dir.join("fleet.jsonl");
    let _ = std::fs::remove_file(&record_path);
    let child = Command::new(LOADGEN)
        .arg("fleet")
        .args(args)
        .arg("--json")
        .arg(&record_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start loadgen fleet");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(DEADLINE) {
        Ok(output) => output.expect("wait for loadgen fleet"),
        Err(_) => {
            // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("loadgen fleet did not finish within {DEADLINE:?}");
        }
    };
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let line = std::fs::read_to_string(&record_path)
        .unwrap_or_else(|e| panic!("no JSON record ({e}): {text}"));
    let record = serde_json::from_str(line.trim()).expect("one JSON line");
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        status: output.status,
        text,
        record,
    }
}

#[test]
fn fleet_over_worker_processes_checks_every_target_exactly_once() {
    let relay = Relay::start();
    let url = relay.url();
    let run = fleet(
        "once",
        &[
            "--clients",
            "300",
            "--processes",
            "3",
            "--probe",
            "50",
            "--target",
            &url,
            "--source",
            "127.0.0.2,127.0.0.3",
        ],
    );
    assert!(run.status.success(), "loadgen fleet failed: {}", run.text);
    assert!(run.text.contains("PASS"), "{}", run.text);
    let r = &run.record;
    assert_eq!(r["scenario"], "fleet");
    assert_eq!(r["clients_held"], 300);
    assert_eq!(r["clients_held_at_end"], 300);
    assert_eq!(r["workers"].as_array().map(Vec::len), Some(3));
    assert_eq!(r["probe"]["targets"], 50);
    assert_eq!(r["probe"]["exactly_once"], 50);
    assert_eq!(r["probe"]["misdelivered_checks"], 0);
    assert_eq!(r["probe"]["foreign"], 0);
    assert_eq!(r["passed"], true);
    // The relay answers no STATS: nothing was awaited, nothing claimed.
    assert!(r["interest_complete"].is_null());
}

/// Two relays that know nothing of each other: a check published through the relay
/// its client is not on never arrives, and the run must say so and fail.
#[test]
fn fleet_reports_checks_that_cannot_arrive() {
    let (a, b) = (Relay::start(), Relay::start());
    let targets = format!("{},{}", a.url(), b.url());
    let run = fleet(
        "lost",
        &[
            "--clients",
            "200",
            "--processes",
            "2",
            "--probe",
            "50",
            "--target",
            &targets,
            "--interest-timeout",
            "1",
            "--drain",
            "0.5",
        ],
    );
    assert_eq!(run.status.code(), Some(1), "{}", run.text);
    assert!(run.text.contains("FAIL"), "{}", run.text);
    let p = &run.record["probe"];
    let once = p["exactly_once"].as_u64().unwrap_or(0);
    let lost = p["lost"].as_u64().unwrap_or(0);
    assert_eq!(once + lost, 50, "{p}");
    assert!(lost > 0 && once > 0, "{p}");
    assert_eq!(p["misdelivered_checks"], 0);
    assert_eq!(run.record["brokers"][0]["clients"], 100);
    assert_eq!(run.record["passed"], false);
}
