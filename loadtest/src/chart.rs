//! A self-contained SVG chart of a run: throughput (sent and delivered per
//! second) above, delivery latency (p50, p99, log scale) below, membership
//! events as labelled vertical lines across both.

use std::fmt::Write;

use crate::timeline::Row;

const WIDTH: f64 = 960.0;
const PANEL: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 50.0;

/// Renders the chart.
pub fn svg(title: &str, rows: &[Row], events: &[(f64, String)]) -> String {
    let height = TOP + 2.0 * PANEL + GAP + 40.0;
    let seconds = rows.len().max(1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let x = |t: f64| LEFT + t / seconds * plot_w;
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="{LEFT}" y="20" font-size="15" font-weight="bold">{}</text>
"##,
        escape(title)
    );

    // Throughput panel.
    let top1 = TOP;
    let max_rate = rows
        .iter()
        .map(|r| r.delivered.max(r.sent))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_rate = nice(max_rate);
    let y1 = |v: f64| top1 + PANEL - v / max_rate * PANEL;
    let ticks: Vec<(f64, String)> = (0..=4)
        .map(|i| max_rate * i as f64 / 4.0)
        .map(|v| (y1(v), human(v)))
        .collect();
    axes(&mut out, top1, "per second", &ticks);
    let delivered: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (x(r.second as f64 + 0.5), y1(r.delivered as f64)))
        .collect();
    let sent: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (x(r.second as f64 + 0.5), y1(r.sent as f64)))
        .collect();
    polyline(&mut out, &delivered, "#1f77b4");
    polyline(&mut out, &sent, "#aaa");
    legend(
        &mut out,
        top1,
        &[("delivered", "#1f77b4"), ("sent", "#aaa")],
    );

    // Latency panel, log scale from 0.1 ms to the next power of ten above the max.
    let top2 = TOP + PANEL + GAP;
    let max_ms = rows.iter().filter_map(|r| r.p99_ms).fold(1.0f64, f64::max);
    let decades = max_ms.log10().ceil().max(1.0) + 1.0;
    let y2 = |ms: f64| top2 + PANEL - ((ms.max(0.1)).log10() + 1.0) / decades * PANEL;
    // One tick per decade.
    let ticks: Vec<(f64, String)> = (0..=decades as i32)
        .map(|k| 10f64.powi(k - 1))
        .map(|ms| (y2(ms), human(ms)))
        .collect();
    axes(&mut out, top2, "latency ms", &ticks);
    for (q, color) in [(0usize, "#2ca02c"), (1, "#d62728")] {
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| {
                let v = if q == 0 { r.p50_ms } else { r.p99_ms }?;
                Some((x(r.second as f64 + 0.5), y2(v)))
            })
            .collect();
        polyline(&mut out, &points, color);
    }
    legend(&mut out, top2, &[("p50", "#2ca02c"), ("p99", "#d62728")]);

    // Time axis.
    let bottom = top2 + PANEL;
    let step = (seconds / 10.0).ceil().max(1.0);
    let mut t = 0.0;
    while t <= seconds {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">{t}s</text>"##,
            x(t),
            bottom + 16.0
        );
        t += step;
    }

    // Events.
    for (i, (at, label)) in events.iter().enumerate() {
        let ex = x(*at);
        let _ = writeln!(
            out,
            r##"<line x1="{ex:.1}" y1="{top1}" x2="{ex:.1}" y2="{bottom}" stroke="#9467bd" stroke-dasharray="4 3"/>
<text x="{:.1}" y="{:.1}" fill="#9467bd" font-size="11">{}</text>"##,
            ex + 3.0,
            top1 + 12.0 + (i % 6) as f64 * 13.0,
            escape(label)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn axes(out: &mut String, top: f64, label: &str, ticks: &[(f64, String)]) {
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{}" height="{PANEL}" fill="none" stroke="#ccc"/>
<text x="12" y="{:.1}" transform="rotate(-90 12 {:.1})" text-anchor="middle" fill="#555">{label}</text>"##,
        WIDTH - LEFT - RIGHT,
        top + PANEL / 2.0,
        top + PANEL / 2.0
    );
    for (y, text) in ticks {
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/>
<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{text}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
    }
}

fn polyline(out: &mut String, points: &[(f64, f64)], color: &str) {
    if points.is_empty() {
        return;
    }
    let coords: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    let _ = writeln!(
        out,
        r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.8"/>"##,
        coords.join(" ")
    );
}

fn legend(out: &mut String, top: f64, items: &[(&str, &str)]) {
    for (i, (name, color)) in items.iter().enumerate() {
        let lx = WIDTH - RIGHT - 110.0 * (items.len() - i) as f64;
        let _ = writeln!(
            out,
            r##"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="3"/>
<text x="{:.1}" y="{:.1}">{name}</text>"##,
            top - 8.0,
            lx + 20.0,
            top - 8.0,
            lx + 25.0,
            top - 4.0
        );
    }
}

/// Rounds up to 1, 2 or 5 times a power of ten.
fn nice(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&n| n >= v)
        .unwrap_or(10.0 * p)
}

fn human(v: f64) -> String {
    if v >= 1000.0 && (v / 1000.0).fract() != 0.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_series_and_events() {
        let rows: Vec<Row> = (0..5)
            .map(|i| Row {
                second: i,
                sent: 100,
                delivered: 200,
                p50_ms: Some(1.0),
                p99_ms: Some(8.0),
            })
            .collect();
        let svg = svg("t <1>", &rows, &[(2.5, "drain node-1".into())]);
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("drain node-1"));
        assert!(svg.contains("t &lt;1&gt;"));
        assert_eq!(nice(180.0), 200.0);
        assert_eq!(nice(20_124.0), 50_000.0);
    }
}
