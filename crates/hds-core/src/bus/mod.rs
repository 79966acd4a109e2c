//! The event-bus seam: topics with per-key ordering, consumer groups and at-least-once delivery.
//!
//! Two implementations keep the same contract (tested by one suite, `tests/bus_contract.rs`):
//! - [`kafka::KafkaBus`]: Kafka through rdkafka (idempotent producer, `acks=all`);
//! - [`embedded::EmbeddedBus`]: topics kept in a database (SQLite for `hds up`), so an
//!   acknowledged event survives a crash.
//!
//! The contract:
//! - `publish` returns only once the message is durable (Kafka: acknowledged by all in-sync
//!   replicas; embedded: committed);
//! - messages with the same key go to the same partition and are delivered in order;
//! - a group's members share the partitions; a new group starts at the earliest message;
//! - `commit` records a delivery as handled; after a restart the group resumes right after the
//!   last committed delivery of each partition, so anything not committed is delivered again.
//!
//! [`consume`] is the loop every service uses: it commits only after the handler succeeded
//! and retries a failing handler with backoff instead of skipping the message.

pub mod embedded;
pub mod kafka;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub type Headers = Vec<(String, Vec<u8>)>;

/// A message to publish.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutgoingMessage {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Headers,
}

impl OutgoingMessage {
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        Self {
            key: None,
            payload: payload.into(),
            headers: Vec::new(),
        }
    }
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }
}

/// Where a published message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub partition: i32,
    pub offset: i64,
}

/// A message handed to a consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Headers,
    pub timestamp_ms: Option<i64>,
}

impl Delivery {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("event bus configuration: {0}")]
    Config(String),
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    #[error("publishing to topic '{topic}' failed: {reason}")]
    Publish { topic: String, reason: String },
    #[error("consuming failed: {0}")]
    Consume(String),
    #[error("committing the consumer offset failed: {0}")]
    Commit(String),
    #[error("topic administration failed: {0}")]
    Admin(String),
    #[error("embedded bus storage: {0}")]
    Storage(#[from] crate::db::DbError),
}

impl From<sqlx::Error> for BusError {
    fn from(e: sqlx::Error) -> Self {
        BusError::Storage(crate::db::DbError::Query(e))
    }
}

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// "kafka" or "embedded", for logs and test names.
    fn kind(&self) -> &'static str;

    /// Creates the topic if it does not exist (an existing topic is left as it is).
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<(), BusError>;

    /// Deletes the topic and everything in it; absent topics are not an error.
    async fn delete_topic(&self, topic: &str) -> Result<(), BusError>;

    /// Publishes and waits until the message is durable. W3C trace context of the current
    /// span is added to the headers unless they already carry one.
    async fn publish(&self, topic: &str, message: OutgoingMessage) -> Result<Published, BusError>;

    /// Publishes several messages, each acknowledged before this returns, keeping their order
    /// within each partition. Kafka sends them all at once; the default sends one by one.
    async fn publish_all(&self, messages: Vec<(String, OutgoingMessage)>) -> Result<(), BusError> {
        for (topic, message) in messages {
            self.publish(&topic, message).await?;
        }
        Ok(())
    }

    /// Joins consumer group `group` on `topics`.
    async fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError>;

    /// Removes a consumer group's committed offsets (used when an instance is deleted).
    async fn delete_group(&self, group: &str) -> Result<(), BusError>;

    /// Readiness: can the bus be reached now?
    async fn check(&self) -> Result<(), BusError>;
}

#[async_trait]
pub trait Subscription: Send {
    /// The next delivery, waiting for one if need be.
    async fn next(&mut self) -> Result<Delivery, BusError>;

    /// Records `delivery` (and everything before it in its partition) as handled, durably.
    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError>;

    /// Leaves the group, so that its partitions go to the remaining members at once.
    async fn close(self: Box<Self>);
}

pub type SharedBus = Arc<dyn EventBus>;

