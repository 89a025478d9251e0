//! How many commands run through the API at once: at most so many on a daemon, and so many per
//! token, so that one client cannot take every process (and connection) of the machine, nor
//! crowd out every other client. A slot is held while its command runs, whether or not its
//! client still reads, and freed when the command has ended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The most commands running through the API at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecLimits {
    /// On this daemon, all tokens together.
    pub per_daemon: usize,
    /// For one token (by its name).
    pub per_token: usize,
}

impl Default for ExecLimits {
    fn default() -> Self {
        ExecLimits {
            per_daemon: 64,
            per_token: 8,
        }
    }
}

/// The commands running through the API, per token.
#[derive(Debug, Default)]
pub struct ExecSlots {
    limits: ExecLimits,
    running: Mutex<HashMap<String, usize>>,
}

/// One running command's slot, given back when dropped.
#[derive(Debug)]
pub struct ExecSlot {
    slots: Arc<ExecSlots>,
    holder: String,
}

impl ExecSlots {
    /// Slots within `limits`.
    pub fn new(limits: ExecLimits) -> Self {
        ExecSlots {
            limits,
            running: Mutex::default(),
        }
    }

    /// A slot for a command of the token `holder`; refused, saying which limit is reached,
    /// when the daemon or the token runs its most already.
    pub fn take(self: &Arc<Self>, holder: &str) -> Result<ExecSlot, String> {
        let mut running = self.running.lock().expect("no panic holding the counts");
        let total: usize = running.values().sum();
        if total >= self.limits.per_daemon {
            return Err(format!(
                "this daemon runs {total} commands through the API already, its most \
                 (serve --max-api-execs); try again when one has ended"
            ));
        }
        let mine = running.get(holder).copied().unwrap_or(0);
        if mine >= self.limits.per_token {
            return Err(format!(
                "the token {holder:?} runs {mine} commands through the API already, its most \
                 (serve --max-api-execs-per-token); try again when one has ended"
            ));
        }
        running.insert(holder.to_string(), mine + 1);
        Ok(ExecSlot {
            slots: self.clone(),
            holder: holder.to_string(),
        })
    }
}

impl Drop for ExecSlot {
    fn drop(&mut self) {
        let mut running = self
            .slots
            .running
            .lock()
            .expect("no panic holding the counts");
        if let Some(count) = running.get_mut(&self.holder) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.holder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_and_the_daemon_each_run_their_most_and_no_more() {
        let slots = Arc::new(ExecSlots::new(ExecLimits {
            per_daemon: 3,
            per_token: 2,
        }));
        let first = slots.take("ci").unwrap();
        let _second = slots.take("ci").unwrap();
        let refused = slots.take("ci").unwrap_err();
        assert!(
            refused.contains("\"ci\" runs 2") && refused.contains("per-token"),
            "{refused}"
        );
        let _other = slots.take("other").unwrap();
        let refused = slots.take("third").unwrap_err();
        assert!(
            refused.contains("daemon runs 3") && refused.contains("--max-api-execs)"),
            "{refused}"
        );
        drop(first);
        let _again = slots.take("ci").unwrap();
        assert!(slots.take("ci").is_err());
    }

    #[test]
    fn a_slot_given_back_leaves_no_trace() {
        let slots = Arc::new(ExecSlots::new(ExecLimits::default()));
        drop(slots.take("ci").unwrap());
        assert!(slots.running.lock().unwrap().is_empty());
    }
}
