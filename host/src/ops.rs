//! What users can ask of Drydock, shared by the CLI and the HTTP API. Each operation checks its
//! input and names what was wrong ([`Error`]), and changes the database in one transaction or
//! not at all.

use crate::action;
use crate::domain::Attributes;
use crate::grant::{Grant, GrantChange};
use crate::limits::Limit;
use crate::plugin::{Runtime, digest};
use crate::queue::Queue;
use crate::store::{
    self, Blueprint, Command, CommandKind, Lease, ListQuery, NewBlueprint, NewLease, ObjectId,
    Resource, SlotLock, Store, WorkItem,
};
use serde::Serialize;
use std::time::Duration;

/// Why an operation was refused. Each kind maps to an HTTP status and a CLI message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed input (400).
    #[error("{0}")]
    BadInput(String),
    /// No such object (404).
    #[error("{0}")]
    NotFound(String),
    /// The object cannot take this now, or a name is taken (409).
    #[error("{0}")]
    Refused(String),
    /// One of a blueprint's limits refuses it (429): `crate::limits`.
    #[error("{0}")]
    OverLimit(String),
    /// The token's role may not do this (403): `crate::access`.
    #[error("{0}")]
    Forbidden(String),
    /// Something broke on our side (500).
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<crate::access::Denied> for Error {
    fn from(denied: crate::access::Denied) -> Self {
        Error::Forbidden(denied.0)
    }
}

impl From<store::Error> for Error {
    fn from(error: store::Error) -> Self {
        match error {
            store::Error::NotFound(what) => Error::NotFound(format!("{what} does not exist")),
            store::Error::NotReleasable(why) | store::Error::Conflict(why) => Error::Refused(why),
            superseded @ store::Error::Superseded { .. } => Error::Refused(superseded.to_string()),
            store::Error::Limited { reason, .. } => Error::OverLimit(reason),
            other => Error::Internal(other.into()),
        }
    }
}

/// Operation results.
pub type Result<T> = std::result::Result<T, Error>;

/// Parses an object id of an expected kind (`lease` for `L12`).
pub fn parse_id(text: &str, kind: &str) -> Result<ObjectId> {
    let id: ObjectId = text
        .parse()
        .map_err(|e: store::ParseIdError| Error::BadInput(e.to_string()))?;
    if id.kind() != kind {
        return Err(Error::BadInput(format!(
            "{id} is a {}, not a {kind}",
            id.kind()
        )));
    }
    Ok(id)
}

/// A blueprint by id (`B1`) or by name.
pub async fn find_blueprint(store: &dyn Store, text: &str) -> Result<Blueprint> {
    let found = match text.parse::<ObjectId>() {
        Ok(id @ ObjectId::Blueprint(_)) => store.blueprint_get(id).await,
        _ => store.blueprint_by_name(text).await,
    };
    found.map_err(|error| match error {
        store::Error::NotFound(_) => Error::NotFound(format!("no blueprint {text:?}")),
        other => other.into(),
    })
}

/// What `blueprint add` registers.
#[derive(Debug, Clone)]
pub struct BlueprintRequest {
    /// A unique name.
    pub name: String,
    /// The component's bytes.
    pub wasm: Vec<u8>,
    /// Its JSON config.
    pub config: String,
    /// What its command interfaces may reach (`local:/DIR`, `ssh:USER@HOST`, `ssh-key:/DIR`).
    pub grants: Vec<String>,
}

/// Registers a component once it loads, describes itself acceptably and accepts the config.
pub async fn add_blueprint(
    store: &dyn Store,
    runtime: &Runtime,
    request: BlueprintRequest,
) -> Result<Blueprint> {
    action::check_key("blueprint name", &request.name).map_err(Error::BadInput)?;
    let grants = parse_grants(&request.grants)?;
    check_authorizations(store, &grants, &request.name).await?;
    check_read_only_paths(store, &request.name, &grants).await?;
    let plugin = load(runtime, request.wasm.clone()).await?;
    let description = plugin
        .describe()
        .await
        .map_err(|e| Error::BadInput(e.to_string()))?
        .value;
    action::check_description(&description)
        .map_err(|why| Error::BadInput(format!("the component describes itself badly: {why}")))?;
    check_config(&plugin, &request.config).await?;
    let new = NewBlueprint {
        name: request.name,
        digest: digest(&request.wasm),
        wasm: request.wasm,
        component_name: description.name,
        resource_type: description.resource_type,
        config: request.config,
        grants,
    };
    Ok(store.blueprint_insert(new).await?)
}

