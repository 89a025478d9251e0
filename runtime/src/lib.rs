//! # drydock-runtime
//!
//! Everything running a Drydock blueprint component needs, and nothing about databases, queues
//! or web servers: the daemon (`drydock-host`) is built on it, and blueprint authors depend on
//! it alone to test their components ([`testkit`]), at a fraction of the daemon's build.
//!
//! - [`domain`]: the host's own types for what blueprints see (snapshots, contexts) and return
//!   (steps, actions). Independent of any contract version.
//! - [`plugin`]: loading, caching and calling blueprint components in a sandbox with time,
//!   memory and output limits; converts the generated bindings to `domain` types.
//! - [`action`]: validation of returned steps against what a call may touch. Pure code.
//! - [`grant`]: command interfaces as capabilities the operator grants to a blueprint.
//! - [`exec`]: running `exec` actions through an authorised command interface, locally or over
//!   SSH, in a process group with bounded time and output.
//! - [`testkit`]: an in-memory host that drives a component through a lease's whole life, and
//!   JSON scenarios behind `drydock blueprint test`.
//! - [`text`]: guest- and user-supplied text made safe for a terminal.
//! - [`size`]: sizes in bytes as people write them (`512K`, `2G`).

pub mod action;
pub mod domain;
pub mod exec;
pub mod grant;
pub mod plugin;
pub mod size;
pub mod testkit;
pub mod text;
