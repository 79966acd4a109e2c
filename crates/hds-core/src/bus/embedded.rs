//! The embedded event bus: Kafka's semantics over database tables, for `hds up`.
//!
//! Each topic has a fixed number of partitions; a partition is an append-only log whose
//! offsets come from a counter row (`bus_partitions`), so concurrent publishers never collide.
//! A publish is one transaction: once it returns, the message survives a crash. Group offsets
//! live in `bus_offsets`.
//!
//! Group membership is kept in memory: members of one group share the partitions round-robin
//! and a join or leave reassigns them (a member then restarts from the committed offsets, so
//! in-flight uncommitted messages are delivered again, as Kafka does after a rebalance). That
//! makes groups process-local: the embedded bus serves one process (`hds up`); separate
//! processes need Kafka.
//!
//! Consumers wait on an in-process notification; they also poll every `poll_interval_ms` so
//! that a writer in another process is seen too.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::sync::Notify;

use super::{
    decode_headers, encode_headers, stable_hash, BusError, Delivery, EventBus, OutgoingMessage,
    Published, Subscription,
};
use crate::db::{Database, Migrations};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedBusSettings {
    /// The database that holds the topics (for `hds up`: `sqlite://{data-dir}/bus.db`).
    pub database_url: String,
    /// Partitions of a topic created implicitly by a publish or subscribe.
    #[serde(default = "default_partitions")]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub default_partitions: u32,
    #[serde(default = "default_poll_interval_ms")]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub poll_interval_ms: u64,
    /// Messages older than this are deleted, as Kafka's `log.retention.hours` does (its
    /// default, seven days): the bus's file does not grow for ever. Offsets are never reused;
    /// a group whose next message is gone goes on from the oldest one kept.
    #[serde(default = "default_retention_hours")]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub retention_hours: u64,
}

fn default_partitions() -> u32 {
    4
}
fn default_poll_interval_ms() -> u64 {
    500
}
fn default_retention_hours() -> u64 {
    7 * 24
}

/// How often old messages are looked for.
const RETENTION_CHECK: std::time::Duration = std::time::Duration::from_secs(600);

impl EmbeddedBusSettings {
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            default_partitions: default_partitions(),
            poll_interval_ms: default_poll_interval_ms(),
            retention_hours: default_retention_hours(),
        }
    }
}

pub fn migrations() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./migrations/bus/postgres"),
        sqlite: sqlx::migrate!("./migrations/bus/sqlite"),
    }
}

#[derive(Default)]
struct Group {
    members: Vec<u64>,
    generation: u64,
}

struct Inner {
    db: Database,
    settings: EmbeddedBusSettings,
    notify: Notify,
    groups: Mutex<HashMap<String, Group>>,
    next_member: AtomicU64,
    round_robin: AtomicU64,
    partitions: Mutex<HashMap<String, u32>>,
}

#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

const FETCH_BATCH: i64 = 200;

impl EmbeddedBus {
    pub async fn open(db: Database, settings: EmbeddedBusSettings) -> Result<Self, BusError> {
        db.migrate(&migrations()).await?;
        let bus = Self {
            inner: Arc::new(Inner {
                db,
                settings,
                notify: Notify::new(),
                groups: Mutex::new(HashMap::new()),
                next_member: AtomicU64::new(1),
                round_robin: AtomicU64::new(0),
                partitions: Mutex::new(HashMap::new()),
            }),
        };
        // Retention runs while the bus is in use; the task ends once the bus is dropped.
        let inner = Arc::downgrade(&bus.inner);
        tokio::spawn(async move {
            loop {
                let Some(inner) = inner.upgrade() else { return };
                let bus = EmbeddedBus { inner };
                if let Err(e) = bus
                    .apply_retention(chrono::Utc::now().timestamp_millis())
                    .await
                {
                    tracing::warn!(error = %e, "embedded bus: cannot delete old messages");
                }
                drop(bus);
                tokio::time::sleep(RETENTION_CHECK).await;
            }
        });
        Ok(bus)
    }

