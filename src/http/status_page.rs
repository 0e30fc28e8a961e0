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
//!
//! What is static text lives in files beside this one, compiled in with
//! `include_str!` and still inlined into the one response: the document
//! around `<main>` (`status_page/page.html`), its stylesheet (`page.css`)
//! and its script (`page.js`). The charts are drawn by the `charts` submodule;
//! this file writes the rest of `<main>`: alerts, figures and tables.

mod charts;

use crate::report::{RelayReport, StatusReport, StreamReport};
use std::fmt::{self, Write as _};

/// Seconds between two refreshes of the page.
pub const REFRESH_SECONDS: u32 = 2;

/// The page's stylesheet, inlined into its `<style>`.
const CSS: &str = include_str!("status_page/page.css");

/// The page's script, inlined into its `<script>`: fetches the page again
/// every `REFRESH` ms (filled in from [`REFRESH_SECONDS`]) and swaps `<main>`.
const JS: &str = include_str!("status_page/page.js");

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

/// The whole page: `status_page/page.html` is its `format!` string (so
/// the compiler checks its `{generation}`, `{css}`, `{main}` and `{js}`;
/// a literal brace there needs doubling).
pub fn render(report: &StatusReport<'_>) -> String {
    let mut main = String::with_capacity(32 * 1024);
    let _ = write_main(&mut main, report);
    format!(
        include_str!("status_page/page.html"),
        generation = report.generation,
        css = CSS,
        main = main,
        js = JS.replace("REFRESH", &(REFRESH_SECONDS * 1000).to_string()),
    )
}

fn write_main(h: &mut String, r: &StatusReport<'_>) -> fmt::Result {
    write_snapshot_line(h, r)?;
    write_tls_line(h, r)?;
    write_acme_lines(h, r)?;
    write_peers_line(h, r)?;
    write_alerts(h, r)?;
    write_tiles(h, r)?;
    if let Some(hist) = &r.history {
        charts::write(h, hist)?;
    }
    for s in &r.streams {
        write_stream(h, r, s)?;
    }
    write_groups(h, r)?;
    write_relays(h, r)
}

