//! The production video path's RTMP configuration (`nginx/`) against the real api: Debian's
//! nginx with libnginx-mod-rtmp calls `livehouse`'s `on_publish` hooks, ffmpeg pushes with a
//! room's stream key, ffprobe pulls by room id; refusals (wrong key, second publisher) are
//! checked by the hooks' answers, `on_publish_done` by the room's streaming flag, and closing
//! the room through the api cuts the publisher (`nginx/test.sh` does the nginx side; every step
//! runs here).
//! Runs when `LIVEHOUSE_TEST_NGINX=1` (CI sets it; skipping there is a failure).

use livehouse_core::testenv;
use livehouse_e2e::Livehouse;
use std::time::Duration;

#[tokio::test]
async fn nginx_rtmp_publishes_through_the_livehouse_hooks() {
    if testenv::backend("LIVEHOUSE_TEST_NGINX").is_none() {
        return;
    }
    let secret = livehouse_core::ids::random_hex(24);
    let lh = Livehouse::start(&["--media-callback-secret", &secret]).await;
    let (token, cfg) = lh.streamer_with_room("nginxanchor", "via nginx").await;
    let room = cfg["roomId"].as_i64().unwrap();
    let key = cfg["streamKey"].as_str().unwrap().to_string();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../nginx/test.sh");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("bash")
            .arg(script)
            .env("LIVEHOUSE_NGINX_API", format!("http://{}", lh.http))
            .env("LIVEHOUSE_NGINX_KEY", &key)
            .env("LIVEHOUSE_NGINX_ROOM", room.to_string())
            .env("LIVEHOUSE_NGINX_TOKEN", &token)
            .env("LIVEHOUSE_NGINX_SECRET", &secret)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("nginx/test.sh finishes within 120 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "nginx/test.sh failed:\n{stdout}");
}
