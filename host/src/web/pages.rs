//! Server-rendered pages: console, lists, detail pages with Release and Reclaim buttons behind a
//! confirmation step, and sign-in.
//!
//! Pages refresh themselves while work is in flight, quietly: every page carries an `ETag` (a
//! digest of its HTML), the script asks with `If-None-Match` and gets an empty 304 while nothing
//! changed, and when something did it swaps only the parts of the page that differ, so the
//! operator's selection and scroll position elsewhere survive.

use super::AppState;
use super::session::{self, Session, SignedIn};
use crate::access::Role;
use crate::domain::{Attributes, LeaseStatus, ResourceStatus, format_time};
use crate::limits::Limit;
use crate::ops::{self, parse_id};
use crate::store::{
    Blueprint, BlueprintSwitch, Command, CommandFilter, CommandKind, End, Lease, ListQuery,
    LogEntry, ObjectId, Resource, SlotLock, StepRecord,
};
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

/// Where the pages' style sheet and script are served: files of their own, so the
/// Content-Security-Policy allows no inline code.
const STYLE_PATH: &str = "/assets/style.css";
const SCRIPT_PATH: &str = "/assets/live.js";

/// A static asset, cacheable for a day.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
}

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            STYLE_PATH,
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            SCRIPT_PATH,
            get(|| async { asset("text/javascript; charset=utf-8", LIVE_SCRIPT) }),
        )
        .route("/", get(console))
        .route("/signin", get(signin_form).post(signin))
        .route("/signout", post(signout))
        .route("/blueprints", get(blueprints))
        .route("/blueprints/{id}", get(blueprint))
        .route("/blueprints/{id}/{action}", post(blueprint_action))
        .route("/leases", get(leases))
        .route("/leases/{id}", get(lease))
        .route(
            "/leases/{id}/{kind}",
            get(confirm_command).post(post_command),
        )
        .route("/resources", get(resources))
        .route("/resources/{id}", get(resource))
        .route(
            "/resources/{id}/{kind}",
            get(confirm_command).post(post_command),
        )
        .layer(axum::middleware::from_fn(etag))
}

/// Unless reads are public (`serve --public-reads`), the pages are for signed-in users: a page
/// asked for without a live session answers with the way to sign in (a redirect to `/signin`,
/// which comes back to the page after). The sign-in page and the style sheet and script are
/// open; a form sent (POST) without a session is refused by its own check, and one sent from
/// another site by this one. The request's session goes on in its extensions ([`SignedIn`]).
pub(super) async fn need_sign_in(
    State(state): State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let jar = axum_extra::extract::cookie::CookieJar::from_headers(request.headers());
    let found = match session::lookup(&state, &jar).await {
        Ok(found) => found,
        Err(unreadable) => return unreadable,
    };
    // A form sent from another site (or a sibling subdomain) is refused, the sign-in too:
    // browsers say where a request comes from, and no form of ours is sent from elsewhere.
    let from = request.headers().get("sec-fetch-site");
    let sending = request.method() == axum::http::Method::POST;
    if sending && from.is_some_and(|site| site == "cross-site" || site == "same-site") {
        let message = "A form sent from another site is refused: use Drydock's own pages.";
        return PageError(StatusCode::FORBIDDEN, message.into()).into_response();
    }
    let path = request.uri().path();
    let open = path == "/signin" || path == STYLE_PATH || path == SCRIPT_PATH;
    // Every method but a form's POST (which checks its session itself): GET, and HEAD too.
    let reading = request.method() != axum::http::Method::POST;
    if !open && !state.public_reads && reading && found.is_none() {
        let here = request.uri().path_and_query().map_or("/", |p| p.as_str());
        return Redirect::to(&signin_href(here)).into_response();
    }
    request.extensions_mut().insert(SignedIn(found));
    next.run(request).await
}

/// The address of the sign-in page that comes back to `here` (a path and query) after.
fn signin_href(here: &str) -> String {
    let url = reqwest::Url::parse_with_params("http://drydock/signin", [("next", here)])
        .expect("a valid address");
    format!("{}?{}", url.path(), url.query().unwrap_or_default())
}

