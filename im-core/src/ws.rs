//! Server side of RFC 6455 framing, just what the gateway needs: the handshake's accept key, a
//! bounded frame decoder for client frames (masked, maybe fragmented) and encoders for
//! unmasked server frames.
//!
//! Why not tungstenite: outbound frames here are complete byte strings (header included) built
//! once per message and shared by every session (`Bytes`), and an idle connection owns no
//! buffer at all. Tests drive this codec with a real tungstenite client.
//!
//! Must not: do I/O, know about the IM protocol, or buffer more than [`MAX_FRAME`] per message.

use crate::protocol::MAX_FRAME;
use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};
use tokio_util::codec::Decoder;

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close codes used by the gateway.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const BAD_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// A complete message or control frame from the client.
#[derive(Debug, PartialEq)]
pub enum WsEvent {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    Close(Option<u16>),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WsError {
    #[error("websocket message over {MAX_FRAME} bytes")]
    TooLarge,
    #[error("websocket protocol violation: {0}")]
    Protocol(&'static str),
    #[error("websocket text is not UTF-8")]
    BadUtf8,
    #[error("i/o error")]
    Io,
}

impl From<std::io::Error> for WsError {
    fn from(_: std::io::Error) -> Self {
        WsError::Io
    }
}

impl WsError {
    /// Close code to send for this error.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::TooLarge => close::TOO_BIG,
            WsError::BadUtf8 => close::BAD_DATA,
            WsError::Protocol(_) | WsError::Io => close::PROTOCOL,
        }
    }
}

/// Decoder of client frames. Holds a buffer only while a fragmented message is incomplete.
#[derive(Debug, Default)]
pub struct WsCodec {
    frag: Option<(u8, BytesMut)>,
}

impl Decoder for WsCodec {
    type Item = WsEvent;
    type Error = WsError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<WsEvent>, WsError> {
        loop {
            if src.len() < 2 {
                return Ok(None);
            }
            let (b0, b1) = (src[0], src[1]);
            if b0 & 0x70 != 0 {
                return Err(WsError::Protocol("reserved bits set"));
            }
            if b1 & 0x80 == 0 {
                return Err(WsError::Protocol("client frame not masked"));
            }
            let fin = b0 & 0x80 != 0;
            let op = b0 & 0x0f;
            let (len, mut hdr) = match b1 & 0x7f {
                126 => {
                    if src.len() < 4 {
                        return Ok(None);
                    }
                    (u16::from_be_bytes([src[2], src[3]]) as u64, 4)
                }
                127 => {
                    if src.len() < 10 {
                        return Ok(None);
                    }
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&src[2..10]);
                    (u64::from_be_bytes(b), 10)
                }
                n => (n as u64, 2),
            };
            let is_control = op & 0x08 != 0;
            if is_control && (!fin || len > 125) {
                // RFC 6455 §5.5: control frames are short and never fragmented.
                return Err(WsError::Protocol("bad control frame"));
            }
            // Checked before any arithmetic: `len` is whatever the peer wrote (up to u64::MAX).
            // A control frame may arrive between the fragments of a message and does not add to
            // it.
            let so_far = if is_control {
                0
            } else {
                self.frag.as_ref().map_or(0, |(_, b)| b.len())
            };
            if len > (MAX_FRAME - so_far) as u64 {
                return Err(WsError::TooLarge);
            }
            let len = len as usize;
            hdr += 4;
            if src.len() < hdr + len {
                src.reserve(hdr + len - src.len());
                return Ok(None);
            }
            let mask = [src[hdr - 4], src[hdr - 3], src[hdr - 2], src[hdr - 1]];
            src.advance(hdr);
            let mut payload = src.split_to(len);
            unmask(&mut payload, mask);
            match op {
                OP_CLOSE | OP_PING | OP_PONG => {
                    return Ok(Some(match op {
                        OP_PING => WsEvent::Ping(payload.freeze()),
                        OP_PONG => WsEvent::Pong,
                        _ => WsEvent::Close(
                            (payload.len() >= 2)
                                .then(|| u16::from_be_bytes([payload[0], payload[1]])),
                        ),
                    }));
                }
                OP_TEXT | OP_BINARY => {
                    if self.frag.is_some() {
                        return Err(WsError::Protocol("new message inside a fragmented one"));
                    }
                    if fin {
                        return finish(op, payload).map(Some);
                    }
                    self.frag = Some((op, payload));
                }
                OP_CONT => {
                    let Some((_, buf)) = self.frag.as_mut() else {
                        return Err(WsError::Protocol("continuation without a message"));
                    };
                    buf.extend_from_slice(&payload);
                    if fin {
                        let (op, buf) = self.frag.take().expect("checked above");
                        return finish(op, buf).map(Some);
                    }
                }
                _ => return Err(WsError::Protocol("unknown opcode")),
            }
        }
    }
}

