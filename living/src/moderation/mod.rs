//! Moderation state in SQL and its rule sets in the cache: mutes, bans, slow mode, blocked
//! words, room admins and the audit log ([`entity`], [`migration`]), the service applying each
//! action ([`ModerationService`]) and the job that repairs the cache from SQL ([`sync`]).
//!
//! SQL is the truth. Every action runs in one transaction that bumps the anchor's rule-set
//! version, changes the rows and writes its audit row; then the live room's rule set is rebuilt
//! from one consistent read and written to the cache (newest version wins, see
//! `livehouse_moderation::store`), and a `ModerationEvent` goes on the bus for the gateways.
//!
//! Must not: decide who is an operator or whether a user exists (the api reads accounts), or
//! speak HTTP.

pub mod entity;
pub mod migration;
pub mod service;
pub mod sync;

pub use service::{
    Actor, LogEntry, ModerationService, ModerationState, Role, RoomRef, WordsChange,
};
