//! The weighted draw: relays with weights kept as running sums, so that
//! a draw in proportion to weight is one binary search.
//!
//! floe's one way of choosing at random among candidates. Redirects draw
//! one relay from a mount's sums ([`crate::select`] keeps one per mount and
//! snapshot); DNS plans draw several distinct relays per variant
//! ([`RunningSums::draw_distinct`]). A leaf module: no I/O, no clock, no
//! knowledge of snapshots; the caller passes the RNG (seeded in tests).

use crate::ids::RelayId;
use rand::Rng;

/// Relays with selection weights kept as running sums.
#[derive(Debug, Default, Clone)]
pub struct RunningSums {
    relays: Vec<RelayId>,
    cumulative: Vec<u64>,
}

impl RunningSums {
    /// Empty, with room for `n` relays.
    pub fn with_capacity(n: usize) -> RunningSums {
        RunningSums {
            relays: Vec::with_capacity(n),
            cumulative: Vec::with_capacity(n),
        }
    }

    /// Adds relay `r` with weight `w` (a relay of weight 0 is never drawn).
    pub fn push(&mut self, r: RelayId, w: u64) {
        let sum = self.total().saturating_add(w);
        self.relays.push(r);
        self.cumulative.push(sum);
    }

    /// The sum of every weight.
    pub fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// How many relays were added.
    pub fn len(&self) -> usize {
        self.relays.len()
    }

    /// True when none was added.
    pub fn is_empty(&self) -> bool {
        self.relays.is_empty()
    }

    /// The relay at position `i` and its weight.
    pub fn entry(&self, i: usize) -> (RelayId, u64) {
        let below = if i == 0 { 0 } else { self.cumulative[i - 1] };
        (self.relays[i], self.cumulative[i] - below)
    }

    /// One relay drawn in proportion to weight, with its weight; `None`
    /// when every weight is 0.
    #[inline]
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<(RelayId, u64)> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let target = rng.random_range(0..total);
        Some(self.entry(self.cumulative.partition_point(|&c| c <= target)))
    }

    /// Draws `n` distinct relays (every one with weight if fewer) into
    /// `out`, each in proportion to weight among those not drawn yet.
    pub fn draw_distinct<R: Rng + ?Sized>(&self, n: usize, rng: &mut R, out: &mut Vec<RelayId>) {
        out.clear();
        let total = self.total();
        let n = n.min(self.relays.len());
        let mut taken = 0u64;
        let mut misses = 0;
        while out.len() < n && taken < total {
            // Mostly free relays: draw over all and redraw on a repeat (the
            // same distribution as drawing over the free ones). When the
            // drawn ones dominate, walk the free ones instead.
            let (r, w) = if taken * 2 <= total && misses < 32 {
                let Some((r, w)) = self.draw(rng) else { break };
                if out.contains(&r) {
                    misses += 1;
                    continue;
                }
                (r, w)
            } else {
                let free = || {
                    (0..self.relays.len())
                        .map(|i| self.entry(i))
                        .filter(|(r, _)| !out.contains(r))
                };
                let Some(drawn) = linear(free, rng) else {
                    break;
                };
                drawn
            };
            taken += w;
            out.push(r);
        }
    }
}

/// One relay drawn in proportion to weight by a pass over `weighted`
/// (relays with their weights, the same sequence on every call), with its
/// weight: for draws among weights that change between calls, where
/// running sums would be stale. `None` when every weight is 0. Two passes,
/// no allocation.
pub fn linear<I, R>(weighted: impl Fn() -> I, rng: &mut R) -> Option<(RelayId, u64)>
where
    I: Iterator<Item = (RelayId, u64)>,
    R: Rng + ?Sized,
{
    let total = weighted().fold(0u64, |t, (_, w)| t.saturating_add(w));
    if total == 0 {
        return None;
    }
    let mut target = rng.random_range(0..total);
    for (r, w) in weighted() {
        if target < w {
            return Some((r, w));
        }
        target -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn sums(weights: &[u64]) -> RunningSums {
        let mut s = RunningSums::default();
        for (i, &w) in weights.iter().enumerate() {
            s.push(RelayId::new(i), w);
        }
        s
    }

    #[test]
    fn draws_follow_weights_and_skip_zero() {
        let s = sums(&[1, 0, 3]);
        let mut rng = SmallRng::seed_from_u64(7);
        let mut hits = [0u32; 3];
        for _ in 0..40_000 {
            let (r, _) = s.draw(&mut rng).expect("weights");
            hits[r.index()] += 1;
        }
        assert_eq!(hits[1], 0);
        let share = f64::from(hits[2]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "{share}");
        assert!(sums(&[0, 0]).draw(&mut rng).is_none());
    }

    #[test]
    fn distinct_draws_take_every_weighted_relay_once() {
        let s = sums(&[5, 0, 1, 1000]);
        let mut rng = SmallRng::seed_from_u64(1);
        let mut out = Vec::new();
        for n in [1, 2, 3, 4, 10] {
            s.draw_distinct(n, &mut rng, &mut out);
            let mut seen = out.clone();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), out.len());
            assert_eq!(out.len(), n.min(3), "{out:?}");
            assert!(!out.contains(&RelayId::new(1)));
        }
    }
}
