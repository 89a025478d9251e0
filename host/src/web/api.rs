//! `/api/v1/`: the CLI's operations as JSON. Every request sends `Authorization: Bearer
//! <token>`: a token from the store (`drydock token create`, with a role: `crate::access`) or
//! one of the daemon's operator tokens. A viewer reads; a requester also requests leases and
//! releases its own; an operator does everything. With `serve --public-reads`, the lists and
//! show reads of blueprints, leases and resources need no token (logs, steps and commands
//! always do). Errors are `{"error": "…"}` with 400 (bad input), 401 (no token, or one that is
//! unknown, revoked or expired), 403 (a role that may not: the message names the one needed),
//! 404 (unknown object), 409 (not releasable, name taken) or 429 (over one of a blueprint's
//! limits: a lease request past `pending-per-owner`).
//!
//! Lists (`/leases`, `/resources`) are newest first, a page at a time (`limit`, 50 by default),
//! filtered by `status`, `type`, `blueprint`, `owner` and `failed`; when there is more, the
//! `Link` header carries the next page's URL (`rel="next"`).

pub(super) mod exec;

use super::AppState;
use super::auth::bearer;
use crate::access::{Denied, Principal, Role};
use crate::domain::{LeaseStatus, ResourceStatus};
use crate::ops::{self, parse_id};
use crate::store::{BlueprintSwitch, CommandFilter, CommandKind, ObjectId, Page};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use std::collections::BTreeMap;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/blueprints", get(blueprints).post(add_blueprint))
        .route("/blueprints/{id}", get(blueprint))
        .route("/blueprints/{id}/enable", post(enable))
        .route("/blueprints/{id}/reset", post(reset))
        .route("/blueprints/{id}/disable", post(disable))
        .route("/blueprints/{id}/grants", post(change_grants))
        .route("/blueprints/{id}/limits", post(change_limits))
        .route("/blueprints/{id}/update", post(update_blueprint))
        .route("/leases", get(leases).post(request_leases))
        .route("/leases/{id}", get(lease))
        .route("/leases/{id}/release", post(release_lease))
        .route("/leases/{id}/exec", post(exec::exec))
        .route("/resources", get(resources))
        .route("/resources/{id}", get(resource))
        .route("/resources/{id}/release", post(release_resource))
        .route("/resources/{id}/reclaim", post(reclaim_resource))
        .route("/commands", get(commands).post(post_commands))
        .route("/whoami", get(whoami))
        .route("/logs", get(logs))
        .route("/steps", get(steps))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API endpoint") })
        .layer(axum::middleware::map_response(json_errors))
}

/// Every API error is JSON, whoever produced it: axum's own answers (405, a query that does
/// not parse, a body over the limit) are rewritten as `{"error": …}` with their status and
/// headers (`Allow` on a 405).
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .unwrap_or_default();
    let message = match text.is_empty() {
        true => status.canonical_reason().unwrap_or("error").to_lowercase(),
        false => text,
    };
    let mut rewritten = ApiError::new(status, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}

/// An error as JSON with its status.
pub(super) struct ApiError {
    status: StatusCode,
    message: String,
    /// A refused token, for the log (`super::AuthRefusal`).
    refusal: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            refusal: None,
        }
    }

    /// 401 for a token that does not authenticate: `message` for the client, `refusal` for
    /// the daemon's log (and the count of failures from the client's address).
    fn refused_token(message: String, refusal: String) -> Self {
        ApiError {
            refusal: Some(refusal),
            ..ApiError::new(StatusCode::UNAUTHORIZED, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        let mut response = (self.status, body).into_response();
        if let Some(refusal) = self.refusal {
            response
                .extensions_mut()
                .insert(super::AuthRefusal(refusal));
        }
        response
    }
}

impl From<ops::Error> for ApiError {
    fn from(error: ops::Error) -> Self {
        let status = super::status_for(&error);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(%error, "API request failed");
        }
        ApiError::new(status, error.to_string())
    }
}

impl From<crate::store::Error> for ApiError {
    fn from(error: crate::store::Error) -> Self {
        ops::Error::from(error).into()
    }
}

