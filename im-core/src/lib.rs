//! # livehouse-im-core — the IM gateway
//!
//! Long-lived client sessions over TCP (binary frames) and WebSocket (JSON text frames), both of
//! design §3. A session logs in with a short-lived IM token, heartbeats, sends chat messages
//! (validated, rate-limited, published on the bus keyed by room) and receives the chat messages
//! that the `msg` role pushes to this gateway, with per-session ACK tracking and one retry.
//!
//! Code map:
//! - [`protocol`]: frame codec, WebSocket JSON form, [`protocol::ImMsgBody`], codes. Pure.
//! - [`ws`]: server side of RFC 6455 framing (handshake key, decoder, frame encoders). Pure.
//! - `ack`: the allocation-free reader of ACK frames in the compact form clients write (the
//!   most frequent input at fan-out load); everything else takes the general parser.
//! - `hub`: the local index (connections, user → sessions) and each session's shared handle
//!   (bounded outbox, kick flag, deadlines).
//! - `session`: one task per connection, owning all per-connection state.
//! - `gateway`: [`Gateway`] (fan-out of push batches, sweeper, TCP listener, registration) and
//!   [`ImConfig`].
//! - `http`: the axum [`Gateway::router`] (`/ws`, URL login, `POST /internal/im/push`).
//! - [`registry`]: what the api role needs: IM tokens, gateway choice, online check.
//!
//! Invariants: no lock is held across an `.await`; every queue is bounded (a session that falls
//! behind is disconnected); a delivered message's frame is encoded once and shared by all
//! receiving sessions; a session ends exactly once and its cleanup (binding, offline event) runs
//! exactly once, skipped when a newer login of the same user and room replaced it.
//!
//! Must not: read the database or know room membership (the `msg` role decides receivers).

mod ack;
mod gateway;
mod http;
mod hub;
pub mod protocol;
pub mod registry;
mod session;
pub mod ws;

pub use gateway::{Gateway, GatewayStats, ImConfig};
