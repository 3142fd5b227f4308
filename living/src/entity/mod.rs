//! sea-orm entities of the rooms tables. Times are epoch milliseconds.

pub mod living_replay;
pub mod living_room;
pub mod living_room_record;
