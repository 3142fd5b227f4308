//! Recording: each recorded room's live sessions written as one FLV file in the record folder,
//! with a keyframe index in its `onMetaData` so players can seek; crash recovery; retention.
//!
//! Layout of `{dir}/{roomId}.flv`: the FLV header, then an `onMetaData` script tag of fixed size
//! ([`META_BODY`] bytes, padded with `_pad0`, `_pad1`… strings) that holds `duration`, `filesize` and
//! `keyframes: {times, filepositions}`, then the tags as the publisher sent them. Because the
//! slot's size never changes, the index is written in place when a session ends: no copy of the
//! file. While a session writes, `{roomId}.flv.writing` exists (and the file is not served); a
//! later session of the same room appends to the file, continuing its timestamps.
//!
//! The publisher's task hands each tag to the room's writer thread through a bounded queue
//! without waiting ([`Recorder::push`]); a full queue loses the tag and counts it (never seen at
//! 2.5 Mbit/s, see docs/benchmarks.md). Recovery ([`recover`]): a file whose marker is still
//! there (the server was killed) is cut after its last complete tag, indexed and finished.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use crate::flv::{self, Tag, TagKind, TAG_HEADER_LEN};

/// Size of the `onMetaData` body reserved at the start of every record (256 KiB holds the index
/// of about 14,000 keyframes, 8 hours at a 2 s interval; longer records keep every n-th one).
pub const META_BODY: usize = 256 * 1024;
/// Where the first media tag starts.
pub const MEDIA_START: u64 = (flv::FILE_HEADER.len() + TAG_HEADER_LEN + META_BODY + 4) as u64;
/// Tags queued for the writer thread.
const QUEUE: usize = 4096;
/// Largest tag body the reader accepts (FLV's 24-bit size).
const MAX_TAG: usize = flv::MAX_PAYLOAD;

/// When to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordMode {
    Off,
    On,
    /// Rooms whose streamer asked for it (the studio's checkbox).
    PerRoom,
}

/// Recording settings.
#[derive(Clone, Debug)]
pub struct RecordConfig {
    pub mode: RecordMode,
    /// The record folder (`{data dir}/records`).
    pub dir: PathBuf,
    /// Records older than this are deleted (0 = kept).
    pub retention_days: u32,
    /// The folder is kept under this many bytes, oldest records deleted first (0 = no cap).
    pub max_bytes: u64,
}

/// A finished record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Saved {
    pub room_id: i64,
    pub duration_ms: u64,
    pub size_bytes: u64,
}

pub fn path_of(dir: &Path, room_id: i64) -> PathBuf {
    dir.join(format!("{room_id}.flv"))
}

fn marker_of(dir: &Path, room_id: i64) -> PathBuf {
    dir.join(format!("{room_id}.flv.writing"))
}

/// Whether the record of the room is complete and may be served.
pub fn is_finished(dir: &Path, room_id: i64) -> bool {
    path_of(dir, room_id).is_file() && !marker_of(dir, room_id).exists()
}

/// The file's keyframe index and end, found by reading its tag headers.
#[derive(Debug, Default, PartialEq)]
struct Scan {
    /// (timestamp ms, file position of the tag)
    keyframes: Vec<(u32, u64)>,
    last_ts: u32,
    /// End of the last complete tag.
    end: u64,
    width: Option<f64>,
    height: Option<f64>,
}

