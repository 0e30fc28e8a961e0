//! A real-process load test at scale (issue #12, section 3): the real
//! `floe serve` in front of a farm of simulated Icecast relays whose
//! listener counts follow the redirects floe hands out.
//!
//! `cargo bench --bench relay_farm -- [RELAYS=200] [LISTENERS=20000] [RAMP_SECONDS=60]`
//!
//! - The relays are `SimRelay`s (real HTTP servers on loopback answering
//!   floe's `xslt` status polls), each with one mount `/live.ogg` and a
//!   listener limit drawn from 40 to 160 (about as many slots as
//!   listeners).
//! - Listeners arrive over the ramp (most in its first third), each with a
//!   real HTTP request to floe on a new connection (`Connection: close`, as
//!   players do). A `302` names a relay: the listener arrives there 100 to
//!   450 ms later (it is counted by the relay's status from then on) and
//!   stays 30 to 240 s; a refused (`503`) listener tries again 3 to 10 s
//!   later, up to 5 times.
//! - Halfway through the ramp one relay is killed: its listeners come back
//!   through floe 1 to 3 s later.
//! - floe runs with its defaults (polls every 2 s, settle 500 ms, rise and
//!   fall 2).
//!
//! It prints the overfill (listeners arriving at a relay already at its
//! limit: must be 0), listeners sent to the dead relay, refusals (`503`,
//! with the farm's mean free slots at those moments; `429` from the
//! per-client budget, retried like a `503`), floe's CPU (percent of one
//! core over the run, from /proc) and peak RSS, and the redirect latency
//! percentiles. It exits 1 on overfill or on any answer other than 302,
//! 503 and 429.

#[path = "../support/mod.rs"]
mod support;

use floe::demo::sim::SimRelay;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::TestConfig;
use support::floe::FloeProcess;

const MOUNT: &str = "/live.ogg";

/// What happened to the listeners.
#[derive(Default)]
struct Counts {
    redirected: AtomicU64,
    refused: AtomicU64,
    /// Free slots in the farm summed over the refusals (their mean tells
    /// how much room was left, mostly slots freed since the last poll).
    free_at_refusals: AtomicU64,
    over_budget: AtomicU64,
    other_answers: AtomicU64,
    failed_requests: AtomicU64,
    arrived: AtomicU64,
    overfill: AtomicU64,
    sent_dead: AtomicU64,
    gave_up: AtomicU64,
}

/// The farm: relays by port, and which are dead.
struct Farm {
    relays: Vec<SimRelay>,
    limits: Vec<u32>,
    by_port: HashMap<u16, usize>,
    dead: Mutex<Vec<bool>>,
}