/// How many times an update is prepared, each time from the version that replaced the last,
/// before it is refused naming the version it raced.
const UPDATE_ATTEMPTS: u32 = 5;

/// Switches a registered blueprint to a new component, a new config, or both. The component
/// must load, describe itself acceptably and make the same resource type (its resources and
/// leases are of that type); the config is validated by the component it will be used with.
/// What the update leaves alone is taken from the blueprint's current version; when another
/// update replaces that version before this one is written, this one is prepared again from
/// the new version, so that a component and a config sent at once both land.
pub async fn update_blueprint(
    store: &dyn Store,
    runtime: &Runtime,
    blueprint: &Blueprint,
    (wasm, config): (Option<Vec<u8>>, Option<String>),
    author: &str,
) -> Result<Blueprint> {
    if wasm.is_none() && config.is_none() {
        return Err(Error::BadInput(
            "nothing to update: give a new component, a new config or both".into(),
        ));
    }
    let component = match wasm {
        Some(bytes) => Some(NewComponent::load(runtime, blueprint, bytes).await?),
        None => None,
    };
    let mut current = blueprint.clone();
    let mut attempts = 1;
    loop {
        let update = prepare_update(
            store,
            runtime,
            &current,
            component.as_ref(),
            config.as_deref(),
        )
        .await?;
        match store.blueprint_update(current.id, update, author).await {
            Err(store::Error::Superseded { .. }) if attempts < UPDATE_ATTEMPTS => {
                attempts += 1;
                current = store.blueprint_get(current.id).await?;
            }
            result => return Ok(result?),
        }
    }
}

/// A blueprint's new component, loaded and checked once however often its update is prepared.
struct NewComponent {
    bytes: Vec<u8>,
    digest: String,
    name: String,
    plugin: crate::plugin::Plugin,
}

impl NewComponent {
    /// Loads `bytes` as `blueprint`'s next component: it must describe itself acceptably and
    /// make the blueprint's resource type.
    async fn load(runtime: &Runtime, blueprint: &Blueprint, bytes: Vec<u8>) -> Result<Self> {
        let plugin = load(runtime, bytes.clone()).await?;
        let description = plugin
            .describe()
            .await
            .map_err(|e| Error::BadInput(e.to_string()))?
            .value;
        action::check_description(&description).map_err(|why| {
            Error::BadInput(format!("the component describes itself badly: {why}"))
        })?;
        if description.resource_type != blueprint.resource_type {
            return Err(Error::BadInput(format!(
                "{} makes {:?} resources; the new component makes {:?}, and a blueprint's \
                 type cannot change (add it under a new name instead)",
                blueprint.name, blueprint.resource_type, description.resource_type
            )));
        }
        Ok(NewComponent {
            digest: digest(&bytes),
            bytes,
            name: description.name,
            plugin,
        })
    }
}

/// The update that gives `current` the new component and config, each taken from `current`
/// when not given, with the config validated by the component it will be used with.
async fn prepare_update(
    store: &dyn Store,
    runtime: &Runtime,
    current: &Blueprint,
    component: Option<&NewComponent>,
    config: Option<&str>,
) -> Result<store::BlueprintUpdate> {
    let config = config.unwrap_or(&current.config).to_string();
    let (wasm, digest, component_name) = match component {
        Some(new) => {
            check_config(&new.plugin, &config).await?;
            (
                Some(new.bytes.clone()),
                new.digest.clone(),
                new.name.clone(),
            )
        }
        None => {
            let bytes = store.component_get(&current.component).await?;
            check_config(&load(runtime, bytes).await?, &config).await?;
            let name = current.component_name.clone();
            (None, current.component.clone(), name)
        }
    };
    Ok(store::BlueprintUpdate {
        from_version: current.version,
        wasm,
        digest,
        component_name,
        config,
    })
}

/// Refuses a config the component finds invalid, with its reason.
async fn check_config(plugin: &crate::plugin::Plugin, config: &str) -> Result<()> {
    plugin
        .validate_config(config)
        .await
        .map_err(|e| Error::BadInput(e.to_string()))?
        .value
        .map_err(|reason| Error::BadInput(format!("the config is invalid: {reason}")))
}

/// Compiles a component off the async executor; a bad component is bad input.
async fn load(runtime: &Runtime, wasm: Vec<u8>) -> Result<crate::plugin::Plugin> {
    runtime
        .check_size(wasm.len())
        .map_err(|e| Error::BadInput(e.to_string()))?;
    let runtime = runtime.clone();
    tokio::task::spawn_blocking(move || runtime.load(&wasm))
        .await
        .map_err(|e| Error::Internal(e.into()))?
        .map_err(|e| Error::BadInput(e.to_string()))
}

