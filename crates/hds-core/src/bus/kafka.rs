//! Kafka through rdkafka: an idempotent producer with `acks=all`, consumer groups with manual
//! commits, topics created through the admin API.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::{BusError, Delivery, EventBus, OutgoingMessage, Published, Subscription};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]`
    pub brokers: String,
    /// Replication factor of the topics hds creates.
    #[serde(default = "default_replication")]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub replication_factor: i32,
    /// How long a publish may wait for the broker before it fails (and the outbox retries).
    #[serde(default = "default_message_timeout_ms")]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub message_timeout_ms: u64,
    #[serde(default = "default_session_timeout_ms")]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub session_timeout_ms: u64,
    #[serde(default = "default_max_poll_interval_ms")]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub max_poll_interval_ms: u64,
    /// Whether [`EventBus::delete_topic`] deletes the topic. Leave it on for Kafka. tansu 0.6
    /// needs it off: its DeleteTopics removes the catalogue row of *every* topic of the
    /// cluster (`topic_delete_by.sql` matches the cluster, not the topic), after which its
    /// storage task panics on the next produce and the broker answers nothing. Off, a deleted
    /// topic is left in place with its messages (a topic created again under the same name
    /// keeps them).
    #[serde(default = "default_delete_topics")]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub delete_topics: bool,
    /// Further librdkafka properties (e.g. `security.protocol = "SASL_SSL"`,
    /// `sasl.mechanism = "SCRAM-SHA-512"`). `_` in a name stands for `.`, so that they can be
    /// set from the environment: `HDS_BUS__KAFKA__PROPERTIES__SASL_PASSWORD`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_replication() -> i32 {
    1
}
fn default_delete_topics() -> bool {
    true
}
fn default_message_timeout_ms() -> u64 {
    30_000
}
fn default_session_timeout_ms() -> u64 {
    6_000
}
fn default_max_poll_interval_ms() -> u64 {
    30_000
}

impl KafkaSettings {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            replication_factor: default_replication(),
            message_timeout_ms: default_message_timeout_ms(),
            session_timeout_ms: default_session_timeout_ms(),
            max_poll_interval_ms: default_max_poll_interval_ms(),
            delete_topics: default_delete_topics(),
            properties: BTreeMap::new(),
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            // librdkafka property names have no '_'.
            c.set(k.replace('_', "."), v);
        }
        c
    }
}

pub struct KafkaBus {
    settings: KafkaSettings,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
}

fn kafka_err(e: rdkafka::error::KafkaError) -> String {
    e.to_string()
}

impl KafkaBus {
    /// Creates the clients; it does not wait for the broker (see [`EventBus::check`]).
    pub fn new(settings: &KafkaSettings) -> Result<Self, BusError> {
        let producer: FutureProducer = settings
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                settings.message_timeout_ms.to_string(),
            )
            .create()
            .map_err(|e| BusError::Config(format!("kafka producer: {e}")))?;
        let admin = settings
            .client_config()
            .create()
            .map_err(|e| BusError::Config(format!("kafka admin client: {e}")))?;
        Ok(Self {
            settings: settings.clone(),
            producer,
            admin,
        })
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<(), BusError> {
        let new = NewTopic::new(
            topic,
            partitions as i32,
            TopicReplication::Fixed(self.settings.replication_factor),
        );
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = self
            .admin
            .create_topics([&new], &opts)
            .await
            .map_err(|e| BusError::Admin(kafka_err(e)))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => {
                    return Err(BusError::Admin(format!("creating topic {t}: {code}")))
                }
            }
        }
        Ok(())
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), BusError> {
        if !self.settings.delete_topics {
            tracing::info!(
                topic,
                "topic left in place (bus.kafka.delete_topics is off)"
            );
            return Ok(());
        }
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = self
            .admin
            .delete_topics(&[topic], &opts)
            .await
            .map_err(|e| BusError::Admin(kafka_err(e)))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((t, code)) => {
                    return Err(BusError::Admin(format!("deleting topic {t}: {code}")))
                }
            }
        }
        Ok(())
    }

    async fn publish(
        &self,
        topic: &str,
        mut message: OutgoingMessage,
    ) -> Result<Published, BusError> {
        crate::telemetry::inject_into_headers(&mut message.headers);
        let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
        for (k, v) in &message.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(&message.payload)
            .headers(headers);
        if let Some(key) = &message.key {
            record = record.key(key);
        }
        let delivery = self
            .producer
            .send(
                record,
                Duration::from_millis(self.settings.message_timeout_ms),
            )
            .await
            .map_err(|(e, _)| BusError::Publish {
                topic: topic.to_owned(),
                reason: kafka_err(e),
            })?;
        Ok(Published {
            partition: delivery.partition,
            offset: delivery.offset,
        })
    }

    async fn publish_all(&self, messages: Vec<(String, OutgoingMessage)>) -> Result<(), BusError> {
        // Each send is queued in librdkafka when first polled, in this order; the idempotent
        // producer keeps that order per partition while they are in flight together.
        let sends = messages
            .into_iter()
            .map(|(topic, message)| async move { self.publish(&topic, message).await });
        for result in futures::future::join_all(sends).await {
            result?;
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        let consumer: StreamConsumer = self
            .settings
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                self.settings.session_timeout_ms.to_string(),
            )
            .set(
                "max.poll.interval.ms",
                self.settings.max_poll_interval_ms.to_string(),
            )
            .create()
            .map_err(|e| BusError::Config(format!("kafka consumer: {e}")))?;
        consumer
            .subscribe(topics)
            .map_err(|e| BusError::Consume(kafka_err(e)))?;
        Ok(Box::new(KafkaSubscription {
            consumer: Arc::new(consumer),
        }))
    }

    async fn delete_group(&self, group: &str) -> Result<(), BusError> {
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = self
            .admin
            .delete_groups(&[group], &opts)
            .await
            .map_err(|e| BusError::Admin(kafka_err(e)))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
                Err((g, code)) => {
                    return Err(BusError::Admin(format!("deleting group {g}: {code}")))
                }
            }
        }
        Ok(())
    }

    async fn check(&self) -> Result<(), BusError> {
        let producer = self.producer.clone();
        let brokers = self.settings.brokers.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(3))
                .map(|_| ())
                .map_err(|e| BusError::Unavailable(format!("kafka at {brokers}: {}", kafka_err(e))))
        })
        .await
        .map_err(|e| BusError::Unavailable(e.to_string()))?
    }
}

struct KafkaSubscription {
    consumer: Arc<StreamConsumer>,
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        let m = self
            .consumer
            .recv()
            .await
            .map_err(|e| BusError::Consume(kafka_err(e)))?;
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Delivery {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().unwrap_or_default().to_vec(),
            headers,
            timestamp_ms: m.timestamp().to_millis(),
        })
    }

    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &delivery.topic,
            delivery.partition,
            Offset::Offset(delivery.offset + 1),
        )
        .map_err(|e| BusError::Commit(kafka_err(e)))?;
        let consumer = self.consumer.clone();
        // librdkafka's synchronous commit blocks its thread until the broker answers.
        tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| BusError::Commit(e.to_string()))?
            .map_err(|e| BusError::Commit(kafka_err(e)))
    }

    async fn close(self: Box<Self>) {
        let consumer = self.consumer.clone();
        let _ = tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            drop(consumer);
        })
        .await;
    }
}
