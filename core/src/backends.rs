//! The connected backends a role runs on: one SQL database, one cache, one bus.
//! Built once by the binary from configuration and handed to each role's `run`.

use crate::bus::Bus;
use crate::cache::Cache;
use sea_orm::DatabaseConnection;
use std::sync::Arc;

#[derive(Clone)]
pub struct Backends {
    pub db: DatabaseConnection,
    pub cache: Arc<dyn Cache>,
    pub bus: Arc<dyn Bus>,
}
