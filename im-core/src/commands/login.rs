//! Login (1001), from a frame or the WebSocket URL form: the IM token names the user (and their
//! display name); the device id sets which older login this one replaces; the presence store
//! finds the user's logins on other gateways; the fan-out gives the room's stream position and,
//! when asked, recovers what the client missed (design §3.1).
//!
//! Replacement: the same user, device and room on any gateway is closed (here directly, on
//! another gateway by a control event); beyond `max_conns_per_user` the oldest goes too.

use super::{ConnState, Flow, LoggedIn};
use crate::conns::{Kick, Login};
use crate::fanout::Join;
use crate::protocol::{code, err, lenient, Frame, ImMsgBody, Recover, APP_ID, MAX_DEVICE_ID};
use crate::ws;
use livehouse_core::bus::{TOPIC_CONTROL, TOPIC_ONLINE};
use livehouse_core::events::{ControlEvent, PresenceEvent};
use livehouse_core::time::now_ms;
use livehouse_moderation::Admission;
use std::sync::Arc;

/// Login parameters, from a 1001 frame or the WebSocket URL form.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoginReq {
    pub app_id: Option<i32>,
    pub user_id: Option<i64>,
    pub token: String,
    pub room_id: Option<i64>,
    pub device_id: Option<String>,
    pub recover: Option<Recover>,
}

impl LoginReq {
    fn from_body(b: ImMsgBody) -> Self {
        // The room may come at the top level or inside `data` (`{"roomId":…}`).
        let room_id = b.room_id.or_else(|| {
            b.data.as_deref().and_then(|d| {
                serde_json::from_str::<serde_json::Value>(d)
                    .ok()
                    .and_then(|v| v.get("roomId").and_then(lenient::value_i64))
            })
        });
        LoginReq {
            app_id: b.app_id,
            user_id: b.user_id,
            token: b.token.unwrap_or_default(),
            room_id,
            device_id: b.device_id,
            recover: b.recover,
        }
    }
}

/// A device id: at most 64 printable ASCII characters without spaces.
fn valid_device(d: &str) -> bool {
    d.len() <= MAX_DEVICE_ID && d.bytes().all(|b| b.is_ascii_graphic())
}

/// 1001 as a frame.
pub(crate) async fn run(st: &mut ConnState, f: &Frame) -> Flow {
    let Some(body) = super::body_of(st, f) else {
        return Flow::Continue;
    };
    match &st.login {
        None => login(st, LoginReq::from_body(body)).await,
        Some(l) if body.user_id == Some(l.user) => {
            // Already logged in by URL: answered like a login (its position was sent then).
            let mut ok = st.body("true");
            ok.room_id = l.room;
            st.reply(code::LOGIN, ok);
            Flow::Continue
        }
        Some(_) => {
            st.error(code::LOGIN, err::ALREADY_LOGGED_IN);
            Flow::Continue
        }
    }
}

