//! Fragmented MP4 (CMAF-style) for HLS: the initialization segment (`ftyp` + `moov`) of one
//! H.264 track and an optional AAC track, and media fragments (`moof` + `mdat`) of samples.
//!
//! The init segment's tracks (`trak` with `avcC` / `esds`) are built by the `mp4` crate's writer;
//! this module adds the `mvex` (one `trex` per track: the crate's has room for one only) and
//! writes the fragments itself, because the crate's 0.14 `traf` writes neither `tfdt` nor
//! `trun`. The fragment layout is small and fixed: `moof` (`mfhd`, one `traf` per track with
//! `tfhd` default-base-is-moof, `tfdt` v1, `trun` with per-sample duration, size, flags and
//! composition offset), then one `mdat`.
//! Samples are the FLV payloads without their FLV headers: H.264 access units with length
//! prefixes (as `avcC` declares) and raw AAC frames, so nothing is re-encoded.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{AacConfig, AvcConfig};

pub const VIDEO_TRACK: u32 = 1;
pub const AUDIO_TRACK: u32 = 2;
/// Video timescale: 90 kHz, so FLV milliseconds convert exactly.
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// Samples of one AAC frame.
pub const AAC_FRAME: u32 = 1024;

/// One sample of a fragment.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Decode time in the track's timescale.
    pub dts: u64,
    pub duration: u32,
    /// Composition offset (pts − dts) in the track's timescale.
    pub cts: u32,
    pub keyframe: bool,
    pub data: Bytes,
}

/// `sample_depends_on = 2` (an I frame) and not a non-sync sample.
const FLAGS_SYNC: u32 = 0x0200_0000;
/// `sample_depends_on = 1`, `sample_is_non_sync_sample = 1`.
const FLAGS_NON_SYNC: u32 = 0x0101_0000;
/// `trun` flags (ISO/IEC 14496-12 8.8.8): data offset, then per-sample fields.
const TRUN_DATA_OFFSET: u32 = 0x1;
const TRUN_DURATION: u32 = 0x100;
const TRUN_SIZE: u32 = 0x200;
const TRUN_FLAGS: u32 = 0x400;
const TRUN_CTS: u32 = 0x800;
/// `tfhd` flag: data offsets are relative to the `moof`.
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;

/// Box types of the `mp4` crate are not all exported by name; its writer builds the tracks
/// (`trak` with `avc1`/`avcC` and `mp4a`/`esds`) and this function takes them from its output.
fn crate_moov(video: &AvcConfig, audio: Option<&AacConfig>) -> mp4::Result<(Vec<u8>, Vec<u8>)> {
    let config = mp4::Mp4Config {
        major_brand: "iso6".parse()?,
        minor_version: 0,
        compatible_brands: ["iso6", "cmfc", "mp41", "avc1"]
            .iter()
            .map(|b| b.parse())
            .collect::<mp4::Result<_>>()?,
        timescale: 1000,
    };
    let mut w = mp4::Mp4Writer::write_start(std::io::Cursor::new(Vec::new()), &config)?;
    w.add_track(&mp4::TrackConfig {
        track_type: mp4::TrackType::Video,
        timescale: VIDEO_TIMESCALE,
        language: "und".into(),
        media_conf: mp4::MediaConfig::AvcConfig(mp4::AvcConfig {
            width: video.width.min(u32::from(u16::MAX)) as u16,
            height: video.height.min(u32::from(u16::MAX)) as u16,
            seq_param_set: video.sps[0].to_vec(),
            pic_param_set: video.pps[0].to_vec(),
        }),
    })?;
    if let Some(a) = audio {
        w.add_track(&mp4::TrackConfig {
            track_type: mp4::TrackType::Audio,
            timescale: a.sample_rate,
            language: "und".into(),
            media_conf: mp4::MediaConfig::AacConfig(mp4::AacConfig {
                bitrate: 0,
                profile: mp4::AudioObjectType::try_from(a.object_type)?,
                freq_index: mp4::SampleFreqIndex::try_from(a.freq_index)?,
                chan_conf: mp4::ChannelConfig::try_from(a.channels)?,
            }),
        })?;
    }
    w.write_end()?;
    let file = w.into_writer().into_inner();
    // The writer's file is ftyp, an empty mdat, then moov.
    let mut at = 0;
    let (mut ftyp, mut moov) = (Vec::new(), Vec::new());
    while at + 8 <= file.len() {
        let size =
            u32::from_be_bytes([file[at], file[at + 1], file[at + 2], file[at + 3]]) as usize;
        if size < 8 || at + size > file.len() {
            break;
        }
        match &file[at + 4..at + 8] {
            b"ftyp" => ftyp = file[at..at + size].to_vec(),
            b"moov" => moov = file[at..at + size].to_vec(),
            _ => {}
        }
        at += size;
    }
    Ok((ftyp, moov))
}

