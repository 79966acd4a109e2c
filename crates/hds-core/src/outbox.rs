//! The transactional outbox: an event is written in the same database transaction as the
//! change it reports, and a relay publishes it afterwards.
//!
//! So a broker outage delays events but never loses one (the row stays until the broker
//! acknowledged it) and never invents one (a rolled-back change takes its event with it).
//! The relay publishes in commit order and deletes a row only after the publish was
//! acknowledged; a crash between the two publishes that event again, which consumers absorb
//! by deduplicating on the event id (the `hds-event-id` header and the payload's `event_id`).

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Any, Row, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::{decode_headers, encode_headers, BusError, OutgoingMessage, SharedBus};
use crate::db::{Cell, Database, DbError, Migrations, Rows, SqlType};
use crate::events::{Event, EVENT_ID_HEADER};

pub fn migrations() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./migrations/outbox/postgres"),
        sqlite: sqlx::migrate!("./migrations/outbox/sqlite"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox storage: {0}")]
    Db(#[from] DbError),
    #[error("publishing from the outbox: {0}")]
    Bus(#[from] BusError),
    #[error("an outbox message needs an '{EVENT_ID_HEADER}' header")]
    MissingEventId,
}

impl From<sqlx::Error> for OutboxError {
    fn from(e: sqlx::Error) -> Self {
        OutboxError::Db(DbError::Query(e))
    }
}

/// Adds `event` to the outbox inside the caller's transaction.
pub async fn enqueue<E: Event>(
    tx: &mut Transaction<'_, Any>,
    topic: &str,
    key: impl Into<Vec<u8>>,
    event: &E,
) -> Result<(), OutboxError> {
    let mut batch = Batch::default();
    batch.push(topic, crate::events::to_message(event, key))?;
    batch.insert(tx).await
}

/// Adds a prepared message (which must carry an event id header) to the outbox.
pub async fn enqueue_message(
    tx: &mut Transaction<'_, Any>,
    topic: &str,
    message: OutgoingMessage,
) -> Result<(), OutboxError> {
    let mut batch = Batch::default();
    batch.push(topic, message)?;
    batch.insert(tx).await
}

/// Events enqueued together: a write that reports many changes (a transaction bundle) adds
/// its events in a few multi-row statements.
pub struct Batch {
    rows: Rows,
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            rows: Rows::new(
                "outbox",
                &[
                    ("event_id", SqlType::Text),
                    ("topic", SqlType::Text),
                    ("msg_key", SqlType::Bytea),
                    ("payload", SqlType::Bytea),
                    ("headers", SqlType::Bytea),
                    ("created_ms", SqlType::BigInt),
                ],
            ),
        }
    }
}

impl Batch {
    pub fn push_event<E: Event>(
        &mut self,
        topic: &str,
        key: impl Into<Vec<u8>>,
        event: &E,
    ) -> Result<(), OutboxError> {
        self.push(topic, crate::events::to_message(event, key))
    }

    /// Adds a prepared message (which must carry an event id header).
    pub fn push(&mut self, topic: &str, mut message: OutgoingMessage) -> Result<(), OutboxError> {
        let event_id = message
            .headers
            .iter()
            .find(|(k, _)| k == EVENT_ID_HEADER)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .ok_or(OutboxError::MissingEventId)?;
        // The trace context of the change travels with its event.
        crate::telemetry::inject_into_headers(&mut message.headers);
        self.rows.push([
            Cell::Text(event_id),
            Cell::from(topic),
            message.key.map_or(Cell::NullBytes, Cell::Bytes),
            Cell::Bytes(message.payload),
            Cell::Bytes(encode_headers(&message.headers)),
            Cell::Int(crate::events::now_unix_ms()),
        ]);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Drops every queued event (the change they report failed).
    pub fn clear(&mut self) {
        self.rows.clear();
    }

    /// The events as rows of the outbox table, for a write that inserts them together with
    /// its own rows ([`crate::db::insert_all`]).
    pub fn rows(&mut self) -> &mut Rows {
        &mut self.rows
    }

    /// Writes the events in `tx` and empties the batch.
    pub async fn insert(&mut self, tx: &mut Transaction<'_, Any>) -> Result<(), OutboxError> {
        Ok(self.rows.insert(tx).await?)
    }
}

/// Events waiting in the outbox (for readiness detail and metrics).
pub async fn pending(db: &Database) -> Result<i64, OutboxError> {
    Ok(sqlx::query("SELECT COUNT(*) AS n FROM outbox")
        .fetch_one(db.pool())
        .await?
        .try_get("n")?)
}

/// Publishes outbox rows to the bus, in commit order, until shut down.
#[derive(Clone)]
pub struct Relay {
    db: Database,
    bus: SharedBus,
    wake: Arc<Notify>,
    batch: i64,
    idle_poll: Duration,
}

/// Wakes the relay after a commit so events leave at once instead of at the next poll.
#[derive(Clone)]
pub struct RelayWaker(Arc<Notify>);

impl RelayWaker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

impl Relay {
    pub fn new(db: Database, bus: SharedBus) -> Self {
        Self {
            db,
            bus,
            wake: Arc::new(Notify::new()),
            batch: 500,
            idle_poll: Duration::from_millis(500),
        }
    }

    pub fn waker(&self) -> RelayWaker {
        RelayWaker(self.wake.clone())
    }

    /// Publishes what is in the outbox now (a batch at a time); returns how many were
    /// published. After a failure the whole batch stays and goes again (consumers drop the
    /// duplicates by event id), so a later event never overtakes an earlier one.
    pub async fn relay_once(&self) -> Result<usize, OutboxError> {
        let rows = sqlx::query(
            "SELECT seq, topic, msg_key, payload, headers FROM outbox ORDER BY seq LIMIT $1",
        )
        .bind(self.batch)
        .fetch_all(self.db.pool())
        .await?;
        let mut seqs = Vec::with_capacity(rows.len());
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows {
            seqs.push(row.try_get::<i64, _>("seq")?);
            let topic: String = row.try_get("topic")?;
            let headers: Vec<u8> = row.try_get("headers")?;
            messages.push((
                topic,
                OutgoingMessage {
                    key: row.try_get("msg_key")?,
                    payload: row.try_get("payload")?,
                    headers: decode_headers(&headers).unwrap_or_default(),
                },
            ));
        }
        if messages.is_empty() {
            return Ok(0);
        }
        self.bus.publish_all(messages).await?;
        // Exactly the rows sent: a row with a lower seq may commit later than these.
        let list: Vec<String> = (1..=seqs.len()).map(|i| format!("${i}")).collect();
        let sql = format!("DELETE FROM outbox WHERE seq IN ({})", list.join(", "));
        let mut q = sqlx::query(&sql);
        for seq in &seqs {
            q = q.bind(*seq);
        }
        q.execute(self.db.pool()).await?;
        let sent = seqs.len();
        Ok(sent)
    }

    /// Runs until `shutdown`; failures are logged and retried with backoff (up to 10 s).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        loop {
            // Register before looking, so a wake between the look and the wait is kept.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            // A publish can wait for the broker up to its timeout: shutdown does not wait for
            // it (the rows stay and go out at the next start).
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.relay_once() => r,
            };
            let wait = match result {
                Ok(n) if n as i64 == self.batch => Duration::ZERO,
                Ok(_) => {
                    backoff = Duration::from_millis(200);
                    self.idle_poll
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "outbox relay failed; will retry");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    wait
                }
            };
            if wait.is_zero() {
                if shutdown.is_cancelled() {
                    return;
                }
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = &mut woken => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }
}