/// Tags every HTML page with a digest of its body, and answers a request that already holds
/// that version (`If-None-Match`) with an empty 304: a page that polls costs a few bytes while
/// nothing changed.
async fn etag(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let held = request.headers().get(header::IF_NONE_MATCH).cloned();
    let is_get = request.method() == axum::http::Method::GET;
    let response = next.run(request).await;
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if !is_get || response.status() != StatusCode::OK || !is_html {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let tag = format!("\"{}\"", &crate::plugin::digest(&bytes)[..32]);
    let tag = header::HeaderValue::from_str(&tag).expect("hex digits are a valid header");
    parts.headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    parts.headers.insert(header::ETAG, tag.clone());
    if held.as_ref() == Some(&tag) {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_TYPE);
        return Response::from_parts(parts, axum::body::Body::empty());
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// How often a page refreshes while something is in flight, in ms.
const LIVE_MS: u32 = 500;
/// How often lists and the console refresh, in ms.
const LIST_MS: u32 = 2000;

const STYLE: &str = "
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center}
header a{color:#fff;text-decoration:none}header .who{margin-left:auto}
main{padding:1em 1.5em;max-width:1100px}
table{border-collapse:collapse;background:#fff;margin:.4em 0 1.2em;width:100%}
th,td{border:1px solid #dde1e7;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#eef0f4;font-weight:600}
.tag{display:inline-block;border-radius:3px;padding:0 .45em;font-size:.85em;background:#dde1e7}
.tag.active{background:#c9f0d3}.tag.pending,.tag.acquired{background:#fdf0c2}
.tag.released,.tag.broken{background:#f8d5cf}.tag.destroyed{background:#cfd3da}
.tag.releasing{background:#ffb74d}.tag.failed{background:#b3261e;color:#fff}
.end.broken{color:#b3261e}.pager a{margin-right:1em}form.filters{margin:.2em 0 .6em}
td.asked code{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.85em}
button{font:inherit;padding:.3em .9em;border-radius:4px;border:1px solid #445;background:#fff;cursor:pointer}
button.danger{border-color:#b3261e;color:#b3261e}button:disabled{opacity:.45;cursor:not-allowed}
.actions{display:flex;gap:.6em;align-items:center;margin:.6em 0}
.actions form{margin:0}.hint{color:#667;font-size:.9em}
.filters a{margin-right:.6em}.error{color:#b3261e}.inline{display:inline}
.banner{background:#b3261e;color:#fff;padding:.5em 1.2em}
details.more summary{color:#667;font-size:.85em;cursor:pointer}
details.more pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.85em;margin:.3em 0}
";

/// Polls the page while its `main` says `data-live`: a 304 (nothing changed) costs nothing;
/// a new version replaces only the children of `main` that differ. Hidden tabs do not poll.
const LIVE_SCRIPT: &str = "
const live=()=>document.querySelector('main[data-live]');
let version=null;
function patch(main,next){const now=main.children,fresh=next.children;
if(now.length!==fresh.length){main.replaceWith(next);return;}
for(let i=fresh.length-1;i>=0;i--){if(!now[i].isEqualNode(fresh[i]))now[i].replaceWith(fresh[i]);}
if(next.dataset.live)main.dataset.live=next.dataset.live;else delete main.dataset.live;}
async function refresh(){const main=live();if(!main)return;
if(!document.hidden){try{
const r=await fetch(location.href,{cache:'no-store',headers:version?{'If-None-Match':version}:{}});
if(r.status===200){version=r.headers.get('ETag');
const doc=new DOMParser().parseFromString(await r.text(),'text/html');
const next=doc.querySelector('main');if(next)patch(main,next);}}catch(e){}}
const now=live();if(now)setTimeout(refresh,+now.dataset.live);}
if(live())setTimeout(refresh,+live().dataset.live);
";

/// What every page says at its top while local execs are not confined (`drydock serve
/// --unconfined-exec`, or a machine that cannot confine them).
static EXEC_WARNING: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Shows `warning` at the top of every page from now on (set once, at the daemon's start).
pub fn warn_about_execs(warning: String) {
    let _ = EXEC_WARNING.set(warning);
}

fn page(title: &str, session: &Option<Session>, live: Option<u32>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " · Drydock" }
                link rel="stylesheet" href=(STYLE_PATH);
            }
            body {
                header {
                    a href="/" { strong { "Drydock" } }
                    a href="/blueprints" { "Blueprints" }
                    a href="/resources" { "Resources" }
                    a href="/leases" { "Leases" }
                    span.who {
                        @match session {
                            Some(s) => {
                                "Signed in as " (s.principal.name) " (" (s.principal.role) ") "
                                form.inline method="post" action="/signout" {
                                    input type="hidden" name="csrf" value=(s.csrf);
                                    button id="signout" { "Sign out" }
                                }
                            }
                            None => a id="signin" href="/signin" { "Sign in" },
                        }
                    }
                }
                @if let Some(warning) = EXEC_WARNING.get() {
                    div.banner #exec-warning role="alert" { strong { "Warning: " } (warning) }
                }
                main data-live=[live] { (body) }
                script src=(SCRIPT_PATH) {}
            }
        }
    }
}

/// A page-level error.
struct PageError(StatusCode, String);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = page(
            "Error",
            &None,
            None,
            html! { h1 { "Error" } p.error { (self.1) } },
        );
        (self.0, body).into_response()
    }
}

impl From<ops::Error> for PageError {
    fn from(error: ops::Error) -> Self {
        PageError(super::status_for(&error), error.to_string())
    }
}

impl From<crate::store::Error> for PageError {
    fn from(error: crate::store::Error) -> Self {
        ops::Error::from(error).into()
    }
}

type PageResult = Result<Response, PageError>;

fn tag(status: &str) -> Markup {
    html! { span class={"tag " (status)} { (status) } }
}

fn id_link(id: ObjectId) -> Markup {
    let href = match id {
        ObjectId::Blueprint(_) => format!("/blueprints/{id}"),
        ObjectId::Resource(_) => format!("/resources/{id}"),
        ObjectId::Lease(_) => format!("/leases/{id}"),
    };
    html! { a href=(href) { (id) } }
}

fn attributes_table(attributes: &Attributes) -> Markup {
    html! {
        h2 { "Attributes" }
        @if attributes.is_empty() { p.hint { "None." } } @else {
            table #attributes { tr { th { "Key" } th { "Value" } }
                @for (key, value) in attributes { tr { td { (key) } td { (value) } } } }
        }
    }
}

fn commands_table(commands: &[Command]) -> Markup {
    html! {
        h2 { "Commands" }
        @if commands.is_empty() { p.hint #commands-empty { "No commands." } } @else {
            table #commands {
                tr { th { "ID" } th { "Author" } th { "Command" } th { "State" } th { "Outcome" } th { "Queued" } }
                @for c in commands {
                    tr.command data-id=(c.id) {
                        td { (c.id) } td.author { (c.author) } td.kind { (c.kind.as_str()) }
                        td.state { @if c.consumed_at.is_some() { "consumed" } @else { "queued" } }
                        td.outcome { (c.outcome.clone().unwrap_or_default()) }
                        td { (format_time(c.created_at)) }
                    }
                }
            }
        }
    }
}

fn locks_table(locks: &[SlotLock]) -> Markup {
    html! {
        h2 { "Slot locks" }
        @if locks.is_empty() { p.hint { "None held." } } @else {
            table #slot-locks { tr { th { "Lock" } th { "Since" } }
                @for l in locks { tr { td { (l.name) } td { (format_time(l.created_at)) } } } }
        }
    }
}

/// A log message: its first line, and the rest (a backtrace, guest output) folded under it.
fn log_message(message: &str) -> Markup {
    match message.split_once('\n') {
        None => html! { (message) },
        Some((first, rest)) => html! {
            (first)
            details.more { summary { "details" } pre { (rest) } }
        },
    }
}

fn logs_table(logs: &[LogEntry]) -> Markup {
    html! {
        h2 { "Logs" }
        table #logs { tr { th { "Time" } th { "Object" } th { "Type" } th { "Message" } }
            @for l in logs.iter().rev() {
                tr { td { (format_time(l.created_at)) } td { (id_link(l.object)) } td { (l.kind) } td { (log_message(&l.message)) } }
            }
        }
    }
}

async fn console(State(state): State<AppState>, SignedIn(session): SignedIn) -> PageResult {
    let store = state.store();
    let counts = state.counts().await?;
    let (pending, recent) = match &session {
        Some(_) => {
            let pending = CommandFilter {
                target: None,
                pending: true,
            };
            (
                store.command_list(&pending).await?,
                store.log_recent(25).await?,
            )
        }
        None => (Vec::new(), Vec::new()),
    };
    let count = |rows: &[(String, String, i64)], status: &str| -> i64 {
        rows.iter().filter(|r| r.1 == status).map(|r| r.2).sum()
    };
    const STATUSES: [&str; 6] = [
        "pending",
        "acquired",
        "active",
        "released",
        "broken",
        "destroyed",
    ];
    let oldest = counts
        .oldest_due
        .map(|due| store.now().saturating_sub(due) as f64 / 1000.0);
    let body = html! {
        h1 { "Console" }
        table #summary {
            tr { th { "" } @for s in STATUSES { th { (s) } } }
            tr { th { a href="/leases" { "Leases" } }
                @for s in STATUSES { td { (count(&counts.leases, s)) } } }
            tr { th { a href="/resources" { "Resources" } }
                @for s in STATUSES { td { @if s == "acquired" { "–" } @else { (count(&counts.resources, s)) } } } }
        }
        h2 { "Failures" }
        table #failures {
            tr { th { "" } th { "Last hour" } th { "Last day" } }
            tr #lease-failures { th { a href="/leases?failed=true" { "Leases" } }
                td.hour { (counts.leases_failed.0) } td.day { (counts.leases_failed.1) } }
            tr #resource-failures { th { a href="/resources?failed=true" { "Resources" } }
                td.hour { (counts.resources_failed.0) } td.day { (counts.resources_failed.1) } }
        }
        p.hint #work-queue {
            (counts.due) " due, " (counts.claimed) " claimed"
            @if let Some(age) = oldest { "; the oldest due has waited " (format!("{age:.1}")) " s" }
        }
        @if session.is_none() { (history_hidden("/")) } @else {
            h2 { "Queued commands" }
            @if pending.is_empty() { p.hint { "The queue is empty." } } @else {
                table { tr { th { "ID" } th { "Target" } th { "Command" } th { "Author" } th { "Queued" } }
                    @for c in &pending { tr { td { (c.id) } td { (id_link(c.target)) } td { (c.kind.as_str()) } td { (c.author) } td { (format_time(c.created_at)) } } } }
            }
            (logs_table(&recent))
        }
    };
    Ok(page("Console", &session, Some(LIST_MS), body).into_response())
}

