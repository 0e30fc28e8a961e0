//! One scrape of `/metrics`: everything read once ([`Scrape::read`]) from
//! one snapshot, the counters and the DNS state, then encoded by one
//! prometheus-client [`Collector`]. Room and candidacy per relay x mount
//! are [`select::decide`]'s verdicts; the balanced names' answers are the
//! DNS plan's current decisions (read, never redrawn).

use super::catalog::*;
use super::counters::{Outcome, PollStats, RedirectCounts};
use crate::dns::DnsState;
use crate::dns::answer::{Decision, Plan};
use crate::dns::stats::{QTYPES, QUERY_RCODES, RCODES, Tally, ZoneCounts};
use crate::health::{PollError, RelayState};
use crate::select::{self, Exclusion, Room, Target};
use crate::snapshot::{Grid, Snapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Instant, SystemTime};

/// Encodes `scrape` in the Prometheus text format.
pub(super) fn render(scrape: Scrape) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::error!("encoding /metrics: {e}");
    }
    out
}

/// Everything one scrape exports, read once: the collector only encodes.
#[derive(Debug)]
pub(super) struct Scrape {
    snap: Arc<Snapshot>,
    /// Per relay x mount: room or exclusion, as redirects decide now.
    verdicts: Grid<Result<Room, Exclusion>>,
    redirects: RedirectCounts,
    /// Per relay of the snapshot's topology.
    polls: Vec<Option<Arc<PollStats>>>,
    dns: Option<Tally>,
    /// Per zone (`None`: outside every zone), for `floe_dns_queries_total`.
    dns_queries: Vec<(Option<String>, ZoneCounts)>,
    /// Per balanced name of the current DNS plan.
    dns_names: Vec<DnsName>,
    /// `floe_http_proxy_refused_total`, per [`super::ProxyRefusal::ALL`].
    pub(super) proxy_refused: [u64; super::ProxyRefusal::ALL.len()],
    /// `floe_redirects_held_total`.
    pub(super) held: u64,
    /// DNS balanced answers per (pool, group) name, since start.
    dns_pools: Vec<(Box<str>, Box<str>, u64)>,
    /// The ACME certificates and names, when `[acme]` runs.
    pub(super) acme: Option<Acme>,
    now: Instant,
}

/// What `/metrics` says of ACME.
#[derive(Debug)]
pub(super) struct Acme {
    /// Each obtained certificate: first name, file, not after.
    pub(super) certs: Vec<(String, String, i64)>,
    /// Orders by [`crate::issued::OrderResult::ALL`].
    pub(super) orders: [u64; 2],
    /// Each name's status.
    pub(super) names: Vec<crate::issued::NameStatus>,
}

impl Acme {
    /// Reads `issued` once.
    pub(super) fn read(issued: &crate::issued::Issued) -> Acme {
        let store = issued.obtained().load_full();
        Acme {
            certs: store
                .certificates()
                .iter()
                .map(|c| {
                    let name = c.names.first().cloned().unwrap_or_default();
                    (name, c.cert_path.display().to_string(), c.not_after)
                })
                .collect(),
            orders: issued.orders(),
            names: issued.names(),
        }
    }
}

impl Scrape {
    /// Reads one scrape: the decisions from `snap`, the counters given, the
    /// DNS counters and plan from `dns` if DNS runs.
    pub(super) fn read(
        snap: Arc<Snapshot>,
        redirects: RedirectCounts,
        polls: Vec<Option<Arc<PollStats>>>,
        dns: Option<&DnsState>,
    ) -> Scrape {
        let now = Instant::now();
        let per_mount: Vec<select::Decision> = snap
            .topology
            .mounts
            .ids()
            .map(|m| select::decide(&snap, Target::Redirect(m), now))
            .collect();
        let verdicts = Grid::build(snap.relays.len(), per_mount.len(), |r, m| {
            per_mount[m.index()].verdicts[r]
        });
        Scrape {
            verdicts,
            redirects,
            polls,
            dns: dns.map(DnsState::counts),
            dns_queries: dns.map(DnsState::query_counts).unwrap_or_default(),
            dns_names: dns
                .map(|d| dns_names(&d.current_plan()))
                .unwrap_or_default(),
            proxy_refused: Default::default(),
            held: 0,
            dns_pools: dns.map(DnsState::pool_answer_counts).unwrap_or_default(),
            acme: None,
            now,
            snap,
        }
    }
}

/// One balanced name's current answer, for `floe_dns_name_*`.
#[derive(Debug)]
struct DnsName {
    name: String,
    decision: &'static str,
    reason: &'static str,
    relays: u64,
}

