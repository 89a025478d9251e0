//! What one blueprint may take of the daemon and the database: limits on how fast and how wide
//! it grows, and quotas on what it writes.
//!
//! - **Growth**: resources made a minute (a token bucket: a burst, then a steady rate), resources
//!   being set up at once, supporting leases its resources have waiting at once, and leases one
//!   owner may have waiting for its type. A fan-out (each resource asking for more of its own
//!   type) meets these in total, not only per resource.
//! - **Quotas** on what its steps write: log bytes a minute and kept, and step-history bytes (the
//!   audit trail of what its calls returned) a minute and kept; kept is what retention has not
//!   pruned yet.
//!
//! Every limit has a default ([`Limit::default_value`], in `docs/ARCHITECTURE.md`); an operator
//! overrides some for one blueprint (`drydock blueprint limit NAME KEY=VALUE…`, [`Change`]). A blueprint
//! stores its overrides alone ([`Limits`]), so a default applies to whatever the operator never
//! set. Within a blueprint, a tenant (an owner, or the blueprint of a resource asking for
//! supporting leases: `crate::scheduler`) that has resources being set up already leaves the
//! last quarter of the setup slots and of the resource bucket to tenants that have none
//! ([`reserve`]), so one user's backlog never blocks another user's first request. Going over
//! a limit breaks nothing: what would grow waits (a resource is not made yet, a
//! step asking for supporting leases is tried again later) or is refused (a log line, a step's
//! body in the audit trail, a lease request), with the reason on the object or in the error, and
//! a count in `/metrics` (`drydock_limit_refusals`).
//!
//! Rates are token buckets in GCRA form ([`Rate`]): one time per bucket. The resource bucket is
//! kept in the blueprint's row, so every daemon on the database draws on the same one (a change
//! of the blueprint's limits fills it again, so that a raised rate takes effect at once); the
//! buckets of the quotas on what it writes are each daemon's own (`crate::quota`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One limit a blueprint has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Limit {
    /// Resources it makes a minute, on average.
    ResourcesPerMinute,
    /// Resources it may make at once after a quiet spell (the bucket's size).
    ResourceBurst,
    /// Its resources being set up (pending) at once.
    SettingUp,
    /// Supporting leases its resources have waiting (pending) at once.
    PendingSupporting,
    /// Leases of its type one owner may have waiting (pending or acquired, not yet active).
    PendingPerOwner,
    /// Bytes of log its steps write a minute, on average (bursts up to a minute's worth).
    LogPerMinute,
    /// Bytes of its steps' log kept.
    LogTotal,
    /// Bytes of its steps the audit trail records a minute, on average (bursts up to a minute's
    /// worth).
    StepHistoryPerMinute,
    /// Bytes of its steps kept in the audit trail.
    StepHistory,
}

impl Limit {
    /// Every limit, in the order they are shown.
    pub const ALL: [Limit; 9] = [
        Limit::ResourcesPerMinute,
        Limit::ResourceBurst,
        Limit::SettingUp,
        Limit::PendingSupporting,
        Limit::PendingPerOwner,
        Limit::LogPerMinute,
        Limit::LogTotal,
        Limit::StepHistoryPerMinute,
        Limit::StepHistory,
    ];

