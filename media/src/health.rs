//! Stream health of one publish session, for the streamer: bitrate over 1 s and 10 s, frame
//! rate, keyframe interval, codecs, picture size and profile, audio sample rate, and a 5-minute
//! history, plus warnings written for people (with the encoder setting that fixes each).
//!
//! Owns per-second counters fed by the publisher's task ([`Health::on_tag`]: a short lock, no
//! allocation beyond one bucket per second, at most [`HISTORY_SECS`] buckets) and the
//! [`HealthReport`] built from them on request. Viewer counts, dropped frames and reconnects
//! come from the hub; this module only formats them. It does no I/O.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use crate::codec::{self, AacConfig, AvcConfig, VideoCodec};
use crate::flv::{Tag, TagKind, TAG_HEADER_LEN};

/// Seconds of history kept (the 5-minute chart).
pub const HISTORY_SECS: usize = 300;
/// A keyframe interval above this is a warning.
pub const MAX_KEYFRAME_INTERVAL: Duration = Duration::from_secs(4);

#[derive(Clone, Copy, Default)]
struct Second {
    at: u64,
    bytes: u64,
    frames: u32,
}

#[derive(Default)]
struct State {
    seconds: VecDeque<Second>,
    last_keyframe_ts: Option<u32>,
    keyframe_interval_ms: Option<u32>,
    longest_keyframe_interval_ms: u32,
    video_codec: Option<VideoCodec>,
    avc: Option<AvcConfig>,
    audio_format: Option<u8>,
    aac: Option<AacConfig>,
    video_frames: u64,
    audio_frames: u64,
}

/// Health counters of one publish session.
pub struct Health {
    started: Instant,
    state: Mutex<State>,
}

/// Viewers of a room by protocol.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Viewers {
    pub flv: usize,
    pub hls: usize,
    pub rtmp: usize,
}

