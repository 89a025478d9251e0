//! The HTTP server: a JSON API under `/api/v1/` and server-rendered HTML pages.
//!
//! Both sides read through the store and change things only through [`crate::ops`] (a command
//! posted to the queue, a lease request, a blueprint added), exactly like the CLI. The pages are
//! rendered with maud, need no JavaScript build step, and refresh themselves with a few lines of
//! progressive JavaScript while work is in flight.

mod api;
pub mod auth;
mod pages;
pub mod session;
pub mod throttle;

use crate::exec::Confinement;
use crate::queue::Queue;
use crate::store::{Counts, Store};
use crate::worker::Plugins;
pub use api::exec::slots::{ExecLimits, ExecSlots};
use auth::Tokens;
use axum::Router;
pub use pages::warn_about_execs;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Posting commands (wakes this process's workers at once).
    pub queue: Queue,
    /// The components, shared with this daemon's workers: for validating blueprints added
    /// through the API, and for the command interface of an exec over it.
    pub plugins: Plugins,
    /// How a local exec over the API is confined: as the workers' execs are.
    pub confinement: Confinement,
    /// This daemon's operator tokens (the store's tokens are looked up per request).
    pub tokens: Arc<Tokens>,
    /// Whether the lists and show reads of objects need no token, in the API and the pages
    /// (`--public-reads`).
    pub public_reads: bool,
    /// Failed authentications per client address.
    pub throttle: Arc<throttle::Throttle>,
    /// The commands running through the API, within their limits.
    pub exec_slots: Arc<ExecSlots>,
    /// The largest request body accepted, in bytes; larger ones get 413.
    pub max_body: usize,
    /// The console's and `/metrics`' counts, read at most once a second however many pages
    /// and scrapers ask.
    pub counts: Arc<tokio::sync::Mutex<Option<(std::time::Instant, Counts)>>>,
}

/// How long counts read for the console and `/metrics` are reused.
const COUNTS_FRESH: Duration = Duration::from_secs(1);

impl AppState {
    /// The store behind the queue.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.queue.store()
    }

    /// Objects by status, recent failures and the queue's depth: read from the store, or the
    /// last reading if it is under a second old (counting 100,000 rows takes tens of ms).
    pub async fn counts(&self) -> crate::store::Result<Counts> {
        let mut cached = self.counts.lock().await;
        if let Some((_, counts)) = cached
            .as_ref()
            .filter(|(at, _)| at.elapsed() < COUNTS_FRESH)
        {
            return Ok(counts.clone());
        }
        let counts = self.store().counts().await?;
        *cached = Some((std::time::Instant::now(), counts.clone()));
        Ok(counts)
    }
}

/// The whole application: API and pages, with the body limit and the security headers on every
/// response.
pub fn router(state: AppState) -> Router {
    let max_body = state.max_body;
    Router::new()
        .nest("/api/v1", api::router())
        .route("/metrics", axum::routing::get(scraped_with_a_token))
        .merge(
            pages::router().route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                pages::need_sign_in,
            )),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            throttle_guessers,
        ))
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::map_response(secure_headers))
}

/// Why a token does not authenticate.
#[derive(Debug)]
pub enum AuthError {
    /// The token is unknown, revoked or expired: what the client is told, and what the log
    /// says (never the secret).
    Refused {
        /// For the client.
        message: String,
        /// For the daemon's log.
        logged: String,
    },
    /// The store could not be read.
    Store(crate::store::Error),
}

/// Who a token speaks for: one of this daemon's operator tokens (an operator named
/// `CHANNEL:NAME`, `api:operator` say), or a token from the store that is neither revoked nor
/// expired, looked up by its secret's hash (its own name).
pub async fn authenticate(
    state: &AppState,
    secret: &str,
    channel: &str,
) -> Result<crate::access::Principal, AuthError> {
    authenticate_hash(state, &crate::access::secret_hash(secret), channel).await
}

/// Who the token whose secret hashes to `hash` speaks for, as [`authenticate`] says: how a
/// web session, which keeps only that hash, finds out whether its token still works.
pub async fn authenticate_hash(
    state: &AppState,
    hash: &str,
    channel: &str,
) -> Result<crate::access::Principal, AuthError> {
    use crate::access::Principal;
    if let Some(name) = state.tokens.operator_by_hash(hash) {
        return Ok(Principal::operator(&format!("{channel}:{name}")));
    }
    let store = state.store();
    let token = store
        .token_by_secret_hash(hash)
        .await
        .map_err(AuthError::Store)?;
    let Some(token) = token else {
        return Err(AuthError::Refused {
            message: "the token is not valid".into(),
            logged: format!("an unknown token (its SHA-256 begins {})", &hash[..12]),
        });
    };
    token.principal(store.now()).ok_or_else(|| {
        let why = match token.revoked_at {
            Some(_) => format!("the token {:?} was revoked", token.name),
            None => format!("the token {:?} expired", token.name),
        };
        AuthError::Refused {
            message: why.clone(),
            logged: why,
        }
    })
}