/// Reads a record's tags after the metadata slot; stops at the first incomplete or invalid tag.
fn scan(file: &mut File) -> std::io::Result<Scan> {
    let len = file.metadata()?.len();
    let mut s = Scan {
        end: MEDIA_START.min(len),
        ..Scan::default()
    };
    if len < MEDIA_START {
        return Ok(s);
    }
    let mut rd = std::io::BufReader::with_capacity(64 * 1024, &mut *file);
    rd.seek(SeekFrom::Start(MEDIA_START))?;
    let mut pos = MEDIA_START;
    let mut head = [0u8; TAG_HEADER_LEN + 2];
    loop {
        if pos + TAG_HEADER_LEN as u64 + 4 > len {
            break;
        }
        if rd.read_exact(&mut head[..TAG_HEADER_LEN]).is_err() {
            break;
        }
        let kind = head[0];
        let size = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
        let ts = u32::from_be_bytes([head[7], head[4], head[5], head[6]]);
        let total = (TAG_HEADER_LEN + size + 4) as u64;
        if !matches!(kind, 8 | 9 | 18) || size > MAX_TAG || pos + total > len {
            break;
        }
        let mut first = [0u8; 2];
        let peek = size.min(2);
        if rd.read_exact(&mut first[..peek]).is_err() {
            break;
        }
        rd.seek_relative((size - peek) as i64)?;
        let mut prev = [0u8; 4];
        if rd.read_exact(&mut prev).is_err() {
            break;
        }
        if u32::from_be_bytes(prev) as usize != TAG_HEADER_LEN + size {
            break;
        }
        if kind == 9 && size >= 2 && first[0] >> 4 == 1 && !(first[0] & 0x0f == 7 && first[1] == 0)
        {
            s.keyframes.push((ts, pos));
        }
        if kind != 18 {
            s.last_ts = s.last_ts.max(ts);
        }
        pos += total;
        s.end = pos;
    }
    Ok(s)
}

/// The `onMetaData` body, exactly [`META_BODY`] bytes.
fn meta_body(s: &Scan, size: u64) -> Vec<u8> {
    // Index entries: strict arrays of AMF numbers (9 bytes each); thin a long index evenly.
    let room = META_BODY - 400;
    let per_entry = 18;
    let step = s.keyframes.len().div_ceil(room / per_entry).max(1);
    let index: Vec<(u32, u64)> = s.keyframes.iter().step_by(step).copied().collect();
    let mut b = BytesMut::with_capacity(META_BODY);
    let key = |b: &mut BytesMut, k: &str| {
        b.put_u16(k.len() as u16);
        b.put_slice(k.as_bytes());
    };
    let num = |b: &mut BytesMut, k: &str, v: f64| {
        key(b, k);
        b.put_u8(0x00);
        b.put_f64(v);
    };
    b.put_u8(0x02);
    key(&mut b, "onMetaData");
    b.put_u8(0x08);
    b.put_u32(8);
    num(&mut b, "duration", f64::from(s.last_ts) / 1000.0);
    num(&mut b, "filesize", size as f64);
    if let (Some(w), Some(h)) = (s.width, s.height) {
        num(&mut b, "width", w);
        num(&mut b, "height", h);
    }
    key(&mut b, "hasKeyframes");
    b.put_u8(0x01);
    b.put_u8(u8::from(!index.is_empty()));
    key(&mut b, "keyframes");
    b.put_u8(0x03); // object
    key(&mut b, "times");
    b.put_u8(0x0a);
    b.put_u32(index.len() as u32);
    for (t, _) in &index {
        b.put_u8(0x00);
        b.put_f64(f64::from(*t) / 1000.0);
    }
    key(&mut b, "filepositions");
    b.put_u8(0x0a);
    b.put_u32(index.len() as u32);
    for (_, p) in &index {
        b.put_u8(0x00);
        b.put_f64(*p as f64);
    }
    b.put_slice(&[0, 0, 0x09]); // end of keyframes
                                // Padding to the slot size with plain AMF strings (`_pad0`, `_pad1`, … of at most 64 KiB:
                                // ffmpeg's reader does not know the long-string type), then the end of the array.
    let entry = 2 + 5 + 1 + 2; // key length, "_padN", string marker, string length
    let mut n = 0;
    loop {
        let left = META_BODY - 3 - b.len();
        if left == 0 {
            break;
        }
        let mut len = left.saturating_sub(entry).min(u16::MAX as usize);
        let after = left - (entry + len).min(left);
        if after > 0 && after < entry {
            len -= entry; // leave room for one more whole entry
        }
        key(&mut b, &format!("_pad{n}"));
        b.put_u8(0x02);
        b.put_u16(len as u16);
        b.put_bytes(b' ', len);
        n += 1;
    }
    b.put_slice(&[0, 0, 0x09]);
    debug_assert_eq!(b.len(), META_BODY);
    b.to_vec()
}

