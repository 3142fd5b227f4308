//! Chat (1003, `bizCode 5555`): a pure validation ([`validate`]), the per-user rate limit, then
//! the message goes to the publish queue. The sender gets `data:"true"` with the message id
//! once the bus has it (or `unavailable`), and never the message itself on this connection;
//! its other devices get it like every viewer.
//!
//! What reaches the room is rebuilt from validated fields only (design §4): the room, the
//! content, the account's name and the danmaku style (colour and mode, checked against the
//! palette and the account's `vip` tag). A message whose delivered frame would exceed
//! [`protocol::MAX_CHAT_FRAME`] is refused.
//!
//! Moderation (design §3.2) is checked on the gateway's local copy of the room's rules, with no
//! round trip: a banned, muted or word-blocked message is refused with its slug (`muted` with
//! `untilMs`) and never reaches the bus.
//!
//! The per-user chat rate and the room's slow mode hold for the user as a whole, across devices
//! and gateways: after the local bucket (which stops a flood without a round trip) a token
//! bucket in the shared cache decides (`rate_limited` / `slow_mode`, both with `retryAfterMs`).
//! With the cache down, the local bucket alone applies.

use super::{ConnState, Flow};
use crate::protocol::{self, code, err, Frame, ImMsgBody, BIZ_CHAT, MAX_CONTENT_CHARS};
use crate::publisher::{Job, Sender};
use bytes::Bytes;
use livehouse_core::bus::TOPIC_CHAT;
use livehouse_core::events::ChatEvent;
use livehouse_core::time::now_ms;
use livehouse_moderation::Refusal;

/// A chat message that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValidChat {
    pub room: i64,
    pub content: String,
    pub color: Option<serde_json::Value>,
    pub mode: Option<serde_json::Value>,
}

/// Checks a chat body against the rules of design §3 for a login in `login_room`; the error
/// is the reply's slug.
pub(crate) fn validate(
    login_room: Option<i64>,
    body: &ImMsgBody,
) -> Result<ValidChat, &'static str> {
    if body.biz_code != Some(BIZ_CHAT) {
        return Err(err::BAD_BIZ_CODE);
    }
    let data = body.data.as_deref().unwrap_or_default();
    let cd = protocol::parse_chat_data(data).ok_or(err::BAD_JSON)?;
    if cd.content.trim().is_empty() {
        return Err(err::EMPTY_CONTENT);
    }
    if cd.content.chars().count() > MAX_CONTENT_CHARS {
        return Err(err::CONTENT_TOO_LONG);
    }
    let room = match (login_room, cd.room_id) {
        (Some(r), Some(d)) if r != d => return Err(err::WRONG_ROOM),
        (Some(r), _) | (None, Some(r)) => r,
        (None, None) => return Err(err::NO_ROOM),
    };
    Ok(ValidChat {
        room,
        content: cd.content,
        color: cd.color,
        mode: cd.mode,
    })
}

pub(crate) async fn run(st: &mut ConnState, f: &Frame) -> Flow {
    let Some(body) = super::body_of(st, f) else {
        return Flow::Continue;
    };
    let login = st.login.clone().expect("dispatch checked the login");
    let chat = match validate(login.room, &body) {
        Ok(c) => c,
        Err(slug) => {
            st.error(code::BIZ, slug);
            return Flow::Continue;
        }
    };
    let style = match livehouse_moderation::style::validate(
        chat.color.as_ref(),
        chat.mode.as_ref(),
        login.vip,
    ) {
        Ok(s) => s,
        Err(e) => {
            st.error(code::BIZ, e.slug());
            return Flow::Continue;
        }
    };
    let gw = st.gw.clone();
    let verdict = gw
        .moderation
        .check(chat.room, login.user, &chat.content, now_ms());
    if let Some(refusal) = verdict.refusal {
        let mut b = st.body("false");
        b.error = Some(refusal.slug().to_string());
        if let Refusal::Muted { until_ms } = refusal {
            b.until_ms = Some(until_ms);
        }
        st.reply(code::BIZ, b);
        return Flow::Continue;
    }
    let default_style = style == livehouse_moderation::style::Style::default();
    let data = protocol::chat_data_json(
        chat.room,
        &chat.content,
        login.name.as_deref(),
        (!default_style).then(|| (style.color.as_str(), style.mode.as_str())),
    );
    if protocol::delivered_chat_frame_len(&data) > protocol::MAX_CHAT_FRAME {
        st.error(code::BIZ, err::CONTENT_TOO_LONG);
        return Flow::Continue;
    }
    let rate = gw.cfg.chat_rate_per_sec.max(1) as f64;
    if !gw.conns.try_chat(login.user, gw.now(), rate) {
        st.error(code::BIZ, err::RATE_LIMITED);
        return Flow::Continue;
    }
    if let Some((slug, retry_after)) = shared_limits(
        &*gw.cache,
        login.user,
        chat.room,
        gw.cfg.chat_rate_per_sec.max(1),
        verdict.slow_mode_secs,
    )
    .await
    {
        let mut b = st.body("false");
        b.error = Some(slug.to_string());
        b.retry_after_ms = Some(retry_after.as_millis().max(1) as u64);
        st.reply(code::BIZ, b);
        return Flow::Continue;
    }
    let msg_id = gw.new_msg_id();
    let ev = ChatEvent {
        msg_id: msg_id.clone(),
        app_id: protocol::APP_ID,
        room_id: chat.room,
        sender_id: login.user,
        biz_code: BIZ_CHAT,
        data,
        sent_at_ms: now_ms(),
        origin_gateway: gw.cfg.gateway_id.clone(),
        origin_conn: st.h.id,
    };
    let job = Job {
        topic: TOPIC_CHAT,
        key: chat.room.to_string(),
        payload: Bytes::from(serde_json::to_vec(&ev).expect("serializable")),
        sender: Some((
            Sender {
                conn: st.h.clone(),
                user: login.user,
                msg_id,
            },
            tokio::time::Instant::now() + gw.cfg.publish_deadline,
        )),
    };
    if !gw.publisher.offer(job) {
        crate::stats::Counters::add(&gw.counters.publish_failed, 1);
        st.error(code::BIZ, err::UNAVAILABLE);
    }
    Flow::Continue
}

