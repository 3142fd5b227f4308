//! Deployment secrets and what is derived from them: session tokens for the HTTP API (HS256
//! JWTs carrying the user id), the rotating internal token roles of one deployment call each
//! other's internal endpoints with ([`InternalTokens`]), the strength rule every secret must pass
//! ([`check_secret`]) and a constant-time comparison ([`ct_eq`]).
//!
//! Owns signing and verification only; where a token is read from (cookie, `Authorization`,
//! a header of an internal call) is the caller's business.

use hmac::{Mac, SimpleHmac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = SimpleHmac<Sha256>;

/// Fewest bytes a deployment secret may have.
pub const MIN_SECRET_LEN: usize = 32;

/// Secrets that appear in this project's documentation, scripts and tests, and the placeholder
/// words of example secrets: a deployment that copied one is refused.
const DOCUMENTED_SECRETS: [&str; 6] = [
    "change-me-to-a-long-secret",
    "e2e-secret-0123456789abcdef",
    "test-secret-0123456789",
    "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t",
    "MEDIA_CALLBACK_SECRET",
    "0123456789abcdef0123456789abcdef",
];
const PLACEHOLDER_WORDS: [&str; 7] = [
    "change-me",
    "changeme",
    "change_me",
    "replace-me",
    "replace_me",
    "your-secret",
    "example",
];

/// Whether `secret` may guard a deployment: at least [`MIN_SECRET_LEN`] bytes, not a string from
/// the documentation or a placeholder, and not made of a handful of distinct characters. The
/// error names the flag (`what`) and says how to make a good one.
pub fn check_secret(what: &str, secret: &str) -> Result<(), String> {
    let how = "use at least 32 random bytes, e.g. `head -c 32 /dev/urandom | base64`";
    if secret.len() < MIN_SECRET_LEN {
        return Err(format!(
            "{what} is too short ({} bytes; at least {MIN_SECRET_LEN}): {how}",
            secret.len()
        ));
    }
    let lower = secret.to_ascii_lowercase();
    if DOCUMENTED_SECRETS
        .iter()
        .any(|d| lower.contains(&d.to_ascii_lowercase()))
        || PLACEHOLDER_WORDS.iter().any(|w| lower.contains(w))
    {
        return Err(format!(
            "{what} is an example from the documentation, not a secret: {how}"
        ));
    }
    let mut seen = [false; 256];
    secret.bytes().for_each(|b| seen[b as usize] = true);
    if seen.iter().filter(|s| **s).count() < 8 {
        return Err(format!(
            "{what} repeats too few characters to be random: {how}"
        ));
    }
    Ok(())
}

/// Compares two byte strings in time that depends on their lengths only, not on where they
/// differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How long a session token stays valid.
pub const SESSION_TTL_SECS: i64 = 7 * 24 * 3600;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
}

/// How long one internal token is minted for; a token is accepted in its own window, the next
/// one (the previous window for the receiver) and the one before (a sender's clock ahead).
pub const INTERNAL_TOKEN_WINDOW_SECS: u64 = 300;

/// The token roles of one deployment present to each other's internal endpoints (`msg` → a
/// gateway's push endpoint): `<window>.<hex HMAC-SHA256(key, window)>`, where `key` is derived
/// from the deployment secret with its own label, so it is neither the secret nor a session
/// signature. A token lives at most two windows (≤ 10 min), is minted again every window, and
/// is checked in constant time.
#[derive(Clone)]
pub struct InternalTokens {
    key: [u8; 32],
}

impl InternalTokens {
    const LABEL: &'static [u8] = b"livehouse/internal-push-token/v1";