/// Parses grants, naming the first that is malformed.
pub fn parse_grants(texts: &[String]) -> Result<Vec<Grant>> {
    texts
        .iter()
        .map(|text| text.parse::<Grant>().map_err(Error::BadInput))
        .collect()
}

/// Refuses `grants` for the blueprint `own` when a read-only path (`ro=`) of any blueprint's
/// would lie in a directory a local grant makes writable (`grant::check_read_only_paths`).
async fn check_read_only_paths(store: &dyn Store, own: &str, grants: &[Grant]) -> Result<()> {
    let blueprints = store.blueprint_list().await?;
    let mut all: Vec<(&str, &[Grant])> = vec![(own, grants)];
    let others = blueprints.iter().filter(|b| b.name != own);
    all.extend(others.map(|b| (b.name.as_str(), b.grants.as_slice())));
    crate::grant::check_read_only_paths(&all).map_err(Error::BadInput)
}

/// Refuses an authorization (`use:NAME`) that names no registered blueprint, other than `own`
/// (the blueprint given it, which may lease from itself).
async fn check_authorizations(store: &dyn Store, grants: &[Grant], own: &str) -> Result<()> {
    for grant in grants {
        let Grant::Use { blueprint } = grant else {
            continue;
        };
        if blueprint == own {
            continue;
        }
        match store.blueprint_by_name(blueprint).await {
            Err(store::Error::NotFound(_)) => {
                return Err(Error::BadInput(format!(
                    "{grant} names no registered blueprint: add {blueprint:?} first \
                     (`drydock blueprint list` shows those there are)"
                )));
            }
            found => {
                found?;
            }
        }
    }
    Ok(())
}

/// Changes a blueprint's grants: adds `grant`, removes `revoke`; the log says who and how. A
/// local directory granted again gets the new grant's options (`ro=`, caps) in place of its
/// old ones, and revoking `local:DIR` revokes DIR's grant whatever its options. The change is
/// applied to the grants the blueprint holds when it is written, so changes made at once all
/// land.
pub async fn change_grants(
    store: &dyn Store,
    blueprint: &Blueprint,
    grant: &[String],
    revoke: &[String],
    author: &str,
) -> Result<Blueprint> {
    let change = GrantChange {
        grant: parse_grants(grant)?,
        revoke: parse_grants(revoke)?,
    };
    check_authorizations(store, &change.grant, &blueprint.name).await?;
    if let Ok(grants) = change.apply(&blueprint.grants) {
        check_read_only_paths(store, &blueprint.name, &grants).await?;
    }
    match store
        .blueprint_change_grants(blueprint.id, &change, author)
        .await
    {
        Err(store::Error::Precondition(why)) => Err(Error::BadInput(why)),
        changed => Ok(changed?),
    }
}

/// Changes `blueprint`'s limits as `changes` say (`setting-up=4`, `log-total=default`), on
/// behalf of `author`; names what is wrong with a change, and then changes nothing.
pub async fn change_limits(
    store: &dyn Store,
    blueprint: &Blueprint,
    changes: &[String],
    author: &str,
) -> Result<Blueprint> {
    if changes.is_empty() {
        return Err(Error::BadInput(
            "name at least one KEY=VALUE change, such as setting-up=4".into(),
        ));
    }
    let changes = changes
        .iter()
        .map(|c| crate::limits::parse_change(c))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::BadInput)?;
    Ok(store
        .blueprint_change_limits(blueprint.id, &changes, author)
        .await?)
}

/// What a lease request asks for.
#[derive(Debug, Clone, Default)]
pub struct LeaseRequest {
    /// The resource type.
    pub resource_type: String,
    /// Attributes the resource must satisfy.
    pub attributes: Attributes,
    /// Blueprints (names or ids) it may use; empty means any.
    pub blueprints: Vec<String>,
    /// Released automatically after this long.
    pub until: Option<Duration>,
    /// How many leases.
    pub count: u32,
}

/// The most leases one request may ask for.
pub const MAX_LEASES_PER_REQUEST: u32 = 1000;

/// Leases just requested, and what their requester should know of them.
#[derive(Debug, Clone)]
pub struct Requested {
    /// The new leases.
    pub leases: Vec<Lease>,
    /// Why they will not be served as things stand (no blueprint makes their type).
    pub warning: Option<String>,
}

