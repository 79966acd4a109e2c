//! `$export` (FHIR Bulk Data Access 1.0; Azure's FHIR service "export your FHIR data"): a
//! long-running job that writes the current resources of an instance as NDJSON files to the
//! instance's export destination.
//!
//! Where files go: Azure writes to the storage account named by the service's
//! `exportConfiguration.storageAccountName`, into the container `_container` names (or a new
//! one). hds has one blob store for exports (`[exports]`, a folder or an S3 bucket); there
//! the storage account and the container are the first two segments of every key:
//! `{storageAccountName}/{container}/{job}/{Type}-{n}.ndjson`. Without the setting there is
//! nowhere to export to, and the kick-off is refused, as in Azure. The files are also served
//! by fhir-svc itself, under the job's status URL, to whoever may export (the manifest's
//! `requiresAccessToken`).
//!
//! A job exports its types one after the other, each in key order (`fhir_current.rkey`), a
//! part of at most [`PART`] resources per transaction: the part is written to the store while
//! the job's row is locked, and the row's cursor (`type_index`, `after_rkey`, `part`) and the
//! list of files move in the same transaction. A job stopped anywhere resumes after its last
//! recorded part (a part written again replaces the same key), and replicas take turns on its
//! row. The resources exported are the current versions last updated at or before the job's
//! `transactionTime` (and at or after `_since`); one changed while the job runs is left out.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use hds_core::blob::{stream_from, BlobKey, ByteStream, SharedBlobStore};
use hds_core::db::Database;
use hds_core::events::v1::OperationKind;
use hds_core::names::InstanceName;
use hds_core::CancellationToken;
use serde::{Deserialize, Serialize};
use sqlx::{Any, Row, Transaction};
use tokio::sync::Notify;

use crate::error::FhirError;
use crate::jobs::{self, Failure, JobKind, Progress, Reports, Status};
use crate::search::{compartments, keys};

/// Resources per file part (and per transaction).
pub const PART: i64 = 5000;

/// Which resources a job exports (Bulk Data's three kick-off endpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `[base]/$export`: every resource.
    System,
    /// `[base]/Patient/$export`: every patient and the resources in their compartments.
    Patient,
    /// `[base]/Group/{id}/$export`: the group's patients and their compartments.
    Group,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::System => "system",
            Level::Patient => "patient",
            Level::Group => "group",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "patient" => Level::Patient,
            "group" => Level::Group,
            _ => Level::System,
        }
    }
}

/// One file a job wrote: its resource type, its name under the job and how many it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub file: String,
    pub count: i64,
}

/// What a kick-off asks for, checked.
#[derive(Debug, Clone)]
pub struct Request {
    pub level: Level,
    /// `_type`; empty: every type the level covers.
    pub types: Vec<String>,
    /// `_since`, in ms.
    pub since_ms: Option<i64>,
    /// `exportConfiguration.storageAccountName` of the instance.
    pub storage_account: String,
    /// `_container`; `None`: one named after the job.
    pub container: Option<String>,
    /// The kick-off URL, for the manifest's `request`.
    pub url: String,
    /// Group level: the members (Patient ids).
    pub patients: Vec<String>,
}

/// A job as its status endpoint shows it.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub status: Status,
    pub request: String,
    pub transaction_ms: i64,
    pub types: Vec<String>,
    pub type_index: i64,
    pub output: Vec<Output>,
    pub error: Option<String>,
    destination: String,
}

impl Job {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        let output: String = row.try_get("output")?;
        let types: String = row.try_get("types")?;
        Ok(Self {
            id: row.try_get("id")?,
            status: Status::parse(&row.try_get::<String, _>("status")?),
            request: row.try_get("request")?,
            transaction_ms: row.try_get("transaction_ms")?,
            types: types.split_whitespace().map(str::to_owned).collect(),
            type_index: row.try_get("type_index")?,
            output: serde_json::from_str(&output).unwrap_or_default(),
            error: row.try_get("error")?,
            destination: row.try_get("destination")?,
        })
    }

    fn key(&self, file: &str) -> Result<BlobKey, FhirError> {
        BlobKey::new(format!("{}/{file}", self.destination))
            .map_err(|e| FhirError::Internal(e.to_string()))
    }
}

const JOB_COLUMNS: &str =
    "id, status, request, transaction_ms, types, type_index, output, error, destination";