    pub fn new(secret: &[u8]) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(Self::LABEL);
        InternalTokens {
            key: mac.finalize().into_bytes().into(),
        }
    }

    fn mac(&self, window: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"window:");
        mac.update(window.to_string().as_bytes());
        mac
    }

    /// The token of the window holding `now_secs` (Unix seconds).
    pub fn mint(&self, now_secs: u64) -> String {
        let window = now_secs / INTERNAL_TOKEN_WINDOW_SECS;
        format!(
            "{window}.{}",
            hex::encode(self.mac(window).finalize().into_bytes())
        )
    }

    /// The token of the current window, by the system clock.
    pub fn current(&self) -> String {
        self.mint(crate::time::now_ms().max(0) as u64 / 1000)
    }

    /// Whether `token` was minted with this key for the window of `now_secs`, the one before,
    /// or the one after (clock skew between hosts).
    pub fn verify(&self, token: &str, now_secs: u64) -> bool {
        let Some((window, tag)) = token.split_once('.') else {
            return false;
        };
        if window.is_empty() || window.len() > 20 || !window.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let (Ok(window), Ok(tag)) = (window.parse::<u64>(), hex::decode(tag)) else {
            return false;
        };
        let now = now_secs / INTERNAL_TOKEN_WINDOW_SECS;
        if window.abs_diff(now) > 1 {
            return false;
        }
        // `verify_slice` compares in constant time.
        self.mac(window).verify_slice(&tag).is_ok()
    }

    /// [`Self::verify`] by the system clock.
    pub fn verify_now(&self, token: &str) -> bool {
        self.verify(token, crate::time::now_ms().max(0) as u64 / 1000)
    }
}

/// Signs and verifies session tokens with one shared secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// A token for `user_id`, valid for [`SESSION_TTL_SECS`].
    pub fn issue(&self, user_id: i64) -> String {
        let now = crate::time::now_ms() / 1000;
        let claims = Claims {
            sub: user_id.to_string(),
            iat: now,
            exp: now + SESSION_TTL_SECS,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// The user id of a valid, unexpired token; `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<i64> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok()?;
        data.claims.sub.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_token_verifies_and_forged_ones_do_not() {
        let keys = JwtKeys::new(b"secret-one");
        let token = keys.issue(42);
        assert_eq!(keys.verify(&token), Some(42));
        assert_eq!(JwtKeys::new(b"secret-two").verify(&token), None);
        let mut tampered = token.clone();
        tampered.push('x');
        assert_eq!(keys.verify(&tampered), None);
        assert_eq!(keys.verify("not-a-jwt"), None);
    }

    #[test]
    fn weak_and_documented_secrets_are_refused() {
        for weak in [
            "change-me-to-a-long-secret",
            "short",
            "change-me-to-a-long-secret-please-1234567",
            "EXAMPLE-0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c",
            "MEDIA_CALLBACK_SECRET",
            "abababababababababababababababababababab",
            "0123456789abcdef0123456789abcdef",
        ] {
            assert!(check_secret("--jwt-secret", weak).is_err(), "{weak}");
        }
        let err = check_secret("--jwt-secret", "short").unwrap_err();
        assert!(err.contains("--jwt-secret") && err.contains("32"), "{err}");
        check_secret("--jwt-secret", "kX9f2Lq7Zr4Tn8Vb1Mw6Yc3Hd5Js0Pa2").unwrap();
        check_secret("--jwt-secret", &crate::ids::random_hex(32)).unwrap();
    }

    #[test]
    fn constant_time_equality_is_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn internal_tokens_rotate_and_the_previous_window_still_counts() {
        let t = InternalTokens::new(b"secret-one");
        let w = INTERNAL_TOKEN_WINDOW_SECS;
        let now = 1_000 * w + 7;
        let token = t.mint(now);
        assert!(t.verify(&token, now));
        assert!(t.verify(&token, now + w), "the previous window's token");
        assert!(!t.verify(&token, now + 2 * w), "expired after two windows");
        assert!(
            t.verify(&token, now - w),
            "a peer's clock one window behind"
        );
        assert!(!t.verify(&token, now - 2 * w));
        assert_ne!(t.mint(now), t.mint(now + w), "a new token each window");
        assert!(!InternalTokens::new(b"secret-two").verify(&token, now));
        // Not the JWT signature, not a session, nothing forged from the window alone.
        let keys = JwtKeys::new(b"secret-one");
        assert_eq!(keys.verify(&token), None);
        let (window, _) = token.split_once('.').unwrap();
        for forged in [
            format!("{window}."),
            format!("{window}.00"),
            format!(
                "{}.{}",
                window.parse::<u64>().unwrap() + 1,
                &token[window.len() + 1..]
            ),
            "".into(),
            "x.y".into(),
            window.to_string(),
        ] {
            assert!(!t.verify(&forged, now), "{forged}");
        }
    }
}
