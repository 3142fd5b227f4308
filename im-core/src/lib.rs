//! # livehouse-im-core — the IM gateway
//!
//! Long-lived client connections over TCP (binary frames) and WebSocket (JSON text frames),
//! both of design §3. A connection logs in with a short-lived IM token (and a device id), joins
//! its room's chat stream at a position (recovering what it missed, design §3.1), heartbeats,
//! sends chat messages (validated, rate-limited, queued for the bus keyed by room) and receives
//! the room's stream, which the `msg` role pushes to every gateway serving the room, with
//! per-delivery ACK tracking and one retry.
//!
//! Data flows one way: bytes → `protocol`/`ws` (pure codecs, leaves) → the connection's task
//! (`conn`) → one function per command (`commands/`) → the publish queue (`publisher`) → the
//! bus; and back: pushes → the room's shard (`fanout`) → the connection's outbox → the socket.
//!
//! Code map:
//! - [`protocol`]: frame codec, WebSocket JSON form, [`protocol::ImMsgBody`], codes. Pure.
//! - [`ws`]: server side of RFC 6455 framing. Pure.
//! - [`ack`]: the allocation-free reader of ACKs in the compact form clients write.
//! - `accept`: TCP accept loop and the HTTP routes (`/ws`, URL login, the push endpoint).
//! - `conn`: one task per connection: socket, buffers, timers, pending ACKs.
//! - `commands`: login, chat, heartbeat, logout, ACK: a function each.
//! - `conns`: the local index of connections and each one's shared handle.
//! - `fanout`: rooms, their stream positions, delivery, recovery and repair from the chat log.
//! - `publisher`: the bounded queue of everything bound for the bus.
//! - `pending`: a connection's deliveries waiting for their ACK.
//! - `gateway`: [`Gateway`], its beat in the presence store, control events, the sweeper.
//! - [`registry`]: what the api role needs: IM tokens, the choice of a gateway, online check.
//! - `config`, `stats`: [`ImConfig`], [`GatewayStats`].
//!
//! Invariants: no lock is held across an `.await`; every queue is bounded (a connection that
//! falls behind is disconnected); a delivered message's frame is encoded once per gateway and
//! shared by every connection receiving it; each room's stream reaches each connection in
//! offset order with no gap and no duplicate; a connection's cleanup runs exactly once.
//!
//! Must not: read the database.

mod accept;
pub mod ack;
mod commands;
mod config;
mod conn;
mod conns;
mod fanout;
mod gateway;
mod pending;
pub mod protocol;
mod publisher;
pub mod registry;
mod stats;
pub mod ws;

pub use accept::INTERNAL_HEADER;
pub use config::{ImConfig, InternalAuth};
pub use gateway::{Gateway, ImPorts};
pub use stats::GatewayStats;
