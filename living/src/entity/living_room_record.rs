//! `t_living_room_record`: a closed room, with its end time. `id` is the room's id.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "t_living_room_record")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    pub anchor_id: i64,
    pub anchor_nick_name: String,
    pub anchor_avatar: String,
    #[sea_orm(column_name = "type")]
    pub room_type: i32,
    /// 0 = ended.
    pub status: i32,
    pub room_name: String,
    pub covert_img: String,
    pub watch_num: i64,
    pub good_num: i64,
    pub start_time: i64,
    pub end_time: i64,
    pub update_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