/// Longest wait for the shared limits before the message goes on under the local bucket alone.
const SHARED_LIMIT_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// The user's chat rate over all their devices and gateways (`rate` per second, burst `rate`,
/// as the local bucket), then the room's slow mode (one message per `slow_secs`), both as token
/// buckets in the shared cache. `Some((slug, retry after))` refuses the message. A cache error
/// lets it through: the gateway's local bucket has already limited it.
async fn shared_limits(
    cache: &dyn livehouse_core::cache::Cache,
    user: i64,
    room: i64,
    rate: u32,
    slow_secs: u32,
) -> Option<(&'static str, std::time::Duration)> {
    use std::time::Duration;
    let checks = [
        (
            format!("im:rate:{user}"),
            Duration::from_secs(1) / rate.max(1),
            rate.max(1),
            err::RATE_LIMITED,
        ),
        (
            format!("im:slow:{room}:{user}"),
            Duration::from_secs(u64::from(slow_secs)),
            1,
            err::SLOW_MODE,
        ),
    ];
    let active = if slow_secs == 0 { 1 } else { 2 };
    for (key, interval, burst, slug) in &checks[..active] {
        // The connection waits for this answer: a cache that does not answer quickly counts as
        // down, so an outage never holds the user's messages back (they would then arrive in a
        // burst and hit the local bucket).
        match tokio::time::timeout(SHARED_LIMIT_WAIT, cache.throttle(key, *interval, *burst)).await
        {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(wait))) => return Some((slug, wait)),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, user, "chat limits: cache unavailable, local only");
                return None;
            }
            Err(_) => {
                tracing::debug!(user, "chat limits: cache too slow, local only");
                return None;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(biz: i32, data: &str) -> ImMsgBody {
        ImMsgBody {
            biz_code: Some(biz),
            data: Some(data.to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn validation_rules() {
        let ok = |room, d: &str| validate(room, &body(BIZ_CHAT, d));
        assert_eq!(
            ok(Some(3), r#"{"roomId":3,"content":"hi"}"#),
            Ok(ValidChat {
                room: 3,
                content: "hi".into(),
                color: None,
                mode: None,
            })
        );
        assert_eq!(ok(Some(3), r#"{"content":"hi"}"#).unwrap().room, 3);
        assert_eq!(
            ok(None, r#"{"roomId":"4","content":"hi"}"#).unwrap().room,
            4
        );
        assert_eq!(ok(None, r#"{"content":"hi"}"#), Err(err::NO_ROOM));
        assert_eq!(
            ok(Some(3), r#"{"roomId":4,"content":"hi"}"#),
            Err(err::WRONG_ROOM)
        );
        assert_eq!(ok(Some(3), r#"{"content":"  "}"#), Err(err::EMPTY_CONTENT));
        assert_eq!(ok(Some(3), r#"{"content":7}"#), Err(err::BAD_JSON));
        assert_eq!(ok(Some(3), "nope"), Err(err::BAD_JSON));
        let long = format!(r#"{{"content":"{}"}}"#, "é".repeat(201));
        assert_eq!(ok(Some(3), &long), Err(err::CONTENT_TOO_LONG));
        let max = format!(r#"{{"content":"{}"}}"#, "é".repeat(200));
        assert!(ok(Some(3), &max).is_ok());
        assert_eq!(
            validate(Some(3), &body(1, r#"{"content":"hi"}"#)),
            Err(err::BAD_BIZ_CODE)
        );
    }
}
