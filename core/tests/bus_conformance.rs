//! The bus conformance suite against both adapters.

use livehouse_core::bus::{conformance, KafkaBus, MemoryBus};
use livehouse_core::testenv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bus_conforms() {
    conformance::run_all(&MemoryBus::new(), "lhtest-memory").await;
}

/// Needs a broker: `LIVEHOUSE_TEST_KAFKA_BROKERS=127.0.0.1:9092` (see `.ci/kafka.sh`).
/// Topics and groups are named uniquely per run. On a multi-threaded runtime, as in production.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

/// The same suite through a namespace (`with_namespace`, as deployments sharing a cluster and
/// the distributed test use it): names on the cluster are prefixed, deliveries carry the plain
/// topic name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_bus_conforms_in_a_namespace() {
    let Some(brokers) = testenv::backend("LIVEHOUSE_TEST_KAFKA_BROKERS") else {
        return;
    };
    let bus = KafkaBus::connect(&brokers, "livehouse-conformance")
        .await
        .unwrap()
        .with_namespace(&format!("lhtest-ns-{}", livehouse_core::ids::random_hex(6)));
    conformance::run_all(&bus, "plain").await;
}