/// Relay groups and listener pools, when the config has any: each
/// group's relays up and room per mount; each pool's networks, order and
/// the group answering it now.
fn write_groups(h: &mut String, r: &StatusReport<'_>) -> fmt::Result {
    if r.pools.len() <= 1 && r.groups.len() <= 1 {
        return Ok(());
    }
    h.push_str("<section class=\"card\"><h2>Listener pools</h2><table><thead><tr><th>pool</th><th>networks</th><th>groups in order</th><th>answering now</th></tr></thead><tbody>\n");
    for p in &r.pools {
        let networks = if p.networks.is_empty() {
            "everyone else".to_string()
        } else {
            p.networks.join(", ")
        };
        let answering: Vec<String> = p
            .answering
            .iter()
            .map(|a| {
                let group = a
                    .group
                    .map_or("none (no room)".to_string(), |g| esc(g).to_string());
                let spill = if a.spilled {
                    " <span class=\"muted\">(spilled over)</span>"
                } else {
                    ""
                };
                format!("{}: {group}{spill}", esc(a.mount))
            })
            .collect();
        writeln!(
            h,
            "<tr><td>{name}</td><td class=\"muted\">{networks}</td><td>{order}</td><td>{answering}</td></tr>",
            name = esc(p.name),
            networks = esc(&networks),
            order = esc(&p.order.join(" → ")),
            answering = answering.join("<br>"),
        )?;
    }
    h.push_str("</tbody></table>\n<h2>Relay groups</h2><table><thead><tr><th>group</th><th>relays</th><th>up</th><th>room</th></tr></thead><tbody>\n");
    for g in &r.groups {
        let room: Vec<String> = g
            .mounts
            .iter()
            .map(|m| {
                format!(
                    "{}: {}",
                    esc(m.mount),
                    m.room.map_or("∞".into(), |n| n.to_string())
                )
            })
            .collect();
        writeln!(
            h,
            "<tr><td>{name}</td><td>{relays}</td><td class=\"r\">{up} / {all}</td><td>{room}</td></tr>",
            name = esc(g.name),
            relays = esc(&g.relays.join(", ")),
            up = g.relays_up,
            all = g.relays.len(),
            room = room.join("<br>"),
        )?;
    }
    h.push_str("</tbody></table></section>\n");
    Ok(())
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

/// One line per TLS certificate served: names, expiry, days left.
fn write_tls_line(h: &mut String, r: &StatusReport<'_>) -> fmt::Result {
    for c in &r.tls_certificates {
        let class = match c.days_left {
            d if d < 0 => "badge down",
            d if d < 14 => "badge full",
            _ => "badge up",
        };
        writeln!(
            h,
            "<p class=\"snap tls\">TLS certificate {} for {}: valid until {} <span class=\"{class}\">{} days left</span></p>",
            esc(&c.file),
            esc(&c.names.join(", ")),
            esc(&c.not_after),
            c.days_left
        )?;
    }
    Ok(())
}

/// One line per `[acme]` name: state, expiry, next order, last error.
fn write_acme_lines(h: &mut String, r: &StatusReport<'_>) -> fmt::Result {
    for n in r.acme.iter().flat_map(|a| &a.names) {
        let class = match n.state {
            "valid" => "badge up",
            "failed" => "badge down",
            _ => "badge full",
        };
        write!(
            h,
            "<p class=\"snap tls\">ACME {} ({}): <span class=\"{class}\">{}</span>",
            esc(&n.name),
            n.challenge,
            n.state
        )?;
        if let Some(t) = &n.not_after {
            write!(h, ", certificate valid until {}", esc(t))?;
        }
        if let Some(t) = &n.next_attempt {
            write!(h, ", next order {}", esc(t))?;
        }
        if let Some(e) = &n.last_error {
            write!(h, ", {} failed in a row, last: {}", n.failures, esc(e))?;
        }
        writeln!(h, "</p>")?;
    }
    Ok(())
}

/// One line per peer of the exchange: connected (its demand counts) or
/// not (its static part held back), and this instance's share.
fn write_peers_line(h: &mut String, r: &StatusReport<'_>) -> fmt::Result {
    let Some(p) = &r.peers else { return Ok(()) };
    let shares: Vec<String> = p
        .shares
        .iter()
        .map(|(m, s)| format!("{} {:.0} %", esc(m), s * 100.0))
        .collect();
    writeln!(
        h,
        "<p class=\"snap peers\">Peer exchange as {}: this instance's share {}</p>",
        esc(&p.name),
        shares.join(", ")
    )?;
    for peer in &p.peers {
        let (class, state) = if peer.connected {
            ("badge up", "connected".to_string())
        } else {
            (
                "badge down",
                format!(
                    "not connected: its static part ({:.0} %) is held back",
                    p.static_share * 100.0
                ),
            )
        };
        writeln!(
            h,
            "<p class=\"snap peers\">peer {} ({}) <span class=\"{class}\">{}</span> last answer {}{}</p>",
            esc(&peer.name),
            esc(&peer.url),
            esc(&state),
            esc(peer.last_fetch.as_deref().unwrap_or("never")),
            peer.last_error
                .as_ref()
                .map(|e| format!("; last error: {}", esc(e)))
                .unwrap_or_default()
        )?;
    }
    Ok(())
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
        let no = &c.refused;
        let refused = no.offline + no.full + no.starting + no.bad_request + no.client_budget;
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
                "503: {} full, {} offline, {} starting; 429: {} over a client's budget; 404: {}",
                no.full, no.offline, no.starting, no.client_budget, c.not_found
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
        use crate::health::{PollFailure, PollOutcome};
        use crate::snapshot::{ReloadReport, testkit};
        use std::time::SystemTime;
        let topology = testkit::topology(
            "[[stream]]\nname = \"live\"\nmounts = [\"/live.ogg\"]\n[[relay]]\nname = \"relay-a\"\n\
             url = \"http://a.example.org:8000\"\naddresses = [\"192.0.2.1\"]\nstatus = { kind = \"xslt\" }\n",
        );
        let reload = ReloadReport {
            failures: 1,
            last_error: Some((SystemTime::UNIX_EPOCH, error.into())),
            ..ReloadReport::default()
        };
        let failed = PollOutcome::Failed(PollFailure::Body(reason.into()));
        let snap = testkit::snapshot(
            topology,
            vec![Some(failed)],
            1,
            SystemTime::UNIX_EPOCH,
            3,
            reload,
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
        // The asset files are inlined whole, the script's interval filled in.
        assert!(html.contains(&format!("<style>\n{CSS}</style>")));
        assert!(html.contains("setTimeout(tick,2000);") && !html.contains("REFRESH"));
    }
}