/// A handler's failure. The loop retries it; handlers turn permanent failures into their own
/// outcome (a dead letter, a failed operation) and return `Ok`.
pub type HandlerError = anyhow::Error;

/// Delivers every message of `subscription` to `handler` until `shutdown` fires.
///
/// A message is committed only after its handler returned `Ok`. A failing handler is retried
/// with exponential backoff (100 ms to 30 s) and the partition does not advance past it. On
/// shutdown the message in hand is finished (or, if it is between retries, left uncommitted
/// for the next start) and the subscription leaves its group. An unreachable bus is waited
/// for, not given up on: the loop ends only at shutdown.
pub async fn consume<H, F>(
    mut subscription: Box<dyn Subscription>,
    shutdown: CancellationToken,
    mut handler: H,
) -> Result<(), BusError>
where
    H: FnMut(Delivery) -> F + Send,
    F: Future<Output = Result<(), HandlerError>> + Send,
{
    let mut idle_backoff = Duration::from_millis(100);
    loop {
        let delivery = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            next = subscription.next() => match next {
                Ok(d) => {
                    idle_backoff = Duration::from_millis(100);
                    d
                }
                Err(e) => {
                    // The bus is unreachable: wait and ask again; nothing is lost meanwhile.
                    tracing::warn!(error = %e, retry_in_ms = idle_backoff.as_millis() as u64, "consuming failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(idle_backoff) => {}
                    }
                    idle_backoff = (idle_backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            },
        };
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 1u32;
        let handled = loop {
            let span = tracing::info_span!(
                "consume",
                topic = %delivery.topic,
                partition = delivery.partition,
                offset = delivery.offset,
                attempt
            );
            crate::telemetry::set_parent_from_headers(&span, &delivery.headers);
            match handler(delivery.clone()).instrument(span).await {
                Ok(()) => break true,
                Err(e) => {
                    tracing::warn!(
                        topic = %delivery.topic,
                        partition = delivery.partition,
                        offset = delivery.offset,
                        attempt,
                        error = %format!("{e:#}"),
                        "handler failed; retrying"
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => break false,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    attempt += 1;
                }
            }
        };
        if !handled {
            break;
        }
        if let Err(e) = subscription.commit(&delivery).await {
            // Not fatal: the message was handled; at worst it is delivered again after a
            // restart, which at-least-once consumers expect.
            tracing::warn!(error = %e, "commit failed");
        }
    }
    subscription.close().await;
    Ok(())
}

/// FNV-1a: a stable hash, so that a key maps to the same embedded partition in every version.
pub(crate) fn stable_hash(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x01000193);
    }
    h
}

pub(crate) fn encode_headers(headers: &Headers) -> Vec<u8> {
    use prost::Message;
    crate::events::v1::StoredHeaders {
        headers: headers
            .iter()
            .map(|(k, v)| crate::events::v1::StoredHeader {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
    }
    .encode_to_vec()
}

pub(crate) fn decode_headers(bytes: &[u8]) -> Result<Headers, prost::DecodeError> {
    use prost::Message;
    Ok(crate::events::v1::StoredHeaders::decode(bytes)?
        .headers
        .into_iter()
        .map(|h| (h.key, h.value))
        .collect())
}

/// Builds the bus the settings name.
pub async fn connect(
    settings: &crate::config::BusSettings,
    embedded_db: Option<crate::db::Database>,
) -> Result<SharedBus, BusError> {
    match settings {
        crate::config::BusSettings::Kafka(k) => Ok(Arc::new(kafka::KafkaBus::new(k)?)),
        crate::config::BusSettings::Embedded(e) => {
            let db = match embedded_db {
                Some(db) => db,
                None => crate::db::Database::connect(&crate::db::DatabaseSettings::new(
                    e.database_url.clone(),
                ))
                .await
                .map_err(BusError::Storage)?,
            };
            Ok(Arc::new(embedded::EmbeddedBus::open(db, e.clone()).await?))
        }
    }
}
