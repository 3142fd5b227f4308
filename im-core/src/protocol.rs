//! The wire protocol of design §3, both forms, as pure functions and codecs (no I/O, no state).
//!
//! - TCP: `magic: u16 = 18673`, `code: i32`, `len: i32`, `body: [u8; len]` (UTF-8 JSON), big
//!   endian; [`FrameCodec`] is the `tokio_util` Decoder/Encoder, bounded to [`MAX_FRAME`] bytes.
//! - WebSocket: one text message per frame, JSON `{"magic":18673,"code":…,"len":…,"body":"…"}`
//!   ([`parse_ws_json`], [`ws_json`]).
//! - [`ImMsgBody`], the body both forms carry, lenient on input (numbers may arrive as strings,
//!   `data` as an object) and compact on output.
//!
//! Must not: touch sockets, sessions or the cache. Everything here is unit-tested in place.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Deserializer, Serialize};
use tokio_util::codec::{Decoder, Encoder};

/// The first two bytes of every TCP frame and the `magic` field of every WebSocket message.
pub const MAGIC: u16 = 18673;
/// Largest accepted frame, header included (TCP) or largest WebSocket message.
pub const MAX_FRAME: usize = 64 * 1024;
/// TCP header: magic (2) + code (4) + len (4).
pub const HEADER_LEN: usize = 10;
/// `appId` of this product.
pub const APP_ID: i32 = 10001;
/// `bizCode` of a room chat message.
pub const BIZ_CHAT: i32 = 5555;
/// `bizCode` of a recall: `data` `{roomId, msgIds}` (design §3.2).
pub const BIZ_RECALL: i32 = 5556;
/// `bizCode` of a room notice: `data` `{roomId, kind, …}` (design §3.2).
pub const BIZ_NOTICE: i32 = 5557;
/// Longest device id a login may carry.
pub const MAX_DEVICE_ID: usize = 64;
/// Longest chat content, in characters.
pub const MAX_CONTENT_CHARS: usize = 200;

/// Message codes (design §3).
pub mod code {
    /// First WebSocket message (accepted, no reply).
    pub const FIRST: i32 = 1000;
    pub const LOGIN: i32 = 1001;
    pub const LOGOUT: i32 = 1002;
    /// Business message (chat), both directions.
    pub const BIZ: i32 = 1003;
    pub const HEARTBEAT: i32 = 1004;
    /// Client → server acknowledgement of a delivered business message.
    pub const ACK: i32 = 1005;
}

/// Stable slugs carried in the `error` field of an error reply (same `code` as the request,
/// `data: "false"`).
pub mod err {
    pub const BAD_JSON: &str = "bad_json";
    pub const BAD_MAGIC: &str = "bad_magic";
    pub const TOO_LARGE: &str = "frame_too_large";
    pub const UNKNOWN_CODE: &str = "unknown_code";
    pub const NOT_LOGGED_IN: &str = "not_logged_in";
    pub const LOGIN_TIMEOUT: &str = "login_timeout";
    pub const ALREADY_LOGGED_IN: &str = "already_logged_in";
    pub const BAD_TOKEN: &str = "bad_token";
    pub const BAD_APP_ID: &str = "bad_app_id";
    pub const BAD_BIZ_CODE: &str = "bad_biz_code";
    pub const EMPTY_CONTENT: &str = "empty_content";
    pub const CONTENT_TOO_LONG: &str = "content_too_long";
    pub const NO_ROOM: &str = "no_room";
    pub const WRONG_ROOM: &str = "wrong_room";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const BAD_DEVICE_ID: &str = "bad_device_id";
    /// Moderation (design §3.2): the sender is banned from the room, muted (with `untilMs`), in
    /// slow mode (with `retryAfterMs`), or used a blocked word; `suspended`: the account is
    /// suspended platform-wide.
    pub const BANNED: &str = "banned";
    pub const MUTED: &str = "muted";
    pub const SLOW_MODE: &str = "slow_mode";
    pub const BLOCKED_WORD: &str = "blocked_word";
    pub const SUSPENDED: &str = "suspended";
    /// Danmaku style refused: a colour that is not `#rrggbb`, a colour outside the palette for
    /// an account without the `vip` tag, or an unknown mode.
    pub const BAD_COLOR: &str = "bad_color";
    pub const VIP_COLOR: &str = "vip_color";
    pub const BAD_MODE: &str = "bad_mode";
    /// The message could not be handed to the bus in time (it is not delivered); retry later.
    pub const UNAVAILABLE: &str = "unavailable";
    pub const INTERNAL: &str = "internal";
}

