//! Exponential back-off with jitter, written once for every loop that tries again after a
//! failure: a failed run and a failing blueprint (`worker`), a store that fails the dispatcher
//! (`daemon`), a database not reachable yet (`serve`), a lost PostgreSQL listener, a busy
//! SQLite lock or file.

use rand::RngExt;
use std::time::Duration;

/// Delays that double from `first` up to `cap`, each scattered by ±25 % so that what failed
/// together does not try again together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure.
    pub first: Duration,
    /// The longest delay.
    pub cap: Duration,
}

impl Backoff {
    /// Delays from `first`, doubling, to at most `cap`.
    pub const fn new(first: Duration, cap: Duration) -> Self {
        Backoff { first, cap }
    }

    /// The delay before trying again after the `failures`th failure in a row (1 for the
    /// first).
    pub fn delay(&self, failures: u32) -> Duration {
        self.base(failures)
            .mul_f64(rand::rng().random_range(0.75..1.25))
    }

    /// The delay before jitter.
    fn base(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1));
        self.first.saturating_mul(factor).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let bases: Vec<u64> = (1..=8).map(|a| backoff.base(a).as_secs()).collect();
        assert_eq!(bases, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff.base(u32::MAX), Duration::from_secs(60));
        assert_eq!(
            backoff.base(0),
            Duration::from_secs(1),
            "no failure yet: the first"
        );
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let backoff = Backoff::new(Duration::from_secs(4), Duration::from_secs(60));
        for _ in 0..200 {
            let delay = backoff.delay(1);
            assert!(
                delay >= Duration::from_secs(3) && delay <= Duration::from_secs(5),
                "{delay:?}"
            );
        }
    }
}