/// What every balanced name of `plan` answers.
fn dns_names(plan: &Plan) -> Vec<DnsName> {
    plan.names
        .iter()
        .map(|b| {
            let (decision, reason) = match b.default_answer().decision {
                Decision::Candidates => ("candidates", ""),
                Decision::Policy { why, policy } => (policy.as_str(), why.as_str()),
            };
            DnsName {
                name: b.name.to_string(),
                decision,
                reason,
                relays: b.default_answer().relays.len() as u64,
            }
        })
        .collect()
}

/// Writes one family: its descriptor, then each series from `series`.
fn family<'a>(
    enc: &'a mut DescriptorEncoder<'_>,
    d: &'a Desc,
    series: impl FnOnce(&mut MetricEncoder<'_>) -> fmt::Result,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(d.name, d.help, None, d.kind)?;
    series(&mut m)
}

fn put_gauge<L: EncodeLabelSet>(
    m: &mut MetricEncoder<'_>,
    labels: &L,
    v: impl Gauge,
) -> fmt::Result {
    v.put(&mut m.encode_family(labels)?)
}

fn put_counter<L: EncodeLabelSet>(m: &mut MetricEncoder<'_>, labels: &L, v: u64) -> fmt::Result {
    m.encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

/// A gauge value: integers or floats.
trait Gauge {
    fn put(self, m: &mut MetricEncoder<'_>) -> fmt::Result;
}

impl Gauge for u64 {
    fn put(self, m: &mut MetricEncoder<'_>) -> fmt::Result {
        m.encode_gauge(&self)
    }
}

impl Gauge for f64 {
    fn put(self, m: &mut MetricEncoder<'_>) -> fmt::Result {
        m.encode_gauge(&self)
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let snap = &*self.snap;
        let topo = &snap.topology;
        let relays = || {
            topo.relays
                .iter_ids()
                .map(|(r, def)| (r, (def, &snap.relays[r])))
        };
        // The relay x mount series, unless the config leaves them out.
        let per_mount = snap.config().http.metrics_per_mount;
        let cells = || {
            topo.relays
                .ids()
                .filter(move |_| per_mount)
                .flat_map(move |r| topo.mounts.ids().map(move |m| (r, m)))
                .map(move |(r, m)| {
                    let mount = &topo.mounts[m];
                    let labels = [
                        ("relay", &*topo.relays[r].name),
                        ("stream", &*topo.streams[mount.stream].name),
                        ("mount", &*mount.path),
                    ];
                    (r, m, labels)
                })
        };

        family(&mut enc, &REDIRECTS, |f| {
            for (m, mount) in topo.mounts.iter_ids() {
                let stream = &*topo.streams[mount.stream].name;
                let (outcome, reason) = Outcome::Sent.labels();
                let mut sent = |relay: &str, n: u64| {
                    let labels = [
                        ("stream", stream),
                        ("mount", &*mount.path),
                        ("relay", relay),
                        ("outcome", outcome),
                        ("reason", reason),
                    ];
                    put_counter(f, &labels, n)
                };
                if per_mount {
                    for (r, def) in topo.relays.iter_ids() {
                        sent(&def.name, self.redirects.sent_to(m, r))?;
                    }
                } else {
                    // Summed over the relays (relay="").
                    sent(
                        "",
                        topo.relays
                            .ids()
                            .map(|r| self.redirects.sent_to(m, r))
                            .sum(),
                    )?;
                }
                for (k, o) in Outcome::REFUSED.into_iter().enumerate() {
                    let (outcome, reason) = o.labels();
                    let labels = [
                        ("stream", stream),
                        ("mount", &mount.path),
                        ("relay", ""),
                        ("outcome", outcome),
                        ("reason", reason),
                    ];
                    put_counter(f, &labels, self.redirects.refused[m][k])?;
                }
            }
            let labels = [
                ("stream", ""),
                ("mount", ""),
                ("relay", ""),
                ("outcome", "404"),
                ("reason", ""),
            ];
            put_counter(f, &labels, self.redirects.not_found)
        })?;

        family(&mut enc, &POLL_DURATION, |f| {
            for (r, def) in topo.relays.iter_ids() {
                let Some(stats) = &self.polls[r.index()] else {
                    continue;
                };
                let mut buckets: Vec<(f64, u64)> = POLL_BUCKETS
                    .iter()
                    .zip(&stats.buckets)
                    .map(|(&b, c)| (b, c.load(Relaxed)))
                    .collect();
                buckets.push((
                    f64::INFINITY,
                    stats.buckets[POLL_BUCKETS.len()].load(Relaxed),
                ));
                let count = buckets.iter().map(|b| b.1).sum();
                let sum = stats.sum_micros.load(Relaxed) as f64 / 1e6;
                f.encode_family(&[("relay", &*def.name)])?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
            Ok(())
        })?;
        family(&mut enc, &POLL_ERRORS, |f| {
            for (r, def) in topo.relays.iter_ids() {
                for e in PollError::ALL {
                    let n = self.polls[r.index()].as_ref().map_or(0, |s| s.errors(e));
                    put_counter(f, &[("relay", &*def.name), ("reason", e.as_str())], n)?;
                }
            }
            Ok(())
        })?;

        family(&mut enc, &RELAY_STATE, |f| {
            for (_, (def, view)) in relays() {
                for s in RelayState::ALL {
                    put_gauge(
                        f,
                        &[("relay", &*def.name), ("state", s.as_str())],
                        u64::from(view.state == s),
                    )?;
                }
            }
            Ok(())
        })?;
        family(&mut enc, &RELAY_STATE_SINCE, |f| {
            relays().try_for_each(|(_, (def, view))| {
                put_gauge(f, &[("relay", &*def.name)], unix_seconds(view.since))
            })
        })?;
        family(&mut enc, &RELAY_DRAINING, |f| {
            relays().try_for_each(|(_, (def, view))| {
                put_gauge(f, &[("relay", &*def.name)], u64::from(view.drain))
            })
        })?;
        family(&mut enc, &RELAY_LISTENERS, |f| {
            relays().try_for_each(|(_, (def, view))| {
                put_gauge(f, &[("relay", &*def.name)], u64::from(view.listeners))
            })
        })?;
        family(&mut enc, &RELAY_MAX_LISTENERS, |f| {
            relays().try_for_each(|(_, (def, _))| match def.max_listeners {
                Some(c) => put_gauge(f, &[("relay", &*def.name)], u64::from(c)),
                None => Ok(()),
            })
        })?;
        family(&mut enc, &RELAY_ROOM, |f| {
            relays().try_for_each(|(r, (def, _))| match select::relay_room(snap, r) {
                Some(n) => put_gauge(f, &[("relay", &*def.name)], n),
                None => Ok(()),
            })
        })?;
        family(&mut enc, &RELAY_IN_FLIGHT, |f| {
            relays().try_for_each(|(_, (def, view))| {
                put_gauge(
                    f,
                    &[("relay", &*def.name)],
                    def.grants.relay_in_flight(view.baseline),
                )
            })
        })?;

        family(&mut enc, &MOUNT_SOURCE, |f| {
            cells().try_for_each(|(r, m, l)| put_gauge(f, &l, u64::from(snap.cell(r, m).present)))
        })?;
        family(&mut enc, &MOUNT_LISTENERS, |f| {
            cells().try_for_each(|(r, m, l)| put_gauge(f, &l, u64::from(snap.cell(r, m).listeners)))
        })?;
        family(&mut enc, &MOUNT_MAX_LISTENERS, |f| {
            cells().try_for_each(|(r, m, l)| match snap.cell(r, m).capacity {
                Some(c) => put_gauge(f, &l, u64::from(c)),
                None => Ok(()),
            })
        })?;
        family(&mut enc, &MOUNT_ROOM, |f| {
            cells().try_for_each(|(r, m, l)| match self.verdicts[(r, m)].map(Room::slots) {
                Ok(None) => Ok(()),
                Ok(Some(n)) => put_gauge(f, &l, n),
                Err(_) => put_gauge(f, &l, 0u64),
            })
        })?;
        family(&mut enc, &MOUNT_IN_FLIGHT, |f| {
            cells().try_for_each(|(r, m, l)| {
                put_gauge(
                    f,
                    &l,
                    topo.relays[r].grants.in_flight(m, snap.cell(r, m).baseline),
                )
            })
        })?;
        family(&mut enc, &MOUNT_CANDIDATE, |f| {
            cells().try_for_each(|(r, m, l)| {
                put_gauge(f, &l, u64::from(self.verdicts[(r, m)].is_ok()))
            })
        })?;

        let none: [(&str, &str); 0] = [];
        family(&mut enc, &SNAPSHOT_GENERATION, |f| {
            put_gauge(f, &none, snap.generation)
        })?;
        family(&mut enc, &SNAPSHOT_AGE, |f| {
            put_gauge(
                f,
                &none,
                self.now.saturating_duration_since(snap.built).as_secs_f64(),
            )
        })?;
        family(&mut enc, &SNAPSHOT_STALE, |f| {
            put_gauge(f, &none, u64::from(snap.is_stale(self.now)))
        })?;
        family(&mut enc, &FIRST_ROUND, |f| {
            put_gauge(f, &none, u64::from(snap.first_round_done))
        })?;
        family(&mut enc, &RELOADS, |f| {
            put_counter(f, &[("result", "success")], snap.reload.successes)?;
            put_counter(f, &[("result", "failure")], snap.reload.failures)
        })?;
        family(&mut enc, &RELOAD_FAILED, |f| {
            put_gauge(f, &none, u64::from(snap.reload.last_error.is_some()))
        })?;

        if let Some(dns) = &self.dns {
            family(&mut enc, &DNS_ANSWERS, |f| {
                put_counter(f, &[("path", "udp-fast")], dns.udp_fast)?;
                put_counter(f, &[("path", "udp-handler")], dns.udp_handler)?;
                put_counter(f, &[("path", "tcp")], dns.tcp)
            })?;
            family(&mut enc, &DNS_RESPONSES, |f| {
                for (i, n) in dns.rcode.iter().enumerate() {
                    put_counter(
                        f,
                        &[("rcode", RCODES.get(i).copied().unwrap_or("other"))],
                        *n,
                    )?;
                }
                Ok(())
            })?;
            family(&mut enc, &DNS_QUERIES, |f| {
                for (zone, counts) in &self.dns_queries {
                    let zone = zone.as_deref().unwrap_or("");
                    for (qtype, row) in QTYPES.iter().zip(counts) {
                        for (rcode, &n) in QUERY_RCODES.iter().zip(row) {
                            if n > 0 {
                                let labels = [("zone", zone), ("qtype", qtype), ("rcode", rcode)];
                                put_counter(f, &labels, n)?;
                            }
                        }
                    }
                }
                Ok(())
            })?;
            family(&mut enc, &DNS_DROPPED, |f| {
                put_counter(f, &none, dns.unanswered)
            })?;
            family(&mut enc, &DNS_RATE_LIMITED, |f| {
                put_counter(f, &[("action", "drop")], dns.rate_limited)?;
                put_counter(f, &[("action", "slip")], dns.slipped)
            })?;
            family(&mut enc, &DNS_NAME_ANSWER, |f| {
                for n in &self.dns_names {
                    let labels = [
                        ("name", n.name.as_str()),
                        ("decision", n.decision),
                        ("reason", n.reason),
                    ];
                    put_gauge(f, &labels, 1u64)?;
                }
                Ok(())
            })?;
            family(&mut enc, &DNS_NAME_RELAYS, |f| {
                for n in &self.dns_names {
                    put_gauge(f, &[("name", n.name.as_str())], n.relays)?;
                }
                Ok(())
            })?;
        }
        family(&mut enc, &REDIRECTS_HELD, |f| {
            put_counter(f, &none, self.held)
        })?;
        family(&mut enc, &PROXY_REFUSED, |f| {
            for (why, &n) in super::ProxyRefusal::ALL.iter().zip(&self.proxy_refused) {
                put_counter(f, &[("reason", why.as_str())], n)?;
            }
            Ok(())
        })?;
        self.encode_pools(&mut enc)?;
        family(&mut enc, &TLS_CERT_EXPIRY, |f| {
            let store = &topo.config.http.tls_certificates;
            store.certificates().iter().try_for_each(|c| {
                let name = c.names.first().map_or("", String::as_str);
                let file = c.cert_path.display().to_string();
                put_gauge(f, &[("name", name), ("file", &*file)], c.not_after as f64)
            })?;
            let acme = self.acme.iter().flat_map(|a| &a.certs);
            acme.into_iter().try_for_each(|(name, file, not_after)| {
                put_gauge(
                    f,
                    &[("name", &**name), ("file", &**file)],
                    *not_after as f64,
                )
            })
        })?;
        self.encode_acme(&mut enc)?;
        self.encode_peers(&mut enc)?;
        family(&mut enc, &BUILD_INFO, |f| {
            put_gauge(f, &[("version", env!("CARGO_PKG_VERSION"))], 1u64)
        })
    }
}

impl Scrape {
    /// `floe_acme_*` (series only when `[acme]` runs).
    fn encode_acme(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        use crate::issued::{OrderResult, Phase};
        let acme = self.acme.as_ref();
        family(enc, &ACME_ORDERS, |f| {
            let Some(a) = acme else { return Ok(()) };
            OrderResult::ALL
                .iter()
                .zip(a.orders)
                .try_for_each(|(r, n)| put_counter(f, &[("result", r.as_str())], n))
        })?;
        family(enc, &ACME_NAME_STATE, |f| {
            let names = acme.iter().flat_map(|a| &a.names);
            for n in names {
                for p in [
                    Phase::Starting,
                    Phase::Ordering,
                    Phase::Valid,
                    Phase::Failed,
                ] {
                    let v = u64::from(n.phase == p);
                    put_gauge(f, &[("name", &*n.name), ("state", p.as_str())], v)?;
                }
            }
            Ok(())
        })?;
        family(enc, &ACME_NEXT_ATTEMPT, |f| {
            let names = acme.iter().flat_map(|a| &a.names);
            for n in names {
                if let Some(at) = n.next_attempt {
                    put_gauge(f, &[("name", &*n.name)], at as f64)?;
                }
            }
            Ok(())
        })
    }

    /// The peer exchange: `floe_peer_connected`,
    /// `floe_peer_last_fetch_seconds` (without `[[peer]]`s: none) and
    /// `floe_share` per mount.
    fn encode_peers(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let snap = &*self.snap;
        let peers = snap.peers.as_deref().map_or(&[][..], |p| &p.peers[..]);
        family(enc, &PEER_CONNECTED, |f| {
            peers
                .iter()
                .try_for_each(|p| put_gauge(f, &[("peer", &*p.name)], u64::from(p.connected)))
        })?;
        family(enc, &PEER_LAST_FETCH, |f| {
            peers.iter().try_for_each(|p| {
                let at = p.last_fetch.map_or(0.0, |t| {
                    t.duration_since(std::time::SystemTime::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64())
                });
                put_gauge(f, &[("peer", &*p.name)], at)
            })
        })?;
        family(enc, &SHARE, |f| {
            snap.topology
                .mounts
                .iter()
                .zip(snap.shares.mounts.iter())
                .try_for_each(|(m, s)| put_gauge(f, &[("mount", &*m.path)], *s))
        })
    }

    /// `floe_pool_answers_total`, `floe_spillovers_total` (both doors) and
    /// the per-group gauges.
    fn encode_pools(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let snap = &*self.snap;
        let topo = &snap.topology;
        // Per door, (pool, group, answers, spilled over).
        let mut rows: Vec<(&str, &str, &str, u64, bool)> = Vec::new();
        for (p, pool) in topo.pools.iter_ids() {
            for (rank, &g) in pool.order.iter().enumerate() {
                let n = self
                    .redirects
                    .by_group
                    .get(p)
                    .and_then(|c| c.get(g))
                    .copied();
                rows.push((
                    "http",
                    &pool.name,
                    &topo.groups[g].name,
                    n.unwrap_or(0),
                    rank > 0,
                ));
            }
        }
        for (pool, group, n) in &self.dns_pools {
            // Its rank in the pool's current order (None: not in it, or a
            // policy answer, group ""); a pair that cannot occur now and
            // never did is left out.
            let rank = topo.pool_id(pool).and_then(|p| {
                topo.pools[p]
                    .order
                    .iter()
                    .position(|&g| *topo.groups[g].name == **group)
            });
            if *n == 0 && rank.is_none() && !group.is_empty() {
                continue;
            }
            rows.push(("dns", pool, group, *n, rank.is_some_and(|r| r > 0)));
        }
        family(enc, &POOL_ANSWERS, |f| {
            rows.iter().try_for_each(|&(door, pool, group, n, _)| {
                put_counter(f, &[("door", door), ("pool", pool), ("group", group)], n)
            })
        })?;
        family(enc, &SPILLOVERS, |f| {
            rows.iter()
                .filter(|r| r.4)
                .try_for_each(|&(door, pool, group, n, _)| {
                    put_counter(f, &[("door", door), ("pool", pool), ("group", group)], n)
                })
        })?;
        family(enc, &GROUP_ROOM, |f| {
            for group in topo.groups.iter() {
                for mount in topo.mounts.ids() {
                    let Some(room) = select::group_room(snap, group, mount) else {
                        continue;
                    };
                    let def = &topo.mounts[mount];
                    let labels = [
                        ("group", &*group.name),
                        ("stream", &*topo.streams[def.stream].name),
                        ("mount", &*def.path),
                    ];
                    put_gauge(f, &labels, room)?;
                }
            }
            Ok(())
        })?;
        family(enc, &GROUP_RELAYS_UP, |f| {
            for group in topo.groups.iter() {
                let up = group
                    .relays
                    .iter()
                    .filter(|&&r| snap.relays[r].state == RelayState::Up)
                    .count() as u64;
                put_gauge(f, &[("group", &*group.name)], up)?;
            }
            Ok(())
        })
    }
}
