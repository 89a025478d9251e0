//! The CLI as a client of a daemon's HTTP API (`--server URL`): every remote-capable command
//! goes through `/api/v1/` with a token (`DRYDOCK_TOKEN` or `--token-file`), so that a machine
//! with no access to the database can request, use and release leases. What the token may do
//! is the server's to decide (`crate::access`); its refusals are shown as they come.

use super::service::Service;
use crate::domain::{LeaseStatus, ResourceStatus};
use crate::exec_stream::{Decoder, Ending, Frame};
use crate::ops::{self, LeaseDetail, ListFilter, ResourceDetail};
use crate::store::{
    Blueprint, BlueprintSwitch, Command, CommandFilter, CommandKind, Lease, LogEntry, ObjectId,
    Page, Resource, StepRecord,
};
use anyhow::{Context as _, bail};
use base64::Engine as _;
use reqwest::{Method, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::io::Write as _;
use std::process::ExitCode;

/// How long connecting to the server may take before the command fails, naming it.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the server may send nothing before the command fails: far more than any answer
/// takes, and than the 250 ms between an exec stream's keep-alives.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A daemon's API, and the token sent to it.
pub(super) struct Remote {
    client: reqwest::Client,
    /// `https://host:port`, without a trailing slash.
    base: String,
    token: Option<String>,
}

impl Remote {
    /// A client of the server at `url`, sending `token`.
    pub(super) fn new(url: &str, token: Option<String>) -> anyhow::Result<Self> {
        let base = url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base)
            .with_context(|| format!("--server {url:?} is not a URL such as https://host:6080"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("--server {url:?} is not an http:// or https:// URL");
        }
        let loopback = match parsed.host_str() {
            Some("localhost") => true,
            Some(host) => host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()),
            None => false,
        };
        if token.is_some() && parsed.scheme() == "http" && !loopback {
            eprintln!(
                "warning: the token goes to {base} unencrypted (http://): anyone on the way can \
                 take it; put the server behind TLS and use https://"
            );
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("drydock/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .context("starting the HTTP client")?;
        Ok(Remote {
            client,
            base,
            token,
        })
    }

    /// Sends a request to `path` (under the server, such as `/api/v1/leases`) with `body` as
    /// JSON; an answer that is not a success becomes an error naming the server and its reason.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.refusal(response).await)
    }

    /// Why the server refused: its `{"error": …}`, with a hint where one helps.
    async fn refusal(&self, response: reqwest::Response) -> anyhow::Error {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_string))
            .unwrap_or_else(|| text.trim().to_string());
        let message = crate::text::escape(&message).into_owned();
        let hint = match (status, &self.token) {
            (StatusCode::UNAUTHORIZED, None) => {
                " (no token was sent: set DRYDOCK_TOKEN or --token-file; an operator makes one \
                 with `drydock token create`)"
            }
            (StatusCode::NOT_FOUND, _) if message == "no such API endpoint" => {
                " (is the server a drydock daemon of this version?)"
            }
            _ => "",
        };
        anyhow::anyhow!("{} answered {status}: {message}{hint}", self.base)
    }

    /// GETs `path` and reads its JSON.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.send(Method::GET, path, None).await?;
        read_json(response).await
    }

    /// POSTs `body` to `path` and reads the JSON answer.
    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<T> {
        let response = self.send(Method::POST, path, Some(body)).await?;
        read_json(response).await
    }

    /// GETs a list's page at `path`, with its next cursor from the `Link` header.
    async fn page<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<Page<T>> {
        let response = self.send(Method::GET, path, None).await?;
        let next = next_cursor(response.headers());
        Ok(Page {
            items: read_json(response).await?,
            next,
        })
    }

    /// Every object of a list with `filter`, page after page.
    async fn every<T: DeserializeOwned>(
        &self,
        list: &str,
        mut filter: ListFilter,
    ) -> anyhow::Result<Vec<T>> {
        filter.limit = Some(1000);
        let mut all = Vec::new();
        loop {
            let page: Page<T> = self.page(&filter.href(&format!("/api/v1/{list}"))).await?;
            all.extend(page.items);
            match page.next {
                Some(cursor) => filter.before = Some(cursor.to_string()),
                None => return Ok(all),
            }
        }
    }

    /// Ids of the `list`'s objects in any of `statuses` for which `keep` holds.
    async fn ids_in<T: DeserializeOwned>(
        &self,
        list: &str,
        statuses: &[&str],
        filter: &ListFilter,
        keep: impl Fn(&T) -> Option<ObjectId>,
    ) -> anyhow::Result<Vec<ObjectId>> {
        let mut ids = Vec::new();
        for status in statuses {
            let filter = ListFilter {
                status: Some(status.to_string()),
                ..filter.clone()
            };
            let objects: Vec<T> = self.every(list, filter).await?;
            ids.extend(objects.iter().filter_map(&keep));
        }
        ids.sort_unstable_by_key(|id| id.number());
        Ok(ids)
    }

    /// Who the token is: its name and role, as the server sees them.
    pub(super) async fn whoami(&self) -> anyhow::Result<Identity> {
        self.get("/api/v1/whoami").await
    }

    /// Runs `argv` on the resource `lease` holds, on the server, printing its output as it
    /// comes; Ctrl-C ends it there. Exits with its exit code.
    pub(super) async fn exec(
        &self,
        lease: ObjectId,
        argv: &[String],
        cwd: Option<&str>,
    ) -> anyhow::Result<ExitCode> {
        let body = json!({ "argv": argv, "cwd": cwd });
        let path = format!("/api/v1/leases/{lease}/exec");
        let mut response = self.send(Method::POST, &path, Some(body)).await?;
        let mut decoder = Decoder::default();
        let program = &argv[0];
        // One listener for the whole run, so that no Ctrl-C falls between two.
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .context("listening for Ctrl-C")?;
        loop {
            let chunk = tokio::select! {
                chunk = response.chunk() => chunk.with_context(|| format!("reading {program:?}'s output from {}", self.base))?,
                _ = interrupt.recv() => {
                    // Dropping the response closes the connection: the server stops the command.
                    eprintln!("interrupted: {program:?} is stopped on the server");
                    return Ok(ExitCode::from(130));
                }
            };
            let Some(chunk) = chunk else {
                let midway = match decoder.is_midway() {
                    true => ", midway through a frame",
                    false => "",
                };
                bail!(
                    "the connection to {} ended before {program:?} did{midway} (its end is \
                     unknown)",
                    self.base
                );
            };
            decoder.push(&chunk);
            while let Some(frame) = decoder.next_frame()? {
                match frame {
                    Frame::Stdout(bytes) => write_out(&mut std::io::stdout(), &bytes)?,
                    Frame::Stderr(bytes) => write_out(&mut std::io::stderr(), &bytes)?,
                    Frame::KeepAlive => {}
                    Frame::End(ending) => return Ok(exit_code(program, ending)),
                }
            }
        }
    }
}

