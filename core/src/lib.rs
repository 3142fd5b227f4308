//! # livehouse-core
//!
//! The small crate every role shares. It owns:
//! - the **ports**: [`cache::Cache`] (key/value, lists, sets, sorted sets with TTLs), the event
//!   bus ([`bus`]), each room's chat stream ([`chatlog::ChatLog`]) and who is connected where
//!   ([`presence::Presence`]), each with an embedded
//!   adapter (in-process) and a distributed one (Redis, Kafka);
//! - [`backends::Backends`], the bundle of connected ports a role's `run` receives;
//! - a few shared helpers: clock ([`time`]), random tokens ([`ids`]), JWT ([`auth`]), connection
//!   caps and the client's address ([`limits`]).
//!
//! It must not know about HTTP, rooms or the wire protocol: those belong to the role crates.
//! Every adapter of a port passes the same conformance suite ([`cache::conformance`]).

pub mod auth;
pub mod backends;
pub mod bus;
pub mod cache;
pub mod chatlog;
pub mod db;
pub mod events;
pub mod ids;
pub mod limits;
pub mod presence;
pub mod testenv;
pub mod time;

pub use backends::Backends;
