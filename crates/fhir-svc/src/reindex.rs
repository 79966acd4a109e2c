//! `$reindex`: rebuilds the search index of every current resource of an instance, as a
//! long-running job with progress (Azure's `POST [base]/$reindex` and
//! `GET [base]/_operations/reindex/{id}`).
//!
//! A job walks the instance's resources in key order (`fhir_current.rkey`), one batch per
//! transaction: the batch's old index rows go, its new ones come in, and the job's progress
//! and `after_rkey` move in the same transaction. So a job stopped anywhere (a crash, a
//! restart) resumes exactly after its last batch, and replicas running the same job take
//! turns on its row instead of repeating work.
//!
//! Custom search parameters (see [`crate::search::custom`]) are indexed by every batch; a
//! completed job enables those defined at least [`custom::FRESH_FOR`] before it started. A
//! job starts no sooner than that after the newest definition: by then every replica
//! indexes new writes with it, so none is left behind the job.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use chrono::Utc;
use hds_core::db::Database;
use hds_core::events::v1::OperationKind;
use hds_core::names::InstanceName;
use hds_core::CancellationToken;
use serde_json::Value;
use sqlx::{Any, Row, Transaction};
use tokio::sync::Notify;

use crate::error::FhirError;
use crate::jobs::{self, Failure, JobKind, Progress, Reports, Status};
use crate::search::custom::{self, CustomParams};
use crate::search::index::{self, IndexRows};

/// Resources per transaction.
const BATCH: i64 = 200;

/// A job as its status endpoint shows it.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub status: Status,
    pub queued_ms: i64,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub total: i64,
    pub done: i64,
    pub error: Option<String>,
}

impl Job {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            status: Status::parse(&row.try_get::<String, _>("status")?),
            queued_ms: row.try_get("queued_ms")?,
            started_ms: row.try_get("started_ms")?,
            ended_ms: row.try_get("ended_ms")?,
            total: row.try_get("total")?,
            done: row.try_get("done")?,
            error: row.try_get("error")?,
        })
    }
}

/// Queues jobs and runs them in the background.
#[derive(Clone)]
pub struct Reindexer {
    db: Database,
    wake: Arc<Notify>,
    custom: Arc<CustomParams>,
    reports: Reports,
}

impl Reindexer {
    /// `custom`: the store's copy of the instances' custom parameters; `reports`: where the
    /// jobs' operation reports go.
    pub fn new(db: Database, custom: Arc<CustomParams>, reports: Reports) -> Self {
        Self {
            db,
            wake: Arc::new(Notify::new()),
            custom,
            reports,
        }
    }

    /// Queues a job for `instance`; the worker starts on it at once.
    pub async fn queue(&self, instance: &InstanceName) -> Result<Job, FhirError> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = Utc::now().timestamp_millis();
        let inst = instance.to_string();
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM fhir_current WHERE instance = $1 AND deleted = 0",
        )
        .bind(&inst)
        .fetch_one(self.db.pool())
        .await?;
        // The job and the report that makes it an operation are one change.
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO fhir_reindex_jobs (id, instance, status, queued_ms, total, done) \
             VALUES ($1, $2, $3, $4, $5, 0)",
        )
        .bind(&id)
        .bind(&inst)
        .bind(Status::Queued.as_str())
        .bind(now)
        .bind(total)
        .execute(&mut *tx)
        .await?;
        if let Some(progress) = self.progress(&mut tx, &id).await? {
            self.reports
                .enqueue(&mut tx, Self::OPERATION, Self::ERROR_CODE, &id, &progress)
                .await?;
        }
        tx.commit().await?;
        self.reports.sent();
        self.wake.notify_one();
        self.get(instance, &id)
            .await?
            .ok_or_else(|| FhirError::Internal("a queued job vanished".into()))
    }

    /// The job `id` of `instance`, if there is one.
    pub async fn get(&self, instance: &InstanceName, id: &str) -> Result<Option<Job>, FhirError> {
        let row = sqlx::query(
            "SELECT id, status, queued_ms, started_ms, ended_ms, total, done, error \
             FROM fhir_reindex_jobs WHERE instance = $1 AND id = $2",
        )
        .bind(instance.to_string())
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.as_ref().map(Job::from_row).transpose()?)
    }

    /// Runs open jobs until `shutdown` (see [`crate::jobs`]).
    pub async fn run(self, shutdown: CancellationToken) {
        let (db, wake) = (self.db.clone(), self.wake.clone());
        jobs::run(self, db, wake, shutdown).await
    }
}

#[async_trait]
impl JobKind for Reindexer {
    const TABLE: &'static str = "fhir_reindex_jobs";
    const NAME: &'static str = "reindex";
    const OPERATION: OperationKind = OperationKind::FhirReindex;
    const ERROR_CODE: &'static str = "ReindexFailed";

    fn reports(&self) -> &Reports {
        &self.reports
    }