/// A list's filters: status links and a failed link that keep the other filters, and a form
/// for type, blueprint and owner.
fn list_controls(base: &str, statuses: &[&str], filter: &ops::ListFilter, owners: bool) -> Markup {
    let link = |change: &dyn Fn(&mut ops::ListFilter)| {
        let mut changed = ops::ListFilter {
            before: None,
            ..filter.clone()
        };
        change(&mut changed);
        changed.href(base)
    };
    let current = filter.status.as_deref().filter(|s| !s.is_empty());
    html! {
        p.filters { "Status: "
            @if current.is_none() { strong { "all" } } @else { a href=(link(&|f| f.status = None)) { "all" } }
            @for s in statuses {
                " "
                @if current == Some(*s) { strong { (s) } } @else { a href=(link(&|f| f.status = Some(s.to_string()))) { (s) } }
            }
            " · "
            @if filter.failed { strong { "failed" } " " a #any-end href=(link(&|f| f.failed = false)) { "(any end)" } }
            @else { a #failed-filter href=(link(&|f| f.failed = true)) { "failed" } }
        }
        form.filters method="get" action=(base) {
            @if let Some(status) = current { input type="hidden" name="status" value=(status); }
            @if filter.failed { input type="hidden" name="failed" value="true"; }
            label { "Type " input name="type" size="10" value=(filter.resource_type.clone().unwrap_or_default()); }
            " "
            label { "Blueprint " input name="blueprint" size="10" value=(filter.blueprint.clone().unwrap_or_default()); }
            @if owners {
                " "
                label { "Owner " input name="owner" size="12" value=(filter.owner.clone().unwrap_or_default()); }
            }
            " " button { "Filter" }
        }
    }
}

/// Links to the newest page and to the next, older one.
fn pager(base: &str, filter: &ops::ListFilter, next: Option<ObjectId>) -> Markup {
    let page = |before: Option<String>| {
        ops::ListFilter {
            before,
            ..filter.clone()
        }
        .href(base)
    };
    html! {
        p.pager {
            @if filter.before.is_some() { a #newest href=(page(None)) { "« Newest" } " " }
            @if let Some(next) = next {
                a #older href=(page(Some(next.to_string()))) { "Older »" }
            } @else { span.hint { "No older ones." } }
        }
    }
}

async fn blueprints(State(state): State<AppState>, SignedIn(session): SignedIn) -> PageResult {
    let blueprints = state.store().blueprint_list().await?;
    let body = html! {
        h1 { "Blueprints" }
        table #blueprints { tr { th { "ID" } th { "Name" } th { "Type" } th { "Component" } th { "State" } }
            @for b in &blueprints { tr { td { (id_link(b.id)) } td { (b.name) } td { (b.resource_type) } td { (b.component_name) }
                td { @if b.enabled { (tag("active")) } @else { span.tag { "disabled" } }
                     @if b.is_failing() { " " span.tag.broken { "failing" } } } } } }
        p.hint { "Add blueprints with " code { "drydock blueprint add" } " or " code { "POST /api/v1/blueprints" } "." }
    };
    Ok(page("Blueprints", &session, None, body).into_response())
}

async fn blueprint(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Path(text): Path<String>,
) -> PageResult {
    let store = state.store();
    let blueprint = ops::find_blueprint(store.as_ref(), &text).await?;
    let own = store
        .resource_page(&ListQuery {
            blueprint: Some(blueprint.id),
            ..ListQuery::default()
        })
        .await?;
    let logs = match &session {
        Some(_) => store.log_list(Some(blueprint.id), 0, i64::MAX).await?,
        None => Vec::new(),
    };
    let mut actions = vec![match blueprint.enabled {
        true => ("disable", "Disable"),
        false => ("enable", "Enable"),
    }];
    if blueprint.failures > 0 {
        actions.push(("reset", "Reset back-off"));
    }
    let operator = session
        .as_ref()
        .filter(|s| s.principal.role == Role::Operator);
    let body = html! {
        h1 { "Blueprint " (blueprint.id) " " (blueprint.name) }
        div.actions {
            @for (action, label) in &actions {
                @match operator {
                    Some(s) => form method="post" action={"/blueprints/" (blueprint.id) "/" (action)} {
                        input type="hidden" name="csrf" value=(s.csrf);
                        button id=(action) { (label) }
                    },
                    None => { button id=(action) disabled { (label) } }
                }
            }
            @if operator.is_none() { span.hint { "Sign in as an operator to change blueprints." } }
        }
        table #properties {
            tr { th { "Name" } td { (blueprint.name) } }
            tr { th { "State" } td { @if blueprint.enabled { "enabled" } @else { "disabled" } } }
            tr { th { "Resource type" } td { (blueprint.resource_type) } }
            tr { th { "Component" } td { (blueprint.component_name) " " code { (blueprint.component) } } }
            tr { th { "Added" } td { (format_time(blueprint.created_at)) } }
            tr { th { "Config" } td { code { (blueprint.config) } } }
            tr { th { "Grants" } td {
                @if blueprint.grants.is_empty() { "none: it runs commands only through its resources' supporting leases" }
                @for grant in &blueprint.grants { code { (grant) } " " }
                @for warning in blueprint.grants.iter().filter_map(|g| g.warning()) {
                    div.banner.grant-warning role="alert" { strong { "Warning: " } (warning) }
                } } }
            @if blueprint.failures > 0 {
                tr #failures { th { "Failures" } td {
                    (blueprint.failures) " in a row; the last: " (blueprint.last_failure.as_deref().unwrap_or("-"))
                    "; next try " (blueprint.retry_at.map(format_time).unwrap_or_default()) } }
            }
        }
        h2 { "Resources" }
        (resource_rows(&own.items))
        @if own.next.is_some() { p { a href={"/resources?blueprint=" (blueprint.id)} { "All of its resources »" } } }
        (limits_table(&blueprint))
        @if session.is_none() { (history_hidden(&format!("/blueprints/{}", blueprint.id))) } @else { (logs_table(&logs)) }
    };
    Ok(page(&blueprint.name, &session, None, body).into_response())
}

