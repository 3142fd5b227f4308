//! Accounts: the `t_user` table, password hashing (argon2 on a bounded pool, [`passwords`]),
//! the tags (anchor, operator, VIP) and platform-wide suspension ([`suspension`]).
//!
//! Must not: issue or read session tokens (see `session`) or know about rooms.

pub mod entity;
pub mod migration;
pub mod passwords;
pub mod suspension;

use livehouse_core::time::now_ms;
use passwords::{PasswordError, Passwords};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set, SqlErr,
};

use crate::error::{ApiError, ApiResult};

/// Tag bit that allows starting a room.
pub const TAG_ANCHOR: i64 = 1;
/// Tag bit of operators: they moderate any room, close any room, suspend accounts
/// (`livehouse admin grant USER`).
pub const TAG_ADMIN: i64 = 2;
/// Tag bit of VIP accounts: danmaku in any `#rrggbb` colour (`livehouse admin grant --tag vip`).
pub const TAG_VIP: i64 = 4;

/// A tag by its name: `anchor`, `admin`, `vip`.
pub fn tag_bit(name: &str) -> Option<i64> {
    match name {
        "anchor" => Some(TAG_ANCHOR),
        "admin" => Some(TAG_ADMIN),
        "vip" => Some(TAG_VIP),
        _ => None,
    }
}

/// The names of the tags set in `tags`.
pub fn tag_names(tags: i64) -> Vec<&'static str> {
    [
        ("anchor", TAG_ANCHOR),
        ("admin", TAG_ADMIN),
        ("vip", TAG_VIP),
    ]
    .into_iter()
    .filter(|(_, b)| tags & b != 0)
    .map(|(n, _)| n)
    .collect()
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub user_id: i64,
    pub username: String,
    pub nick_name: String,
    pub avatar: String,
    pub is_anchor: bool,
    /// The tag bits (not shown to clients).
    #[serde(skip)]
    pub tags: i64,
}

impl User {
    /// An operator: the `admin` tag.
    pub fn is_operator(&self) -> bool {
        self.tags & TAG_ADMIN != 0
    }

    pub fn is_vip(&self) -> bool {
        self.tags & TAG_VIP != 0
    }
}

impl From<entity::Model> for User {
    fn from(m: entity::Model) -> Self {
        User {
            user_id: m.user_id,
            username: m.username,
            nick_name: m.nick_name,
            avatar: m.avatar,
            is_anchor: m.tags & TAG_ANCHOR != 0,
            tags: m.tags,
        }
    }
}

/// Checks the sign-up fields; the message names the field.
pub fn validate_new(username: &str, password: &str, nickname: &str) -> ApiResult<()> {
    let n = username.chars().count();
    if !(3..=32).contains(&n)
        || !username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(ApiError::BadRequest(
            "username must be 3 to 32 letters, digits or underscores".into(),
        ));
    }
    if !(6..=128).contains(&password.chars().count()) {
        return Err(ApiError::BadRequest(
            "password must be 6 to 128 characters".into(),
        ));
    }
    let nick = nickname.trim();
    if nick.chars().count() > 32 || nick.chars().any(|c| c.is_control()) {
        return Err(ApiError::BadRequest(
            "nickname must be at most 32 printable characters".into(),
        ));
    }
    Ok(())
}

/// Creates an account. `anchor` grants the tag that allows streaming.
pub async fn register(
    db: &DatabaseConnection,
    passwords: &Passwords,
    username: &str,
    password: &str,
    nickname: &str,
    anchor: bool,
) -> ApiResult<User> {
    validate_new(username, password, nickname)?;
    let hash = passwords.hash(password).await.map_err(password_error)?;
    let nick = if nickname.trim().is_empty() {
        username.to_string()
    } else {
        nickname.trim().to_string()
    };
    let row = entity::ActiveModel {
        username: Set(username.to_string()),
        password_hash: Set(hash),
        nick_name: Set(nick),
        avatar: Set(String::new()),
        tags: Set(if anchor { TAG_ANCHOR } else { 0 }),
        create_time: Set(now_ms()),
        ..Default::default()
    };
    match row.insert(db).await {
        Ok(m) => Ok(m.into()),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            Err(ApiError::Conflict("that username is taken".into()))
        }
        Err(e) => Err(e.into()),
    }
}

fn password_error(e: PasswordError) -> ApiError {
    match e {
        PasswordError::Busy => ApiError::Busy(e.to_string()),
        PasswordError::Failed(m) => ApiError::Internal(m),
    }
}

/// Checks a username and password; the same error for an unknown name and a wrong password,
/// after the same work (an unknown name is checked against a dummy hash).
pub async fn login(
    db: &DatabaseConnection,
    passwords: &Passwords,
    username: &str,
    password: &str,
) -> ApiResult<User> {
    let wrong = || ApiError::Unauthorized("wrong username or password".into());
    if username.is_empty() || username.len() > 64 || password.len() > 256 {
        return Err(wrong());
    }
    let found = entity::Entity::find()
        .filter(entity::Column::Username.eq(username))
        .one(db)
        .await?;
    let ok = passwords
        .verify(found.as_ref().map(|m| m.password_hash.as_str()), password)
        .await
        .map_err(password_error)?;
    match found {
        Some(m) if ok => Ok(m.into()),
        _ => Err(wrong()),
    }
}

/// The user with this id.
pub async fn get(db: &DatabaseConnection, user_id: i64) -> ApiResult<Option<User>> {
    Ok(entity::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .map(User::from))
}

/// The user named `who`: a username, or (when no username matches and it is a number) a user id.
pub async fn find(db: &DatabaseConnection, who: &str) -> ApiResult<Option<entity::Model>> {
    if let Some(m) = entity::Entity::find()
        .filter(entity::Column::Username.eq(who))
        .one(db)
        .await?
    {
        return Ok(Some(m));
    }
    match who.parse::<i64>() {
        Ok(id) => Ok(entity::Entity::find_by_id(id).one(db).await?),
        Err(_) => Ok(None),
    }
}

/// Sets (`on`) or clears a tag bit of a user; returns the new tags.
pub async fn set_tag(db: &DatabaseConnection, user_id: i64, bit: i64, on: bool) -> ApiResult<i64> {
    use sea_orm::sea_query::Expr;
    let expr = if on {
        Expr::cust_with_values("tags | ?", [bit])
    } else {
        Expr::cust_with_values("tags & ?", [!bit])
    };
    entity::Entity::update_many()
        .col_expr(entity::Column::Tags, expr)
        .filter(entity::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(entity::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .map(|m| m.tags)
        .unwrap_or(0))
}

/// Display names of many users at once (unknown ids are left out).
pub async fn names(
    db: &DatabaseConnection,
    ids: &[i64],
) -> ApiResult<std::collections::HashMap<i64, String>> {
    let mut out = std::collections::HashMap::new();
    for chunk in ids.chunks(500) {
        for m in entity::Entity::find()
            .filter(entity::Column::UserId.is_in(chunk.to_vec()))
            .all(db)
            .await?
        {
            out.insert(m.user_id, m.nick_name);
        }
    }
    Ok(out)
}