/// A name Azure accepts for a blob container (3 to 63 lowercase letters, digits and single
/// hyphens, starting and ending with a letter or digit).
pub fn valid_container(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

/// Queues jobs, runs them in the background and serves what they wrote.
#[derive(Clone)]
pub struct Exporter {
    db: Database,
    /// `None`: the service has no export store (`[exports]` unset).
    blobs: Option<SharedBlobStore>,
    wake: Arc<Notify>,
    /// Where the jobs' operation reports go.
    reports: Reports,
}

impl Exporter {
    pub fn new(db: Database, blobs: Option<SharedBlobStore>, reports: Reports) -> Self {
        Self {
            db,
            blobs,
            wake: Arc::new(Notify::new()),
            reports,
        }
    }

    fn blobs(&self) -> Result<&SharedBlobStore, FhirError> {
        self.blobs.as_ref().ok_or_else(|| {
            FhirError::invalid("this FHIR service has no export store ([exports] is not set)")
        })
    }

    /// Queues a job for `instance`; the worker starts on it at once.
    pub async fn queue(&self, instance: &InstanceName, req: Request) -> Result<Job, FhirError> {
        self.blobs()?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let now = Utc::now().timestamp_millis();
        let inst = instance.to_string();
        let types = if req.types.is_empty() {
            // The types this instance holds now: the others would make empty files.
            sqlx::query_scalar::<_, String>(
                "SELECT DISTINCT resource_type FROM fhir_current \
                 WHERE instance = $1 AND deleted = 0 ORDER BY resource_type",
            )
            .bind(&inst)
            .fetch_all(self.db.pool())
            .await?
        } else {
            req.types.clone()
        };
        let types: Vec<String> = match req.level {
            Level::System => types,
            Level::Patient | Level::Group => types
                .into_iter()
                .filter(|t| t == "Patient" || !compartments::patient_params(t).is_empty())
                .collect(),
        };
        let patients: Vec<String> = req
            .patients
            .iter()
            .map(|id| keys::resource(&inst, "Patient", id).to_string())
            .collect();
        let container = req.container.unwrap_or_else(|| format!("export-{id}"));
        let destination = format!("{}/{container}/{id}", req.storage_account);
        BlobKey::new(&destination).map_err(|e| FhirError::invalid(e.to_string()))?;
        // The job and the report that makes it an operation are one change.
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO fhir_export_jobs (id, instance, status, level, types, patients, since_ms, \
             transaction_ms, destination, request, queued_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&id)
        .bind(&inst)
        .bind(Status::Queued.as_str())
        .bind(req.level.as_str())
        .bind(types.join(" "))
        .bind(patients.join(" "))
        .bind(req.since_ms)
        .bind(now)
        .bind(&destination)
        .bind(&req.url)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if let Some(progress) = progress(&mut tx, &id).await? {
            self.reports
                .enqueue(&mut tx, Parts::OPERATION, Parts::ERROR_CODE, &id, &progress)
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
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM fhir_export_jobs WHERE instance = $1 AND id = $2"
        ))
        .bind(instance.to_string())
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.as_ref().map(Job::from_row).transpose()?)
    }

    /// Cancels the job (or, once complete, says the client is done with it) and removes its
    /// files; false if there is no such job.
    pub async fn cancel(&self, instance: &InstanceName, id: &str) -> Result<bool, FhirError> {
        let Some(job) = self.get(instance, id).await? else {
            return Ok(false);
        };
        // Taking the row waits for a part being written (the runner holds it meanwhile).
        let mut tx = self.db.begin().await?;
        let now = Utc::now().timestamp_millis();
        // Only a job still open is cancelled as an operation; a complete one being released
        // stays Succeeded (and the control plane would not reopen it anyway).
        let was_open = sqlx::query(
            "UPDATE fhir_export_jobs SET status = $3, ended_ms = $4 \
             WHERE instance = $1 AND id = $2 AND status IN ('Queued', 'Running')",
        )
        .bind(instance.to_string())
        .bind(id)
        .bind(Status::Cancelled.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        sqlx::query("UPDATE fhir_export_jobs SET status = $3, ended_ms = $4 WHERE instance = $1 AND id = $2")
            .bind(instance.to_string())
            .bind(id)
            .bind(Status::Cancelled.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if was_open {
            if let Some(progress) = progress(&mut tx, id).await? {
                self.reports
                    .enqueue(&mut tx, Parts::OPERATION, Parts::ERROR_CODE, id, &progress)
                    .await?;
            }
        }
        tx.commit().await?;
        if was_open {
            self.reports.sent();
        }
        let blobs = self.blobs()?;
        blobs
            .delete_prefix(&format!("{}/", job.destination))
            .await
            .map_err(|e| FhirError::Unavailable(e.to_string()))?;
        Ok(true)
    }

    /// The content of `file`, one of the job's outputs.
    pub async fn file(&self, job: &Job, file: &str) -> Result<ByteStream, FhirError> {
        if !job.output.iter().any(|o| o.file == file) {
            return Err(FhirError::NotFound(format!("export file {file}")));
        }
        self.blobs()?
            .get(&job.key(file)?)
            .await
            .map_err(|e| FhirError::Unavailable(e.to_string()))
    }

    /// Runs open jobs until `shutdown` (see [`crate::jobs`]); nothing without a store.
    pub async fn run(self, shutdown: CancellationToken) {
        let Some(blobs) = self.blobs.clone() else {
            return;
        };
        let (db, wake) = (self.db.clone(), self.wake.clone());
        let reports = self.reports.clone();
        jobs::run(Parts { blobs, reports }, db, wake, shutdown).await
    }
}

/// The steps of export jobs: one part each.
struct Parts {
    blobs: SharedBlobStore,
    reports: Reports,
}

/// Where export job `id` stands, for its operation: progress is the share of its types done
/// (a type's size is not known before it is exported), the result the files so far.
async fn progress(
    tx: &mut Transaction<'_, Any>,
    id: &str,
) -> Result<Option<Progress>, sqlx::Error> {
    let Some(row) = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS}, instance FROM fhir_export_jobs WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(None);
    };
    let job = Job::from_row(&row)?;
    let percent = match job.status {
        Status::Queued => 0,
        Status::Completed => 100,
        _ => jobs::percent(job.type_index, job.types.len() as i64),
    };
    let at = chrono::TimeZone::timestamp_millis_opt(&Utc, job.transaction_ms)
        .single()
        .unwrap_or_default();
    Ok(Some(Progress {
        instance: row.try_get("instance")?,
        status: job.status,
        percent,
        error: job.error,
        // The manifest's members that do not depend on the URL the client called (the files
        // are served under the job's status URL, which only the client knows).
        result: serde_json::json!({
            "transactionTime": crate::domain::instant(at),
            "types": job.types,
            "output": job.output,
        }),
    }))
}

