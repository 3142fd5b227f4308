//! Rate limits before login: sign-in, sign-up and IM-token issue (`/im/getImConfig`), per
//! client IP and per account, as fixed-window counters in the shared cache
//! ([`Cache::incr_window`]), so every api process of a deployment counts together. Over a limit
//! the answer is 429 with `Retry-After` (the seconds left in the window), before any password
//! is hashed or token written.
//!
//! The client IP is the [`ClientIp`] request extension when something upstream set it (a
//! trusted proxy's `X-Forwarded-For`), else the socket peer; IPv6 clients count per /64.
//! Loopback is not exempt. With the cache down the limits are skipped (logged and counted):
//! sign-in keeps working.
//!
//! Must not: know passwords or sessions; hold counts in process memory.

use crate::error::{ApiError, ApiResult};
use crate::ApiState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use livehouse_core::cache::Cache;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// At most `max` in each `window` (`max` 0: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

impl Limit {
    pub const fn new(max: u32, window_secs: u64) -> Self {
        Limit {
            max,
            window: Duration::from_secs(window_secs),
        }
    }
}

/// Window of the sign-in limits.
pub const LOGIN_WINDOW_SECS: u64 = 300;
/// Window of the sign-up limits.
pub const SIGNUP_WINDOW_SECS: u64 = 3600;
/// Window of the IM-token limits.
pub const IM_TOKEN_WINDOW_SECS: u64 = 60;

/// Every pre-login limit of the api.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Sign-in attempts per client IP (`--rate-login-per-ip`, per 5 min).
    pub login_per_ip: Limit,
    /// Sign-in attempts per username (`--rate-login-per-account`, per 5 min; a successful
    /// sign-in starts the count again).
    pub login_per_account: Limit,
    /// Sign-ups per client IP (`--rate-signup-per-ip`, per hour).
    pub signup_per_ip: Limit,
    /// Sign-ups per requested username (`--rate-signup-per-account`, per hour).
    pub signup_per_account: Limit,
    /// IM tokens per client IP (`--rate-im-token-per-ip`, per minute).
    pub im_token_per_ip: Limit,
    /// IM tokens per user (`--rate-im-token-per-account`, per minute).
    pub im_token_per_account: Limit,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            login_per_ip: Limit::new(30, LOGIN_WINDOW_SECS),
            login_per_account: Limit::new(10, LOGIN_WINDOW_SECS),
            signup_per_ip: Limit::new(20, SIGNUP_WINDOW_SECS),
            signup_per_account: Limit::new(5, SIGNUP_WINDOW_SECS),
            im_token_per_ip: Limit::new(120, IM_TOKEN_WINDOW_SECS),
            im_token_per_account: Limit::new(30, IM_TOKEN_WINDOW_SECS),
        }
    }
}

impl RateLimits {
    /// No limit at all (tests and benchmarks that sign up thousands).
    pub fn off() -> Self {
        let off = |l: Limit| Limit { max: 0, ..l };
        let d = RateLimits::default();
        RateLimits {
            login_per_ip: off(d.login_per_ip),
            login_per_account: off(d.login_per_account),
            signup_per_ip: off(d.signup_per_ip),
            signup_per_account: off(d.signup_per_account),
            im_token_per_ip: off(d.im_token_per_ip),
            im_token_per_account: off(d.im_token_per_account),
        }
    }
}

/// The client's address as the HTTP server established it (from a trusted proxy's
/// `X-Forwarded-For`, see `livehouse_core::limits::client_ip`); requests without it count by
/// their socket peer.
pub use livehouse_core::limits::ClientIp;

/// The key a client IP counts under: the address, or its /64 for IPv6 (one host gets a /64).
pub fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The calling client's IP key (see [`ip_key`]); `unknown` when neither is known.
pub struct Client(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts.extensions.get::<ClientIp>().map(|c| c.0).or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        });
        Ok(Client(ip.map(ip_key).unwrap_or_else(|| "unknown".into())))
    }
}

