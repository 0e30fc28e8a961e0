//! Explanations: for one mount, stream or balanced DNS name, which relays
//! are candidates (with their room and chance of being picked) and why each
//! other relay is excluded, all from one snapshot, named by its generation.
//!
//! An explanation prints [`select::decide`]'s decision itself, so it says
//! exactly what a redirect or a DNS answer drawn from the same snapshot
//! would do. Served at `GET
//! /explain/<mount>` and `GET /explain?name=<dns name>` (text or JSON) and
//! printed by `floe explain`.

use super::rfc3339;
use crate::select::{self, Answer, Exclusion, Fallback, NoCandidate};
use crate::snapshot::{MountId, PoolId, RelayId, Snapshot, StreamId};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Instant;

/// What an explanation is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A mount path, as the HTTP door answers it.
    Mount(MountId),
    /// A whole stream, as its balanced DNS names answer it.
    Stream(StreamId),
    /// A balanced DNS name (per-mount when `mount` is set).
    Name {
        /// The name as configured (lower case, fully qualified).
        name: String,
        /// Its stream.
        stream: StreamId,
        /// For a per-mount name, its mount.
        mount: Option<MountId>,
    },
}

/// Finds what `query` names in `snap`'s config: a mount path (the leading
/// `/` may be left out), a stream name, or a balanced DNS name (any case,
/// final dot optional). With `name_first`, DNS names are tried first.
pub fn resolve(snap: &Snapshot, query: &str, name_first: bool) -> Option<Target> {
    let topo = &snap.topology;
    let mount = || {
        let path = format!("/{}", query.strip_prefix('/').unwrap_or(query));
        topo.mount_id(&path).map(Target::Mount)
    };
    let stream = || topo.stream_id(query).map(Target::Stream);
    let name = || {
        let mut wanted = query.to_ascii_lowercase();
        if !wanted.ends_with('.') {
            wanted.push('.');
        }
        snap.config().balanced_names().find_map(|(n, s, m)| {
            let text = n.to_string().to_ascii_lowercase();
            if text != wanted {
                return None;
            }
            Some(Target::Name {
                name: text,
                stream: topo.stream_id(&s.name)?,
                mount: m.and_then(|p| topo.mount_id(p)),
            })
        })
    };
    if query.is_empty() {
        return None;
    }
    if name_first {
        name().or_else(mount).or_else(stream)
    } else {
        mount().or_else(stream).or_else(name)
    }
}

/// Everything that can be explained in `snap`'s config, for help texts:
/// mounts, streams and balanced names.
pub fn explainable(snap: &Snapshot) -> Vec<String> {
    let topo = &snap.topology;
    let mut out: Vec<String> = topo.mounts.iter().map(|m| m.path.to_string()).collect();
    out.extend(topo.streams.iter().map(|s| s.name.to_string()));
    out.extend(
        snap.config()
            .balanced_names()
            .map(|(n, _, _)| n.to_string()),
    );
    out
}

/// One explanation.
#[derive(Debug, Serialize)]
pub struct Explanation<'a> {
    /// Snapshot generation the verdicts come from.
    pub generation: u64,
    /// Its build time (RFC 3339).
    pub built_at: String,
    /// Seconds since.
    pub age_seconds: f64,
    /// The snapshot is stale (`[poll] stale_after`).
    pub stale: bool,
    /// `mount`, `stream` or `dns-name`.
    pub kind: &'static str,
    /// The mount path, stream name or DNS name explained.
    pub target: String,
    /// The stream it belongs to.
    pub stream: &'a str,
    /// The mounts a relay is judged on.
    pub mounts: Vec<&'a str>,
    /// The listener pool explained for (`default` unless asked).
    pub pool: &'a str,
    /// The groups the pool's listeners are sent to, in the order tried
    /// (`*`: every relay not in an exclusive group).
    pub order: Vec<&'a str>,
    /// The group of that order the candidates come from (`None` when none
    /// has room).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<&'a str>,
    /// What floe answers now, in words.
    pub answer: String,
    /// For a mount: how many redirects with a grant one client (address
    /// prefix) may get per window now; past it, `429`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_budget: Option<ClientBudget>,
    /// This instance's share of the free slots, when it is not the only
    /// instance (a static `[select] share` or the peer exchange).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<ShareNote<'a>>,
    /// Relays that can take a new listener, with room and chance.
    pub candidates: Vec<Candidate<'a>>,
    /// Every other relay and why.
    pub excluded: Vec<Excluded<'a>>,
}

