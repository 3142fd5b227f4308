//! HLS and Low-Latency HLS of one published stream, built from the same FLV tags the other
//! viewers get (no second encode): H.264 + AAC repackaged as fragmented MP4.
//!
//! Owns the segmenter (segments cut at keyframes, about [`HlsConfig::segment_target`] long;
//! partial segments of about a third of a second), the bounded in-memory window of segments and
//! parts, the playlist text (with `EXT-X-PART`, `EXT-X-PRELOAD-HINT`, `CAN-BLOCK-RELOAD`) and the
//! blocking-reload wait (`_HLS_msn` / `_HLS_part`). Nothing is written to disk.
//!
//! The publisher's task calls [`Hls::push`] for every tag, after the FLV fan-out; it never
//! awaits and holds the lock only for the tag. Readers (the HTTP routes) take the lock briefly
//! to copy out a `Bytes`; a blocking reload waits on a `watch` channel outside the lock.
//!
//! URLs (relative to `/live/{roomId}.m3u8`): `{roomId}/{sid}/init.mp4`,
//! `{roomId}/{sid}/{msn}.m4s` (segment) and `{roomId}/{sid}/{msn}.{part}.m4s` (part), where
//! `sid` names this publish session, so caches never mix two sessions of a room.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::codec::{AacConfig, AvcConfig};
use crate::flv::{Tag, TagKind, TAG_HEADER_LEN};
use crate::fmp4::{self, Sample, AAC_FRAME};

/// Segmenting parameters.
#[derive(Clone, Debug)]
pub struct HlsConfig {
    /// A segment is cut at the first keyframe at least this long after its start.
    pub segment_target: Duration,
    /// A part is cut at the first frame at least this long after its start.
    pub part_cut: Duration,
    /// The declared `PART-TARGET` (every part is at most this long at 10 fps or more).
    pub part_target: Duration,
    /// Complete segments kept (the playlist window).
    pub window: usize,
    /// Of those, the newest ones whose parts are listed and kept.
    pub part_segments: usize,
    /// A segment with no keyframe for this long is cut anyway.
    pub max_segment: Duration,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            segment_target: Duration::from_secs(2),
            part_cut: Duration::from_millis(340),
            part_target: Duration::from_millis(400),
            window: 6,
            part_segments: 3,
            max_segment: Duration::from_secs(10),
        }
    }
}

/// A request's blocking-reload position: media sequence number and optional part index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub msn: u64,
    pub part: Option<u64>,
}

/// Why a playlist or media request cannot be answered.
#[derive(Debug, PartialEq, Eq)]
pub enum HlsError {
    /// The stream is not (or no longer) there, or the resource left the window.
    NotFound,
    /// Nothing to play yet (no complete segment).
    NotReady,
    /// `_HLS_msn` more than two segments ahead of the newest (the spec's answer: 400).
    TooFarAhead,
    /// The position did not arrive within the blocking bound.
    Timeout,
}

struct Part {
    duration_ms: u32,
    independent: bool,
    data: Bytes,
}

struct Segment {
    msn: u64,
    start_ms: u32,
    duration_ms: u32,
    /// Wall clock (unix ms) when its first frame arrived.
    pdt_ms: i64,
    parts: Vec<Part>,
    /// The whole segment (its parts one after the other), once complete.
    data: Option<Bytes>,
}

#[derive(Default)]
struct Inner {
    avc: Option<AvcConfig>,
    aac: Option<AacConfig>,
    init: Option<Bytes>,
    /// The newest video frame, held until the next one gives its duration.
    held: Option<(u32, Sample)>,
    video: Vec<Sample>,
    audio: Vec<(u32, Sample)>,
    pending_bytes: usize,
    part_start_ms: u32,
    complete: VecDeque<Segment>,
    current: Option<Segment>,
    next_msn: u64,
    fragment_seq: u32,
    longest_segment_ms: u32,
    closed: bool,
    version: u64,
    playlist: Option<(u64, Bytes)>,
}

/// The HLS state of one publish session.
pub struct Hls {
    room_id: i64,
    sid: String,
    config: HlsConfig,
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Bytes the samples of one part may hold before the segmenter gives up on the stream.
const MAX_PENDING_BYTES: usize = 32 << 20;

impl Hls {
    pub fn new(room_id: i64, config: HlsConfig) -> Hls {
        let (changed, _) = watch::channel(0);
        Hls {
            room_id,
            sid: format!("{:x}", unix_ms()),
            config,
            inner: Mutex::new(Inner::default()),
            changed,
        }
    }

