//! The HLS edge of `nginx/edge.conf` against the real binary: Debian's nginx caches LL-HLS for
//! 50 clients doing blocking reloads (`nginx/edge-test.sh` runs nginx and the clients and reads
//! the edge's log); the origin is asked about once per part. Runs when `LIVEHOUSE_TEST_NGINX=1`
//! (CI sets it; skipping there is a failure). Needs ffmpeg and nginx.

use livehouse_core::testenv;
use livehouse_e2e::{poll_until, Livehouse};
use std::process::Stdio;
use std::time::Duration;

#[tokio::test]
async fn fifty_ll_hls_clients_through_the_nginx_edge_cost_the_origin_one_fetch_per_part() {
    if testenv::backend("LIVEHOUSE_TEST_NGINX").is_none() {
        return;
    }
    let lh = Livehouse::start(&[]).await;
    let (_, cfg) = lh.streamer_with_room("edgeanchor", "via the edge").await;
    let room = cfg["roomId"].as_i64().unwrap();
    let _ffmpeg = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440"])
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
        .args(["-c:a", "aac", "-f", "flv", cfg["pushUrl"].as_str().unwrap()])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let playlist = lh.url(&format!("/live/{room}.m3u8"));
    poll_until("the origin's playlist", Duration::from_secs(20), || {
        let url = playlist.clone();
        async move {
            reqwest::get(url)
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../nginx/edge-test.sh");
    let out = tokio::time::timeout(
        Duration::from_secs(150),
        tokio::process::Command::new("bash")
            .arg(script)
            .env("LIVEHOUSE_EDGE_ORIGIN", lh.http.to_string())
            .env("LIVEHOUSE_EDGE_ROOM", room.to_string())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("nginx/edge-test.sh finishes within 150 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "nginx/edge-test.sh failed:\n{stdout}");
}