/// This instance's part of the free slots the room above is after.
#[derive(Debug, Serialize)]
pub struct ShareNote<'a> {
    /// The smallest share among the judged mounts.
    pub share: f64,
    /// From the peer exchange (else the static `[select] share`).
    pub exchange: bool,
    /// The static part held back for each peer not connected.
    pub static_share: f64,
    /// Peers not connected, whose static part is held back.
    pub held_back: Vec<&'a str>,
}

/// The share note of `snap` for the `judged` mounts (`None`: a lone
/// instance with the whole room).
fn share_note<'a>(snap: &'a Snapshot, judged: &[MountId]) -> Option<ShareNote<'a>> {
    let share = judged
        .iter()
        .filter_map(|&m| snap.shares.mounts.get(m).copied())
        .reduce(f64::min)
        .unwrap_or(snap.shares.relay);
    let peers = snap.peers.as_deref();
    if peers.is_none() && share >= 1.0 {
        return None;
    }
    Some(ShareNote {
        share,
        exchange: peers.is_some(),
        static_share: snap.config().select.share,
        held_back: peers.map_or_else(Vec::new, |p| {
            p.peers
                .iter()
                .filter(|p| !p.connected)
                .map(|p| &*p.name)
                .collect()
        }),
    })
}

/// The per-client budget of a mount now (see [`crate::clients`]).
#[derive(Debug, Serialize)]
pub struct ClientBudget {
    /// Grants one client may take per window.
    pub grants: u64,
    /// The window, in seconds.
    pub window_seconds: f64,
    /// What makes one client: `/32` of IPv4, `/64` of IPv6 by default.
    pub prefix_v4: u8,
    /// The IPv6 prefix length.
    pub prefix_v6: u8,
}

/// A candidate relay.
#[derive(Debug, Serialize)]
pub struct Candidate<'a> {
    /// Relay name.
    pub relay: &'a str,
    /// Room for new listeners (null: unlimited).
    pub room: Option<u64>,
    /// Room on the mount alone (null: unlimited).
    pub mount_room: Option<u64>,
    /// Room under the relay's caps (null: unlimited).
    pub relay_room: Option<u64>,
    /// Configured weight.
    pub weight: u32,
    /// Probability of being picked next (room x weight, normalised).
    pub chance: f64,
    /// Where a redirect over plain HTTP sends the listener (base URL).
    pub url: &'a str,
    /// Where a redirect over TLS sends the listener: the relay's
    /// `https_url`, its `url` when `[http] tls_redirect_to_http` allows, or
    /// null (requests over TLS are not sent to this relay).
    pub https_url: Option<&'a str>,
}

/// An excluded relay.
#[derive(Debug, Serialize)]
pub struct Excluded<'a> {
    /// Relay name.
    pub relay: &'a str,
    /// `down`, `full`, `draining`, `no-source`, `reserve`, `server-full`,
    /// `unknown`.
    pub reason: &'static str,
    /// The figures behind it.
    pub detail: String,
}

impl Target {
    /// The decision this explains.
    pub fn decided(&self) -> select::Target {
        match *self {
            Target::Mount(m) => select::Target::Redirect(m),
            Target::Stream(stream) => select::Target::Name {
                stream,
                mount: None,
            },
            Target::Name { stream, mount, .. } => select::Target::Name { stream, mount },
        }
    }
}

