//! # drydock-host
//!
//! The Drydock daemon and CLI: leases on resources made by sandboxed WebAssembly blueprints.
//!
//! # Layout
//! What running a component needs lives in the `drydock-runtime` crate and is re-exported here:
//! [`domain`], [`plugin`], [`action`], [`grant`], [`exec`], [`testkit`] and [`text`]. This crate
//! adds the database, the queue, the workers and the interfaces people use:
//! - [`store`]: every table and query behind the `Store` trait (SQLite), one transaction per
//!   state change, and the conformance suite every backend passes.
//! - [`queue`]: posting commands (insert + wake in one transaction) and handing out claims.
//! - [`lock`]: fenced claims; every worker write starts with the guard on its token.
//! - [`commit`]: group commit: many workers' fenced plans share one durable transaction.
//! - [`worker`]: the lease and resource state machines, the single writer of each object.
//! - [`allocator`]: finding or making a resource for a pending lease.
//! - [`authorization`]: which blueprints a blueprint may hold supporting leases on.
//! - [`limits`]: what one blueprint may take: how fast and wide it grows, what it may write.
//! - [`quota`]: each daemon's accounting of what blueprints write, against those limits.
//! - [`scheduler`]: the fair share of the workers among tenants, taken at every claim.
//! - [`daemon`]: the dispatcher behind `drydock serve`.
//! - [`ops`]: the operations users ask for, shared by the CLI and the HTTP API.
//! - [`web`]: the HTTP API and the server-rendered web UI.
//! - [`exec_stream`]: the wire format of a command's output streamed over the API.
//! - [`metrics`]: the Prometheus metrics served at `/metrics`.
//! - [`cli`]: the `drydock` command line.
//!
//! Data flows one way: requests and releases become rows through [`ops`] and [`queue`]; the
//! [`daemon`] claims due objects; a [`worker`] reads a snapshot, calls the blueprint through
//! [`plugin`] outside any transaction, and applies the validated step as one guarded
//! [`store::Plan`].

pub use drydock_runtime::{action, domain, exec, grant, plugin, size, testkit, text};

pub mod access;
pub mod allocator;
pub mod authorization;
pub mod backoff;
pub mod cli;
pub mod commit;
pub mod daemon;
pub mod exec_stream;
pub mod http_warning;
pub mod limits;
pub mod lock;
pub mod metrics;
pub mod ops;
pub mod panics;
pub mod queue;
pub mod quota;
pub mod scheduler;
pub mod store;
pub mod web;
pub mod worker;
