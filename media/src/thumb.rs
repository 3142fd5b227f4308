//! Live thumbnails: `/live/{roomId}.jpg`, a JPEG of the room's latest keyframe, decoded by an
//! `ffmpeg` subprocess at most every [`REFRESH`] per room, at most one decode per core at a
//! time, and cached in memory.
//!
//! Owns the cache, the decode slots and the subprocess (stdin: a tiny FLV of the AVC sequence
//! header and one keyframe; stdout: the JPEG, at most [`MAX_JPEG`] bytes; killed after
//! [`DECODE_TIMEOUT`]). Without ffmpeg on the PATH it says so once at start and serves nothing
//! (room cards keep their cover). It never touches the publisher's path: the keyframe is read
//! from the hub's GOP cache on request.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// A thumbnail is decoded again at most this often.
pub const REFRESH: Duration = Duration::from_secs(20);
/// Longest a decode may take.
pub const DECODE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest JPEG accepted from ffmpeg.
pub const MAX_JPEG: usize = 2 << 20;
/// Thumbnails kept (rooms); the oldest is dropped beyond.
const CACHE_MAX: usize = 10_000;

struct Entry {
    at: Instant,
    jpeg: Option<Bytes>,
    decoding: bool,
}

pub struct Thumbnails {
    ffmpeg: Option<PathBuf>,
    slots: Arc<Semaphore>,
    cache: Mutex<HashMap<i64, Entry>>,
}

/// `ffmpeg` on the PATH, if any.
fn find_ffmpeg() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("ffmpeg"))
        .find(|p| p.is_file())
}

impl Thumbnails {
    pub fn new() -> Thumbnails {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with(find_ffmpeg(), cores)
    }

    /// With a given decoder and number of decode slots.
    fn with(ffmpeg: Option<PathBuf>, cores: usize) -> Thumbnails {
        match &ffmpeg {
            Some(p) => tracing::info!(
                ffmpeg = %p.display(),
                "live thumbnails on: one decode per core at most ({cores}), each room at most every {}s",
                REFRESH.as_secs()
            ),
            None => tracing::info!(
                "live thumbnails off: ffmpeg is not on the PATH; room cards keep their cover"
            ),
        }
        Thumbnails {
            ffmpeg,
            slots: Arc::new(Semaphore::new(cores)),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The room's thumbnail: the cached one when fresh; otherwise a decode of `keyframe_flv()`
    /// when a slot is free (waiting for it only when there is nothing cached yet).
    pub async fn get(
        self: &Arc<Self>,
        room_id: i64,
        keyframe_flv: impl FnOnce() -> Option<Bytes>,
    ) -> Option<Bytes> {
        let ffmpeg = self.ffmpeg.clone()?;
        let stale = {
            let mut cache = self.cache.lock();
            if let Some(e) = cache.get(&room_id) {
                if e.at.elapsed() < REFRESH || e.decoding {
                    return e.jpeg.clone();
                }
            }
            if cache.len() >= CACHE_MAX && !cache.contains_key(&room_id) {
                if let Some(oldest) = cache.iter().min_by_key(|(_, e)| e.at).map(|(k, _)| *k) {
                    cache.remove(&oldest);
                }
            }
            let e = cache.entry(room_id).or_insert(Entry {
                at: Instant::now(),
                jpeg: None,
                decoding: false,
            });
            e.decoding = true;
            e.jpeg.clone()
        };
        let finish = |jpeg: Option<Bytes>| {
            let mut cache = self.cache.lock();
            if let Some(e) = cache.get_mut(&room_id) {
                e.decoding = false;
                e.at = Instant::now();
                if jpeg.is_some() {
                    e.jpeg = jpeg;
                }
                e.jpeg.clone()
            } else {
                jpeg
            }
        };
        let Some(input) = keyframe_flv() else {
            return finish(None);
        };
        let permit = if stale.is_some() {
            match self.slots.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => return finish(None), // busy: the stale one will do
            }
        } else {
            match self.slots.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => return finish(None),
            }
        };
        let this = self.clone();
        let decode = async move {
            let _permit = permit;
            let jpeg = match tokio::time::timeout(DECODE_TIMEOUT, decode(&ffmpeg, input)).await {
                Ok(Ok(jpeg)) => Some(jpeg),
                Ok(Err(e)) => {
                    tracing::debug!(room = room_id, "thumbnail decode failed: {e}");
                    None
                }
                Err(_) => {
                    tracing::debug!(room = room_id, "thumbnail decode timed out");
                    None
                }
            };
            let mut cache = this.cache.lock();
            if let Some(e) = cache.get_mut(&room_id) {
                e.decoding = false;
                e.at = Instant::now();
                if jpeg.is_some() {
                    e.jpeg = jpeg.clone();
                }
            }
            jpeg
        };
        if stale.is_some() {
            // Serve the stale picture now; the new one replaces it when ready.
            tokio::spawn(decode);
            stale
        } else {
            tokio::spawn(decode).await.ok().flatten()
        }
    }
}

