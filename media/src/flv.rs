//! FLV tags: the one serialized form of a media message that every viewer shares.
//!
//! Owns the byte layout of FLV (file header, tag header, `PreviousTagSize`), the classification
//! of audio/video payloads (keyframe, codec sequence header) and the AMF0 `onMetaData` script
//! body. It knows nothing about connections, rooms or queues; it must not allocate per viewer
//! except for the few bytes of a joining viewer's header tags.

use bytes::{BufMut, Bytes, BytesMut};
use rml_rtmp::sessions::StreamMetadata;

/// FLV file header (signature, version 1, audio + video flags, header size 9) followed by
/// `PreviousTagSize0`.
pub const FILE_HEADER: [u8; 13] = [b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0];

/// Size of an FLV tag header.
pub const TAG_HEADER_LEN: usize = 11;

/// Largest payload an FLV tag can carry (24-bit `DataSize`); RTMP messages are bounded the same way.
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;

/// The FLV tag type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagKind {
    Audio = 8,
    Video = 9,
    Script = 18,
}

/// One media message, serialized once as a complete FLV tag (header, payload, `PreviousTagSize`).
///
/// Cloning is a reference-count increment: every viewer queue holds the same bytes.
#[derive(Clone, Debug)]
pub struct Tag {
    pub kind: TagKind,
    /// Media timestamp in milliseconds, relative to the start of the publish.
    pub timestamp: u32,
    /// A video tag carrying a keyframe (not a sequence header).
    pub keyframe: bool,
    /// A codec configuration tag (AVC decoder configuration or AAC AudioSpecificConfig).
    pub seq_header: bool,
    /// The whole FLV tag.
    pub flv: Bytes,
}

impl Tag {
    /// Builds the FLV tag for `payload`, classifying it. Payloads above [`MAX_PAYLOAD`] are
    /// truncated to it (an RTMP message cannot exceed it, so this never happens on real input).
    pub fn new(kind: TagKind, timestamp: u32, payload: &[u8]) -> Tag {
        let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
        let (keyframe, seq_header) = match kind {
            TagKind::Video => classify_video(payload),
            TagKind::Audio => (false, is_audio_seq_header(payload)),
            TagKind::Script => (false, false),
        };
        Tag {
            kind,
            timestamp,
            keyframe,
            seq_header,
            flv: encode_tag(kind, timestamp, payload),
        }
    }

    /// The tag body (what RTMP sends as the message payload); shares the tag's bytes.
    pub fn payload(&self) -> Bytes {
        self.flv
            .slice(TAG_HEADER_LEN..self.flv.len().saturating_sub(4).max(TAG_HEADER_LEN))
    }

    /// The same tag stamped with another timestamp (a small copy; used for header tags only).
    pub fn restamped(&self, timestamp: u32) -> Tag {
        Tag {
            timestamp,
            flv: encode_tag(self.kind, timestamp, &self.payload()),
            ..self.clone()
        }
    }
}

/// Serializes one FLV tag with its trailing `PreviousTagSize`.
pub fn encode_tag(kind: TagKind, timestamp: u32, payload: &[u8]) -> Bytes {
    let len = payload.len().min(MAX_PAYLOAD);
    let mut b = BytesMut::with_capacity(TAG_HEADER_LEN + len + 4);
    b.put_u8(kind as u8);
    b.put_uint(len as u64, 3);
    b.put_uint(u64::from(timestamp & 0x00ff_ffff), 3);
    b.put_u8((timestamp >> 24) as u8);
    b.put_uint(0, 3); // StreamID, always 0
    b.put_slice(&payload[..len]);
    b.put_u32((TAG_HEADER_LEN + len) as u32);
    b.freeze()
}

/// `(keyframe, sequence header)` for an FLV video payload (legacy AVC/HEVC and enhanced RTMP).
pub fn classify_video(payload: &[u8]) -> (bool, bool) {
    let Some(&first) = payload.first() else {
        return (false, false);
    };
    if first & 0x80 != 0 {
        // Enhanced RTMP: IsExHeader | FrameType(3 bits) | PacketType(4 bits).
        let frame_type = (first >> 4) & 0x07;
        let packet_type = first & 0x0f;
        let seq = packet_type == 0;
        return (frame_type == 1 && !seq && packet_type != 2, seq);
    }
    let frame_type = first >> 4;
    let codec = first & 0x0f;
    let seq = matches!(codec, 7 | 12) && payload.get(1) == Some(&0);
    (frame_type == 1 && !seq, seq)
}

/// Whether an FLV audio payload is an AAC sequence header (AudioSpecificConfig).
pub fn is_audio_seq_header(payload: &[u8]) -> bool {
    payload.len() >= 2 && payload[0] >> 4 == 10 && payload[1] == 0
}

