//! The operation record: one per long-running change, whatever part of hds carries it out.
//!
//! The same record (id, kind, resource, status, progress, times, result, error) backs the
//! control plane's provisioning and, later, the data plane's long-running work (FHIR
//! `$export`/`$import`/`$reindex`, DICOM operations): a new kind is a new [`OperationKind`],
//! progress arrives as `percent_complete` on `hds.operations.status`, and what the work
//! produced (an export manifest, counts) is `result_json`.

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

/// What an operation does to its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    /// Create or update the resource (and its data-plane instance).
    Provision,
    /// Delete the resource; when it succeeds the resource row goes.
    Deprovision,
}

impl OperationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Provision => "Provision",
            OperationKind::Deprovision => "Deprovision",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Provision" => OperationKind::Provision,
            "Deprovision" => OperationKind::Deprovision,
            _ => return None,
        })
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
    let done = sqlx::query(
        "INSERT INTO operations (id, subscription_id, location, kind, resource_id, status, percent, started_ms, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(op.id)
    .bind(op.subscription_id)
    .bind(op.location)
    .bind(op.kind.as_str())
    .bind(op.resource_id)
    .bind(OperationStatus::Requested.as_str())
    .bind(hds_core::events::now_unix_ms())
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

/// Moves an operation on. A finished operation stays as it finished: a late or repeated
/// report cannot reopen it. Returns whether anything changed.
pub async fn advance(
    tx: &mut Transaction<'_, Any>,
    id: &str,
    status: OperationStatus,
    percent: i32,
    error: Option<(&str, &str)>,
) -> Result<bool, sqlx::Error> {
    let now = hds_core::events::now_unix_ms();
    let ended = status.is_terminal().then_some(now);
    let done = sqlx::query(
        "UPDATE operations SET status = $1, percent = $2, ended_ms = $3, error_code = $4, error_message = $5, updated_ms = $7 \
         WHERE id = $6 AND status NOT IN ('Succeeded', 'Failed', 'Canceled')",
    )
    .bind(status.as_str())
    .bind(percent)
    .bind(ended)
    .bind(error.map(|e| e.0.to_owned()))
    .bind(error.map(|e| e.1.to_owned()))
    .bind(id)
    .bind(now)
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
        .bind(id)
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