/// Who a token is, as `/api/v1/whoami` answers.
#[derive(Debug, serde::Deserialize)]
pub(super) struct Identity {
    /// Its name: the owner of the leases it requests.
    pub name: String,
    /// `viewer`, `requester` or `operator`.
    pub role: String,
}

/// Writes output as it came, at once.
fn write_out(to: &mut impl std::io::Write, bytes: &[u8]) -> anyhow::Result<()> {
    to.write_all(bytes)
        .and_then(|()| to.flush())
        .context("writing the command's output")
}

/// The exit code of a streamed command's end; what the host said goes to stderr.
fn exit_code(program: &str, ending: Ending) -> ExitCode {
    if let Some(error) = &ending.error {
        let _ = writeln!(std::io::stderr(), "drydock: {}", crate::text::escape(error));
    }
    match ending.exit_code {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => {
            if ending.error.is_none() {
                eprintln!("error: {program:?} ended without an exit code");
            }
            ExitCode::FAILURE
        }
    }
}

/// The JSON body of a successful answer.
async fn read_json<T: DeserializeOwned>(response: reqwest::Response) -> anyhow::Result<T> {
    let url = response.url().clone();
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    serde_json::from_slice(&bytes).with_context(|| format!("reading the answer of {url}"))
}

/// The cursor of the next page, from a `Link: <…?before=L12…>; rel="next"` header.
fn next_cursor(headers: &header::HeaderMap) -> Option<i64> {
    let link = headers.get(header::LINK)?.to_str().ok()?;
    let target = link.split(';').next()?.trim().trim_matches(['<', '>']);
    let url = reqwest::Url::parse("http://x").ok()?.join(target).ok()?;
    let before = url
        .query_pairs()
        .find_map(|(key, value)| (key == "before").then(|| value.into_owned()))?;
    Some(before.parse::<ObjectId>().ok()?.number())
}

