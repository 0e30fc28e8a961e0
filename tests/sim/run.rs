//! The event loop: the scenario's listeners ask one balancer, follow its
//! answer like players do, and the relays' truth ([`World`]) says what
//! happened. Everything is counted in a [`Tally`].

use super::Time;
use super::policy::{Balancer, Route};
use super::scenario::{Players, Scenario};
use super::world::{Refusal, World};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What happened to the listeners under one balancer.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// The balancer's label.
    pub name: String,
    /// Listeners who played at least once.
    pub admitted: u64,
    /// Listeners in the scenario.
    pub listeners: u64,
    /// Requests the balancer answered (first tries, retries, reconnects).
    pub asked: u64,
    /// Refusals while relays that could take the listener had had room
    /// for [`SEEN_WINDOW`] (room net of listeners on their way there):
    /// room a balancer polling every 2 s could have seen.
    pub refused_while_free: u64,
    /// Refusals with no room anywhere (correct ones).
    pub refused_full: u64,
    /// Listeners sent to a relay with no room left (Icecast's 403, or let
    /// in past what the uplink carries).
    pub overfill: u64,
    /// Listeners sent to a relay that was down or lacked the mount.
    pub sent_dead: u64,
    /// The latest a listener was sent to a dead relay after it died, or to
    /// a relay after its source left (seconds).
    pub dead_for: f64,
    /// Listeners who gave up after every attempt was refused.
    pub gave_up: u64,
    /// Times floe held a request because the relays with room were quiet
    /// (each recheck counts), and the longest a request was held (s).
    pub waited: u64,
    pub longest_wait: f64,
    /// Highest share of the up relays' slots in use.
    pub peak_utilisation: f64,
    /// Per sample: time (s), listeners per relay, cumulative overfill,
    /// cumulative refusals while room was free.
    pub series: Vec<Sample>,
}

/// One point of the tally's time series.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Seconds since the start.
    pub at: f64,
    /// Listeners per relay.
    pub per_relay: Vec<u32>,
    /// Overfill so far.
    pub overfill: u64,
    /// Refusals while room was free so far.
    pub refused_while_free: u64,
}

/// How long room must have been free for a refusal to count as "refused
/// while room was free": a poll interval (2 s) plus `settle` (0.5 s).
pub const SEEN_WINDOW: Time = super::millis(2_500);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// Listener asks the balancer (attempt n of this try).
    Ask { l: usize, attempt: u32 },
    /// Listener's player reaches relay `r`.
    Connect { l: usize, r: usize, attempt: u32 },
    /// Listener stops listening (if still on the relay of session `token`).
    Leave { l: usize, token: u32 },
    /// A relay dies.
    Down { r: usize },
    /// A relay answers again.
    Up { r: usize },
    /// A mount's source leaves a relay.
    SourceLoss { r: usize, m: usize },
    /// The tally samples.
    Sample,
}

/// The events to come, in time order (ties in the order pushed).
#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<(Time, u64, Event)>>,
    pushed: u64,
}

impl Queue {
    fn push(&mut self, at: Time, event: Event) {
        self.pushed += 1;
        self.heap.push(Reverse((at, self.pushed, event)));
    }
}

/// A refused player tries again a retry delay later, or gives up after
/// its last attempt.
fn retry(
    queue: &mut Queue,
    tally: &mut Tally,
    listener: &mut Listener,
    players: Players,
    l: usize,
    attempt: u32,
    now: Time,
) {
    if attempt < players.attempts {
        let (lo, hi) = players.retry_delay;
        let at = now + listener.rng.random_range(lo..=hi);
        queue.push(
            at,
            Event::Ask {
                l,
                attempt: attempt + 1,
            },
        );
    } else {
        tally.gave_up += 1;
    }
}

struct Listener {
    rng: SmallRng,
    /// Relay and session token while playing.
    on: Option<(usize, u32)>,
    token: u32,
    /// The slot it took when redirected (see [`World::redirected`]).
    held: Option<Time>,
    /// When it stops listening for good (set on first play).
    ends: Option<Time>,
    /// Since when floe has held its request (quiet relays).
    held_since: Option<Time>,
    played: bool,
}

