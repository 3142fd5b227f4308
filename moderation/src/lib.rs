//! # livehouse-moderation
//!
//! What the writers of moderation state (the api and `living`) and its readers (the IM
//! gateways) share, with no SQL and no HTTP:
//! - [`rules`]: a room's rule set ([`RoomRules`]: mutes, bans, slow mode, blocked words, room
//!   admins, a version) and the limits every writer validates against;
//! - [`store`]: how a rule set is kept in the cache (key, encoding, newest-version-wins writes);
//! - [`filter`]: the blocked-word filter (case-insensitive, full-width = half-width) and the
//!   deployment-wide list read from a file (`--blocked-words FILE`);
//! - [`book`]: [`RuleBook`], a gateway's local copy of the rules of the rooms it serves: a
//!   synchronous check per chat message, kept current from the bus and the cache;
//! - [`frames`]: the recall (`bizCode 5556`) and notice (`bizCode 5557`) payloads;
//! - [`style`]: danmaku colour and mode validation.
//!
//! Must not: reach SQL or speak HTTP, decide who may moderate (the api does), or hold a lock
//! across an `.await`.

pub mod book;
pub mod filter;
pub mod frames;
pub mod rules;
pub mod store;
pub mod style;

pub use book::{Admission, ChatCheck, Enforcement, Refusal, RuleBook};
pub use filter::{fold, WordFilter, WordsError};
pub use rules::{Mute, RoomRules};
