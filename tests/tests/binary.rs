//! The `livehouse` binary itself: documented flags, health/readiness/metrics, the web pages,
//! and a graceful stop on SIGTERM.

use livehouse_e2e::{binary, Livehouse};
use std::time::Duration;

#[test]
fn help_documents_every_flag_and_role() {
    let out = std::process::Command::new(binary()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--http-addr", "0.0.0.0:8080", "--rtmp-addr", "0.0.0.0:1935", "--im-tcp-addr",
        "0.0.0.0:8085", "--data-dir", "./data", "--database-url", "--redis-url", "--kafka-brokers",
        "--jwt-secret", "--open-streaming", "LIVEHOUSE_HTTP_ADDR", "api", "living", "msg",
        "im-core", "media",
    ] {
        assert!(help.contains(needle), "--help does not mention {needle}:\n{help}");
    }
}

#[test]
fn a_bad_flag_is_a_clear_error_not_a_crash() {
    let out = std::process::Command::new(binary())
        .args(["--http-addr", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value"));
}

#[tokio::test]
async fn health_readiness_metrics_and_web_pages_answer() {
    let lh = Livehouse::start(&[]).await;
    let ready = reqwest::get(lh.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = reqwest::get(lh.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("livehouse_http_requests_total"), "{metrics}");
    let doc = reqwest::get(lh.url("/api-docs/openapi.json")).await.unwrap();
    assert_eq!(doc.status(), 200);
    let home = reqwest::get(lh.url("/")).await.unwrap();
    assert_eq!(home.status(), 200, "the web home page is served");
    assert!(home.text().await.unwrap().contains("<html"));
    // The JWT secret was generated and kept for the next start.
    assert!(lh.data_dir.join("jwt.secret").exists());
}

#[tokio::test]
async fn sigterm_stops_the_process_cleanly() {
    let mut lh = Livehouse::start(&[]).await;
    let pid = lh.child.id().expect("running");
    let sent = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(15), lh.child.wait())
        .await
        .expect("exits within 15 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "graceful exit, got {status:?}");
}
