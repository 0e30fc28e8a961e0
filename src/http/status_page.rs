//! `/status`: the page a person reads during an event.
//!
//! Rendered on the server from the same [`StatusReport`] as `/status.json`
//! (so both show one snapshot), as one self-contained HTML document: inline
//! CSS, inline SVG charts, and a few lines of inline JavaScript that fetch
//! `/status` again every two seconds and swap the page's `<main>` (a
//! `<noscript>` meta refresh does the same without JavaScript). No external
//! asset: it works offline and behind any proxy.
//!
//! Every string that comes from the config, a relay or a reload error goes
//! through [`esc`].

use crate::history::HistoryReport;
use crate::report::{RelayReport, StatusReport, StreamReport};
use std::fmt::{self, Write as _};

/// Seconds between two refreshes of the page.
pub const REFRESH_SECONDS: u32 = 2;

/// Relays drawn one by one in a chart; the rest are summed as "others".
const CHART_RELAYS: usize = 8;

/// Line colours of the charts (the last one is for "others").
const PALETTE: [&str; 9] = [
    "#2563eb", "#16a34a", "#db2777", "#ea580c", "#7c3aed", "#0891b2", "#ca8a04", "#4b5563",
    "#9ca3af",
];

/// HTML-escapes text for element content and quoted attributes.
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = 0;
        for (i, b) in self.0.bytes().enumerate() {
            let rep = match b {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                _ => continue,
            };
            f.write_str(&self.0[last..i])?;
            f.write_str(rep)?;
            last = i + 1;
        }
        f.write_str(&self.0[last..])
    }
}

/// Shorthand for [`Esc`].
pub fn esc(s: &str) -> Esc<'_> {
    Esc(s)
}

/// The whole page.
pub fn render(report: &StatusReport<'_>) -> String {
    let mut h = String::with_capacity(32 * 1024);
    let _ = write_page(&mut h, report);
    h
}

fn write_page(h: &mut String, r: &StatusReport<'_>) -> fmt::Result {
    write!(
        h,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<link rel="icon" href="data:,">
<title>floe status · generation {gen}</title>
<noscript><meta http-equiv="refresh" content="5"></noscript>
<style>{CSS}</style>
</head>
<body data-generation="{gen}">
<header><h1>floe</h1><span class="sub">relay balancer status</span>
<span id="live" class="live">live</span>
<nav><a href="/status.json">status.json</a><a href="/metrics">metrics</a><a href="/explain">explain</a></nav></header>
<main id="main">
"#,
        gen = r.generation
    )?;
    write_snapshot_line(h, r)?;
    write_alerts(h, r)?;
    write_tiles(h, r)?;
    if let Some(hist) = &r.history {
        write_charts(h, hist)?;
    }
    for s in &r.streams {
        write_stream(h, r, s)?;
    }
    write_relays(h, r)?;
    let js = JS.replace("REFRESH", &(REFRESH_SECONDS * 1000).to_string());
    writeln!(h, "</main>\n<script>{js}</script>\n</body></html>")
}

fn write_snapshot_line(h: &mut String, r: &StatusReport<'_>) -> fmt::Result {
    let reload = match (&r.reload.last_success, r.reload.successes) {
        (Some(at), n) => format!("config reloaded {n}× (last {})", esc(at)),
        (None, _) => "config as loaded at start".to_string(),
    };
    writeln!(
        h,
        "<p class=\"snap\">snapshot <b id=\"generation\">#{}</b> built {} ({} ago){} · {} · {} reload failure{}</p>",
        r.generation,
        esc(&r.built_at),
        ago(r.age_seconds),
        if r.stale {
            " <span class=\"badge down\">stale</span>"
        } else {
            ""
        },
        reload,
        r.reload.failures,
        if r.reload.failures == 1 { "" } else { "s" }
    )
}

fn write_alerts(h: &mut String, r: &StatusReport<'_>) -> fmt::Result {
    if let Some(e) = &r.reload.last_error {
        writeln!(
            h,
            "<div class=\"alert\" id=\"reload-error\"><b>Config reload failed</b> at {}: the last good config keeps \
             serving ({} failed, {} succeeded since start). Fix the file and reload again.<pre>{}</pre></div>",
            esc(&e.at),
            r.reload.failures,
            r.reload.successes,
            esc(&e.message)
        )?;
    }
    if r.stale {
        writeln!(
            h,
            "<div class=\"alert\"><b>Snapshot stale</b>: built {} ago; the poller may be stuck. DNS answers follow \
             <code>[dns] when_stale</code>.</div>",
            ago(r.age_seconds)
        )?;
    }
    if !r.first_round_done {
        h.push_str("<div class=\"alert warn\"><b>Starting</b>: not every relay has been polled yet.</div>\n");
    }
    Ok(())
}