    /// Its name on the command line, in JSON and in metrics (`setting-up`).
    pub fn key(self) -> &'static str {
        match self {
            Limit::ResourcesPerMinute => "resources-per-minute",
            Limit::ResourceBurst => "resource-burst",
            Limit::SettingUp => "setting-up",
            Limit::PendingSupporting => "pending-supporting",
            Limit::PendingPerOwner => "pending-per-owner",
            Limit::LogPerMinute => "log-per-minute",
            Limit::LogTotal => "log-total",
            Limit::StepHistoryPerMinute => "step-history-per-minute",
            Limit::StepHistory => "step-history",
        }
    }

    /// The value a blueprint has unless the operator sets another.
    pub fn default_value(self) -> u64 {
        match self {
            Limit::ResourcesPerMinute => 60,
            Limit::ResourceBurst => 10,
            Limit::SettingUp => 16,
            Limit::PendingSupporting => 64,
            Limit::PendingPerOwner => 1000,
            Limit::LogPerMinute => 1 << 20,
            Limit::LogTotal => 256 << 20,
            Limit::StepHistoryPerMinute => 1 << 20,
            Limit::StepHistory => 256 << 20,
        }
    }

    /// Whether its value is a size in bytes (written `512K`, `2M`), rather than a count.
    pub fn is_size(self) -> bool {
        matches!(
            self,
            Limit::LogPerMinute
                | Limit::LogTotal
                | Limit::StepHistoryPerMinute
                | Limit::StepHistory
        )
    }

    /// A value of this limit as people write it.
    pub fn format(self, value: u64) -> String {
        match self.is_size() {
            true => crate::size::format(value),
            false => value.to_string(),
        }
    }

    /// Reads a value of this limit: a size for sizes, a count otherwise.
    pub fn parse(self, text: &str) -> Result<u64, String> {
        let value = match self.is_size() {
            true => crate::size::parse(text),
            false => text.parse().ok(),
        };
        value.ok_or_else(|| match self.is_size() {
            true => format!("{}={text:?}: not a size, such as 512K or 2M", self.key()),
            false => format!("{}={text:?}: not a whole number", self.key()),
        })
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl std::str::FromStr for Limit {
    type Err = String;

    fn from_str(key: &str) -> Result<Self, Self::Err> {
        Limit::ALL
            .into_iter()
            .find(|l| l.key() == key)
            .ok_or_else(|| {
                let keys: Vec<&str> = Limit::ALL.iter().map(|l| l.key()).collect();
                format!(
                    "no limit is called {key:?}; the limits are {}",
                    keys.join(", ")
                )
            })
    }
}

/// A change an operator makes: a limit set to a value, or back to its default (`None`).
pub type Change = (Limit, Option<u64>);

/// Reads `KEY=VALUE` (`KEY=default` goes back to the default), naming what is wrong.
pub fn parse_change(text: &str) -> Result<Change, String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: write KEY=VALUE, such as setting-up=4"))?;
    let limit: Limit = key.parse()?;
    let value = match value {
        "default" => None,
        value => Some(limit.parse(value)?),
    };
    Ok((limit, value))
}

/// A blueprint's limits: the operator's overrides; every other limit has its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Limits(BTreeMap<Limit, u64>);

impl Limits {
    /// The value of `limit`: the override, or the default.
    pub fn get(&self, limit: Limit) -> u64 {
        self.0
            .get(&limit)
            .copied()
            .unwrap_or_else(|| limit.default_value())
    }

    /// Whether the operator set `limit`.
    pub fn is_set(&self, limit: Limit) -> bool {
        self.0.contains_key(&limit)
    }

    /// Sets `limit` (`Some`), or goes back to its default (`None`).
    pub fn set(&mut self, limit: Limit, value: Option<u64>) {
        match value {
            Some(value) => self.0.insert(limit, value),
            None => self.0.remove(&limit),
        };
    }

    /// The defaults with `changes` (`setting-up=4`) applied, or what is wrong with one.
    pub fn with_changes(changes: &[&str]) -> Result<Limits, String> {
        let changes = changes
            .iter()
            .map(|c| parse_change(c))
            .collect::<Result<Vec<_>, _>>()?;
        let mut limits = Limits::default();
        limits.apply(&changes);
        Ok(limits)
    }

    /// Applies `changes` in order.
    pub fn apply(&mut self, changes: &[Change]) {
        for (limit, value) in changes {
            self.set(*limit, *value);
        }
    }

    /// The limits the operator set, with their values as people write them (`setting-up=4`).
    pub fn overrides(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(limit, value)| format!("{limit}={}", limit.format(*value)))
            .collect()
    }

    /// Its resource bucket.
    pub fn resources(&self) -> Rate {
        Rate {
            per_minute: self.get(Limit::ResourcesPerMinute),
            burst: self.get(Limit::ResourceBurst),
        }
    }

    /// What its steps' log lines may take: a bucket of a minute's worth, and a total.
    pub fn log(&self) -> Quota {
        Quota::of(self, Limit::LogPerMinute, Limit::LogTotal)
    }

    /// What its steps may take of the audit trail: a bucket of a minute's worth, and a total.
    pub fn step_history(&self) -> Quota {
        Quota::of(self, Limit::StepHistoryPerMinute, Limit::StepHistory)
    }
}

