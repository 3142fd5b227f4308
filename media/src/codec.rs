//! Codec configuration carried by the FLV sequence headers: the H.264
//! `AVCDecoderConfigurationRecord` (SPS/PPS, profile, level, picture size) and the AAC
//! `AudioSpecificConfig` (object type, sample rate, channels), plus the codec names that
//! HLS (`CODECS`) and stream health show.
//!
//! Owns the bounded parsing of those few bytes from the publisher (every length is checked
//! before it is used; a malformed record is an `Err`, never a panic). SPS syntax is read with
//! the `h264-reader` crate. It knows nothing about rooms, viewers or containers.

use bytes::Bytes;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{decode_nal, BitReader};

/// The video codec of an FLV video payload (its codec id, or the enhanced-RTMP FourCC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    Other(u32),
}

/// Video codec of an FLV video tag payload.
pub fn video_codec(payload: &[u8]) -> Option<VideoCodec> {
    let first = *payload.first()?;
    if first & 0x80 != 0 {
        // Enhanced RTMP: the FourCC follows the first byte.
        let cc = payload.get(1..5)?;
        let fourcc = u32::from_be_bytes([cc[0], cc[1], cc[2], cc[3]]);
        return Some(if cc == b"avc1" {
            VideoCodec::H264
        } else {
            VideoCodec::Other(fourcc)
        });
    }
    Some(match first & 0x0f {
        7 => VideoCodec::H264,
        other => VideoCodec::Other(u32::from(other)),
    })
}

/// A human name for an FLV video codec id or FourCC.
pub fn video_codec_name(codec: VideoCodec) -> String {
    match codec {
        VideoCodec::H264 => "H.264".into(),
        VideoCodec::Other(id) if id > 0xff => {
            let b = id.to_be_bytes();
            let s: String = b.iter().map(|&c| char::from(c)).collect();
            match &b {
                b"hvc1" => "HEVC (hvc1)".into(),
                b"av01" => "AV1".into(),
                b"vp09" => "VP9".into(),
                _ => format!("FourCC {s}"),
            }
        }
        VideoCodec::Other(12) => "HEVC".into(),
        VideoCodec::Other(2) => "Sorenson H.263".into(),
        VideoCodec::Other(4) | VideoCodec::Other(5) => "VP6".into(),
        VideoCodec::Other(id) => format!("FLV video codec {id}"),
    }
}

/// A human name for an FLV audio `SoundFormat`.
pub fn audio_codec_name(format: u8) -> String {
    match format {
        10 => "AAC".into(),
        2 | 14 => "MP3".into(),
        11 => "Speex".into(),
        0 | 3 => "PCM".into(),
        7 | 8 => "G.711".into(),
        4..=6 => "Nellymoser".into(),
        other => format!("FLV audio format {other}"),
    }
}

/// Why a codec record could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("truncated codec configuration")]
    Truncated,
    #[error("unsupported codec configuration: {0}")]
    Unsupported(&'static str),
}

/// The parts of an `AVCDecoderConfigurationRecord` that HLS and health need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcConfig {
    /// The record as the publisher sent it (the `avcC` box body).
    pub record: Bytes,
    pub profile: u8,
    pub compatibility: u8,
    pub level: u8,
    /// NAL unit length field size in bytes (1, 2 or 4).
    pub nal_length_size: u8,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
    pub width: u32,
    pub height: u32,
}

impl AvcConfig {
    /// Parses the body of an FLV AVC sequence header (the bytes after the 5-byte video header).
    pub fn parse(record: &[u8]) -> Result<AvcConfig, CodecError> {
        let rec = Bytes::copy_from_slice(record);
        if rec.len() < 7 {
            return Err(CodecError::Truncated);
        }
        if rec[0] != 1 {
            return Err(CodecError::Unsupported(
                "AVC configuration version is not 1",
            ));
        }
        let nal_length_size = (rec[4] & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(CodecError::Unsupported("3-byte NAL lengths"));
        }
        let mut pos = 6;
        let read_sets = |count: usize, pos: &mut usize| -> Result<Vec<Bytes>, CodecError> {
            let mut sets = Vec::with_capacity(count.min(32));
            for _ in 0..count {
                let len = rec
                    .get(*pos..*pos + 2)
                    .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                    .ok_or(CodecError::Truncated)?;
                *pos += 2;
                if rec.len() < *pos + len || len == 0 {
                    return Err(CodecError::Truncated);
                }
                sets.push(rec.slice(*pos..*pos + len));
                *pos += len;
            }
            Ok(sets)
        };
        let sps = read_sets(usize::from(rec[5] & 0x1f), &mut pos)?;
        let num_pps = usize::from(*rec.get(pos).ok_or(CodecError::Truncated)?);
        pos += 1;
        let pps = read_sets(num_pps, &mut pos)?;
        let first = sps.first().ok_or(CodecError::Unsupported("no SPS"))?;
        if pps.is_empty() {
            return Err(CodecError::Unsupported("no PPS"));
        }
        let (width, height) = sps_dimensions(first).ok_or(CodecError::Unsupported("SPS"))?;
        Ok(AvcConfig {
            profile: rec[1],
            compatibility: rec[2],
            level: rec[3],
            nal_length_size,
            sps,
            pps,
            width,
            height,
            record: rec,
        })
    }

