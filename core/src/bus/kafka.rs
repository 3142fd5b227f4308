//! Kafka adapter of the bus (rdkafka / librdkafka): the distributed twin of [`super::MemoryBus`].
//!
//! - `publish`: one shared `FutureProducer`, keyed produce (Kafka's key hash picks the partition,
//!   so a key keeps its order), `acks=all`, waits for the broker's acknowledgement.
//! - `subscribe`: one `StreamConsumer` per subscription (= one group member), with
//!   `enable.auto.commit=false` and `enable.auto.offset.store=false`; a new group starts at the
//!   earliest offset. `commit(d)` stores `d`'s offset and commits the consumer's stored offsets
//!   asynchronously (at-least-once: what is not committed comes back after a rebalance or
//!   restart). Dropping the subscription commits synchronously and leaves the group (on a
//!   blocking thread, as librdkafka's close blocks).
//! - `subscribe_tail`: the same with `auto.offset.reset=latest`.
//! - [`KafkaBus::with_namespace`] prefixes every topic and group name (`<ns>.<name>`), so
//!   deployments or test runs can share one cluster; deliveries carry the plain topic name.
//! - Topics are created on first use through the admin API ([`TOPIC_PARTITIONS`] partitions,
//!   replication 1 unless the broker sets a default); an existing topic is left as it is.
//!
//! Bounds: librdkafka's producer queue (`queue.buffering.max.messages`) and consumer prefetch
//! (`queued.max.messages.kbytes`) are capped below; a full producer queue surfaces as a publish
//! error after `message.timeout.ms`.
//!
//! Must not: interpret payloads or expose rdkafka types to callers.

use super::{Bus, BusError, Delivery, Subscription};
use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Partitions of a topic this adapter creates.
pub const TOPIC_PARTITIONS: i32 = 8;
/// How long a publish may wait for the broker (librdkafka `message.timeout.ms`).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

fn backend(e: impl std::fmt::Display) -> BusError {
    BusError::Backend(e.to_string())
}

/// The Kafka bus. One producer shared by all publishes; one consumer per subscription.
pub struct KafkaBus {
    brokers: String,
    client_id: String,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Prefix of topic and group names (`<ns>.`), empty for none.
    namespace: String,
    /// Topics known to exist (created or confirmed by this process).
    topics: Mutex<HashSet<String>>,
}

impl KafkaBus {
    /// Connects to `brokers` (`host:port,…`) and checks that the cluster answers (10 s deadline).
    pub async fn connect(brokers: &str, client_id: &str) -> Result<Self, BusError> {
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", brokers)
            .set("client.id", client_id);
        let producer: FutureProducer = base
            .clone()
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                PUBLISH_TIMEOUT.as_millis().to_string(),
            )
            .set("queue.buffering.max.messages", "100000")
            .set("linger.ms", "1")
            .create()
            .map_err(backend)?;
        let admin: AdminClient<DefaultClientContext> = base.create().map_err(backend)?;
        let probe = producer.clone();
        tokio::task::spawn_blocking(move || {
            probe
                .client()
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|_| ())
        })
        .await
        .map_err(backend)?
        .map_err(|e| BusError::Backend(format!("kafka at {brokers} does not answer: {e}")))?;
        Ok(KafkaBus {
            brokers: brokers.to_string(),
            client_id: client_id.to_string(),
            producer,
            admin,
            namespace: String::new(),
            topics: Mutex::new(HashSet::new()),
        })
    }

    /// Prefixes every topic and consumer group name with `<namespace>.` (none when empty).
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.namespace = if namespace.is_empty() {
            String::new()
        } else {
            format!("{namespace}.")
        };
        self
    }

    fn name(&self, plain: &str) -> String {
        format!("{}{plain}", self.namespace)
    }

    /// Creates `topic` unless this process already knows it exists.
    async fn ensure_topic(&self, topic: &str) -> Result<(), BusError> {
        if self.topics.lock().contains(topic) {
            return Ok(());
        }
        let new = NewTopic::new(topic, TOPIC_PARTITIONS, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = self
            .admin
            .create_topics([&new], &opts)
            .await
            .map_err(backend)?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(BusError::Backend(format!("creating topic {name}: {code}")))
                }
            }
        }
        self.topics.lock().insert(topic.to_string());
        Ok(())
    }

    async fn member(
        &self,
        plain_topic: &str,
        group: &str,
        reset: &str,
    ) -> Result<Box<dyn Subscription>, BusError> {
        let topic = self.name(plain_topic);
        let topic = topic.as_str();
        let group = self.name(group);
        self.ensure_topic(topic).await?;
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", reset)
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("queued.max.messages.kbytes", "16384")
            // Chat is latency-bound: do not let an idle fetch sit for librdkafka's 500 ms.
            .set("fetch.wait.max.ms", "100")
            .set("topic.metadata.refresh.interval.ms", "5000")
            .create()
            .map_err(backend)?;
        consumer.subscribe(&[topic]).map_err(backend)?;
        Ok(Box::new(KafkaSubscription {
            consumer: Some(Arc::new(consumer)),
            topic: topic.to_string(),
            plain_topic: plain_topic.to_string(),
        }))
    }
}

