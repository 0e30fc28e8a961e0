//! The status page's charts: [`HistoryReport`], the last minutes sampled,
//! drawn as inline SVG line charts (no script, no external asset).
//!
//! Apart from the page assembly in [`super`] because it is geometry (axes,
//! scales, one polyline per run of known values), not the page's markup.

use super::esc;
use crate::history::HistoryReport;
use std::fmt::{self, Write as _};

/// Relays drawn one by one in a chart; the rest are summed as "others".
const CHART_RELAYS: usize = 8;

/// Line colours of the charts (the last one is for "others").
const PALETTE: [&str; 9] = [
    "#2563eb", "#16a34a", "#db2777", "#ea580c", "#7c3aed", "#0891b2", "#ca8a04", "#4b5563",
    "#9ca3af",
];

/// One line of a chart.
struct Series<'a> {
    name: &'a str,
    color: &'a str,
    values: Vec<Option<f64>>,
}

/// Writes the `<section class="charts">` of `hist`: listeners and room per
/// relay (the [`CHART_RELAYS`] with the most listeners now, the rest summed),
/// redirects and DNS answers per second.
pub(super) fn write(h: &mut String, hist: &HistoryReport) -> fmt::Result {
    h.push_str("<section class=\"charts\">\n");
    // The relays with the most listeners now get a line each.
    let mut order: Vec<usize> = (0..hist.relays.len()).collect();
    let last = |v: &[Option<u32>]| v.last().copied().flatten().unwrap_or(0);
    order.sort_by_key(|&i| std::cmp::Reverse(last(&hist.relays[i].listeners)));
    let (shown, rest) = order.split_at(order.len().min(CHART_RELAYS));
    let mut shown = shown.to_vec();
    shown.sort_unstable();
    let per_relay = |get: &dyn Fn(usize, usize) -> Option<f64>| -> Vec<Series<'_>> {
        let mut out: Vec<Series<'_>> = shown
            .iter()
            .enumerate()
            .map(|(k, &i)| Series {
                name: &hist.relays[i].name,
                color: PALETTE[k % (PALETTE.len() - 1)],
                values: (0..hist.t.len()).map(|j| get(i, j)).collect(),
            })
            .collect();
        if !rest.is_empty() {
            out.push(Series {
                name: "other relays",
                color: PALETTE[PALETTE.len() - 1],
                values: (0..hist.t.len())
                    .map(|j| {
                        rest.iter()
                            .map(|&i| get(i, j))
                            .try_fold(0.0, |a, v| v.map(|v| a + v))
                    })
                    .collect(),
            });
        }
        out
    };
    let listeners = per_relay(&|i, j| hist.relays[i].listeners[j].map(f64::from));
    chart(
        h,
        "chart-listeners",
        "Listeners per relay",
        &hist.t,
        &listeners,
    )?;
    let room = per_relay(&|i, j| hist.relays[i].room[j].map(|n| n as f64));
    chart(
        h,
        "chart-room",
        "Room per relay (blank: unlimited)",
        &hist.t,
        &room,
    )?;
    let redirects = vec![
        Series {
            name: "302 redirects/s",
            color: PALETTE[0],
            values: hist.redirects_per_second.clone(),
        },
        Series {
            name: "503/400 refused/s",
            color: "#dc2626",
            values: hist.refused_per_second.clone(),
        },
    ];
    chart(
        h,
        "chart-redirects",
        "Redirects per second",
        &hist.t,
        &redirects,
    )?;
    let dns = vec![Series {
        name: "DNS answers/s",
        color: PALETTE[4],
        values: hist.dns_answers_per_second.clone(),
    }];
    chart(h, "chart-dns", "DNS answers per second", &hist.t, &dns)?;
    h.push_str("</section>\n");
    Ok(())
}

/// A round upper bound for a chart's y axis.
fn nice_max(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= step * mag {
            return step * mag;
        }
    }
    10.0 * mag
}

fn num(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// One chart: an inline SVG of `series` over the sample times `t` (the
/// samples kept, up to ten minutes, newest at the right).
fn chart(h: &mut String, id: &str, title: &str, t: &[f64], series: &[Series<'_>]) -> fmt::Result {
    const W: f64 = 480.0;
    const H: f64 = 150.0;
    const X0: f64 = 44.0;
    const X1: f64 = 470.0;
    const Y0: f64 = 10.0;
    const Y1: f64 = 124.0;
    // The time axis spans the samples kept (at least a minute, at most
    // the ring's ten minutes), newest at the right.
    let window = crate::history::INTERVAL.as_secs_f64() * crate::history::CAPACITY as f64;
    let end = t.last().copied().unwrap_or(0.0);
    let window = (end - t.first().copied().unwrap_or(end)).clamp(60.0, window);
    let start = end - window;
    let top = nice_max(
        series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied())
            .fold(0.0, f64::max),
    );
    let x = |ts: f64| X0 + (ts - start) / window * (X1 - X0);
    let y = |v: f64| Y1 - v / top * (Y1 - Y0);
    writeln!(
        h,
        "<figure class=\"chart-box\"><figcaption>{}</figcaption>\
         <svg class=\"chart\" id=\"{id}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        esc(title),
        esc(title),
        esc(title)
    )?;
    for frac in [0.0, 0.5, 1.0] {
        let gy = y(top * frac);
        writeln!(
            h,
            "<line class=\"grid\" x1=\"{X0}\" x2=\"{X1}\" y1=\"{gy:.1}\" y2=\"{gy:.1}\"/>\
             <text class=\"ax\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            X0 - 4.0,
            gy + 3.5,
            num(top * frac)
        )?;
    }
    let (left, middle) = (
        format!("−{}", span(window)),
        format!("−{}", span(window / 2.0)),
    );
    for (label, at) in [
        (left.as_str(), X0),
        (middle.as_str(), (X0 + X1) / 2.0),
        ("now", X1),
    ] {
        write!(
            h,
            "<text class=\"ax\" x=\"{at}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            H - 8.0
        )?;
    }
    if t.len() < 2 {
        write!(
            h,
            "<text class=\"wait\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">collecting samples…</text>",
            (X0 + X1) / 2.0,
            (Y0 + Y1) / 2.0
        )?;
    }
    for s in series {
        // One polyline per run of known values.
        let mut run = String::new();
        let flush = |run: &mut String, h: &mut String| -> fmt::Result {
            if !run.is_empty() {
                write!(
                    h,
                    "<polyline class=\"line\" stroke=\"{}\" points=\"{}\"/>",
                    s.color,
                    run.trim_end()
                )?;
            }
            run.clear();
            Ok(())
        };
        for (ts, v) in t.iter().zip(&s.values) {
            match v {
                Some(v) => {
                    let _ = write!(run, "{:.1},{:.1} ", x(*ts), y(*v));
                }
                None => flush(&mut run, h)?,
            }
        }
        flush(&mut run, h)?;
    }
    h.push_str("</svg><ul class=\"legend\">");
    for s in series {
        let now = s
            .values
            .last()
            .copied()
            .flatten()
            .map_or("–".to_string(), num);
        write!(
            h,
            "<li><i style=\"background:{}\"></i>{} <b>{}</b></li>",
            s.color,
            esc(s.name),
            now
        )?;
    }
    h.push_str("</ul></figure>\n");
    Ok(())
}

/// A chart's time span: `45 s`, `3 min`, `10 min`.
fn span(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else {
        format!("{:.0} min", secs / 60.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_axis_tops_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(130.0), 200.0);
        assert_eq!(nice_max(240.0), 250.0);
    }
}
