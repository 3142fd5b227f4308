//! The ACK fast path: reads the message id out of an ACK (1005) in the exact, compact forms the
//! clients write, without allocating and without the general JSON parser.
//!
//! Every delivered message is acknowledged, so at fan-out load ACKs are most of what a gateway
//! reads (one per viewer per message: 550,000/s in the danmaku benchmark), and the general path
//! (serde into the envelope, then again into [`crate::protocol::ImMsgBody`]) cost about a third
//! of the server's CPU there.
//!
//! Accepted: a WebSocket text message `{"magic":18673,"code":1005,"len":<digits>,"body":"<body>"}`
//! whose body (JSON-escaped) is, or a TCP frame body that is, a flat object `{…}` with no
//! whitespace of at most one each of `"appId":<int>`, `"userId":<int>`, `"msgId":"<id>"`, in any
//! order, where `<id>` is 1–64 characters of `[A-Za-z0-9_.:-]`. That is what `web/js/im.js`
//! (`JSON.stringify`) and the bench client write. Anything else, valid or not, returns `None` and
//! takes the general path, so this reader never changes what a frame means: on every input it
//! accepts, the general parser reads the same code and `msgId` (tested below).
//!
//! Public for the fuzz targets, which check it against the general parser.
//!
//! Must not: allocate, accept what the general parser would refuse, or decide anything beyond the
//! message id (the session owns the ACK logic).

use crate::protocol::{code, MAGIC};

/// Longest message id taken by the fast path (the gateway's ids are far shorter).
const MAX_ID: usize = 64;

/// The `msgId` of a WebSocket ACK message in the compact form (see module docs).
pub fn ws_ack_id(text: &[u8]) -> Option<&str> {
    let mut s = Scan { b: text, i: 0 };
    s.lit(b"{\"magic\":")?;
    if s.int(5)? != i64::from(MAGIC) {
        return None;
    }
    s.lit(b",\"code\":")?;
    if s.int(9)? != i64::from(code::ACK) {
        return None;
    }
    s.lit(b",\"len\":")?;
    s.int(9)?;
    s.lit(b",\"body\":\"")?;
    let body = text.get(s.i..text.len().checked_sub(2)?)?;
    if !text.ends_with(b"\"}") {
        return None;
    }
    body_id(body, b"\\\"")
}

/// The `msgId` of an ACK body (the TCP form's body, unescaped) in the compact form.
pub fn body_ack_id(body: &[u8]) -> Option<&str> {
    body_id(body, b"\"")
}

