//! The store conformance suite on SQLite, each check on a fresh database file.

use drydock_host::store::sqlite::SqliteStore;
use drydock_host::store::{Store, testing};
use std::sync::Arc;

#[tokio::test]
async fn sqlite_passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    testing::exercise(|clock| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = format!("sqlite://{}", dir.path().join(format!("{n}.db")).display());
        async move {
            let store = SqliteStore::open(&url, clock).await.unwrap();
            Arc::new(store) as Arc<dyn Store>
        }
    })
    .await;
}
