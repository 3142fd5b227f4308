//! Where tests find the real backends, and the rule that CI never skips one silently.
//!
//! `LIVEHOUSE_TEST_REDIS_URL`, `LIVEHOUSE_TEST_MYSQL_URL` (a server URL such as
//! `mysql://root@127.0.0.1:3306`; each test creates its own database) and
//! `LIVEHOUSE_TEST_KAFKA_BROKERS` turn the real-backend suites on. With
//! `LIVEHOUSE_REQUIRE_BACKENDS=1` (set by `.ci/run`) a missing one fails the test instead of
//! skipping it.

/// The value of `var`, or `None` (with a note on stderr) when it is unset and not required.
/// Panics when unset and `LIVEHOUSE_REQUIRE_BACKENDS=1`.
pub fn backend(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if std::env::var("LIVEHOUSE_REQUIRE_BACKENDS").as_deref() == Ok("1") {
                panic!("{var} is not set but LIVEHOUSE_REQUIRE_BACKENDS=1: this suite must run");
            }
            eprintln!("SKIPPED: {var} not set; this real-backend test did not run");
            None
        }
    }
}

/// A key prefix unique to one test run, to share one Redis between tests.
pub fn unique_prefix(name: &str) -> String {
    format!("lhtest:{name}:{}:", crate::ids::random_hex(6))
}

/// A fresh, empty database for one test: a SQLite file in a temporary directory, or (given a
/// MySQL server URL such as `mysql://root@127.0.0.1:3306`) a new uniquely named database.
pub async fn fresh_database(mysql_server: Option<&str>) -> sea_orm::DatabaseConnection {
    use sea_orm::ConnectionTrait;
    match mysql_server {
        None => {
            let dir =
                std::env::temp_dir().join(format!("livehouse-test-{}", crate::ids::random_hex(6)));
            std::fs::create_dir_all(&dir).expect("temp dir");
            crate::db::connect(&crate::db::sqlite_url(&dir))
                .await
                .expect("sqlite opens")
        }
        Some(server) => {
            let server = server.trim_end_matches('/');
            let name = format!("lhtest_{}", crate::ids::random_hex(6));
            let admin = crate::db::connect(server)
                .await
                .expect("mysql server reachable");
            admin
                .execute_unprepared(&format!("CREATE DATABASE `{name}`"))
                .await
                .expect("create test database");
            admin.close().await.ok();
            crate::db::connect(&format!("{server}/{name}"))
                .await
                .expect("test database opens")
        }
    }
}

/// Polls `cond` every 25 ms until it holds; panics naming `what` after `deadline`.
/// Returns how long it took. Tests wait with this instead of sleeping.
pub async fn poll_until<F, Fut>(
    what: &str,
    deadline: std::time::Duration,
    mut cond: F,
) -> std::time::Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < deadline,
            "{what} did not happen within {deadline:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    start.elapsed()
}
