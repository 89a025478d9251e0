//! Who a failed allocation or activation counts against: the request, or the blueprint.
//!
//! A blueprint whose `allocate-resource` or `activate-resource` (or `activate-lease`) fails
//! backs off, so that a broken blueprint (a trap, a host that is down) is not hammered. But a
//! failure that depends on the request (a repository that does not exist) must not stop the
//! blueprint from serving everyone else. The rule:
//!
//! - the component failing on its own (a trap, a limit, an invalid step: [`Blame::Blueprint`])
//!   counts against the blueprint at once;
//! - a step that *says* it failed (`fail(reason)`: [`Blame::Request`]) counts against the
//!   request: the lease (or the resource made for it) fails with the reason, and the blueprint
//!   is left alone, unless requests of [`DISTINCT_SHAPES`] different shapes (type and
//!   attributes) have failed in a row with no success between them: then the cause does not
//!   look like the requests, and the blueprint backs off, saying so.
//!
//! Requests of the same shape failing again (`--count 20` for a repository that does not exist)
//! count once. What has failed is kept in memory per daemon ([`RequestFailures`]): it is
//! evidence, not state, and a restart starts it afresh.

use crate::domain::Attributes;
use crate::store::ObjectId;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

/// Request shapes that must fail in a row, with no success between, before a blueprint is
/// blamed for failures its steps report.
pub const DISTINCT_SHAPES: usize = 3;

/// What a failure counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The component failed: a trap, a limit, an invalid step.
    Blueprint,
    /// The step reported a failure of this request.
    Request,
}

/// What a request asks for, reduced to a number: its resource type and attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape(u64);

impl Shape {
    /// The shape of a request for `resource_type` with `attributes`.
    pub fn of(resource_type: &str, attributes: &Attributes) -> Shape {
        let mut hasher = DefaultHasher::new();
        (resource_type, attributes).hash(&mut hasher);
        Shape(hasher.finish())
    }
}

/// The shapes of the requests that failed in a row, per blueprint.
#[derive(Debug, Default)]
pub struct RequestFailures {
    failing: Mutex<HashMap<ObjectId, Vec<Shape>>>,
}

impl RequestFailures {
    /// Records that a request of `shape` failed on `blueprint`; returns how many different
    /// shapes have failed there in a row (this one included).
    pub fn failed(&self, blueprint: ObjectId, shape: Shape) -> usize {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        let shapes = failing.entry(blueprint).or_default();
        if !shapes.contains(&shape) {
            shapes.push(shape);
        }
        let distinct = shapes.len();
        if distinct >= DISTINCT_SHAPES {
            // The blueprint is blamed now; its own back-off takes it from here.
            failing.remove(&blueprint);
        }
        distinct
    }

    /// Records that `blueprint` served a request: the streak is over.
    pub fn worked(&self, blueprint: ObjectId) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        failing.remove(&blueprint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(repository: &str) -> Shape {
        let attributes = Attributes::from([("repository".into(), repository.into())]);
        Shape::of("working-copy", &attributes)
    }

    #[test]
    fn the_same_request_failing_again_counts_once() {
        let failures = RequestFailures::default();
        let b = ObjectId::Blueprint(1);
        for _ in 0..20 {
            assert_eq!(failures.failed(b, shape("missing")), 1);
        }
    }

    #[test]
    fn different_requests_failing_in_a_row_blame_the_blueprint_then_start_afresh() {
        let failures = RequestFailures::default();
        let b = ObjectId::Blueprint(1);
        assert_eq!(failures.failed(b, shape("a")), 1);
        assert_eq!(failures.failed(b, shape("b")), 2);
        assert_eq!(failures.failed(b, shape("b")), 2);
        assert_eq!(failures.failed(b, shape("c")), DISTINCT_SHAPES);
        assert_eq!(
            failures.failed(b, shape("d")),
            1,
            "blamed once, then afresh"
        );
    }

    #[test]
    fn a_success_or_another_blueprint_keeps_streaks_apart() {
        let failures = RequestFailures::default();
        let (b, other) = (ObjectId::Blueprint(1), ObjectId::Blueprint(2));
        failures.failed(b, shape("a"));
        failures.failed(b, shape("b"));
        assert_eq!(failures.failed(other, shape("c")), 1);
        failures.worked(b);
        assert_eq!(failures.failed(b, shape("c")), 1);
    }

    #[test]
    fn shapes_differ_by_type_and_attributes() {
        let attributes = Attributes::from([("repository".into(), "a".into())]);
        assert_eq!(
            Shape::of("working-copy", &attributes),
            Shape::of("working-copy", &attributes.clone())
        );
        assert_ne!(Shape::of("host", &attributes), shape("a"));
        assert_ne!(shape("a"), shape("b"));
    }
}
