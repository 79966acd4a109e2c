//! The operation record: one per long-running change, whatever part of hds carries it out.
//!
//! The same record (id, kind, resource, status, progress, times, result, error) backs the
//! control plane's provisioning and the data plane's long-running work (FHIR `$export` and
//! `$reindex` today; `$import` and DICOM operations are new [`OperationKind`]s): the
//! reporter's job id is the operation id, progress arrives as `percent_complete` on
//! `hds.operations.status`, and what the work produced (counts, files) is `result_json`.

use chrono::{DateTime, TimeZone, Utc};
use hds_core::db::Database;
use hds_core::events::v1::OperationState;
use serde::Serialize;
use sqlx::{Any, Row, Transaction};

/// Azure's `OperationResultStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OperationStatus {
    Requested,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl OperationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationStatus::Requested => "Requested",
            OperationStatus::Running => "Running",
            OperationStatus::Succeeded => "Succeeded",
            OperationStatus::Failed => "Failed",
            OperationStatus::Canceled => "Canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Requested" => OperationStatus::Requested,
            "Running" => OperationStatus::Running,
            "Succeeded" => OperationStatus::Succeeded,
            "Failed" => OperationStatus::Failed,
            "Canceled" => OperationStatus::Canceled,
            _ => return None,
        })
    }

    pub fn from_proto(state: OperationState) -> Option<Self> {
        Some(match state {
            OperationState::Requested => OperationStatus::Requested,
            OperationState::Running => OperationStatus::Running,
            OperationState::Succeeded => OperationStatus::Succeeded,
            OperationState::Failed => OperationStatus::Failed,
            OperationState::Canceled => OperationStatus::Canceled,
            OperationState::Unspecified => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OperationStatus::Succeeded | OperationStatus::Failed | OperationStatus::Canceled
        )
    }
}

/// What an operation does. The first two are the control plane's own (it starts them and
/// sends their commands); the others are data-plane work a service starts itself and only
/// reports on `hds.operations.status`, under its own job id (see [`OperationKind::reported`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    /// Create or update the resource (and its data-plane instance).
    Provision,
    /// Delete the resource; when it succeeds the resource row goes.
    Deprovision,
    /// A FHIR service's `$export` job.
    FhirExport,
    /// A FHIR service's `$reindex` job.
    FhirReindex,
}

impl OperationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Provision => "Provision",
            OperationKind::Deprovision => "Deprovision",
            OperationKind::FhirExport => "FhirExport",
            OperationKind::FhirReindex => "FhirReindex",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Provision" => OperationKind::Provision,
            "Deprovision" => OperationKind::Deprovision,
            "FhirExport" => OperationKind::FhirExport,
            "FhirReindex" => OperationKind::FhirReindex,
            _ => return None,
        })
    }

    /// The kind a status report names (`OperationStatus.kind`): `Ok(None)` for an operation
    /// operations-svc started itself (the report leaves the kind out), `Ok(Some)` for
    /// data-plane work, `Err` for a kind this version does not know (or one that is only
    /// ever a command, which no reporter should name).
    pub fn reported(kind: i32) -> Result<Option<Self>, i32> {
        use hds_core::events::v1::OperationKind as Proto;
        match Proto::try_from(kind) {
            Ok(Proto::Unspecified) => Ok(None),
            Ok(Proto::FhirExport) => Ok(Some(OperationKind::FhirExport)),
            Ok(Proto::FhirReindex) => Ok(Some(OperationKind::FhirReindex)),
            Ok(Proto::ProvisionInstance | Proto::DeprovisionInstance) | Err(_) => Err(kind),
        }
    }

    /// Work a data-plane service started (and reports): it changes no resource.
    pub fn is_data_plane(self) -> bool {
        matches!(self, OperationKind::FhirExport | OperationKind::FhirReindex)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub id: String,
    pub subscription_id: String,
    pub location: String,
    /// An [`OperationKind`] as stored; kept as text so that a record written by a newer
    /// version still reads.
    pub kind: String,
    pub resource_id: String,
    pub status: OperationStatus,
    pub percent: i32,
    pub started: DateTime<Utc>,
    pub ended: Option<DateTime<Utc>>,
    pub result: Option<serde_json::Value>,
    pub error: Option<(String, String)>,
}

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

pub struct NewOperation<'a> {
    pub id: &'a str,
    pub subscription_id: &'a str,
    pub location: &'a str,
    pub kind: OperationKind,
    pub resource_id: &'a str,
}

/// Records a new operation as `Requested`; an existing id is left as it is.
pub async fn insert(
    tx: &mut Transaction<'_, Any>,
    op: NewOperation<'_>,
) -> Result<bool, sqlx::Error> {
    insert_at(tx, op, hds_core::events::now_unix_ms()).await
}

