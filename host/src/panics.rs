//! Panics caught where a task must outlive them (a worker's run, a group commit's batch): the
//! bug is logged and paid for by what it touched, and the daemon goes on.

use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;

/// Runs `future` to its end; a panic in it becomes what it said.
pub async fn caught<F: Future>(future: F) -> Result<F::Output, String> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(|panic| message(panic.as_ref()))
}

/// What a panic said.
fn message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_what_it_said() {
        assert_eq!(caught(async { 7 }).await, Ok(7));
        let said = caught(async { panic!("lost {}", 42) }).await;
        assert_eq!(said, Err::<(), _>("lost 42".into()));
        let said = caught(async { std::panic::panic_any(3u8) }).await;
        assert_eq!(said, Err::<(), _>("a panic without a message".into()));
    }
}
