//! The cache conformance suite against both adapters.

use livehouse_core::cache::{conformance, MemoryCache, RedisCache};
use livehouse_core::testenv;

#[tokio::test]
async fn memory_cache_conforms() {
    conformance::run_all(&MemoryCache::new()).await;
}

#[tokio::test]
async fn redis_cache_conforms() {
    let Some(url) = testenv::backend("LIVEHOUSE_TEST_REDIS_URL") else {
        return;
    };
    let cache = RedisCache::connect(&url, &testenv::unique_prefix("conformance"))
        .await
        .unwrap();
    conformance::run_all(&cache).await;
}
