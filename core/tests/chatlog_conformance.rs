//! The chat log conformance suite against both adapters.

use livehouse_core::chatlog::{conformance, ChatLog, MemoryChatLog, RedisChatLog};
use livehouse_core::testenv;

#[tokio::test]
async fn memory_chat_log_conforms() {
    conformance::run_all(
        |cfg| async move { Box::new(MemoryChatLog::new(cfg)) as Box<dyn ChatLog> },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_chat_log_conforms() {
    let Some(url) = testenv::backend("LIVEHOUSE_TEST_REDIS_URL") else {
        return;
    };
    conformance::run_all(|cfg| {
        let url = url.clone();
        async move {
            let prefix = testenv::unique_prefix("chatlog");
            Box::new(RedisChatLog::connect(&url, &prefix, cfg).await.unwrap()) as Box<dyn ChatLog>
        }
    })
    .await;
}
