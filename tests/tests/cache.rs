//! Compiled components are cached on disk, keyed by the wasm's hash and the engine's, so a
//! restart does not recompile; a damaged entry is replaced, never trusted.

use drydock_host::plugin::{Runtime, RuntimeConfig, digest};
use drydock_tests::HOST_POOL_WASM;
use std::path::{Path, PathBuf};

fn runtime(cache: &Path) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.to_path_buf()),
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn entries(cache: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(cache)
        .map(|dir| dir.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_second_runtime_loads_the_compiled_component_from_disk() {
    let cache = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(HOST_POOL_WASM).unwrap();
    let first = runtime(cache.path()).load(&wasm).unwrap();
    assert_eq!(first.describe().await.unwrap().value.name, "host-pool");

    let files = entries(cache.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&digest(&wasm)) && name.ends_with(".cwasm"),
        "{name}"
    );
    let written = std::fs::metadata(&files[0]).unwrap().modified().unwrap();

    let second = runtime(cache.path()).load(&wasm).unwrap();
    assert_eq!(second.describe().await.unwrap().value.name, "host-pool");
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().modified().unwrap(),
        written
    );
}

#[tokio::test]
async fn a_corrupt_cache_entry_is_recompiled_and_replaced() {
    let cache = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(HOST_POOL_WASM).unwrap();
    runtime(cache.path()).load(&wasm).unwrap();
    let entry = entries(cache.path()).remove(0);
    std::fs::write(&entry, b"garbage").unwrap();

    let plugin = runtime(cache.path()).load(&wasm).unwrap();
    assert_eq!(plugin.describe().await.unwrap().value.resource_type, "host");
    assert!(std::fs::metadata(&entry).unwrap().len() > 1000);
}