    /// The RFC 6381 codec string, e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile, self.compatibility, self.level
        )
    }

    /// `High 3.1` style name of the profile and level.
    pub fn profile_name(&self) -> String {
        let name = match self.profile {
            66 if self.compatibility & 0x40 != 0 => "Constrained Baseline",
            66 => "Baseline",
            77 => "Main",
            88 => "Extended",
            100 => "High",
            110 => "High 10",
            122 => "High 4:2:2",
            244 => "High 4:4:4",
            _ => "Profile",
        };
        format!("{name} {}.{}", self.level / 10, self.level % 10)
    }
}

/// Picture size from an SPS NAL unit (with its header byte).
fn sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
    let rbsp = decode_nal(sps).ok()?;
    let sps = SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).ok()?;
    let (w, h) = sps.pixel_dimensions().ok()?;
    (w > 0 && h > 0 && w <= 16384 && h <= 16384).then_some((w, h))
}

/// Sampling frequencies by `samplingFrequencyIndex`.
const AAC_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// The parts of an AAC `AudioSpecificConfig` that HLS and health need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AacConfig {
    pub object_type: u8,
    pub freq_index: u8,
    pub sample_rate: u32,
    pub channels: u8,
}

impl AacConfig {
    /// Parses the body of an FLV AAC sequence header (the bytes after the 2-byte audio header).
    pub fn parse(asc: &[u8]) -> Result<AacConfig, CodecError> {
        if asc.len() < 2 {
            return Err(CodecError::Truncated);
        }
        let object_type = asc[0] >> 3;
        let freq_index = ((asc[0] & 0x07) << 1) | (asc[1] >> 7);
        let channels = (asc[1] >> 3) & 0x0f;
        if object_type == 31 {
            return Err(CodecError::Unsupported("escaped AAC object type"));
        }
        let sample_rate = *AAC_RATES
            .get(usize::from(freq_index))
            .ok_or(CodecError::Unsupported("explicit AAC sample rate"))?;
        if object_type == 0 || channels == 0 || channels > 7 {
            return Err(CodecError::Unsupported("AAC object type or channels"));
        }
        Ok(AacConfig {
            object_type,
            freq_index,
            sample_rate,
            channels,
        })
    }

    /// The RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The AVC record Debian's ffmpeg (libx264 ultrafast) writes for 640x360.
    pub const RECORD_640X360: [u8; 40] = [
        0x01, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0x00, 0x19, 0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0x80,
        0xbf, 0xe5, 0xc0, 0x44, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xca, 0x3c,
        0x58, 0xba, 0x80, 0x01, 0x00, 0x04, 0x68, 0xce, 0x0f, 0xc8,
    ];

    #[test]
    fn parses_an_x264_avc_record() {
        let c = AvcConfig::parse(&RECORD_640X360).expect("parses");
        assert_eq!((c.width, c.height), (640, 360));
        assert_eq!(c.codec_string(), "avc1.42c01e");
        assert_eq!(c.profile_name(), "Constrained Baseline 3.0");
        assert_eq!(c.nal_length_size, 4);
        assert_eq!((c.sps.len(), c.pps.len()), (1, 1));
    }

    #[test]
    fn truncated_or_odd_records_are_errors_not_panics() {
        for n in 0..RECORD_640X360.len() {
            assert!(AvcConfig::parse(&RECORD_640X360[..n]).is_err(), "{n} bytes");
        }
        let mut v = RECORD_640X360;
        v[0] = 2;
        assert!(AvcConfig::parse(&v).is_err());
        assert!(AvcConfig::parse(&[0xff; 300]).is_err());
    }

    #[test]
    fn parses_aac_lc_44100_stereo() {
        let c = AacConfig::parse(&[0x12, 0x10]).expect("parses");
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 44100, 2));
        assert_eq!(c.codec_string(), "mp4a.40.2");
        assert!(AacConfig::parse(&[0x12]).is_err());
        assert!(AacConfig::parse(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn names_codecs() {
        assert_eq!(video_codec(&[0x17, 0]), Some(VideoCodec::H264));
        assert_eq!(video_codec(&[0x1c, 0]), Some(VideoCodec::Other(12)));
        assert_eq!(
            video_codec_name(video_codec(&[0x90, b'h', b'v', b'c', b'1']).unwrap()),
            "HEVC (hvc1)"
        );
        assert_eq!(audio_codec_name(2), "MP3");
    }
}
