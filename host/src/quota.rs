//! The quotas on what blueprints write (`crate::limits`: log bytes and step-history bytes, a
//! minute and kept), applied by each daemon to the plans its workers write.
//!
//! Every plan a claim applies passes through [`Meters::admit`] first: of the log entries a
//! blueprint's step wrote ([`Write::BlueprintLog`]), those its quota admits are kept and the
//! rest replaced by one entry on the object saying how many and why; a step over its
//! blueprint's step-history quota is recorded without its body ([`Write::RecordStep`]). What a
//! committed plan kept is added to the daemon's unsettled bytes, which the daemon adds to the
//! blueprints' kept totals in the store every second ([`Meters::unsettled`]), reading the
//! totals back with the limits ([`Meters::refresh`]); retention gives back what it prunes.
//!
//! The accounting lives in the daemon, not in the plan's transaction, on purpose: charging each
//! plan to its blueprint's row would serialize every transaction of a blueprint on that row
//! (PostgreSQL holds a row lock until commit), halving throughput. So the per-minute buckets
//! are each daemon's own (several daemons allow a multiple), and the totals may run over by what
//! the daemons wrote in the last second.

use crate::domain::Timestamp;
use crate::limits::{Limit, Limits};
use crate::store::{Blueprint, Kept, ObjectId, Plan, StepRecord, Write};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

/// What a plan that passed [`Meters::admit`] keeps, per blueprint: added to the unsettled bytes
/// once it commits ([`Meters::committed`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Charge(HashMap<ObjectId, Kept>);

/// One blueprint's quotas as this daemon keeps them.
#[derive(Debug, Default)]
struct Meter {
    name: String,
    limits: Limits,
    /// The totals the store had at the last refresh.
    stored: Kept,
    /// Bytes committed since the last settlement.
    unsettled: Kept,
    /// Bytes admitted by plans not committed yet (or that failed, until they say so).
    pending: Kept,
    log_tat: i64,
    step_tat: i64,
}

impl Meter {
    fn kept(&self) -> Kept {
        let mut kept = self.stored;
        kept += self.unsettled;
        kept += self.pending;
        kept
    }
}

/// The daemon's meters, one per blueprint.
#[derive(Debug, Default)]
pub struct Meters {
    meters: Mutex<HashMap<ObjectId, Meter>>,
}

impl Meters {
    /// Takes each blueprint's name, limits and stored totals (the store's, after a settlement
    /// and after retention).
    pub fn refresh(&self, blueprints: &[Blueprint]) {
        let mut meters = self.meters.lock().unwrap_or_else(|e| e.into_inner());
        for blueprint in blueprints {
            let meter = meters.entry(blueprint.id).or_default();
            meter.name.clone_from(&blueprint.name);
            meter.limits = blueprint.limits.clone();
            meter.stored = Kept {
                log: blueprint.log_bytes,
                steps: blueprint.step_bytes,
            };
        }
    }

    /// `plan` as its blueprints' quotas admit it at `now` (the same plan, not a copy, when it
    /// writes nothing they count), and what it keeps.
    pub fn admit<'p>(&self, plan: &'p Plan, now: Timestamp) -> (Cow<'p, Plan>, Charge) {
        let counted = |w: &Write| matches!(w, Write::BlueprintLog { .. } | Write::RecordStep(_));
        if !plan.writes().iter().any(counted) {
            return (Cow::Borrowed(plan), Charge::default());
        }
        let mut meters = self.meters.lock().unwrap_or_else(|e| e.into_inner());
        let mut admitted = Plan::new();
        let mut charge = Charge::default();
        for write in plan.writes() {
            match write {
                Write::BlueprintLog {
                    object,
                    blueprint,
                    entries,
                } => {
                    let meter = meters.entry(*blueprint).or_default();
                    let (kept, note) = admit_log(meter, entries, now as i64);
                    let bytes: i64 = kept.iter().map(|(_, m)| m.len() as i64).sum();
                    charge.0.entry(*blueprint).or_default().log += bytes;
                    if !kept.is_empty() {
                        admitted.push(Write::BlueprintLog {
                            object: *object,
                            blueprint: *blueprint,
                            entries: kept,
                        });
                    }
                    if let Some(note) = note {
                        admitted.push(Write::Log {
                            object: *object,
                            kind: format!("{}.log-refused", write_kind(entries)),
                            message: note,
                        });
                    }
                }
                Write::RecordStep(step) => {
                    let meter = meters.entry(step.blueprint).or_default();
                    let step = admit_step(meter, step, now as i64);
                    let bytes = step.step.as_ref().map_or(0, |b| b.len() as i64);
                    charge.0.entry(step.blueprint).or_default().steps += bytes;
                    admitted.push(Write::RecordStep(step));
                }
                other => {
                    admitted.push(other.clone());
                }
            }
        }
        for (blueprint, kept) in &charge.0 {
            meters.entry(*blueprint).or_default().pending += *kept;
        }
        (Cow::Owned(admitted), charge)
    }

    /// The plan `charge` came from committed (`true`: its bytes are kept) or did not.
    pub fn committed(&self, charge: Charge, committed: bool) {
        let mut meters = self.meters.lock().unwrap_or_else(|e| e.into_inner());
        for (blueprint, kept) in charge.0 {
            let meter = meters.entry(blueprint).or_default();
            meter.pending += Kept {
                log: -kept.log,
                steps: -kept.steps,
            };
            if committed {
                meter.unsettled += kept;
            }
        }
    }

    /// Takes the bytes committed since the last settlement, per blueprint, to add to the
    /// store's totals; [`Meters::unsettle`] puts them back if that fails.
    pub fn unsettled(&self) -> Vec<(ObjectId, Kept)> {
        let mut meters = self.meters.lock().unwrap_or_else(|e| e.into_inner());
        meters
            .iter_mut()
            .filter(|(_, m)| m.unsettled != Kept::default())
            .map(|(id, m)| (*id, std::mem::take(&mut m.unsettled)))
            .collect()
    }

    /// Puts back bytes [`Meters::unsettled`] took that the store did not add.
    pub fn unsettle(&self, kept: &[(ObjectId, Kept)]) {
        let mut meters = self.meters.lock().unwrap_or_else(|e| e.into_inner());
        for (blueprint, kept) in kept {
            meters.entry(*blueprint).or_default().unsettled += *kept;
        }
    }
}