/// A path with query parameters, encoded.
fn with_query(path: &str, pairs: &[(&str, String)]) -> String {
    let mut url = reqwest::Url::parse("http://x").expect("a valid base");
    url.set_path(path);
    url.query_pairs_mut()
        .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    }
}

/// A blueprint's name or id in a path.
fn blueprint_path(text: &str, tail: &str) -> String {
    let mut url = reqwest::Url::parse("http://x").expect("a valid base");
    url.path_segments_mut()
        .expect("a base URL")
        .extend(["api", "v1", "blueprints", text]);
    format!("{}{tail}", url.path())
}

#[async_trait::async_trait]
impl Service for Remote {
    async fn request_leases(&self, request: ops::LeaseRequest) -> anyhow::Result<ops::Requested> {
        let until = request
            .until
            .map(|until| humantime::format_duration(until).to_string());
        let body = json!({
            "type": request.resource_type,
            "attributes": request.attributes,
            "blueprints": request.blueprints,
            "until": until,
            "count": request.count,
        });
        let response = self
            .send(Method::POST, "/api/v1/leases", Some(body))
            .await?;
        let warnings = response.headers().get_all(header::WARNING);
        let warning = warnings.iter().find_map(crate::http_warning::text);
        Ok(ops::Requested {
            leases: read_json(response).await?,
            warning,
        })
    }

    async fn lease(&self, id: ObjectId) -> anyhow::Result<LeaseDetail> {
        self.get(&format!("/api/v1/leases/{id}")).await
    }

    async fn leases(&self, filter: &ListFilter) -> anyhow::Result<Page<Lease>> {
        self.page(&filter.href("/api/v1/leases")).await
    }

    async fn resource(&self, id: ObjectId) -> anyhow::Result<ResourceDetail> {
        self.get(&format!("/api/v1/resources/{id}")).await
    }

    async fn resources(&self, filter: &ListFilter) -> anyhow::Result<Page<Resource>> {
        self.page(&filter.href("/api/v1/resources")).await
    }

    async fn post_all(
        &self,
        targets: &[ObjectId],
        kind: CommandKind,
    ) -> anyhow::Result<Vec<Command>> {
        let body = json!({ "kind": kind.as_str(), "targets": targets });
        self.post("/api/v1/commands", body).await
    }

    async fn commands(&self, filter: &CommandFilter) -> anyhow::Result<Vec<Command>> {
        let mut pairs = vec![("pending", filter.pending.to_string())];
        pairs.extend(filter.target.map(|t| ("target", t.to_string())));
        self.get(&with_query("/api/v1/commands", &pairs)).await
    }

