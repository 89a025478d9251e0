//! Building the [`Step`] a hook returns, one action at a time.

use crate::{Action, Attribute, ExecRequest, LeaseRequest, Outcome, Step};
use std::time::Duration;

impl Step {
    /// A step that completes the phase.
    pub fn done() -> Self {
        Self::with_outcome(Outcome::Done)
    }

    /// A step that asks to be called again after `delay` (clamped to `u32::MAX` ms).
    pub fn yield_for(delay: Duration) -> Self {
        let ms = u32::try_from(delay.as_millis()).unwrap_or(u32::MAX);
        Self::with_outcome(Outcome::Yield(ms))
    }

    /// A step that fails permanently: the object breaks and is destroyed.
    pub fn fail(reason: impl Into<String>) -> Self {
        Self::with_outcome(Outcome::Fail(reason.into()))
    }

    fn with_outcome(outcome: Outcome) -> Self {
        Step {
            actions: Vec::new(),
            outcome,
        }
    }

    /// Whether the outcome is [`Outcome::Done`].
    pub fn is_done(&self) -> bool {
        matches!(self.outcome, Outcome::Done)
    }

    /// Appends an action.
    pub fn action(mut self, action: Action) -> Self {
        self.actions.push(action);
        self
    }

    /// Sets an attribute on the object under call.
    pub fn set_attribute(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.action(Action::SetAttribute(Attribute::new(key, value)))
    }

    /// Removes an attribute from the object under call.
    pub fn remove_attribute(self, key: impl Into<String>) -> Self {
        self.action(Action::RemoveAttribute(key.into()))
    }

    /// Writes a line to the object's log.
    pub fn log(self, message: impl Into<String>) -> Self {
        self.action(Action::Log(message.into()))
    }

    /// Takes slot locks for the object, all or none.
    pub fn take_slot_locks<I, S>(self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.action(Action::TakeSlotLocks(
            names.into_iter().map(Into::into).collect(),
        ))
    }

    /// Asks for a supporting lease named `key` on a resource of `resource_type`.
    pub fn request_lease(
        self,
        key: impl Into<String>,
        resource_type: impl Into<String>,
        attributes: Vec<Attribute>,
    ) -> Self {
        self.action(Action::RequestLease(LeaseRequest {
            key: key.into(),
            resource_type: resource_type.into(),
            attributes,
        }))
    }

    /// Releases the supporting lease named `key`.
    pub fn release_lease(self, key: impl Into<String>) -> Self {
        self.action(Action::ReleaseLease(key.into()))
    }

    /// Runs `argv` through the supporting lease `lease_key`; the result comes back as `id`.
    ///
    /// The host runs it after applying the step and calls the same hook again, so the command
    /// must be safe to run twice (after a crash it may be).
    pub fn exec<I, S>(self, id: impl Into<String>, lease_key: impl Into<String>, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.action(Action::Exec(ExecRequest {
            id: id.into(),
            lease_key: lease_key.into(),
            argv: argv.into_iter().map(Into::into).collect(),
            cwd: None,
            timeout_ms: 60_000,
        }))
    }

    /// Sets (or with `None` clears) the object's deadline, in ms since the Unix epoch.
    pub fn set_until(self, until: Option<u64>) -> Self {
        self.action(Action::SetUntil(until))
    }
}
