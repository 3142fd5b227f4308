//! HLS / LL-HLS of the built-in media server with Debian's ffmpeg pushing H.264 + AAC (1 s GOP):
//! ffprobe reads the playlist, the playlist carries the LL-HLS tags, parts and segments have the
//! announced sizes, blocking reloads wait for the asked part and bad positions get a clean 400;
//! a stream without video or with other codecs is flagged in health and answered cleanly.

mod common;

use std::time::{Duration, Instant};

use common::*;

const ROOM: i64 = 7;
const KEY: &str = "0123456789abcdef";

async fn get(url: &str) -> (u16, String, Vec<u8>) {
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, ct, r.bytes().await.expect("body").to_vec())
}

async fn wait_playlist(base: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, body) = get(&format!("{base}/live/{ROOM}.m3u8")).await;
        if status == 200 {
            let text = String::from_utf8(body).expect("utf-8");
            if text.matches("#EXTINF").count() >= 2 {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no playlist with 2 segments after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn ffprobe_reads_the_hls_stream_and_the_playlist_is_low_latency_hls() {
    if !have_ffmpeg() {
        return;
    }
    let auth = TestAuth::with_room(KEY, ROOM);
    let server = TestServer::start(auth).await;
    let _ffmpeg = push(&server.push_url(KEY), None);
    let base = format!("http://{}", server.http);
    let text = wait_playlist(&base).await;

    for tag in [
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES",
        "#EXT-X-PART-INF:PART-TARGET=",
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=",
        "#EXT-X-MAP:URI=",
        "#EXT-X-PROGRAM-DATE-TIME:",
    ] {
        assert!(text.contains(tag), "{tag} missing:\n{text}");
    }
    let (_, pl) = m3u8_rs::parse_media_playlist(text.as_bytes()).expect("m3u8-rs parses it");
    for seg in &pl.segments {
        assert!(
            (1.9..=2.1).contains(&seg.duration),
            "a 1 s GOP gives 2 s segments: {}",
            seg.duration
        );
    }
    for line in text.lines().filter(|l| l.starts_with("#EXT-X-PART:")) {
        let d: f64 = line["#EXT-X-PART:DURATION=".len()..]
            .split(',')
            .next()
            .and_then(|d| d.parse().ok())
            .expect("part duration");
        assert!((0.03..=0.4).contains(&d), "part of {d} s");
    }

    // The media: init segment, a segment that is exactly its parts.
    let seg = pl.segments.last().expect("a segment");
    let (status, ct, segment) = get(&format!("{base}/live/{}", seg.uri)).await;
    assert_eq!((status, ct.as_str()), (200, "video/mp4"));
    let seg_no = seg.uri.rsplit('/').next().unwrap().trim_end_matches(".m4s");
    let dir = seg.uri.rsplit_once('/').unwrap().0;
    let mut parts = Vec::new();
    for i in 0.. {
        let (status, _, part) = get(&format!("{base}/live/{dir}/{seg_no}.{i}.m4s")).await;
        if status != 200 {
            break;
        }
        parts.extend_from_slice(&part);
    }
    assert_eq!(parts, segment, "a segment is its parts, back to back");
    assert_eq!(&segment[4..8], b"moof");

    // ffprobe (hls demuxer) finds exactly H.264 and AAC.
    let (ok, out) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name,width,height",
            "-of",
            "json",
            &format!("{base}/live/{ROOM}.m3u8"),
        ],
        Duration::from_secs(30),
    )
    .await;
    assert!(ok, "ffprobe failed");
    // The top-level stream list (the hls demuxer also lists them under its program).
    let v: serde_json::Value = serde_json::from_str(&out).expect("ffprobe json");
    let mut streams: Vec<String> = v["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| format!("{},{},{}", s["codec_type"], s["codec_name"], s["width"]))
        .collect();
    streams.sort();
    assert_eq!(
        streams,
        [r#""audio","aac",null"#, r#""video","h264",640"#],
        "ffprobe: {out}"
    );

    // A decoder agrees: ffmpeg decodes a whole segment without error.
    let (ok, _) = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-xerror",
            "-i",
            &format!("{base}/live/{ROOM}.m3u8"),
            "-t",
            "3",
            "-f",
            "null",
            "-",
        ],
        Duration::from_secs(40),
    )
    .await;
    assert!(ok, "ffmpeg could not decode the HLS stream");
}