/// Records a new operation as `Requested`, started at `started_ms`; an existing id is left
/// as it is. Ids are kept lowercase: Operation Results - Get looks them up so.
pub async fn insert_at(
    tx: &mut Transaction<'_, Any>,
    op: NewOperation<'_>,
    started_ms: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO operations (id, subscription_id, location, kind, resource_id, status, percent, started_ms, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(op.id.to_ascii_lowercase())
    .bind(op.subscription_id)
    .bind(op.location)
    .bind(op.kind.as_str())
    .bind(op.resource_id)
    .bind(OperationStatus::Requested.as_str())
    .bind(started_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn get(db: &Database, id: &str) -> Result<Option<Operation>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, subscription_id, location, kind, resource_id, status, percent, started_ms, \
         ended_ms, result_json, error_code, error_message FROM operations WHERE id = $1",
    )
    .bind(id.to_ascii_lowercase())
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let status: String = row.try_get("status")?;
    let code: Option<String> = row.try_get("error_code")?;
    let message: Option<String> = row.try_get("error_message")?;
    let result: Option<String> = row.try_get("result_json")?;
    Ok(Some(Operation {
        id: row.try_get("id")?,
        subscription_id: row.try_get("subscription_id")?,
        location: row.try_get("location")?,
        kind: row.try_get("kind")?,
        resource_id: row.try_get("resource_id")?,
        status: OperationStatus::parse(&status).unwrap_or(OperationStatus::Failed),
        percent: row.try_get("percent")?,
        started: time(row.try_get("started_ms")?),
        ended: row.try_get::<Option<i64>, _>("ended_ms")?.map(time),
        result: result.and_then(|r| serde_json::from_str(&r).ok()),
        error: code.map(|c| (c, message.unwrap_or_default())),
    }))
}

/// A status report, as [`advance`] applies it.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    pub status: OperationStatus,
    /// 0..100.
    pub percent: i32,
    /// Code and message, for a failure.
    pub error: Option<(&'a str, &'a str)>,
    /// When it happened (ms): the end time of a terminal report.
    pub at_ms: i64,
    /// What the work produced so far (JSON text); `None` keeps what is recorded.
    pub result: Option<&'a str>,
    /// Only an operation of this kind moves (a data-plane report cannot move a control-plane
    /// operation that happens to share its id); `None`: any kind.
    pub kind: Option<OperationKind>,
}

impl Report<'static> {
    /// An operation that ends as it is recorded (one without a data-plane side).
    pub fn succeeded_now() -> Self {
        Report {
            status: OperationStatus::Succeeded,
            percent: 100,
            error: None,
            at_ms: hds_core::events::now_unix_ms(),
            result: None,
            kind: None,
        }
    }
}

/// Moves an operation on, tolerating reports that come late, twice or out of order (the
/// outbox may publish an event again after a crash, and a replayed batch puts older reports
/// after newer ones): a finished operation stays as it finished, a `Running` one does not go
/// back to `Requested`, and progress never goes down. Returns whether the row was updated.
pub async fn advance(
    tx: &mut Transaction<'_, Any>,
    id: &str,
    report: Report<'_>,
) -> Result<bool, sqlx::Error> {
    let ended = report.status.is_terminal().then_some(report.at_ms);
    let done = sqlx::query(
        "UPDATE operations SET \
         status = CASE WHEN status = 'Running' AND $1 = 'Requested' THEN status ELSE $1 END, \
         percent = CASE WHEN percent > $2 THEN percent ELSE $2 END, \
         ended_ms = $3, error_code = $4, error_message = $5, updated_ms = $7, \
         result_json = COALESCE($8, result_json) \
         WHERE id = $6 AND status NOT IN ('Succeeded', 'Failed', 'Canceled') \
         AND ($9 = '' OR kind = $9)",
    )
    .bind(report.status.as_str())
    .bind(report.percent.clamp(0, 100))
    .bind(ended)
    .bind(report.error.map(|e| e.0.to_owned()))
    .bind(report.error.map(|e| e.1.to_owned()))
    .bind(id.to_ascii_lowercase())
    .bind(hds_core::events::now_unix_ms())
    .bind(report.result.map(str::to_owned))
    .bind(report.kind.map_or("", OperationKind::as_str))
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The kind and resource of an operation, for the status consumer.
pub async fn subject(
    tx: &mut Transaction<'_, Any>,
    id: &str,
) -> Result<Option<(Option<OperationKind>, String)>, sqlx::Error> {
    let Some(row) = sqlx::query("SELECT kind, resource_id FROM operations WHERE id = $1")
        .bind(id.to_ascii_lowercase())
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(None);
    };
    let kind: String = row.try_get("kind")?;
    Ok(Some((
        OperationKind::parse(&kind),
        row.try_get("resource_id")?,
    )))
}
