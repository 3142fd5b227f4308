//! Wall-clock helpers. All persisted times are Unix epoch milliseconds (`i64`), the same on
//! SQLite and MySQL, so no time-zone conversion ever happens in the database.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