    async fn log_last(
        &self,
        object: Option<ObjectId>,
        limit: i64,
    ) -> anyhow::Result<Vec<LogEntry>> {
        let mut pairs = vec![("last", limit.to_string())];
        pairs.extend(object.map(|o| ("object", o.to_string())));
        self.get(&with_query("/api/v1/logs", &pairs)).await
    }

    async fn log_after(&self, object: ObjectId, after: i64) -> anyhow::Result<Vec<LogEntry>> {
        let pairs = [("object", object.to_string()), ("after", after.to_string())];
        self.get(&with_query("/api/v1/logs", &pairs)).await
    }

    async fn steps_last(&self, object: ObjectId, limit: i64) -> anyhow::Result<Vec<StepRecord>> {
        let pairs = [("object", object.to_string()), ("last", limit.to_string())];
        self.get(&with_query("/api/v1/steps", &pairs)).await
    }

    async fn blueprints(&self) -> anyhow::Result<Vec<Blueprint>> {
        self.get("/api/v1/blueprints").await
    }

    async fn blueprint(&self, text: &str) -> anyhow::Result<Blueprint> {
        self.get(&blueprint_path(text, "")).await
    }

    async fn add_blueprint(
        &self,
        request: ops::BlueprintRequest,
        _max_component_bytes: usize,
    ) -> anyhow::Result<Blueprint> {
        let body = json!({
            "name": request.name,
            "wasm": base64::engine::general_purpose::STANDARD.encode(&request.wasm),
            "config": request.config,
            "grants": request.grants,
        });
        self.post("/api/v1/blueprints", body).await
    }

    async fn update_blueprint(
        &self,
        text: &str,
        (wasm, config): (Option<Vec<u8>>, Option<String>),
        _max_component_bytes: usize,
    ) -> anyhow::Result<Blueprint> {
        let wasm = wasm.map(|w| base64::engine::general_purpose::STANDARD.encode(w));
        let body = json!({ "wasm": wasm, "config": config });
        self.post(&blueprint_path(text, "/update"), body).await
    }

    async fn switch_blueprint(
        &self,
        text: &str,
        switch: BlueprintSwitch,
    ) -> anyhow::Result<Blueprint> {
        let tail = match switch {
            BlueprintSwitch::Enable => "/enable",
            BlueprintSwitch::Disable => "/disable",
            BlueprintSwitch::Reset => "/reset",
        };
        self.post(&blueprint_path(text, tail), json!({})).await
    }

    async fn change_grants(
        &self,
        text: &str,
        grant: &[String],
        revoke: &[String],
    ) -> anyhow::Result<Blueprint> {
        let body = json!({ "grant": grant, "revoke": revoke });
        self.post(&blueprint_path(text, "/grants"), body).await
    }

    async fn change_limits(&self, text: &str, changes: &[String]) -> anyhow::Result<Blueprint> {
        let body = json!({ "set": changes });
        self.post(&blueprint_path(text, "/limits"), body).await
    }

    async fn releasable_leases(&self) -> anyhow::Result<Vec<ObjectId>> {
        let me = self.whoami().await?;
        let filter = ListFilter {
            owner: (me.role != "operator").then_some(me.name),
            ..ListFilter::default()
        };
        let statuses = LeaseStatus::ALL.iter().filter(|s| s.is_releasable());
        let statuses: Vec<&str> = statuses.map(|s| s.as_str()).collect();
        self.ids_in("leases", &statuses, &filter, |lease: &Lease| {
            lease.parent_resource_id.is_none().then_some(lease.id)
        })
        .await
    }

    async fn releasable_resources(&self) -> anyhow::Result<Vec<ObjectId>> {
        let statuses = ResourceStatus::ALL.iter().filter(|s| s.is_releasable());
        let statuses: Vec<&str> = statuses.map(|s| s.as_str()).collect();
        let filter = ListFilter::default();
        self.ids_in("resources", &statuses, &filter, |r: &Resource| Some(r.id))
            .await
    }

    async fn serving_daemons(&self) -> Option<usize> {
        None
    }
}