/// `ftyp` + `moov` (with `mvex`) for the video track and, if given, the audio track; `None`
/// when the configuration cannot be expressed (e.g. an AAC object type the crate refuses).
pub fn init_segment(video: &AvcConfig, audio: Option<&AacConfig>) -> Option<Bytes> {
    let (ftyp, mut moov) = match crate_moov(video, audio) {
        Ok(boxes) => boxes,
        Err(e) => {
            tracing::warn!("fmp4: cannot build the init segment: {e}");
            return None;
        }
    };
    if ftyp.is_empty() || moov.is_empty() {
        return None;
    }
    // mvex: one trex per track (default sample description 1, everything else per fragment).
    let tracks: &[u32] = if audio.is_some() {
        &[VIDEO_TRACK, AUDIO_TRACK]
    } else {
        &[VIDEO_TRACK]
    };
    let mvex_size = 8 + 32 * tracks.len();
    moov.put_u32(mvex_size as u32);
    moov.put_slice(b"mvex");
    for &id in tracks {
        moov.put_u32(32);
        moov.put_slice(b"trex");
        moov.put_u32(0); // version, flags
        moov.put_u32(id);
        moov.put_u32(1); // sample description index
        moov.put_u32(0); // duration
        moov.put_u32(0); // size
        moov.put_u32(0); // flags
    }
    let size = moov.len() as u32;
    moov[..4].copy_from_slice(&size.to_be_bytes());
    let mut out = ftyp;
    out.extend_from_slice(&moov);
    Some(Bytes::from(out))
}

/// Appends a box header (32-bit size, type) and returns its position, for [`close_box`].
fn open_box(out: &mut BytesMut, kind: &[u8; 4]) -> usize {
    let at = out.len();
    out.put_u32(0);
    out.put_slice(kind);
    at
}

