//! `POST /api/v1/leases/{id}/exec`: runs a command on the resource an active lease holds, as
//! `drydock exec` does on the daemon's machine (the same grants, confinement and environment),
//! and streams its output back as it comes ([`crate::exec_stream`]).
//!
//! The body is `{"argv": ["make", "test"], "cwd": "src"}` (`cwd` optional, relative to the
//! interface's root). Its lease's owner (a requester's own lease) or an operator may run one.
//! What can be refused is refused before the stream starts, as a JSON error: a lease that is
//! not active (409), a resource that gives no command interface or an interface its blueprint
//! may not reach (409), a token or a daemon already running its most commands (429,
//! [`slots`]).
//!
//! Once started, the command runs under a supervisor task of its own, which stops it when its
//! lease stops being active and at the lease's `until`, whether or not its client still reads;
//! the response only relays its output. A client that goes away (a Ctrl-C in `drydock exec`,
//! noticed within a keep-alive) drops the relay, which stops the command too. The end frame
//! says how it ended.

pub mod slots;

use super::{ApiError, ApiResult, AppState, bad_json, lease_id, principal};
use crate::access::Role;
use crate::domain::{CommandInterface, ExecRequest, LeaseStatus};
use crate::exec::Confinement;
use crate::exec::{Chunk, Ids, Pipe};
use crate::exec_stream::{self, Ending, Frame};
use crate::store::{Lease, ObjectId};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often a quiet command's stream carries a keep-alive: a client that went away is noticed
/// (and its command stopped) at the second write after it left.
const KEEP_ALIVE_EVERY: Duration = Duration::from_millis(250);

/// How often a running command's lease is looked at, to stop the command once the lease is no
/// longer active.
const LEASE_CHECK_EVERY: Duration = Duration::from_secs(2);

/// The longest a command may run when its lease has no `until`.
const NO_UNTIL_LIMIT: Duration = Duration::from_millis(u32::MAX as u64);

/// What to run.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExecBody {
    /// The program and its arguments.
    argv: Vec<String>,
    /// The working directory, relative to the interface's root.
    #[serde(default)]
    cwd: Option<String>,
}

/// Starts the command and answers with its stream.
pub(super) async fn exec(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(text): Path<String>,
    body: Result<Json<ExecBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Response> {
    let principal = principal(&state, &headers).await?;
    let Json(body) = body.map_err(|r| bad_json(r, state.max_body))?;
    if body.argv.first().is_none_or(String::is_empty) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "`argv` needs the program to run first",
        ));
    }
    let store = state.store().clone();
    let lease = store.lease_get(lease_id(&text)?).await?;
    principal.may_act_on_lease(&lease.id.to_string(), &lease.owner, "running commands on")?;
    let (LeaseStatus::Active, Some(resource)) = (lease.status, lease.resource_id) else {
        return Err(not_active(&lease));
    };
    let resource = store.resource_get(resource).await?;
    let interface = state.plugins.interface(store.as_ref(), &lease, &resource);
    let reach = match interface.await.map_err(|error| {
        tracing::error!(%error, lease = %lease.id, "loading the blueprint for an exec");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("loading {}'s blueprint: {error}", resource.id),
        )
    })? {
        Ok(reach) => reach,
        Err(reason) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("{} gives no command interface: {reason}", resource.id),
            ));
        }
    };
    // Unconfined, a local command runs as the daemon's user, who can read the database and the
    // operator's tokens: through the API, that is an operator's power alone.
    let local = matches!(reach.interface, CommandInterface::Local { .. });
    if local && matches!(state.confinement, Confinement::Unconfined) {
        principal.needs(
            Role::Operator,
            "running commands on a daemon whose local execs are unconfined (--unconfined-exec)",
        )?;
    }
    let confinement = crate::worker::confinement_now(store.as_ref(), &state.confinement).await?;
    let request = ExecRequest {
        id: "exec".into(),
        lease_key: String::new(),
        argv: body.argv,
        cwd: body.cwd,
        timeout_ms: time_left(&lease, store.now()).as_millis() as u32,
    };
    let ids = Ids {
        lease: Some(lease.id.to_string()),
        resource: Some(resource.id.to_string()),
    };
    let slot = state
        .exec_slots
        .take(&principal.name)
        .map_err(|why| ApiError::new(StatusCode::TOO_MANY_REQUESTS, why))?;
    tracing::info!(lease = %lease.id, by = %principal.name, program = %request.argv[0], "exec over the API");
    let (sink, chunks) = mpsc::channel(16);
    let (ended_tx, ended) = tokio::sync::oneshot::channel();
    let supervised = lease.id;
    tokio::spawn(async move {
        let _slot = slot;
        let run = crate::exec::stream(&reach, &request, &ids, &confinement, sink);
        // Dropping the run (its lease ended) kills the command's process group.
        let ending = tokio::select! {
            result = run => Ending {
                exit_code: result.exit_code,
                error: Some(result.stderr.trim().to_string()).filter(|e| !e.is_empty()),
            },
            why = lease_ends(store.as_ref(), supervised) => Ending { exit_code: None, error: Some(why) },
        };
        let _ = ended_tx.send(ending);
    });
    let frames = Relay {
        chunks,
        ended: Some(ended),
        keep_alive: quiet_interval(KEEP_ALIVE_EVERY),
    };
    let body = axum::body::Body::from_stream(frames.into_stream());
    // A proxy in front (nginx, say) must pass each frame on as it comes, not buffer the body.
    let headers = [
        (header::CONTENT_TYPE, exec_stream::CONTENT_TYPE),
        (header::HeaderName::from_static("x-accel-buffering"), "no"),
    ];
    Ok((headers, body).into_response())
}

