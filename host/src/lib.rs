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
//! - [`testkit`]: an in-memory harness that lets blueprint authors test a component without a
//!   daemon or database.
//! - [`cli`]: the `drydock` command line.

pub mod action;
pub mod allocator;
pub mod cli;
pub mod daemon;
pub mod domain;
pub mod exec;
pub mod lock;
pub mod ops;
pub mod plugin;
pub mod queue;
pub mod store;
pub mod testkit;
pub mod web;
pub mod worker;