/// Explains `target` for a listener of `pool` from `snap` at `now`.
pub fn explain<'a>(
    snap: &'a Snapshot,
    target: &Target,
    pool: PoolId,
    now: Instant,
) -> Explanation<'a> {
    let topo = &snap.topology;
    let (kind, label, stream) = match target {
        Target::Mount(m) => (
            "mount",
            topo.mounts[*m].path.to_string(),
            topo.mounts[*m].stream,
        ),
        Target::Stream(s) => ("stream", topo.streams[*s].name.to_string(), *s),
        Target::Name { name, stream, .. } => ("dns-name", name.clone(), *stream),
    };
    let decision = select::decide_for(snap, target.decided(), pool, now);
    let mut candidates = Vec::new();
    let mut excluded = Vec::new();
    for (r, verdict) in decision.verdicts.iter_ids() {
        let def = &topo.relays[r];
        match *verdict {
            Ok(room) => candidates.push(Candidate {
                relay: &def.name,
                room: room.slots(),
                mount_room: room.mount,
                relay_room: room.relay,
                weight: def.weight,
                chance: select::weight(snap, r, room) as f64,
                url: &def.url,
                https_url: def
                    .https_url
                    .as_deref()
                    .or_else(|| (snap.config().http.tls_redirect_to_http).then_some(&*def.url)),
            }),
            Err(why) => excluded.push(Excluded {
                relay: &def.name,
                reason: why.as_str(),
                detail: detail(snap, r, &decision.judged, why),
            }),
        }
    }
    let total: f64 = candidates.iter().map(|c| c.chance).sum();
    for c in &mut candidates {
        c.chance = if total > 0.0 { c.chance / total } else { 0.0 };
    }
    let answer = match target {
        Target::Mount(_) => http_answer(&decision, candidates.len()),
        _ => dns_answer(snap, &decision, candidates.len()),
    };
    Explanation {
        generation: snap.generation,
        built_at: rfc3339(snap.built_at),
        age_seconds: now.saturating_duration_since(snap.built).as_secs_f64(),
        stale: snap.is_stale(now),
        kind,
        target: label,
        stream: &topo.streams[stream].name,
        mounts: decision
            .judged
            .iter()
            .map(|&m| &*topo.mounts[m].path)
            .collect(),
        pool: &topo.pools[pool].name,
        order: topo.pools[pool]
            .order
            .iter()
            .map(|&g| &*topo.groups[g].name)
            .collect(),
        group: decision.group.map(|g| &*topo.groups[g].name),
        answer,
        client_budget: match target {
            Target::Mount(m) => {
                let select = &snap.config().select;
                Some(ClientBudget {
                    grants: select::client_budget(snap, *m, pool),
                    window_seconds: snap.config().poll.grant_window().as_secs_f64(),
                    prefix_v4: select.client_prefix_v4,
                    prefix_v6: select.client_prefix_v6,
                })
            }
            _ => None,
        },
        share: share_note(snap, &decision.judged),
        candidates,
        excluded,
    }
}

/// What the HTTP door answers for `decision`, in words.
fn http_answer(decision: &select::Decision, candidates: usize) -> String {
    match decision.answer {
        Answer::Candidates => format!(
            "HTTP: 302 to one of {candidates} candidate{}, picked at random weighted by room x weight",
            plural(candidates)
        ),
        Answer::Fallback(Fallback::NoCandidate(NoCandidate::Starting)) => {
            "HTTP: 503 starting (no relay polled yet)".into()
        }
        Answer::Fallback(Fallback::NoCandidate(NoCandidate::Offline)) => {
            "HTTP: 503 stream offline (no live relay has a source)".into()
        }
        Answer::Fallback(_) => {
            "HTTP: 503 stream full (every relay carrying it is full, down, drained or reserved)"
                .into()
        }
    }
}