#[async_trait]
impl JobKind for Parts {
    const TABLE: &'static str = "fhir_export_jobs";
    const NAME: &'static str = "export";
    const OPERATION: OperationKind = OperationKind::FhirExport;
    const ERROR_CODE: &'static str = "ExportFailed";

    fn reports(&self) -> &Reports {
        &self.reports
    }

    async fn progress(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: &str,
    ) -> Result<Option<Progress>, sqlx::Error> {
        progress(tx, id).await
    }

    async fn step(&self, tx: &mut Transaction<'static, Any>, id: &str) -> Result<bool, Failure> {
        part(tx, &self.blobs, id).await
    }
}

/// The condition that keeps a resource of `rt` in a patient- or group-level export: it is in
/// the compartment of a patient (of one of `patients`, when given). Keys are our integers.
fn compartment_filter(instance: &str, rt: &str, patients: &[i64]) -> String {
    let list = patients
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    // Without `patients`, every patient's compartment.
    let (members, own) = match patients.is_empty() {
        true => (String::new(), String::new()),
        false => (
            format!(" AND r.target IN ({list})"),
            format!(" AND c.rkey IN ({list})"),
        ),
    };
    if rt == "Patient" {
        return own;
    }
    let pkeys: Vec<String> = compartments::patient_params(rt)
        .iter()
        .map(|p| keys::param(instance, rt, p).to_string())
        .collect();
    if pkeys.is_empty() {
        return " AND 1 = 0".into();
    }
    format!(
        " AND EXISTS (SELECT 1 FROM fhir_index_references r WHERE r.rkey = c.rkey \
         AND r.pkey IN ({}) AND r.target_type = 'Patient'{members})",
        pkeys.join(", ")
    )
}