/// Writes the metadata slot (index, duration, size) of a record in place.
fn write_meta(file: &mut File, s: &Scan) -> std::io::Result<()> {
    let body = meta_body(s, s.end);
    let tag = flv::encode_tag(TagKind::Script, 0, &body);
    file.seek(SeekFrom::Start(flv::FILE_HEADER.len() as u64))?;
    file.write_all(&tag)?;
    Ok(())
}

/// Opens (or creates) a room's record for a new session: returns the file positioned at its end
/// and what the file holds so far.
fn open_for_append(dir: &Path, room_id: i64) -> std::io::Result<(File, Scan)> {
    std::fs::create_dir_all(dir)?;
    let path = path_of(dir, room_id);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    let mut s = scan(&mut file)?;
    if s.end < MEDIA_START {
        // New (or unusable) file: header and an empty metadata slot.
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&flv::FILE_HEADER)?;
        s = Scan {
            end: MEDIA_START,
            ..Scan::default()
        };
        write_meta(&mut file, &s)?;
    }
    file.set_len(s.end)?;
    file.seek(SeekFrom::Start(s.end))?;
    Ok((file, s))
}

/// Counters of all recordings of the process.
#[derive(Debug, Default)]
pub struct RecordStats {
    pub tags_written: AtomicU64,
    pub tags_lost: AtomicU64,
    pub bytes_written: AtomicU64,
}

/// The publisher's handle on a room's recording: dropping it ends the session (the writer
/// thread finishes the file and calls `on_saved`).
pub struct Recorder {
    tx: SyncSender<Tag>,
    stats: Arc<RecordStats>,
    room_id: i64,
}

impl Recorder {
    /// Starts recording a session of the room; `on_saved` runs on the writer thread when the
    /// session's file is complete.
    pub fn start(
        dir: &Path,
        room_id: i64,
        stats: Arc<RecordStats>,
        on_saved: impl FnOnce(Saved) + Send + 'static,
    ) -> std::io::Result<Recorder> {
        let (file, s) = open_for_append(dir, room_id)?;
        File::create(marker_of(dir, room_id))?;
        let (tx, rx) = sync_channel::<Tag>(QUEUE);
        let dir = dir.to_path_buf();
        let thread_stats = stats.clone();
        std::thread::Builder::new()
            .name(format!("record-{room_id}"))
            .spawn(move || {
                let result = write_session(file, s, rx, &thread_stats);
                match result.and_then(|(file, s)| finish(file, s)) {
                    Ok(saved) => {
                        let _ = std::fs::remove_file(marker_of(&dir, room_id));
                        tracing::info!(
                            room = room_id,
                            duration_ms = saved.0,
                            size = saved.1,
                            "record saved"
                        );
                        on_saved(Saved {
                            room_id,
                            duration_ms: saved.0,
                            size_bytes: saved.1,
                        });
                    }
                    // The marker stays: the next start recovers what was written.
                    Err(e) => tracing::error!(room = room_id, "recording failed: {e}"),
                }
            })?;
        Ok(Recorder { tx, stats, room_id })
    }