/// What the DNS door answers for `decision`, in words.
fn dns_answer(snap: &Snapshot, decision: &select::Decision, candidates: usize) -> String {
    let dns = &snap.config().dns;
    match decision.answer {
        Answer::Candidates => format!(
            "DNS: A/AAAA of {} of these {candidates} candidate{}, drawn by room x weight (TTL at most {}s)",
            candidates.min(dns.answers),
            plural(candidates),
            dns.ttl.as_secs()
        ),
        Answer::Fallback(why) => {
            let reason = match why {
                Fallback::Stale => "snapshot stale",
                Fallback::FirstPoll => "first poll round not done",
                Fallback::NoCandidate(n) => n.as_str(),
            };
            format!(
                "DNS: no candidate ({reason}); policy {} answers",
                why.policy(dns).as_str()
            )
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The figures behind relay `r`'s exclusion `why`, judged on `mounts`.
fn detail(snap: &Snapshot, r: RelayId, mounts: &[MountId], why: Exclusion) -> String {
    let view = &snap.relays[r];
    let def = &snap.topology.relays[r];
    let since = rfc3339(view.since);
    // The mount that excluded the relay: the first judged mount whose own
    // verdict is this reason.
    let culprit = mounts
        .iter()
        .copied()
        .find(|&m| select::mount_room(snap, r, m).err() == Some(why));
    let path = |m: MountId| &*snap.topology.mounts[m].path;
    match why {
        Exclusion::Unknown => format!("not polled yet ({})", view.reason),
        Exclusion::Down => format!("down since {since}: {}", view.reason),
        Exclusion::ServerFull => format!("refusing every client since {since}: {}", view.reason),
        Exclusion::Draining if view.listeners == 0 => {
            "drained by the operator; drain complete (no listeners left)".into()
        }
        Exclusion::Draining => format!(
            "drained by the operator; {} listeners still on it",
            view.listeners
        ),
        Exclusion::NoSource => match culprit {
            Some(m) => format!("no source for {} on this relay", path(m)),
            None => "no source on this relay".into(),
        },
        Exclusion::Full => {
            let Some(m) = culprit else {
                return "no free slot".into();
            };
            let cell = snap.cell(r, m);
            let g = def.grants.in_flight(m, cell.baseline);
            let relay_g = def.grants.relay_in_flight(view.baseline);
            if cell.free.is_some_and(|f| f <= g) {
                let limit = cell
                    .capacity
                    .map_or("no limit".to_string(), |c| format!("limit {c}"));
                format!(
                    "{}: {} listeners ({limit}), {} free at the last poll, {g} sent since",
                    path(m),
                    cell.listeners,
                    cell.free.unwrap_or(0)
                )
            } else {
                let cap = def
                    .max_listeners
                    .map_or("uplink".to_string(), |c| format!("cap {c}"));
                format!(
                    "relay: {} listeners ({cap}), {} free at the last poll, {relay_g} sent since",
                    view.listeners,
                    view.free.unwrap_or(0)
                )
            }
        }
        Exclusion::Reserve => match culprit {
            Some(m) => format!(
                "{}: only the reserve is left ({} slots held back until a peer is down or full)",
                path(m),
                snap.cell(r, m).reserve
            ),
            None => "only the reserve is left".into(),
        },
        Exclusion::NotInPool => "in none of the groups this listener's pool is sent to".into(),
        Exclusion::EarlierGroup => {
            "has room, but a group earlier in this listener's pool order has room too".into()
        }
    }
}

impl Explanation<'_> {
    /// The plain-text form `floe explain` prints.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let what = match self.kind {
            "mount" => format!(
                "mount of stream \"{}\", as HTTP redirects answer it",
                self.stream
            ),
            "stream" => format!(
                "stream with mounts {}, as its DNS names answer it",
                self.mounts.join(" ")
            ),
            _ => format!(
                "balanced DNS name of stream \"{}\" (judged on {})",
                self.stream,
                self.mounts.join(" ")
            ),
        };
        let _ = writeln!(s, "explain {}: {what}", self.target);
        let _ = writeln!(
            s,
            "snapshot generation {} built {} ({:.1} s ago{})",
            self.generation,
            self.built_at,
            self.age_seconds,
            if self.stale { ", STALE" } else { "" }
        );
        if self.pool != crate::config::DEFAULT_POOL || self.order != [crate::config::ANY_GROUP] {
            let _ = writeln!(
                s,
                "listener pool: {} (groups tried in order: {}; answering: {})",
                self.pool,
                self.order.join(", "),
                self.group.unwrap_or("none has room")
            );
        }
        let _ = writeln!(s, "answer now: {}", self.answer);
        if let Some(b) = &self.client_budget {
            let _ = writeln!(
                s,
                "per client: at most {} redirects every {:.1} s from one IPv4 /{} or IPv6 /{}; past that, 429",
                b.grants, b.window_seconds, b.prefix_v4, b.prefix_v6
            );
        }
        if let Some(n) = &self.share {
            let how = if n.exchange {
                "by demand, from the peer exchange"
            } else {
                "the static [select] share"
            };
            let _ = writeln!(
                s,
                "this instance's share: {:.1}% of the free slots ({how})",
                n.share * 100.0
            );
            if !n.held_back.is_empty() {
                let _ = writeln!(
                    s,
                    "peers not connected: {} (the static part, {:.1}% each, is held back for them)",
                    n.held_back.join(", "),
                    n.static_share * 100.0
                );
            }
        }
        let width = self
            .candidates
            .iter()
            .map(|c| c.relay.chars().count())
            .chain(self.excluded.iter().map(|e| e.relay.chars().count()))
            .max()
            .unwrap_or(0);
        let _ = writeln!(s, "\ncandidates ({}):", self.candidates.len());
        if self.candidates.is_empty() {
            s.push_str("  (none)\n");
        }
        for c in &self.candidates {
            let room = c.room.map_or("unlimited".to_string(), |n| n.to_string());
            let _ = writeln!(
                s,
                "  {:width$}  room {room:>9}  weight {:>3}  chance {:>5.1}%",
                c.relay,
                c.weight,
                c.chance * 100.0
            );
            if self.kind == "mount" {
                let https = c
                    .https_url
                    .unwrap_or("not drawn (no https_url; [http] tls_redirect_to_http is false)");
                let _ = writeln!(
                    s,
                    "  {:width$}  over http: {}  over https: {https}",
                    "", c.url
                );
            }
        }
        let _ = writeln!(s, "\nexcluded ({}):", self.excluded.len());
        if self.excluded.is_empty() {
            s.push_str("  (none)\n");
        }
        for e in &self.excluded {
            let _ = writeln!(s, "  {:width$}  {:<11}  {}", e.relay, e.reason, e.detail);
        }
        s
    }
}
