//! The runner shared by fhir-svc's long-running jobs (`$reindex`, `$export`): each kind keeps
//! its jobs in a table of its own (`id`, `status`, `queued_ms`, `ended_ms`, `error`, and its
//! cursor) and moves a job on one step per transaction, the step's work and the cursor
//! together. So a job stopped anywhere resumes after its last committed step, and replicas
//! running the same job take turns on its row (each step takes it first).
//!
//! Every job is also an operation of the control plane (issue 6's one operation record):
//! its lifecycle goes on `hds.operations.status` through the outbox, in the transaction that
//! moves it (queued: `Requested`; a step that changes its status or whole percent:
//! `Running` with progress; over: `Succeeded`, `Failed` with the reason, `Canceled`), under
//! the job id and the ARM id of the FHIR service the instance is. So operations-svc serves
//! the job at `.../operationresults/{job id}` and fhir-svc's own status URLs stay as they are.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use hds_core::db::Database;
use hds_core::events::v1::{OperationKind, OperationState, OperationStatus};
use hds_core::events::{new_event_id, now_unix_ms, topics};
use hds_core::outbox::{self, RelayWaker};
use hds_core::CancellationToken;
use serde_json::Value;
use sqlx::{Any, Row, Transaction};
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

    /// The operation state it is reported as (Azure's `OperationResultStatus`).
    fn state(self) -> OperationState {
        match self {
            Status::Queued => OperationState::Requested,
            Status::Running => OperationState::Running,
            Status::Completed => OperationState::Succeeded,
            Status::Failed => OperationState::Failed,
            Status::Cancelled => OperationState::Canceled,
        }
    }
}

/// Where a job stands, as it is reported to the control plane.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub instance: String,
    pub status: Status,
    /// 0..100.
    pub percent: i32,
    pub error: Option<String>,
    /// What it produced so far (counts, files), the operation result's `properties`.
    pub result: Value,
}

/// Sends jobs' reports: the relay is woken after a commit that enqueued one, once the
/// service's outbox relay runs (it starts after the job runners are made).
#[derive(Clone, Default)]
pub struct Reports {
    relay: Arc<OnceLock<RelayWaker>>,
}

impl Reports {
    /// Wakes `relay` after each report from now on.
    pub fn attach(&self, relay: RelayWaker) {
        let _ = self.relay.set(relay);
    }

    /// After a commit: the report leaves now rather than at the relay's next poll.
    pub fn sent(&self) {
        if let Some(r) = self.relay.get() {
            r.wake();
        }
    }

    /// Enqueues, in `tx`, the report of job `id` of kind `kind` standing at `progress`.
    pub async fn enqueue(
        &self,
        tx: &mut Transaction<'_, Any>,
        kind: OperationKind,
        error_code: &str,
        id: &str,
        progress: &Progress,
    ) -> Result<(), FhirError> {
        // The ARM id of the FHIR service the instance is: operations-svc finds the
        // subscription and location by it. An instance that went meanwhile reports with none
        // (and operations-svc, which cannot place it, drops a first report of it).
        let resource_id: String = sqlx::query("SELECT resource_id FROM instances WHERE name = $1")
            .bind(&progress.instance)
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| r.try_get("resource_id"))
            .transpose()?
            .unwrap_or_default();
        let failed = progress.status == Status::Failed;
        let status = OperationStatus {
            event_id: new_event_id(),
            operation_id: id.to_owned(),
            resource_id,
            reporter: crate::NAME.to_owned(),
            state: progress.status.state() as i32,
            percent_complete: progress.percent.clamp(0, 100),
            error_code: if failed {
                error_code.to_owned()
            } else {
                String::new()
            },
            error_message: if failed {
                progress.error.clone().unwrap_or_default()
            } else {
                String::new()
            },
            occurred_at_unix_ms: now_unix_ms(),
            kind: kind as i32,
            result_json: progress.result.to_string(),
        };
        // Keyed by the job: its reports stay in order on one partition.
        outbox::enqueue(tx, topics::OPERATIONS_STATUS, id.to_owned(), &status).await?;
        Ok(())
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
    /// The operation kind its jobs are reported as.
    const OPERATION: OperationKind;
    /// The error code of a failed job's operation.
    const ERROR_CODE: &'static str;

    /// Where reports go.
    fn reports(&self) -> &Reports;

    /// Where job `id` stands, read in `tx`; `None` if there is no such job.
    async fn progress(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: &str,
    ) -> Result<Option<Progress>, sqlx::Error>;

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

/// Enqueues the report of job `id` in `tx` unless it would say what `last` said (a step that
/// moves neither the status nor the whole percent); returns what stands reported.
async fn report<K: JobKind>(
    kind: &K,
    tx: &mut Transaction<'static, Any>,
    id: &str,
    last: Option<(Status, i32)>,
) -> Result<Option<(Status, i32)>, FhirError> {
    let Some(progress) = kind.progress(tx, id).await? else {
        return Ok(last);
    };
    let now = Some((progress.status, progress.percent));
    if now != last {
        kind.reports()
            .enqueue(tx, K::OPERATION, K::ERROR_CODE, id, &progress)
            .await?;
    }
    Ok(now)
}

async fn run_job<K: JobKind>(
    kind: &K,
    db: &Database,
    id: &str,
    shutdown: &CancellationToken,
) -> Result<(), FhirError> {
    kind.prepare(id, shutdown).await?;
    // After a restart the first step reports again: operations-svc takes a repeated report.
    let mut reported = None;
    while !shutdown.is_cancelled() {
        let mut tx = db.begin().await?;
        match kind.step(&mut tx, id).await {
            Ok(more) => {
                let now = report(kind, &mut tx, id, reported).await?;
                kind.commit(tx, id, !more).await?;
                if now != reported {
                    kind.reports().sent();
                }
                reported = now;
                if !more {
                    return Ok(());
                }
            }
            Err(Failure::Transient(e)) => return Err(e),
            Err(Failure::Job(reason)) => {
                drop(tx);
                // The failure and its report are one change, as every other step is.
                let mut tx = db.begin().await?;
                sqlx::query(&format!(
                    "UPDATE {} SET status = $4, ended_ms = $2, error = $3 WHERE id = $1",
                    K::TABLE
                ))
                .bind(id)
                .bind(Utc::now().timestamp_millis())
                .bind(&reason)
                .bind(Status::Failed.as_str())
                .execute(&mut *tx)
                .await?;
                report(kind, &mut tx, id, reported).await?;
                tx.commit().await?;
                kind.reports().sent();
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A whole percent of `part` in `whole` (100 for nothing to do).
pub fn percent(part: i64, whole: i64) -> i32 {
    if whole <= 0 {
        return 100;
    }
    (part.clamp(0, whole) * 100 / whole) as i32
}