/// Which form a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Tcp,
    Ws,
}

/// One decoded message, either form: its code and its body (UTF-8 JSON text, maybe invalid).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub code: i32,
    pub body: Bytes,
}

impl Frame {
    pub fn new(code: i32, body: impl Into<Bytes>) -> Self {
        Frame {
            code,
            body: body.into(),
        }
    }

    /// The body parsed as [`ImMsgBody`]; an empty body is an empty `ImMsgBody`.
    pub fn parse_body(&self) -> Result<ImMsgBody, serde_json::Error> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(ImMsgBody::default());
        }
        serde_json::from_slice(&self.body)
    }
}

/// Why input was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("wrong magic {0}")]
    BadMagic(u16),
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("negative body length {0}")]
    NegativeLength(i32),
    #[error("invalid message: {0}")]
    BadJson(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl ProtocolError {
    /// The error slug sent back before closing.
    pub fn slug(&self) -> &'static str {
        match self {
            ProtocolError::BadMagic(_) => err::BAD_MAGIC,
            ProtocolError::TooLarge(_) | ProtocolError::NegativeLength(_) => err::TOO_LARGE,
            ProtocolError::BadJson(_) => err::BAD_JSON,
            ProtocolError::Io(_) => err::INTERNAL,
        }
    }
}

/// The TCP binary frame codec. Refuses a wrong magic or a frame over [`MAX_FRAME`] as soon as
/// the header shows it, before buffering the body.
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameCodec;

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        if src.len() >= 2 {
            let magic = u16::from_be_bytes([src[0], src[1]]);
            if magic != MAGIC {
                return Err(ProtocolError::BadMagic(magic));
            }
        }
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let code = i32::from_be_bytes([src[2], src[3], src[4], src[5]]);
        let len = i32::from_be_bytes([src[6], src[7], src[8], src[9]]);
        if len < 0 {
            return Err(ProtocolError::NegativeLength(len));
        }
        let total = HEADER_LEN + len as usize;
        if total > MAX_FRAME {
            return Err(ProtocolError::TooLarge(total));
        }
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let body = src.split_to(len as usize).freeze();
        Ok(Some(Frame { code, body }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        encode_tcp_into(item.code, &item.body, dst)
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        encode_tcp_into(item.code, &item.body, dst)
    }
}

fn encode_tcp_into(code: i32, body: &[u8], dst: &mut BytesMut) -> Result<(), ProtocolError> {
    let total = HEADER_LEN + body.len();
    if total > MAX_FRAME {
        return Err(ProtocolError::TooLarge(total));
    }
    dst.reserve(total);
    dst.put_u16(MAGIC);
    dst.put_i32(code);
    dst.put_i32(body.len() as i32);
    dst.put_slice(body);
    Ok(())
}

/// One TCP frame as bytes (no size check: outbound frames are built by the server).
pub fn tcp_frame(code: i32, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(HEADER_LEN + body.len());
    b.put_u16(MAGIC);
    b.put_i32(code);
    b.put_i32(body.len() as i32);
    b.put_slice(body);
    b.freeze()
}

#[derive(Serialize)]
struct WsOut<'a> {
    magic: u16,
    code: i32,
    len: usize,
    body: &'a str,
}

/// The WebSocket JSON text of one message: `{"magic":18673,"code":…,"len":…,"body":"…"}`
/// (`len` = byte length of `body`).
pub fn ws_json(code: i32, body: &str) -> String {
    serde_json::to_string(&WsOut {
        magic: MAGIC,
        code,
        len: body.len(),
        body,
    })
    .expect("serializing plain fields cannot fail")
}

#[derive(Deserialize)]
struct WsIn {
    #[serde(default, deserialize_with = "lenient::opt_i64_forgiving")]
    magic: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    code: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    body: Option<String>,
}

