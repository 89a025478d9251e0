//! The HTTP server: a JSON API under `/api/v1/` and server-rendered HTML pages.
//!
//! Both sides read through the store and change things only through [`crate::ops`] (a command
//! posted to the queue, a lease request, a blueprint added), exactly like the CLI. The pages are
//! rendered with maud, need no JavaScript build step, and refresh themselves with a few lines of
//! progressive JavaScript while work is in flight.

mod api;
pub mod auth;
mod pages;

use crate::plugin::Runtime;
use crate::queue::Queue;
use crate::store::Store;
use auth::{Sessions, Tokens};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Posting commands (wakes this process's workers at once).
    pub queue: Queue,
    /// For validating blueprints added through the API.
    pub runtime: Runtime,
    /// Operator tokens.
    pub tokens: Arc<Tokens>,
    /// Signed-in UI sessions.
    pub sessions: Arc<Sessions>,
    /// The largest request body accepted, in bytes; larger ones get 413.
    pub max_body: usize,
}

impl AppState {
    /// The store behind the queue.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.queue.store()
    }
}

/// The whole application: API and pages, with the body limit and the security headers on every
/// response.
pub fn router(state: AppState) -> Router {
    let max_body = state.max_body;
    Router::new()
        .nest("/api/v1", api::router())
        .merge(pages::router())
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::map_response(secure_headers))
}

/// What every response may do in a browser: only this origin's own scripts, styles and forms,
/// never inside a frame (clickjacking), never sniffed into another type, and no referrer for
/// other sites.
const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
];

async fn secure_headers(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, axum::http::HeaderValue::from_static(value));
    }
    response
}

/// The HTTP status for a refused operation.
fn status_for(error: &crate::ops::Error) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    match error {
        crate::ops::Error::BadInput(_) => StatusCode::BAD_REQUEST,
        crate::ops::Error::NotFound(_) => StatusCode::NOT_FOUND,
        crate::ops::Error::Refused(_) => StatusCode::CONFLICT,
        crate::ops::Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Whether the server may listen on `addr` with the tokens it has: anything but loopback
/// needs a configured token.
pub fn check_listen(addr: &SocketAddr, token_configured: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        addr.ip().is_loopback() || token_configured,
        "refusing to listen on {addr}, which is not a loopback address, without a token: \
         pass --token-file or set DRYDOCK_TOKEN"
    );
    Ok(())
}

/// Serves HTTP on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_goes_without_a_token() {
        check_listen(&"127.0.0.1:6080".parse().unwrap(), false).unwrap();
        check_listen(&"[::1]:6080".parse().unwrap(), false).unwrap();
        let error = check_listen(&"0.0.0.0:6080".parse().unwrap(), false).unwrap_err();
        assert!(error.to_string().contains("without a token"));
        check_listen(&"0.0.0.0:6080".parse().unwrap(), true).unwrap();
    }
}