type ApiResult<T> = Result<T, ApiError>;

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        ops::Error::from(denied).into()
    }
}

/// Who sent the request: one of the daemon's operator tokens (`api:NAME`), or a token from the
/// store, looked up by its secret's hash. 401 without a token, or with one that is unknown,
/// revoked or expired.
async fn principal(state: &AppState, headers: &HeaderMap) -> ApiResult<Principal> {
    let secret = bearer(headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "send Authorization: Bearer <token>",
        )
    })?;
    match super::authenticate(state, secret, "api").await {
        Ok(principal) => Ok(principal),
        Err(super::AuthError::Refused { message, logged }) => {
            Err(ApiError::refused_token(message, format!("API: {logged}")))
        }
        Err(super::AuthError::Store(error)) => Err(error.into()),
    }
}

/// Who sent the request, if it has at least `role` for `what`.
async fn with_role(
    state: &AppState,
    headers: &HeaderMap,
    role: Role,
    what: &str,
) -> ApiResult<Principal> {
    let principal = principal(state, headers).await?;
    principal.needs(role, what)?;
    Ok(principal)
}

/// What a read shows: the objects themselves (open to all with `--public-reads`), or their
/// history (logs, steps, commands: always a viewer's at least).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shows {
    Objects,
    History,
}

/// Whether the request may read what `shows`.
async fn may_read(state: &AppState, headers: &HeaderMap, shows: Shows) -> ApiResult<()> {
    if shows == Shows::Objects && state.public_reads && bearer(headers).is_none() {
        return Ok(());
    }
    with_role(state, headers, Role::Viewer, "reading").await?;
    Ok(())
}

/// Whether the request may scrape `/metrics` (a viewer's token at least): the refusal as an
/// API error otherwise.
pub(super) async fn may_scrape(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    with_role(state, headers, Role::Viewer, "scraping /metrics").await?;
    Ok(())
}

/// An operator's name, for a request only operators may make (`what`).
async fn operator(state: &AppState, headers: &HeaderMap, what: &str) -> ApiResult<String> {
    Ok(with_role(state, headers, Role::Operator, what).await?.name)
}

fn id(text: &str, kind: &str) -> ApiResult<ObjectId> {
    Ok(parse_id(text, kind)?)
}

/// A lease's id from a path; 400 when it is not one.
fn lease_id(text: &str) -> ApiResult<ObjectId> {
    id(text, "lease")
}

/// A page of a list as JSON, with a `Link` header to the next page when there is one.
fn page<T: serde::Serialize>(
    path: &str,
    filter: &ops::ListFilter,
    limit: u32,
    page: Page<T>,
    next: impl Fn(i64) -> ObjectId,
) -> Response {
    let mut response = Json(page.items).into_response();
    if let Some(cursor) = page.next {
        let following = ops::ListFilter {
            before: Some(next(cursor).to_string()),
            limit: Some(limit),
            ..filter.clone()
        };
        let link = format!(
            "<{}>; rel=\"next\"",
            following.href(&format!("/api/v1/{path}"))
        );
        if let Ok(value) = header::HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    response
}

async fn blueprints(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    may_read(&state, &headers, Shows::Objects).await?;
    Ok(Json(state.store().blueprint_list().await?))
}

async fn blueprint(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(text): Path<String>,
) -> ApiResult<impl IntoResponse> {
    may_read(&state, &headers, Shows::Objects).await?;
    Ok(Json(
        ops::find_blueprint(state.store().as_ref(), &text).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBlueprintBody {
    name: String,
    /// The component, base64-encoded.
    wasm: String,
    /// The config: a JSON value (or a string of JSON).
    #[serde(default)]
    config: Option<serde_json::Value>,
    /// What its command interfaces may reach: `local:/DIR`, `ssh:USER@HOST[:PORT]`,
    /// `ssh-key:/DIR`.
    #[serde(default)]
    grants: Vec<String>,
}

async fn add_blueprint(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<NewBlueprintBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    operator(&state, &headers, "adding a blueprint").await?;
    let Json(body) = body.map_err(|r| bad_json(r, state.max_body))?;
    let request = ops::BlueprintRequest {
        name: body.name,
        wasm: decode_wasm(&body.wasm)?,
        config: body.config.map_or_else(|| "{}".to_string(), config_text),
        grants: body.grants,
    };
    let added =
        ops::add_blueprint(state.store().as_ref(), state.plugins.runtime(), request).await?;
    Ok((StatusCode::CREATED, Json(added)))
}

/// A component sent base64-encoded.
fn decode_wasm(base64_text: &str) -> ApiResult<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(base64_text.as_bytes())
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("`wasm` is not base64: {e}"),
            )
        })
}

