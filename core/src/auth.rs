//! Session tokens for the HTTP API: HS256 JWTs carrying the user id.
//!
//! Owns signing and verification only; where a token is read from (cookie, `Authorization`)
//! is the api crate's business.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// How long a session token stays valid.
pub const SESSION_TTL_SECS: i64 = 7 * 24 * 3600;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
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

    /// The shared secret roles of one deployment use to call each other's internal endpoints
    /// (e.g. `msg` → gateway push). Derived from the signing secret, so every process that
    /// shares `--jwt-secret` agrees on it without ever sending the secret itself.
    pub fn service_token(&self) -> String {
        let claims = Claims {
            sub: "livehouse-internal".into(),
            iat: 0,
            exp: i64::MAX / 2,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail");
        // The signature part alone: deterministic for the secret, useless for anything else.
        token.rsplit('.').next().unwrap_or_default().to_string()
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
    fn service_token_is_stable_per_secret_and_not_a_session() {
        let a = JwtKeys::new(b"secret-one");
        assert_eq!(
            a.service_token(),
            JwtKeys::new(b"secret-one").service_token()
        );
        assert_ne!(
            a.service_token(),
            JwtKeys::new(b"secret-two").service_token()
        );
        assert!(a.service_token().len() >= 40);
        assert_eq!(a.verify(&a.service_token()), None);
    }
}