    /// The publish session id used in the media URLs.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// Feeds one tag of the publisher. Never blocks; drops what HLS cannot carry.
    pub fn push(&self, tag: &Tag) {
        let payload = &tag.flv[TAG_HEADER_LEN..tag.flv.len().saturating_sub(4).max(TAG_HEADER_LEN)];
        let mut g = self.inner.lock();
        if g.closed {
            return;
        }
        let before = g.version;
        match tag.kind {
            TagKind::Video => self.on_video(&mut g, tag, payload),
            TagKind::Audio => on_audio(&mut g, tag, payload),
            TagKind::Script => {}
        }
        if g.version != before {
            let v = g.version;
            drop(g);
            self.changed.send_replace(v);
        }
    }

    fn on_video(&self, g: &mut Inner, tag: &Tag, payload: &[u8]) {
        // Legacy FLV AVC only: [frame type | codec 7][packet type][cts: 3][data].
        if payload.len() < 5 || payload[0] & 0x0f != 7 {
            return;
        }
        match payload[1] {
            0 => {
                if let Ok(avc) = AvcConfig::parse(&payload[5..]) {
                    if g.avc.as_ref().map(|a| &a.record) != Some(&avc.record) {
                        g.avc = Some(avc);
                        rebuild_init(g);
                    }
                }
                return;
            }
            1 => {}
            _ => return,
        }
        if g.init.is_none() || payload.len() <= 5 {
            return;
        }
        let cts_ms = {
            let v = u32::from_be_bytes([0, payload[2], payload[3], payload[4]]);
            // Sign-extend the 24-bit value; a negative offset is clamped to 0.
            let v = ((v << 8) as i32) >> 8;
            v.max(0) as u32
        };
        let ts = tag.timestamp;
        let frame = Sample {
            dts: u64::from(ts) * 90,
            duration: 0,
            cts: cts_ms * 90,
            keyframe: tag.keyframe,
            data: tag.flv.slice(TAG_HEADER_LEN + 5..tag.flv.len() - 4),
        };
        if let Some((held_ts, mut held)) = g.held.take() {
            let ms = ts.saturating_sub(held_ts).clamp(1, 1000);
            held.duration = ms * 90;
            g.pending_bytes += held.data.len();
            g.video.push(held);
        }
        let cfg = &self.config;
        match g.current.as_ref().map(|s| s.start_ms) {
            None => {
                if !tag.keyframe {
                    return; // wait for the first keyframe
                }
                g.video.clear();
                g.audio.retain(|(t, _)| *t >= ts);
                self.start_segment(g, ts);
            }
            Some(seg_start) => {
                let seg_ms = ts.saturating_sub(seg_start);
                let cut_segment = (tag.keyframe
                    && seg_ms + 20 >= cfg.segment_target.as_millis() as u32)
                    || seg_ms >= cfg.max_segment.as_millis() as u32;
                if cut_segment {
                    self.close_part(g, ts);
                    self.close_segment(g, ts);
                    self.start_segment(g, ts);
                } else if ts.saturating_sub(g.part_start_ms) >= cfg.part_cut.as_millis() as u32 {
                    self.close_part(g, ts);
                    g.part_start_ms = ts;
                }
            }
        }
        if g.pending_bytes > MAX_PENDING_BYTES {
            // A publisher without frames we can cut at: start over at the next keyframe.
            g.video.clear();
            g.audio.clear();
            g.pending_bytes = 0;
            g.current = None;
            return;
        }
        g.held = Some((ts, frame));
    }

    fn start_segment(&self, g: &mut Inner, ts: u32) {
        let msn = g.next_msn;
        g.next_msn += 1;
        g.part_start_ms = ts;
        g.current = Some(Segment {
            msn,
            start_ms: ts,
            duration_ms: 0,
            pdt_ms: unix_ms(),
            parts: Vec::new(),
            data: None,
        });
    }

    /// Turns the pending samples before `end_ms` into a part of the current segment.
    fn close_part(&self, g: &mut Inner, end_ms: u32) {
        if g.video.is_empty() {
            return;
        }
        let video = std::mem::take(&mut g.video);
        let (audio, later): (Vec<_>, Vec<_>) = std::mem::take(&mut g.audio)
            .into_iter()
            .partition(|(t, _)| *t < end_ms);
        g.audio = later;
        g.pending_bytes = g.audio.iter().map(|(_, s)| s.data.len()).sum();
        let audio: Vec<Sample> = audio.into_iter().map(|(_, s)| s).collect();
        g.fragment_seq = g.fragment_seq.wrapping_add(1);
        let data = fmp4::fragment(g.fragment_seq, &video, &audio);
        let part = Part {
            duration_ms: end_ms.saturating_sub(g.part_start_ms).max(1),
            independent: video[0].keyframe,
            data,
        };
        if let Some(seg) = g.current.as_mut() {
            seg.parts.push(part);
            seg.duration_ms = end_ms.saturating_sub(seg.start_ms);
        }
        g.version += 1;
    }

