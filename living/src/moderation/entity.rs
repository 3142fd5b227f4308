//! sea-orm entities of the moderation tables. Times are epoch milliseconds.
//!
//! Channel-wide rules (bans, room admins, blocked words, timed mutes) belong to the anchor and
//! carry over to the anchor's next room; room-scoped ones (mutes "until the room closes", slow
//! mode) name the room and end with it.

/// `t_moderation_channel`: one row per anchor that ever had a moderation action: the version of
/// its rule set (+1 per change) and the slow mode of its live room.
pub mod channel {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "t_moderation_channel")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub anchor_id: i64,
        pub version: i64,
        /// The room slow mode applies to (0 = none).
        pub slow_mode_room_id: i64,
        pub slow_mode_secs: i32,
        pub update_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `t_moderation_mute`: a muted user of an anchor's rooms. `until_ms = 0`: until `room_id`
/// closes.
pub mod mute {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "t_moderation_mute")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub anchor_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        pub room_id: i64,
        pub until_ms: i64,
        pub by_user_id: i64,
        pub create_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `t_moderation_ban`: a user banned from an anchor's rooms until unbanned.
pub mod ban {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "t_moderation_ban")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub anchor_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        pub by_user_id: i64,
        pub create_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `t_moderation_admin`: a room admin (房管) of an anchor's rooms, appointed by the anchor.
pub mod admin {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "t_moderation_admin")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub anchor_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        pub create_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `t_moderation_word`: a blocked word of an anchor's rooms; unique by its folded form.
pub mod word {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "t_moderation_word")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub anchor_id: i64,
        /// `livehouse_moderation::fold` of `word` (width-folded, lowercase).
        #[sea_orm(primary_key, auto_increment = false)]
        pub folded: String,
        /// As entered.
        pub word: String,
        pub create_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `t_moderation_log`: the audit log: who did what to whom, when, in which room.
pub mod log {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "t_moderation_log")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub anchor_id: i64,
        pub room_id: i64,
        pub actor_id: i64,
        /// `anchor`, `admin` or `operator`.
        pub actor_role: String,
        /// `mute`, `unmute`, `ban`, `unban`, `delete`, `slow_mode`, `words`, `admins`,
        /// `close_room`.
        pub action: String,
        /// The user acted on (0 = none).
        pub target_id: i64,
        /// JSON with the action's parameters.
        #[sea_orm(column_type = "Text")]
        pub details: String,
        pub at_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
