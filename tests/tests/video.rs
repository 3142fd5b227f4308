//! The video path through the real binary: a streamer starts a room, ffmpeg pushes H.264 + AAC to
//! the push URL the api hands out, the room turns `streaming`, ffprobe finds both streams at
//! `/live/{roomId}.flv`, and closing the room cuts the publisher. Needs Debian's ffmpeg
//! (skips locally without it; fails in CI with `LIVEHOUSE_REQUIRE_BACKENDS=1`).

use livehouse_e2e::{poll_until, Livehouse};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;

fn have_ffmpeg() -> bool {
    let ok = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok();
    if !ok {
        assert!(
            std::env::var("LIVEHOUSE_REQUIRE_BACKENDS").as_deref() != Ok("1"),
            "ffmpeg missing but LIVEHOUSE_REQUIRE_BACKENDS=1"
        );
        eprintln!("SKIPPED: ffmpeg not installed");
    }
    ok
}

#[tokio::test]
async fn push_to_the_handed_out_url_plays_as_http_flv_and_closing_the_room_cuts_it() {
    if !have_ffmpeg() {
        return;
    }
    let lh = Livehouse::start(&[]).await;
    let http = reqwest::Client::new();
    let (token, cfg) = lh.streamer_with_room("streamer", "tv").await;
    let room = cfg["roomId"].as_i64().unwrap();
    let push_url = cfg["pushUrl"].as_str().unwrap().to_string();
    assert_eq!(cfg["streaming"], json!(false));
    assert!(push_url.ends_with(cfg["streamKey"].as_str().unwrap()));

    let mut ffmpeg = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "25",
        ])
        .args(["-c:a", "aac", "-f", "flv", &push_url])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // The room turns "streaming" for viewers and in the list.
    poll_until(
        "anchorConfig shows streaming",
        Duration::from_secs(15),
        || {
            let (http, url) = (
                http.clone(),
                lh.url(&format!("/living/anchorConfig?roomId={room}")),
            );
            async move {
                let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
                v["data"]["streaming"] == json!(true)
            }
        },
    )
    .await;
    poll_until(
        "the list shows the room streaming",
        Duration::from_secs(5),
        || {
            let (http, url) = (http.clone(), lh.url("/living/list?type=1"));
            async move {
                let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
                v["data"]["list"][0]["streaming"] == json!(true)
            }
        },
    )
    .await;

    let probe = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name,codec_type",
                "-of",
                "csv=p=0",
            ])
            .arg(lh.url(&format!("/live/{room}.flv")))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("ffprobe answers within 20 s")
    .unwrap();
    let streams = String::from_utf8_lossy(&probe.stdout);
    assert!(
        streams.contains("h264,video") && streams.contains("aac,audio"),
        "ffprobe saw: {streams}"
    );

    // Closing the room cuts the publisher: ffmpeg exits on its own.
    let closed = lh
        .call("/living/closeLiving", &token, json!({"roomId": room}))
        .await;
    assert_eq!(closed["code"], json!(200), "{closed}");
    let exited = tokio::time::timeout(Duration::from_secs(10), ffmpeg.wait()).await;
    assert!(
        exited.is_ok(),
        "the publisher was not cut within 10 s of closing the room"
    );
    let gone = http
        .get(lh.url(&format!("/live/{room}.flv")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404, "a closed room has no stream");
}