    /// Deletes the messages older than the retention as of `now_ms`; returns how many.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<u64, BusError> {
        let hours = i64::try_from(self.inner.settings.retention_hours).unwrap_or(i64::MAX);
        let cutoff = now_ms.saturating_sub(hours.saturating_mul(3_600_000));
        let deleted = sqlx::query("DELETE FROM bus_messages WHERE timestamp_ms < $1")
            .bind(cutoff)
            .execute(self.inner.db.pool())
            .await?;
        Ok(deleted.rows_affected())
    }
}

impl Inner {
    /// The partition `message` goes to: by its key's hash, or round-robin without a key.
    async fn partition_of(&self, topic: &str, message: &OutgoingMessage) -> Result<i32, BusError> {
        let partitions = self.partitions(topic).await?;
        Ok(match &message.key {
            Some(key) => stable_hash(key) % partitions,
            None => (self.round_robin.fetch_add(1, Ordering::Relaxed) % partitions as u64) as u32,
        } as i32)
    }

    /// Partition count of `topic`, creating it with the default count if it is new.
    async fn partitions(&self, topic: &str) -> Result<u32, BusError> {
        if let Some(n) = self.partitions.lock().unwrap().get(topic) {
            return Ok(*n);
        }
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM bus_partitions WHERE topic = $1")
            .bind(topic)
            .fetch_one(self.db.pool())
            .await?
            .try_get("n")?;
        let n = if n == 0 {
            self.create(topic, self.settings.default_partitions).await?
        } else {
            n as u32
        };
        self.partitions.lock().unwrap().insert(topic.to_owned(), n);
        Ok(n)
    }

    async fn create(&self, topic: &str, partitions: u32) -> Result<u32, BusError> {
        if topic.is_empty() || partitions == 0 {
            return Err(BusError::Admin(format!(
                "topic '{topic}' needs a name and at least one partition"
            )));
        }
        let mut tx = self.db.begin().await?;
        for p in 0..partitions {
            sqlx::query(
                "INSERT INTO bus_partitions (topic, partition_no, next_offset) VALUES ($1, $2, 0) \
                 ON CONFLICT (topic, partition_no) DO NOTHING",
            )
            .bind(topic)
            .bind(p as i32)
            .execute(&mut *tx)
            .await?;
        }
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM bus_partitions WHERE topic = $1")
            .bind(topic)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        tx.commit().await.map_err(BusError::from)?;
        Ok(n as u32)
    }

    fn assignment(&self, group: &str, member: u64) -> (u64, usize, usize) {
        let groups = self.groups.lock().unwrap();
        let g = groups.get(group);
        let generation = g.map_or(0, |g| g.generation);
        let members = g.map_or(1, |g| g.members.len().max(1));
        let index = g
            .and_then(|g| g.members.iter().position(|m| *m == member))
            .unwrap_or(0);
        (generation, index, members)
    }
}

/// Appends `placed` (topic, partition, message) in one transaction and commits it; returns
/// their offsets. The transaction runs in a task of its own, to its end even when the caller
/// stops waiting (an outbox relay at shutdown): a transaction dropped half-way would keep
/// SQLite's write lock until its pooled connection is next used, and every other writer
/// would wait for it.
async fn commit_appends(
    inner: Arc<Inner>,
    placed: Vec<(String, i32, OutgoingMessage)>,
) -> Result<Vec<i64>, BusError> {
    let topic = placed.first().map(|p| p.0.clone()).unwrap_or_default();
    tokio::spawn(async move {
        let mut tx = inner.db.begin().await?;
        let mut offsets = Vec::with_capacity(placed.len());
        for (topic, partition, message) in placed {
            offsets.push(append(&mut tx, &topic, partition, message).await?);
        }
        tx.commit().await?;
        inner.notify.notify_waiters();
        Ok(offsets)
    })
    .await
    .map_err(|e| BusError::Publish {
        topic,
        reason: format!("the publishing task ended: {e}"),
    })?
}

