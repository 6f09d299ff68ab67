//! The generated regions of `docs/BENCHMARKS.md` as Markdown, one function per region,
//! all computed from [`Results`]. Never writes files; never invents a number: a figure
//! that was not measured is shown as `—` or "not measured".

use crate::data::{si, CellKey, Results, Summary};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Throughput scenarios in table order, with (scenario, payload) and a heading.
const THROUGHPUT: [(&str, usize, &str); 6] = [
    (
        "fanout",
        16,
        "Fan-out, 16 B payload (1 publisher → N subscribers of one channel)",
    ),
    ("fanout", 1024, "Fan-out, 1 KiB payload"),
    (
        "fanin",
        16,
        "Fan-in, 16 B payload (N publishers → 1 subscriber)",
    ),
    ("fanin", 256, "Fan-in, 256 B payload"),
    (
        "pairs",
        16,
        "Pairs, 16 B payload (N publisher/subscriber pairs, one channel each)",
    ),
    ("pairs", 256, "Pairs, 256 B payload"),
];

/// Builds every region, keyed by region name.
pub fn regions(res: &Results, charts: &[String]) -> BTreeMap<String, String> {
    let mut r = BTreeMap::new();
    r.insert("run".into(), run(res));
    r.insert("machine".into(), machine(res));
    r.insert("peers".into(), peers(res));
    r.insert("summary".into(), summary(res));
    r.insert("throughput".into(), throughput(res));
    r.insert("cost".into(), cost(res));
    r.insert("latency".into(), latency(res));
    r.insert("conns".into(), conns(res));
    r.insert("limits".into(), limits(res));
    r.insert("charts".into(), chart_links(charts));
    r.insert("commands".into(), commands(res));
    r
}

fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 && a > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

fn pct(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 => format!("{:.0}%", 100.0 * a / b),
        _ => "—".into(),
    }
}

/// A median rate with a mark when any run of the cell was unclean.
fn rate_cell(s: Option<Summary<'_>>) -> String {
    match s {
        None => "—".into(),
        Some(s) if s.unclean > 0 => format!("{} ⚠{}/{}", si(s.rate()), s.unclean, s.count),
        Some(s) => si(s.rate()),
    }
}

fn run(res: &Results) -> String {
    let quick = res.meta("mode") == "quick";
    let mut s = String::new();
    if quick {
        let _ = writeln!(
            s,
            "> **This is a quick run** (`scripts/bench.sh --quick`): a subset of the matrix, \
             {} s windows, {} run per cell. Treat the numbers as a smoke test of the \
             pipeline, not as results; run `scripts/bench.sh` on a quiet machine for those.\n",
            res.meta("duration"),
            res.meta("runs")
        );
    }
    let _ = writeln!(
        s,
        "Measured {} at commit `{}` in {} s. Each cell: {} s warm-up, {} s measured, \
         {} run(s), median shown. Load average (1/5/15 min) was {} at the start and {} \
         at the end{}.",
        res.meta("date"),
        res.meta("git"),
        res.meta("total_secs"),
        res.meta("warmup"),
        res.meta("duration"),
        res.meta("runs"),
        res.meta("loadavg_start"),
        res.meta("loadavg_end"),
        if quick {
            "; other builds may have been running"
        } else {
            ""
        }
    );
    s
}

