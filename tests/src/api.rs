//! A daemon's HTTP API as tests and benchmarks drive it: any call with or without a token
//! ([`Api`]), and requesting and releasing `host` leases with the operator token.

use crate::TOKEN;
use drydock_host::store::ObjectId;
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// One daemon's API, called as a client would.
pub struct Api {
    /// The HTTP client.
    pub client: Client,
    /// The daemon's base URL (`http://127.0.0.1:PORT`).
    pub base: String,
}

impl Api {
    /// The API of the daemon at `base`.
    pub fn new(base: String) -> Self {
        Api {
            client: Client::new(),
            base,
        }
    }

    /// `METHOD /api/v1PATH` with `token` as the bearer, if any, and `body` as JSON; the status
    /// and the answer (JSON, or the text as a JSON string).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}/api/v1{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `GET` with the operator token.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(TOKEN), None).await
    }

    /// `POST` with the operator token.
    pub async fn post(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(TOKEN), body).await
    }
}

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