impl Farm {
    fn free_slots(&self) -> u64 {
        let dead = self.dead.lock().unwrap();
        (0..self.relays.len())
            .filter(|&r| !dead[r])
            .map(|r| u64::from(self.limits[r].saturating_sub(self.relays[r].listeners(MOUNT))))
            .sum()
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .map(|a| a.parse().expect("numbers: RELAYS LISTENERS RAMP_SECONDS"))
        .collect();
    let relays_n = args.first().copied().unwrap_or(200) as usize;
    let listeners_n = args.get(1).copied().unwrap_or(20_000);
    let ramp = Duration::from_secs(args.get(2).copied().unwrap_or(60));
    raise_fd_limit();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut rng = SmallRng::seed_from_u64(12);
    let limits: Vec<u32> = (0..relays_n).map(|_| rng.random_range(40..=160)).collect();
    let relays: Vec<SimRelay> = (0..relays_n)
        .map(|i| {
            SimRelay::builder(format!("farm-{i:03}"))
                .mount(MOUNT, Some(limits[i]))
                .start()
                .expect("sim relay")
        })
        .collect();
    let mut config = TestConfig::new()
        .set("poll", "interval", "\"2s\"")
        .set("poll", "timeout", "\"1s\"")
        .set("poll", "rise", "2")
        .set("poll", "fall", "2")
        .set("http", "max_connections", "20000")
        .without_stream_dns();
    for r in &relays {
        config = config.relay(r, "");
    }
    let floe = FloeProcess::start(&config.render());
    floe.wait_relays_up(Duration::from_secs(30));
    let slots: u64 = limits.iter().map(|&l| u64::from(l)).sum();
    println!(
        "{relays_n} relays with {slots} slots, {listeners_n} listeners over {} s; floe pid {}",
        ramp.as_secs(),
        floe.pid()
    );
    let farm = Arc::new(Farm {
        by_port: relays
            .iter()
            .enumerate()
            .map(|(i, r)| (r.addr().port(), i))
            .collect(),
        relays,
        limits,
        dead: Mutex::new(vec![false; relays_n]),
    });
    let counts = Arc::new(Counts::default());
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(listeners_n as usize * 2)));
    // Listeners come from 1,024 addresses (127.2.x.y): from one, floe's
    // per-client budget would refuse most of them (429), as it should.
    let clients: Vec<reqwest::Client> = (0..1024u32)
        .map(|i| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(10))
                .local_address(std::net::IpAddr::from([
                    127,
                    2,
                    (i >> 8) as u8,
                    (i & 0xff) as u8 + 1,
                ]))
                .build()
                .unwrap()
        })
        .collect();
    let crowd = Crowd {
        clients: Arc::new(clients),
        url: floe.url(MOUNT),
        farm: farm.clone(),
        counts: counts.clone(),
        latencies: latencies.clone(),
    };
    let cpu_before = cpu_ticks(floe.pid());
    let started = Instant::now();

    // The kill, halfway through the ramp.
    {
        let (farm, crowd) = (farm.clone(), crowd.clone());
        rt.spawn(async move {
            tokio::time::sleep(ramp / 2).await;
            let victim = farm
                .limits
                .iter()
                .enumerate()
                .max_by_key(|&(_, l)| *l)
                .map(|(i, _)| i)
                .unwrap();
            let had = farm.relays[victim].listeners(MOUNT);
            farm.dead.lock().unwrap()[victim] = true;
            farm.relays[victim].set_down(true).unwrap();
            println!(
                "killed {} with {had} listeners at {:.1} s",
                farm.relays[victim].name(),
                started.elapsed().as_secs_f64()
            );
            let mut rng = SmallRng::seed_from_u64(99);
            for _ in 0..had {
                let back = Duration::from_millis(rng.random_range(1000..3000));
                let l = crowd.listener(&mut rng);
                tokio::spawn(async move {
                    tokio::time::sleep(back).await;
                    l.run().await;
                });
            }
        });
    }
    // The arrivals: the density falls linearly to zero at the end of the
    // ramp (most arrive early).
    let mut arrivals: Vec<Duration> = (0..listeners_n)
        .map(|_| {
            let (a, b): (f64, f64) = (rng.random(), rng.random());
            ramp.mul_f64(a.min(b))
        })
        .collect();
    arrivals.sort();
    let mut tasks = Vec::with_capacity(arrivals.len());
    for at in arrivals {
        let l = crowd.listener(&mut rng);
        tasks.push(rt.spawn(async move {
            tokio::time::sleep_until((started + at).into()).await;
            l.run().await;
        }));
    }
    rt.block_on(async {
        for t in tasks {
            let _ = t.await;
        }
        // The killed relay's listeners, back within 3 s and their retries.
        tokio::time::sleep(Duration::from_secs(3)).await;
    });
    let elapsed = started.elapsed();
    let cpu = cpu_ticks(floe.pid()) - cpu_before;
    let hz = 100.0;
    let hwm = peak_rss_mib(floe.pid());
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let c = &*counts;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "redirected {} refused {} (free slots at those moments: {:.1} on average, of {slots}) \
         over budget (429) {} other answers {} failed requests {}",
        get(&c.redirected),
        get(&c.refused),
        get(&c.free_at_refusals) as f64 / get(&c.refused).max(1) as f64,
        get(&c.over_budget),
        get(&c.other_answers),
        get(&c.failed_requests)
    );
    println!(
        "arrived {} overfill {} sent to the dead relay {} gave up {}; listening at the end {}",
        get(&c.arrived),
        get(&c.overfill),
        get(&c.sent_dead),
        get(&c.gave_up),
        farm.relays
            .iter()
            .map(|r| u64::from(r.listeners(MOUNT)))
            .sum::<u64>()
    );
    println!(
        "floe: CPU {:.1} % of one core over {:.0} s ({:.1} µs per redirect request), peak RSS {hwm:.1} MiB",
        100.0 * cpu as f64 / hz / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        1e6 * cpu as f64 / hz / (get(&c.redirected) + get(&c.refused)).max(1) as f64
    );
    println!(
        "redirect latency: p50 {:?} p99 {:?} p99.9 {:?} max {:?} ({} requests)",
        pct(0.5),
        pct(0.99),
        pct(0.999),
        lat.last().copied().unwrap_or_default(),
        lat.len()
    );
    drop(floe);
    if get(&c.overfill) > 0 || get(&c.other_answers) > 0 || get(&c.failed_requests) > 0 {
        eprintln!(
            "FAILED: overfill {}, unexpected answers {}, failed requests {}",
            get(&c.overfill),
            get(&c.other_answers),
            get(&c.failed_requests)
        );
        std::process::exit(1);
    }
}

