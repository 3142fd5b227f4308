//! What the api role needs from the IM system: IM tokens (`keys::im_token`, 5 min, in the
//! cache), the choice of a gateway for a client, and whether a user is online (both from the
//! presence store).
//!
//! Must not: hold state in memory beyond the choice's load estimates ([`Chooser`]).

use livehouse_core::cache::Cache;
use livehouse_core::events::{keys, GatewayInfo};
use livehouse_core::presence::Presence;
use livehouse_core::time::now_ms;
use std::time::Duration;

/// Lifetime of an IM token.
pub const IM_TOKEN_TTL: Duration = Duration::from_secs(300);

/// What an IM token says about its holder: the gateway trusts these, not the client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenClaims {
    pub user_id: i64,
    /// The account's display name, stamped on the user's chat messages (`senderName`).
    pub name: String,
    /// The account has the `vip` tag (danmaku colours outside the palette).
    pub vip: bool,
}

/// Issues a random URL-safe IM token for `user_id`, valid for [`IM_TOKEN_TTL`].
pub async fn issue_im_token(cache: &dyn Cache, user_id: i64) -> anyhow::Result<String> {
    issue_named_im_token(cache, user_id, "").await
}

/// Like [`issue_im_token`], also carrying the user's display name.
pub async fn issue_named_im_token(
    cache: &dyn Cache,
    user_id: i64,
    name: &str,
) -> anyhow::Result<String> {
    issue_token(
        cache,
        &TokenClaims {
            user_id,
            name: name.to_string(),
            vip: false,
        },
    )
    .await
}

/// Issues a token carrying `claims`. Stored as `<userId>[,vip][ <name>]`.
pub async fn issue_token(cache: &dyn Cache, claims: &TokenClaims) -> anyhow::Result<String> {
    let token = livehouse_core::ids::random_hex(16);
    let name: String = claims
        .name
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let mut value = claims.user_id.to_string();
    if claims.vip {
        value.push_str(",vip");
    }
    if !name.is_empty() {
        value.push(' ');
        value.push_str(&name);
    }
    cache
        .set(&keys::im_token(&token), &value, Some(IM_TOKEN_TTL))
        .await?;
    Ok(token)
}

/// What a still-valid token says.
pub async fn token_claims(cache: &dyn Cache, token: &str) -> anyhow::Result<Option<TokenClaims>> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let Some(v) = cache.get(&keys::im_token(token)).await? else {
        return Ok(None);
    };
    let (head, name) = v.trim().split_once(' ').unwrap_or((v.trim(), ""));
    let (id, flags) = head.split_once(',').unwrap_or((head, ""));
    Ok(id.parse().ok().map(|user_id| TokenClaims {
        user_id,
        name: name.to_string(),
        vip: flags.split(',').any(|f| f == "vip"),
    }))
}

/// The user (and display name, possibly empty) a token was issued to, if it is still valid.
pub async fn token_login(cache: &dyn Cache, token: &str) -> anyhow::Result<Option<(i64, String)>> {
    Ok(token_claims(cache, token)
        .await?
        .map(|c| (c.user_id, c.name)))
}

/// The user a token was issued to, if it is still valid.
pub async fn token_user(cache: &dyn Cache, token: &str) -> anyhow::Result<Option<i64>> {
    Ok(token_claims(cache, token).await?.map(|c| c.user_id))
}

/// The choice of a gateway for each new client: the power of two choices over the live gateways
/// (two at random, the less loaded of them), on a load estimate that adds to each gateway's
/// connections at its last beat the clients this process sent it since. So a burst of joins
/// spreads over the gateways between two beats instead of piling onto the one that looked
/// lightest, and the gateways' own beats (every 500 ms) correct the estimate. A dead gateway
/// leaves the choice when its live window (2 s) passes; a client that could not reach the one it
/// was given asks again with `avoid`.
#[derive(Default)]
pub struct Chooser {
    /// gateway id → (connections it reported, clients sent to it since that report).
    sent: parking_lot::Mutex<std::collections::HashMap<String, (u64, u64)>>,
}

impl Chooser {
    /// A live gateway for a new client, not `avoid` if another is live.
    pub async fn pick(
        &self,
        presence: &dyn Presence,
        avoid: Option<&str>,
    ) -> anyhow::Result<Option<GatewayInfo>> {
        let mut live = presence.gateways(now_ms()).await?;
        if let Some(a) = avoid {
            if live.iter().any(|g| g.id != a) {
                live.retain(|g| g.id != a);
            }
        }
        Ok(self.choose(live))
    }

    /// The choice among `live` (see the type's docs); counts the client sent.
    pub fn choose(&self, live: Vec<GatewayInfo>) -> Option<GatewayInfo> {
        use rand::Rng;
        let mut sent = self.sent.lock();
        sent.retain(|id, _| live.iter().any(|g| g.id == *id));
        let load = |sent: &mut std::collections::HashMap<String, (u64, u64)>, g: &GatewayInfo| {
            let e = sent.entry(g.id.clone()).or_insert((g.sessions, 0));
            if e.0 != g.sessions {
                // A newer beat counts the clients sent before it.
                *e = (g.sessions, 0);
            }
            e.0 + e.1
        };
        let pick = match live.len() {
            0 => return None,
            1 => 0,
            n => {
                let mut rng = rand::thread_rng();
                let a = rng.gen_range(0..n);
                let b = (a + rng.gen_range(1..n)) % n;
                if load(&mut sent, &live[a]) <= load(&mut sent, &live[b]) {
                    a
                } else {
                    b
                }
            }
        };
        let g = live.into_iter().nth(pick)?;
        load(&mut sent, &g);
        if let Some(e) = sent.get_mut(&g.id) {
            e.1 += 1;
        }
        Some(g)
    }
}

/// The least-loaded live gateway (fewest connections at its last beat).
pub async fn pick_gateway(presence: &dyn Presence) -> anyhow::Result<Option<GatewayInfo>> {
    Ok(presence
        .gateways(now_ms())
        .await?
        .into_iter()
        .min_by_key(|g| g.sessions))
}

/// Whether `user_id` has a logged-in connection on a live gateway.
pub async fn is_online(presence: &dyn Presence, user_id: i64) -> anyhow::Result<bool> {
    Ok(!presence.user_conns(user_id, now_ms()).await?.is_empty())
}
