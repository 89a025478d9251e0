//! Prometheus metrics at `/metrics`: what the workers count as they go (blueprint calls and
//! their failures, execs, consumed commands, claim takeovers, fenced writes, what blueprints'
//! limits refused or put off), plus gauges read
//! from the store at scrape time (objects by type and status, the work queue's depth and age,
//! recent failures, the bytes each blueprint keeps against its quotas).
//!
//! The counters live in one process-wide [`Metrics`] ([`global`]), as Prometheus clients do:
//! every part of the daemon updates them without being handed a registry. A scrape builds a
//! registry of those plus fresh gauges from [`Counts`] and encodes it in the text format.

use crate::store::{CommandKind, Counts};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Label pairs of one series.
type Labels = Vec<(&'static str, String)>;
/// A family of histograms, each made by a plain function.
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// What the daemon counts as it runs.
#[derive(Debug)]
pub struct Metrics {
    claim_takeovers: Counter,
    fenced_writes: Counter,
    commands: Family<Labels, Counter>,
    blueprint_calls: Histograms,
    calls_total: Counter,
    blueprint_call_failures: Family<Labels, Counter>,
    exec_duration: Histograms,
    exec_exits: Family<Labels, Counter>,
    limit_refusals: Family<Labels, Counter>,
}

/// Blueprint calls: 100 µs to about 26 s.
fn call_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 4.0, 10))
}

/// Execs: 1 ms to about 4 minutes.
fn exec_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 10))
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
        claim_takeovers: Counter::default(),
        fenced_writes: Counter::default(),
        commands: Family::default(),
        blueprint_calls: Family::new_with_constructor(call_buckets as fn() -> Histogram),
        calls_total: Counter::default(),
        blueprint_call_failures: Family::default(),
        exec_duration: Family::new_with_constructor(exec_buckets as fn() -> Histogram),
        exec_exits: Family::default(),
        limit_refusals: Family::default(),
    });
    &METRICS
}

impl Metrics {
    /// `count` claims were taken from workers whose claims had expired (a crash, a stall).
    pub fn claims_taken_over(&self, count: usize) {
        self.claim_takeovers.inc_by(count as u64);
    }

    /// A write was refused because its claim was no longer held.
    pub fn write_fenced(&self) {
        self.fenced_writes.inc();
    }

    /// A command of `kind` was consumed: applied, or ignored.
    pub fn command_consumed(&self, kind: CommandKind, applied: bool) {
        let outcome = if applied { "applied" } else { "ignored" };
        self.commands
            .get_or_create(&vec![
                ("kind", kind.as_str().to_string()),
                ("outcome", outcome.into()),
            ])
            .inc();
    }

    /// A call of `hook` on `blueprint` took `took`; `failure` names how it failed, if it did
    /// (`trap`, `deadline`, `memory`, `invalid_step`…).
    pub fn blueprint_called(
        &self,
        blueprint: &str,
        hook: &str,
        took: Duration,
        failure: Option<&str>,
    ) {
        let labels = vec![
            ("blueprint", blueprint.to_string()),
            ("hook", hook.to_string()),
        ];
        self.blueprint_calls
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        self.calls_total.inc();
        if let Some(kind) = failure {
            let mut labels = labels;
            labels.push(("kind", kind.to_string()));
            self.blueprint_call_failures.get_or_create(&labels).inc();
        }
    }

    /// Blueprint calls this process made so far, all blueprints and hooks together (what the
    /// call histograms count, summed: for benchmarks).
    pub fn blueprint_calls_total(&self) -> u64 {
        self.calls_total.get()
    }

    /// An exec through `interface` (`local`, `ssh`) took `took` and exited with `code` (`None`:
    /// killed, timed out or never started).
    pub fn exec_finished(&self, interface: &str, took: Duration, code: Option<i32>) {
        let interface = vec![("interface", interface.to_string())];
        self.exec_duration
            .get_or_create(&interface)
            .observe(took.as_secs_f64());
        let code = code.map_or_else(|| "none".to_string(), |c| c.to_string());
        let mut labels = interface;
        labels.push(("code", code));
        self.exec_exits.get_or_create(&labels).inc();
    }

