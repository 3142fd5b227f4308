//! The connected backends a role runs on: one SQL database, one cache, one bus, the presence
//! store and the chat log. Built once by the binary from configuration and handed to each role.

use crate::bus::Bus;
use crate::cache::Cache;
use crate::chatlog::ChatLog;
use crate::presence::Presence;
use sea_orm::DatabaseConnection;
use std::sync::Arc;

#[derive(Clone)]
pub struct Backends {
    pub db: DatabaseConnection,
    pub cache: Arc<dyn Cache>,
    pub bus: Arc<dyn Bus>,
    pub presence: Arc<dyn Presence>,
    pub chatlog: Arc<dyn ChatLog>,
}