/// What the hub adds to a report.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context {
    pub viewers: Viewers,
    pub dropped_frames: u64,
    pub reconnects: u32,
    /// Bitrate above which a warning is shown (kbit/s; 0 = none).
    pub max_bitrate_kbps: u32,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VideoInfo {
    pub codec: String,
    pub supported: bool,
    pub profile: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub codec_string: Option<String>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AudioInfo {
    pub codec: String,
    pub supported: bool,
    pub sample_rate: Option<u32>,
    pub channels: Option<u8>,
    pub codec_string: Option<String>,
}

/// One point of the 5-minute chart (5 s each).
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    /// Seconds since the publish started, at the end of the point's interval.
    pub t: u64,
    pub kbps: u32,
    pub fps: f32,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Warning {
    pub code: &'static str,
    pub message: String,
}

/// The stream health shown to the streamer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    pub uptime_ms: u64,
    pub reconnects: u32,
    pub bitrate_kbps_1s: u32,
    pub bitrate_kbps_10s: u32,
    pub fps: f32,
    pub keyframe_interval_ms: Option<u32>,
    pub video: Option<VideoInfo>,
    pub audio: Option<AudioInfo>,
    pub dropped_frames: u64,
    pub viewers: Viewers,
    pub chart: Vec<Point>,
    pub warnings: Vec<Warning>,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    pub fn new() -> Health {
        Health {
            started: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    fn now_sec(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Counts one tag of the publisher.
    pub fn on_tag(&self, tag: &Tag) {
        let payload = &tag.flv[TAG_HEADER_LEN.min(tag.flv.len())
            ..tag
                .flv
                .len()
                .saturating_sub(4)
                .max(TAG_HEADER_LEN.min(tag.flv.len()))];
        let now = self.now_sec();
        let mut st = self.state.lock();
        match st.seconds.back_mut() {
            Some(s) if s.at == now => s.bytes += payload.len() as u64,
            _ => {
                st.seconds.push_back(Second {
                    at: now,
                    bytes: payload.len() as u64,
                    frames: 0,
                });
                while st.seconds.len() > HISTORY_SECS + 1 {
                    st.seconds.pop_front();
                }
            }
        }
        match tag.kind {
            TagKind::Video => {
                let codec = codec::video_codec(payload);
                if codec.is_some() {
                    st.video_codec = codec;
                }
                if tag.seq_header {
                    if codec == Some(VideoCodec::H264) && payload.len() > 5 {
                        st.avc = AvcConfig::parse(&payload[5..]).ok();
                    }
                    return;
                }
                st.video_frames += 1;
                if let Some(s) = st.seconds.back_mut() {
                    s.frames += 1;
                }
                if tag.keyframe {
                    if let Some(last) = st.last_keyframe_ts {
                        let gap = tag.timestamp.saturating_sub(last);
                        st.keyframe_interval_ms = Some(gap);
                        st.longest_keyframe_interval_ms = st.longest_keyframe_interval_ms.max(gap);
                    }
                    st.last_keyframe_ts = Some(tag.timestamp);
                }
            }
            TagKind::Audio => {
                if let Some(&b) = payload.first() {
                    st.audio_format = Some(b >> 4);
                }
                if tag.seq_header && payload.len() > 2 {
                    st.aac = AacConfig::parse(&payload[2..]).ok();
                } else {
                    st.audio_frames += 1;
                }
            }
            TagKind::Script => {}
        }
    }

    /// The report, as of now.
    pub fn report(&self, ctx: Context) -> HealthReport {
        let now = self.now_sec();
        let st = self.state.lock();
        // Complete seconds only (the current one is still filling).
        let sum = |from: u64, to: u64| {
            st.seconds
                .iter()
                .filter(|s| s.at >= from && s.at < to)
                .fold((0u64, 0u32), |(b, f), s| (b + s.bytes, f + s.frames))
        };
        let kbps = |bytes: u64, secs: u64| (bytes * 8 / 1000 / secs.max(1)) as u32;
        let (b1, _) = sum(now.saturating_sub(1), now);
        let span10 = now.min(10);
        let (b10, f10) = sum(now - span10, now);
        let fps = if span10 > 0 {
            f10 as f32 / span10 as f32
        } else {
            0.0
        };
        let mut chart = Vec::with_capacity(HISTORY_SECS / 5);
        let first = now.saturating_sub(HISTORY_SECS as u64) / 5 * 5;
        let mut t = first;
        while t + 5 <= now {
            let (b, f) = sum(t, t + 5);
            chart.push(Point {
                t: t + 5,
                kbps: kbps(b, 5),
                fps: f as f32 / 5.0,
            });
            t += 5;
        }
        let video = st.video_codec.map(|c| VideoInfo {
            codec: codec::video_codec_name(c),
            supported: c == VideoCodec::H264,
            profile: st.avc.as_ref().map(AvcConfig::profile_name),
            width: st.avc.as_ref().map(|a| a.width),
            height: st.avc.as_ref().map(|a| a.height),
            codec_string: st.avc.as_ref().map(AvcConfig::codec_string),
        });
        let audio = st.audio_format.map(|f| AudioInfo {
            codec: codec::audio_codec_name(f),
            supported: f == 10,
            sample_rate: st.aac.as_ref().map(|a| a.sample_rate),
            channels: st.aac.as_ref().map(|a| a.channels),
            codec_string: st.aac.as_ref().map(AacConfig::codec_string),
        });
        let uptime = self.started.elapsed();
        let mut warnings = Vec::new();
        let interval = st.keyframe_interval_ms;
        let settled = uptime > Duration::from_secs(5);
        if let Some(v) = &video {
            if !v.supported {
                warnings.push(Warning {
                    code: "video_codec",
                    message: format!(
                        "Your video is {}, which viewers' players cannot play here. Set the \
                         encoder to H.264 (OBS: Settings → Output → Encoder: x264 or a hardware \
                         H.264 encoder; ffmpeg: -c:v libx264).",
                        v.codec
                    ),
                });
            }
        } else if settled {
            warnings.push(Warning {
                code: "no_video",
                message: "No video is arriving, only audio. Add a video source (OBS: a scene \
                          with a capture source; ffmpeg: a video input with -c:v libx264)."
                    .into(),
            });
        }
        match &audio {
            Some(a) if !a.supported => warnings.push(Warning {
                code: "audio_codec",
                message: format!(
                    "Your audio is {}; viewers' players need AAC. Set the audio encoder to AAC \
                     (ffmpeg: -c:a aac -b:a 128k).",
                    a.codec
                ),
            }),
            None if settled && st.video_frames > 0 => warnings.push(Warning {
                code: "no_audio",
                message: "No audio is arriving. Check that a microphone or desktop audio source \
                          is on and not muted (OBS: the Audio Mixer), or give ffmpeg an audio \
                          input and -c:a aac."
                    .into(),
            }),
            _ => {}
        }
        let longest = interval.unwrap_or(0).max(if st.last_keyframe_ts.is_some() {
            0
        } else {
            // No keyframe at all yet after a while: as bad as a very long interval.
            if settled {
                u32::MAX
            } else {
                0
            }
        });
        if longest > MAX_KEYFRAME_INTERVAL.as_millis() as u32 {
            let shown = if longest == u32::MAX {
                "No keyframe has arrived yet".to_string()
            } else {
                format!(
                    "Keyframes arrive every {:.1} s",
                    f64::from(longest) / 1000.0
                )
            };
            warnings.push(Warning {
                code: "keyframe_interval",
                message: format!(
                    "{shown}: viewers wait that long to start watching and HLS delay grows. Set \
                     a keyframe interval of 2 s (OBS: Settings → Output → Keyframe Interval = 2; \
                     ffmpeg: -g at twice the frame rate, e.g. -g 60 at 30 fps)."
                ),
            });
        } else if longest > 2500 {
            warnings.push(Warning {
                code: "long_segments",
                message: format!(
                    "Keyframes arrive every {:.1} s, so HLS segments are that long (about 2 s is \
                     best). A keyframe interval of 2 s keeps HLS delay low.",
                    f64::from(longest) / 1000.0
                ),
            });
        }
        // Frame rate falling: the last 10 s against the best 10 s of the 60 s before.
        if now >= 20 {
            let mut best = 0u32;
            let mut t = now.saturating_sub(70);
            while t + 10 <= now - 10 {
                best = best.max(sum(t, t + 10).1);
                t += 5;
            }
            let earlier = best as f32 / 10.0;
            if earlier > 5.0 && fps < earlier * 0.8 {
                warnings.push(Warning {
                    code: "fps_drop",
                    message: format!(
                        "The frame rate fell from {earlier:.0} to {fps:.0} fps. The encoder may \
                         be overloaded (choose a faster preset or a lower resolution) or the \
                         upload is too slow (lower the bitrate)."
                    ),
                });
            }
        }
        let rate10 = kbps(b10, span10);
        if ctx.max_bitrate_kbps > 0 && rate10 > ctx.max_bitrate_kbps {
            warnings.push(Warning {
                code: "bitrate",
                message: format!(
                    "Your bitrate is {rate10} kbit/s, above this server's limit of {} kbit/s. \
                     Lower it (OBS: Settings → Output → Bitrate; ffmpeg: -b:v and -maxrate).",
                    ctx.max_bitrate_kbps
                ),
            });
        }
        HealthReport {
            uptime_ms: uptime.as_millis() as u64,
            reconnects: ctx.reconnects,
            bitrate_kbps_1s: kbps(b1, 1),
            bitrate_kbps_10s: rate10,
            fps,
            keyframe_interval_ms: interval,
            video,
            audio,
            dropped_frames: ctx.dropped_frames,
            viewers: ctx.viewers,
            chart,
            warnings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::RECORD_640X360;

    fn health_at(secs: u64) -> Health {
        Health {
            started: Instant::now() - Duration::from_secs(secs),
            state: Mutex::new(State::default()),
        }
    }

    fn codes(r: &HealthReport) -> Vec<&'static str> {
        r.warnings.iter().map(|w| w.code).collect()
    }

    #[test]
    fn a_good_stream_has_its_facts_and_no_warning() {
        let h = health_at(0);
        let mut seq = vec![0x17, 0, 0, 0, 0];
        seq.extend_from_slice(&RECORD_640X360);
        h.on_tag(&Tag::new(TagKind::Video, 0, &seq));
        h.on_tag(&Tag::new(TagKind::Audio, 0, &[0xaf, 0, 0x12, 0x10]));
        for i in 0..50u32 {
            h.on_tag(&Tag::new(
                TagKind::Video,
                i * 40,
                &[if i % 25 == 0 { 0x17 } else { 0x27 }, 1, 0, 0, 0, 1],
            ));
            h.on_tag(&Tag::new(TagKind::Audio, i * 40, &[0xaf, 1, 0]));
        }
        let r = h.report(Context::default());
        let v = r.video.as_ref().unwrap();
        assert_eq!((v.width, v.height), (Some(640), Some(360)));
        assert_eq!(v.profile.as_deref(), Some("Constrained Baseline 3.0"));
        assert_eq!(r.audio.as_ref().unwrap().sample_rate, Some(44100));
        assert_eq!(r.keyframe_interval_ms, Some(1000));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn warns_about_long_keyframe_intervals_missing_audio_other_codecs_and_bitrate() {
        let h = health_at(30);
        for i in 0..3u32 {
            h.on_tag(&Tag::new(TagKind::Video, i * 6000, &[0x17, 1, 0, 0, 0, 1]));
        }
        h.on_tag(&Tag::new(TagKind::Video, 18000, &[0x1c, 1, 0, 0, 0, 1]));
        let r = h.report(Context {
            max_bitrate_kbps: 0,
            ..Context::default()
        });
        let c = codes(&r);
        assert!(c.contains(&"keyframe_interval"), "{c:?}");
        assert!(c.contains(&"no_audio"), "{c:?}");
        assert!(c.contains(&"video_codec"), "{c:?}");
        assert!(r.warnings.iter().any(|w| w.message.contains("-g 60")));
        let h = health_at(0);
        h.on_tag(&Tag::new(TagKind::Audio, 0, &[0x2f, 1, 0]));
        assert!(h.report(Context::default()).video.is_none());
    }

    #[test]
    fn bitrate_over_the_limit_and_the_chart() {
        let h = health_at(0);
        {
            let mut st = h.state.lock();
            for at in 0..60 {
                st.seconds.push_back(Second {
                    at,
                    bytes: 500_000,
                    frames: if at < 45 { 30 } else { 10 },
                });
            }
        }
        let h = Health {
            started: Instant::now() - Duration::from_secs(60),
            state: Mutex::new(std::mem::take(&mut *h.state.lock())),
        };
        let r = h.report(Context {
            max_bitrate_kbps: 2500,
            ..Context::default()
        });
        assert_eq!(r.bitrate_kbps_10s, 4000);
        assert_eq!(r.chart.len(), 12);
        assert_eq!(r.chart[0].kbps, 4000);
        let c = codes(&r);
        assert!(c.contains(&"bitrate") && c.contains(&"fps_drop"), "{c:?}");
    }
}