/// Returns, saying so, once `lease` is no longer active (looked at every
/// [`LEASE_CHECK_EVERY`]; a store that cannot be read is looked at again).
async fn lease_ends(store: &dyn crate::store::Store, lease: ObjectId) -> String {
    let mut check = quiet_interval(LEASE_CHECK_EVERY);
    loop {
        check.tick().await;
        match store.lease_get(lease).await {
            Ok(found) if found.status == LeaseStatus::Active => {}
            Ok(found) => return format!("stopped: {} is {} now", found.id, found.status),
            Err(error) => tracing::warn!(%lease, %error, "checking an exec's lease"),
        }
    }
}

/// A timer ticking every `period` that, after a stall, ticks once rather than in a burst.
fn quiet_interval(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    interval
}

/// 409 for a lease that cannot run commands.
fn not_active(lease: &Lease) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "{} is {}: only an active lease can run commands",
            lease.id, lease.status
        ),
    )
}

/// How long a command may run on `lease` from `now`: until its `until`.
fn time_left(lease: &Lease, now: crate::domain::Timestamp) -> Duration {
    match lease.until {
        Some(until) => Duration::from_millis(until.saturating_sub(now)).min(NO_UNTIL_LIMIT),
        None => NO_UNTIL_LIMIT,
    }
}

/// Turns a running command's output into frames: its chunks as they come, keep-alives while
/// it is quiet, and its end. Dropping it (the client went away) drops the receiver of the
/// command's output, which stops the command.
struct Relay {
    chunks: mpsc::Receiver<Chunk>,
    ended: Option<tokio::sync::oneshot::Receiver<Ending>>,
    keep_alive: tokio::time::Interval,
}

impl Relay {
    /// The frames, as a body stream.
    fn into_stream(
        self,
    ) -> impl futures_util::Stream<Item = Result<axum::body::Bytes, std::convert::Infallible>> {
        futures_util::stream::unfold(self, |mut relay| async move {
            let frame = relay.next_frame().await?;
            Some((Ok(frame.encode().into()), relay))
        })
    }

    /// The next frame; `None` after the end.
    async fn next_frame(&mut self) -> Option<Frame> {
        let ended = self.ended.as_mut()?;
        tokio::select! {
            biased;
            chunk = self.chunks.recv() => match chunk {
                Some(Chunk { pipe: Pipe::Stdout, bytes }) => Some(Frame::Stdout(bytes)),
                Some(Chunk { pipe: Pipe::Stderr, bytes }) => Some(Frame::Stderr(bytes)),
                // The command is done writing (or was stopped): its end follows.
                None => {
                    let ending = ended.await.unwrap_or_else(|_| Ending {
                        exit_code: None,
                        error: Some("the exec ended without a result".into()),
                    });
                    self.ended = None;
                    Some(Frame::End(ending))
                }
            },
            _ = self.keep_alive.tick() => Some(Frame::KeepAlive),
        }
    }
}