/// Why no lease of `resource_type` can be served by `blueprints`, if none makes it: the types
/// they make, to point at a typing mistake.
pub fn nothing_makes(blueprints: &[Blueprint], resource_type: &str) -> Option<String> {
    if blueprints.iter().any(|b| b.resource_type == resource_type) {
        return None;
    }
    let mut made: Vec<&str> = blueprints
        .iter()
        .map(|b| b.resource_type.as_str())
        .collect();
    made.sort_unstable();
    made.dedup();
    let made = match made.is_empty() {
        true => "none: no blueprint is registered".to_string(),
        false => made.join(", "),
    };
    Some(format!(
        "no blueprint makes {resource_type:?} resources (the types made here: {made}); a daemon \
         breaks the lease, since nothing can serve it: add a blueprint of that type first"
    ))
}

/// Records `request.count` pending leases owned by `owner`, all or none; warns when no
/// blueprint makes their type.
pub async fn request_leases(
    store: &dyn Store,
    request: LeaseRequest,
    owner: &str,
) -> Result<Requested> {
    action::check_key("resource type", &request.resource_type).map_err(Error::BadInput)?;
    action::check_attributes(&request.attributes, &action::Limits::default())
        .map_err(Error::BadInput)?;
    if !(1..=MAX_LEASES_PER_REQUEST).contains(&request.count) {
        return Err(Error::BadInput(format!(
            "count {} is outside 1..={MAX_LEASES_PER_REQUEST}",
            request.count
        )));
    }
    let mut allowed = Vec::new();
    for name in &request.blueprints {
        allowed.push(find_blueprint(store, name).await?.id);
    }
    let until = request
        .until
        .map(|after| crate::domain::deadline_after(store.now(), after))
        .transpose()
        .map_err(Error::BadInput)?;
    let blueprints = store.blueprint_list().await?;
    let warning = nothing_makes(&blueprints, &request.resource_type);
    let waiting_limit = blueprints
        .into_iter()
        .filter(|b| b.enabled && b.resource_type == request.resource_type)
        .filter(|b| allowed.is_empty() || allowed.contains(&b.id))
        .map(|b| (b.limits.get(Limit::PendingPerOwner), b.name))
        .max_by_key(|(most, _)| *most);
    let new = NewLease {
        resource_type: request.resource_type,
        attributes: request.attributes,
        allowed_blueprints: allowed,
        owner: owner.to_string(),
        until,
        waiting_limit,
    };
    let inserted = store.lease_insert(&new, request.count as usize).await;
    if let Err(store::Error::Limited {
        blueprint, limit, ..
    }) = &inserted
    {
        crate::metrics::global().limit_refused(blueprint, *limit);
    }
    Ok(Requested {
        leases: inserted?,
        warning,
    })
}

/// Queues `kind` for `target` on behalf of `author`.
pub async fn post(
    queue: &Queue,
    target: ObjectId,
    kind: CommandKind,
    author: &str,
) -> Result<Command> {
    Ok(queue.post(target, kind, author).await?)
}

/// Queues `kind` for every target on behalf of `author`, all or none.
pub async fn post_all(
    queue: &Queue,
    targets: &[ObjectId],
    kind: CommandKind,
    author: &str,
) -> Result<Vec<Command>> {
    Ok(queue.post_all(targets, kind, author).await?)
}

/// A resource with its leases and slot locks.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ResourceDetail {
    /// The resource.
    #[serde(flatten)]
    pub resource: Resource,
    /// Leases that hold or held it.
    pub leases: Vec<Lease>,
    /// Slot locks it holds.
    pub slot_locks: Vec<SlotLock>,
    /// Its place in the work queue.
    pub work: WorkItem,
}

/// A resource with its leases, slot locks and work queue state.
pub async fn resource_detail(store: &dyn Store, id: ObjectId) -> Result<ResourceDetail> {
    Ok(ResourceDetail {
        resource: store.resource_get(id).await?,
        leases: store.lease_list_on_resource(id).await?,
        slot_locks: store.slot_lock_list(Some(id)).await?,
        work: store.work_item_get(id).await?,
    })
}

/// A lease with its work queue state.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LeaseDetail {
    /// The lease.
    #[serde(flatten)]
    pub lease: Lease,
    /// Its place in the work queue.
    pub work: WorkItem,
}