    fn close_segment(&self, g: &mut Inner, end_ms: u32) {
        let Some(mut seg) = g.current.take() else {
            return;
        };
        if seg.parts.is_empty() {
            return;
        }
        seg.duration_ms = end_ms.saturating_sub(seg.start_ms).max(1);
        let mut all = Vec::with_capacity(seg.parts.iter().map(|p| p.data.len()).sum());
        for p in &seg.parts {
            all.extend_from_slice(&p.data);
        }
        seg.data = Some(Bytes::from(all));
        g.longest_segment_ms = g.longest_segment_ms.max(seg.duration_ms);
        g.complete.push_back(seg);
        while g.complete.len() > self.config.window {
            g.complete.pop_front();
        }
        // Parts are only listed (and kept) for the newest segments.
        let keep_from = g.complete.len().saturating_sub(self.config.part_segments);
        for s in g.complete.iter_mut().take(keep_from) {
            s.parts.clear();
        }
        g.version += 1;
    }

    /// Ends the session: waiting requests are answered 404.
    pub fn close(&self) {
        let mut g = self.inner.lock();
        g.closed = true;
        g.version += 1;
        let v = g.version;
        drop(g);
        self.changed.send_replace(v);
    }

    /// The initialization segment, once the codec configuration is known.
    pub fn init(&self) -> Option<Bytes> {
        self.inner.lock().init.clone()
    }

    /// A complete segment of the window.
    pub fn segment(&self, msn: u64) -> Option<Bytes> {
        let g = self.inner.lock();
        g.complete
            .iter()
            .find(|s| s.msn == msn)
            .and_then(|s| s.data.clone())
    }

    /// A part that exists now.
    pub fn part(&self, msn: u64, part: u64) -> Option<Bytes> {
        let g = self.inner.lock();
        let seg = g
            .complete
            .iter()
            .chain(g.current.iter())
            .find(|s| s.msn == msn)?;
        seg.parts
            .get(usize::try_from(part).ok()?)
            .map(|p| p.data.clone())
    }

    /// The newest part, as (msn, part index).
    fn newest(g: &Inner) -> Option<(u64, u64)> {
        if let Some(c) = g.current.as_ref().filter(|c| !c.parts.is_empty()) {
            return Some((c.msn, c.parts.len() as u64 - 1));
        }
        g.complete
            .back()
            .map(|s| (s.msn, s.parts.len().saturating_sub(1) as u64))
    }

    fn reached(g: &Inner, want: Position) -> Result<bool, HlsError> {
        if g.closed {
            return Err(HlsError::NotFound);
        }
        let Some((msn, part)) = Self::newest(g) else {
            return Ok(false);
        };
        if want.msn > msn + 2 {
            return Err(HlsError::TooFarAhead);
        }
        Ok(match want.part {
            Some(p) => msn > want.msn || (msn == want.msn && part >= p),
            None => g.complete.back().is_some_and(|s| s.msn >= want.msn),
        })
    }

    /// The bound on a blocking request: three target durations (the spec's hint), at most 10 s.
    pub fn block_limit(&self) -> Duration {
        (self.config.segment_target * 3).min(Duration::from_secs(10))
    }

    /// Waits until `want` is in the playlist (a blocking reload), at most [`Hls::block_limit`].
    pub async fn wait_for(&self, want: Position) -> Result<(), HlsError> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + self.block_limit();
        loop {
            if Self::reached(&self.inner.lock(), want)? {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(HlsError::NotFound),
                Err(_) => return Err(HlsError::Timeout),
            }
        }
    }

    /// Waits for a part that the playlist announced as the preload hint (or any part at most one
    /// ahead of the newest), at most [`Hls::block_limit`].
    pub async fn wait_part(&self, msn: u64, part: u64) -> Result<Bytes, HlsError> {
        {
            let g = self.inner.lock();
            let (nm, np) = Self::newest(&g).ok_or(HlsError::NotFound)?;
            // Only the next part or the first of the next segment may be waited for.
            let next = (msn == nm && part <= np + 1) || (msn == nm + 1 && part == 0);
            if !next && (msn > nm || (msn == nm && part > np)) {
                return Err(HlsError::NotFound);
            }
        }
        self.wait_for(Position {
            msn,
            part: Some(part),
        })
        .await?;
        // The part may belong to the previous segment's end (the hint moved on): 404 then.
        self.part(msn, part).ok_or(HlsError::NotFound)
    }

