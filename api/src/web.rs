//! The web pages as static files, from an allow-list: the top-level pages (`*.html`,
//! `favicon.ico`, `robots.txt`) and the folders the pages load from (`css/`, `img/`, `js/`,
//! `vendor/`). The request path is percent-decoded and split into segments first, so no spelling
//! (`/%74ests/…`, `/./tests/…`, `//tests/…`, `/css/../tests/…`) reaches a developer file of
//! `web/` (`node_modules/`, `tests/`, `scripts/`, `package.json`, `README.md`, dot files). Every
//! page carries a Content-Security-Policy that runs the site's own scripts only.
//!
//! Must not: serve a path it has not normalised and checked, or follow the client's spelling of
//! a path to the file system.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::path::{Path, PathBuf};
use tower::ServiceExt;

/// Folders of `web/` that browsers load from.
pub const FOLDERS: [&str; 4] = ["css", "img", "js", "vendor"];
/// Top-level files besides the `*.html` pages.
pub const TOP_FILES: [&str; 2] = ["favicon.ico", "robots.txt"];

/// The file under the web dir that `path` (a request path, still percent-encoded) names, or
/// `None` when it is not on the allow-list. `/` is `index.html`.
pub fn allowed_file(path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(path)?;
    let mut segments = Vec::new();
    for seg in decoded.split('/') {
        if seg.is_empty() {
            continue;
        }
        // No dot segments, no hidden files, nothing the OS could read as a separator or prefix.
        if seg.starts_with('.') || seg.contains(['\\', '\0', ':']) {
            return None;
        }
        segments.push(seg);
    }
    match segments.as_slice() {
        [] => Some(PathBuf::from("index.html")),
        [file] if file.ends_with(".html") || TOP_FILES.contains(file) => Some(PathBuf::from(file)),
        [folder, rest @ ..] if !rest.is_empty() && FOLDERS.contains(folder) => {
            Some(segments.iter().collect())
        }
        _ => None,
    }
}

/// `%XX` decoding of a path; `None` for a malformed escape or bytes that are not UTF-8.
fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The Content-Security-Policy of the pages: scripts, styles and workers from this origin only
/// (hls.js starts its worker from a `blob:` URL); video, thumbnails and the chat WebSocket may
/// come from `play_origin` (`--play-base-url`) and the gateways (`ws:`/`wss:`, whose addresses
/// the api hands out at run time); no plugins, no framing, no `<base>`.
pub fn content_security_policy(play_origin: Option<&str>) -> String {
    let extra = play_origin.map(|o| format!(" {o}")).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; worker-src 'self' blob:; \
         img-src 'self' data: blob:{extra}; media-src 'self' blob:{extra}; \
         connect-src 'self' ws: wss:{extra}; font-src 'self'; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The scheme, host and port of a URL (`http://media.example:8084/x` → `http://media.example:8084`).
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    if host.is_empty() || !matches!(scheme, "http" | "https") {
        return None;
    }
    Some(format!("{scheme}://{host}"))
}

/// Serves the web assets of one folder.
#[derive(Clone)]
pub struct WebAssets {
    dir: PathBuf,
    csp: HeaderValue,
}

impl WebAssets {
    pub fn new(dir: &Path, play_base_url: Option<&str>) -> Self {
        let csp = content_security_policy(play_base_url.and_then(origin_of).as_deref());
        WebAssets {
            dir: dir.to_path_buf(),
            csp: HeaderValue::from_str(&csp).expect("the policy is ASCII"),
        }
    }

    /// Answers a request that no route took: the allowed file, or a plain 404.
    pub async fn serve(self, req: Request) -> Response {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, "GET, HEAD")],
            )
                .into_response();
        }
        let Some(file) = allowed_file(req.uri().path()) else {
            return not_found();
        };
        let path = self.dir.join(&file);
        let is_page = file.extension().is_some_and(|e| e == "html");
        let res = match tower_http::services::ServeFile::new(&path)
            .oneshot(req)
            .await
        {
            Ok(res) => res.map(Body::new),
            Err(never) => match never {},
        };
        if res.status() == StatusCode::NOT_FOUND {
            return not_found();
        }
        let mut res = res;
        let headers = res.headers_mut();
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if is_page {
            headers.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            );
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        }
        res
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_files_are_allowed_and_every_spelling_of_a_dev_file_is_not() {
        for (path, file) in [
            ("/", "index.html"),
            ("/room.html", "room.html"),
            ("/js/room.js", "js/room.js"),
            ("/vendor/hls.min.js", "vendor/hls.min.js"),
            ("/img/covers/a.svg", "img/covers/a.svg"),
            ("//css//app.css", "css/app.css"),
            ("/%6As/im.js", "js/im.js"),
        ] {
            assert_eq!(allowed_file(path), Some(PathBuf::from(file)), "{path}");
        }
        for path in [
            "/tests/live.test.mjs",
            "/%74ests/live.test.mjs",
            "/./tests/live.test.mjs",
            "/.%2Ftests/live.test.mjs",
            "//tests/live.test.mjs",
            "/css/../tests/live.test.mjs",
            "/css/%2e%2e/tests/live.test.mjs",
            "/js/..%2F..%2Fpackage.json",
            "/package.json",
            "/package-lock.json",
            "/README.md",
            "/node_modules/hls.js/package.json",
            "/scripts/vendor.mjs",
            "/.git/config",
            "/js/.hidden",
            "/js",
            "/css/",
            "/%zz",
            "/%ff.html",
            "/js\\..\\package.json",
            "/C:/x.html",
        ] {
            assert_eq!(allowed_file(path), None, "{path} must not be served");
        }
    }

    #[test]
    fn the_policy_allows_own_scripts_only_and_the_play_origin_for_media() {
        let csp = content_security_policy(origin_of("http://media.example:8084/base").as_deref());
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert!(
            csp.contains("media-src 'self' blob: http://media.example:8084;"),
            "{csp}"
        );
        assert_eq!(origin_of("ftp://x"), None);
        assert_eq!(origin_of("https://a.b"), Some("https://a.b".into()));
    }
}
