//! The protocol readers on random input: the TCP frame codec, the WebSocket frame codec and the
//! WebSocket JSON parser must answer any byte sequence with a frame, "need more" or an error —
//! never a panic, and never a buffer past the frame limit. Deterministic (fixed seeds).

use bytes::BytesMut;
use livehouse_im_core::protocol::{self, FrameCodec, MAGIC, MAX_FRAME};
use livehouse_im_core::ws::WsCodec;
use tokio_util::codec::Decoder;

/// xorshift64*: small, deterministic, good enough to shake a parser.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Feeds `input` in random-sized chunks, decoding after each until an error or "need more".
fn drive<D: Decoder>(codec: &mut D, input: &[u8], rng: &mut Rng) {
    let mut buf = BytesMut::new();
    let mut at = 0;
    while at < input.len() {
        let n = (1 + rng.next() as usize % 64).min(input.len() - at);
        buf.extend_from_slice(&input[at..at + n]);
        at += n;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                // The connection would be closed here: nothing more is read.
                Err(_) => return,
            }
        }
        assert!(
            buf.len() <= MAX_FRAME + 16,
            "buffered {} bytes past the frame limit",
            buf.len()
        );
    }
}

#[test]
fn random_bytes_never_panic_the_tcp_frame_codec() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..2000 {
        let len = (rng.next() % 512) as usize;
        let mut input = rng.bytes(len);
        // Half the time start with the right magic, so the header paths are reached too.
        if round % 2 == 0 && input.len() >= 2 {
            input[..2].copy_from_slice(&MAGIC.to_be_bytes());
        }
        drive(&mut FrameCodec, &input, &mut rng);
    }
}

#[test]
fn random_bytes_never_panic_the_websocket_codec() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for round in 0..2000 {
        let len = (rng.next() % 512) as usize;
        let mut input = rng.bytes(len);
        // Often a plausible masked text frame header, so payload paths are reached too.
        if round % 2 == 0 && input.len() >= 2 {
            input[0] = 0x81;
            input[1] = 0x80 | (input[1] & 0x7F);
        }
        let mut codec = WsCodec::default();
        drive(&mut codec, &input, &mut rng);
    }
}

#[test]
fn random_text_never_panics_the_websocket_json_parser() {
    let mut rng = Rng(0x94D0_49BB_1331_11EB);
    let shapes: [&[u8]; 4] = [
        br#"{"magic":18673,"code":1001,"len":2,"body":"{}"}"#,
        br#"{"magic":18673,"code":1003,"body":"{\"bizCode\":5555}"}"#,
        br#"{"magic":1,"code":-5,"len":-1,"body":null}"#,
        br#"[1,2,3]"#,
    ];
    for round in 0..3000 {
        let mut input = shapes[round % shapes.len()].to_vec();
        // Flip a few bytes, or truncate.
        for _ in 0..(rng.next() % 4) {
            let i = rng.next() as usize % input.len();
            input[i] = rng.next() as u8;
        }
        if rng.next().is_multiple_of(3) {
            let cut = rng.next() as usize % input.len();
            input.truncate(cut);
        }
        let _ = protocol::parse_ws_json(&input);
    }
}
