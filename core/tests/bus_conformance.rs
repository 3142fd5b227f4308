//! The bus conformance suite against both adapters.

use livehouse_core::bus::{conformance, KafkaBus, MemoryBus};
use livehouse_core::testenv;

#[tokio::test]
async fn memory_bus_conforms() {
    conformance::run_all(&MemoryBus::new(), "lhtest-memory").await;
}

/// Needs a broker: `LIVEHOUSE_TEST_KAFKA_BROKERS=127.0.0.1:9092` (see `.ci/kafka.sh`).
/// Topics and groups are named uniquely per run.
#[tokio::test]
async fn kafka_bus_conforms() {
    let Some(brokers) = testenv::backend("LIVEHOUSE_TEST_KAFKA_BROKERS") else {
        return;
    };
    let bus = KafkaBus::connect(&brokers, "livehouse-conformance")
        .await
        .unwrap();
    let prefix = format!("lhtest-{}", livehouse_core::ids::random_hex(6));
    conformance::run_all(&bus, &prefix).await;
}