    /// One of `blueprint`'s limits refused something (a log entry, a step's body, a lease
    /// request) or put it off (a resource, a supporting lease): `crate::limits`.
    pub fn limit_refused(&self, blueprint: &str, limit: crate::limits::Limit) {
        self.limit_refusals
            .get_or_create(&vec![
                ("blueprint", blueprint.to_string()),
                ("limit", limit.key().to_string()),
            ])
            .inc();
    }

    /// The text exposition of every metric, with gauges from `counts` taken at `now` (ms).
    pub fn render(&self, counts: &Counts, now: u64) -> String {
        let mut registry = Registry::with_prefix("drydock");
        self.register(&mut registry);
        register_counts(&mut registry, counts, now);
        let mut text = String::new();
        encode(&mut text, &registry).expect("writing to a String cannot fail");
        text
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "claim_takeovers",
            "Claims taken over from a worker whose claim expired",
            self.claim_takeovers.clone(),
        );
        registry.register(
            "fenced_writes",
            "Writes refused because their claim was no longer held",
            self.fenced_writes.clone(),
        );
        registry.register(
            "commands_consumed",
            "Commands consumed, by kind and outcome",
            self.commands.clone(),
        );
        registry.register(
            "blueprint_call_duration_seconds",
            "Blueprint calls, by blueprint and hook",
            self.blueprint_calls.clone(),
        );
        registry.register(
            "blueprint_call_failures",
            "Blueprint calls that failed, by blueprint, hook and kind",
            self.blueprint_call_failures.clone(),
        );
        registry.register(
            "exec_duration_seconds",
            "Commands run through a command interface, by interface",
            self.exec_duration.clone(),
        );
        registry.register(
            "exec_exits",
            "Commands run through a command interface, by interface and exit code",
            self.exec_exits.clone(),
        );
        registry.register(
            "limit_refusals",
            "What a blueprint's limits refused or put off, by blueprint and limit",
            self.limit_refusals.clone(),
        );
    }
}

/// Gauges of what the store holds now.
fn register_counts(registry: &mut Registry, counts: &Counts, now: u64) {
    let objects = |rows: &[(String, String, i64)]| {
        let family = Family::<Labels, Gauge>::default();
        for (resource_type, status, count) in rows {
            family
                .get_or_create(&vec![
                    ("type", resource_type.clone()),
                    ("status", status.clone()),
                ])
                .set(*count);
        }
        family
    };
    registry.register(
        "leases",
        "Leases, by type and status",
        objects(&counts.leases),
    );
    registry.register(
        "resources",
        "Resources, by type and status",
        objects(&counts.resources),
    );
    let failed = Family::<Labels, Gauge>::default();
    for (object, (hour, day)) in [
        ("lease", counts.leases_failed),
        ("resource", counts.resources_failed),
    ] {
        for (window, count) in [("1h", hour), ("24h", day)] {
            failed
                .get_or_create(&vec![("object", object.into()), ("window", window.into())])
                .set(count);
        }
    }
    registry.register(
        "failed_objects",
        "Leases and resources that ended broken in the last hour and day",
        failed,
    );
    let gauge = |value: i64| {
        let gauge = Gauge::<i64>::default();
        gauge.set(value);
        gauge
    };
    registry.register(
        "work_items_due",
        "Objects due and waiting for a worker",
        gauge(counts.due),
    );
    registry.register(
        "work_items_claimed",
        "Objects a worker holds a claim on",
        gauge(counts.claimed),
    );
    let kept = Family::<Labels, Gauge>::default();
    for (blueprint, log, steps) in &counts.kept {
        for (what, bytes) in [("log", log), ("steps", steps)] {
            kept.get_or_create(&vec![
                ("blueprint", blueprint.clone()),
                ("what", what.into()),
            ])
            .set(*bytes);
        }
    }
    registry.register(
        "blueprint_kept_bytes",
        "Bytes of log and step history each blueprint has kept, against its quotas",
        kept,
    );
    let age = Gauge::<f64, AtomicU64>::default();
    let waited = counts.oldest_due.map_or(0, |due| now.saturating_sub(due));
    age.set(waited as f64 / 1000.0);
    registry.register(
        "oldest_due_age_seconds",
        "How long the longest-waiting due object has waited",
        age,
    );
}