impl Default for Thumbnails {
    fn default() -> Self {
        Thumbnails::new()
    }
}

/// Runs ffmpeg on one keyframe (as FLV on stdin) and returns the JPEG (stdout).
async fn decode(ffmpeg: &PathBuf, input: Bytes) -> anyhow::Result<Bytes> {
    let mut child = tokio::process::Command::new(ffmpeg)
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-f", "flv", "-i", "pipe:0", "-frames:v", "1"])
        .args([
            "-vf",
            "scale=480:-2",
            "-q:v",
            "5",
            "-f",
            "image2",
            "-c:v",
            "mjpeg",
            "pipe:1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let writer = async move {
        let _ = stdin.write_all(&input).await;
        drop(stdin);
    };
    let reader = async move {
        let mut out = Vec::with_capacity(64 * 1024);
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = stdout.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            anyhow::ensure!(
                out.len() + n <= MAX_JPEG,
                "thumbnail larger than {MAX_JPEG} bytes"
            );
            out.extend_from_slice(&buf[..n]);
        }
        Ok::<_, anyhow::Error>(out)
    };
    let ((), out) = tokio::join!(writer, reader);
    let out = out?;
    let status = child.wait().await?;
    anyhow::ensure!(
        status.success() && out.starts_with(&[0xff, 0xd8]),
        "ffmpeg gave no JPEG"
    );
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in decoder for the scheduling logic: counts runs, notes any overlap, answers a
    /// 4-byte "JPEG". (The real ffmpeg is exercised by tests/tests/video.rs.)
    fn fake_ffmpeg(dir: &std::path::Path) -> PathBuf {
        let script = dir.join("ffmpeg");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncat >/dev/null\nd={d}\necho x >>$d/runs\n\
                 ls $d/running.* >/dev/null 2>&1 && echo overlap >>$d/overlap\n\
                 touch $d/running.$$\nsleep 0.2\nrm $d/running.$$\nprintf '\\377\\330\\377\\331'\n",
                d = dir.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    #[tokio::test]
    async fn one_decode_per_slot_at_a_time_and_cached_for_twenty_seconds() {
        let dir = std::env::temp_dir().join(format!("livehouse-thumb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let thumbs = Arc::new(Thumbnails::with(Some(fake_ffmpeg(&dir)), 1));
        let input = || Some(Bytes::from_static(b"FLV"));
        let gets = (1..=4).map(|room| {
            let t = thumbs.clone();
            async move { t.get(room, input).await }
        });
        let got = futures::future::join_all(gets).await;
        assert!(got
            .iter()
            .all(|j| j.as_deref() == Some(&[0xff, 0xd8, 0xff, 0xd9][..])));
        for room in 1..=4 {
            assert!(thumbs.get(room, input).await.is_some());
        }
        let runs = std::fs::read_to_string(dir.join("runs")).unwrap();
        assert_eq!(
            runs.lines().count(),
            4,
            "one decode per room, then the cache"
        );
        assert!(
            !dir.join("overlap").exists(),
            "two decodes ran at once with one slot"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[tokio::test]
    async fn without_ffmpeg_there_is_no_thumbnail() {
        let thumbs = Arc::new(Thumbnails::with(None, 2));
        assert!(thumbs
            .get(1, || Some(Bytes::from_static(b"FLV")))
            .await
            .is_none());
    }
}
