//! One function per protocol command (design §3), behind [`dispatch`]'s short `match`, over a
//! connection's state ([`ConnState`]). The connection's task (`conn.rs`) reads frames and writes
//! what the commands queue in [`ConnState::out`]; the commands never touch the socket.
//!
//! - `login` (1001): the IM token, the device, the presence store, the room's stream position
//!   and recovery;
//! - `chat` (1003): validation as a pure function, the rate limit, the publish queue;
//! - heartbeat (1004), logout (1002) and ACK (1005) are the few lines below.
//!
//! Must not: do socket I/O, or wait on the bus (chat goes through the publish queue).

pub(crate) mod chat;
pub(crate) mod login;

use crate::conns::ConnHandle;
use crate::gateway::Gateway;
use crate::pending::Pending;
use crate::protocol::{self, code, err, Frame, ImMsgBody, Wire, APP_ID};
use crate::ws;
use bytes::Bytes;
use livehouse_core::bus::TOPIC_OFFLINE;
use livehouse_core::events::PresenceEvent;
use livehouse_core::presence;
use livehouse_core::time::now_ms;
use std::collections::VecDeque;
use std::sync::Arc;

/// What the connection does after a command.
pub(crate) enum Flow {
    Continue,
    /// Flush what is queued (plus a WebSocket close frame with this code), then close.
    Close(u16),
    /// Close at once without flushing.
    Drop,
}

/// A logged-in connection's identity.
#[derive(Debug, Clone)]
pub(crate) struct LoggedIn {
    pub user: i64,
    pub room: Option<i64>,
    pub device: Arc<str>,
    /// The account's display name, from the IM token: stamped on every chat message as
    /// `senderName`, so clients cannot speak under another name.
    pub name: Option<Arc<str>>,
    /// Epoch ms of the login.
    pub at_ms: i64,
    /// The account has the `vip` tag (danmaku colours outside the palette).
    pub vip: bool,
}

impl LoggedIn {
    pub fn presence(&self, gateway: &str, conn: u64) -> presence::Conn {
        presence::Conn {
            gateway: gateway.to_string(),
            conn,
            user: self.user,
            device: self.device.to_string(),
            room: self.room,
            at_ms: self.at_ms,
        }
    }
}

/// Everything a connection's task knows besides its socket.
pub(crate) struct ConnState {
    pub gw: Arc<Gateway>,
    pub h: Arc<ConnHandle>,
    pub wire: Wire,
    pub login: Option<LoggedIn>,
    pub pending: Pending,
    /// Replies queued by the commands, written next by the connection's task.
    pub out: VecDeque<Bytes>,
    cleanup: Cleanup,
}

impl ConnState {
    pub fn new(gw: Arc<Gateway>, h: Arc<ConnHandle>, wire: Wire) -> Self {
        ConnState {
            pending: Pending::new(gw.cfg.max_pending_acks),
            cleanup: Cleanup {
                gw: gw.clone(),
                conn: h.id,
                login: None,
            },
            gw,
            h,
            wire,
            login: None,
            out: VecDeque::new(),
        }
    }

    /// A body of this connection's user with `data`.
    pub fn body(&self, data: &str) -> ImMsgBody {
        ImMsgBody {
            app_id: Some(APP_ID),
            user_id: self.login.as_ref().map(|l| l.user),
            data: Some(data.to_owned()),
            ..Default::default()
        }
    }

    pub fn reply(&mut self, code: i32, body: ImMsgBody) {
        self.out
            .push_back(protocol::encode(self.wire, code, &body.to_json()));
    }

    /// The error reply of design §3: the request's code, `data:"false"`, the error slug.
    pub fn error(&mut self, code: i32, slug: &str) {
        let mut b = self.body("false");
        b.error = Some(slug.to_owned());
        self.reply(code, b);
    }

    /// Records the login, so that the cleanup undoes it.
    pub fn logged_in(&mut self, l: LoggedIn) {
        self.cleanup.login = Some(l.clone());
        self.login = Some(l);
        self.h
            .logged_in
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs the command `f` carries.
pub(crate) async fn dispatch(st: &mut ConnState, f: Frame) -> Flow {
    match f.code {
        code::FIRST => Flow::Continue,
        code::LOGIN => login::run(st, &f).await,
        _ if st.login.is_none() => {
            st.error(f.code, err::NOT_LOGGED_IN);
            Flow::Close(ws::close::POLICY)
        }
        code::ACK => ack(st, &f),
        code::HEARTBEAT => heartbeat(st, &f),
        code::LOGOUT => {
            st.reply(code::LOGOUT, st.body("true"));
            Flow::Close(ws::close::NORMAL)
        }
        code::BIZ => chat::run(st, &f).await,
        other => {
            st.error(other, err::UNKNOWN_CODE);
            Flow::Continue
        }
    }
}

/// Parses a command's body; on failure queues the `bad_json` error.
fn body_of(st: &mut ConnState, f: &Frame) -> Option<ImMsgBody> {
    match f.parse_body() {
        Ok(b) => Some(b),
        Err(_) => {
            st.error(f.code, err::BAD_JSON);
            None
        }
    }
}

/// 1004: answered; the connection's liveness is its gateway's (no per-connection cache write).
fn heartbeat(st: &mut ConnState, f: &Frame) -> Flow {
    if body_of(st, f).is_some() {
        st.reply(code::HEARTBEAT, st.body("true"));
    }
    Flow::Continue
}

/// 1005 in any form the fast path (`crate::ack`, in the connection's reader) did not take:
/// `msgId`, or several in `msgIds`.
fn ack(st: &mut ConnState, f: &Frame) -> Flow {
    let Some(b) = body_of(st, f) else {
        return Flow::Continue;
    };
    let ids: Vec<String> = b
        .msg_id
        .into_iter()
        .chain(b.msg_ids.unwrap_or_default())
        .collect();
    if ids.is_empty() {
        st.error(code::ACK, err::BAD_JSON);
    }
    for id in ids {
        st.pending.ack(&id);
    }
    Flow::Continue
}

/// Undoes what a connection registered: its index entry and, once logged in, its login, its
/// presence and (unless a newer login replaced it) an offline event. It runs from `Drop`,
/// exactly once, so it also runs when the connection's task unwinds from a bug.
struct Cleanup {
    gw: Arc<Gateway>,
    conn: u64,
    login: Option<LoggedIn>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let gw = &self.gw;
        if let Some(h) = gw.conns.get(self.conn) {
            h.close_outbox();
        }
        gw.conns.remove(self.conn);
        let Some(login) = self.login.take() else {
            return;
        };
        let still_bound = gw.conns.logout(login.user, self.conn);
        if still_bound {
            if let Some(room) = login.room {
                gw.offer_event(
                    TOPIC_OFFLINE,
                    room.to_string(),
                    &PresenceEvent {
                        user_id: login.user,
                        room_id: room,
                        gateway_id: gw.cfg.gateway_id.clone(),
                        at_ms: now_ms(),
                    },
                );
            }
        }
        // The presence store is async: its part runs in its own task (none without a runtime,
        // i.e. while the process exits; the gateway's state then dies with its beat).
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (gw, c) = (gw.clone(), login.presence(&gw.cfg.gateway_id, self.conn));
        rt.spawn(async move {
            if let Err(e) = gw.presence.leave(&c).await {
                tracing::warn!(error = %e, user = c.user, "presence leave failed");
            }
        });
    }
}
