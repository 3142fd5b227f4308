//! The attack suite: the real `livehouse` binary, tried the way a stranger on the internet would
//! (design §4 "Trust", issue 9). Each test makes one attack, asserts the clean answer, and then
//! asserts that the server still serves. `docs/security.md` maps each attack to its test.
//!
//! Requests that a well-behaved client library would rewrite (dot segments, percent-encoded
//! names, half-sent headers) go out over a raw TCP socket ([`raw`]).

use livehouse_e2e::Livehouse;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw HTTP/1.1 answer: status code, lower-cased header lines and body.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
    }
}

/// Sends `request` (the whole request, as bytes) on a new connection and reads the answer until
/// the server closes (the request should say `Connection: close`). Bounded by 10 s.
async fn raw(lh: &Livehouse, request: &[u8]) -> Raw {
    let mut s = TcpStream::connect(lh.http).await.expect("connects");
    s.write_all(request).await.expect("request written");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("the server answers and closes within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Raw {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// `GET path` spelled exactly as given.
async fn raw_get(lh: &Livehouse, path: &str) -> Raw {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    raw(lh, req.as_bytes()).await
}

/// The server still serves: the API answers a list and the home page is there.
async fn still_serves(lh: &Livehouse) {
    let list: Value = reqwest::get(lh.url("/living/list?type=1"))
        .await
        .expect("the server still answers")
        .json()
        .await
        .expect("an envelope");
    assert_eq!(list["code"], json!(200), "{list}");
    let home = reqwest::get(lh.url("/")).await.expect("home page");
    assert_eq!(home.status(), 200);
}

#[tokio::test]
async fn huge_page_numbers_get_a_400_not_a_reset() {
    let lh = Livehouse::start(&[]).await;
    for path in [
        "/living/records?anchorId=1&page=9223372036854775807",
        "/living/records?anchorId=1&page=9223372036854775807&pageSize=100",
        "/living/list?type=1&page=9223372036854775807",
        "/living/list?type=1&pageSize=9223372036854775807",
        "/living/list?type=1&page=-9223372036854775808",
        "/living/list?type=1&page=18446744073709551616",
        "/im/history?roomId=1&limit=9223372036854775807",
    ] {
        let res = raw_get(&lh, path).await;
        assert_eq!(res.status, 400, "{path}: {}", res.body);
        let body: Value = serde_json::from_str(&res.body).expect("an envelope");
        assert_eq!(body["code"], json!(400), "{path}: {body}");
    }
    still_serves(&lh).await;
}

#[tokio::test]
async fn developer_files_are_not_served_under_any_spelling() {
    let lh = Livehouse::start(&[]).await;
    for path in [
        "/tests/helpers.mjs",
        "/%74ests/helpers.mjs",
        "/./tests/helpers.mjs",
        "/%2e/tests/helpers.mjs",
        "//tests/helpers.mjs",
        "/css/../tests/helpers.mjs",
        "/css/%2e%2e/tests/helpers.mjs",
        "/js/..%2f..%2fpackage.json",
        "/package.json",
        "/%70ackage.json",
        "/package-lock.json",
        "/README.md",
        "/scripts/vendor.mjs",
        "/node_modules/.package-lock.json",
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
    ] {
        let res = raw_get(&lh, path).await;
        assert!(
            res.status == 404 || res.status == 400,
            "{path} must not be served, got {}: {}",
            res.status,
            &res.body[..res.body.len().min(200)]
        );
        assert!(!res.body.contains("import "), "{path} leaked a module");
        assert!(!res.body.contains("\"devDependencies\""), "{path} leaked");
    }
    // The shipped files are still there, the pages with their policy.
    let page = raw_get(&lh, "/room.html").await;
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert_eq!(raw_get(&lh, "/js/room.js").await.status, 200);
    assert_eq!(raw_get(&lh, "/%6As/room.js").await.status, 200);
    still_serves(&lh).await;
}

/// Runs the binary with `args` until it exits (at most 30 s); its exit code and stderr.
async fn exits_with(args: &[&str]) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(format!(
        "livehouse-hostile-{}-{}",
        std::process::id(),
        livehouse_core::ids::random_hex(4)
    ));
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(livehouse_e2e::binary())
            .args(args)
            .args(["--http-addr", &livehouse_e2e::free_addr().to_string()])
            .args(["--rtmp-addr", &livehouse_e2e::free_addr().to_string()])
            .args(["--im-tcp-addr", &livehouse_e2e::free_addr().to_string()])
            .arg("--data-dir")
            .arg(&dir)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the process exits within 30 s")
    .expect("runs");
    std::fs::remove_dir_all(&dir).ok();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test]
async fn weak_or_documented_secrets_refuse_to_start() {
    for (flag, value, needle) in [
        ("--jwt-secret", "change-me-to-a-long-secret", "too short"),
        (
            "--jwt-secret",
            "change-me-to-a-long-secret-change-me-to-a-long-secret",
            "example from the documentation",
        ),
        (
            "--jwt-secret",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "too few",
        ),
        (
            "--media-callback-secret",
            "MEDIA_CALLBACK_SECRET",
            "--media-callback-secret is too short",
        ),
    ] {
        let (code, stderr) = exits_with(&[flag, value]).await;
        assert_eq!(
            code,
            Some(1),
            "{flag} {value} must refuse to start: {stderr}"
        );
        assert!(
            stderr.contains(flag) && stderr.contains(needle),
            "{flag} {value}: {stderr}"
        );
    }
    // A strong secret starts, and serves.
    let strong = livehouse_core::ids::random_hex(32);
    let lh = Livehouse::start(&["--jwt-secret", &strong]).await;
    still_serves(&lh).await;
}

#[tokio::test]
async fn nginx_callbacks_without_the_secret_are_refused() {
    let secret = livehouse_core::ids::random_hex(24);
    let lh = Livehouse::start(&["--media-callback-secret", &secret]).await;
    let (token, cfg) = lh.streamer_with_room("cbanchor", "callbacks").await;
    let (room, key) = (
        cfg["roomId"].as_i64().unwrap(),
        cfg["streamKey"].as_str().unwrap(),
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let hook = |name: &str, query: &str, client: &str| {
        http.post(lh.url(&format!("/media/{name}{query}")))
            .form(&[
                ("app", "live"),
                ("name", key),
                ("addr", "203.0.113.9"),
                ("clientid", client),
            ])
            .send()
    };
    let good = format!("?secret={secret}");
    // nginx (with the secret) starts the stream.
    assert_eq!(hook("on_publish", &good, "7").await.unwrap().status(), 302);
    let streaming = || async {
        lh.call("/living/anchorConfig", &token, json!({"roomId": room}))
            .await["data"]["streaming"]
            .clone()
    };
    assert_eq!(streaming().await, json!(true));
    // A stranger with a guessed client id and address: 403, and nothing changes.
    for query in [
        "",
        "?secret=",
        "?secret=guess",
        &format!("?secret={}", &secret[1..]),
    ] {
        for name in ["on_publish_done", "on_update", "on_publish"] {
            let res = hook(name, query, "7").await.unwrap();
            assert_eq!(res.status(), 403, "{name}{query}");
        }
    }
    assert_eq!(
        streaming().await,
        json!(true),
        "the streaming flag survived"
    );
    assert_eq!(
        hook("on_publish_done", &good, "7").await.unwrap().status(),
        200
    );
    assert_eq!(streaming().await, json!(false));
    still_serves(&lh).await;

    // Without a configured secret the callbacks are off.
    let off = Livehouse::start(&[]).await;
    let res = reqwest::Client::new()
        .post(off.url("/media/on_publish_done?secret=anything"))
        .form(&[
            ("app", "live"),
            ("name", "k"),
            ("addr", "1.2.3.4"),
            ("clientid", "1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    still_serves(&off).await;
}

#[tokio::test]
async fn the_internal_push_endpoint_wants_a_current_token() {
    let lh = Livehouse::start(&[]).await;
    for token in [
        "",
        "guess",
        "0.00",
        // A token of the right shape minted with another secret.
        &livehouse_core::auth::InternalTokens::new(b"not the deployment secret").current(),
    ] {
        let res = reqwest::Client::new()
            .post(lh.url("/internal/im/push"))
            .header("x-livehouse-internal", token)
            .body("[]")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "token {token:?}");
    }
    // The deployment's own token (from the generated secret) is accepted.
    let secret = std::fs::read_to_string(lh.data_dir.join("jwt.secret")).unwrap();
    let own = livehouse_core::auth::InternalTokens::new(secret.trim().as_bytes()).current();
    let res = reqwest::Client::new()
        .post(lh.url("/internal/im/push"))
        .header("x-livehouse-internal", own)
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    still_serves(&lh).await;
}

#[tokio::test]
async fn the_session_cookie_is_secure_behind_an_https_public_url() {
    let signup = |lh: &Livehouse, name: &str| {
        reqwest::Client::new()
            .post(lh.url("/user/register"))
            .json(&json!({"username": name, "password": "secret12"}))
            .send()
    };
    let plain = Livehouse::start(&[]).await;
    let res = signup(&plain, "plaincookie").await.unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && !cookie.contains("Secure"),
        "{cookie}"
    );
    let tls = Livehouse::start(&["--public-url", "https://live.example.com"]).await;
    let res = signup(&tls, "tlscookie").await.unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
    still_serves(&tls).await;
}

/// Reads from `s` until the server closes the connection (EOF or reset); fails after `within`.
async fn closed_within(s: &mut TcpStream, within: Duration, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or_else(|_| panic!("{what}: the server did not close the connection"));
    got
}

#[tokio::test]
async fn slow_headers_idle_keep_alive_and_slow_bodies_are_cut() {
    let lh = Livehouse::start(&[
        "--http-header-timeout-secs",
        "1",
        "--http-idle-timeout-secs",
        "2",
    ])
    .await;
    // Headers that never end (slowloris).
    let mut s = TcpStream::connect(lh.http).await.unwrap();
    s.write_all(b"GET /living/list?type=1 HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    closed_within(&mut s, Duration::from_secs(10), "unfinished headers").await;
    // A connection that never sends anything.
    let mut s = TcpStream::connect(lh.http).await.unwrap();
    closed_within(&mut s, Duration::from_secs(10), "silent connection").await;
    // A kept-alive connection after its request.
    let mut s = TcpStream::connect(lh.http).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = closed_within(&mut s, Duration::from_secs(10), "idle keep-alive").await;
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    // A body that stops halfway.
    let mut s = TcpStream::connect(lh.http).await.unwrap();
    s.write_all(
        b"POST /user/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username\":",
    )
    .await
    .unwrap();
    closed_within(&mut s, Duration::from_secs(10), "half a body").await;
    still_serves(&lh).await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_a_413() {
    let lh = Livehouse::start(&[]).await;
    let big = json!({"username": "x".repeat(70 * 1024), "password": "secret12"});
    for path in ["/user/login", "/user/register", "/living/list"] {
        let res = reqwest::Client::new()
            .post(lh.url(path))
            .json(&big)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 413, "{path}");
    }
    // A body that claims to be huge is refused before it is read.
    let res = raw(
        &lh,
        b"POST /user/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(res.status, 413);
    // The limit is a flag.
    let small = Livehouse::start(&["--http-max-body-bytes", "100"]).await;
    let res = reqwest::Client::new()
        .post(small.url("/user/login"))
        .json(&json!({"username": "x".repeat(200), "password": "secret12"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    still_serves(&lh).await;
    still_serves(&small).await;
}

/// `POST path` with a JSON body (and a bearer token when given): status, `Retry-After`, body.
async fn post(
    lh: &Livehouse,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Option<u64>, Value) {
    let mut req = reqwest::Client::new().post(lh.url(path)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("answered");
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (status, retry, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn guessing_passwords_is_rate_limited_per_account_and_per_ip() {
    let lh = Livehouse::start(&["--rate-login-per-ip", "15"]).await;
    let (status, _, _) = post(
        &lh,
        "/user/register",
        None,
        json!({"username": "victim", "password": "right-password"}),
    )
    .await;
    assert_eq!(status, 200);
    // Per account (default 10 in 5 minutes): wrong passwords get 401, then 429.
    for i in 0..10 {
        let (status, _, body) = post(
            &lh,
            "/user/login",
            None,
            json!({"username": "victim", "password": format!("guess{i}")}),
        )
        .await;
        assert_eq!(status, 401, "attempt {i}: {body}");
    }
    let (status, retry, body) = post(
        &lh,
        "/user/login",
        None,
        json!({"username": "victim", "password": "right-password"}),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], json!(429));
    let retry = retry.expect("a Retry-After header");
    assert!((1..=300).contains(&retry), "{retry}");
    // Per IP (15 here): other names from the same address are cut off too.
    for i in 0..4 {
        let (status, _, _) = post(
            &lh,
            "/user/login",
            None,
            json!({"username": format!("nobody{i}"), "password": "whatever1"}),
        )
        .await;
        assert_eq!(status, 401, "attempt {i} from the address");
    }
    let (status, retry, _) = post(
        &lh,
        "/user/login",
        None,
        json!({"username": "someone", "password": "whatever1"}),
    )
    .await;
    assert_eq!(status, 429);
    assert!(retry.is_some());
    still_serves(&lh).await;
}

#[tokio::test]
async fn sign_ups_and_im_tokens_are_rate_limited() {
    let lh = Livehouse::start(&[
        "--rate-signup-per-ip",
        "3",
        "--rate-im-token-per-account",
        "2",
    ])
    .await;
    let mut token = String::new();
    for i in 0..3 {
        let (status, _, body) = post(
            &lh,
            "/user/register",
            None,
            json!({"username": format!("signup{i}"), "password": "secret12"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        token = body["data"]["token"].as_str().unwrap().to_string();
    }
    let (status, retry, _) = post(
        &lh,
        "/user/register",
        None,
        json!({"username": "signup3", "password": "secret12"}),
    )
    .await;
    assert_eq!(status, 429);
    assert!(retry.is_some_and(|r| (1..=3600).contains(&r)), "{retry:?}");
    for _ in 0..2 {
        let (status, _, body) = post(&lh, "/im/getImConfig", Some(&token), json!({})).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, retry, _) = post(&lh, "/im/getImConfig", Some(&token), json!({})).await;
    assert_eq!(status, 429);
    assert!(retry.is_some_and(|r| (1..=60).contains(&r)), "{retry:?}");
    still_serves(&lh).await;
}

#[tokio::test]
async fn a_sign_up_burst_leaves_the_memory_bounded() {
    let lh = Livehouse::start(&[
        "--rate-signup-per-ip",
        "0",
        "--rate-signup-per-account",
        "0",
    ])
    .await;
    let pid = lh.child.id().expect("running");
    let rss_mib = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .expect("VmRSS")
            / 1024
    };
    // 48 sign-ups, 16 at a time (bench/auth.sh makes the 300 on a release build).
    for round in 0..3 {
        let calls = (0..16).map(|i| {
            post(
                &lh,
                "/user/register",
                None,
                json!({"username": format!("burst{round}_{i}"), "password": "secret12"}),
            )
        });
        for (status, _, body) in futures::future::join_all(calls).await {
            assert!(status == 200 || status == 503, "{status} {body}");
        }
    }
    let rss = rss_mib();
    assert!(rss <= 256, "RSS after the burst: {rss} MiB");
    still_serves(&lh).await;
}

/// A Redis of this test's own (it is stopped and started again), keeping its data in `dir`.
async fn own_redis(port: u16, dir: &std::path::Path) -> tokio::process::Child {
    let child = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server runs");
    livehouse_e2e::poll_until("redis answers", Duration::from_secs(10), || async move {
        TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await;
    child
}

#[tokio::test]
async fn a_cache_outage_serves_rooms_from_sql_and_a_room_closed_meanwhile_stays_closed() {
    // Needs redis-server, which the Redis suites' machine has.
    if livehouse_core::testenv::backend("LIVEHOUSE_TEST_REDIS_URL").is_none() {
        return;
    }
    let port = livehouse_e2e::free_addr().port();
    let dir = std::env::temp_dir().join(format!("livehouse-redis-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut redis = own_redis(port, &dir).await;
    let url = format!("redis://127.0.0.1:{port}");
    let lh = Livehouse::start(&["--redis-url", &url]).await;
    let (token, cfg) = lh.streamer_with_room("outage", "through the outage").await;
    let room = cfg["roomId"].as_i64().unwrap();
    let list_has_room = || async {
        let list: Value = reqwest::get(lh.url("/living/list?type=1&pageSize=100"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["code"], json!(200), "{list}");
        list["data"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == json!(room))
    };
    livehouse_e2e::poll_until("the room is listed", Duration::from_secs(10), || {
        list_has_room()
    })
    .await;
    let live_in_config = || async {
        let c = lh
            .call("/living/anchorConfig", &token, json!({"roomId": room}))
            .await;
        assert_eq!(c["code"], json!(200), "{c}");
        c["data"]["roomId"] == json!(room)
    };
    assert!(live_in_config().await, "cached as live");
    // The cache goes down with the room cached as live (saved, so it comes back with it).
    let saved = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "save"])
        .output()
        .unwrap();
    assert!(saved.status.success());
    redis.kill().await.unwrap();
    // Room reads answer from SQL.
    assert!(list_has_room().await, "the list from SQL");
    assert!(live_in_config().await, "the room from SQL");
    // The anchor closes the room during the outage.
    let closed = lh
        .call("/living/closeLiving", &token, json!({"roomId": room}))
        .await;
    assert_eq!(closed["code"], json!(200), "{closed}");
    assert!(!list_has_room().await);
    assert!(!live_in_config().await);
    // The cache comes back, still holding the room as live: it is not shown live.
    let _redis = own_redis(port, &dir).await;
    livehouse_e2e::poll_until("the cache is back", Duration::from_secs(30), || async {
        reqwest::get(lh.url("/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    for _ in 0..5 {
        assert!(
            !live_in_config().await,
            "a closed room shown live after the outage"
        );
        assert!(
            !list_has_room().await,
            "a closed room listed after the outage"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    still_serves(&lh).await;
    std::fs::remove_dir_all(&dir).ok();
}