/// A blueprint's limits, which are the operator's and which the defaults, and what its quotas
/// hold now (`drydock blueprint limit` changes them).
fn limits_table(blueprint: &Blueprint) -> Markup {
    let kept = |limit| match limit {
        Limit::LogTotal => Some(blueprint.log_bytes),
        Limit::StepHistory => Some(blueprint.step_bytes),
        _ => None,
    };
    html! {
        h2 { "Limits" }
        table #limits {
            tr { th { "Limit" } th { "Value" } th { "Kept now" } }
            @for limit in Limit::ALL {
                tr {
                    td { code { (limit.key()) } }
                    td {
                        (limit.format(blueprint.limits.get(limit)))
                        @if !blueprint.limits.is_set(limit) { " " span.hint { "(default)" } }
                    }
                    td { @if let Some(bytes) = kept(limit) { (crate::size::format(bytes.max(0) as u64)) } }
                }
            }
        }
        p.hint { "Set with " code { "drydock blueprint limit " (blueprint.name) " KEY=VALUE" } "." }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// The session of a mutating request whose form carries its CSRF token; refused otherwise.
fn authorized(session: Option<Session>, form: &CsrfForm) -> Result<Session, PageError> {
    let session = session.ok_or_else(|| {
        PageError(
            StatusCode::FORBIDDEN,
            "Sign in first: only signed-in users can change things.".into(),
        )
    })?;
    if !session.carried_by(&form.csrf) {
        return Err(PageError(
            StatusCode::FORBIDDEN,
            "The form is stale or forged (CSRF check failed). Reload and try again.".into(),
        ));
    }
    Ok(session)
}

async fn blueprint_action(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Path((text, action)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    let session = authorized(session, &form)?;
    session
        .principal
        .needs(Role::Operator, "changing a blueprint")
        .map_err(ops::Error::from)?;
    let switch = match action.as_str() {
        "enable" => BlueprintSwitch::Enable,
        "disable" => BlueprintSwitch::Disable,
        "reset" => BlueprintSwitch::Reset,
        other => {
            return Err(PageError(
                StatusCode::NOT_FOUND,
                format!("no blueprint action {other:?}"),
            ));
        }
    };
    let store = state.store();
    let blueprint = ops::find_blueprint(store.as_ref(), &text).await?;
    store.blueprint_switch(blueprint.id, switch).await?;
    Ok(Redirect::to(&format!("/blueprints/{}", blueprint.id)).into_response())
}

/// A status tag, and a red `failed` tag (saying how) when the object ended broken.
fn status_tags(status: &str, end: Option<&End>) -> Markup {
    html! {
        (tag(status))
        @if let Some(end) = end.filter(|e| e.is_failure()) { " " span.tag.failed title=(end) { "failed" } }
    }
}

/// How an object ended, or a dash while it is live.
fn end_cell(end: Option<&End>) -> Markup {
    html! {
        @match end {
            Some(end) => span class={"end " (end.kind.as_str())} { (log_message(&end.to_string())) },
            None => "–",
        }
    }
}

fn resource_rows(resources: &[Resource]) -> Markup {
    html! {
        table #resources { tr { th { "ID" } th { "Status" } th { "Type" } th { "Blueprint" } th { "Attributes" } th { "Created" } th { "End" } }
            @for r in resources { tr { td { (id_link(r.id)) } td { (status_tags(r.status.as_str(), r.end.as_ref())) } td { (r.resource_type) }
                td { (id_link(r.blueprint_id)) } td { (crate_attributes(&r.attributes)) } td { (format_time(r.created_at)) } td { (end_cell(r.end.as_ref())) } } } }
    }
}

fn lease_rows(leases: &[Lease]) -> Markup {
    html! {
        table #leases { tr { th { "ID" } th { "Status" } th { "Type" } th { "Resource" } th { "Owner" } th { "Attributes" } th { "End" } }
            @for l in leases { tr { td { (id_link(l.id)) } td { (status_tags(l.status.as_str(), l.end.as_ref())) } td { (l.resource_type) }
                td { @if let Some(r) = l.resource_id { (id_link(r)) } @else { "–" } } td { (l.owner) } td { (crate_attributes(&l.attributes)) } td { (end_cell(l.end.as_ref())) } } } }
    }
}