#[tokio::test]
async fn blocking_reloads_wait_for_the_part_and_bad_positions_are_refused_without_waiting() {
    if !have_ffmpeg() {
        return;
    }
    let auth = TestAuth::with_room(KEY, ROOM);
    let server = TestServer::start(auth).await;
    let _ffmpeg = push(&server.push_url(KEY), None);
    let base = format!("http://{}", server.http);
    let text = wait_playlist(&base).await;
    // The preload hint names the next part: ask for it with a blocking reload.
    let hint = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""))
        .expect("hint")
        .trim_end_matches('"');
    let name = hint.rsplit('/').next().unwrap().trim_end_matches(".m4s");
    let (msn, part) = name.split_once('.').expect("msn.part");
    let started = Instant::now();
    let (status, ct, body) = get(&format!(
        "{base}/live/{ROOM}.m3u8?_HLS_msn={msn}&_HLS_part={part}"
    ))
    .await;
    let waited = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(ct, "application/vnd.apple.mpegurl");
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.contains(&format!("/{msn}.{part}.m4s\"")) || body.contains(&format!("/{msn}.m4s")),
        "the answer holds the asked part:\n{body}"
    );
    // How long it waited is printed, not asserted (a service-level figure): the answer holding
    // the asked part (above) already proves the reload was answered by that part, not by the
    // blocking bound running out.
    eprintln!("blocking reload for the preload-hinted part answered after {waited:?}");
    // The preload-hinted part itself is served as soon as it exists.
    let (status, _, part_bytes) = get(&format!("{base}/live/{hint}")).await;
    assert_eq!(status, 200);
    assert_eq!(&part_bytes[4..8], b"moof");

    // Far in the future: 400, without waiting (a blocked request would end with a playlist or
    // the blocking bound's answer, never 400).
    let far: u64 = msn.parse::<u64>().unwrap() + 50;
    let (status, _, _) = get(&format!(
        "{base}/live/{ROOM}.m3u8?_HLS_msn={far}&_HLS_part=0"
    ))
    .await;
    assert_eq!(status, 400);
    for bad in [
        "_HLS_part=1",
        "_HLS_msn=x",
        "_HLS_msn=99999999999999999999999",
        "_HLS_msn=1&_HLS_part=-1",
    ] {
        let (status, _, _) = get(&format!("{base}/live/{ROOM}.m3u8?{bad}")).await;
        assert_eq!(status, 400, "{bad}");
    }
    // Unknown rooms, sessions and files: 404.
    for path in [
        "/live/999.m3u8",
        "/live/0.m3u8",
        "/live/abc.m3u8",
        &format!("/live/{ROOM}/nosuchsession/init.mp4"),
        &format!("{}/999999.m4s", hint.rsplit_once('/').unwrap().0),
        &format!("{}/1.2.3.m4s", hint.rsplit_once('/').unwrap().0),
    ] {
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/live/{path}")
        };
        let (status, _, _) = get(&format!("{base}{path}")).await;
        assert_eq!(status, 404, "{path}");
    }
}

/// ffmpeg pushing with the given codec arguments (real time, for up to 60 s).
fn push_with(url: &str, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-t",
            "60",
        ])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(args)
        .args(["-f", "flv", url])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg")
}

#[tokio::test]
async fn streams_without_video_or_with_other_codecs_are_flagged_in_health_and_answered_cleanly() {
    if !have_ffmpeg() {
        return;
    }
    let auth = TestAuth::with_room(KEY, ROOM);
    let server = TestServer::start(auth).await;
    let base = format!("http://{}", server.http);
    let codes = |server: &TestServer| -> Vec<String> {
        server
            .media
            .stream_health(ROOM, 0)
            .map(|r| r.warnings.iter().map(|w| w.code.to_string()).collect())
            .unwrap_or_default()
    };

    // Sorenson H.263 video and MP3 audio: FLV viewers still get it; HLS has nothing to offer.
    let mut other = push_with(
        &server.push_url(KEY),
        &["-c:v", "flv1", "-c:a", "libmp3lame", "-b:a", "64k"],
    );
    assert!(
        eventually(Duration::from_secs(20), || {
            let c = codes(&server);
            c.contains(&"video_codec".to_string()) && c.contains(&"audio_codec".to_string())
        })
        .await,
        "health flags both codecs: {:?}",
        codes(&server)
    );
    let report = server.media.stream_health(ROOM, 0).expect("live");
    assert_eq!(
        report.video.as_ref().map(|v| v.codec.as_str()),
        Some("Sorenson H.263")
    );
    assert_eq!(report.audio.as_ref().map(|a| a.codec.as_str()), Some("MP3"));
    let (status, _, _) = get(&format!("{base}/live/{ROOM}.m3u8")).await;
    assert_eq!(status, 404, "no H.264: no HLS, and a clean answer");
    let mut viewer = FlvClient::connect(server.http, &format!("/live/{ROOM}.flv"))
        .await
        .expect("FLV still plays");
    for _ in 0..10 {
        assert!(viewer.next_tag().await.expect("tag").is_some());
    }
    other.kill().await.expect("stop");
    assert!(
        eventually(Duration::from_secs(10), || !server
            .media
            .is_publishing(ROOM))
        .await
    );

    // Audio only: flagged as "no video" once the stream has run 5 s; HLS answers 404.
    let _audio = push_with(&server.push_url(KEY), &["-vn", "-c:a", "aac"]);
    assert!(
        eventually(Duration::from_secs(20), || codes(&server)
            .contains(&"no_video".to_string()))
        .await,
        "health flags the missing video: {:?}",
        codes(&server)
    );
    assert!(server.media.stream_health(ROOM, 0).unwrap().video.is_none());
    let (status, _, _) = get(&format!("{base}/live/{ROOM}.m3u8")).await;
    assert_eq!(status, 404);
    let (status, _, _) = get(&format!("{base}/live/{ROOM}.jpg")).await;
    assert_eq!(status, 404, "no keyframe, no thumbnail");
}