/// How many of a blueprint's `limit` slots (resources being set up, tokens of its resource
/// bucket) a tenant that holds some already leaves for tenants that hold none: a quarter, at
/// least one of two or more. One owner's backlog never takes the last of them, so another's
/// first request finds room at once.
pub fn reserve(limit: u64) -> u64 {
    match limit {
        0 | 1 => 0,
        _ => (limit / 4).max(1),
    }
}

/// How a blueprint's resources stand when it would make one more: being set up (all of them,
/// and those made for the asking tenant), and its resource bucket's TAT (µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// Its resources being set up.
    pub setting_up: u64,
    /// Those of them made for the asking tenant's leases.
    pub mine: u64,
    /// Its resource bucket.
    pub tat: i64,
}

/// Why a blueprint may not make a resource now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoom {
    /// Its setup slots are taken, but for the reserve (`held_back`) a tenant with resources
    /// being set up leaves to others.
    SettingUp {
        /// Slots left to tenants with none being set up (0: all are taken).
        held_back: u64,
    },
    /// Its resource bucket is empty (for this tenant) until then (ms), if ever.
    Bucket {
        /// When a token is due.
        retry_at: Option<i64>,
    },
}

impl NoRoom {
    /// The limit that refuses.
    pub fn limit(self) -> Limit {
        match self {
            NoRoom::SettingUp { .. } => Limit::SettingUp,
            NoRoom::Bucket { .. } => Limit::ResourcesPerMinute,
        }
    }

    /// Why, for the lease's log: `blueprint` makes them, `tenant` asked.
    pub fn reason(self, blueprint: &str, limits: &Limits, setup: Setup, tenant: &str) -> String {
        let (setting_up, mine) = (setup.setting_up, setup.mine);
        match self {
            NoRoom::SettingUp { held_back: 0 } => format!(
                "{blueprint} has {setting_up} resources being set up, its limit (setting-up={})",
                limits.get(Limit::SettingUp)
            ),
            NoRoom::SettingUp { held_back } => format!(
                "{blueprint} keeps its last {held_back} setup slots of {} for requests with none \
                 being set up; {tenant} has {mine}",
                limits.get(Limit::SettingUp)
            ),
            NoRoom::Bucket { .. } => {
                let rate = limits.resources();
                format!(
                    "{blueprint} made its share of resources for now (resources-per-minute={}, \
                     resource-burst={})",
                    rate.per_minute, rate.burst
                )
            }
        }
    }
}

/// Whether a blueprint at `limits`, its resources standing as `setup`, may make one more at
/// `now` (ms): its resource bucket's next TAT, or why not. A tenant with resources being set up
/// already finds the setup slots and the bucket smaller by their [`reserve`].
pub fn room(limits: &Limits, setup: Setup, now: i64) -> Result<i64, NoRoom> {
    let most = limits.get(Limit::SettingUp);
    if setup.setting_up >= most {
        return Err(NoRoom::SettingUp { held_back: 0 });
    }
    let held_back = if setup.mine > 0 { reserve(most) } else { 0 };
    if setup.setting_up + held_back >= most {
        return Err(NoRoom::SettingUp { held_back });
    }
    let rate = limits.resources();
    let usable = match setup.mine {
        0 => rate,
        _ => rate.leaving(reserve(rate.burst)),
    };
    usable
        .take(setup.tat, now, 1)
        .map_err(|retry_at| NoRoom::Bucket { retry_at })
}

/// A token bucket in GCRA form: `per_minute` units a minute on average, at most `burst` at once.
///
/// The bucket is one time, the *theoretical arrival time* (TAT, in µs): when the bucket would be
/// full again. Taking `cost` units moves it `cost` intervals later (from now, if it lies in the
/// past); that is allowed while it stays within `burst` intervals of now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Units a minute.
    pub per_minute: u64,
    /// Units at once.
    pub burst: u64,
}

