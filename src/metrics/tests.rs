//! Metrics tests: counters through reloads, the exposition a scrape
//! renders, and the poll error classes.

use super::*;
use crate::config;
use crate::health::{PollError, PollFailure, PollOutcome};
use crate::icecast::{MaxListeners, RelayStatus};
use crate::select::NoCandidate;
use crate::snapshot::{DEFAULT_POOL, RelayId, ReloadReport, Snapshots, Topology, testkit};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Counts a 302 to relay `r` for mount `m` from the default pool's
/// first group.
fn sent(metrics: &Metrics, snap: &Snapshot, m: MountId, r: RelayId) {
    let group = snap.topology.pools[DEFAULT_POOL].order[0];
    let pick = Pick {
        relay: r,
        group,
        spilled: false,
    };
    metrics.redirected(snap, m, DEFAULT_POOL, pick);
}

const A: MountId = MountId::new(0);
const B: MountId = MountId::new(1);
const R0: RelayId = RelayId::new(0);
const R1: RelayId = RelayId::new(1);

/// A config with relays `names` (each `url = http://<name>.example.org`),
/// one stream `live` with mounts /a and /b.
fn topology(names: &[&str], previous: Option<&Topology>) -> Arc<Topology> {
    topology_with("", names, previous)
}

/// [`topology`] with `head` (e.g. an `[http]` table) before the stream.
fn topology_with(head: &str, names: &[&str], previous: Option<&Topology>) -> Arc<Topology> {
    let mut toml = format!("{head}[[stream]]\nname = \"live\"\nmounts = [\"/a\", \"/b\"]\n");
    for (i, n) in names.iter().enumerate() {
        toml += &format!(
            "[[relay]]\nname = \"{n}\"\nurl = \"http://{n}.example.org:8000\"\naddresses = [\"192.0.2.{}\"]\n\
             status = {{ kind = \"xslt\" }}\nmax_listeners = 50\n",
            i + 1
        );
    }
    let (config, diags) = config::parse(Path::new("/test/floe.toml"), &toml);
    let config = config.unwrap_or_else(|| panic!("test config invalid:\n{diags}"));
    Arc::new(Topology::new(Arc::new(config), previous))
}

/// Every relay up with /a at 3 of 10 listeners (b: no source); the relay
/// named "down" is down.
fn snapshot(topology: Arc<Topology>, generation: u64, reload: ReloadReport) -> Snapshot {
    let outcomes = topology
        .relays
        .iter()
        .map(|r| {
            Some(if &*r.name == "down" {
                PollOutcome::Failed(PollFailure::Connect("Connection refused".into()))
            } else {
                testkit::status(&[("/a", 3, MaxListeners::Limited(10))])
            })
        })
        .collect();
    testkit::snapshot(
        topology,
        outcomes,
        1,
        SystemTime::UNIX_EPOCH,
        generation,
        reload,
    )
}

/// The value of the series `name{labels}` (labels in any order).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, v) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
        if n != name {
            return None;
        }
        let body = rest.strip_suffix('}')?;
        let found: Vec<(&str, &str)> = if body.is_empty() {
            Vec::new()
        } else {
            body.split("\",")
                .map(|kv| {
                    let (k, v) = kv.split_once("=\"").unwrap_or((kv, ""));
                    (k, v.trim_end_matches('"'))
                })
                .collect()
        };
        (found.len() == labels.len() && labels.iter().all(|l| found.contains(l)))
            .then(|| v.parse().ok())?
    })
}

fn published(snap: Snapshot) -> (Arc<Snapshots>, Metrics) {
    let snapshots = Arc::new(Snapshots::new(snap));
    let metrics = Metrics::new();
    (snapshots, metrics)
}

