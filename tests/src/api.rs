//! A daemon's HTTP API as the benchmarks drive it: requesting and releasing `host` leases with
//! the operator token.

use crate::TOKEN;
use drydock_host::store::ObjectId;

/// `POST /api/v1/leases` for one `host` lease; its id.
pub async fn request_host(client: &reqwest::Client, api: &str) -> ObjectId {
    let leases: serde_json::Value = client
        .post(format!("{api}/api/v1/leases"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"type": "host"}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    leases[0]["id"].as_str().unwrap().parse().unwrap()
}

/// `POST /api/v1/leases/{lease}/release`.
pub async fn release(client: &reqwest::Client, api: &str, lease: ObjectId) {
    client
        .post(format!("{api}/api/v1/leases/{lease}/release"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
}