#[async_trait]
impl Bus for KafkaBus {
    async fn publish(&self, topic: &str, key: &str, payload: Bytes) -> Result<(), BusError> {
        let topic = self.name(topic);
        self.ensure_topic(&topic).await?;
        let record = FutureRecord::to(&topic).key(key).payload(payload.as_ref());
        self.producer
            .send(record, PUBLISH_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| backend(e))
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        self.member(topic, group, "earliest").await
    }

    async fn subscribe_tail(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.member(topic, group, "latest").await
    }
}

struct KafkaSubscription {
    /// `None` only while dropping.
    consumer: Option<Arc<StreamConsumer>>,
    /// The topic's name on the cluster (namespaced) and the name deliveries carry.
    topic: String,
    plain_topic: String,
}

impl KafkaSubscription {
    fn consumer(&self) -> &StreamConsumer {
        self.consumer
            .as_deref()
            .expect("consumer present until drop")
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        loop {
            match self.consumer().recv().await {
                Ok(m) => {
                    return Ok(Delivery {
                        topic: self.plain_topic.clone(),
                        key: m
                            .key()
                            .map(|k| String::from_utf8_lossy(k).into_owned())
                            .unwrap_or_default(),
                        payload: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
                        partition: m.partition(),
                        offset: m.offset(),
                    })
                }
                // Transient conditions librdkafka reports and recovers from by itself.
                Err(KafkaError::MessageConsumption(code))
                    if matches!(
                        code,
                        RDKafkaErrorCode::PartitionEOF
                            | RDKafkaErrorCode::UnknownTopicOrPartition
                            | RDKafkaErrorCode::BrokerTransportFailure
                            | RDKafkaErrorCode::AllBrokersDown
                    ) =>
                {
                    tracing::debug!(?code, "kafka consumer: transient error");
                    continue;
                }
                Err(e) => return Err(backend(e)),
            }
        }
    }

    async fn commit(&mut self, d: &Delivery) -> Result<(), BusError> {
        let c = self.consumer();
        match c.store_offset(&self.topic, d.partition, d.offset) {
            Ok(()) => {}
            // The partition went to another member in a rebalance: it will get this message
            // again (at-least-once), nothing to commit here.
            Err(KafkaError::StoreOffset(RDKafkaErrorCode::State))
            | Err(KafkaError::StoreOffset(RDKafkaErrorCode::UnknownPartition)) => return Ok(()),
            Err(e) => return Err(backend(e)),
        }
        match c.commit_consumer_state(CommitMode::Async) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }
}

impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        let close = move || {
            // Commit what was stored, then leave the group (dropping the consumer closes it).
            let _ = consumer.commit_consumer_state(CommitMode::Sync);
            drop(consumer);
        };
        // librdkafka's close blocks (a synchronous commit, then leaving the group): on a
        // blocking thread when a runtime is there, in place otherwise.
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(close);
            }
            Err(_) => close(),
        }
    }
}