/// What every listener shares: the clients (one per source address),
/// floe's URL, the farm and the tallies.
#[derive(Clone)]
struct Crowd {
    clients: Arc<Vec<reqwest::Client>>,
    url: String,
    farm: Arc<Farm>,
    counts: Arc<Counts>,
    latencies: Arc<Mutex<Vec<Duration>>>,
}

impl Crowd {
    /// A new listener: a source address, a stay of 30 to 240 s, a seed.
    fn listener(&self, rng: &mut SmallRng) -> Listener {
        let seed: u64 = rng.random();
        Listener {
            client: self.clients[(seed % self.clients.len() as u64) as usize].clone(),
            url: self.url.clone(),
            farm: self.farm.clone(),
            counts: self.counts.clone(),
            latencies: self.latencies.clone(),
            stay: Duration::from_secs(rng.random_range(30..240)),
            seed,
        }
    }
}

/// One listener: asks floe until it gets a relay (at most 5 tries), arrives
/// there, stays, leaves.
struct Listener {
    client: reqwest::Client,
    url: String,
    farm: Arc<Farm>,
    counts: Arc<Counts>,
    latencies: Arc<Mutex<Vec<Duration>>>,
    stay: Duration,
    seed: u64,
}

impl Listener {
    async fn run(self) {
        let mut rng = SmallRng::seed_from_u64(self.seed);
        let c = &*self.counts;
        for _attempt in 0..5 {
            let t = Instant::now();
            let resp = self
                .client
                .get(&self.url)
                .header("connection", "close")
                .send()
                .await;
            let took = t.elapsed();
            let resp = match resp {
                Ok(resp) => resp,
                Err(e) => {
                    if c.failed_requests.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("request failed: {e:?}");
                    }
                    return;
                }
            };
            self.latencies.lock().unwrap().push(took);
            match resp.status().as_u16() {
                302 => {
                    c.redirected.fetch_add(1, Ordering::Relaxed);
                    let port = resp
                        .headers()
                        .get("location")
                        .and_then(|l| l.to_str().ok())
                        .and_then(|l| reqwest::Url::parse(l).ok())
                        .and_then(|u| u.port());
                    let Some(&r) = port.and_then(|p| self.farm.by_port.get(&p)) else {
                        c.other_answers.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    tokio::time::sleep(Duration::from_millis(rng.random_range(100..450))).await;
                    let relay = &self.farm.relays[r];
                    if self.farm.dead.lock().unwrap()[r] {
                        c.sent_dead.fetch_add(1, Ordering::Relaxed);
                    } else if relay.listeners(MOUNT) >= self.farm.limits[r] {
                        c.overfill.fetch_add(1, Ordering::Relaxed);
                    } else {
                        relay.add_fake_listeners(MOUNT, 1);
                        c.arrived.fetch_add(1, Ordering::Relaxed);
                        // It stays on its own; the run does not wait for it.
                        let (farm, stay) = (self.farm.clone(), self.stay);
                        tokio::spawn(async move {
                            tokio::time::sleep(stay).await;
                            if !farm.dead.lock().unwrap()[r] {
                                farm.relays[r].remove_fake_listeners(MOUNT, 1);
                            }
                        });
                        return;
                    }
                }
                503 => {
                    c.refused.fetch_add(1, Ordering::Relaxed);
                    c.free_at_refusals
                        .fetch_add(self.farm.free_slots(), Ordering::Relaxed);
                }
                // The per-client budget (1,024 addresses, scarce room):
                // a player retries as after a 503.
                429 => {
                    c.over_budget.fetch_add(1, Ordering::Relaxed);
                }
                status => {
                    if c.other_answers.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("unexpected answer {status}");
                    }
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(3000..10_000))).await;
        }
        c.gave_up.fetch_add(1, Ordering::Relaxed);
    }
}

/// utime + stime of `pid` in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, s)| s);
    let f: Vec<&str> = after.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// VmHWM of `pid` in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Raises the soft open-files limit to the hard one (the farm, the client
/// and floe hold tens of thousands of sockets).
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit take a pointer to a local struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}
