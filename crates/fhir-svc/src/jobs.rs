//! The runner shared by fhir-svc's long-running jobs (`$reindex`, `$export`): each kind keeps
//! its jobs in a table of its own (`id`, `status`, `queued_ms`, `ended_ms`, `error`, and its
//! cursor) and moves a job on one step per transaction, the step's work and the cursor
//! together. So a job stopped anywhere resumes after its last committed step, and replicas
//! running the same job take turns on its row (each step takes it first).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use hds_core::db::Database;
use hds_core::CancellationToken;
use sqlx::{Any, Transaction};
use tokio::sync::Notify;

use crate::error::FhirError;

/// Where a job stands (as its table's `status` column says it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Queued,
    Running,
    Completed,
    Failed,
    /// Stopped by its client (`$export`'s DELETE); the runner takes no more steps.
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "Queued",
            Status::Running => "Running",
            Status::Completed => "Completed",
            Status::Failed => "Failed",
            Status::Cancelled => "Cancelled",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "Queued" => Status::Queued,
            "Running" => Status::Running,
            "Completed" => Status::Completed,
            "Cancelled" => Status::Cancelled,
            _ => Status::Failed,
        }
    }
}

/// Why a step did not go through.
pub enum Failure {
    /// The database or a store: the job stays open and is tried again.
    Transient(FhirError),
    /// The job itself cannot go on: it ends `Failed` with this reason.
    Job(String),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::Transient(e.into())
    }
}

/// One kind of job.
#[async_trait]
pub trait JobKind: Send + Sync + 'static {
    /// Its table.
    const TABLE: &'static str;
    /// For logs.
    const NAME: &'static str;

    /// Before a job's first step (or its first after a restart).
    async fn prepare(&self, _id: &str, _shutdown: &CancellationToken) -> Result<(), FhirError> {
        Ok(())
    }

    /// Moves the job on by one step in `tx`; false once it is over.
    async fn step(&self, tx: &mut Transaction<'static, Any>, id: &str) -> Result<bool, Failure>;

    /// Commits a step of job `id` (`last`: the job is over with it).
    async fn commit(
        &self,
        tx: Transaction<'static, Any>,
        _id: &str,
        _last: bool,
    ) -> Result<(), sqlx::Error> {
        tx.commit().await
    }
}

/// Runs the open jobs of one kind until `shutdown`, waking when `wake` is notified (a job was
/// queued) and now and then (for jobs another replica queued or left unfinished).
pub async fn run<K: JobKind>(
    kind: K,
    db: Database,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        match next_open::<K>(&db).await {
            Ok(Some(id)) => {
                if let Err(e) = run_job(&kind, &db, &id, &shutdown).await {
                    tracing::warn!(job = %id, kind = K::NAME, error = %e, "job stopped; it resumes later");
                    // Not at once: what stopped it (the database, a store) needs a moment.
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(kind = K::NAME, error = %e, "cannot read jobs"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

async fn next_open<K: JobKind>(db: &Database) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT id FROM {} WHERE status IN ('Queued', 'Running') ORDER BY queued_ms LIMIT 1",
        K::TABLE
    ))
    .fetch_optional(db.pool())
    .await
}

async fn run_job<K: JobKind>(
    kind: &K,
    db: &Database,
    id: &str,
    shutdown: &CancellationToken,
) -> Result<(), FhirError> {
    kind.prepare(id, shutdown).await?;
    while !shutdown.is_cancelled() {
        let mut tx = db.begin().await?;
        match kind.step(&mut tx, id).await {
            Ok(more) => {
                kind.commit(tx, id, !more).await?;
                if !more {
                    return Ok(());
                }
            }
            Err(Failure::Transient(e)) => return Err(e),
            Err(Failure::Job(reason)) => {
                drop(tx);
                sqlx::query(&format!(
                    "UPDATE {} SET status = $4, ended_ms = $2, error = $3 WHERE id = $1",
                    K::TABLE
                ))
                .bind(id)
                .bind(Utc::now().timestamp_millis())
                .bind(&reason)
                .bind(Status::Failed.as_str())
                .execute(db.pool())
                .await?;
                return Ok(());
            }
        }
    }
    Ok(())
}
