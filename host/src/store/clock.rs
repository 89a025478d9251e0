//! Where the store's time comes from, in two time bases.
//!
//! - **Wall time** ([`Clock::now`], milliseconds since the Unix epoch) is what people mean by a
//!   deadline: `until`, a yield's wake-up, log times.
//! - **Claim time** ([`Clock::claim_time`]) decides when a worker's claim expires. It must not
//!   step: a wall clock set forward by a minute would hand a live claim to a second worker, and
//!   two runs of one object would overlap. On one host (SQLite's case) it is `CLOCK_BOOTTIME`,
//!   which every process on the host shares and which never steps, tagged with the boot's id:
//!   a claim from an earlier boot has expired, whatever its number says.
//!
//! Tests inject a [`ManualClock`] (both bases move only when told) or a [`ShiftedClock`] (the
//! system clock with its wall time stepped).

pub use drydock_runtime::exec::boottime_ms;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A point in the claim time base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimTime {
    /// Which boot of the host the milliseconds count from.
    pub boot: String,
    /// Milliseconds on the boot clock.
    pub ms: i64,
}

/// Where time comes from, so tests can control it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Wall time: milliseconds since the Unix epoch.
    fn now(&self) -> i64;
    /// Claim time: a clock that never steps, shared by every process that shares the store.
    fn claim_time(&self) -> ClaimTime;
}

/// The system's clocks.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        since.as_millis() as i64
    }

    fn claim_time(&self) -> ClaimTime {
        ClaimTime {
            boot: boot_id().to_string(),
            ms: boottime_ms(),
        }
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`), read once.
pub fn boot_id() -> &'static str {
    static BOOT: OnceLock<String> = OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|id| id.trim().to_string())
            .unwrap_or_else(|_| "unknown-boot".into())
    })
}

/// A clock whose two bases only move when told to.
#[derive(Debug)]
pub struct ManualClock {
    wall: AtomicI64,
    claim: AtomicI64,
}

impl ManualClock {
    /// A clock reading `start` (wall) and zero (claim time).
    pub fn new(start: i64) -> Arc<Self> {
        Arc::new(ManualClock {
            wall: AtomicI64::new(start),
            claim: AtomicI64::new(0),
        })
    }

    /// Time passes: both bases move forward.
    pub fn advance(&self, by: Duration) {
        let ms = by.as_millis() as i64;
        self.wall.fetch_add(ms, Ordering::SeqCst);
        self.claim.fetch_add(ms, Ordering::SeqCst);
    }

    /// The wall clock is set (forward or back) without time passing.
    pub fn step_wall(&self, by_ms: i64) {
        self.wall.fetch_add(by_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.wall.load(Ordering::SeqCst)
    }

    fn claim_time(&self) -> ClaimTime {
        ClaimTime {
            boot: "manual".into(),
            ms: self.claim.load(Ordering::SeqCst),
        }
    }
}

/// The system clock with its wall time shifted by an adjustable offset: a host whose clock was
/// stepped, for tests.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset_ms: AtomicI64,
}

impl ShiftedClock {
    /// The system clock, stepped by `offset_ms`.
    pub fn new(offset_ms: i64) -> Arc<Self> {
        Arc::new(ShiftedClock {
            offset_ms: AtomicI64::new(offset_ms),
        })
    }

    /// Steps the wall clock again.
    pub fn step(&self, by_ms: i64) {
        self.offset_ms.fetch_add(by_ms, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> i64 {
        SystemClock.now() + self.offset_ms.load(Ordering::SeqCst)
    }

    fn claim_time(&self) -> ClaimTime {
        SystemClock.claim_time()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_clock_moves_forward_and_the_boot_has_an_id() {
        let a = boottime_ms();
        std::thread::sleep(Duration::from_millis(5));
        assert!(boottime_ms() >= a + 5);
        assert!(!boot_id().is_empty());
    }

    #[test]
    fn a_wall_step_leaves_claim_time_alone() {
        let clock = ManualClock::new(1000);
        clock.step_wall(60_000);
        assert_eq!((clock.now(), clock.claim_time().ms), (61_000, 0));
        clock.advance(Duration::from_secs(1));
        assert_eq!((clock.now(), clock.claim_time().ms), (62_000, 1000));
        let shifted = ShiftedClock::new(60_000);
        assert!(shifted.now() - SystemClock.now() >= 59_000);
        assert_eq!(shifted.claim_time().boot, SystemClock.claim_time().boot);
    }
}