    async fn progress(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: &str,
    ) -> Result<Option<Progress>, sqlx::Error> {
        let Some(row) = sqlx::query(
            "SELECT instance, status, total, done, error FROM fhir_reindex_jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        else {
            return Ok(None);
        };
        let status = Status::parse(&row.try_get::<String, _>("status")?);
        let (total, done): (i64, i64) = (row.try_get("total")?, row.try_get("done")?);
        let percent = match status {
            Status::Queued => 0,
            Status::Completed => 100,
            _ => jobs::percent(done, total),
        };
        Ok(Some(Progress {
            instance: row.try_get("instance")?,
            status,
            percent,
            error: row.try_get("error")?,
            // The names of the job's own status (`GET [base]/_operations/reindex/{id}`).
            result: serde_json::json!({
                "totalResourcesToReindex": total,
                "resourcesSuccessfullyReindexed": done,
            }),
        }))
    }

    async fn prepare(&self, id: &str, shutdown: &CancellationToken) -> Result<(), FhirError> {
        self.settle_definitions(id, shutdown).await
    }

    async fn step(&self, tx: &mut Transaction<'static, Any>, id: &str) -> Result<bool, Failure> {
        batch(tx, id, &self.custom).await
    }

    async fn commit(
        &self,
        tx: Transaction<'static, Any>,
        id: &str,
        last: bool,
    ) -> Result<(), sqlx::Error> {
        if !last {
            return tx.commit().await;
        }
        // The last batch enables parameters: this replica reads them again once it committed.
        let instance = self.instance_of(id).await?.unwrap_or_default();
        let _change = self.custom.changing(&instance);
        tx.commit().await
    }
}

impl Reindexer {
    async fn instance_of(&self, id: &str) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT instance FROM fhir_reindex_jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await
    }

    /// Before a job's first batch: waits until the instance's newest custom definition is
    /// [`custom::FRESH_FOR`] old, so every replica indexes new writes with it.
    async fn settle_definitions(
        &self,
        id: &str,
        shutdown: &CancellationToken,
    ) -> Result<(), FhirError> {
        let job = sqlx::query("SELECT instance, started_ms FROM fhir_reindex_jobs WHERE id = $1")
            .bind(id)
            .fetch_one(self.db.pool())
            .await?;
        if job.try_get::<Option<i64>, _>("started_ms")?.is_some() {
            return Ok(());
        }
        let instance: String = job.try_get("instance")?;
        let params = self.custom.load(self.db.pool(), &instance).await?;
        let Some(newest) = params.newest_supported_ms() else {
            return Ok(());
        };
        let settled = newest + custom::FRESH_FOR.as_millis() as i64;
        let wait = settled - Utc::now().timestamp_millis();
        if wait > 0 {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
            }
        }
        Ok(())
    }
}

/// Reindexes the job's next batch in `tx`; false once the job is complete.
async fn batch(
    tx: &mut Transaction<'static, Any>,
    id: &str,
    custom: &CustomParams,
) -> Result<bool, Failure> {
    // Taking the job's row first orders replicas working on it (a row lock on PostgreSQL,
    // the write lock on SQLite); its cursor is read under that lock.
    let now = Utc::now().timestamp_millis();
    sqlx::query(
        "UPDATE fhir_reindex_jobs SET status = 'Running', started_ms = COALESCE(started_ms, $2) \
         WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let job =
        sqlx::query("SELECT instance, after_rkey, started_ms FROM fhir_reindex_jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&mut **tx)
            .await?;
    let instance: String = job.try_get("instance")?;
    let after: Option<i64> = job.try_get("after_rkey")?;
    let started: i64 = job.try_get::<Option<i64>, _>("started_ms")?.unwrap_or(now);
    let rows = sqlx::query(
        "SELECT c.resource_type, c.rkey, v.body FROM fhir_current c \
         JOIN fhir_versions v ON v.instance = c.instance AND v.resource_type = c.resource_type \
         AND v.id = c.id AND v.version = c.version \
         WHERE c.instance = $1 AND c.deleted = 0 AND c.rkey > $2 ORDER BY c.rkey LIMIT $3",
    )
    .bind(&instance)
    .bind(after.unwrap_or(i64::MIN))
    .bind(BATCH)
    .fetch_all(&mut **tx)
    .await?;
    let Some(last) = rows.last() else {
        sqlx::query(
            "UPDATE fhir_reindex_jobs SET status = 'Completed', ended_ms = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        custom::enable_covered(tx, &instance, started).await?;
        return Ok(false);
    };
    let params = match custom.cached(&instance) {
        Some(p) => p,
        None => custom.load(&mut **tx, &instance).await?,
    };
    let last: i64 = last.try_get("rkey")?;
    let mut keys = Vec::with_capacity(rows.len());
    let mut fresh = IndexRows::default();
    for row in &rows {
        let rt: String = row.try_get("resource_type")?;
        let rkey: i64 = row.try_get("rkey")?;
        let body: String = row.try_get("body")?;
        let resource: Value = serde_json::from_str(&body)
            .map_err(|e| Failure::Job(format!("{rt} with key {rkey} is not JSON: {e}")))?;
        fresh.add(&instance, &rt, rkey, &resource, params.indexed(&rt));
        keys.push(rkey);
    }
    index::remove_all(tx, &keys).await?;
    fresh.insert(tx).await?;
    sqlx::query("UPDATE fhir_reindex_jobs SET done = done + $2, after_rkey = $3 WHERE id = $1")
        .bind(id)
        .bind(rows.len() as i64)
        .bind(last)
        .execute(&mut **tx)
        .await?;
    Ok(true)
}