/// Reads the flat body object, its quotes written as `q` (`"`, or `\"` inside a JSON string).
fn body_id<'a>(body: &'a [u8], q: &[u8]) -> Option<&'a str> {
    let mut s = Scan { b: body, i: 0 };
    s.lit(b"{")?;
    let (mut app, mut user, mut id) = (false, false, None);
    if s.peek() != Some(b'}') {
        loop {
            s.lit(q)?;
            let key = s.word()?;
            s.lit(q)?;
            s.lit(b":")?;
            match key {
                b"appId" if !app => {
                    app = true;
                    s.int(9)?;
                }
                b"userId" if !user => {
                    user = true;
                    s.int(18)?;
                }
                b"msgId" if id.is_none() => {
                    s.lit(q)?;
                    id = Some(s.id()?);
                    s.lit(q)?;
                }
                _ => return None,
            }
            match s.peek()? {
                b',' => s.i += 1,
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.lit(b"}")?;
    (s.i == body.len()).then_some(())?;
    id
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn lit(&mut self, s: &[u8]) -> Option<()> {
        if self.b.get(self.i..)?.starts_with(s) {
            self.i += s.len();
            Some(())
        } else {
            None
        }
    }

    /// An optionally negative integer of 1..=`max_digits` digits, no leading zero (JSON).
    fn int(&mut self, max_digits: usize) -> Option<i64> {
        let neg = self.peek() == Some(b'-');
        if neg {
            self.i += 1;
        }
        let start = self.i;
        let mut n: i64 = 0;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            n = n * 10 + i64::from(d - b'0');
            self.i += 1;
            if self.i - start > max_digits {
                return None;
            }
        }
        let len = self.i - start;
        if len == 0 || (len > 1 && self.b[start] == b'0') {
            return None;
        }
        Some(if neg { -n } else { n })
    }

    /// A key: ASCII letters.
    fn word(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.i += 1;
        }
        (self.i > start).then(|| &self.b[start..self.i])
    }

    /// A message id: 1..=[`MAX_ID`] characters that need no escaping.
    fn id(&mut self) -> Option<&'a str> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-'))
        {
            self.i += 1;
            if self.i - start > MAX_ID {
                return None;
            }
        }
        let id = &self.b[start..self.i];
        // ASCII by construction.
        (!id.is_empty()).then(|| std::str::from_utf8(id).ok())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{parse_ws_json, Frame};

    /// The envelope as `JSON.stringify` writes it (keys in this order; `json!` would sort them).
    fn ws(body: &str) -> String {
        let body_json = serde_json::to_string(body).unwrap();
        format!(
            r#"{{"magic":18673,"code":1005,"len":{},"body":{body_json}}}"#,
            body.len()
        )
    }

    /// What the general path reads: (code, msgId).
    fn general_ws(text: &str) -> Option<(i32, Option<String>)> {
        let f = parse_ws_json(text.as_bytes()).ok()?;
        Some((f.code, f.parse_body().ok()?.msg_id))
    }

    fn general_body(body: &str) -> Option<Option<String>> {
        Some(
            Frame::new(code::ACK, body.to_owned())
                .parse_body()
                .ok()?
                .msg_id,
        )
    }

    #[test]
    fn reads_the_forms_the_clients_write() {
        // web/js/im.js: JSON.stringify({appId, userId, msgId}) inside JSON.stringify(envelope).
        let im_js = ws(r#"{"appId":10001,"userId":42,"msgId":"g1-abc123"}"#);
        assert_eq!(ws_ack_id(im_js.as_bytes()), Some("g1-abc123"));
        // The bench client: only the id.
        let bench = ws(r#"{"msgId":"7f3a"}"#);
        assert_eq!(ws_ack_id(bench.as_bytes()), Some("7f3a"));
        assert_eq!(body_ack_id(br#"{"msgId":"x1","userId":-3}"#), Some("x1"));
    }

    #[test]
    fn leaves_everything_else_to_the_general_path() {
        let refused = [
            // Other codes, other magic, other key order or spacing.
            r#"{"magic":18673,"code":1004,"len":2,"body":"{}"}"#.to_owned(),
            r#"{"magic":18674,"code":1005,"len":2,"body":"{\"msgId\":\"a\"}"}"#.to_owned(),
            r#"{"code":1005,"magic":18673,"len":2,"body":"{\"msgId\":\"a\"}"}"#.to_owned(),
            r#"{"magic":18673, "code":1005,"len":2,"body":"{\"msgId\":\"a\"}"}"#.to_owned(),
            // Duplicate keys (the general parser refuses them), unknown keys, no id.
            ws(r#"{"msgId":"a","msgId":"b"}"#),
            ws(r#"{"msgId":"a","roomId":1}"#),
            ws(r#"{"appId":10001}"#),
            ws("{}"),
            // Escapes, non-ASCII, empty or overlong ids, overflowing numbers, leading zeros.
            ws(r#"{"msgId":"a\"b"}"#),
            ws(r#"{"msgId":"é"}"#),
            ws(r#"{"msgId":""}"#),
            ws(&format!(r#"{{"msgId":"{}"}}"#, "a".repeat(65))),
            ws(r#"{"appId":12345678901,"msgId":"a"}"#),
            ws(r#"{"userId":0123,"msgId":"a"}"#),
            // Body as an object, trailing garbage, truncation.
            r#"{"magic":18673,"code":1005,"len":2,"body":{"msgId":"a"}}"#.to_owned(),
            ws(r#"{"msgId":"a"}"#) + " ",
            ws(r#"{"msgId":"a"}x"#),
            r#"{"magic":18673,"code":1005,"len":2,"body":"{\"msgId\":\"a\""#.to_owned(),
            r#"{"magic":18673,"code":1005,"len":2,"body":"{\"msgId\":\"a\"}}"#.to_owned(),
        ];
        for text in &refused {
            assert_eq!(ws_ack_id(text.as_bytes()), None, "{text}");
        }
    }

    /// The fast path is a strict subset of the general one: on every input it accepts (fixed
    /// seed random mutations of real ACKs), the general parser reads code 1005 and the same id.
    #[test]
    fn agrees_with_the_general_parser_on_random_input() {
        let seeds = [
            ws(r#"{"appId":10001,"userId":42,"msgId":"g1-abc123"}"#),
            ws(r#"{"msgId":"7f3a","userId":9007199254740}"#),
            r#"{"appId":10001,"userId":42,"msgId":"g1-abc123"}"#.to_owned(),
        ];
        let alphabet = br#"{}":,\-0123456789abcdefgmsIdpuAr .x"#;
        let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut accepted, mut tried) = (0, 0);
        for seed in &seeds {
            for _ in 0..20_000 {
                let mut b = seed.clone().into_bytes();
                for _ in 0..1 + next() % 3 {
                    let at = (next() as usize) % b.len();
                    let c = alphabet[(next() as usize) % alphabet.len()];
                    match next() % 3 {
                        0 => b[at] = c,
                        1 => b.insert(at, c),
                        _ => {
                            b.remove(at);
                        }
                    }
                }
                tried += 1;
                if let Some(id) = ws_ack_id(&b) {
                    accepted += 1;
                    let text = std::str::from_utf8(&b).expect("accepted input is ASCII");
                    assert_eq!(
                        general_ws(text),
                        Some((code::ACK, Some(id.to_owned()))),
                        "{text}"
                    );
                }
                // The same bytes read as a TCP body (mostly refused: they hold an envelope).
                if let Some(id) = body_ack_id(&b) {
                    let text = std::str::from_utf8(&b).expect("accepted input is ASCII");
                    assert_eq!(general_body(text), Some(Some(id.to_owned())), "{text}");
                }
            }
        }
        // The mutations must exercise both outcomes.
        assert!(accepted > 100 && accepted < tried, "{accepted} of {tried}");
    }

    #[test]
    fn body_form_agrees_with_the_general_parser() {
        let bodies = [
            r#"{"msgId":"a"}"#,
            r#"{"userId":1,"appId":2,"msgId":"a.b:c-d_e"}"#,
            r#"{"msgId":"a","appId":-1}"#,
            r#"{"msgId":"a","msgId":"b"}"#,
            r#"{"msgId":"a",}"#,
            r#"{"msgId":1}"#,
            r#"{}"#,
            "",
        ];
        for b in bodies {
            if let Some(id) = body_ack_id(b.as_bytes()) {
                assert_eq!(general_body(b), Some(Some(id.to_owned())), "{b}");
            }
        }
        assert_eq!(body_ack_id(bodies[1].as_bytes()), Some("a.b:c-d_e"));
        assert_eq!(body_ack_id(bodies[3].as_bytes()), None);
        assert_eq!(body_ack_id(bodies[4].as_bytes()), None);
        assert_eq!(body_ack_id(bodies[5].as_bytes()), None);
    }
}
