//! `t_living_room`: one row per room that is live now. At most one per anchor (unique index).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "t_living_room")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub anchor_id: i64,
    /// Anchor's nickname and avatar at start time, so list reads never join users.
    pub anchor_nick_name: String,
    pub anchor_avatar: String,
    /// 1 = normal, 2 = PK.
    #[sea_orm(column_name = "type")]
    pub room_type: i32,
    /// 1 = living.
    pub status: i32,
    pub room_name: String,
    pub covert_img: String,
    pub watch_num: i64,
    pub good_num: i64,
    #[sea_orm(unique)]
    pub stream_key: String,
    /// Whether a publisher is pushing video now.
    pub streaming: bool,
    /// The streamer asked for a recording (`--record per-room`).
    pub record: bool,
    pub start_time: i64,
    pub update_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