fn machine(res: &Results) -> String {
    let mem_gib = res
        .meta_f64("mem_total_kib")
        .map_or("?".into(), |k| format!("{:.1} GiB", k / (1024.0 * 1024.0)));
    let mut s = String::from("| | |\n|---|---|\n");
    let rows = [
        ("CPU", res.meta("cpu").to_string()),
        ("cores (nproc)", res.meta("nproc").to_string()),
        ("memory", mem_gib),
        ("kernel (uname -r)", res.meta("kernel").to_string()),
        (
            "open files (ulimit -n soft/hard)",
            format!("{} / {}", res.meta("ulimit_n"), res.meta("ulimit_hn")),
        ),
        (
            "fs.nr_open / fs.file-max",
            format!("{} / {}", res.meta("nr_open"), res.meta("file_max")),
        ),
        (
            "net.ipv4.ip_local_port_range",
            res.meta("port_range").to_string(),
        ),
        ("net.core.somaxconn", res.meta("somaxconn").to_string()),
        ("net.ipv4.tcp_mem (pages)", res.meta("tcp_mem").to_string()),
        (
            "net.ipv4.tcp_rmem / tcp_wmem",
            format!("{} / {}", res.meta("tcp_rmem"), res.meta("tcp_wmem")),
        ),
        ("loadgen threads", res.meta("loadgen_threads").to_string()),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    s
}

fn peers(res: &Results) -> String {
    let mut s = String::from("| target | version | started as |\n|---|---|---|\n");
    for label in res.labels() {
        let _ = writeln!(
            s,
            "| {label} | {} | `{}` |",
            res.meta(&format!("version_{label}")),
            res.short(res.meta(&format!("start_{label}")))
                .replace('|', "\\|")
        );
    }
    for (k, what) in [
        ("config_nats", "NATS config"),
        ("config_mosquitto", "Mosquitto config"),
    ] {
        if let Some(v) = res.meta.get(k) {
            let _ = writeln!(s, "\n{what}: `{}`", v.trim_end_matches(';'));
        }
    }
    s
}

/// Ours against the better of NATS and Redis in every throughput cell, and the two
/// headline goals.
fn summary(res: &Results) -> String {
    let mut s = String::new();
    let mut cells = 0;
    let mut wins = 0;
    let mut worst: Option<(f64, String)> = None;
    let mut relay_fracs = Vec::new();
    for (scenario, payload, _) in THROUGHPUT {
        for cell in res
            .cells(scenario)
            .into_iter()
            .filter(|c| c.payload == payload)
        {
            let Some(ours) = res.median(&cell, "ours").map(|m| m.rate()) else {
                continue;
            };
            let best = ["nats", "redis"]
                .iter()
                .filter_map(|l| res.median(&cell, l).map(|m| m.rate()))
                .fold(0.0, f64::max);
            if best > 0.0 {
                cells += 1;
                let r = ours / best;
                if r >= 1.0 {
                    wins += 1;
                }
                if worst.as_ref().is_none_or(|(w, _)| r < *w) {
                    worst = Some((r, cell.to_string()));
                }
            }
            if let Some(relay) = res.median(&cell, "relay").map(|m| m.rate()) {
                if relay > 0.0 {
                    relay_fracs.push(ours / relay);
                }
            }
        }
    }
    let _ = writeln!(
        s,
        "- Throughput: ours is at least the better of NATS and Redis in **{wins} of {cells}** cells."
    );
    if let Some((r, cell)) = worst {
        let _ = writeln!(s, "  Weakest cell: {cell}, at {r:.2}× the better peer.");
    }
    if !relay_fracs.is_empty() {
        relay_fracs.sort_by(f64::total_cmp);
        let _ = writeln!(
            s,
            "- Against the relay ceiling: median cell at **{:.0}%**, range {:.0}%–{:.0}%.",
            100.0 * relay_fracs[(relay_fracs.len() - 1) / 2],
            100.0 * relay_fracs[0],
            100.0 * relay_fracs[relay_fracs.len() - 1]
        );
    }
    let f1000 = CellKey {
        scenario: "fanout".into(),
        n: 1000,
        payload: 16,
        rate: 0,
    };
    if let (Some(o), Some(n)) = (res.median(&f1000, "ours"), res.median(&f1000, "nats")) {
        let _ = writeln!(
            s,
            "- Fan-out 1 → 1000 at 16 B: ours {} vs NATS {} = **{:.2}×** (goal 2.5×).",
            si(o.rate()),
            si(n.rate()),
            o.rate() / n.rate().max(1.0)
        );
    }
    // Issue 11's goal for the cells where every message is parsed for one delivery.
    let mut parsed = Vec::new();
    for (scenario, n) in [("pairs", 100), ("fanin", 16)] {
        for payload in [16, 256] {
            let cell = CellKey {
                scenario: scenario.into(),
                n,
                payload,
                rate: 0,
            };
            if let (Some(o), Some(nats)) = (res.median(&cell, "ours"), res.median(&cell, "nats")) {
                parsed.push(format!("{cell} {:.2}×", o.rate() / nats.rate().max(1.0)));
            }
        }
    }
    if !parsed.is_empty() {
        let _ = writeln!(
            s,
            "- One parse per delivery, ours against NATS: {} (goal 1.5×).",
            parsed.join(", ")
        );
    }
    let lat = CellKey {
        scenario: "latency".into(),
        n: 100,
        payload: 16,
        rate: 10_000,
    };
    let p99 = |l: &str| res.latency_median(&lat, l).map(|x| x.p99);
    if let Some(o) = p99("ours") {
        let peers: Vec<String> = ["nats", "redis"]
            .iter()
            .filter_map(|l| p99(l).map(|v| format!("{l} {v} µs")))
            .collect();
        let vs_redis = p99("redis")
            .map(|r| format!("; {:.2}× Redis's (goal 0.5×)", o as f64 / r.max(1) as f64))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "- Latency at 10k msgs/s → 100 subscribers: ours p99 **{o} µs** ({}){vs_redis}.",
            peers.join(", ")
        );
    }
    let lat50 = CellKey {
        rate: 50_000,
        ..lat
    };
    if let Some(o) = res.median(&lat50, "ours") {
        let want = 50_000.0 * 100.0;
        let _ = writeln!(
            s,
            "- 50k msgs/s → 100 subscribers: ours delivered {} of the {} asked ({}){}.",
            si(o.rate()),
            si(want),
            if o.rate() >= 0.99 * want && o.unclean == 0 {
                "kept up"
            } else {
                "did not keep up"
            },
            res.latency_median(&lat50, "ours")
                .map(|l| format!(", p99 {} µs (goal under 5000 µs)", l.p99))
                .unwrap_or_default()
        );
    }
    if let Some(c) = res
        .runs
        .iter()
        .filter(|r| r.label == "ours")
        .find_map(|r| r.rec.conns.as_ref())
    {
        let _ = writeln!(
            s,
            "- Connections: ours held **{}** of {} idle subscribed clients at {} of RSS each.",
            c.reached,
            c.wanted,
            c.rss_per_conn.map_or("?".into(), |b| format!("{b:.0} B"))
        );
    }
    s
}