    /// Queues a tag for the writer without waiting; a full queue loses it (counted).
    pub fn push(&self, tag: &Tag) {
        match self.tx.try_send(tag.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let lost = self.stats.tags_lost.fetch_add(1, Ordering::Relaxed);
                if lost.is_power_of_two() {
                    tracing::warn!(room = self.room_id, "recording queue full: tags lost");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.stats.tags_lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Writes the session's tags (timestamps continuing the file's) until the sender is dropped.
fn write_session(
    file: File,
    mut s: Scan,
    rx: std::sync::mpsc::Receiver<Tag>,
    stats: &RecordStats,
) -> std::io::Result<(File, Scan)> {
    // A later session starts one frame after the end of the earlier ones.
    let offset = if s.end > MEDIA_START {
        s.last_ts + 40
    } else {
        0
    };
    let mut w = BufWriter::with_capacity(256 * 1024, file);
    let mut first_ts: Option<u32> = None;
    while let Ok(tag) = rx.recv() {
        if tag.kind == TagKind::Script {
            continue;
        }
        // Timestamps of a session start where the publisher's first tag is.
        let base = *first_ts.get_or_insert(tag.timestamp);
        let ts = offset + tag.timestamp.saturating_sub(base);
        let bytes = if ts == tag.timestamp {
            tag.flv.clone()
        } else {
            tag.restamped(ts).flv
        };
        if tag.keyframe {
            s.keyframes.push((ts, s.end));
        }
        w.write_all(&bytes)?;
        s.end += bytes.len() as u64;
        s.last_ts = s.last_ts.max(ts);
        stats.tags_written.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes_written
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }
    w.flush()?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    Ok((file, s))
}

/// Writes the index and syncs; returns (duration ms, size bytes).
fn finish(mut file: File, s: Scan) -> std::io::Result<(u64, u64)> {
    write_meta(&mut file, &s)?;
    file.sync_all()?;
    Ok((u64::from(s.last_ts), s.end))
}

/// Finishes the records a killed server left (their marker is still there): cut after the last
/// complete tag, index, remove the marker. Returns what was saved.
pub fn recover(dir: &Path) -> Vec<Saved> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut saved = vec![];
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(room_id) = name
            .strip_suffix(".flv.writing")
            .and_then(|id| id.parse::<i64>().ok())
        else {
            continue;
        };
        let result = (|| -> std::io::Result<(u64, u64)> {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path_of(dir, room_id))?;
            let s = scan(&mut file)?;
            if s.end < MEDIA_START {
                return Err(std::io::Error::other("no FLV header and metadata slot"));
            }
            file.set_len(s.end)?;
            finish(file, s)
        })();
        match result {
            Ok((duration_ms, size_bytes)) => {
                let _ = std::fs::remove_file(e.path());
                tracing::info!(
                    room = room_id,
                    duration_ms,
                    size = size_bytes,
                    "record recovered after an unclean stop"
                );
                saved.push(Saved {
                    room_id,
                    duration_ms,
                    size_bytes,
                });
            }
            Err(err) => {
                tracing::warn!(
                    room = room_id,
                    "record could not be recovered: {err}; removed"
                );
                let _ = std::fs::remove_file(path_of(dir, room_id));
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    saved
}

/// Applies retention: deletes finished records older than `retention_days`, then the oldest
/// until the folder is under `max_bytes`. Returns the rooms whose records were deleted.
pub fn enforce_retention(config: &RecordConfig) -> Vec<i64> {
    let Ok(entries) = std::fs::read_dir(&config.dir) else {
        return vec![];
    };
    let mut files: Vec<(std::time::SystemTime, u64, i64)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let room = name.strip_suffix(".flv")?.parse::<i64>().ok()?;
            if marker_of(&config.dir, room).exists() {
                return None; // being written
            }
            let meta = e.metadata().ok()?;
            Some((meta.modified().ok()?, meta.len(), room))
        })
        .collect();
    files.sort();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    let now = std::time::SystemTime::now();
    let max_age = std::time::Duration::from_secs(u64::from(config.retention_days) * 86_400);
    let mut deleted = vec![];
    for (modified, size, room) in files {
        let too_old =
            config.retention_days > 0 && now.duration_since(modified).unwrap_or_default() > max_age;
        let too_big = config.max_bytes > 0 && total > config.max_bytes;
        if !(too_old || too_big) {
            continue;
        }
        if std::fs::remove_file(path_of(&config.dir, room)).is_ok() {
            total -= size;
            tracing::info!(room, size, too_old, "record deleted by retention");
            deleted.push(room);
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "livehouse-record-{}-{}",
            std::process::id(),
            livehouse_core::ids::random_hex(4)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn session(dir: &Path, room: i64, from: u32, secs: u32) -> Saved {
        let (tx, rx) = std::sync::mpsc::channel();
        let rec = Recorder::start(dir, room, Arc::default(), move |s| tx.send(s).unwrap())
            .expect("start");
        rec.push(&Tag::new(TagKind::Video, from, &[0x17, 0, 0, 0, 0, 1, 2]));
        for i in 0..secs * 25 {
            let ts = from + i * 40;
            rec.push(&Tag::new(
                TagKind::Video,
                ts,
                &[if i % 50 == 0 { 0x17 } else { 0x27 }, 1, 0, 0, 0, 9],
            ));
            rec.push(&Tag::new(TagKind::Audio, ts, &[0xaf, 1, 7]));
        }
        drop(rec);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("saved")
    }

    #[test]
    fn the_metadata_slot_is_exactly_its_size_for_any_index_length() {
        for n in [0usize, 1, 7, 500, 3_000, 14_000, 40_000] {
            let s = Scan {
                keyframes: (0..n)
                    .map(|i| (i as u32 * 2000, MEDIA_START + i as u64 * 1000))
                    .collect(),
                last_ts: n as u32 * 2000,
                end: MEDIA_START + n as u64 * 1000,
                ..Scan::default()
            };
            let body = meta_body(&s, s.end);
            assert_eq!(body.len(), META_BODY, "{n} keyframes");
            assert_eq!(&body[body.len() - 3..], &[0, 0, 9]);
        }
    }

    #[test]
    fn a_record_has_its_index_and_a_second_session_appends_to_it() {
        let d = dir();
        let first = session(&d, 3, 5000, 10);
        assert_eq!(first.duration_ms, 9960);
        assert!(is_finished(&d, 3));
        let mut f = File::open(path_of(&d, 3)).unwrap();
        let s = scan(&mut f).unwrap();
        assert_eq!(s.keyframes.len(), 5, "one keyframe each 2 s");
        assert_eq!(
            s.keyframes[0],
            (0, MEDIA_START + 22),
            "after the 22-byte sequence header tag"
        );
        assert_eq!(s.end, first.size_bytes);
        let second = session(&d, 3, 0, 4);
        assert_eq!(second.duration_ms, 9960 + 40 + 3960);
        let s = scan(&mut File::open(path_of(&d, 3)).unwrap()).unwrap();
        assert_eq!(s.keyframes.len(), 7);
        assert_eq!(s.keyframes[5].0, 10_000);
        // The metadata slot names the index (as mpegts.js and ffmpeg read it).
        let mut head = vec![0u8; MEDIA_START as usize];
        File::open(path_of(&d, 3))
            .unwrap()
            .read_exact(&mut head)
            .unwrap();
        let text = String::from_utf8_lossy(&head);
        assert!(text.contains("keyframes") && text.contains("filepositions"));
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn a_killed_session_is_cut_at_its_last_complete_tag_and_indexed_at_the_next_start() {
        let d = dir();
        session(&d, 4, 0, 6);
        let full = std::fs::metadata(path_of(&d, 4)).unwrap().len();
        // A crash: the marker is back and the file ends inside a tag.
        File::create(marker_of(&d, 4)).unwrap();
        let mut f = OpenOptions::new()
            .append(true)
            .open(path_of(&d, 4))
            .unwrap();
        f.write_all(&Tag::new(TagKind::Video, 6000, &[0x17, 1, 0, 0, 0, 1, 2, 3]).flv[..9])
            .unwrap();
        drop(f);
        assert!(!is_finished(&d, 4));
        let saved = recover(&d);
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].size_bytes, full);
        assert_eq!(std::fs::metadata(path_of(&d, 4)).unwrap().len(), full);
        assert!(is_finished(&d, 4));
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn retention_deletes_the_oldest_first_and_never_a_record_being_written() {
        let d = dir();
        for room in [1, 2, 3] {
            session(&d, room, 0, 2);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        File::create(marker_of(&d, 1)).unwrap();
        let one = std::fs::metadata(path_of(&d, 2)).unwrap().len();
        let deleted = enforce_retention(&RecordConfig {
            mode: RecordMode::On,
            dir: d.clone(),
            retention_days: 0,
            max_bytes: one + one / 2,
        });
        assert_eq!(
            deleted,
            vec![2],
            "room 1 is being written; 2 is the oldest finished"
        );
        assert!(path_of(&d, 1).exists() && path_of(&d, 3).exists());
        std::fs::remove_dir_all(&d).ok();
    }
}