fn key(name: &str, who: &str) -> String {
    // Usernames are [A-Za-z0-9_] and IPs plain: no separator can be forged into a key.
    format!("ratelimit:{name}:{who}")
}

/// Counts one attempt of `name` by `who`; over the limit: 429 with the time left.
pub async fn hit(cache: &dyn Cache, limit: Limit, name: &str, who: &str) -> ApiResult<()> {
    if limit.max == 0 {
        return Ok(());
    }
    match cache.incr_window(&key(name, who), limit.window).await {
        Ok((count, left)) if count > i64::from(limit.max) => {
            metrics::counter!("livehouse_rate_limited_total", "limit" => name.to_string())
                .increment(1);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            Err(ApiError::TooMany {
                msg: format!("too many attempts; try again in {} s", secs.max(1)),
                retry_after_secs: secs.max(1),
            })
        }
        Ok(_) => Ok(()),
        Err(e) => {
            // Fail open: a cache outage must not lock everybody out.
            metrics::counter!("livehouse_rate_limit_unavailable_total").increment(1);
            tracing::warn!(error = %e, limit = name, "rate limit not checked: cache unavailable");
            Ok(())
        }
    }
}

/// Forgets the count of `name` for `who` (a successful sign-in clears its account's failures).
pub async fn clear(cache: &dyn Cache, name: &str, who: &str) {
    if let Err(e) = cache.del(&key(name, who)).await {
        tracing::debug!(error = %e, "rate limit count not cleared");
    }
}

/// Sign-in: per IP, then per username.
pub async fn login(state: &ApiState, client: &str, username: &str) -> ApiResult<()> {
    let l = &state.config.rate;
    hit(state.cache.as_ref(), l.login_per_ip, "login-ip", client).await?;
    hit(
        state.cache.as_ref(),
        l.login_per_account,
        "login-account",
        &username.to_ascii_lowercase(),
    )
    .await
}

/// Sign-up: per IP, then per requested username.
pub async fn signup(state: &ApiState, client: &str, username: &str) -> ApiResult<()> {
    let l = &state.config.rate;
    hit(state.cache.as_ref(), l.signup_per_ip, "signup-ip", client).await?;
    hit(
        state.cache.as_ref(),
        l.signup_per_account,
        "signup-account",
        &username.to_ascii_lowercase(),
    )
    .await
}

/// IM-token issue: per IP, then per user.
pub async fn im_token(state: &ApiState, client: &str, user_id: i64) -> ApiResult<()> {
    let l = &state.config.rate;
    hit(
        state.cache.as_ref(),
        l.im_token_per_ip,
        "imtoken-ip",
        client,
    )
    .await?;
    hit(
        state.cache.as_ref(),
        l.im_token_per_account,
        "imtoken-account",
        &user_id.to_string(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use livehouse_core::cache::MemoryCache;

    #[tokio::test]
    async fn over_the_limit_is_a_429_with_the_seconds_left() {
        let cache = MemoryCache::new();
        let limit = Limit::new(3, 60);
        for _ in 0..3 {
            hit(&cache, limit, "t", "1.2.3.4").await.unwrap();
        }
        match hit(&cache, limit, "t", "1.2.3.4").await {
            Err(ApiError::TooMany {
                retry_after_secs, ..
            }) => assert!((1..=60).contains(&retry_after_secs)),
            other => panic!("{other:?}"),
        }
        // Others are not affected; a cleared count starts again; 0 is no limit.
        hit(&cache, limit, "t", "5.6.7.8").await.unwrap();
        clear(&cache, "t", "1.2.3.4").await;
        hit(&cache, limit, "t", "1.2.3.4").await.unwrap();
        for _ in 0..10 {
            hit(&cache, Limit::new(0, 60), "t", "9.9.9.9")
                .await
                .unwrap();
        }
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_eq!(ip_key("::ffff:1.2.3.4".parse().unwrap()), "1.2.3.4");
        assert_eq!(ip_key("127.0.0.1".parse().unwrap()), "127.0.0.1");
    }
}