fn throughput(res: &Results) -> String {
    let labels = res.labels();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Delivered messages per second (counted at every subscriber), median of the runs. \
         ⚠k/n: k of the n runs lost, reordered or failed something (see the raw records).\n"
    );
    for (scenario, payload, title) in THROUGHPUT {
        let cells: Vec<CellKey> = res
            .cells(scenario)
            .into_iter()
            .filter(|c| c.payload == payload)
            .collect();
        if cells.is_empty() {
            continue;
        }
        let _ = writeln!(s, "#### {title}\n");
        let mut head = String::from("| N | window |");
        let mut rule = String::from("|--:|--:|");
        for l in &labels {
            head.push_str(&format!(" {l} |"));
            rule.push_str("--:|");
        }
        head.push_str(" ours/NATS | ours/Redis | ours/relay |");
        rule.push_str("--:|--:|--:|");
        let _ = writeln!(s, "{head}\n{rule}");
        for cell in &cells {
            let window = labels
                .iter()
                .find_map(|l| res.median(cell, l))
                .and_then(|m| m.run.rec.params.window)
                .map_or("—".into(), |w| w.to_string());
            let mut row = format!("| {} | {window} |", cell.n);
            for l in &labels {
                row.push_str(&format!(" {} |", rate_cell(res.median(cell, l))));
            }
            let ours = res.median(cell, "ours").map_or(0.0, |m| m.rate());
            let of = |l: &str| res.median(cell, l).map(|m| m.rate());
            row.push_str(&format!(
                " {} | {} | {} |",
                ratio(ours, of("nats")),
                ratio(ours, of("redis")),
                pct(ours, of("relay"))
            ));
            let _ = writeln!(s, "{row}");
        }
        s.push('\n');
    }
    s
}

fn cost(res: &Results) -> String {
    let labels = res.labels();
    let warmup = res.meta_f64("warmup").unwrap_or(0.0);
    let mut s = String::from(
        "Per delivered message, median run of each cell: the broker's CPU time (user + \
         system, from `/proc/PID/stat`, in nanoseconds) · the broker's syscalls of every \
         kind, all threads (`perf stat -e raw_syscalls:sys_enter` over the whole run incl. \
         connect and drain, divided by the deliveries of warm-up + window, so it slightly \
         overstates). Then our broker's and loadgen's CPU as % of one core: a side near 100% \
         (or both together near 200%) is what saturated.\n\n",
    );
    let mut head = String::from("| cell |");
    let mut rule = String::from("|---|");
    for l in &labels {
        head.push_str(&format!(" {l} ns · sc |"));
        rule.push_str("--:|");
    }
    head.push_str(" ours CPU broker / loadgen |");
    rule.push_str("--:|");
    let _ = writeln!(s, "{head}\n{rule}");
    for (scenario, payload, _) in THROUGHPUT {
        for cell in res
            .cells(scenario)
            .into_iter()
            .filter(|c| c.payload == payload)
        {
            let mut row = format!("| {cell} |");
            for l in &labels {
                let v = res.median(&cell, l).map_or("—".into(), |m| {
                    let ns = m
                        .run
                        .cpu_ns_per_msg()
                        .map_or("?".into(), |v| format!("{v:.0}"));
                    let sc = m
                        .run
                        .syscalls_per_msg(warmup)
                        .map_or("?".into(), |v| format!("{v:.3}"));
                    format!("{ns} · {sc}")
                });
                row.push_str(&format!(" {v} |"));
            }
            let cpu = res.median(&cell, "ours").map_or("—".into(), |m| {
                let d = m.run.rec.params.duration.max(1e-9);
                format!(
                    "{:.0}% / {:.0}%",
                    100.0 * m.run.rec.broker_cpu_secs.unwrap_or(0.0) / d,
                    100.0 * m.run.rec.loadgen_cpu_secs / d
                )
            });
            row.push_str(&format!(" {cpu} |"));
            let _ = writeln!(s, "{row}");
        }
    }
    s
}

