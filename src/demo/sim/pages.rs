//! The status pages of a simulated relay, rendered in the exact shapes a
//! real Icecast 2.4.4 serves (see `tests/fixtures/icecast/`):
//!
//! - [`floe_slots`]: the output of floe's stylesheet `config/floe-slots.xsl`
//!   (`#floe-slots 1`, tab-separated mount lines, `END\tN`).
//! - [`status_json`]: `/status-json.xsl`: `source` is an object for one
//!   mount, an array for several, absent for none (then `"dummy":null`);
//!   no `max_listeners`; `listenurl` uses the configured hostname.
//! - [`admin_stats`]: `/admin/stats`, the full stats XML with
//!   `max_listeners` (a number or `unlimited`).
//!
//! Mounts are listed in path order, as Icecast's stats tree does. Nothing
//! here does I/O: each function renders from a [`RelayView`].

use super::tone::{SAMPLE_RATE, Tone};
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the pages show about the relay.
pub struct RelayView<'a> {
    /// The relay's name (in `location`).
    pub name: &'a str,
    /// Icecast's `<hostname>`: the host of every `listenurl`.
    pub hostname: &'a str,
    /// The listening port (of `listenurl`).
    pub port: u16,
    /// When the server started.
    pub started: SystemTime,
    /// Mounts with a source, sorted by path.
    pub mounts: Vec<MountView<'a>>,
}

/// What the pages show about one mount with a source.
pub struct MountView<'a> {
    /// The mount path.
    pub path: &'a str,
    /// Listeners now (connected and simulated).
    pub listeners: u32,
    /// Highest `listeners` since the source connected.
    pub peak: u32,
    /// `None`: unlimited.
    pub max_listeners: Option<u32>,
    /// When the source connected.
    pub source_since: SystemTime,
    /// The tone's frequency (in the description).
    pub hz: u32,
}

/// `/floe-slots.xsl`, byte for byte what `config/floe-slots.xsl` produces.
pub fn floe_slots(relay: &RelayView<'_>) -> String {
    let mut out = String::from("#floe-slots 1\n#mount\tlisteners\tmax_listeners\tfree\n");
    for m in &relay.mounts {
        let free = m.max_listeners.map(|max| max.saturating_sub(m.listeners));
        let (max, free) = (limit(m.max_listeners), limit(free));
        let _ = writeln!(out, "{}\t{}\t{max}\t{free}", m.path, m.listeners);
    }
    let _ = writeln!(out, "END\t{}", relay.mounts.len());
    out
}

/// `/status-json.xsl` in Icecast 2.4.4's shape.
pub fn status_json(relay: &RelayView<'_>) -> String {
    let mut out = String::from("{\"icestats\":{");
    let _ = write!(
        out,
        "\"admin\":\"icemaster@localhost\",\"host\":{},\"location\":{},\"server_id\":\"Icecast 2.4.4\",\
         \"server_start\":\"{}\",\"server_start_iso8601\":\"{}\"",
        json_str(relay.hostname),
        json_str(&format!("floe demo {}", relay.name)),
        rfc2822(relay.started),
        iso8601(relay.started),
    );
    let sources: Vec<String> = relay.mounts.iter().map(|m| json_source(relay, m)).collect();
    match sources.as_slice() {
        [] => out.push_str(",\"dummy\":null"),
        [one] => out.push_str(&format!(",\"source\":{one}")),
        many => out.push_str(&format!(",\"source\":[{}]", many.join(","))),
    }
    out.push_str("}}");
    out
}

fn json_source(relay: &RelayView<'_>, m: &MountView<'_>) -> String {
    let kbps = Tone::kbps();
    format!(
        "{{\"audio_info\":\"ice-samplerate={SAMPLE_RATE};ice-bitrate={kbps};ice-channels=1\",\"bitrate\":{kbps},\
         \"genre\":\"demo\",\"ice-bitrate\":{kbps},\"ice-channels\":1,\"ice-samplerate\":{SAMPLE_RATE},\
         \"listener_peak\":{},\"listeners\":{},\"listenurl\":{},\"server_description\":{},\"server_name\":{},\
         \"server_type\":\"audio/wav\",\"stream_start\":\"{}\",\"stream_start_iso8601\":\"{}\",\"dummy\":null}}",
        m.peak,
        m.listeners,
        json_str(&listenurl(relay, m)),
        json_str(&format!("sine tone {} Hz", m.hz)),
        json_str(&format!("floe demo {} {}", relay.name, m.path)),
        rfc2822(m.source_since),
        iso8601(m.source_since),
    )
}