/// Logs the connection in, or refuses and closes.
pub(crate) async fn login(st: &mut ConnState, req: LoginReq) -> Flow {
    let fail = |st: &mut ConnState, slug| {
        st.error(code::LOGIN, slug);
        Flow::Close(ws::close::POLICY)
    };
    if req.app_id.is_some_and(|a| a != APP_ID) {
        return fail(st, err::BAD_APP_ID);
    }
    let Some(user) = req.user_id else {
        return fail(st, err::BAD_TOKEN);
    };
    let device = req.device_id.unwrap_or_default();
    if !valid_device(&device) {
        return fail(st, err::BAD_DEVICE_ID);
    }
    let gw = st.gw.clone();
    let claims = match crate::registry::token_claims(&*gw.cache, &req.token).await {
        Ok(Some(c)) if c.user_id == user => c,
        Ok(_) => return fail(st, err::BAD_TOKEN),
        Err(e) => {
            tracing::warn!(error = %e, "im token lookup failed");
            return fail(st, err::INTERNAL);
        }
    };
    // Moderation (design §3.2): a banned user never gets into the room's chat; a suspended
    // account into none. The rules of a room are loaded on its first login here.
    let admission = match req.room_id {
        Some(room) => gw.moderation.admit(room, user).await,
        None if gw.moderation.is_suspended(user) => Ok(Admission::Suspended),
        None => Ok(Admission::Allowed),
    };
    match admission {
        Ok(Admission::Allowed) => {}
        Ok(Admission::Banned) => return fail(st, err::BANNED),
        Ok(Admission::Suspended) => return fail(st, err::SUSPENDED),
        // The cache is down: the rules this gateway holds were checked; let the login in.
        Err(e) => tracing::warn!(error = %e, user, "moderation rules unavailable at login"),
    }
    let me = LoggedIn {
        user,
        room: req.room_id,
        device: Arc::from(device),
        name: (!claims.name.is_empty()).then(|| Arc::from(claims.name)),
        at_ms: now_ms(),
        vip: claims.vip,
    };
    // This gateway's own older login of the same slot goes at once (works without the cache).
    let rate = gw.cfg.chat_rate_per_sec.max(1) as f64;
    let local = Login {
        conn: st.h.clone(),
        device: me.device.clone(),
        room: me.room,
        at_ms: me.at_ms,
    };
    for old in gw.conns.login(user, local, gw.now(), rate) {
        old.kick(Kick::Replaced);
    }
    st.logged_in(me.clone());
    tracing::debug!(user, room = ?me.room, device = %me.device, "im login");

    // Logins of the same slot on other gateways, and the per-user limit: the presence store.
    let pc = me.presence(&gw.cfg.gateway_id, st.h.id);
    match gw
        .presence
        .join(&pc, gw.cfg.max_conns_per_user, now_ms())
        .await
    {
        Ok(displaced) => {
            for d in displaced {
                if d.gateway == gw.cfg.gateway_id {
                    if let Some(c) = gw.conns.get(d.conn) {
                        c.kick(Kick::Replaced);
                    }
                } else {
                    gw.offer_event(
                        TOPIC_CONTROL,
                        d.gateway.clone(),
                        &ControlEvent::Replace {
                            gateway_id: d.gateway,
                            conn: d.conn,
                        },
                    );
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, user, "presence join failed; local logins only"),
    }

    let mut ok = st.body("true");
    ok.room_id = me.room;
    if let Some(room) = me.room {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let join = Join {
            room,
            user,
            conn: st.h.clone(),
            recover: req.recover.map(|r| (r.epoch, r.offset)),
            reply: tx,
        };
        let joined = match gw.fanout.join(join).await {
            Ok(()) => rx.await.ok(),
            Err(_) => None,
        };
        let Some(joined) = joined else {
            return fail(st, err::INTERNAL);
        };
        ok.epoch = Some(joined.epoch);
        ok.offset = Some(joined.offset);
        ok.recovered = joined.recovered;
        gw.offer_event(
            TOPIC_ONLINE,
            room.to_string(),
            &PresenceEvent {
                user_id: user,
                room_id: room,
                gateway_id: gw.cfg.gateway_id.clone(),
                at_ms: me.at_ms,
            },
        );
    }
    st.reply(code::LOGIN, ok);
    Flow::Continue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids() {
        assert!(valid_device(""));
        assert!(valid_device("tab-8f3a_2:x.y"));
        assert!(valid_device(&"a".repeat(64)));
        assert!(!valid_device(&"a".repeat(65)));
        assert!(!valid_device("has space"));
        assert!(!valid_device("tab\u{0}"));
        assert!(!valid_device("äöü"));
    }

    #[test]
    fn login_body_forms() {
        let b: ImMsgBody = serde_json::from_str(
            r#"{"appId":10001,"userId":"4","token":"t","data":"{\"roomId\":\"9\"}",
                "deviceId":"d1","recover":{"epoch":"ab","offset":"12"}}"#,
        )
        .unwrap();
        let r = LoginReq::from_body(b);
        assert_eq!((r.user_id, r.room_id), (Some(4), Some(9)));
        assert_eq!(r.device_id.as_deref(), Some("d1"));
        assert_eq!(
            r.recover,
            Some(Recover {
                epoch: "ab".into(),
                offset: 12
            })
        );
    }
}