/// The audit trail: what each step asked for, and whether the host applied it.
fn steps_table(steps: &[StepRecord]) -> Markup {
    html! {
        h2 { "Steps" }
        @if steps.is_empty() { p.hint #steps-empty { "No steps recorded." } } @else {
            table #steps { tr { th { "Time" } th { "Blueprint" } th { "Hook" } th { "Asked for" } th { "Verdict" } th { "Took" } }
                @for s in steps.iter().rev() {
                    tr.step { td { (format_time(s.created_at)) } td { (id_link(s.blueprint)) } td.hook { (s.hook) }
                        td.asked { @if let Some(step) = &s.step { code { (step) } } @else { "–" } }
                        td.verdict { (log_message(&s.verdict)) }
                        td { (format!("{:.1} ms", s.duration_us as f64 / 1000.0)) } }
                }
            }
        }
    }
}

fn crate_attributes(attributes: &Attributes) -> String {
    attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn resources(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Query(filter): Query<ops::ListFilter>,
) -> PageResult {
    let store = state.store().as_ref();
    let query = ops::list_query::<ResourceStatus>(store, &filter, "resource").await?;
    let found = store.resource_page(&query).await?;
    let body = html! {
        h1 { "Resources" }
        (list_controls("/resources", &["pending", "active", "released", "broken", "destroyed"], &filter, false))
        (resource_rows(&found.items))
        (pager("/resources", &filter, found.next.map(ObjectId::Resource)))
    };
    Ok(page("Resources", &session, Some(LIST_MS), body).into_response())
}

async fn leases(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Query(filter): Query<ops::ListFilter>,
) -> PageResult {
    let store = state.store().as_ref();
    let query = ops::list_query::<LeaseStatus>(store, &filter, "lease").await?;
    let found = store.lease_page(&query).await?;
    let body = html! {
        h1 { "Leases" }
        (list_controls("/leases", &["pending", "acquired", "active", "released", "broken", "destroyed"], &filter, true))
        (lease_rows(&found.items))
        (pager("/leases", &filter, found.next.map(ObjectId::Lease)))
    };
    Ok(page("Leases", &session, Some(LIST_MS), body).into_response())
}

/// What an object's buttons look like: why one is disabled, whether a release is queued.
struct ButtonState {
    releasable: bool,
    releasing: bool,
}

fn button(
    session: &Option<Session>,
    id: &str,
    label: &str,
    href: &str,
    enabled: bool,
    why_not: &str,
) -> Markup {
    html! {
        @if enabled && session.is_some() {
            form method="get" action=(href) { button.danger id=(id) { (label) } }
        } @else {
            button.danger id=(id) disabled title=(why_not) { (label) }
        }
    }
}

/// The buttons of a lease (owned by `owner`) or a resource (`owner` is `None`), enabled when
/// the signed-in user's role allows them.
fn object_actions(
    session: &Option<Session>,
    object: ObjectId,
    owner: Option<&str>,
    state: &ButtonState,
    reclaim: Option<bool>,
) -> Markup {
    let base = match object {
        ObjectId::Resource(_) => format!("/resources/{object}"),
        _ => format!("/leases/{object}"),
    };
    let denied = session.as_ref().and_then(|s| {
        let may = match owner {
            Some(owner) => s
                .principal
                .may_act_on_lease(&object.to_string(), owner, "releasing"),
            None => s.principal.needs(Role::Operator, "releasing a resource"),
        };
        may.err().map(|denied| denied.0)
    });
    let why_not = |verb: &str, only: &str| match (session, &denied, state.releasing) {
        (None, _, _) => format!("Sign in to {verb}"),
        (Some(_), Some(denied), _) => denied.clone(),
        (Some(_), None, true) => "A release is already queued".to_string(),
        (Some(_), None, false) => only.to_string(),
    };
    let allowed = denied.is_none();
    let release_why = why_not("release", "Only pending or active objects can be released");
    let reclaim_why = why_not(
        "reclaim",
        "Only an active resource that holds no leases can be reclaimed",
    );
    html! {
        div.actions {
            (button(session, "release", "Release", &format!("{base}/release"), allowed && state.releasable && !state.releasing, &release_why))
            @if let Some(reclaimable) = reclaim {
                (button(session, "reclaim", "Reclaim", &format!("{base}/reclaim"), allowed && reclaimable && !state.releasing, &reclaim_why))
            }
            @if state.releasing { span.tag.releasing #releasing { "Releasing" } }
            @if session.is_none() { span.hint { a href=(signin_href(&base)) { "Sign in" } " to release." } }
        }
    }
}

/// What happened to an object: its commands, slot locks, logs and audit trail; or nothing,
/// for a visitor who is not signed in (`--public-reads` shows objects, never their history).
#[derive(Default)]
struct History {
    hidden: bool,
    commands: Vec<Command>,
    locks: Vec<SlotLock>,
    logs: Vec<LogEntry>,
    steps: Vec<StepRecord>,
}

/// In place of an object's history, for a visitor who is not signed in.
fn history_hidden(base: &str) -> Markup {
    html! {
        p.hint #history-hidden { a href=(signin_href(base)) { "Sign in" } " to see its commands, logs and audit trail." }
    }
}

/// Steps shown on an object's page: the newest ones.
const STEPS_SHOWN: i64 = 200;

async fn history(
    state: &AppState,
    object: ObjectId,
    session: &Option<Session>,
) -> Result<History, PageError> {
    if session.is_none() {
        return Ok(History {
            hidden: true,
            ..History::default()
        });
    }
    let store = state.store();
    let commands = store
        .command_list(&CommandFilter {
            target: Some(object),
            pending: false,
        })
        .await?;
    let locks = store.slot_lock_list(Some(object)).await?;
    let logs = store.log_list(Some(object), 0, i64::MAX).await?;
    let mut steps = store.step_list(object, 0, i64::MAX).await?;
    steps.drain(..steps.len().saturating_sub(STEPS_SHOWN as usize));
    Ok(History {
        hidden: false,
        commands,
        locks,
        logs,
        steps,
    })
}

fn release_queued(commands: &[Command]) -> bool {
    commands
        .iter()
        .any(|c| c.consumed_at.is_none() && c.kind == CommandKind::Release)
}

async fn lease(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Path(text): Path<String>,
) -> PageResult {
    let ops::LeaseDetail { lease, work } =
        ops::lease_detail(state.store().as_ref(), parse_id(&text, "lease")?).await?;
    let History {
        hidden,
        commands,
        locks,
        logs,
        steps,
    } = history(&state, lease.id, &session).await?;
    let buttons = ButtonState {
        releasable: lease.status.is_releasable(),
        releasing: release_queued(&commands)
            || matches!(lease.status, LeaseStatus::Released | LeaseStatus::Broken),
    };
    let in_flight =
        lease.status != LeaseStatus::Destroyed || commands.iter().any(|c| c.consumed_at.is_none());
    let body = html! {
        h1 { "Lease " (lease.id) " " span #status { (status_tags(lease.status.as_str(), lease.end.as_ref())) } }
        (object_actions(&session, lease.id, Some(&lease.owner), &buttons, None))
        table #properties {
            tr { th { "Status" } td { (lease.status) } }
            tr { th { "Resource type" } td { (lease.resource_type) } }
            tr { th { "Resource" } td { @if let Some(r) = lease.resource_id { (id_link(r)) } @else { "–" } } }
            tr { th { "Owner" } td { (lease.owner) } }
            @if let Some(parent) = lease.parent_resource_id { tr { th { "Supports" } td { (id_link(parent)) " as " (lease.parent_key.clone().unwrap_or_default()) } } }
            tr { th { "Allowed blueprints" } td { @if lease.allowed_blueprints.is_empty() { "any" } @else { @for b in &lease.allowed_blueprints { (id_link(*b)) " " } } } }
            tr { th { "Until" } td { (lease.until.map(format_time).unwrap_or_else(|| "–".into())) } }
            tr { th { "Created" } td { (format_time(lease.created_at)) } }
            tr { th { "Work" } td #work { (work) } }
            tr { th { "End" } td #end { (end_cell(lease.end.as_ref())) } }
        }
        (attributes_table(&lease.attributes))
        @if hidden { (history_hidden(&format!("/leases/{}", lease.id))) } @else {
            (commands_table(&commands))
            (locks_table(&locks))
            (steps_table(&steps))
            (logs_table(&logs))
        }
    };
    Ok(page(
        &format!("Lease {}", lease.id),
        &session,
        in_flight.then_some(LIVE_MS),
        body,
    )
    .into_response())
}

async fn resource(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    Path(text): Path<String>,
) -> PageResult {
    let detail = ops::resource_detail(state.store().as_ref(), parse_id(&text, "resource")?).await?;
    let resource = &detail.resource;
    let History {
        hidden,
        commands,
        logs,
        steps,
        ..
    } = history(&state, resource.id, &session).await?;
    let buttons = ButtonState {
        releasable: resource.status.is_releasable(),
        releasing: release_queued(&commands)
            || matches!(
                resource.status,
                ResourceStatus::Released | ResourceStatus::Broken
            ),
    };
    let idle = resource.status == ResourceStatus::Active
        && detail
            .leases
            .iter()
            .all(|l| l.status == LeaseStatus::Destroyed);
    let in_flight = resource.status != ResourceStatus::Destroyed
        || commands.iter().any(|c| c.consumed_at.is_none());
    let body = html! {
        h1 { "Resource " (resource.id) " " span #status { (status_tags(resource.status.as_str(), resource.end.as_ref())) } }
        (object_actions(&session, resource.id, None, &buttons, Some(idle)))
        table #properties {
            tr { th { "Status" } td { (resource.status) } }
            tr { th { "Type" } td { (resource.resource_type) } }
            tr { th { "Blueprint" } td { (id_link(resource.blueprint_id)) } }
            tr { th { "Until" } td { (resource.until.map(format_time).unwrap_or_else(|| "–".into())) } }
            tr { th { "Created" } td { (format_time(resource.created_at)) } }
            tr { th { "Work" } td #work { (detail.work) } }
            tr { th { "End" } td #end { (end_cell(resource.end.as_ref())) } }
        }
        (attributes_table(&resource.attributes))
        h2 { "Leases" }
        (lease_rows(&detail.leases))
        (locks_table(&detail.slot_locks))
        @if hidden { (history_hidden(&format!("/resources/{}", resource.id))) } @else {
            (commands_table(&commands))
            (steps_table(&steps))
            (logs_table(&logs))
        }
    };
    Ok(page(
        &format!("Resource {}", resource.id),
        &session,
        in_flight.then_some(LIVE_MS),
        body,
    )
    .into_response())
}

fn confirmation(
    session: &Option<Session>,
    object: ObjectId,
    kind: CommandKind,
    base: &str,
) -> Markup {
    let verb = kind.as_str();
    let effect = match (object, kind) {
        (ObjectId::Resource(_), CommandKind::Reclaim) => {
            "The daemon releases and destroys it if no lease holds it."
        }
        (ObjectId::Resource(_), _) => "The daemon releases its leases, then destroys it.",
        _ => "The daemon runs the blueprint's release logic and destroys the lease.",
    };
    let body = html! {
        h1 { (verb) " " (object) "?" }
        p { "This queues a " (verb) " command for " (id_link(object)) ". " (effect) }
        @match session {
            Some(s) => div.actions {
                form method="post" action={(base) "/" (verb)} {
                    input type="hidden" name="csrf" value=(s.csrf);
                    button.danger id="confirm" { "Yes, " (verb) " " (object) }
                }
                a id="cancel" href=(base) { "Cancel" }
            },
            None => p { a href=(signin_href(base)) { "Sign in" } " first: only signed-in users whose role allows it can " (verb) "." },
        }
    };
    page(&format!("{verb} {object}"), session, None, body)
}

/// The object and command a `/leases/{id}/{kind}` or `/resources/{id}/{kind}` path names:
/// leases take `release`; resources take `release` and `reclaim`.
fn command_target(
    uri: &axum::http::Uri,
    text: &str,
    kind: &str,
) -> Result<(ObjectId, CommandKind, String), PageError> {
    let object_kind = if uri.path().starts_with("/leases/") {
        "lease"
    } else {
        "resource"
    };
    let id = parse_id(text, object_kind)?;
    let kind = match (object_kind, kind) {
        (_, "release") => CommandKind::Release,
        ("resource", "reclaim") => CommandKind::Reclaim,
        (_, other) => {
            return Err(PageError(
                StatusCode::NOT_FOUND,
                format!("no {object_kind} command {other:?}"),
            ));
        }
    };
    Ok((id, kind, format!("/{object_kind}s/{id}")))
}

async fn confirm_command(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    uri: axum::http::Uri,
    Path((text, kind)): Path<(String, String)>,
) -> PageResult {
    let (id, kind, base) = command_target(&uri, &text, &kind)?;
    match id {
        ObjectId::Lease(_) => state.store().lease_get(id).await.map(drop)?,
        _ => state.store().resource_get(id).await.map(drop)?,
    }
    Ok(confirmation(&session, id, kind, &base).into_response())
}

async fn post_command(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    uri: axum::http::Uri,
    Path((text, kind)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    let session = authorized(session, &form)?;
    let (id, kind, base) = command_target(&uri, &text, &kind)?;
    super::may_command(&state, &session.principal, id, kind).await?;
    ops::post(&state.queue, id, kind, &session.principal.name).await?;
    Ok(Redirect::to(&base).into_response())
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only same-origin paths are followed after sign-in: `/` then anything but a second `/` or
/// `\`, with no backslash, whitespace or control character anywhere (browsers read `/\host`
/// and `/<TAB>/host` as `//host`, another origin).
fn safe_next(next: Option<&str>) -> String {
    let same_origin = |path: &str| {
        let rest = path.strip_prefix('/');
        rest.is_some_and(|rest| !rest.starts_with('/'))
            && !path
                .chars()
                .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
    };
    match next {
        Some(path) if same_origin(path) => path.to_string(),
        _ => "/".to_string(),
    }
}

fn signin_page(session: &Option<Session>, next: &str, error: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Sign in" }
        @if let Some(error) = error { p.error #signin-error { (error) } }
        form method="post" action="/signin" {
            input type="hidden" name="next" value=(next);
            p { label { "Token " input #token type="password" name="token" autocomplete="current-password" required; } }
            button #submit { "Sign in" }
        }
        p.hint { "An operator token given to " code { "drydock serve" } " (--token-file or DRYDOCK_TOKEN), or one made with " code { "drydock token create" } ": a viewer looks, a requester releases its own leases, an operator does everything." }
    };
    page("Sign in", session, None, body)
}

async fn signin_form(SignedIn(session): SignedIn, Query(query): Query<NextQuery>) -> Markup {
    signin_page(&session, &safe_next(query.next.as_deref()), None)
}

#[derive(Deserialize)]
struct SigninForm {
    token: String,
    next: Option<String>,
}

async fn signin(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    jar: CookieJar,
    Form(form): Form<SigninForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let token = form.token.trim();
    let principal = match super::authenticate(&state, token, "web").await {
        Ok(principal) => principal,
        Err(super::AuthError::Refused { logged, .. }) => {
            let page = signin_page(&None, &next, Some("That token is not valid."));
            let mut refused = (StatusCode::UNAUTHORIZED, page).into_response();
            let refusal = super::AuthRefusal(format!("a sign-in with a wrong token: {logged}"));
            refused.extensions_mut().insert(refusal);
            return refused;
        }
        Err(super::AuthError::Store(error)) => return PageError::from(error).into_response(),
    };
    let secure = session::behind_https(&headers);
    let jar = match session::start(&state, token, jar, secure).await {
        Ok(jar) => jar,
        Err(error) => return PageError::from(error).into_response(),
    };
    tracing::info!(name = %principal.name, "signed in to the web UI");
    (jar, Redirect::to(&next)).into_response()
}

async fn signout(
    State(state): State<AppState>,
    SignedIn(session): SignedIn,
    jar: CookieJar,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    authorized(session, &form)?;
    let jar = session::end(&state, jar).await?;
    Ok((jar, Redirect::to("/")).into_response())
}
