//! The `/peer` answer: what one instance tells its peers (its name, its
//! demand per mount at its last publication, and which peers it fetches),
//! rendered by the admin endpoint and parsed, strictly, by the peer task.
//!
//! The body comes from the network: it is bounded ([`MAX_ANSWER_BYTES`],
//! [`MAX_MOUNTS`], [`MAX_FETCHES`]), every demand must be a finite
//! non-negative number, and the name must be the one configured for the
//! peer. Mount paths this instance does not serve are ignored (the two
//! configs may differ for a moment during a rollout).

use crate::ids::{MountId, PerMount};
use crate::shares::PeerReport;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Most bytes of a `/peer` answer read; a longer one is refused.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Most mounts an answer may list.
pub const MAX_MOUNTS: usize = 10_000;
/// Most peers an answer's `fetches` may list.
pub const MAX_FETCHES: usize = 256;

/// A `/peer` answer as sent.
#[derive(Debug, Deserialize)]
struct Wire {
    name: String,
    demand: BTreeMap<String, f64>,
    fetches: BTreeMap<String, bool>,
}

/// A parsed, checked answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The peer's demand per mount of this instance's topology (0 for a
    /// mount it did not list).
    pub demand: PerMount<f64>,
    /// Its `fetches` says it fetches from this instance.
    pub fetches_us: bool,
}

/// Why an answer was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AnswerError {
    /// Longer than [`MAX_ANSWER_BYTES`].
    #[error("answer longer than {MAX_ANSWER_BYTES} bytes")]
    TooLong,
    /// Not the JSON object expected.
    #[error("not a /peer answer: {0}")]
    Malformed(String),
    /// The `name` is not the peer's configured name.
    #[error("answer names {found:?}, expected {expected:?}")]
    WrongName {
        /// The name configured for the peer.
        expected: String,
        /// The name in the answer.
        found: String,
    },
    /// Too many mounts or peers listed.
    #[error("answer lists {0} entries, more than allowed")]
    TooMany(usize),
    /// A demand that is not a finite non-negative number.
    #[error("demand for {mount:?} is {value}, not a finite non-negative number")]
    BadDemand {
        /// The mount path.
        mount: String,
        /// The value.
        value: f64,
    },
}

/// Parses the answer of the peer configured as `expected`: its demand per
/// mount of this instance (`mount_id` maps a path to this instance's mount,
/// `mounts` is how many there are) and whether it fetches from `own` (this
/// instance's `[peers] name`).
pub fn parse(
    body: &[u8],
    expected: &str,
    own: &str,
    mounts: usize,
    mount_id: impl Fn(&str) -> Option<MountId>,
) -> Result<Answer, AnswerError> {
    if body.len() > MAX_ANSWER_BYTES {
        return Err(AnswerError::TooLong);
    }
    let wire: Wire =
        serde_json::from_slice(body).map_err(|e| AnswerError::Malformed(e.to_string()))?;
    if wire.name != expected {
        return Err(AnswerError::WrongName {
            expected: expected.to_string(),
            found: wire.name.chars().take(64).collect(),
        });
    }
    if wire.demand.len() > MAX_MOUNTS {
        return Err(AnswerError::TooMany(wire.demand.len()));
    }
    if wire.fetches.len() > MAX_FETCHES {
        return Err(AnswerError::TooMany(wire.fetches.len()));
    }
    let mut demand: PerMount<f64> = (0..mounts).map(|_| 0.0).collect();
    for (path, value) in &wire.demand {
        if !value.is_finite() || *value < 0.0 {
            return Err(AnswerError::BadDemand {
                mount: path.chars().take(64).collect(),
                value: *value,
            });
        }
        if let Some(m) = mount_id(path).filter(|m| m.index() < mounts) {
            demand[m] = *value;
        }
    }
    Ok(Answer {
        demand,
        fetches_us: wire.fetches.get(own).copied().unwrap_or(false),
    })
}

/// The `/peer` answer for `report`.
pub fn render(report: &PeerReport) -> String {
    let demand: serde_json::Map<String, serde_json::Value> = report
        .paths
        .iter()
        .zip(report.published.iter())
        .map(|(p, d)| (p.to_string(), serde_json::json!(d)))
        .collect();
    let fetches: serde_json::Map<String, serde_json::Value> = report
        .peers
        .iter()
        .map(|p| (p.name.clone(), serde_json::Value::Bool(p.fetching)))
        .collect();
    let body = serde_json::json!({
        "name": report.name,
        "demand": demand,
        "fetches": fetches,
    });
    format!("{body}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shares::PeerState;

    fn mount(p: &str) -> Option<MountId> {
        match p {
            "/a" => Some(MountId::new(0)),
            "/b" => Some(MountId::new(1)),
            _ => None,
        }
    }

    #[test]
    fn a_rendered_answer_parses_back() {
        let report = PeerReport {
            name: "ns2".into(),
            paths: vec!["/a".into(), "/b".into()],
            published: [12.5, 0.0].into_iter().collect(),
            peers: vec![PeerState {
                name: "ns1".into(),
                fetching: true,
                ..PeerState::default()
            }],
            ..PeerReport::default()
        };
        let body = render(&report);
        let a = parse(body.as_bytes(), "ns2", "ns1", 2, mount).unwrap();
        assert_eq!(a.demand.iter().copied().collect::<Vec<_>>(), [12.5, 0.0]);
        assert!(a.fetches_us);
        let a = parse(body.as_bytes(), "ns2", "ns3", 2, mount).unwrap();
        assert!(!a.fetches_us, "ns3 is not in its fetches");
    }

    #[test]
    fn bad_answers_are_refused() {
        let ok = br#"{"name":"ns2","demand":{"/a":1,"/zzz":5},"fetches":{}}"#;
        let a = parse(ok, "ns2", "ns1", 2, mount).unwrap();
        assert_eq!(a.demand.iter().copied().collect::<Vec<_>>(), [1.0, 0.0]);
        for (body, want) in [
            (&b"garbage"[..], "not a /peer answer"),
            (
                br#"{"name":"ns3","demand":{},"fetches":{}}"#,
                "expected \"ns2\"",
            ),
            (
                br#"{"name":"ns2","demand":{"/a":-1},"fetches":{}}"#,
                "not a finite",
            ),
            (
                br#"{"name":"ns2","demand":{"/a":NaN},"fetches":{}}"#,
                "not a /peer answer",
            ),
            (
                br#"{"name":"ns2","demand":{"/a":1e999},"fetches":{}}"#,
                "not a /peer answer",
            ),
            (
                br#"{"name":"ns2","demand":{"/a":"x"},"fetches":{}}"#,
                "not a /peer answer",
            ),
            (br#"{"name":"ns2"}"#, "not a /peer answer"),
        ] {
            let e = parse(body, "ns2", "ns1", 2, mount).unwrap_err().to_string();
            assert!(e.contains(want), "{}: {e}", String::from_utf8_lossy(body));
        }
        let huge = vec![b' '; MAX_ANSWER_BYTES + 1];
        assert_eq!(
            parse(&huge, "ns2", "ns1", 2, mount),
            Err(AnswerError::TooLong)
        );
        let many: String = (0..MAX_FETCHES + 1)
            .map(|i| format!("\"p{i}\":true"))
            .collect::<Vec<_>>()
            .join(",");
        let body = format!(r#"{{"name":"ns2","demand":{{}},"fetches":{{{many}}}}}"#);
        assert!(matches!(
            parse(body.as_bytes(), "ns2", "ns1", 2, mount),
            Err(AnswerError::TooMany(_))
        ));
    }
}