    /// The media playlist (LL-HLS tags included; plain HLS clients ignore them). Rendered once
    /// per change and shared by every request.
    pub fn playlist(&self) -> Result<Bytes, HlsError> {
        let mut g = self.inner.lock();
        if g.closed {
            return Err(HlsError::NotFound);
        }
        if g.complete.is_empty() {
            return Err(HlsError::NotReady);
        }
        if let Some((v, text)) = &g.playlist {
            if *v == g.version {
                return Ok(text.clone());
            }
        }
        let text = Bytes::from(self.render(&g));
        g.playlist = Some((g.version, text.clone()));
        Ok(text)
    }

    fn render(&self, g: &Inner) -> String {
        let cfg = &self.config;
        let part_target = cfg.part_target.as_secs_f64();
        let target = (g
            .longest_segment_ms
            .max(cfg.segment_target.as_millis() as u32) as f64
            / 1000.0)
            .ceil() as u64;
        let base = format!("{}/{}", self.room_id, self.sid);
        let mut s = String::with_capacity(2048);
        let _ = write!(
            s,
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:{target}\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3},HOLD-BACK={:.3}\n\
             #EXT-X-PART-INF:PART-TARGET={part_target:.3}\n#EXT-X-MEDIA-SEQUENCE:{}\n\
             #EXT-X-MAP:URI=\"{base}/init.mp4\"\n",
            part_target * 3.0,
            target as f64 * 3.0,
            g.complete.front().map_or(0, |s| s.msn),
        );
        let pdt = |s: &mut String, ms: i64| {
            let _ = writeln!(s, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(ms));
        };
        let parts = |s: &mut String, seg: &Segment| {
            for (i, p) in seg.parts.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "#EXT-X-PART:DURATION={:.3},URI=\"{base}/{}.{i}.m4s\"{}",
                    f64::from(p.duration_ms) / 1000.0,
                    seg.msn,
                    if p.independent {
                        ",INDEPENDENT=YES"
                    } else {
                        ""
                    }
                );
            }
        };
        for seg in &g.complete {
            pdt(&mut s, seg.pdt_ms);
            parts(&mut s, seg);
            let _ = writeln!(
                s,
                "#EXTINF:{:.3},\n{base}/{}.m4s",
                f64::from(seg.duration_ms) / 1000.0,
                seg.msn
            );
        }
        let (hint_msn, hint_part) = match g.current.as_ref() {
            Some(cur) => {
                if !cur.parts.is_empty() {
                    pdt(&mut s, cur.pdt_ms);
                    parts(&mut s, cur);
                }
                (cur.msn, cur.parts.len())
            }
            None => (g.next_msn, 0),
        };
        let _ = writeln!(
            s,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{base}/{hint_msn}.{hint_part}.m4s\""
        );
        s
    }
}

fn on_audio(g: &mut Inner, tag: &Tag, payload: &[u8]) {
    // AAC only: [0xA? sound format 10][packet type][data].
    if payload.len() < 2 || payload[0] >> 4 != 10 {
        return;
    }
    if payload[1] == 0 {
        if let Ok(aac) = AacConfig::parse(&payload[2..]) {
            if g.aac.as_ref() != Some(&aac) {
                g.aac = Some(aac);
                rebuild_init(g);
            }
        }
        return;
    }
    let Some(rate) = g.aac.as_ref().map(|a| a.sample_rate) else {
        return;
    };
    if g.current.is_none() || payload.len() <= 2 {
        return;
    }
    let data = tag.flv.slice(TAG_HEADER_LEN + 2..tag.flv.len() - 4);
    g.pending_bytes += data.len();
    g.audio.push((
        tag.timestamp,
        Sample {
            dts: u64::from(tag.timestamp) * u64::from(rate) / 1000,
            duration: AAC_FRAME,
            cts: 0,
            keyframe: true,
            data,
        },
    ));
}

/// A new codec configuration: a new init segment; the next segment starts from a keyframe.
fn rebuild_init(g: &mut Inner) {
    let Some(avc) = g.avc.as_ref() else {
        return;
    };
    let had = g.init.is_some();
    g.init = fmp4::init_segment(avc, g.aac.as_ref());
    if had {
        // Samples of the old configuration must not be mixed with the new init segment.
        g.video.clear();
        g.audio.clear();
        g.held = None;
        g.pending_bytes = 0;
        g.current = None;
        g.complete.clear();
        g.version += 1;
    }
}