fn latency(res: &Results) -> String {
    let cells = res.cells("latency");
    if cells.is_empty() {
        return "Not measured in this run.".into();
    }
    let mut s = String::from(
        "End-to-end latency in microseconds, from the *intended* send time of a paced \
         publisher (so stalls are not hidden), median of each percentile over the runs. \
         \"delivered\" is the achieved rate against the rate × subscribers asked for.\n\n\
         | cell | target | p50 | p90 | p99 | p99.9 | max | delivered/s | of asked | loss |\n\
         |---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for cell in &cells {
        for l in res.labels() {
            let Some(m) = res.median(cell, l) else {
                continue;
            };
            let p = res
                .latency_median(cell, l)
                .map_or(["no samples"; 5].map(String::from), |x| {
                    [x.p50, x.p90, x.p99, x.p999, x.max].map(|v| v.to_string())
                });
            let asked = cell.rate as f64 * cell.n as f64;
            let _ = writeln!(
                s,
                "| {cell} | {l} | {} | {} | {} | {} | {} | {} | {:.0}% | {} |",
                p[0],
                p[1],
                p[2],
                p[3],
                p[4],
                si(m.rate()),
                100.0 * m.rate() / asked.max(1.0),
                m.run.rec.loss
            );
        }
    }
    s
}

fn conns(res: &Results) -> String {
    let mut s = String::from(
        "One ramp per broker, each restarted just before it (so nothing left by the \
         throughput cells counts as already there), to the target below (idle subscribers, \
         each on its own channel, spread over source addresses), then one publish to 100 \
         random subscribers. \
         RSS/conn is the broker's `VmRSS` growth over the ramp divided by the connections \
         held. Kernel memory is sampled by bench.sh during the ramp (machine-wide, both \
         ends of every loopback connection, other activity included): slab growth per \
         connection, and TCP buffer pages from `/proc/net/sockstat`.\n\n\
         | broker | held / asked | connect rate | RSS/conn | kernel slab/conn | TCP pages (peak) | probe | stopped by |\n\
         |---|--:|--:|--:|--:|--:|--:|---|\n",
    );
    let mut any = false;
    for l in res.labels() {
        for run in res.runs.iter().filter(|r| r.label == l) {
            let Some(c) = &run.rec.conns else { continue };
            any = true;
            let km = res.kernel_mem.get(l);
            let slab = km
                .filter(|_| c.reached > 0)
                .map_or("—".into(), |(a, b, _, _)| {
                    format!("{:.1} KiB", b.saturating_sub(*a) as f64 / c.reached as f64)
                });
            let pages = km.map_or("—".into(), |(_, _, a, b)| format!("{a} → {b}"));
            let stopped = match (&c.stopped_by, &c.error) {
                (Some(by), Some(e)) => format!("{by}: {e}"),
                (Some(by), None) => by.clone(),
                _ => "nothing: reached the target".into(),
            };
            let _ = writeln!(
                s,
                "| {l} | {} / {} | {}/s | {} | {slab} | {pages} | {}/{} | {} |",
                c.reached,
                c.wanted,
                si(run.rec.connect_rate),
                c.rss_per_conn.map_or("—".into(), |b| format!("{b:.0} B")),
                c.probe_received,
                c.probe_sent,
                stopped.replace('|', "\\|")
            );
        }
    }
    if !any {
        return "Not measured in this run.".into();
    }
    s
}

