//! `benchreport`: turns the records `scripts/bench.sh` collected into
//! `docs/BENCHMARKS.md` and the SVG charts in `docs/bench/`.
//!
//! # Layout
//! - [`data`]: loads `records-LABEL.jsonl`, `meta.tsv`, `syscalls.tsv`, `kernelmem.tsv`
//!   and `commands.sh`; groups runs into cells; medians.
//! - [`render`]: the Markdown of each generated region.
//! - [`charts`]: the SVG charts (plotters).
//! - [`doc`]: splices regions between `<!-- BEGIN GENERATED:name -->` and
//!   `<!-- END GENERATED:name -->` markers and keeps every hand-written line.
//!
//! It only reads measurements; it never runs a benchmark and never makes up a number.

#[path = "benchreport/charts.rs"]
mod charts;
#[path = "benchreport/data.rs"]
mod data;
#[path = "benchreport/doc.rs"]
mod doc;
#[path = "benchreport/render.rs"]
mod render;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Regenerate docs/BENCHMARKS.md and docs/bench/*.svg from scripts/bench.sh's records.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Directory with records-LABEL.jsonl, meta.tsv, syscalls.tsv, kernelmem.tsv, commands.sh.
    #[arg(long)]
    results: PathBuf,
    /// The report to update in place (created from the built-in template if missing).
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    doc: PathBuf,
    /// Directory for the SVG charts (linked from the report as bench/NAME.svg).
    #[arg(long, default_value = "docs/bench")]
    charts: PathBuf,
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let res = data::Results::load(&args.results)?;
    std::fs::create_dir_all(&args.charts)?;
    let mut charts = Vec::new();
    for payload in [16, 1024] {
        charts.extend(charts::fanout(&res, payload, &args.charts)?);
    }
    charts.extend(charts::latency(&res, &args.charts)?);
    charts.extend(charts::rss(&res, &args.charts)?);
    let regions = render::regions(&res, &charts);
    let old = match std::fs::read_to_string(&args.doc) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => doc::TEMPLATE.to_string(),
        Err(e) => return Err(format!("reading {}: {e}", args.doc.display()).into()),
    };
    let (new, missing) = doc::splice(&old, &regions)?;
    for name in missing {
        eprintln!(
            "benchreport: {} has no GENERATED:{name} region; that part was not written",
            args.doc.display()
        );
    }
    std::fs::write(&args.doc, new)?;
    eprintln!(
        "benchreport: {} runs -> {} and {} chart(s) in {}",
        res.runs.len(),
        args.doc.display(),
        charts.len(),
        args.charts.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchreport: {e}");
            ExitCode::FAILURE
        }
    }
}