fn write_tiles(h: &mut String, r: &StatusReport<'_>) -> fmt::Result {
    let listeners: u64 = r.relays.iter().map(|x| u64::from(x.listeners)).sum();
    let room = r
        .relays
        .iter()
        .try_fold(0u64, |acc, x| x.room.map(|n| acc + n));
    let in_flight: u64 = r.relays.iter().map(|x| x.in_flight).sum();
    let up = r
        .relays
        .iter()
        .filter(|x| x.state == "up" && !x.drain)
        .count();
    h.push_str("<section class=\"tiles\">\n");
    tile(
        h,
        "relays taking listeners",
        &format!("{up} / {}", r.relays.len()),
        "",
    )?;
    tile(h, "listeners", &listeners.to_string(), "at the last polls")?;
    tile(
        h,
        "room",
        &room.map_or("unlimited".into(), |n| n.to_string()),
        "new listeners the relays can take",
    )?;
    tile(
        h,
        "in flight",
        &in_flight.to_string(),
        "sent since the last polls",
    )?;
    if let Some(c) = &r.counters {
        let refused =
            c.refused.offline + c.refused.full + c.refused.starting + c.refused.bad_request;
        tile(
            h,
            "redirects",
            &c.redirects.to_string(),
            "302s to relays since start",
        )?;
        tile(
            h,
            "refused",
            &refused.to_string(),
            &format!(
                "503: {} full, {} offline, {} starting; 404: {}",
                c.refused.full, c.refused.offline, c.refused.starting, c.not_found
            ),
        )?;
        if let Some(d) = &c.dns {
            tile(
                h,
                "DNS answers",
                &d.answers.to_string(),
                &format!(
                    "{} not NOERROR",
                    d.answers
                        .saturating_sub(d.rcodes.get("NOERROR").copied().unwrap_or(0))
                ),
            )?;
        }
    }
    h.push_str("</section>\n");
    Ok(())
}

fn tile(h: &mut String, label: &str, value: &str, note: &str) -> fmt::Result {
    writeln!(
        h,
        "<div class=\"tile\"><div class=\"k\">{}</div><div class=\"v\">{}</div><div class=\"n\">{}</div></div>",
        esc(label),
        esc(value),
        esc(note)
    )
}

/// One line of a chart.
struct Series<'a> {
    name: &'a str,
    color: &'a str,
    values: Vec<Option<f64>>,
}

