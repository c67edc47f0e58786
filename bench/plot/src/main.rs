//! `raft-kv-bench-plot RESULTS.csv OUT.svg [TITLE]`: for every workload in
//! the CSV written by `bench/compare_etcd.sh`, two panels side by side:
//! throughput and p99 latency against connections (both axes logarithmic
//! except throughput's), one line per system.
//!
//! The CSV has a header line and the columns
//! `workload,connections,system,throughput,p50_ms,p99_ms,errors`; a run that
//! failed has empty figures and is left out of the lines.

use std::error::Error;
use std::fs;
use std::process::ExitCode;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// One measured run.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    workload: String,
    connections: f64,
    system: String,
    throughput: Option<f64>,
    p99_ms: Option<f64>,
}

/// The rows of the CSV, in file order.
fn parse(csv: &str) -> Result<Vec<Row>> {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or("empty CSV")?
        .split(',')
        .map(str::trim)
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| format!("the CSV has no column {name:?}"))
    };
    let (w, c, s, t, p99) = (
        column("workload")?,
        column("connections")?,
        column("system")?,
        column("throughput")?,
        column("p99_ms")?,
    );
    let number = |text: &str| text.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        let field = |n: usize| {
            fields
                .get(n)
                .copied()
                .ok_or_else(|| format!("line {}: too few fields", i + 2))
        };
        rows.push(Row {
            workload: field(w)?.trim().to_string(),
            connections: number(field(c)?)
                .filter(|&c| c >= 1.0)
                .ok_or_else(|| format!("line {}: bad connection count", i + 2))?,
            system: field(s)?.trim().to_string(),
            throughput: number(field(t)?),
            p99_ms: number(field(p99)?).filter(|&v| v > 0.0),
        });
    }
    Ok(rows)
}

/// The distinct values of `key`, in order of first appearance.
fn distinct(rows: &[Row], key: impl Fn(&Row) -> &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for row in rows {
        if !seen.iter().any(|s| s == key(row)) {
            seen.push(key(row).to_string());
        }
    }
    seen
}

/// One line: a system's points, sorted by connections.
struct Line {
    system: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

fn lines(rows: &[Row], workload: &str, value: impl Fn(&Row) -> Option<f64>) -> Vec<Line> {
    distinct(rows, |r| &r.system)
        .into_iter()
        .enumerate()
        .map(|(i, system)| {
            let mut points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.workload == workload && r.system == system)
                .filter_map(|r| Some((r.connections, value(r)?)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Line {
                system,
                color: COLORS[i % COLORS.len()],
                points,
            }
        })
        .filter(|l| !l.points.is_empty())
        .collect()
}

/// The smallest and largest y of `lines`.
fn y_bounds(lines: &[Line]) -> Option<(f64, f64)> {
    let ys = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    ys.fold(None, |acc, y| match acc {
        None => Some((y, y)),
        Some((lo, hi)) => Some((lo.min(y), hi.max(y))),
    })
}

/// The x axis: connections, logarithmic, labelled at the measured counts.
struct XAxis {
    low: f64,
    high: f64,
    ticks: Vec<f64>,
}

/// Draws one panel of `lines` with the y axis `y`.
fn panel<Y>(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    caption: &str,
    y_desc: &str,
    x: &XAxis,
    y: Y,
    lines: &[Line],
) -> Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (x.low..x.high).log_scale().with_key_points(x.ticks.clone()),
            y,
        )?;
    chart
        .configure_mesh()
        .x_desc("connections")
        .y_desc(y_desc)
        .max_light_lines(1)
        .y_labels(8)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| {
            if *v >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        })
        .draw()?;
    for line in lines {
        let color = line.color;
        chart
            .draw_series(
                LineSeries::new(line.points.iter().copied(), color.stroke_width(2)).point_size(3),
            )?
            .label(line.system.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn plot(rows: &[Row], out: &str, title: &str) -> Result<()> {
    let workloads = distinct(rows, |r| &r.workload);
    if workloads.is_empty() {
        return Err("the CSV has no rows".into());
    }
    let mut ticks: Vec<f64> = rows.iter().map(|r| r.connections).collect();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    // A little room left and right of the outermost points.
    let x = XAxis {
        low: ticks[0] / 1.4,
        high: ticks[ticks.len() - 1] * 1.4,
        ticks,
    };
    let height = 60 + 340 * workloads.len() as u32;
    let root = SVGBackend::new(out, (1100, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let areas = root.split_evenly((workloads.len(), 2));
    for (i, workload) in workloads.iter().enumerate() {
        let throughput = lines(rows, workload, |r| r.throughput);
        let (_, top) = y_bounds(&throughput).unwrap_or((0.0, 1.0));
        panel(
            &areas[2 * i],
            &format!("{workload}: throughput"),
            "ops/s",
            &x,
            0.0..(top * 1.15).max(1.0),
            &throughput,
        )?;
        let p99 = lines(rows, workload, |r| r.p99_ms);
        let (low, high) = y_bounds(&p99).unwrap_or((0.1, 1.0));
        panel(
            &areas[2 * i + 1],
            &format!("{workload}: p99 latency"),
            "p99, ms (log)",
            &x,
            ((low / 1.5).max(0.001)..(high * 1.5).max(0.01)).log_scale(),
            &p99,
        )?;
    }
    root.present()?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 || args.len() > 4 {
        eprintln!("usage: raft-kv-bench-plot RESULTS.csv OUT.svg [TITLE]");
        return ExitCode::from(2);
    }
    let title = args.get(3).map_or("raft-kv vs etcd", String::as_str);
    let result = fs::read_to_string(&args[1])
        .map_err(|e| format!("cannot read {}: {e}", args[1]).into())
        .and_then(|csv| parse(&csv))
        .and_then(|rows| plot(&rows, &args[2], title));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raft-kv-bench-plot: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "\
workload,connections,system,throughput,p50_ms,p99_ms,errors
put,16,raft-kv,4671,3.25,6.49,0
put,1,raft-kv,801,1.22,2.03,0
put,1,etcd gateway,680,1.41,2.95,0
put,16,etcd gateway,,,,
";

    #[test]
    fn rows_parse_and_failed_runs_have_no_figures() {
        let rows = parse(CSV).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].system, "raft-kv");
        assert_eq!(rows[0].throughput, Some(4671.0));
        assert_eq!(rows[3].throughput, None);
        assert_eq!(rows[3].p99_ms, None);
    }

    #[test]
    fn lines_are_per_system_sorted_by_connections() {
        let rows = parse(CSV).unwrap();
        let l = lines(&rows, "put", |r| r.throughput);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].system, "raft-kv");
        assert_eq!(l[0].points, [(1.0, 801.0), (16.0, 4671.0)]);
        assert_eq!(l[1].points, [(1.0, 680.0)]);
    }

    #[test]
    fn a_missing_column_is_an_error() {
        assert!(parse("workload,connections\nput,1\n").is_err());
    }

    #[test]
    fn the_svg_has_both_panels_and_every_system() {
        let rows = parse(CSV).unwrap();
        let out = std::env::temp_dir().join(format!("bench-plot-{}.svg", std::process::id()));
        plot(&rows, out.to_str().unwrap(), "test").unwrap();
        let svg = fs::read_to_string(&out).unwrap();
        let _ = fs::remove_file(&out);
        for text in [
            "put: throughput",
            "put: p99 latency",
            "raft-kv",
            "etcd gateway",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
    }
}