impl Rate {
    /// The same rate, leaving `reserved` units of its burst untouched.
    pub fn leaving(self, reserved: u64) -> Rate {
        Rate {
            burst: self.burst.saturating_sub(reserved),
            ..self
        }
    }

    /// Takes `cost` units at `now` (ms) from the bucket whose TAT is `tat` (µs): the new TAT,
    /// or, when the bucket lacks them, when they could be taken (ms; `None`: never, as they are
    /// more than the bucket holds or the rate is 0).
    pub fn take(&self, tat: i64, now: i64, cost: u64) -> Result<i64, Option<i64>> {
        if self.per_minute == 0 || cost > self.burst {
            return Err(None);
        }
        let interval = 60_000_000.0 / self.per_minute as f64;
        let now_us = now.saturating_mul(1000);
        let window = (self.burst as f64 * interval).floor() as i64;
        let next = tat.max(now_us) + (cost as f64 * interval).ceil() as i64;
        if next - now_us <= window {
            return Ok(next);
        }
        let at_us = next - window;
        Err(Some((at_us + 999) / 1000))
    }
}

/// Bytes a blueprint may write of something (its log, its step history): a minute's worth at
/// a time, and so many kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Bytes a minute, and its limit.
    pub rate: Rate,
    /// Which limit sets the rate.
    pub rate_limit: Limit,
    /// Bytes kept.
    pub total: u64,
    /// Which limit sets the total.
    pub total_limit: Limit,
}

impl Quota {
    fn of(limits: &Limits, per_minute: Limit, total: Limit) -> Quota {
        let rate = limits.get(per_minute);
        Quota {
            rate: Rate {
                per_minute: rate,
                burst: rate,
            },
            rate_limit: per_minute,
            total: limits.get(total),
            total_limit: total,
        }
    }