/// `lease` or `resource`, from the kinds of the entries (`lease.blueprint`).
fn write_kind(entries: &[(String, String)]) -> &str {
    entries
        .first()
        .and_then(|(kind, _)| kind.split('.').next())
        .unwrap_or("object")
}

/// The entries `meter` admits, in order, and the note on those it does not.
fn admit_log(
    meter: &mut Meter,
    entries: &[(String, String)],
    now: i64,
) -> (Vec<(String, String)>, Option<String>) {
    let quota = meter.limits.log();
    let mut kept_now = meter.kept();
    let mut kept = Vec::new();
    let mut refused: Option<(Limit, usize, u64)> = None;
    for (kind, message) in entries {
        let cost = message.len() as u64;
        match quota.take(meter.log_tat, kept_now.log.max(0) as u64, now, cost) {
            Ok(tat) => {
                meter.log_tat = tat;
                kept_now.log += cost as i64;
                kept.push((kind.clone(), message.clone()));
            }
            Err(limit) => {
                let (_, lines, bytes) = refused.get_or_insert((limit, 0, 0));
                *lines += 1;
                *bytes += cost;
            }
        }
    }
    let note = refused.map(|(limit, lines, bytes)| {
        crate::metrics::global().limit_refused(&meter.name, limit);
        format!(
            "{lines} log entries ({bytes} bytes) from {name} were not kept: it is over its \
             {limit} quota of {value} (`drydock blueprint limit {name} {limit}=…` raises it)",
            name = meter.name,
            value = limit.format(meter.limits.get(limit)),
        )
    });
    (kept, note)
}