/// Appends `message` to `partition` of `topic` in `tx`; returns its offset.
async fn append(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    topic: &str,
    partition: i32,
    message: OutgoingMessage,
) -> Result<i64, BusError> {
    // The counter update comes first: it takes the write lock before anything is read.
    let offset: i64 = sqlx::query(
        "UPDATE bus_partitions SET next_offset = next_offset + 1 \
         WHERE topic = $1 AND partition_no = $2 RETURNING next_offset - 1 AS o",
    )
    .bind(topic)
    .bind(partition)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| BusError::Publish {
        topic: topic.to_owned(),
        reason: format!("partition {partition} does not exist"),
    })?
    .try_get("o")?;
    sqlx::query(
        "INSERT INTO bus_messages (topic, partition_no, msg_offset, msg_key, payload, headers, timestamp_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(topic)
    .bind(partition)
    .bind(offset)
    .bind(message.key)
    .bind(message.payload)
    .bind(encode_headers(&message.headers))
    .bind(crate::events::now_unix_ms())
    .execute(&mut **tx)
    .await?;
    Ok(offset)
}

#[async_trait]
impl EventBus for EmbeddedBus {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<(), BusError> {
        let n = self.inner.create(topic, partitions).await?;
        self.inner
            .partitions
            .lock()
            .unwrap()
            .insert(topic.to_owned(), n);
        Ok(())
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), BusError> {
        let mut tx = self.inner.db.begin().await?;
        for table in ["bus_partitions", "bus_messages", "bus_offsets"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE topic = $1"))
                .bind(topic)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.inner.partitions.lock().unwrap().remove(topic);
        Ok(())
    }

    async fn publish(
        &self,
        topic: &str,
        mut message: OutgoingMessage,
    ) -> Result<Published, BusError> {
        crate::telemetry::inject_into_headers(&mut message.headers);
        let partition = self.inner.partition_of(topic, &message).await?;
        let offsets = commit_appends(
            self.inner.clone(),
            vec![(topic.to_owned(), partition, message)],
        )
        .await?;
        Ok(Published {
            partition,
            offset: offsets[0],
        })
    }

    /// All in one transaction: one commit (and one sync of the bus's file) for the batch, where
    /// one publish after another cost a commit each (with them, `hds up` spent twice the CPU
    /// on a FHIR load). Offsets are taken in the batch's order, so each partition keeps it;
    /// on failure nothing of the batch is published.
    async fn publish_all(&self, messages: Vec<(String, OutgoingMessage)>) -> Result<(), BusError> {
        let mut placed = Vec::with_capacity(messages.len());
        for (topic, mut message) in messages {
            crate::telemetry::inject_into_headers(&mut message.headers);
            let partition = self.inner.partition_of(&topic, &message).await?;
            placed.push((topic, partition, message));
        }
        commit_appends(self.inner.clone(), placed).await?;
        Ok(())
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        let mut topic_partitions = Vec::new();
        for t in topics {
            topic_partitions.push((t.to_string(), self.inner.partitions(t).await?));
        }
        let member = self.inner.next_member.fetch_add(1, Ordering::Relaxed);
        {
            let mut groups = self.inner.groups.lock().unwrap();
            let g = groups.entry(group.to_owned()).or_default();
            g.members.push(member);
            g.generation += 1;
        }
        Ok(Box::new(EmbeddedSubscription {
            inner: self.inner.clone(),
            group: group.to_owned(),
            member,
            topics: topic_partitions,
            generation: u64::MAX,
            positions: HashMap::new(),
            buffer: VecDeque::new(),
            left: false,
        }))
    }

    async fn delete_group(&self, group: &str) -> Result<(), BusError> {
        sqlx::query("DELETE FROM bus_offsets WHERE group_id = $1")
            .bind(group)
            .execute(self.inner.db.pool())
            .await?;
        Ok(())
    }

    async fn check(&self) -> Result<(), BusError> {
        Ok(self.inner.db.check().await?)
    }
}

struct EmbeddedSubscription {
    inner: Arc<Inner>,
    group: String,
    member: u64,
    topics: Vec<(String, u32)>,
    generation: u64,
    /// Next offset to read, per assigned (topic, partition).
    positions: HashMap<(String, i32), i64>,
    buffer: VecDeque<Delivery>,
    left: bool,
}

impl EmbeddedSubscription {
    fn leave(&mut self) {
        if self.left {
            return;
        }
        self.left = true;
        let mut groups = self.inner.groups.lock().unwrap();
        if let Some(g) = groups.get_mut(&self.group) {
            g.members.retain(|m| *m != self.member);
            g.generation += 1;
        }
    }