/// Parses one WebSocket text message. A missing or wrong `magic` is [`ProtocolError::BadMagic`]
/// (the session closes); anything else malformed is [`ProtocolError::BadJson`] (an error reply).
/// `body` may be a JSON string (the protocol) or an object (tolerated).
pub fn parse_ws_json(text: &[u8]) -> Result<Frame, ProtocolError> {
    let m: WsIn =
        serde_json::from_slice(text).map_err(|e| ProtocolError::BadJson(e.to_string()))?;
    let magic = m.magic;
    if magic != Some(MAGIC as i64) {
        return Err(ProtocolError::BadMagic(
            magic.and_then(|m| u16::try_from(m).ok()).unwrap_or(0),
        ));
    }
    let code = m
        .code
        .and_then(|c| i32::try_from(c).ok())
        .ok_or_else(|| ProtocolError::BadJson("missing code".into()))?;
    let body = m.body.map(Bytes::from).unwrap_or_default();
    Ok(Frame { code, body })
}

/// The body of every message (`ImMsgBody` of the seed system). Absent fields are omitted on
/// output. `roomId` and `error` are additions: the login's room and an error reply's reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImMsgBody {
    #[serde(
        default,
        deserialize_with = "lenient::opt_i32",
        skip_serializing_if = "Option::is_none"
    )]
    pub app_id: Option<i32>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_id: Option<i64>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub token: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_i32",
        skip_serializing_if = "Option::is_none"
    )]
    pub biz_code: Option<i32>,
    /// A JSON string (an object is accepted and kept as its JSON text).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub msg_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::opt_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub room_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The room stream's epoch: on a delivery, and on a login reply (design §3.1).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub epoch: Option<String>,
    /// The message's offset in its room's stream (a delivery), or the position a login starts
    /// from (a login reply).
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub offset: Option<u64>,
    /// Login reply to a login that asked to recover: whether every missed message follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// Login: the stream position the client had, to recover what it missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recover: Option<Recover>,
    /// Login: the client's device (one per browser tab); sessions of one user on different
    /// devices coexist.
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_id: Option<String>,
    /// ACK: several message ids at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_ids: Option<Vec<String>>,
    /// Error `muted`: until when (epoch ms; 0 = until the room closes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
    /// Error `slow_mode` or `rate_limited`: when the sender may speak again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Where a client's copy of a room's stream ends (the login's `recover`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recover {
    #[serde(deserialize_with = "lenient::string")]
    pub epoch: String,
    #[serde(deserialize_with = "lenient::u64")]
    pub offset: u64,
}

impl ImMsgBody {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("ImMsgBody always serializes")
    }
}

/// The `data` of a chat message (`bizCode 5555`): `{roomId, content, …}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatData {
    pub room_id: Option<i64>,
    pub content: String,
    /// The danmaku style fields as sent (validated by the gateway): `color`, `mode`.
    pub color: Option<serde_json::Value>,
    pub mode: Option<serde_json::Value>,
}

/// Parses a chat `data` string; `None` when it is not a JSON object with a string `content`.
pub fn parse_chat_data(data: &str) -> Option<ChatData> {
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    let obj = v.as_object()?;
    let content = obj.get("content")?.as_str()?.to_owned();
    let room_id = obj.get("roomId").and_then(lenient::value_i64);
    let field = |k: &str| obj.get(k).filter(|v| !v.is_null()).cloned();
    Some(ChatData {
        room_id,
        content,
        color: field("color"),
        mode: field("mode"),
    })
}

/// Largest delivered chat frame in bytes (the WebSocket form, the larger of the two): what one
/// accepted message may cost every viewer of its room.
pub const MAX_CHAT_FRAME: usize = 2 * 1024;
/// Longest message id the gateway makes (random instance prefix + hex counter); used to bound
/// the delivered frame before the id exists.
pub const MAX_MSG_ID_LEN: usize = 32;

/// The `data` a chat message is delivered with, rebuilt from validated fields only (design §4:
/// nothing a client sends reaches others unless it is a known field that passed validation).
/// `style`: the validated danmaku colour and mode, left out when they are the defaults.
pub fn chat_data_json(
    room_id: i64,
    content: &str,
    sender_name: Option<&str>,
    style: Option<(&str, &str)>,
) -> String {
    let mut m = serde_json::Map::new();
    m.insert("roomId".into(), room_id.into());
    m.insert("content".into(), content.into());
    if let Some(n) = sender_name {
        m.insert("senderName".into(), n.into());
    }
    if let Some((color, mode)) = style {
        m.insert("color".into(), color.into());
        m.insert("mode".into(), mode.into());
    }
    serde_json::Value::Object(m).to_string()
}

/// Longest epoch a chat log makes (used to bound the delivered frame before it exists).
pub const MAX_EPOCH_LEN: usize = 16;