/// The measured inputs of the "what limits it" prose.
fn limits(res: &Results) -> String {
    let mut s = String::new();
    let nofile = res.meta_f64("ulimit_n");
    let ports = res.meta("port_range").to_string();
    let span = {
        let v: Vec<f64> = ports
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        (v.len() == 2).then(|| v[1] - v[0] + 1.0)
    };
    let _ = writeln!(s, "| limit | on this machine | measured |\n|---|---|---|");
    let ours_conns = res
        .runs
        .iter()
        .filter(|r| r.label == "ours")
        .find_map(|r| r.rec.conns.as_ref().map(|c| (r, c)));
    let _ = writeln!(
        s,
        "| open files per process | `ulimit -n` = {} | ours held {} connections; stopped by: {} |",
        nofile.map_or("?".into(), |n| format!("{n:.0}")),
        ours_conns.map_or("?".into(), |(_, c)| c.reached.to_string()),
        ours_conns
            .and_then(|(_, c)| c.stopped_by.clone())
            .unwrap_or_else(|| "nothing (the ramp's target was reached)".into())
            .replace('|', "\\|")
    );
    let _ = writeln!(
        s,
        "| ephemeral ports per source address | {ports} = {} ports | not reached: conns used 2 source addresses |",
        span.map_or("?".into(), |n| format!("{n:.0}"))
    );
    let slab = ours_conns.and_then(|(_, c)| {
        let (a, b, _, _) = res.kernel_mem.get("ours")?;
        (c.reached > 0).then(|| b.saturating_sub(*a) as f64 / c.reached as f64)
    });
    let _ = writeln!(
        s,
        "| kernel socket memory | tcp_mem {} pages (min/pressure/max) | slab +{} per connection (both loopback ends; machine-wide, noisy) |",
        res.meta("tcp_mem"),
        slab.map_or("not measured".into(), |k| format!("{k:.1} KiB"))
    );
    let _ = writeln!(
        s,
        "| broker RSS per idle connection | {} GiB of memory | ours {} |",
        res.meta_f64("mem_total_kib")
            .map_or("?".into(), |k| format!("{:.1}", k / 1048576.0)),
        ours_conns
            .and_then(|(_, c)| c.rss_per_conn)
            .map_or("not measured".into(), |b| format!("{b:.0} B"))
    );
    let warmup = res.meta_f64("warmup").unwrap_or(0.0);
    for (cell, what) in [
        (("fanout", 1000usize, 16usize), "fan-out 1 → 1000, 16 B"),
        (("fanin", 16, 16), "fan-in 16 → 1, 16 B"),
        (("pairs", 1000, 16), "pairs 1000, 16 B"),
    ] {
        let key = CellKey {
            scenario: cell.0.into(),
            n: cell.1,
            payload: cell.2,
            rate: 0,
        };
        let Some(m) = res.median(&key, "ours") else {
            continue;
        };
        let cpu = m.run.cpu_ns_per_msg();
        let sc = m.run.syscalls_per_msg(warmup);
        let _ = writeln!(
            s,
            "| CPU and syscalls per delivered message, {what} | {} cores | {} ns CPU, {} syscalls (≈), at {} msgs/s |",
            res.meta("nproc"),
            cpu.map_or("?".into(), |v| format!("{v:.0}")),
            sc.map_or("?".into(), |v| format!("{v:.3}")),
            si(m.rate())
        );
    }
    s
}

fn chart_links(charts: &[String]) -> String {
    if charts.is_empty() {
        return "No charts: nothing to plot in this run.".into();
    }
    charts
        .iter()
        .map(|c| format!("![{c}](bench/{c})\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn commands(res: &Results) -> String {
    let mut s = String::from("```sh\n");
    let mode = if res.meta("mode") == "quick" {
        "scripts/bench.sh --quick"
    } else {
        "scripts/bench.sh"
    };
    let _ = writeln!(s, "{mode}   # what produced this report\n");
    let _ = writeln!(s, "# the targets");
    for l in res.labels() {
        let _ = writeln!(s, "{}", res.short(res.meta(&format!("start_{l}"))));
    }
    s.push_str("```\n\n");
    let _ = writeln!(
        s,
        "<details><summary>All {} loadgen runs, in order</summary>\n\n```sh",
        res.commands.len()
    );
    for c in &res.commands {
        let _ = writeln!(s, "{}", res.short(c));
    }
    s.push_str("```\n</details>\n");
    s
}
