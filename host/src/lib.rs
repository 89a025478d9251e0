//! # drydock-host
//!
//! The Drydock daemon and CLI: leases on resources made by sandboxed WebAssembly blueprints.
//!
//! # Layout
//! - [`domain`]: the host's own types for what blueprints see (snapshots, contexts) and return
//!   (steps, actions). Independent of any contract version.
//! - [`plugin`]: loading, caching and calling blueprint components in a sandbox with time,
//!   memory and output limits; converts the generated bindings to `domain` types.
//! - [`action`]: validation of returned steps against what a call may touch. Pure code.
//! - [`store`]: every table and query behind the `Store` trait (SQLite), one transaction per
//!   state change, and the conformance suite every backend passes.
//! - [`queue`]: posting commands (insert + wake in one transaction) and handing out claims.
//! - [`lock`]: fenced claims; every worker write starts with the guard on its token.
//! - [`worker`]: the lease and resource state machines, the single writer of each object.
//! - [`allocator`]: finding or making a resource for a pending lease.
//! - [`grant`]: command interfaces as capabilities the operator grants to a blueprint.
//! - [`exec`]: running blueprints' `exec` actions through an authorised command interface, in
//!   a process group with bounded time and output.
//! - [`daemon`]: the dispatcher behind `drydock serve`.
//! - [`ops`]: the operations users ask for, shared by the CLI and the HTTP API.
//! - [`web`]: the HTTP API and the server-rendered web UI.
//! - [`testkit`]: an in-memory harness that lets blueprint authors test a component without a
//!   daemon or database.
//! - [`text`]: guest- and user-supplied text made safe for a terminal.
//! - [`cli`]: the `drydock` command line.
//!
//! Data flows one way: requests and releases become rows through [`ops`] and [`queue`]; the
//! [`daemon`] claims due objects; a [`worker`] reads a snapshot, calls the blueprint through
//! [`plugin`] outside any transaction, and applies the validated step as one guarded
//! [`store::Plan`].

pub mod action;
pub mod allocator;
pub mod cli;
pub mod daemon;
pub mod domain;
pub mod exec;
pub mod grant;
pub mod lock;
pub mod ops;
pub mod plugin;
pub mod queue;
pub mod store;
pub mod testkit;
pub mod text;
pub mod web;
pub mod worker;