/// A message in a room's stream, as delivered: the body of its 1003 frame.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub sender: i64,
    pub biz_code: i32,
    pub data: &'a str,
    pub msg_id: &'a str,
    pub room: i64,
    pub epoch: &'a str,
    pub offset: u64,
}

impl Delivery<'_> {
    /// The body JSON: `{appId, userId, bizCode, data, msgId, roomId, epoch, offset}`.
    pub fn body_json(&self) -> String {
        ImMsgBody {
            app_id: Some(APP_ID),
            user_id: Some(self.sender),
            biz_code: Some(self.biz_code),
            data: Some(self.data.to_owned()),
            msg_id: Some(self.msg_id.to_owned()),
            room_id: Some(self.room),
            epoch: Some(self.epoch.to_owned()),
            offset: Some(self.offset),
            ..Default::default()
        }
        .to_json()
    }
}

/// The size of the largest frame a chat message with this `data` can be delivered as (the
/// WebSocket form, with the longest ids), to refuse oversized messages at intake.
pub fn delivered_chat_frame_len(data: &str) -> usize {
    let body = Delivery {
        sender: i64::MIN,
        biz_code: BIZ_CHAT,
        data,
        msg_id: &"f".repeat(MAX_MSG_ID_LEN),
        room: i64::MIN,
        epoch: &"e".repeat(MAX_EPOCH_LEN),
        offset: u64::MAX,
    }
    .body_json();
    encode(Wire::Ws, code::BIZ, &body).len()
}

/// Encodes one outbound message in the session's form: a TCP frame, or a complete WebSocket
/// text frame (header included, unmasked as servers send), ready to write.
pub fn encode(wire: Wire, code: i32, body: &str) -> Bytes {
    match wire {
        Wire::Tcp => tcp_frame(code, body.as_bytes()),
        Wire::Ws => crate::ws::text_frame(ws_json(code, body).as_bytes()),
    }
}

/// Serde helpers that take a number or a numeric string (seed clients send both), without
/// building intermediate `Value`s (the ACK path runs once per delivery).
pub(crate) mod lenient {
    use super::*;
    use serde::de::{self, MapAccess, SeqAccess, Visitor};
    use serde_json::Value;
    use std::fmt;

    pub fn value_i64(v: &Value) -> Option<i64> {
        match v {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    struct I64V;

    impl<'de> Visitor<'de> for I64V {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer or a numeric string")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v).map(Some).map_err(E::custom)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.is_finite() && v.fract() == 0.0 {
                Ok(Some(v as i64))
            } else {
                Err(E::custom("not an integer"))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let t = v.trim();
            if t.is_empty() {
                return Ok(None);
            }
            t.parse().map(Some).map_err(E::custom)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    struct StrV;

    impl<'de> Visitor<'de> for StrV {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let v = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
            Ok(Some(v.to_string()))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            let v = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
            Ok(Some(v.to_string()))
        }
    }

    pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        d.deserialize_any(I64V)
    }

    /// Like [`opt_i64`], but a value of another kind is `None` instead of an error.
    pub fn opt_i64_forgiving<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Ok(d.deserialize_any(I64V).unwrap_or(None))
    }

