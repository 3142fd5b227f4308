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
