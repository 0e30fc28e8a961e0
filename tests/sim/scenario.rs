//! What happens at the event, fixed by a seed before any balancer runs:
//! the relays, the listeners (when each arrives, which mount, how long it
//! stays, how late its player connects after a redirect, which floe
//! instance it asks) and the incidents (a relay dies and comes back, a
//! source leaves one mount).

use super::{Time, millis, secs};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// One relay: Icecast's listener limit, and an uplink that may carry fewer.
#[derive(Debug, Clone)]
pub struct RelaySpec {
    /// Name (config and plot).
    pub name: String,
    /// Icecast's limit (`<max-listeners>` of each mount, `<clients>` of the
    /// relay): the relay refuses listeners beyond it.
    pub slots: u32,
    /// Uplink in kbit/s, when it carries fewer listeners than `slots`:
    /// listeners beyond it are let in but the stream stutters for all.
    pub uplink_kbps: Option<u32>,
}

/// One mount of the stream.
#[derive(Debug, Clone)]
pub struct MountSpec {
    /// Path, e.g. `/live.ogg`.
    pub path: &'static str,
    /// Bitrate in kbit/s.
    pub kbps: u32,
    /// Fraction of listeners asking for it.
    pub share: f64,
}

/// One listener's fixed behaviour (the balancer decides the rest).
#[derive(Debug, Clone, Copy)]
pub struct ListenerSpec {
    /// When it first asks.
    pub arrives: Time,
    /// Which mount (index into [`Scenario::mounts`]).
    pub mount: usize,
    /// How long it listens once playing.
    pub stays: Time,
    /// Which balancer instance it asks (a uniform draw in [0, 1), mapped
    /// by the policy's traffic split).
    pub instance_draw: f64,
    /// Per-listener seed for its player's delays and retries.
    pub seed: u64,
}

/// A relay dies at `at` (its listeners drop and come back through the
/// balancer) and answers again at `until`.
#[derive(Debug, Clone, Copy)]
pub struct Outage {
    /// Which relay.
    pub relay: usize,
    /// When it stops answering.
    pub at: Time,
    /// When it answers again (empty).
    pub until: Time,
}

/// The source of mount `mount` on relay `relay` goes away at `at` and stays
/// away: the relay drops that mount's listeners and stops listing it.
#[derive(Debug, Clone, Copy)]
pub struct SourceLoss {
    /// Which relay.
    pub relay: usize,
    /// Which mount.
    pub mount: usize,
    /// When.
    pub at: Time,
}

/// How players behave after a redirect or a refusal.
#[derive(Debug, Clone, Copy)]
pub struct Players {
    /// A redirected player reaches the relay after a delay drawn from this
    /// range (microseconds).
    pub connect_delay: (Time, Time),
    /// Fraction of redirected players that never connect (closed tab).
    pub no_show: f64,
    /// A refused player (balancer 503, relay 403, relay down) tries again
    /// after a delay drawn from this range...
    pub retry_delay: (Time, Time),
    /// ...at most this many times in all.
    pub attempts: u32,
}

/// Everything fixed about one simulated event.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Seed of everything random (floe's draws included).
    pub seed: u64,
    /// The relays.
    pub relays: Vec<RelaySpec>,
    /// The mounts every relay carries.
    pub mounts: Vec<MountSpec>,
    /// The listeners, by arrival time.
    pub listeners: Vec<ListenerSpec>,
    /// Relays that die (and come back).
    pub outages: Vec<Outage>,
    /// Sources that leave a mount on one relay.
    pub source_losses: Vec<SourceLoss>,
    /// Player behaviour.
    pub players: Players,
    /// When the simulation ends.
    pub duration: Time,
    /// How often the tally samples listeners per relay (plot resolution).
    pub sample_every: Time,
}

impl Scenario {
    /// The event of issue #12 at scale `scale` (1.0: 100,000 listeners on 40
    /// relays of 50 to 5,000 slots, 10 minutes; smaller scales shrink
    /// listeners, relays' slots and duration together, for CI).
    pub fn keynote(seed: u64, scale: f64) -> Scenario {
        let mut rng = SmallRng::seed_from_u64(seed);
        // 40 relays: a few small ones (volunteers, 50-200 slots), most
        // mid-size (1,000-2,000), some big (4,000-5,000); a third of the
        // mid-size ones have an uplink that carries fewer listeners than
        // their Icecast limit.
        let mut relays = Vec::new();
        for i in 0..40 {
            let (lo, hi) = match i % 5 {
                0 => (50, 200),
                1..=3 => (1_000, 2_000),
                _ => (4_000, 5_000),
            };
            let slots = ((rng.random_range(lo..=hi) as f64) * scale).max(10.0) as u32;
            let uplink_kbps = (i % 5 == 2 && i % 3 == 0).then(|| slots * 128 * 3 / 4);
            relays.push(RelaySpec {
                name: format!("relay-{:02}", i + 1),
                slots,
                uplink_kbps,
            });
        }
        let mounts = vec![
            MountSpec {
                path: "/live.ogg",
                kbps: 128,
                share: 0.8,
            },
            MountSpec {
                path: "/live.mp3",
                kbps: 128,
                share: 0.2,
            },
        ];
        let duration = ((secs(600) as f64) * scale.max(0.2)) as Time;
        let n = (100_000.0 * scale) as usize;
        let keynote_end = secs(60).min(duration / 4);
        let mut listeners: Vec<ListenerSpec> = (0..n)
            .map(|i| {
                // 85 % arrive in the keynote's first minute, most at its
                // very start (density falling linearly to zero at one
                // minute); the rest churn in over the whole event.
                let arrives = if i % 100 < 85 {
                    let (a, b): (f64, f64) = (rng.random(), rng.random());
                    (a.min(b) * keynote_end as f64) as Time
                } else {
                    rng.random_range(0..duration)
                };
                let mount = usize::from(rng.random::<f64>() >= mounts[0].share);
                // Stays: exponential, mean 20 minutes (scaled).
                let mean = secs(1_200) as f64 * scale.max(0.2);
                let stays = (-(1.0 - rng.random::<f64>()).ln() * mean) as Time;
                ListenerSpec {
                    arrives,
                    mount,
                    stays: stays.max(secs(5)),
                    instance_draw: rng.random(),
                    seed: rng.random(),
                }
            })
            .collect();
        listeners.sort_by_key(|l| l.arrives);
        // A big relay dies a third into the event and comes back at two
        // thirds; a mid-size one loses the mp3 source at half time.
        let outages = vec![Outage {
            relay: 4,
            at: duration / 3,
            until: duration * 2 / 3,
        }];
        let source_losses = vec![SourceLoss {
            relay: 6,
            mount: 1,
            at: duration / 2,
        }];
        Scenario {
            seed,
            relays,
            mounts,
            listeners,
            outages,
            source_losses,
            players: Players {
                connect_delay: (millis(100), millis(450)),
                no_show: 0.01,
                retry_delay: (secs(3), secs(10)),
                attempts: 5,
            },
            duration,
            sample_every: secs(1),
        }
    }

    /// Total Icecast slots.
    pub fn slots(&self) -> u64 {
        self.relays.iter().map(|r| u64::from(r.slots)).sum()
    }
}
