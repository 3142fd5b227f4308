//! The presence conformance suite against both adapters.

use livehouse_core::presence::{
    conformance, MemoryPresence, Presence, PresenceConfig, RedisPresence,
};
use livehouse_core::testenv;

#[tokio::test]
async fn memory_presence_conforms() {
    conformance::run_all(|| async { Box::new(MemoryPresence::default()) as Box<dyn Presence> })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_presence_conforms() {
    let Some(url) = testenv::backend("LIVEHOUSE_TEST_REDIS_URL") else {
        return;
    };
    conformance::run_all(|| {
        let url = url.clone();
        async move {
            let prefix = testenv::unique_prefix("presence");
            Box::new(
                RedisPresence::connect(&url, &prefix, PresenceConfig::default())
                    .await
                    .unwrap(),
            ) as Box<dyn Presence>
        }
    })
    .await;
}
