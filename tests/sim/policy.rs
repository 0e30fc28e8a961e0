//! The balancers compared, behind one trait: blind DNS round robin, the
//! classic redirector, and floe ([`super::floe`]) as one instance or
//! several.

use super::Time;
use super::world::World;
use rand::Rng;
use rand::rngs::SmallRng;

/// Where a balancer sends one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To relay `r`.
    Relay(usize),
    /// Nowhere: the balancer refused (HTTP 503 / no DNS answer).
    Refused,
    /// Not yet: floe holds the request while the relays with room are
    /// quiet (`routes::respond_waiting`); the listener asks again at this
    /// time, as the same attempt.
    Wait(Time),
}

/// A balancer in the simulation: it sees the relays only through its own
/// polls, at instants it chooses.
pub trait Balancer {
    /// The row's label.
    fn name(&self) -> String;
    /// When it next wants to run (a poll, a sample, a snapshot build).
    fn next_wakeup(&self) -> Option<Time>;
    /// Runs what was due at `now` (reading the relays as they are now).
    fn wake(&mut self, now: Time, world: &World);
    /// Routes one listener of `mount`, who asks instance `instance_draw`
    /// maps to (a uniform draw in [0, 1)) and whose request has been held
    /// for `held` (see [`Route::Wait`]).
    fn route(&mut self, now: Time, mount: usize, instance_draw: f64, held: Time) -> Route;
}

/// Per-relay poll times: every `interval` jittered by up to `jitter`, the
/// first within the first `interval`.
#[derive(Debug, Clone)]
pub struct PollClock {
    /// Next poll per relay.
    pub next: Vec<Time>,
    interval: Time,
    jitter: f64,
}

impl PollClock {
    /// `relays` clocks polling every `interval` (shortened or lengthened
    /// by up to `jitter` x interval), the first polls spread at random over
    /// `first_within`.
    pub fn new(
        relays: usize,
        interval: Time,
        jitter: f64,
        first_within: Time,
        rng: &mut SmallRng,
    ) -> PollClock {
        PollClock {
            next: (0..relays)
                .map(|_| rng.random_range(0..first_within))
                .collect(),
            interval,
            jitter,
        }
    }

    /// The relay due first, and when.
    pub fn due(&self) -> Option<(usize, Time)> {
        self.next
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|&(_, t)| t)
    }

    /// Relay `r` was polled at `at`: schedules its next poll.
    pub fn polled(&mut self, r: usize, at: Time, rng: &mut SmallRng) {
        let f = if self.jitter > 0.0 {
            rng.random_range(-self.jitter..=self.jitter)
        } else {
            0.0
        };
        self.next[r] = at + (self.interval as f64 * (1.0 + f)) as Time;
    }
}

/// Blind DNS round robin over every relay (the 2009 setup): resolvers
/// hand out the relays in turn, whatever their state, room or mounts.
pub struct RoundRobin {
    relays: usize,
    rng: SmallRng,
}

impl RoundRobin {
    /// Over `relays` relays.
    pub fn new(relays: usize, rng: SmallRng) -> Self {
        RoundRobin { relays, rng }
    }
}

impl Balancer for RoundRobin {
    fn name(&self) -> String {
        "DNS round robin".into()
    }
    fn next_wakeup(&self) -> Option<Time> {
        None
    }
    fn wake(&mut self, _: Time, _: &World) {}
    fn route(&mut self, _: Time, _: usize, _: f64, _: Time) -> Route {
        // Many resolvers, each rotating its own copy of the record set: to
        // one listener, a uniform draw.
        Route::Relay(self.rng.random_range(0..self.relays))
    }
}

/// The classic redirector: polls every relay each interval and sends a
/// listener to a random relay that had free slots for the mount at its last
/// poll, with no account of listeners sent since.
pub struct Classic {
    clock: PollClock,
    /// Per relay, per mount: free slots at the last poll (0 = none or
    /// mount missing or relay down).
    free: Vec<Vec<u64>>,
    /// Icecast's limit per relay (the redirector reads it from the status).
    slots: Vec<u32>,
    paths: Vec<&'static str>,
    rng: SmallRng,
}

impl Classic {
    /// Over the scenario's relays, polling every `interval`.
    pub fn new(
        slots: Vec<u32>,
        paths: Vec<&'static str>,
        interval: Time,
        mut rng: SmallRng,
    ) -> Self {
        Classic {
            clock: PollClock::new(slots.len(), interval, 0.1, interval, &mut rng),
            free: vec![vec![0; paths.len()]; slots.len()],
            slots,
            paths,
            rng,
        }
    }
}

impl Balancer for Classic {
    fn name(&self) -> String {
        "classic redirector".into()
    }
    fn next_wakeup(&self) -> Option<Time> {
        self.clock.due().map(|(_, t)| t)
    }
    fn wake(&mut self, now: Time, world: &World) {
        while let Some((r, t)) = self.clock.due().filter(|&(_, t)| t <= now) {
            let total = world.total(r);
            let relay = &world.relays[r];
            for m in 0..self.paths.len() {
                self.free[r][m] = if relay.up && relay.source[m] {
                    u64::from(self.slots[r].saturating_sub(total))
                } else {
                    0
                };
            }
            self.clock.polled(r, t, &mut self.rng);
        }
    }
    fn route(&mut self, _: Time, mount: usize, _: f64, _: Time) -> Route {
        let with_room: Vec<usize> = (0..self.free.len())
            .filter(|&r| self.free[r][mount] > 0)
            .collect();
        if with_room.is_empty() {
            return Route::Refused;
        }
        Route::Relay(with_room[self.rng.random_range(0..with_room.len())])
    }
}