/// `2026-12-02T15:26:44.123Z` for unix milliseconds (civil date from days, proleptic Gregorian).
pub fn iso8601(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::RECORD_640X360;

    fn video(ts: u32, key: bool) -> Tag {
        Tag::new(
            TagKind::Video,
            ts,
            &[
                if key { 0x17 } else { 0x27 },
                1,
                0,
                0,
                0,
                0,
                0,
                0,
                2,
                0x65,
                0x88,
            ],
        )
    }

    fn feed(hls: &Hls, secs: u32, gop_ms: u32) {
        let mut header = vec![0x17, 0, 0, 0, 0];
        header.extend_from_slice(&RECORD_640X360);
        hls.push(&Tag::new(TagKind::Video, 0, &header));
        hls.push(&Tag::new(TagKind::Audio, 0, &[0xaf, 0, 0x12, 0x10]));
        let mut ts = 0;
        while ts < secs * 1000 {
            hls.push(&video(ts, ts % gop_ms == 0));
            hls.push(&Tag::new(TagKind::Audio, ts, &[0xaf, 1, 0x21, 0x00]));
            ts += 40;
        }
    }

    #[test]
    fn program_date_time_is_iso8601_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_796_225_204_123), "2026-12-02T15:26:44.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn segments_are_cut_at_keyframes_near_two_seconds_with_parts_of_a_third_of_a_second() {
        let hls = Hls::new(5, HlsConfig::default());
        feed(&hls, 9, 1000);
        let text = String::from_utf8(hls.playlist().expect("playlist").to_vec()).unwrap();
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"), "{text}");
        assert!(text.contains("CAN-BLOCK-RELOAD=YES"));
        assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.400"));
        assert!(text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"5/"));
        let extinf: Vec<&str> = text.lines().filter(|l| l.starts_with("#EXTINF")).collect();
        assert_eq!(extinf, ["#EXTINF:2.000,"; 4], "{text}");
        for line in text.lines().filter(|l| l.starts_with("#EXT-X-PART:")) {
            let d: f64 = line["#EXT-X-PART:DURATION=".len()..]
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!((0.04..=0.4).contains(&d), "part of {d} s: {line}");
        }
        // Every segment starts with an independent part, and the segment is its parts.
        assert!(text.contains(".0.m4s\",INDEPENDENT=YES"));
        let seg = hls.segment(3).expect("segment 3");
        let parts: Vec<Bytes> = (0..10).map_while(|i| hls.part(3, i)).collect();
        assert!(parts.len() >= 5);
        assert_eq!(seg, parts.concat());
        assert!(hls.init().is_some());
        // m3u8-rs reads it as a media playlist.
        let (_, pl) = m3u8_rs::parse_media_playlist(text.as_bytes()).expect("m3u8-rs parses it");
        assert_eq!(pl.segments.len(), 4);
        assert_eq!(pl.media_sequence, 0);
    }

    #[test]
    fn a_long_gop_makes_one_gop_segments_and_the_window_is_bounded() {
        let hls = Hls::new(5, HlsConfig::default());
        feed(&hls, 60, 3000);
        let text = String::from_utf8(hls.playlist().unwrap().to_vec()).unwrap();
        assert!(text.contains("#EXT-X-TARGETDURATION:3\n"), "{text}");
        assert_eq!(text.matches("#EXTINF:3.000,").count(), 6, "{text}");
        assert!(hls.segment(0).is_none(), "old segments leave the window");
    }

    #[tokio::test(start_paused = true)]
    async fn blocking_reload_waits_for_the_part_and_refuses_the_far_future() {
        let hls = std::sync::Arc::new(Hls::new(5, HlsConfig::default()));
        feed(&hls, 3, 1000);
        let (msn, part) = {
            let g = hls.inner.lock();
            Hls::newest(&g).unwrap()
        };
        let want = Position {
            msn,
            part: Some(part + 1),
        };
        let waiter = tokio::spawn({
            let hls = hls.clone();
            async move { hls.wait_for(want).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "the next part is not there yet");
        let mut ts = 3000;
        while !waiter.is_finished() && ts < 4000 {
            hls.push(&video(ts, false));
            ts += 40;
            tokio::task::yield_now().await;
        }
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(
            hls.wait_for(Position {
                msn: msn + 3,
                part: None
            })
            .await,
            Err(HlsError::TooFarAhead)
        );
        // Nothing arrives: the wait ends after the bound.
        let far = Position {
            msn: msn + 1,
            part: Some(3),
        };
        assert_eq!(hls.wait_for(far).await, Err(HlsError::Timeout));
        hls.close();
        assert_eq!(hls.wait_for(far).await, Err(HlsError::NotFound));
    }
}