/// `/admin/stats`: the full stats XML (what `icecast-xml` polls).
pub fn admin_stats(relay: &RelayView<'_>, clients: usize) -> String {
    let listeners: u32 = relay.mounts.iter().map(|m| m.listeners).sum();
    let mut out = String::from("<?xml version=\"1.0\"?>\n<icestats>");
    let _ = write!(
        out,
        "<admin>icemaster@localhost</admin><clients>{clients}</clients><host>{}</host>\
         <listeners>{listeners}</listeners><location>floe demo {}</location><server_id>Icecast 2.4.4</server_id>\
         <server_start>{}</server_start><server_start_iso8601>{}</server_start_iso8601><sources>{}</sources>",
        xml_text(relay.hostname),
        xml_text(relay.name),
        rfc2822(relay.started),
        iso8601(relay.started),
        relay.mounts.len(),
    );
    let kbps = Tone::kbps();
    for m in &relay.mounts {
        let max = limit(m.max_listeners);
        let _ = write!(
            out,
            "<source mount=\"{}\"><bitrate>{kbps}</bitrate><genre>demo</genre><listener_peak>{}</listener_peak>\
             <listeners>{}</listeners><listenurl>{}</listenurl><max_listeners>{max}</max_listeners>\
             <public>0</public><server_name>floe demo {} {}</server_name><server_type>audio/wav</server_type>\
             <slow_listeners>0</slow_listeners><stream_start>{}</stream_start></source>",
            xml_text(m.path),
            m.peak,
            m.listeners,
            xml_text(&listenurl(relay, m)),
            xml_text(relay.name),
            xml_text(m.path),
            rfc2822(m.source_since),
        );
    }
    out.push_str("</icestats>\n");
    out
}

/// `http://<hostname>:<port><mount>`, as Icecast writes it.
fn listenurl(relay: &RelayView<'_>, m: &MountView<'_>) -> String {
    format!("http://{}:{}{}", relay.hostname, relay.port, m.path)
}

/// A limit as the pages write it: the number, or `unlimited`.
fn limit(n: Option<u32>) -> String {
    n.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
}

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn xml_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// UTC civil time of `t`: (year, month 1-12, day 1-31, weekday 0=Sunday,
/// `hh:mm:ss`).
fn civil(t: SystemTime) -> (i64, u32, u32, usize, String) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let weekday = ((days + 4) % 7) as usize; // 1970-01-01 was a Thursday
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let s = secs % 86_400;
    let hms = format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    (year, month, day, weekday, hms)
}

/// `Tue, 24 Nov 2026 02:41:33 +0000`, Icecast's `server_start` format.
pub fn rfc2822(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, wd, hms) = civil(t);
    let month = MONTHS[(mo as usize - 1) % 12];
    format!("{}, {d:02} {month} {y} {hms} +0000", DAYS[wd])
}

/// `2026-11-24T02:41:33+0000`, Icecast's `*_iso8601` format.
pub fn iso8601(t: SystemTime) -> String {
    let (y, mo, d, _, hms) = civil(t);
    format!("{y}-{mo:02}-{d:02}T{hms}+0000")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_match_icecast() {
        // The fixtures' server_start: Tue, 24 Nov 2026 02:41:33 +0000.
        let t = UNIX_EPOCH + Duration::from_secs(1_795_488_093);
        assert_eq!(rfc2822(t), "Tue, 24 Nov 2026 02:41:33 +0000");
        assert_eq!(iso8601(t), "2026-11-24T02:41:33+0000");
        assert_eq!(rfc2822(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(iso8601(leap), "2000-02-29T00:00:00+0000");
    }
}