fn write_charts(h: &mut String, hist: &HistoryReport) -> fmt::Result {
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

fn state_badge(r: &RelayReport<'_>) -> String {
    let mut b = format!("<span class=\"badge {0}\">{0}</span>", r.state);
    if r.drain_complete {
        b.push_str(" <span class=\"badge drain\">drain complete</span>");
    } else if r.drain {
        let _ = write!(
            b,
            " <span class=\"badge drain\">draining · {} left</span>",
            r.listeners
        );
    }
    b
}

fn write_stream(h: &mut String, r: &StatusReport<'_>, s: &StreamReport<'_>) -> fmt::Result {
    write!(
        h,
        "<section class=\"card stream\"><h2>Stream <span class=\"name\">{}</span></h2>\n<p class=\"meta\">",
        esc(s.name)
    )?;
    for m in &s.mounts {
        write!(h, "<code>{}</code> ", esc(m))?;
    }
    for n in &s.dns {
        write!(h, "<code class=\"dns\">{}</code> ", esc(n))?;
    }
    write!(h, "· DNS candidates now: ")?;
    if s.candidates.is_empty() {
        h.push_str("<b class=\"bad\">none</b>");
    }
    for (i, c) in s.candidates.iter().enumerate() {
        write!(h, "{}<b>{}</b>", if i > 0 { ", " } else { "" }, esc(c))?;
    }
    if let (Some(sent), Some(refused)) = (s.redirects, s.refused) {
        write!(h, " · {sent} redirects, {refused} refused")?;
    }
    h.push_str(
        "</p>\n<table><thead><tr><th>relay</th><th>state</th><th>mount</th><th class=\"w\">listeners / limit</th>\
         <th>in flight</th><th>room</th><th>redirects</th></tr></thead><tbody>\n",
    );
    for relay in &r.relays {
        let cells: Vec<_> = relay
            .mounts
            .iter()
            .filter(|c| s.mounts.contains(&c.mount))
            .collect();
        for (i, c) in cells.iter().enumerate() {
            h.push_str("<tr>");
            if i == 0 {
                write!(
                    h,
                    "<td rowspan=\"{n}\" class=\"relay\">{}</td><td rowspan=\"{n}\">{}</td>",
                    esc(relay.name),
                    state_badge(relay),
                    n = cells.len()
                )?;
            }
            write!(h, "<td><code>{}</code></td>", esc(c.mount))?;
            // listeners | in flight | free … | reserve, against the limit.
            match c.max_listeners.filter(|&m| m > 0) {
                Some(max) if c.present => {
                    let pct = |n: u64| (n as f64 * 100.0 / f64::from(max)).min(100.0);
                    write!(
                        h,
                        "<td><div class=\"bar\" title=\"{} listeners, {} in flight, {} reserve, limit {max}\">\
                         <span class=\"l\" style=\"width:{:.1}%\"></span><span class=\"g\" style=\"width:{:.1}%\"></span>\
                         <span class=\"sp\"></span><span class=\"rs\" style=\"width:{:.1}%\"></span></div>\
                         <span class=\"num\">{} / {max}</span></td>",
                        c.listeners,
                        c.in_flight,
                        c.reserve,
                        pct(u64::from(c.listeners)),
                        pct(c.in_flight),
                        pct(c.reserve),
                        c.listeners
                    )?;
                }
                _ if c.present => {
                    let why = if c.capacity_unknown {
                        "limit unknown"
                    } else {
                        "no limit"
                    };
                    write!(
                        h,
                        "<td><div class=\"bar unl\">{why}</div><span class=\"num\">{}</span></td>",
                        c.listeners
                    )?;
                }
                _ => h.push_str("<td><span class=\"muted\">no source</span></td>"),
            }
            write!(h, "<td class=\"r\">{}</td>", c.in_flight)?;
            match (c.excluded, c.room) {
                (Some(why), _) => write!(h, "<td><span class=\"ex\">{}</span></td>", esc(why))?,
                (None, Some(n)) => write!(h, "<td class=\"r\"><b>{n}</b></td>")?,
                (None, None) => h.push_str("<td class=\"r\"><b>∞</b></td>"),
            }
            writeln!(
                h,
                "<td class=\"r\">{}</td></tr>",
                c.redirects.map_or("–".into(), |n| n.to_string())
            )?;
        }
    }
    h.push_str("</tbody></table></section>\n");
    Ok(())
}

fn write_relays(h: &mut String, r: &StatusReport<'_>) -> fmt::Result {
    h.push_str(
        "<section class=\"card\"><h2>Relays</h2><table><thead><tr><th>relay</th><th>state</th><th>why</th>\
         <th>since</th><th>listeners</th><th>room</th><th>in flight</th><th>redirects</th><th>last poll</th>\
         </tr></thead><tbody>\n",
    );
    for x in &r.relays {
        let cap = x.max_listeners.map_or(String::new(), |c| format!(" / {c}"));
        writeln!(
            h,
            "<tr class=\"relay-row\" data-relay=\"{name}\"><td class=\"relay\"><a href=\"{url}\">{name}</a></td>\
             <td>{badge}</td><td class=\"why\">{reason}</td><td title=\"{since}\">{since_short} <span class=\"muted\">({ago} ago)</span></td>\
             <td class=\"r\">{listeners}{cap}</td><td class=\"r\">{room}</td><td class=\"r\">{in_flight}</td>\
             <td class=\"r\">{redirects}</td><td class=\"muted\">{polled}</td></tr>",
            name = esc(x.name),
            url = esc(x.url),
            badge = state_badge(x),
            reason = esc(x.reason),
            since = esc(&x.since),
            since_short = esc(time_of_day(&x.since)),
            ago = ago(x.since_seconds),
            listeners = x.listeners,
            room = x.room.map_or("∞".into(), |n| n.to_string()),
            in_flight = x.in_flight,
            redirects = x.redirects.map_or("–".into(), |n| n.to_string()),
            polled = x
                .polled_at
                .as_deref()
                .map_or("never".to_string(), |p| esc(time_of_day(p)).to_string()),
        )?;
    }
    h.push_str("</tbody></table></section>\n");
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

/// `HH:MM:SS` of an RFC 3339 time (the whole text when it is not one).
fn time_of_day(rfc3339: &str) -> &str {
    rfc3339.get(11..19).unwrap_or(rfc3339)
}

/// `42s`, `3m 12s`, `2h 5m`, `3d 4h`.
fn ago(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

const CSS: &str = r#"
:root{--bg:#f4f5f7;--card:#fff;--ink:#111827;--mute:#6b7280;--line:#e5e7eb;--up:#16a34a;--full:#d97706;--down:#dc2626;--unk:#6b7280;--drain:#2563eb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-variant-numeric:tabular-nums}
header{display:flex;align-items:baseline;gap:12px;padding:10px 20px;background:#111827;color:#f9fafb}
header h1{margin:0;font-size:20px;letter-spacing:.5px}
header .sub{color:#9ca3af}
header nav{margin-left:auto;display:flex;gap:14px}
header a{color:#93c5fd;text-decoration:none}
.live{font-size:12px;padding:2px 8px;border-radius:10px;background:#374151;color:#d1d5db}
.live.ok{background:#14532d;color:#bbf7d0}
.live.lost{background:#7f1d1d;color:#fecaca}
main{padding:12px 20px 30px;max-width:1400px;margin:0 auto}
.snap{margin:4px 0 12px;color:var(--mute)}
.snap b{color:var(--ink)}
.alert{background:#fef2f2;border:1px solid #fca5a5;border-left:6px solid var(--down);padding:10px 14px;margin:0 0 12px;border-radius:6px}
.alert.warn{background:#fffbeb;border-color:#fcd34d;border-left-color:var(--full)}
.alert pre{margin:8px 0 0;white-space:pre-wrap;font-size:13px;color:#7f1d1d}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin-bottom:12px}
.tile{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:8px 12px}
.tile .k{color:var(--mute);font-size:12px;text-transform:uppercase;letter-spacing:.4px}
.tile .v{font-size:26px;font-weight:600}
.tile .n{color:var(--mute);font-size:12px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:10px;margin-bottom:12px}
.chart-box{margin:0;background:var(--card);border:1px solid var(--line);border-radius:8px;padding:8px 10px}
.chart-box figcaption{font-weight:600;margin-bottom:2px}
svg.chart{width:100%;height:auto;display:block}
svg .grid{stroke:#e5e7eb;stroke-width:1}
svg .ax{fill:#6b7280;font-size:10px}
svg .wait{fill:#9ca3af;font-size:12px}
svg .line{fill:none;stroke-width:1.8;stroke-linejoin:round;stroke-linecap:round}
.legend{list-style:none;margin:4px 0 0;padding:0;display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 14px;margin-bottom:12px}
.card h2{margin:0 0 4px;font-size:16px}
.meta{margin:0 0 8px;color:var(--mute)}
code{background:#f3f4f6;padding:1px 5px;border-radius:4px;font-size:12.5px}
code.dns{background:#eef2ff}
table{border-collapse:collapse;width:100%}
th{text-align:left;font-weight:600;color:var(--mute);font-size:12px;border-bottom:1px solid var(--line);padding:4px 8px}
td{border-bottom:1px solid #f3f4f6;padding:5px 8px;vertical-align:middle}
td.r{text-align:right}
td.relay{font-weight:600}
td.relay a{color:inherit;text-decoration:none}
td.why{max-width:380px;color:#374151}
th.w{width:32%}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;background:var(--unk)}
.badge.up{background:var(--up)}.badge.full{background:var(--full)}.badge.down{background:var(--down)}.badge.drain{background:var(--drain)}
.bar{display:inline-flex;vertical-align:middle;width:calc(100% - 90px);min-width:80px;height:12px;background:#e5e7eb;border-radius:6px;overflow:hidden}
.bar .l{background:var(--drain)}.bar .g{background:#f59e0b}.bar .sp{flex:1}.bar .rs{background:repeating-linear-gradient(45deg,#9ca3af 0 3px,#d1d5db 3px 6px)}
.bar.unl{background:repeating-linear-gradient(90deg,#dbeafe 0 8px,#eff6ff 8px 16px);font-size:10px;color:var(--mute);justify-content:center;align-items:center}
.num{display:inline-block;width:84px;text-align:right;margin-left:6px}
.ex{color:var(--down);font-weight:600}
.muted{color:var(--mute)}
.bad{color:var(--down)}
"#;

const JS: &str = r#"
(function(){
  var live=document.getElementById('live'),n=0;
  function tick(){
    fetch(location.pathname,{cache:'no-store'}).then(function(r){
      if(!r.ok) throw new Error('HTTP '+r.status);
      return r.text();
    }).then(function(t){
      var doc=new DOMParser().parseFromString(t,'text/html'),m=doc.getElementById('main');
      if(m){document.getElementById('main').replaceWith(m);document.title=doc.title;}
      n++;document.body.setAttribute('data-refreshed',String(n));
      live.textContent='live · '+new Date().toLocaleTimeString();live.className='live ok';
    }).catch(function(e){
      live.textContent='connection lost · retrying';live.className='live lost';
    }).then(function(){setTimeout(tick,REFRESH);});
  }
  setTimeout(tick,REFRESH);
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>").to_string(),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(esc("plain").to_string(), "plain");
    }

    #[test]
    fn durations_read_short() {
        assert_eq!(ago(5.2), "5s");
        assert_eq!(ago(192.0), "3m 12s");
        assert_eq!(ago(7500.0), "2h 5m");
        assert_eq!(ago(2.0 * 86400.0 + 3600.0), "2d 1h");
    }

    /// A page for one relay whose poll failed with `reason`, after a reload
    /// that failed with `error`.
    fn page(reason: &str, error: &str) -> String {
        use crate::grants::GrantSample;
        use crate::health::{Health, PollFailure, PollOutcome};
        use crate::snapshot::{RelayObservation, ReloadReport, Snapshot, Stamp, Topology};
        use std::sync::Arc;
        use std::time::SystemTime;
        let toml = "[[stream]]\nname = \"live\"\nmounts = [\"/live.ogg\"]\n[[relay]]\nname = \"relay-a\"\n\
                    url = \"http://a.example.org:8000\"\naddresses = [\"192.0.2.1\"]\nstatus = { kind = \"xslt\" }\n";
        let (config, diags) = crate::config::parse(std::path::Path::new("/t/floe.toml"), toml);
        let config = config.unwrap_or_else(|| panic!("{diags}"));
        let topology = Arc::new(Topology::new(Arc::new(config), None));
        let mut health = Health::new(SystemTime::UNIX_EPOCH);
        health.observe(
            PollOutcome::Failed(PollFailure::Body(reason.into())),
            1,
            1,
            SystemTime::UNIX_EPOCH,
        );
        let obs = RelayObservation {
            health,
            baseline: GrantSample::default(),
            polled_at: Some(SystemTime::UNIX_EPOCH),
            polls: 1,
            poll_duration: None,
        };
        let reload = ReloadReport {
            failures: 1,
            last_error: Some((SystemTime::UNIX_EPOCH, error.into())),
            ..ReloadReport::default()
        };
        let snap = Snapshot::build(
            topology,
            &[Some(&obs)],
            &[],
            Stamp::now(3),
            Arc::new(reload),
        );
        let metrics = crate::metrics::Metrics::new();
        let history = crate::history::History::default();
        let observed = crate::report::Observed {
            metrics: &metrics,
            history: &history,
        };
        render(&crate::report::status_report_with(&snap, Some(observed)))
    }

    #[test]
    fn operator_and_relay_strings_are_escaped() {
        let html = page(
            "HTTP 500 from <b onclick=x>",
            "floe.toml:1:1: <script>alert('x')</script>",
        );
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("HTTP 500 from &lt;b onclick=x&gt;"));
        assert!(!html.contains("<b onclick"));
    }

    #[test]
    fn a_failed_reload_is_shown_first_and_the_page_is_self_contained() {
        let html = page("connect failed", "floe.toml:7:3: unknown key `relays`");
        let alert = html.find("id=\"reload-error\"").expect("reload alert");
        assert!(
            alert < html.find("class=\"tiles\"").unwrap(),
            "the alert comes before the figures"
        );
        assert!(html.contains("unknown key `relays`"));
        assert!(html.contains("<span class=\"badge down\">down</span>"));
        // No external asset: every URL is floe's own or inline.
        for attr in [" src=", "url(", "@import", "rel=\"stylesheet\""] {
            assert!(!html.contains(attr), "{attr}");
        }
        assert!(html.contains("<svg class=\"chart\"") && html.contains("collecting samples"));
    }

    #[test]
    fn chart_axis_tops_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(130.0), 200.0);
        assert_eq!(nice_max(240.0), 250.0);
    }
}
