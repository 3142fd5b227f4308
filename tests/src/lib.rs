//! Helpers for the end-to-end tests in `tests/tests/`: find the built `livehouse` binary, pick
//! free loopback ports, run a process that is killed when dropped, and poll with a deadline.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The binary under test: `$LIVEHOUSE_BIN`, else `target/debug/livehouse`
/// (`scripts/test.sh` builds it before the tests run).
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("LIVEHOUSE_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/livehouse");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bin livehouse`",
        bin.display()
    );
    bin
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("bound address")
}

pub use livehouse_core::testenv::poll_until;

/// A running `livehouse` process on its own ports and data dir; killed on drop.
pub struct Livehouse {
    pub child: tokio::process::Child,
    pub http: SocketAddr,
    pub rtmp: SocketAddr,
    pub im_tcp: SocketAddr,
    pub data_dir: PathBuf,
    /// Leave the data dir when dropped (for a restart on the same data).
    pub keep_data: bool,
}

impl Livehouse {
    /// Starts `livehouse [args…]` on free ports and waits until `/healthz` answers.
    pub async fn start(args: &[&str]) -> Livehouse {
        let (http, rtmp, im_tcp) = (free_addr(), free_addr(), free_addr());
        let data_dir = std::env::temp_dir().join(format!(
            "livehouse-e2e-{}-{}",
            std::process::id(),
            http.port()
        ));
        Self::start_on(args, http, rtmp, im_tcp, data_dir).await
    }

    /// Starts `livehouse [args…]` on the given ports and data dir (e.g. again after a kill).
    pub async fn start_on(
        args: &[&str],
        http: SocketAddr,
        rtmp: SocketAddr,
        im_tcp: SocketAddr,
        data_dir: PathBuf,
    ) -> Livehouse {
        let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web");
        let child = tokio::process::Command::new(binary())
            .args(args)
            .args(["--http-addr", &http.to_string()])
            .args(["--rtmp-addr", &rtmp.to_string()])
            .args(["--im-tcp-addr", &im_tcp.to_string()])
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--web-dir")
            .arg(&web)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .expect("livehouse starts");
        let lh = Livehouse {
            child,
            http,
            rtmp,
            im_tcp,
            data_dir,
            keep_data: false,
        };
        let url = lh.url("/healthz");
        poll_until(
            "livehouse answers /healthz",
            Duration::from_secs(30),
            || {
                let url = url.clone();
                async move {
                    reqwest::get(url)
                        .await
                        .is_ok_and(|r| r.status().is_success())
                }
            },
        )
        .await;
        lh
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// `POST path` with a JSON body and a bearer token; the response envelope.
    pub async fn call(
        &self,
        path: &str,
        token: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let mut req = reqwest::Client::new().post(self.url(path)).json(&body);
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        req.send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("JSON envelope")
    }

    /// Signs up `username`, starts a normal room named `room_name` and returns the streamer's
    /// token and the anchor's `anchorConfig` data (roomId, pushUrl, streamKey, …).
    pub async fn streamer_with_room(
        &self,
        username: &str,
        room_name: &str,
    ) -> (String, serde_json::Value) {
        use serde_json::json;
        let reg = self
            .call(
                "/user/register",
                "",
                json!({"username": username, "password": "secret12"}),
            )
            .await;
        let token = reg["data"]["token"]
            .as_str()
            .expect("registered")
            .to_string();
        let started = self
            .call(
                "/living/startingLiving",
                &token,
                json!({"type": 1, "roomName": room_name}),
            )
            .await;
        let room = started["data"]["roomId"].as_i64().expect("room started");
        let cfg = self
            .call("/living/anchorConfig", &token, json!({"roomId": room}))
            .await;
        (token, cfg["data"].clone())
    }
}

impl Drop for Livehouse {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if !self.keep_data {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}