    /// Re-reads the assignment after a join or leave; positions restart at committed offsets.
    /// Takes this member's partitions after a change of the group. Cancel-safe (`next()` may
    /// be dropped at any await, e.g. by a consumer's timeout): the new positions are read
    /// first and installed together with the generation, so a cancelled refresh is simply
    /// done again.
    async fn refresh_assignment(&mut self) -> Result<(), BusError> {
        let (generation, index, members) = self.inner.assignment(&self.group, self.member);
        if generation == self.generation {
            return Ok(());
        }
        let mut positions = HashMap::new();
        let mut slot = 0usize;
        for (topic, partitions) in &self.topics {
            for p in 0..*partitions as i32 {
                if slot % members == index {
                    let committed: Option<i64> = sqlx::query(
                        "SELECT next_offset FROM bus_offsets \
                         WHERE group_id = $1 AND topic = $2 AND partition_no = $3",
                    )
                    .bind(&self.group)
                    .bind(topic)
                    .bind(p)
                    .fetch_optional(self.inner.db.pool())
                    .await?
                    .map(|r| r.try_get("next_offset"))
                    .transpose()?;
                    positions.insert((topic.clone(), p), committed.unwrap_or(0));
                }
                slot += 1;
            }
        }
        self.generation = generation;
        self.buffer.clear();
        self.positions = positions;
        Ok(())
    }

    async fn fill(&mut self) -> Result<(), BusError> {
        let mut keys: Vec<_> = self.positions.keys().cloned().collect();
        keys.sort();
        for (topic, partition) in keys {
            let from = self.positions[&(topic.clone(), partition)];
            let rows = sqlx::query(
                "SELECT msg_offset, msg_key, payload, headers, timestamp_ms FROM bus_messages \
                 WHERE topic = $1 AND partition_no = $2 AND msg_offset >= $3 \
                 ORDER BY msg_offset LIMIT $4",
            )
            .bind(&topic)
            .bind(partition)
            .bind(from)
            .bind(FETCH_BATCH)
            .fetch_all(self.inner.db.pool())
            .await?;
            for row in rows {
                let offset: i64 = row.try_get("msg_offset")?;
                let headers: Vec<u8> = row.try_get("headers")?;
                self.buffer.push_back(Delivery {
                    topic: topic.clone(),
                    partition,
                    offset,
                    key: row.try_get("msg_key")?,
                    payload: row.try_get("payload")?,
                    headers: decode_headers(&headers)
                        .map_err(|e| BusError::Consume(format!("stored headers: {e}")))?,
                    timestamp_ms: Some(row.try_get("timestamp_ms")?),
                });
                self.positions
                    .insert((topic.clone(), partition), offset + 1);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn next(&mut self) -> Result<Delivery, BusError> {
        loop {
            // Register for the wake-up before looking, so a publish in between is not missed.
            let inner = self.inner.clone();
            let notified = inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            self.refresh_assignment().await?;
            if let Some(d) = self.buffer.pop_front() {
                return Ok(d);
            }
            self.fill().await?;
            if let Some(d) = self.buffer.pop_front() {
                return Ok(d);
            }
            let poll = Duration::from_millis(self.inner.settings.poll_interval_ms.max(10));
            let _ = tokio::time::timeout(poll, notified).await;
        }
    }

    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        sqlx::query(
            "INSERT INTO bus_offsets (group_id, topic, partition_no, next_offset) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (group_id, topic, partition_no) DO UPDATE SET next_offset = excluded.next_offset",
        )
        .bind(&self.group)
        .bind(&delivery.topic)
        .bind(delivery.partition)
        .bind(delivery.offset + 1)
        .execute(self.inner.db.pool())
        .await?;
        Ok(())
    }

    async fn close(mut self: Box<Self>) {
        self.leave();
    }
}

impl Drop for EmbeddedSubscription {
    fn drop(&mut self) {
        self.leave();
    }
}
