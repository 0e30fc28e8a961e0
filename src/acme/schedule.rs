//! When to order: renewal at a fraction of a certificate's lifetime, and
//! retries after failures with bounded exponential backoff and jitter.
//! Pure: the caller passes the time and the random draw.

use std::time::Duration;

/// What to do about one name now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Order a certificate now.
    Order,
    /// The certificate held is good: order at this time (Unix seconds).
    RenewAt(i64),
}

/// When a certificate valid from `not_before` to `not_after` (Unix
/// seconds) is renewed: after `renew_after` of its lifetime.
pub fn renew_at(not_before: i64, not_after: i64, renew_after: f64) -> i64 {
    let lifetime = (not_after - not_before).max(0) as f64;
    not_before + (lifetime * renew_after) as i64
}

/// What to do at `now` for a name whose certificate (if any) is valid
/// from `not_before` to `not_after`.
pub fn next(held: Option<(i64, i64)>, now: i64, renew_after: f64) -> Next {
    match held {
        Some((not_before, not_after)) if now < not_after => {
            let at = renew_at(not_before, not_after, renew_after);
            if now < at {
                Next::RenewAt(at)
            } else {
                Next::Order
            }
        }
        _ => Next::Order,
    }
}

/// The wait after `failures` failed orders in a row (at least 1):
/// `min` doubled per failure, at most `max`, stretched by up to a quarter
/// by `jitter` (a draw in `[0, 1)`, so that many floes that failed together
/// do not retry together), and never above `max`.
pub fn retry_after(failures: u32, min: Duration, max: Duration, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(32);
    let base = min.saturating_mul(1u32 << doublings.min(31)).min(max);
    base.mul_f64(1.0 + 0.25 * jitter.clamp(0.0, 1.0)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn a_certificate_is_renewed_after_two_thirds_of_its_life() {
        let (nb, na) = (1_000 * DAY, 1_090 * DAY);
        assert_eq!(renew_at(nb, na, 2.0 / 3.0), 1_060 * DAY);
        assert_eq!(
            next(Some((nb, na)), 1_059 * DAY, 2.0 / 3.0),
            Next::RenewAt(1_060 * DAY)
        );
        assert_eq!(next(Some((nb, na)), 1_060 * DAY, 2.0 / 3.0), Next::Order);
        // Expired, or none held: order now.
        assert_eq!(next(Some((nb, na)), 1_091 * DAY, 2.0 / 3.0), Next::Order);
        assert_eq!(next(None, 0, 2.0 / 3.0), Next::Order);
    }

    #[test]
    fn a_short_lived_certificate_is_renewed_within_seconds() {
        // pebble with certificateValidityPeriod = 30: renewed after 20 s.
        assert_eq!(next(Some((100, 130)), 110, 2.0 / 3.0), Next::RenewAt(120));
        assert_eq!(next(Some((100, 130)), 121, 2.0 / 3.0), Next::Order);
    }

    #[test]
    fn retries_back_off_exponentially_within_bounds() {
        let (min, max) = (Duration::from_secs(60), Duration::from_secs(3600));
        assert_eq!(retry_after(1, min, max, 0.0), min);
        assert_eq!(retry_after(2, min, max, 0.0), 2 * min);
        assert_eq!(retry_after(4, min, max, 0.0), 8 * min);
        assert_eq!(retry_after(7, min, max, 0.0), max);
        assert_eq!(retry_after(u32::MAX, min, max, 0.99), max);
        let j = retry_after(1, min, max, 0.99);
        assert!(j > min && j <= min.mul_f64(1.25), "{j:?}");
        // Never below min, never above max, whatever the draw.
        for f in 0..40 {
            for jitter in [0.0, 0.5, 0.999, 7.0, -1.0] {
                let d = retry_after(f, min, max, jitter);
                assert!(d >= min && d <= max, "{f} {jitter} {d:?}");
            }
        }
    }
}
