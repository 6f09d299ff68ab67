//! SVG charts drawn with `plotters` from the medians in [`Results`]: delivered msgs/s
//! against subscribers for fan-out, latency percentiles per latency cell, and broker RSS
//! per idle connection. Each function writes one file and returns its name, or `None`
//! when the run has nothing to plot.

use crate::data::{bytes, si, Results};
use plotters::prelude::*;
use std::path::Path;

/// Chart size in pixels.
const SIZE: (u32, u32) = (760, 420);

/// One colour per target, in [`crate::data::LABELS`] order.
fn colour(label: &str) -> RGBColor {
    match label {
        "ours" => RGBColor(0xd6, 0x27, 0x28),
        "relay" => RGBColor(0x7f, 0x7f, 0x7f),
        "redis" => RGBColor(0x1f, 0x77, 0xb4),
        "nats" => RGBColor(0x2c, 0xa0, 0x2c),
        _ => RGBColor(0x94, 0x67, 0xbd),
    }
}

type DrawResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Delivered msgs/s vs subscribers (log scale) for fan-out at `payload` bytes.
pub fn fanout(res: &Results, payload: usize, dir: &Path) -> DrawResult<Option<String>> {
    let cells: Vec<_> = res
        .cells("fanout")
        .into_iter()
        .filter(|c| c.payload == payload)
        .collect();
    if cells.is_empty() {
        return Ok(None);
    }
    let name = format!("fanout-{payload}.svg");
    let path = dir.join(&name);
    let mut series = Vec::new();
    let mut top: f64 = 1.0;
    for label in res.labels() {
        let pts: Vec<(f64, f64)> = cells
            .iter()
            .filter_map(|c| res.median(c, label).map(|m| (c.n as f64, m.rate())))
            .collect();
        top = pts.iter().map(|p| p.1).fold(top, f64::max);
        series.push((label, pts));
    }
    let xmax = cells.iter().map(|c| c.n).max().unwrap_or(1).max(10) as f64;
    let root = SVGBackend::new(&path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Fan-out, {} payload: delivered msgs/s", bytes(payload)),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d((0.8f64..xmax * 1.25).log_scale(), 0f64..top * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("subscribers")
        .y_desc("delivered msgs/s")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| si(*v))
        .draw()?;
    for (label, pts) in series {
        let c = colour(label);
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(Some(name))
}

/// Latency percentiles (log scale) of every target for one latency cell.
pub fn latency(res: &Results, dir: &Path) -> DrawResult<Vec<String>> {
    let mut names = Vec::new();
    for cell in res.cells("latency") {
        let name = format!("latency-{}-{}.svg", cell.rate, cell.n);
        let path = dir.join(&name);
        let mut series = Vec::new();
        let mut top: f64 = 10.0;
        for label in res.labels() {
            let Some(l) = res.latency_median(&cell, label) else {
                continue;
            };
            let v = [l.p50, l.p90, l.p99, l.p999, l.max];
            let pts: Vec<(f64, f64)> = v
                .iter()
                .enumerate()
                .map(|(i, us)| (i as f64, (*us).max(1) as f64))
                .collect();
            top = pts.iter().map(|p| p.1).fold(top, f64::max);
            series.push((label, pts));
        }
        if series.is_empty() {
            continue;
        }
        let root = SVGBackend::new(&path, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Latency at {cell} (µs, log scale)"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.2f64..4.2, (1f64..top * 2.0).log_scale())?;
        chart
            .configure_mesh()
            .x_labels(5)
            .x_label_formatter(&|v| {
                ["p50", "p90", "p99", "p99.9", "max"]
                    .get(v.round() as usize)
                    .filter(|_| (v - v.round()).abs() < 0.01)
                    .map_or(String::new(), |s| s.to_string())
            })
            .y_desc("µs")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        for (label, pts) in series {
            let c = colour(label);
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
        root.present()?;
        names.push(name);
    }
    Ok(names)
}

/// Broker RSS per idle subscribed connection, one bar per broker.
pub fn rss(res: &Results, dir: &Path) -> DrawResult<Option<String>> {
    let bars: Vec<(&str, f64)> = res
        .labels()
        .into_iter()
        .filter_map(|l| {
            res.runs
                .iter()
                .filter(|r| r.label == l)
                .find_map(|r| r.rec.conns.as_ref()?.rss_per_conn)
                .map(|b| (l, b.max(0.0)))
        })
        .collect();
    if bars.is_empty() {
        return Ok(None);
    }
    let name = "rss-per-conn.svg".to_string();
    let path = dir.join(&name);
    let top = bars.iter().map(|b| b.1).fold(1024.0, f64::max) * 1.15;
    let labels: Vec<String> = bars.iter().map(|b| b.0.to_string()).collect();
    let root = SVGBackend::new(&path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Broker RSS per idle subscribed connection (bytes)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..bars.len() as f64 - 0.5, 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len())
        .x_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 0.01 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    for (i, (label, b)) in bars.iter().enumerate() {
        let x = i as f64;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x - 0.3, 0.0), (x + 0.3, *b)],
            colour(label).filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{b:.0}"),
            (x - 0.12, *b + top * 0.02),
            ("sans-serif", 14),
        )))?;
    }
    root.present()?;
    Ok(Some(name))
}