/// Whether `principal` may send `kind` to `object`, from the API or the UI: a requester
/// releases the leases it owns; everything else is an operator's.
pub async fn may_command(
    state: &AppState,
    principal: &crate::access::Principal,
    object: crate::store::ObjectId,
    kind: crate::store::CommandKind,
) -> crate::ops::Result<()> {
    use crate::access::Role;
    use crate::store::{CommandKind, ObjectId};
    if let ObjectId::Lease(_) = object
        && principal.role < Role::Operator
    {
        let owner = state.store().lease_get(object).await?.owner;
        principal.may_act_on_lease(&object.to_string(), &owner, "releasing")?;
        return Ok(());
    }
    let verb = match kind {
        CommandKind::Release => "releasing",
        CommandKind::Reclaim => "reclaiming",
    };
    principal.needs(Role::Operator, &format!("{verb} a {}", object.kind()))?;
    Ok(())
}

/// Why an authentication failed, for the daemon's log (never the secret): a refused
/// response carries it, and [`throttle_guessers`] logs it with the client's address.
#[derive(Debug, Clone)]
pub struct AuthRefusal(pub String);

/// Refuses (429) an authentication attempt from an address that failed too often
/// ([`throttle::Throttle`]); counts and logs the attempts that fail. An attempt is a request
/// with a bearer token, or a sign-in.
async fn throttle_guessers(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let attempt = auth::bearer(request.headers()).is_some()
        || (request.method() == axum::http::Method::POST && request.uri().path() == "/signin");
    if !attempt {
        return next.run(request).await;
    }
    let address = peer.ip();
    if let Err(wait) = state.throttle.check(address) {
        tracing::warn!(%address, "throttled an authentication attempt: too many failed");
        let seconds = wait.as_secs().max(1);
        let message =
            format!("too many failed authentications from {address}: try again in {seconds} s");
        let status = axum::http::StatusCode::TOO_MANY_REQUESTS;
        let retry = [(axum::http::header::RETRY_AFTER, seconds.to_string())];
        return match request.uri().path().starts_with("/api/") {
            true => (
                status,
                retry,
                axum::Json(serde_json::json!({ "error": message })),
            )
                .into_response(),
            false => (status, retry, message).into_response(),
        };
    }
    let response = next.run(request).await;
    if let Some(AuthRefusal(why)) = response.extensions().get::<AuthRefusal>() {
        state.throttle.failed(address);
        tracing::warn!(%address, "refused an authentication: {why}");
    }
    response
}

/// `/metrics` alone, with no token: for `serve --metrics-listen`, an address of its own that
/// only the scraper reaches.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(state)
        .layer(axum::middleware::map_response(secure_headers))
}

/// `/metrics` beside the API and the pages: a scrape sends a token, as any read does (a viewer's
/// is enough: `drydock token create prometheus --role viewer`).
async fn scraped_with_a_token(
    state: axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match api::may_scrape(&state, &headers).await {
        Ok(()) => metrics(state).await,
        Err(refused) => refused.into_response(),
    }
}

/// `/metrics`: Prometheus metrics in the text format (see [`crate::metrics`]).
async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let store = state.store();
    match state.counts().await {
        Ok(counts) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            crate::metrics::global().render(&counts, store.now()),
        )
            .into_response(),
        Err(error) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("reading the database: {error}\n"),
        )
            .into_response(),
    }
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
        crate::ops::Error::OverLimit(_) => StatusCode::TOO_MANY_REQUESTS,
        crate::ops::Error::Forbidden(_) => StatusCode::FORBIDDEN,
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

/// How the server treats slow or idle clients.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections served at once; more wait in the kernel's backlog until one ends.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long a kept-alive
    /// connection may sit idle before the next request: a slow client cannot hold a
    /// connection (slowloris).
    pub header_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// How long requests in flight may take to finish once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `app` (the whole [`router`], or the [`metrics_router`]) over HTTP/1.1 on `listener`
/// within `limits` until `shutdown` completes, then lets requests in flight finish (for a grace
/// period).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => permit?,
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, say: wait rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Each request knows its client's address (for `throttle_guessers`).
        let with_peer = tower::Layer::layer(
            &axum::Extension(axum::extract::ConnectInfo(peer)),
            app.clone(),
        );
        let service = hyper_util::service::TowerToHyperService::new(with_peer);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP requests still running at shutdown were cut off");
    }
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