/// `step` with its body if `meter` admits it, else without, its verdict saying why.
fn admit_step(meter: &mut Meter, step: &StepRecord, now: i64) -> StepRecord {
    let Some(body) = &step.step else {
        return step.clone();
    };
    let quota = meter.limits.step_history();
    let cost = body.len() as u64;
    match quota.take(meter.step_tat, meter.kept().steps.max(0) as u64, now, cost) {
        Ok(tat) => {
            meter.step_tat = tat;
            step.clone()
        }
        Err(limit) => {
            crate::metrics::global().limit_refused(&meter.name, limit);
            StepRecord {
                step: None,
                verdict: format!(
                    "{} (its {cost} bytes were not kept: {} is over its {limit} quota of {})",
                    step.verdict,
                    meter.name,
                    limit.format(meter.limits.get(limit))
                ),
                ..step.clone()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Target;

    const B: ObjectId = ObjectId::Blueprint(1);
    const L: ObjectId = ObjectId::Lease(7);

    fn meters(changes: &[&str], stored: Kept) -> Meters {
        let meter = Meter {
            name: "chatty".into(),
            limits: Limits::with_changes(changes).unwrap(),
            stored,
            ..Meter::default()
        };
        let meters = Meters::default();
        meters.meters.lock().unwrap().insert(B, meter);
        meters
    }

    fn logs(count: usize, bytes: usize) -> Plan {
        let mut plan = Plan::new();
        plan.push(Write::BlueprintLog {
            object: Target::Id(L),
            blueprint: B,
            entries: (0..count)
                .map(|i| {
                    (
                        "lease.blueprint".to_string(),
                        format!("{i}{}", "x".repeat(bytes - 1)),
                    )
                })
                .collect(),
        });
        plan
    }

    /// What `meters` admit of `plan` at `now`, owned.
    fn admitted(meters: &Meters, plan: Plan, now: Timestamp) -> (Plan, Charge) {
        let (admitted, charge) = meters.admit(&plan, now);
        (admitted.into_owned(), charge)
    }

    fn step(bytes: usize) -> Plan {
        let mut plan = Plan::new();
        plan.push(Write::RecordStep(StepRecord {
            id: 0,
            object: L,
            blueprint: B,
            hook: "acquire-lease".into(),
            step: Some("s".repeat(bytes)),
            verdict: "applied".into(),
            duration_us: 1,
            created_at: 0,
        }));
        plan
    }

    #[test]
    fn log_entries_over_a_minutes_worth_are_replaced_by_a_note() {
        let meters = meters(&["log-per-minute=1K"], Kept::default());
        let (plan, charge) = admitted(&meters, logs(3, 500), 0);
        let [
            Write::BlueprintLog { entries, .. },
            Write::Log { kind, message, .. },
        ] = plan.writes()
        else {
            panic!("{plan:?}")
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(kind, "lease.log-refused");
        assert_eq!(
            message,
            "1 log entries (500 bytes) from chatty were not kept: it is over its log-per-minute \
             quota of 1K (`drydock blueprint limit chatty log-per-minute=…` raises it)"
        );
        assert_eq!(charge.0[&B].log, 1000);
        // A minute later the bucket is full again.
        let (plan, _) = admitted(&meters, logs(2, 500), 60_000);
        assert_eq!(plan.writes().len(), 1, "{plan:?}");
    }

    #[test]
    fn the_total_counts_what_is_stored_committed_and_on_its_way() {
        let stored = Kept {
            log: 1500,
            steps: 0,
        };
        let meters = meters(&["log-total=2K"], stored);
        let (first, charge) = admitted(&meters, logs(1, 500), 0);
        assert_eq!(first.writes().len(), 1);
        // Not committed yet, the 500 bytes count all the same.
        let (second, _) = admitted(&meters, logs(1, 100), 0);
        assert!(
            matches!(&second.writes()[0], Write::Log { message, .. } if message.contains("log-total quota of 2K")),
            "{second:?}"
        );
        meters.committed(charge, true);
        assert_eq!(meters.unsettled(), [(B, Kept { log: 500, steps: 0 })]);
        assert!(meters.unsettled().is_empty(), "taken once");
    }

    #[test]
    fn a_plan_that_failed_keeps_nothing() {
        let meters = meters(&["log-total=1K"], Kept::default());
        let (_, charge) = admitted(&meters, logs(2, 500), 0);
        meters.committed(charge, false);
        assert!(meters.unsettled().is_empty());
        let (plan, _) = admitted(&meters, logs(2, 500), 0);
        assert!(
            matches!(&plan.writes()[0], Write::BlueprintLog { entries, .. } if entries.len() == 2),
            "the failed plan's bytes are free again: {plan:?}"
        );
    }

    #[test]
    fn a_step_over_its_quota_is_kept_without_its_body() {
        let meters = meters(&["step-history-per-minute=1K"], Kept::default());
        let (plan, charge) = admitted(&meters, step(600), 0);
        assert!(matches!(&plan.writes()[0], Write::RecordStep(s) if s.step.is_some()));
        assert_eq!(charge.0[&B].steps, 600);
        let (plan, charge) = admitted(&meters, step(600), 0);
        let Write::RecordStep(step) = &plan.writes()[0] else {
            panic!("{plan:?}")
        };
        assert_eq!(step.step, None);
        assert_eq!(
            step.verdict,
            "applied (its 600 bytes were not kept: chatty is over its step-history-per-minute \
             quota of 1K)"
        );
        assert_eq!(charge.0[&B].steps, 0);
    }

    #[test]
    fn settling_can_be_undone_and_other_writes_pass_through() {
        let meters = meters(&[], Kept::default());
        let mut plan = logs(1, 10);
        plan.push(Write::ReleaseClaim { wake_at: None });
        let (admitted, charge) = meters.admit(&plan, 0);
        assert_eq!(*admitted, plan);
        assert!(
            matches!(admitted, Cow::Owned(_)),
            "it had a log entry to count"
        );
        let mut plain = Plan::new();
        plain.push(Write::ReleaseClaim { wake_at: None });
        assert!(matches!(meters.admit(&plain, 0).0, Cow::Borrowed(_)));
        meters.committed(charge, true);
        let taken = meters.unsettled();
        meters.unsettle(&taken);
        assert_eq!(meters.unsettled(), taken);
    }
}