#[test]
fn redirects_are_counted_per_mount_relay_and_outcome() {
    let (snapshots, metrics) = published(snapshot(
        topology(&["a", "b"], None),
        1,
        ReloadReport::default(),
    ));
    let snap = snapshots.load_full();
    for _ in 0..3 {
        sent(&metrics, &snap, A, R1);
    }
    sent(&metrics, &snap, B, R0);
    metrics.refused(&snap, A, NoCandidate::Full.into());
    metrics.refused(&snap, B, Outcome::Offline);
    metrics.not_found();
    metrics.not_found();
    let text = metrics.render(&snapshots.load_full());
    let sent = |mount, relay| {
        value(
            &text,
            "floe_redirects_total",
            &[
                ("stream", "live"),
                ("mount", mount),
                ("relay", relay),
                ("outcome", "302"),
                ("reason", ""),
            ],
        )
    };
    assert_eq!(sent("/a", "b"), Some(3.0));
    assert_eq!(sent("/b", "a"), Some(1.0));
    assert_eq!(
        sent("/a", "a"),
        Some(0.0),
        "every configured series is exported, zeros too"
    );
    let refused = |mount, reason| {
        value(
            &text,
            "floe_redirects_total",
            &[
                ("stream", "live"),
                ("mount", mount),
                ("relay", ""),
                ("outcome", "503"),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(refused("/a", "full"), Some(1.0));
    assert_eq!(refused("/b", "offline"), Some(1.0));
    let not_found = [
        ("stream", ""),
        ("mount", ""),
        ("relay", ""),
        ("outcome", "404"),
        ("reason", ""),
    ];
    assert_eq!(value(&text, "floe_redirects_total", &not_found), Some(2.0));
    let counts = metrics.redirect_counts(&snap);
    assert_eq!(
        (
            counts.sent_total(),
            counts.sent_to_relay(R1),
            counts.refused_total()
        ),
        (4, 3, 2)
    );
}

#[test]
fn without_per_mount_series_redirects_are_summed_over_the_relays() {
    let topology = topology_with("[http]\nmetrics_per_mount = false\n", &["a", "b"], None);
    let (snapshots, metrics) = published(snapshot(topology, 1, ReloadReport::default()));
    let snap = snapshots.load_full();
    sent(&metrics, &snap, A, R0);
    sent(&metrics, &snap, A, R1);
    sent(&metrics, &snap, A, R1);
    let text = metrics.render(&snapshots.load_full());
    let labels = |relay| {
        [
            ("stream", "live"),
            ("mount", "/a"),
            ("relay", relay),
            ("outcome", "302"),
            ("reason", ""),
        ]
    };
    assert_eq!(value(&text, "floe_redirects_total", &labels("")), Some(3.0));
    assert_eq!(value(&text, "floe_redirects_total", &labels("b")), None);
    for family in [
        "floe_mount_listeners",
        "floe_mount_room",
        "floe_mount_candidate",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} gauge"))
                && !text.lines().any(|l| l.starts_with(&format!("{family}{{"))),
            "{family}: described, no series\n{text}"
        );
    }
    assert_eq!(
        value(&text, "floe_relay_listeners", &[("relay", "b")]),
        Some(3.0)
    );
}

#[test]
fn counters_carry_over_a_reload_and_removed_relays_leave_the_exposition() {
    let first = topology(&["a", "b"], None);
    let (snapshots, metrics) = published(snapshot(first.clone(), 1, ReloadReport::default()));
    let old = snapshots.load_full();
    sent(&metrics, &old, A, R0);
    sent(&metrics, &old, A, R1);
    // Reload: b goes, c comes, a stays (now at index 1).
    let second = topology(&["c", "a"], Some(&first));
    snapshots.store(snapshot(
        second,
        2,
        ReloadReport {
            successes: 1,
            ..Default::default()
        },
    ));
    let new = snapshots.load_full();
    sent(&metrics, &new, A, R1);
    // A request still holding the old snapshot counts into the same series
    // and does not take the table back from the new config.
    sent(&metrics, &old, A, R0);
    let text = metrics.render(&snapshots.load_full());
    let sent = |relay| {
        value(
            &text,
            "floe_redirects_total",
            &[
                ("stream", "live"),
                ("mount", "/a"),
                ("relay", relay),
                ("outcome", "302"),
                ("reason", ""),
            ],
        )
    };
    assert_eq!(sent("a"), Some(3.0));
    assert_eq!(sent("c"), Some(0.0));
    assert_eq!(sent("b"), None, "b is not configured any more");
    assert!(
        metrics
            .redirects
            .table
            .load()
            .as_ref()
            .is_some_and(|t| t.is_for(&new.topology))
    );
    assert_eq!(
        value(&text, "floe_reloads_total", &[("result", "success")]),
        Some(1.0)
    );
}

#[test]
fn the_hot_path_reuses_the_table_of_its_topology() {
    let (snapshots, metrics) =
        published(snapshot(topology(&["a"], None), 1, ReloadReport::default()));
    let snap = snapshots.load_full();
    sent(&metrics, &snap, A, R0);
    let before = metrics.redirects.table.load_full().map(|t| Arc::as_ptr(&t));
    // A new snapshot of the same config (a poll) keeps the table.
    snapshots.store(snapshot(snap.topology.clone(), 2, ReloadReport::default()));
    sent(&metrics, &snapshots.load(), A, R0);
    let after = metrics.redirects.table.load_full().map(|t| Arc::as_ptr(&t));
    assert_eq!(before, after);
    assert_eq!(metrics.redirect_counts(&snapshots.load()).sent_total(), 2);
}

#[test]
fn gauges_come_from_the_current_snapshot() {
    let reload = ReloadReport {
        successes: 2,
        failures: 1,
        last_success: None,
        last_error: Some((SystemTime::UNIX_EPOCH, "floe.toml:3:1: bad".into())),
    };
    let (snapshots, metrics) = published(snapshot(topology(&["a", "down"], None), 7, reload));
    let stats = metrics.poll_stats(&Arc::from("down"));
    stats.observe(Duration::from_millis(30), Some(PollError::Connect));
    stats.observe(Duration::from_millis(3), None);
    let text = metrics.render(&snapshots.load_full());
    let g = |name, labels: &[(&str, &str)]| value(&text, name, labels);
    assert_eq!(
        g("floe_relay_state", &[("relay", "a"), ("state", "up")]),
        Some(1.0)
    );
    assert_eq!(
        g("floe_relay_state", &[("relay", "a"), ("state", "down")]),
        Some(0.0)
    );
    assert_eq!(
        g("floe_relay_state", &[("relay", "down"), ("state", "down")]),
        Some(1.0)
    );
    assert_eq!(g("floe_relay_listeners", &[("relay", "a")]), Some(3.0));
    assert_eq!(g("floe_relay_max_listeners", &[("relay", "a")]), Some(50.0));
    assert_eq!(g("floe_relay_room", &[("relay", "a")]), Some(7.0));
    assert_eq!(g("floe_relay_room", &[("relay", "down")]), Some(0.0));
    let a = [("relay", "a"), ("stream", "live"), ("mount", "/a")];
    let b = [("relay", "a"), ("stream", "live"), ("mount", "/b")];
    assert_eq!(g("floe_mount_listeners", &a), Some(3.0));
    assert_eq!(g("floe_mount_max_listeners", &a), Some(10.0));
    assert_eq!(g("floe_mount_room", &a), Some(7.0));
    assert_eq!(g("floe_mount_candidate", &a), Some(1.0));
    assert_eq!(g("floe_mount_source", &b), Some(0.0));
    assert_eq!(g("floe_mount_room", &b), Some(0.0));
    assert_eq!(
        g("floe_mount_max_listeners", &b),
        None,
        "no limit known without a source"
    );
    assert_eq!(g("floe_snapshot_generation", &[]), Some(7.0));
    assert_eq!(g("floe_reloads_total", &[("result", "failure")]), Some(1.0));
    assert_eq!(g("floe_reload_failed", &[]), Some(1.0));
    assert_eq!(
        g(
            "floe_poll_errors_total",
            &[("relay", "down"), ("reason", "connect")]
        ),
        Some(1.0)
    );
    assert_eq!(
        g(
            "floe_poll_errors_total",
            &[("relay", "down"), ("reason", "timeout")]
        ),
        Some(0.0)
    );
    assert_eq!(
        g("floe_poll_duration_seconds_count", &[("relay", "down")]),
        Some(2.0)
    );
    assert_eq!(
        g(
            "floe_poll_duration_seconds_bucket",
            &[("relay", "down"), ("le", "0.005")]
        ),
        Some(1.0)
    );
    assert_eq!(
        g(
            "floe_poll_duration_seconds_bucket",
            &[("relay", "down"), ("le", "0.05")]
        ),
        Some(2.0)
    );
    assert_eq!(
        g(
            "floe_poll_duration_seconds_bucket",
            &[("relay", "down"), ("le", "+Inf")]
        ),
        Some(2.0)
    );
    assert_eq!(
        g("floe_poll_duration_seconds_sum", &[("relay", "down")]),
        Some(0.033)
    );
    assert_eq!(
        g("floe_poll_duration_seconds_count", &[("relay", "a")]),
        None,
        "never polled"
    );
    assert_eq!(
        g("floe_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        Some(1.0)
    );
    let age = g("floe_snapshot_age_seconds", &[]).expect("age");
    assert!((0.0..60.0).contains(&age));
}

#[test]
fn every_family_is_described_once_with_help_and_type() {
    let (snapshots, metrics) =
        published(snapshot(topology(&["a"], None), 1, ReloadReport::default()));
    let text = metrics.render(&snapshots.load_full());
    for d in CATALOG.iter().filter(|d| !d.name.starts_with("floe_dns_")) {
        let name = d.exported_name();
        assert_eq!(
            text.matches(&format!("# TYPE {name} ")).count(),
            1,
            "{name}\n{text}"
        );
        assert_eq!(
            text.matches(&format!("# HELP {name} ")).count(),
            1,
            "{name}"
        );
        assert!(name.starts_with("floe_"));
    }
    // Every sample line is `name{labels} value` or `name value`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, v) = line.rsplit_once(' ').expect(line);
        assert!(v == "+Inf" || v.parse::<f64>().is_ok(), "{line}");
        assert!(series.starts_with("floe_"), "{line}");
    }
}

#[test]
fn poll_failures_fall_into_reason_classes() {
    let failed = |f: PollFailure| PollOutcome::Failed(f).error();
    assert_eq!(
        failed(PollFailure::Timeout(Duration::from_secs(1))),
        Some(PollError::Timeout)
    );
    assert_eq!(
        failed(PollFailure::Connect("Connection refused".into())),
        Some(PollError::Connect)
    );
    assert_eq!(
        failed(PollFailure::Request("connection reset".into())),
        Some(PollError::Connect)
    );
    assert_eq!(
        failed(PollFailure::Http {
            code: 404,
            status: "404 Not Found".into(),
            url: "http://r/x".into()
        }),
        Some(PollError::Http)
    );
    assert_eq!(
        failed(PollFailure::Body("truncated: end line missing".into())),
        Some(PollError::Parse)
    );
    assert_eq!(PollOutcome::ServerFull.error(), Some(PollError::Full));
    assert_eq!(
        PollOutcome::Status(RelayStatus { mounts: vec![] }).error(),
        None
    );
}

#[test]
fn every_metric_is_documented_in_the_operations_guide() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .expect("docs/operations.md");
    for d in CATALOG {
        let name = d.exported_name();
        assert!(
            doc.contains(&format!("`{name}`")),
            "{name} is not in docs/operations.md"
        );
    }
}