fn finish(op: u8, payload: BytesMut) -> Result<WsEvent, WsError> {
    if op == OP_TEXT {
        if std::str::from_utf8(&payload).is_err() {
            return Err(WsError::BadUtf8);
        }
        Ok(WsEvent::Text(payload.freeze()))
    } else {
        Ok(WsEvent::Binary(payload.freeze()))
    }
}

fn unmask(buf: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = buf.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// One unmasked server frame (FIN set) with `payload`.
pub fn frame(op: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut b = BytesMut::with_capacity(len + 10);
    b.put_u8(0x80 | op);
    if len < 126 {
        b.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        b.put_u8(126);
        b.put_u16(len as u16);
    } else {
        b.put_u8(127);
        b.put_u64(len as u64);
    }
    b.put_slice(payload);
    b.freeze()
}

/// A text frame (the payload must be UTF-8).
pub fn text_frame(payload: &[u8]) -> Bytes {
    frame(OP_TEXT, payload)
}

/// A close frame with a status code and a short reason.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut p = Vec::with_capacity(2 + reason.len());
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(&reason.as_bytes()[..reason.len().min(120)]);
    frame(OP_CLOSE, &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut v = vec![if fin { 0x80 } else { 0 } | op];
        let len = payload.len();
        if len < 126 {
            v.push(0x80 | len as u8);
        } else if len <= 65535 {
            v.push(0x80 | 126);
            v.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            v.push(0x80 | 127);
            v.extend_from_slice(&(len as u64).to_be_bytes());
        }
        v.extend_from_slice(&mask);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        v
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn decodes_masked_text_byte_by_byte() {
        let bytes = client_frame(true, OP_TEXT, b"hello world, masked");
        let mut c = WsCodec::default();
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            buf.put_u8(*b);
            let r = c.decode(&mut buf).unwrap();
            if i + 1 < bytes.len() {
                assert!(r.is_none());
            } else {
                assert_eq!(
                    r,
                    Some(WsEvent::Text(Bytes::from_static(b"hello world, masked")))
                );
            }
        }
    }

    #[test]
    fn fragments_and_interleaved_ping() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&client_frame(false, OP_TEXT, b"ab"));
        buf.extend_from_slice(&client_frame(true, OP_PING, b"p"));
        buf.extend_from_slice(&client_frame(true, OP_CONT, b"cd"));
        let mut c = WsCodec::default();
        assert_eq!(
            c.decode(&mut buf).unwrap(),
            Some(WsEvent::Ping(Bytes::from_static(b"p")))
        );
        assert_eq!(
            c.decode(&mut buf).unwrap(),
            Some(WsEvent::Text(Bytes::from_static(b"abcd")))
        );
    }

    #[test]
    fn refusals() {
        let mut c = WsCodec::default();
        let big = vec![b'a'; MAX_FRAME + 1];
        let mut buf = BytesMut::from(&client_frame(true, OP_TEXT, &big)[..14]);
        assert_eq!(c.decode(&mut buf), Err(WsError::TooLarge));
        let mut buf = BytesMut::from(&[0x81u8, 0x01, b'a'][..]);
        assert!(matches!(c.decode(&mut buf), Err(WsError::Protocol(_))));
        let mut buf = BytesMut::from(&client_frame(true, OP_TEXT, &[0xff, 0xfe])[..]);
        assert_eq!(c.decode(&mut buf), Err(WsError::BadUtf8));
    }

    /// Regression: a continuation frame with the 64-bit length `u64::MAX` after a fragment made
    /// `len + so_far` wrap and `split_to` panic.
    #[test]
    fn huge_continuation_length_is_refused_not_wrapped() {
        for len in [
            u64::MAX,
            u64::MAX - 1,
            (MAX_FRAME as u64) << 40,
            MAX_FRAME as u64,
        ] {
            let mut c = WsCodec::default();
            let mut buf = BytesMut::from(&client_frame(false, OP_TEXT, b"a")[..]);
            assert_eq!(c.decode(&mut buf), Ok(None));
            buf.extend_from_slice(&[0x80, 0x80 | 127]);
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(&[1, 2, 3, 4]);
            assert_eq!(c.decode(&mut buf), Err(WsError::TooLarge), "length {len}");
        }
        // A control frame announcing more than 125 bytes is refused from its header.
        let mut c = WsCodec::default();
        let mut buf = BytesMut::from(&[0x89u8, 0x80 | 127][..]);
        buf.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(c.decode(&mut buf), Err(WsError::Protocol(_))));
    }

    #[test]
    fn server_frames() {
        assert_eq!(&text_frame(b"hi")[..], &[0x81, 2, b'h', b'i']);
        let f = text_frame(&[b'x'; 300]);
        assert_eq!(&f[..4], &[0x81, 126, 1, 44]);
        assert_eq!(&close_frame(1000, "")[..], &[0x88, 2, 0x03, 0xe8]);
    }
}