fn close_box(out: &mut BytesMut, at: usize) {
    let size = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

/// One `moof` + `mdat` holding the samples of each track (either may be empty, not both).
///
/// Written here rather than with the `mp4` crate: its 0.14 `traf` writes neither `tfdt` nor
/// `trun`. The layout is ISO/IEC 14496-12 8.8 with `default-base-is-moof`.
pub fn fragment(sequence: u32, video: &[Sample], audio: &[Sample]) -> Bytes {
    let tracks: Vec<(u32, &[Sample])> = [(VIDEO_TRACK, video), (AUDIO_TRACK, audio)]
        .into_iter()
        .filter(|(_, s)| !s.is_empty())
        .collect();
    let payload: usize = tracks
        .iter()
        .flat_map(|(_, s)| s.iter())
        .map(|s| s.data.len())
        .sum();
    let mut out = BytesMut::with_capacity(payload + 128 + 16 * video.len() + 8 * audio.len());
    let moof = open_box(&mut out, b"moof");
    let mfhd = open_box(&mut out, b"mfhd");
    out.put_u32(0);
    out.put_u32(sequence);
    close_box(&mut out, mfhd);
    let mut offset_fields = Vec::with_capacity(2);
    for (track_id, samples) in &tracks {
        let is_video = *track_id == VIDEO_TRACK;
        let traf = open_box(&mut out, b"traf");
        let tfhd = open_box(&mut out, b"tfhd");
        out.put_u32(TFHD_DEFAULT_BASE_IS_MOOF);
        out.put_u32(*track_id);
        close_box(&mut out, tfhd);
        let tfdt = open_box(&mut out, b"tfdt");
        out.put_u32(1 << 24); // version 1: 64-bit decode time
        out.put_u64(samples.first().map_or(0, |s| s.dts));
        close_box(&mut out, tfdt);
        let trun = open_box(&mut out, b"trun");
        let mut flags = TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE;
        if is_video {
            flags |= TRUN_FLAGS | TRUN_CTS;
        }
        out.put_u32(flags); // version 0
        out.put_u32(samples.len() as u32);
        offset_fields.push(out.len());
        out.put_u32(0); // data offset, set below
        for s in samples.iter() {
            out.put_u32(s.duration);
            out.put_u32(s.data.len() as u32);
            if is_video {
                out.put_u32(if s.keyframe {
                    FLAGS_SYNC
                } else {
                    FLAGS_NON_SYNC
                });
                out.put_u32(s.cts);
            }
        }
        close_box(&mut out, trun);
        close_box(&mut out, traf);
    }
    close_box(&mut out, moof);
    // Each track's samples follow one another in the mdat; offsets count from the moof start.
    let mut offset = out.len() - moof + 8;
    for (at, (_, samples)) in offset_fields.into_iter().zip(&tracks) {
        out[at..at + 4].copy_from_slice(&(offset as u32).to_be_bytes());
        offset += samples.iter().map(|s| s.data.len()).sum::<usize>();
    }
    out.put_u32((payload + 8) as u32);
    out.put_slice(b"mdat");
    for (_, samples) in &tracks {
        for s in samples.iter() {
            out.put_slice(&s.data);
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::RECORD_640X360;

    fn boxes(mut b: &[u8]) -> Vec<(String, usize)> {
        let mut out = vec![];
        while b.len() >= 8 {
            let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            assert!(
                size >= 8 && size <= b.len(),
                "box size {size} of {}",
                b.len()
            );
            out.push((String::from_utf8_lossy(&b[4..8]).into_owned(), size));
            b = &b[size..];
        }
        assert!(b.is_empty(), "trailing bytes");
        out
    }

    #[test]
    fn init_segment_is_ftyp_then_moov_with_both_tracks_and_their_trex() {
        let v = AvcConfig::parse(&RECORD_640X360).expect("avc");
        let a = AacConfig::parse(&[0x12, 0x10]).expect("aac");
        let init = init_segment(&v, Some(&a)).expect("init");
        let top = boxes(&init);
        assert_eq!(
            top.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(),
            ["ftyp", "moov"]
        );
        let moov = &init[top[0].1 + 8..];
        let inner: Vec<String> = boxes(moov).into_iter().map(|b| b.0).collect();
        assert_eq!(inner, ["mvhd", "trak", "trak", "mvex"]);
        let mvex_at = init.len() - boxes(moov).last().map_or(0, |b| b.1);
        let trex: Vec<String> = boxes(&init[mvex_at + 8..])
            .into_iter()
            .map(|b| b.0)
            .collect();
        assert_eq!(trex, ["trex", "trex"]);
    }

    #[test]
    fn fragment_offsets_point_at_each_tracks_samples() {
        let s = |dts, data: &'static [u8], key| Sample {
            dts,
            duration: 3600,
            cts: 0,
            keyframe: key,
            data: Bytes::from_static(data),
        };
        let video = [s(0, b"VVVV", true), s(3600, b"vv", false)];
        let audio = [s(0, b"AAA", false)];
        let f = fragment(7, &video, &audio);
        let top = boxes(&f);
        assert_eq!(
            top.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(),
            ["moof", "mdat"]
        );
        let moof_len = top[0].1;
        assert_eq!(&f[moof_len + 8..], b"VVVVvvAAA");
        // The first trun's data offset (after its header, flags, count) points at "VVVV".
        let trun = f.windows(4).position(|w| w == b"trun").expect("trun") - 4;
        let off = u32::from_be_bytes([f[trun + 16], f[trun + 17], f[trun + 18], f[trun + 19]]);
        assert_eq!(&f[off as usize..off as usize + 4], b"VVVV");
        let trun2 = f[trun + 8..]
            .windows(4)
            .position(|w| w == b"trun")
            .expect("trun 2")
            + trun
            + 4;
        let off2 = u32::from_be_bytes([f[trun2 + 16], f[trun2 + 17], f[trun2 + 18], f[trun2 + 19]]);
        assert_eq!(&f[off2 as usize..off2 as usize + 3], b"AAA");
    }
}