    pub fn opt_i32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
        let v = opt_i64(d)?;
        v.map(|n| i32::try_from(n).map_err(|_| de::Error::custom("out of range")))
            .transpose()
    }

    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(StrV)
    }

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        opt_string(d)?.ok_or_else(|| de::Error::custom("expected a string"))
    }

    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        opt_i64(d)?
            .map(|n| u64::try_from(n).map_err(|_| de::Error::custom("negative")))
            .transpose()
    }

    pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        opt_u64(d)?.ok_or_else(|| de::Error::custom("expected a number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_round_trip_and_partial_input() {
        let mut codec = FrameCodec;
        let mut buf = BytesMut::new();
        codec
            .encode(Frame::new(code::LOGIN, &b"{\"userId\":1}"[..]), &mut buf)
            .unwrap();
        let whole = buf.clone();
        let mut part = BytesMut::from(&whole[..5]);
        assert!(codec.decode(&mut part).unwrap().is_none());
        part.extend_from_slice(&whole[5..]);
        let f = codec.decode(&mut part).unwrap().unwrap();
        assert_eq!(f.code, code::LOGIN);
        assert_eq!(&f.body[..], b"{\"userId\":1}");
        assert!(part.is_empty());
    }

    #[test]
    fn tcp_refuses_wrong_magic_from_two_bytes() {
        let mut b = BytesMut::from(&[0x12u8, 0x34][..]);
        assert!(matches!(
            FrameCodec.decode(&mut b),
            Err(ProtocolError::BadMagic(0x1234))
        ));
    }

    #[test]
    fn tcp_refuses_oversize_from_the_header() {
        let mut b = BytesMut::new();
        b.put_u16(MAGIC);
        b.put_i32(code::BIZ);
        b.put_i32(MAX_FRAME as i32);
        assert!(matches!(
            FrameCodec.decode(&mut b),
            Err(ProtocolError::TooLarge(_))
        ));
        let mut b = BytesMut::new();
        b.put_u16(MAGIC);
        b.put_i32(code::BIZ);
        b.put_i32(-1);
        assert!(FrameCodec.decode(&mut b).is_err());
    }

    #[test]
    fn ws_json_round_trip() {
        let text = ws_json(code::HEARTBEAT, "{\"userId\":7}");
        assert_eq!(
            text,
            r#"{"magic":18673,"code":1004,"len":12,"body":"{\"userId\":7}"}"#
        );
        let f = parse_ws_json(text.as_bytes()).unwrap();
        assert_eq!(f.code, code::HEARTBEAT);
        assert_eq!(f.parse_body().unwrap().user_id, Some(7));
    }

    #[test]
    fn ws_json_refusals() {
        assert!(matches!(
            parse_ws_json(br#"{"magic":1,"code":1001,"body":""}"#),
            Err(ProtocolError::BadMagic(1))
        ));
        assert!(matches!(
            parse_ws_json(br#"{"code":1001}"#),
            Err(ProtocolError::BadMagic(_))
        ));
        assert!(matches!(
            parse_ws_json(b"not json"),
            Err(ProtocolError::BadJson(_))
        ));
        // An object body is tolerated.
        let f = parse_ws_json(br#"{"magic":"18673","code":1005,"body":{"msgId":"m1"}}"#).unwrap();
        assert_eq!(f.parse_body().unwrap().msg_id.as_deref(), Some("m1"));
    }

    #[test]
    fn body_is_lenient_on_input_and_compact_on_output() {
        let b: ImMsgBody = serde_json::from_str(
            r#"{"appId":"10001","userId":"42","token":"t","roomId":9,"data":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(b.app_id, Some(APP_ID));
        assert_eq!(b.user_id, Some(42));
        assert_eq!(b.room_id, Some(9));
        assert_eq!(b.data.as_deref(), Some(r#"{"a":1}"#));
        let out = ImMsgBody {
            app_id: Some(APP_ID),
            data: Some("true".into()),
            ..Default::default()
        };
        assert_eq!(out.to_json(), r#"{"appId":10001,"data":"true"}"#);
        assert!(serde_json::from_str::<ImMsgBody>(r#"{"userId":"x"}"#).is_err());
    }

    #[test]
    fn chat_data_is_rebuilt_from_known_fields() {
        let d = chat_data_json(3, "hi \"there\"", Some("ann"), None);
        let v: serde_json::Value = serde_json::from_str(&d).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"roomId": 3, "content": "hi \"there\"", "senderName": "ann"})
        );
        // The worst case for the frame size: every character escaped at each of the three
        // nesting levels (data in body in envelope).
        let quotes = "\"".repeat(MAX_CONTENT_CHARS);
        let n = delivered_chat_frame_len(&chat_data_json(1, &quotes, Some(&"\\".repeat(64)), None));
        assert!(
            n > MAX_CHAT_FRAME,
            "{n}: a message of quotes must be refused by size"
        );
        let plain = "字".repeat(MAX_CONTENT_CHARS);
        let n = delivered_chat_frame_len(&chat_data_json(
            1,
            &plain,
            Some(&"名".repeat(64)),
            Some(("#ffffff", "bottom")),
        ));
        assert!(n <= MAX_CHAT_FRAME, "{n}: 200 CJK characters fit");
    }

    #[test]
    fn chat_data() {
        let d = parse_chat_data(r#"{"roomId":"3","content":"hi"}"#).unwrap();
        assert_eq!(d.room_id, Some(3));
        assert_eq!(d.content, "hi");
        assert!(parse_chat_data(r#"{"roomId":3}"#).is_none());
        assert!(parse_chat_data("nope").is_none());
    }
}
