//! Slowing down whoever guesses tokens: failed authentications (an unknown, revoked or expired
//! API token; a wrong token at sign-in) are counted per client address, and after
//! [`FAILURES_ALLOWED`] in a [`WINDOW`] every further attempt from that address is refused
//! (429 with `Retry-After`) until the oldest failure leaves the window. Per daemon, in memory:
//! a guesser spread over several daemons is slowed by each.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed authentications an address may make in a [`WINDOW`].
pub const FAILURES_ALLOWED: usize = 10;
/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered before the ones with no failure in the window are forgotten.
const ADDRESSES_KEPT: usize = 4096;

/// Failed authentications per client address.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl Throttle {
    /// Whether `address` may try to authenticate now; otherwise how long until it may.
    pub fn check(&self, address: IpAddr) -> Result<(), Duration> {
        self.check_at(address, Instant::now())
    }

    /// Counts a failed authentication from `address`.
    pub fn failed(&self, address: IpAddr) {
        self.failed_at(address, Instant::now());
    }

    fn check_at(&self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut failures = self.failures.lock().expect("no panic holding the map");
        let Some(times) = failures.get_mut(&address) else {
            return Ok(());
        };
        forget_before(times, now);
        match times.len() >= FAILURES_ALLOWED {
            false => Ok(()),
            true => Err(times
                .front()
                .map_or(WINDOW, |oldest| WINDOW.saturating_sub(now - *oldest))),
        }
    }

    fn failed_at(&self, address: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().expect("no panic holding the map");
        if failures.len() >= ADDRESSES_KEPT {
            failures.retain(|_, times| {
                forget_before(times, now);
                !times.is_empty()
            });
        }
        failures.entry(address).or_default().push_back(now);
    }
}

/// Drops the failures that left the window.
fn forget_before(times: &mut VecDeque<Instant>, now: Instant) {
    while times.front().is_some_and(|at| now - *at >= WINDOW) {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_failures_until_the_oldest_leaves_the_window() {
        let throttle = Throttle::default();
        let (guesser, other) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let start = Instant::now();
        for n in 0..FAILURES_ALLOWED {
            let at = start + Duration::from_secs(n as u64);
            assert!(throttle.check_at(guesser, at).is_ok(), "attempt {n}");
            throttle.failed_at(guesser, at);
        }
        let later = start + Duration::from_secs(20);
        assert_eq!(
            throttle.check_at(guesser, later),
            Err(Duration::from_secs(40))
        );
        assert!(throttle.check_at(other, later).is_ok(), "others go on");
        // Once the first failure is a minute old, one more attempt is allowed.
        assert!(throttle.check_at(guesser, start + WINDOW).is_ok());
    }
}