/// Writes the job's next part in `tx`; false once the job is over (complete or cancelled).
async fn part(
    tx: &mut Transaction<'static, Any>,
    blobs: &SharedBlobStore,
    id: &str,
) -> Result<bool, Failure> {
    let now = Utc::now().timestamp_millis();
    // Taking the row orders replicas and a cancellation; a cancelled job takes no more parts.
    let taken = sqlx::query(
        "UPDATE fhir_export_jobs SET status = 'Running', started_ms = COALESCE(started_ms, $2) \
         WHERE id = $1 AND status IN ('Queued', 'Running')",
    )
    .bind(id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if taken.rows_affected() == 0 {
        return Ok(false);
    }
    let row = sqlx::query(&format!(
        "SELECT {JOB_COLUMNS}, instance, level, patients, since_ms, after_rkey, part \
         FROM fhir_export_jobs WHERE id = $1"
    ))
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    let job = Job::from_row(&row)?;
    let instance: String = row.try_get("instance")?;
    let level = Level::parse(&row.try_get::<String, _>("level")?);
    let patients: Vec<i64> = row
        .try_get::<String, _>("patients")?
        .split_whitespace()
        .filter_map(|k| k.parse().ok())
        .collect();
    let since: Option<i64> = row.try_get("since_ms")?;
    let after: Option<i64> = row.try_get("after_rkey")?;
    let part_no: i64 = row.try_get("part")?;
    let Some(rt) = job.types.get(job.type_index as usize) else {
        sqlx::query(
            "UPDATE fhir_export_jobs SET status = 'Completed', ended_ms = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        return Ok(false);
    };
    let filter = match level {
        Level::System => String::new(),
        Level::Patient => compartment_filter(&instance, rt, &[]),
        // A group without patients exports nothing (not every patient).
        Level::Group if patients.is_empty() => " AND 1 = 0".into(),
        Level::Group => compartment_filter(&instance, rt, &patients),
    };
    let rows = sqlx::query(&format!(
        "SELECT c.rkey, v.body FROM fhir_current c \
         JOIN fhir_versions v ON v.instance = c.instance AND v.resource_type = c.resource_type \
         AND v.id = c.id AND v.version = c.version \
         WHERE c.instance = $1 AND c.resource_type = $2 AND c.deleted = 0 AND c.rkey > $3 \
         AND c.last_updated_ms <= $4 AND c.last_updated_ms >= $5{filter} \
         ORDER BY c.rkey LIMIT $6"
    ))
    .bind(&instance)
    .bind(rt)
    .bind(after.unwrap_or(i64::MIN))
    .bind(job.transaction_ms)
    .bind(since.unwrap_or(i64::MIN))
    .bind(PART)
    .fetch_all(&mut **tx)
    .await?;
    let Some(last) = rows.last() else {
        // This type is done: the next one starts at its first key, with its first file.
        sqlx::query(
            "UPDATE fhir_export_jobs SET type_index = type_index + 1, after_rkey = NULL, \
             part = 1 WHERE id = $1",
        )
        .bind(id)
        .execute(&mut **tx)
        .await?;
        return Ok(true);
    };
    let last: i64 = last.try_get("rkey")?;
    let mut ndjson = Vec::new();
    for row in &rows {
        let body: String = row.try_get("body")?;
        // Stored text is one JSON document without raw newlines: one line as it is.
        ndjson.extend_from_slice(body.trim().as_bytes());
        ndjson.push(b'\n');
    }
    let file = format!("{rt}-{part_no}.ndjson");
    let key = job.key(&file).map_err(Failure::Transient)?;
    blobs
        .put(&key, stream_from(ndjson))
        .await
        .map_err(|e| Failure::Transient(FhirError::Unavailable(e.to_string())))?;
    let mut output = job.output;
    output.retain(|o| o.file != file);
    output.push(Output {
        resource_type: rt.clone(),
        file,
        count: rows.len() as i64,
    });
    let output = serde_json::to_string(&output).map_err(|e| Failure::Job(e.to_string()))?;
    sqlx::query(
        "UPDATE fhir_export_jobs SET after_rkey = $2, part = part + 1, output = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(last)
    .bind(output)
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_follow_azure_storage_rules() {
        for ok in ["abc", "export-2026", "a1b2c3"] {
            assert!(valid_container(ok), "{ok}");
        }
        for bad in [
            "ab",
            "Upper",
            "a--b",
            "-abc",
            "abc-",
            "a_b",
            &"a".repeat(64),
        ] {
            assert!(!valid_container(bad), "{bad}");
        }
    }
}