/// Runs `scenario` against `balancer` and tallies what happened.
pub fn run(scenario: &Scenario, balancer: &mut dyn Balancer) -> Tally {
    let mut world = World::new(scenario);
    let mut tally = Tally {
        name: balancer.name(),
        listeners: scenario.listeners.len() as u64,
        ..Tally::default()
    };
    let mut queue = Queue::default();
    let mut listeners: Vec<Listener> = scenario
        .listeners
        .iter()
        .map(|s| Listener {
            rng: SmallRng::seed_from_u64(s.seed),
            on: None,
            token: 0,
            held: None,
            ends: None,
            held_since: None,
            played: false,
        })
        .collect();
    for (l, s) in scenario.listeners.iter().enumerate() {
        queue.push(s.arrives, Event::Ask { l, attempt: 1 });
    }
    for o in &scenario.outages {
        queue.push(o.at, Event::Down { r: o.relay });
        queue.push(o.until, Event::Up { r: o.relay });
    }
    for s in &scenario.source_losses {
        queue.push(
            s.at,
            Event::SourceLoss {
                r: s.relay,
                m: s.mount,
            },
        );
    }
    queue.push(0, Event::Sample);
    // When each relay died, and when each (relay, mount) lost its source.
    let mut died: Vec<Option<Time>> = vec![None; scenario.relays.len()];
    let mut lost: Vec<Vec<Option<Time>>> =
        vec![vec![None; scenario.mounts.len()]; scenario.relays.len()];
    let players = scenario.players;
    let draw = |rng: &mut SmallRng, (lo, hi): (Time, Time)| rng.random_range(lo..=hi);

    loop {
        let next_event = queue.heap.peek().map(|Reverse((t, _, _))| *t);
        let Some(t_event) = next_event.filter(|t| *t <= scenario.duration) else {
            break;
        };
        if let Some(t) = balancer.next_wakeup().filter(|t| *t <= t_event) {
            balancer.wake(t, &world);
            continue;
        }
        let Some(Reverse((now, _, event))) = queue.heap.pop() else {
            break;
        };
        match event {
            Event::Ask { l, attempt } => {
                tally.asked += 1;
                let spec = &scenario.listeners[l];
                let listener = &mut listeners[l];
                let held = listener.held_since.map_or(0, |since| now - since);
                let route = balancer.route(now, spec.mount, spec.instance_draw, held);
                if !matches!(route, Route::Wait(_))
                    && let Some(since) = listener.held_since.take()
                {
                    tally.longest_wait = tally.longest_wait.max(secs_f64(now - since));
                }
                match route {
                    Route::Refused => {
                        if world.free_since(spec.mount, now.saturating_sub(SEEN_WINDOW)) {
                            tally.refused_while_free += 1;
                        } else {
                            tally.refused_full += 1;
                        }
                        retry(&mut queue, &mut tally, listener, players, l, attempt, now);
                    }
                    Route::Wait(at) => {
                        // Held, not answered: asked again at `at`.
                        tally.asked -= 1;
                        tally.waited += 1;
                        listener.held_since.get_or_insert(now);
                        queue.push(at, Event::Ask { l, attempt });
                    }
                    Route::Relay(r) => {
                        if listener.rng.random::<f64>() >= players.no_show {
                            listener.held = world.redirected(r);
                            let at = now + draw(&mut listener.rng, players.connect_delay);
                            queue.push(at, Event::Connect { l, r, attempt });
                        }
                    }
                }
            }
            Event::Connect { l, r, attempt } => {
                let spec = &scenario.listeners[l];
                let listener = &mut listeners[l];
                match world.connect(r, spec.mount, listener.held.take()) {
                    Ok(carried) => {
                        if !carried {
                            tally.overfill += 1;
                        }
                        if !listener.played {
                            listener.played = true;
                            tally.admitted += 1;
                        }
                        let ends = *listener.ends.get_or_insert(now + spec.stays);
                        listener.token += 1;
                        listener.on = Some((r, listener.token));
                        queue.push(
                            ends.max(now),
                            Event::Leave {
                                l,
                                token: listener.token,
                            },
                        );
                    }
                    Err(refusal) => {
                        match refusal {
                            Refusal::Full => tally.overfill += 1,
                            Refusal::Down => {
                                tally.sent_dead += 1;
                                if let Some(d) = died[r] {
                                    tally.dead_for = tally.dead_for.max(secs_f64(now - d));
                                }
                            }
                            Refusal::NoSource => {
                                tally.sent_dead += 1;
                                if let Some(d) = lost[r][spec.mount] {
                                    tally.dead_for = tally.dead_for.max(secs_f64(now - d));
                                }
                            }
                        }
                        retry(&mut queue, &mut tally, listener, players, l, attempt, now);
                    }
                }
            }
            Event::Leave { l, token } => {
                let listener = &mut listeners[l];
                if let Some((r, t)) = listener.on
                    && t == token
                {
                    listener.on = None;
                    world.leave(r, scenario.listeners[l].mount, now);
                }
            }
            Event::Down { r } => {
                died[r] = Some(now);
                drop_listeners(
                    &mut world,
                    &mut listeners,
                    scenario,
                    r,
                    None,
                    |l, at| queue.push(at, Event::Ask { l, attempt: 1 }),
                    now,
                );
                world.down(r);
            }
            Event::Up { r } => {
                died[r] = None;
                world.up(r, now);
            }
            Event::SourceLoss { r, m } => {
                lost[r][m] = Some(now);
                world.relays[r].source[m] = false;
                drop_listeners(
                    &mut world,
                    &mut listeners,
                    scenario,
                    r,
                    Some(m),
                    |l, at| queue.push(at, Event::Ask { l, attempt: 1 }),
                    now,
                );
            }
            Event::Sample => {
                let per_relay: Vec<u32> = (0..world.relays.len()).map(|r| world.total(r)).collect();
                let playing: u64 = per_relay.iter().map(|&n| u64::from(n)).sum();
                let capacity = world.capacity_up();
                if capacity > 0 {
                    tally.peak_utilisation =
                        tally.peak_utilisation.max(playing as f64 / capacity as f64);
                }
                tally.series.push(Sample {
                    at: secs_f64(now),
                    per_relay,
                    overfill: tally.overfill,
                    refused_while_free: tally.refused_while_free,
                });
                queue.push(now + scenario.sample_every, Event::Sample);
            }
        }
    }
    tally
}

/// Drops the listeners on relay `r` (of mount `only`, or all): their players
/// reconnect through the balancer a retry delay later (`reask`).
fn drop_listeners(
    world: &mut World,
    listeners: &mut [Listener],
    scenario: &Scenario,
    r: usize,
    only: Option<usize>,
    mut reask: impl FnMut(usize, Time),
    now: Time,
) {
    for (l, listener) in listeners.iter_mut().enumerate() {
        let mount = scenario.listeners[l].mount;
        if listener.on.is_some_and(|(on, _)| on == r) && only.is_none_or(|m| m == mount) {
            listener.on = None;
            world.leave(r, mount, now);
            let (lo, hi) = scenario.players.retry_delay;
            reask(l, now + listener.rng.random_range(lo..=hi));
        }
    }
}

fn secs_f64(t: Time) -> f64 {
    t as f64 / 1e6
}
