//! The peer exchange between the instances of one NS set: one task that,
//! every `[peers] interval`, publishes this instance's demand (what its
//! peers fetch from `/peer` on the admin listener), fetches every
//! `[[peer]]`'s `/peer` concurrently, and hands the shares that follow
//! ([`crate::shares::Exchange`]) to the [`Engine`], which rebuilds the
//! snapshot with them when they change.
//!
//! A peer that does not answer (within one interval), answers badly or
//! does not fetch from this instance is not connected: its static part
//! (`[select] share`) is held back until it is again. The task reads the
//! config from the current snapshot each round, so a reload that changes
//! the peers, the mounts or the share starts a new exchange.

pub mod answer;

use crate::config::{Config, PeersConfig, PollConfig};
use crate::poll::Engine;
use crate::shares::{Exchange, PeerReport, PeerState};
use crate::shutdown::Shutdown;
use crate::snapshot::Topology;
use answer::{AnswerError, MAX_ANSWER_BYTES};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often the task looks for `[[peer]]`s while the config has none.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Why one fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connecting, sending or reading failed (or took over the interval).
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    /// An answer that is not `200`.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body was refused.
    #[error(transparent)]
    Answer(#[from] AnswerError),
}

/// Starts the exchange task on the current tokio runtime (it idles while
/// the config has no `[[peer]]`).
pub fn spawn(engine: Engine, shutdown: Shutdown) {
    tokio::spawn(async move {
        tokio::select! {
            _ = run(engine) => {}
            _ = shutdown.wait() => {}
        }
    });
}

/// What a round depends on: when it changes, the exchange starts over.
#[derive(PartialEq)]
struct Key {
    peers: PeersConfig,
    share: f64,
    poll: PollConfig,
    paths: Vec<Box<str>>,
}

impl Key {
    fn of(config: &Config, topology: &Topology) -> Key {
        Key {
            peers: config.peers.clone(),
            share: config.select.share,
            poll: config.poll.clone(),
            paths: topology.mounts.iter().map(|m| m.path.clone()).collect(),
        }
    }
}

/// One running exchange.
struct Running {
    key: Key,
    exchange: Exchange,
    client: reqwest::Client,
    states: Vec<PeerState>,
}

async fn run(engine: Engine) {
    let mut running: Option<Running> = None;
    loop {
        let snap = engine.snapshots().load_full();
        let topology = snap.topology.clone();
        let config = topology.config.clone();
        if config.peers.peers.is_empty() {
            if running.take().is_some() {
                engine.set_peers(None);
            }
            tokio::time::sleep(IDLE_CHECK).await;
            continue;
        }
        let key = Key::of(&config, &topology);
        if running.as_ref().is_none_or(|r| r.key != key) {
            running = match start(key) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!("peer exchange: no HTTP client: {e}");
                    tokio::time::sleep(IDLE_CHECK).await;
                    continue;
                }
            };
        }
        let Some(r) = running.as_mut() else { continue };
        let started = Instant::now();
        round(r, &engine, &config, &topology).await;
        let interval = config.peers.interval;
        tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
    }
}

fn start(key: Key) -> Result<Running, reqwest::Error> {
    let p = &key.peers;
    let client = reqwest::Client::builder()
        .user_agent(concat!(
            "floe/",
            env!("CARGO_PKG_VERSION"),
            " (peer exchange)"
        ))
        .connect_timeout(p.interval)
        .timeout(p.interval)
        .pool_max_idle_per_host(1)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?;
    tracing::info!(
        name = %p.name,
        peers = p.peers.len(),
        interval = ?p.interval,
        static_share = key.share,
        "peer exchange started"
    );
    let states = p
        .peers
        .iter()
        .map(|c| PeerState {
            name: c.name.clone(),
            url: c.url.clone(),
            demand: key.paths.iter().map(|_| 0.0).collect(),
            ..PeerState::default()
        })
        .collect();
    Ok(Running {
        exchange: Exchange::new(p.peers.len(), p.interval, key.share, &key.poll),
        client,
        states,
        key,
    })
}

/// One round: publish, fetch every peer, hand the shares to the engine.
async fn round(r: &mut Running, engine: &Engine, config: &Config, topology: &Arc<Topology>) {
    let published = r
        .exchange
        .publish(Instant::now(), &topology.demand.counts());
    let mounts = topology.mounts.len();
    // Publish before fetching: a peer fetching meanwhile gets the new figures.
    // (Links as of the last round: they change with the shares below.)
    engine.set_peers(Some((report(r, config, published.clone(), None), None)));
    let token = config
        .admin
        .token
        .as_ref()
        .map(|t| String::from_utf8_lossy(t.expose()).into_owned())
        .unwrap_or_default();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, p) in config.peers.peers.iter().enumerate() {
        let client = r.client.clone();
        let url = format!("{}/peer", p.url);
        let (token, name, own) = (token.clone(), p.name.clone(), config.peers.name.clone());
        let topology = topology.clone();
        tasks.spawn(async move {
            let got = fetch(&client, &url, &token).await.and_then(|body| {
                answer::parse(&body, &name, &own, mounts, |path| topology.mount_id(path))
                    .map_err(FetchError::from)
            });
            (i, got)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let Ok((i, got)) = done else { continue };
        let Some(state) = r.states.get_mut(i) else {
            continue;
        };
        match got {
            Ok(a) => {
                if state.last_error.is_some() || state.last_fetch.is_none() {
                    tracing::info!(peer = %state.name, "peer answers");
                }
                state.last_error = None;
                state.last_fetch = Some(SystemTime::now());
                state.demand = a.demand.clone();
                r.exchange
                    .fetched(i, Instant::now(), a.demand, a.fetches_us);
            }
            Err(e) => {
                if state.last_error.is_none() {
                    tracing::warn!(peer = %state.name, "peer fetch failed: {e}; its static part is held back while it stays unreachable");
                }
                state.last_error = Some(e.to_string());
            }
        }
    }
    let now = Instant::now();
    let shares = r.exchange.shares(now, mounts);
    let report = report(r, config, published, Some(now));
    engine.set_peers(Some((report, Some(shares))));
}

/// The report, with the links (connected, fetching) as of `now` (`None`:
/// as they were).
fn report(
    r: &mut Running,
    config: &Config,
    published: crate::ids::PerMount<f64>,
    now: Option<Instant>,
) -> PeerReport {
    if let Some(now) = now {
        let connected = r.exchange.connected(now);
        let fetching = r.exchange.fetching(now);
        for ((s, c), f) in r.states.iter_mut().zip(connected).zip(fetching) {
            s.connected = c;
            s.fetching = f;
        }
    }
    PeerReport {
        name: config.peers.name.clone(),
        interval: config.peers.interval,
        static_share: config.select.share,
        paths: r.key.paths.clone(),
        published,
        peers: r.states.clone(),
    }
}

/// GETs `url` with the bearer `token`; the body, at most
/// [`MAX_ANSWER_BYTES`].
async fn fetch(client: &reqwest::Client, url: &str, token: &str) -> Result<Vec<u8>, FetchError> {
    let mut resp = client.get(url).bearer_auth(token).send().await?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(FetchError::Status(resp.status().as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(AnswerError::TooLong.into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
