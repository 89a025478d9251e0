//! The store's SQL, one module per table: plain functions over a [`Conn`](super::conn::Conn),
//! each running its statements on whatever connection it is given (a write transaction's, or
//! the backend's reads). Where the two backends need different SQL, the function picks the
//! variant for the connection's [`Dialect`](super::conn::Dialect), the two side by side.
//!
//! A function that reads inside a write transaction to decide what to write locks what it
//! reads on PostgreSQL (`FOR SHARE` to check, `FOR UPDATE` to change), where transactions are
//! READ COMMITTED; SQLite serialises write transactions, so what one reads cannot change before
//! it commits.
//!
//! `object` holds the statements that address a lease or a resource alike, by its id; `page`
//! the one-page lists of both; `counts` the gauges read across tables.

pub(crate) mod blueprint;
pub(crate) mod capacity;
pub(crate) mod command;
pub(crate) mod component;
pub(crate) mod counts;
pub(crate) mod daemon;
pub(crate) mod installation;
pub(crate) mod lease;
pub(crate) mod log;
pub(crate) mod object;
pub(crate) mod page;
pub(crate) mod resource;
pub(crate) mod session;
pub(crate) mod slot_lock;
pub(crate) mod step;
pub(crate) mod token;
pub(crate) mod work_item;