/// A config sent as a JSON value, or as a string of JSON.
fn config_text(config: serde_json::Value) -> String {
    match config {
        serde_json::Value::String(text) => text,
        value => value.to_string(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlueprintUpdateBody {
    /// The new component, base64-encoded.
    #[serde(default)]
    wasm: Option<String>,
    /// The new config: a JSON value (or a string of JSON).
    #[serde(default)]
    config: Option<serde_json::Value>,
}

async fn update_blueprint(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(text): Path<String>,
    body: Result<Json<BlueprintUpdateBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let author = operator(&state, &headers, "updating a blueprint").await?;
    let Json(body) = body.map_err(|r| bad_json(r, state.max_body))?;
    let wasm = body.wasm.as_deref().map(decode_wasm).transpose()?;
    let config = body.config.map(config_text);
    let store = state.store();
    let blueprint = ops::find_blueprint(store.as_ref(), &text).await?;
    let updated = ops::update_blueprint(
        store.as_ref(),
        state.plugins.runtime(),
        &blueprint,
        (wasm, config),
        &author,
    )
    .await?;
    Ok(Json(updated))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsBody {
    /// Grants to add.
    #[serde(default)]
    grant: Vec<String>,
    /// Grants to take away.
    #[serde(default)]
    revoke: Vec<String>,
}

async fn change_grants(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(text): Path<String>,
    body: Result<Json<GrantsBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let author = operator(&state, &headers, "changing grants").await?;
    let Json(body) = body.map_err(|r| bad_json(r, state.max_body))?;
    let store = state.store();
    let blueprint = ops::find_blueprint(store.as_ref(), &text).await?;
    let changed = ops::change_grants(
        store.as_ref(),
        &blueprint,
        &body.grant,
        &body.revoke,
        &author,
    )
    .await?;
    Ok(Json(changed))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsBody {
    /// Changes, as the CLI takes them: `setting-up=4`, `log-total=default`.
    set: Vec<String>,
}

async fn change_limits(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(text): Path<String>,
    body: Result<Json<LimitsBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let author = operator(&state, &headers, "changing limits").await?;
    let Json(body) = body.map_err(|r| bad_json(r, state.max_body))?;
    let store = state.store();
    let blueprint = ops::find_blueprint(store.as_ref(), &text).await?;
    let changed = ops::change_limits(store.as_ref(), &blueprint, &body.set, &author).await?;
    Ok(Json(changed))
}

async fn enable(
    state: State<AppState>,
    headers: HeaderMap,
    path: Path<String>,
) -> ApiResult<impl IntoResponse> {
    switch(state, headers, path, BlueprintSwitch::Enable).await
}

async fn disable(
    state: State<AppState>,
    headers: HeaderMap,
    path: Path<String>,
) -> ApiResult<impl IntoResponse> {
    switch(state, headers, path, BlueprintSwitch::Disable).await
}

async fn reset(
    state: State<AppState>,
    headers: HeaderMap,
    path: Path<String>,
) -> ApiResult<impl IntoResponse> {
    switch(state, headers, path, BlueprintSwitch::Reset).await
}

async fn switch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(text): Path<String>,
    switch: BlueprintSwitch,
) -> ApiResult<impl IntoResponse> {
    operator(&state, &headers, "switching a blueprint").await?;
    let store = state.store();
    let blueprint = ops::find_blueprint(store.as_ref(), &text).await?;
    Ok(Json(store.blueprint_switch(blueprint.id, switch).await?))
}

async fn leases(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(filter): Query<ops::ListFilter>,
) -> ApiResult<Response> {
    may_read(&state, &headers, Shows::Objects).await?;
    let store = state.store().as_ref();
    let query = ops::list_query::<LeaseStatus>(store, &filter, "lease").await?;
    let leases = store.lease_page(&query).await?;
    Ok(page(
        "leases",
        &filter,
        query.limit,
        leases,
        ObjectId::Lease,
    ))
}

async fn lease(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(text): Path<String>,
) -> ApiResult<impl IntoResponse> {
    may_read(&state, &headers, Shows::Objects).await?;
    Ok(Json(
        ops::lease_detail(state.store().as_ref(), id(&text, "lease")?).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseRequestBody {
    #[serde(rename = "type")]
    resource_type: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    blueprints: Vec<String>,
    /// A duration such as `2h`.
    #[serde(default)]
    until: Option<String>,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

fn bad_json(rejection: axum::extract::rejection::JsonRejection, max_body: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than this server's limit of {} MiB \
                 (drydock serve --max-body-mib)",
                max_body >> 20
            ),
        );
    }
    ApiError::new(StatusCode::BAD_REQUEST, rejection.body_text())
}

async fn request_leases(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<LeaseRequestBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Response> {
    let principal = principal(&state, &headers).await?;
    let Json(body) = body.map_err(|r| bad_json(r, state.max_body))?;
    principal.may_request(&body.resource_type)?;
    let owner = principal.name;
    let until = body
        .until
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("`until` is not a duration: {e}"),
            )
        })?;
    let request = ops::LeaseRequest {
        resource_type: body.resource_type,
        attributes: body.attributes,
        blueprints: body.blueprints,
        until,
        count: body.count,
    };
    let requested = ops::request_leases(state.store().as_ref(), request, &owner).await?;
    state.queue.wake_workers();
    let mut response = (StatusCode::CREATED, Json(requested.leases)).into_response();
    if let Some(warning) = requested.warning {
        let value = crate::http_warning::header_value(&warning);
        response
            .headers_mut()
            .append(axum::http::header::WARNING, value);
    }
    Ok(response)
}

/// Queues `kind` for `target`, if the request's token may (`super::may_command`).
async fn post_command(
    state: &AppState,
    headers: &HeaderMap,
    target: ObjectId,
    kind: CommandKind,
) -> ApiResult<Response> {
    let principal = principal(state, headers).await?;
    super::may_command(state, &principal, target, kind).await?;
    let command = ops::post(&state.queue, target, kind, &principal.name).await?;
    Ok((StatusCode::ACCEPTED, Json(command)).into_response())
}

/// A release of a lease: its owner's (a requester's own), or an operator's.
async fn release_lease(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(text): Path<String>,
) -> ApiResult<Response> {
    let lease = id(&text, "lease")?;
    post_command(&state, &headers, lease, CommandKind::Release).await
}

async fn resources(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(filter): Query<ops::ListFilter>,
) -> ApiResult<Response> {
    may_read(&state, &headers, Shows::Objects).await?;
    let store = state.store().as_ref();
    let query = ops::list_query::<ResourceStatus>(store, &filter, "resource").await?;
    let resources = store.resource_page(&query).await?;
    Ok(page(
        "resources",
        &filter,
        query.limit,
        resources,
        ObjectId::Resource,
    ))
}

async fn resource(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(text): Path<String>,
) -> ApiResult<impl IntoResponse> {
    may_read(&state, &headers, Shows::Objects).await?;
    Ok(Json(
        ops::resource_detail(state.store().as_ref(), id(&text, "resource")?).await?,
    ))
}

async fn release_resource(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(text): Path<String>,
) -> ApiResult<Response> {
    let resource = id(&text, "resource")?;
    post_command(&state, &headers, resource, CommandKind::Release).await
}

async fn reclaim_resource(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(text): Path<String>,
) -> ApiResult<Response> {
    let resource = id(&text, "resource")?;
    post_command(&state, &headers, resource, CommandKind::Reclaim).await
}

/// Who the request's token is: its name (the owner of the leases it requests), role and the
/// resource types it may request (all when absent). `drydock login` checks a token with it.
async fn whoami(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<impl IntoResponse> {
    let principal = principal(&state, &headers).await?;
    Ok(Json(serde_json::json!({
        "name": principal.name,
        "role": principal.role.as_str(),
        "types": principal.resource_types,
    })))
}

/// Commands for several objects at once, all or none.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandsBody {
    /// `release` or `reclaim`.
    kind: String,
    /// Object ids: leases or resources.
    targets: Vec<String>,
}

/// Queues one command for each target, all or none: when the token may not command one of
/// them (403, naming it) or one cannot take it (409), nothing is queued.
async fn post_commands(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<CommandsBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Response> {
    let principal = principal(&state, &headers).await?;
    let Json(body) = body.map_err(|r| bad_json(r, state.max_body))?;
    let kind = CommandKind::parse(&body.kind).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`kind` {:?} is neither release nor reclaim", body.kind),
        )
    })?;
    let targets: Vec<ObjectId> = body
        .targets
        .iter()
        .map(|text| object_id(text))
        .collect::<ApiResult<_>>()?;
    for target in &targets {
        super::may_command(&state, &principal, *target, kind).await?;
    }
    let commands = ops::post_all(&state.queue, &targets, kind, &principal.name).await?;
    Ok((StatusCode::ACCEPTED, Json(commands)).into_response())
}

#[derive(Deserialize)]
struct CommandQuery {
    target: Option<String>,
    #[serde(default)]
    pending: bool,
}

/// An object id of any kind from a query string; 400 when malformed.
fn object_id(text: &str) -> ApiResult<ObjectId> {
    text.parse().map_err(|e: crate::store::ParseIdError| {
        ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
    })
}

/// An optional object id from a query string; 400 when malformed.
fn optional_id(text: Option<&str>) -> ApiResult<Option<ObjectId>> {
    text.map(object_id).transpose()
}

async fn commands(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<CommandQuery>,
) -> ApiResult<impl IntoResponse> {
    may_read(&state, &headers, Shows::History).await?;
    let target = optional_id(query.target.as_deref())?;
    let filter = CommandFilter {
        target,
        pending: query.pending,
    };
    Ok(Json(state.store().command_list(&filter).await?))
}

#[derive(Deserialize)]
struct LogQuery {
    object: Option<String>,
    #[serde(default)]
    after: i64,
    #[serde(default = "log_limit")]
    limit: i64,
    /// Instead of those after `after`: the newest this many, oldest first.
    last: Option<i64>,
}

fn log_limit() -> i64 {
    1000
}

/// Log entries: those after the entry `after` (at most `limit`), or the newest `last`; of one
/// object, or all. Oldest first.
async fn logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<LogQuery>,
) -> ApiResult<impl IntoResponse> {
    may_read(&state, &headers, Shows::History).await?;
    let object = optional_id(query.object.as_deref())?;
    let store = state.store().as_ref();
    if let Some(last) = query.last {
        return Ok(Json(
            ops::log_last(store, object, last.clamp(0, 100_000)).await?,
        ));
    }
    let limit = query.limit.clamp(1, 10_000);
    Ok(Json(store.log_list(object, query.after, limit).await?))
}

#[derive(Deserialize)]
struct StepQuery {
    object: String,
    #[serde(default)]
    after: i64,
    #[serde(default = "log_limit")]
    limit: i64,
    /// Instead of those after `after`: the newest this many, oldest first.
    last: Option<i64>,
}

/// An object's audit trail: every step its blueprint returned and what the host did with it.
async fn steps(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<StepQuery>,
) -> ApiResult<impl IntoResponse> {
    may_read(&state, &headers, Shows::History).await?;
    let object = object_id(&query.object)?;
    let store = state.store().as_ref();
    if let Some(last) = query.last {
        return Ok(Json(
            ops::steps_last(store, object, last.clamp(0, 100_000)).await?,
        ));
    }
    let limit = query.limit.clamp(1, 10_000);
    Ok(Json(store.step_list(object, query.after, limit).await?))
}
