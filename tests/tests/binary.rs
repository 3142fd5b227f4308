//! The `livehouse` binary itself: documented flags, health/readiness/metrics, the web pages,
//! and a graceful stop on SIGTERM.

use livehouse_e2e::{binary, Livehouse};
use std::time::Duration;

#[test]
fn help_documents_every_flag_and_role() {
    let out = std::process::Command::new(binary())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--http-addr",
        "0.0.0.0:8080",
        "--rtmp-addr",
        "0.0.0.0:1935",
        "--im-tcp-addr",
        "0.0.0.0:8085",
        "--data-dir",
        "./data",
        "--database-url",
        "--redis-url",
        "--kafka-brokers",
        "--jwt-secret",
        "--open-streaming",
        "--media-callback-secret",
        "--public-url",
        "--http-header-timeout-secs",
        "--http-idle-timeout-secs",
        "--http-max-body-bytes",
        "--auth-hash-workers",
        "--rate-login-per-ip",
        "--rate-signup-per-ip",
        "--rate-im-token-per-account",
        "LIVEHOUSE_HTTP_ADDR",
        "api",
        "living",
        "msg",
        "im-core",
        "media",
    ] {
        assert!(
            help.contains(needle),
            "--help does not mention {needle}:\n{help}"
        );
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
    let metrics = reqwest::get(lh.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("livehouse_http_requests_total"),
        "{metrics}"
    );
    let doc = reqwest::get(lh.url("/api-docs/openapi.json"))
        .await
        .unwrap();
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
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(15), lh.child.wait())
        .await
        .expect("exits within 15 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "graceful exit, got {status:?}");
}

/// Starts `livehouse --config file [args…]`, waits until `addr` answers `/healthz`, stops it.
async fn answers_on(file: &std::path::Path, args: &[&str], addr: std::net::SocketAddr, what: &str) {
    let mut child = tokio::process::Command::new(binary())
        .arg("--config")
        .arg(file)
        .args(args)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://{addr}/healthz");
    livehouse_e2e::poll_until(what, Duration::from_secs(30), || {
        let url = url.clone();
        async move { reqwest::get(url).await.is_ok() }
    })
    .await;
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_settings_file_configures_the_process_and_flags_override_it() {
    let dir = std::env::temp_dir().join(format!("livehouse-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (from_file, from_flag) = (livehouse_e2e::free_addr(), livehouse_e2e::free_addr());
    let file = dir.join("livehouse.conf");
    std::fs::write(
        &file,
        format!(
            "# test settings\nhttp-addr = {from_file}\nrtmp-addr = {}\nim-tcp-addr = {}\ndata-dir = {}\n",
            livehouse_e2e::free_addr(),
            livehouse_e2e::free_addr(),
            dir.display()
        ),
    )
    .unwrap();
    answers_on(&file, &[], from_file, "the file's http-addr answers").await;
    let flag = from_flag.to_string();
    answers_on(
        &file,
        &["--http-addr", &flag],
        from_flag,
        "the flag's http-addr answers",
    )
    .await;
    std::fs::write(&file, "this line has no equals sign\n").unwrap();
    let out = std::process::Command::new(binary())
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected `key = value`"));
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn developer_files_of_the_web_folder_are_not_served() {
    let lh = Livehouse::start(&[]).await;
    for path in [
        "/package.json",
        "/tests/helpers.mjs",
        "/node_modules/.package-lock.json",
    ] {
        let res = reqwest::get(lh.url(path)).await.unwrap();
        assert_eq!(res.status(), 404, "{path} must not be served");
    }
    assert_eq!(
        reqwest::get(lh.url("/vendor/mpegts.js"))
            .await
            .unwrap()
            .status(),
        200
    );
}