/// The newest `limit` log entries of `object` (of every object when `None`), oldest first.
pub async fn log_last(
    store: &dyn Store,
    object: Option<ObjectId>,
    limit: i64,
) -> Result<Vec<crate::store::LogEntry>> {
    let limit = limit.max(0);
    Ok(match object {
        Some(object) => {
            let mut entries = store.log_list(Some(object), 0, i64::MAX).await?;
            entries.drain(..entries.len().saturating_sub(limit as usize));
            entries
        }
        None => store.log_recent(limit).await?,
    })
}

/// The newest `limit` steps of `object`'s audit trail, oldest first.
pub async fn steps_last(
    store: &dyn Store,
    object: ObjectId,
    limit: i64,
) -> Result<Vec<crate::store::StepRecord>> {
    let mut steps = store.step_list(object, 0, i64::MAX).await?;
    steps.drain(..steps.len().saturating_sub(limit.max(0) as usize));
    Ok(steps)
}

/// A lease with its work queue state.
pub async fn lease_detail(store: &dyn Store, id: ObjectId) -> Result<LeaseDetail> {
    Ok(LeaseDetail {
        lease: store.lease_get(id).await?,
        work: store.work_item_get(id).await?,
    })
}

/// What a list asks for, as text from a command line or a query string; [`list_query`] checks
/// it. Lists are newest first, a page at a time.
#[derive(Debug, Clone, Default, serde::Deserialize, clap::Args)]
pub struct ListFilter {
    /// Only those in this status.
    #[arg(long)]
    pub status: Option<String>,
    /// Only those of this resource type.
    #[arg(long = "type")]
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    /// Only those of this blueprint (name or id; a lease's is its resource's).
    #[arg(long)]
    pub blueprint: Option<String>,
    /// Only leases of this owner, such as `cli:alice`.
    #[arg(long)]
    pub owner: Option<String>,
    /// Only those that ended broken.
    #[arg(long)]
    #[serde(default)]
    pub failed: bool,
    /// The page after this one: the `next` cursor of the page before (an id).
    #[arg(long)]
    pub before: Option<String>,
    /// At most this many (1 to 1000; 50 when not given).
    #[arg(long)]
    pub limit: Option<u32>,
}

impl ListFilter {
    /// The address of this list at `base` (`/leases`), with every field that is set as its
    /// query: for links to other filters and pages.
    pub fn href(&self, base: &str) -> String {
        let limit = self.limit.map(|n| n.to_string());
        let fields = [
            ("status", self.status.as_deref()),
            ("type", self.resource_type.as_deref()),
            ("blueprint", self.blueprint.as_deref()),
            ("owner", self.owner.as_deref()),
            ("failed", self.failed.then_some("true")),
            ("before", self.before.as_deref()),
            ("limit", limit.as_deref()),
        ];
        let query: Vec<String> = fields
            .into_iter()
            .filter_map(|(key, value)| Some((key, value.filter(|v| !v.is_empty())?)))
            .map(|(key, value)| format!("{key}={}", url_escape(value)))
            .collect();
        match query.is_empty() {
            true => base.to_string(),
            false => format!("{base}?{}", query.join("&")),
        }
    }
}

/// `text` safe inside a query string value.
fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Checks a list filter for `kind` (`lease` or `resource`, whose status type is `S`) and
/// resolves it into a store query; names what is wrong otherwise.
pub async fn list_query<S>(store: &dyn Store, filter: &ListFilter, kind: &str) -> Result<ListQuery>
where
    S: std::str::FromStr<Err = String> + std::fmt::Display,
{
    let given = |text: &Option<String>| text.clone().filter(|t| !t.is_empty());
    let status = given(&filter.status)
        .map(|text| text.parse::<S>().map(|s| s.to_string()))
        .transpose()
        .map_err(Error::BadInput)?;
    let blueprint = match given(&filter.blueprint) {
        Some(text) => Some(find_blueprint(store, &text).await?.id),
        None => None,
    };
    let owner = given(&filter.owner);
    if owner.is_some() && kind != "lease" {
        return Err(Error::BadInput(format!(
            "a {kind} has no owner: filter leases by owner"
        )));
    }
    let before = given(&filter.before)
        .map(|text| parse_id(&text, kind).map(|id| id.number()))
        .transpose()?;
    let limit = filter.limit.unwrap_or(ListQuery::DEFAULT_LIMIT);
    if !(1..=ListQuery::MAX_LIMIT).contains(&limit) {
        return Err(Error::BadInput(format!(
            "limit {limit} is out of range: ask for 1 to {}",
            ListQuery::MAX_LIMIT
        )));
    }
    Ok(ListQuery {
        status,
        resource_type: given(&filter.resource_type),
        blueprint,
        owner,
        failed: filter.failed,
        before,
        limit,
    })
}