/// The AMF0 body of an `onMetaData` script tag (name + ECMA array), as FLV files carry it.
pub fn metadata_payload(meta: &StreamMetadata) -> Bytes {
    let mut fields: Vec<(&str, Amf)> = Vec::with_capacity(12);
    let num = |v: Option<f64>| v.map(Amf::Number);
    let entries = [
        ("width", num(meta.video_width.map(f64::from))),
        ("height", num(meta.video_height.map(f64::from))),
        ("videocodecid", num(meta.video_codec_id.map(f64::from))),
        ("videodatarate", num(meta.video_bitrate_kbps.map(f64::from))),
        ("framerate", num(meta.video_frame_rate.map(f64::from))),
        ("audiocodecid", num(meta.audio_codec_id.map(f64::from))),
        ("audiodatarate", num(meta.audio_bitrate_kbps.map(f64::from))),
        (
            "audiosamplerate",
            num(meta.audio_sample_rate.map(f64::from)),
        ),
        ("audiochannels", num(meta.audio_channels.map(f64::from))),
        ("stereo", meta.audio_is_stereo.map(Amf::Bool)),
    ];
    for (name, value) in entries {
        if let Some(v) = value {
            fields.push((name, v));
        }
    }
    let encoder = meta.encoder.clone().unwrap_or_default();
    if !encoder.is_empty() {
        fields.push(("encoder", Amf::Str(encoder)));
    }
    fields.push(("server", Amf::Str("livehouse".to_string())));

    let mut b = BytesMut::with_capacity(256);
    put_amf_string(&mut b, "onMetaData");
    b.put_u8(0x08); // ECMA array
    b.put_u32(fields.len() as u32);
    for (name, value) in &fields {
        put_amf_key(&mut b, name);
        match value {
            Amf::Number(n) => {
                b.put_u8(0x00);
                b.put_f64(*n);
            }
            Amf::Bool(v) => {
                b.put_u8(0x01);
                b.put_u8(u8::from(*v));
            }
            Amf::Str(s) => put_amf_string(&mut b, s),
        }
    }
    b.put_slice(&[0, 0, 0x09]); // object end
    b.freeze()
}

enum Amf {
    Number(f64),
    Bool(bool),
    Str(String),
}

fn put_amf_key(b: &mut BytesMut, key: &str) {
    let key = &key.as_bytes()[..key.len().min(u16::MAX as usize)];
    b.put_u16(key.len() as u16);
    b.put_slice(key);
}

fn put_amf_string(b: &mut BytesMut, s: &str) {
    b.put_u8(0x02);
    put_amf_key(b, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_layout_has_sizes_and_extended_timestamp() {
        let tag = Tag::new(TagKind::Video, 0x0123_4567, &[0x17, 1, 0, 0, 0, 0xaa]);
        let b = &tag.flv;
        assert_eq!(b.len(), 11 + 6 + 4);
        assert_eq!(b[0], 9);
        assert_eq!(&b[1..4], &[0, 0, 6]);
        assert_eq!(&b[4..7], &[0x23, 0x45, 0x67]);
        assert_eq!(b[7], 0x01);
        assert_eq!(&b[b.len() - 4..], &17u32.to_be_bytes());
        assert!(tag.keyframe && !tag.seq_header);
        assert_eq!(&tag.payload()[..], &[0x17, 1, 0, 0, 0, 0xaa]);
    }

    #[test]
    fn classifies_avc_and_aac() {
        assert_eq!(classify_video(&[0x17, 0]), (false, true));
        assert_eq!(classify_video(&[0x17, 1]), (true, false));
        assert_eq!(classify_video(&[0x27, 1]), (false, false));
        assert_eq!(classify_video(&[]), (false, false));
        assert!(is_audio_seq_header(&[0xaf, 0]));
        assert!(!is_audio_seq_header(&[0xaf, 1]));
        assert!(!is_audio_seq_header(&[0xaf]));
    }

    #[test]
    fn restamp_keeps_payload() {
        let tag = Tag::new(TagKind::Audio, 5, &[0xaf, 0, 0x12, 0x10]);
        let r = tag.restamped(1000);
        assert_eq!(r.payload(), tag.payload());
        assert_eq!(&r.flv[4..7], &[0, 0x03, 0xe8]);
        assert!(r.seq_header);
    }

    #[test]
    fn metadata_is_an_ecma_array() {
        let mut m = StreamMetadata::new();
        m.video_width = Some(640);
        let p = metadata_payload(&m);
        assert_eq!(p[0], 0x02);
        assert_eq!(&p[3..13], b"onMetaData");
        assert_eq!(p[13], 0x08);
        assert_eq!(&p[14..18], &2u32.to_be_bytes());
        assert_eq!(&p[p.len() - 3..], &[0, 0, 9]);
    }
}