    /// Takes `cost` bytes at `now` (ms) given the bucket's TAT and the bytes kept: the new TAT,
    /// or the limit the bytes are over.
    pub fn take(&self, tat: i64, kept: u64, now: i64, cost: u64) -> Result<i64, Limit> {
        if kept.saturating_add(cost) > self.total {
            return Err(self.total_limit);
        }
        self.rate.take(tat, now, cost).map_err(|_| self.rate_limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_takes_a_burst_then_one_per_interval() {
        let rate = Rate {
            per_minute: 60,
            burst: 3,
        };
        let now = 1_000_000;
        let mut tat = 0;
        for _ in 0..3 {
            tat = rate.take(tat, now, 1).unwrap();
        }
        assert_eq!(
            rate.take(tat, now, 1),
            Err(Some(now + 1000)),
            "the fourth comes a second later"
        );
        assert!(rate.take(tat, now + 999, 1).is_err());
        let tat = rate.take(tat, now + 1000, 1).unwrap();
        assert!(rate.take(tat, now + 1000, 1).is_err());
        // A quiet minute fills the bucket again, no fuller than its size.
        let mut tat = tat;
        for _ in 0..3 {
            tat = rate.take(tat, now + 61_000, 1).unwrap();
        }
        assert!(rate.take(tat, now + 61_000, 1).is_err());
    }

    #[test]
    fn a_tenant_holding_some_leaves_a_quarter_for_those_holding_none() {
        assert_eq!(
            [0, 1, 2, 3, 10, 16, 64].map(reserve),
            [0, 0, 1, 1, 2, 4, 16]
        );
        let rate = Rate {
            per_minute: 60,
            burst: 4,
        };
        let mut tat = 0;
        for _ in 0..3 {
            tat = rate.leaving(reserve(4)).take(tat, 0, 1).unwrap();
        }
        assert!(
            rate.leaving(reserve(4)).take(tat, 0, 1).is_err(),
            "the last one is kept"
        );
        assert!(rate.take(tat, 0, 1).is_ok(), "for a tenant holding none");
    }

    #[test]
    fn room_for_a_resource_keeps_a_reserve_for_tenants_with_none() {
        let limits = changed(&["setting-up=4", "resource-burst=100"]);
        let setup = |setting_up, mine| Setup {
            setting_up,
            mine,
            tat: 0,
        };
        assert!(room(&limits, setup(2, 2), 0).is_ok());
        assert_eq!(
            room(&limits, setup(3, 3), 0),
            Err(NoRoom::SettingUp { held_back: 1 })
        );
        assert!(
            room(&limits, setup(3, 0), 0).is_ok(),
            "a newcomer gets the last slot"
        );
        assert_eq!(
            room(&limits, setup(4, 0), 0),
            Err(NoRoom::SettingUp { held_back: 0 })
        );
        let no_room = NoRoom::SettingUp { held_back: 1 };
        assert_eq!(
            no_room.reason("pool", &limits, setup(3, 3), "owner:flood"),
            "pool keeps its last 1 setup slots of 4 for requests with none being set up; \
             owner:flood has 3"
        );
        let empty = Setup {
            tat: 100_000_000,
            ..setup(0, 0)
        };
        assert_eq!(
            room(&limits, empty, 0).map_err(NoRoom::limit),
            Err(Limit::ResourcesPerMinute)
        );
    }

    #[test]
    fn a_bucket_counts_sizes_and_refuses_what_it_can_never_hold() {
        let bytes = Rate {
            per_minute: 6000,
            burst: 6000,
        };
        let tat = bytes.take(0, 0, 6000).unwrap();
        assert_eq!(bytes.take(tat, 0, 1), Err(Some(10)), "a byte every 10 ms");
        assert_eq!(bytes.take(tat, 30_000, 3000).map(|_| ()), Ok(()));
        assert_eq!(bytes.take(0, 0, 6001), Err(None));
        let stopped = Rate {
            per_minute: 0,
            burst: 10,
        };
        assert_eq!(stopped.take(0, 0, 1), Err(None));
    }

    fn changed(changes: &[&str]) -> Limits {
        Limits::with_changes(changes).unwrap()
    }

    #[test]
    fn a_quota_refuses_by_the_limit_it_is_over() {
        let limits = changed(&["log-per-minute=1K", "log-total=2K"]);
        let quota = limits.log();
        let tat = quota.take(0, 0, 0, 1000).unwrap();
        assert_eq!(quota.take(tat, 1000, 0, 100), Err(Limit::LogPerMinute));
        assert_eq!(quota.take(0, 2000, 60_000, 100), Err(Limit::LogTotal));
        assert!(quota.take(tat, 1000, 60_000, 1000).is_ok());
    }

    #[test]
    fn limits_keep_the_overrides_and_default_the_rest() {
        assert_eq!(Limits::default().get(Limit::SettingUp), 16);
        let mut limits = changed(&["setting-up=4", "log-per-minute=256K"]);
        assert_eq!(limits.get(Limit::SettingUp), 4);
        assert_eq!(limits.overrides(), ["setting-up=4", "log-per-minute=256K"]);
        assert_eq!(limits.log().rate.per_minute, 256 << 10);
        assert_eq!(
            serde_json::to_string(&limits).unwrap(),
            r#"{"setting-up":4,"log-per-minute":262144}"#
        );
        limits.apply(&[parse_change("setting-up=default").unwrap()]);
        assert!(!limits.is_set(Limit::SettingUp));
        assert_eq!(limits.get(Limit::SettingUp), 16);
        let back: Limits = serde_json::from_str(r#"{"step-history":1024}"#).unwrap();
        assert_eq!(back.get(Limit::StepHistory), 1024);
    }

    #[test]
    fn bad_limits_are_named() {
        for (change, says) in [
            ("setting-up", "write KEY=VALUE"),
            (
                "speed=4",
                "no limit is called \"speed\"; the limits are resources-per-minute",
            ),
            ("setting-up=many", "setting-up=\"many\": not a whole number"),
            ("log-total=1.5G", "log-total=\"1.5G\": not a size"),
        ] {
            let error = parse_change(change).unwrap_err();
            assert!(error.contains(says), "{change}: {error}");
        }
    }
}
