//! `livehouse admin …`: operator tasks run once against the configured database, then exit:
//! grant or revoke a tag (`admin` makes an operator, `vip` allows any danmaku colour, `anchor`
//! allows starting rooms), show an account.

use crate::config::{AdminCommand, Config};
use anyhow::Context;
use livehouse_api::accounts;
use livehouse_core::db;

pub async fn run(command: AdminCommand, cfg: Config) -> anyhow::Result<()> {
    let url = match &cfg.database_url {
        Some(u) => u.clone(),
        None => {
            std::fs::create_dir_all(&cfg.data_dir)?;
            db::sqlite_url(&cfg.data_dir)
        }
    };
    let database = db::connect(&url)
        .await
        .context("opening the SQL database")?;
    livehouse_api::migrate(&database)
        .await
        .context("migrating the users table")?;
    let (who, change) = match &command {
        AdminCommand::Grant { user, tag } => (user, Some((tag, true))),
        AdminCommand::Revoke { user, tag } => (user, Some((tag, false))),
        AdminCommand::Show { user } => (user, None),
    };
    let user = accounts::find(&database, who)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .ok_or_else(|| anyhow::anyhow!("no account named `{who}` (nor with that id)"))?;
    let mut tags = user.tags;
    if let Some((tag, on)) = change {
        let bit = accounts::tag_bit(tag).expect("clap checked the tag name");
        tags = accounts::set_tag(&database, user.user_id, bit, on)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let suspended = accounts::suspension::is_suspended(&database, user.user_id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "user {} ({}): tags [{}]{}",
        user.user_id,
        user.username,
        accounts::tag_names(tags).join(", "),
        if suspended { ", suspended" } else { "" }
    );
    database.close().await.ok();
    Ok(())
}
