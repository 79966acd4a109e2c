//! The index of stored instances (studies, series, instances, the change feed) and the blob
//! store that holds their bytes. One implementation for PostgreSQL and SQLite (`Any` pool).
//! Rows are keyed by the data partition's index key (`partitions::DataPartition::index_key`:
//! the instance name for `Microsoft.Default`), the change feed by the instance itself.
//!
//! A store request indexes all its instances in one transaction, after their blobs were
//! written: a blob that is never indexed is deleted by the caller, so a failed instance leaves
//! nothing behind. Blob keys are unique per upload (`{instance}/{study}/{uuid}.dcm`), so a duplicate
//! that races an earlier upload can never overwrite the stored bytes: the unique index
//! decides which one is kept (`ON CONFLICT DO NOTHING`), and the loser's blob is deleted.

use hds_core::blob::{BlobKey, SharedBlobStore};
use hds_core::db::{Database, Migrations};
use hds_core::events::v1::{DicomInstanceAction, DicomInstanceEvent};
use hds_core::events::{new_event_id, now_unix_ms, topics};
use hds_core::names::InstanceName;
use hds_core::outbox::{self, RelayWaker};
use sqlx::{Any, Row, Transaction};

use crate::domain::{InstanceRef, PartitionName, Scope};
use crate::error::DicomError;
use crate::partitions::DataPartition;
use crate::relay_wake::CoalescingWaker;

pub fn migrations() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./migrations/postgres"),
        sqlite: sqlx::migrate!("./migrations/sqlite"),
    }
}

/// The study-level columns of an instance (the study row takes the latest instance's).
#[derive(Debug, Clone, Default)]
pub struct StudyColumns {
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub patient_birth_date: Option<String>,
    pub accession_number: Option<String>,
    pub referring_physician_name: Option<String>,
    pub study_date: Option<String>,
    pub study_description: Option<String>,
    /// PatientName and ReferringPhysicianName folded and as words (`person_name`), for QIDO.
    pub patient_name_folded: Option<String>,
    pub patient_name_words: Option<String>,
    pub referring_physician_name_folded: Option<String>,
    pub referring_physician_name_words: Option<String>,
    /// DICOM JSON of the study-level QIDO attributes.
    pub attributes: String,
}

/// The series-level columns of an instance.
#[derive(Debug, Clone, Default)]
pub struct SeriesColumns {
    pub modality: Option<String>,
    pub performed_procedure_step_start_date: Option<String>,
    pub manufacturer_model_name: Option<String>,
    pub attributes: String,
}

/// An instance whose blob is written, to be indexed.
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub id: InstanceRef,
    pub sop_class_uid: String,
    pub transfer_syntax_uid: String,
    pub blob_key: BlobKey,
    pub size_bytes: u64,
    pub study: StudyColumns,
    pub series: SeriesColumns,
    /// DICOM JSON of the instance-level QIDO attributes.
    pub attributes: String,
    /// The instance's DICOM JSON, served by WADO-RS metadata.
    pub metadata: String,
}

/// A stored instance, as retrieval needs it.
#[derive(Debug, Clone)]
pub struct StoredInstance {
    pub watermark: i64,
    pub id: InstanceRef,
    pub transfer_syntax_uid: String,
    pub blob_key: String,
    pub size_bytes: i64,
}

/// The metadata of a scope: the instances' DICOM JSON and a validator for caching.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub instances: Vec<String>,
    /// Changes whenever an instance of the scope is added or removed.
    pub etag: String,
}

#[derive(Clone)]
pub struct Store {
    db: Database,
    pub blobs: SharedBlobStore,
    relay: Option<CoalescingWaker>,
}

/// `WHERE` over a scope, with its parameters from `$2` on (`$1` is the instance).
fn scope_filter(scope: &Scope) -> (&'static str, Vec<String>) {
    match scope {
        Scope::Study(st) => ("study_uid = $2", vec![st.to_string()]),
        Scope::Series(st, se) => (
            "study_uid = $2 AND series_uid = $3",
            vec![st.to_string(), se.to_string()],
        ),
        Scope::Instance(st, se, sop) => (
            "study_uid = $2 AND series_uid = $3 AND sop_uid = $4",
            vec![st.to_string(), se.to_string(), sop.to_string()],
        ),
    }
}

fn instance_ref(row: &sqlx::any::AnyRow) -> Result<InstanceRef, DicomError> {
    let uid = |col: &str| -> Result<crate::domain::Uid, DicomError> {
        let raw: String = row.try_get(col)?;
        crate::domain::Uid::parse(&raw)
            .ok_or_else(|| DicomError::Internal(format!("stored {col} '{raw}' is not a UID")))
    };
    Ok(InstanceRef {
        study: crate::domain::StudyUid(uid("study_uid")?),
        series: crate::domain::SeriesUid(uid("series_uid")?),
        sop: crate::domain::SopInstanceUid(uid("sop_uid")?),
    })
}

fn event(instance: &InstanceName, change: &Change, sequence: i64, at: i64) -> DicomInstanceEvent {
    let id = &change.id;
    DicomInstanceEvent {
        event_id: new_event_id(),
        instance: instance.to_string(),
        action: change.action as i32,
        partition_name: change.partition.to_string(),
        study_instance_uid: id.study.to_string(),
        series_instance_uid: id.series.to_string(),
        sop_instance_uid: id.sop.to_string(),
        sequence_number: sequence,
        occurred_at_unix_ms: at,
    }
}

fn event_key(instance: &InstanceName, id: &InstanceRef) -> String {
    format!("{instance}/{}", id.study)
}

/// A change-feed row to be written by the transaction that makes the change.
struct Change {
    partition: PartitionName,
    id: InstanceRef,
    action: DicomInstanceAction,
    watermark: i64,
}

/// The most rows one multi-row statement carries (15 columns at most: far below the bound
/// parameter limits of PostgreSQL and SQLite).
const MAX_ROWS: usize = 64;

/// `items` in runs of at most [`MAX_ROWS`], each with the index of its first item.
fn chunks<T>(items: &[T]) -> impl Iterator<Item = (usize, &[T])> {
    items
        .chunks(MAX_ROWS)
        .enumerate()
        .map(|(i, c)| (i * MAX_ROWS, c))
}

/// The `dicom_studies.modalities` of the study row `row` names, from its series rows: their
/// distinct modalities, lowercased, between bars (`|ct|mr|`), or NULL. QIDO matches
/// `ModalitiesInStudy` on it (`qido::search`). A write sets it in a statement that runs after
/// the write holds the study row: a subquery sees the snapshot its statement started with, so
/// in the statement that waited for the row it could miss the series of the writer it waited
/// for.
fn study_modalities(row: &str) -> String {
    format!(
        "(SELECT '|' || string_agg(d.m, '|') || '|' FROM (SELECT DISTINCT lower(s.modality) AS m \
         FROM dicom_series s WHERE s.instance = {row}.instance AND s.study_uid = {row}.study_uid \
         AND s.modality IS NOT NULL) d)"
    )
}

/// `{head}($1, ..., $w), ($w+1, ...), ...{tail}`: a multi-row `VALUES` of `rows` rows of
/// `width` parameters. A request's instances go in one statement per table (a round trip
/// each) rather than one per instance; statement texts differ only by row count, so the
/// connection's prepared-statement cache holds a few per table.
fn values_statement(head: &str, width: usize, rows: usize, tail: &str) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * width * 5);
    sql.push_str(head);
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            let _ = write!(sql, "${}", r * width + c + 1);
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

/// Writes a transaction's change-feed rows and their events, numbered from the instance's
/// counter row; call it last, just before commit.
///
/// Why a counter row and not an identity column: an identity value is taken when a row is
/// inserted, but becomes visible when its transaction commits, so on PostgreSQL a reader can
/// see 7 before a slower transaction commits 6, move its cursor past 6, and never see it.
/// Incrementing one row per instance instead makes writers take that row's lock: a second
/// writer waits at the `UPDATE` until the first commits, then reads the committed value.
/// So sequences are handed out in commit order and become visible in that order; a reader
/// that has seen N has seen everything below N. The lock is held only from here to commit
/// (a few inserts), and only writers of the same instance wait on it. (SQLite serializes
/// writers anyway; the same code keeps the numbers per instance there too.)
async fn record_changes(
    tx: &mut Transaction<'static, Any>,
    instance: &InstanceName,
    changes: &[Change],
    at: i64,
    events: &mut outbox::Batch,
) -> Result<(), DicomError> {
    if changes.is_empty() {
        return Ok(());
    }
    let n = i64::try_from(changes.len()).unwrap_or(i64::MAX);
    let last: i64 = sqlx::query(
        "INSERT INTO dicom_changefeed_counters (instance, last_sequence) VALUES ($1, $2) \
         ON CONFLICT (instance) DO UPDATE \
         SET last_sequence = dicom_changefeed_counters.last_sequence + excluded.last_sequence \
         RETURNING last_sequence",
    )
    .bind(instance.to_string())
    .bind(n)
    .fetch_one(&mut **tx)
    .await?
    .try_get("last_sequence")?;
    let first = last - n + 1;
    for (start, chunk) in chunks(changes) {
        let sql = values_statement(
            "INSERT INTO dicom_changefeed \
             (instance, sequence, study_uid, series_uid, sop_uid, action, watermark, \
             timestamp_ms, partition_name) VALUES ",
            9,
            chunk.len(),
            "",
        );
        let mut q = sqlx::query(&sql);
        for (i, c) in chunk.iter().enumerate() {
            let action = match c.action {
                DicomInstanceAction::Deleted => "delete",
                _ => "create",
            };
            q = q
                .bind(instance.to_string())
                .bind(first + (start + i) as i64)
                .bind(c.id.study.as_str())
                .bind(c.id.series.as_str())
                .bind(c.id.sop.as_str())
                .bind(action)
                .bind(c.watermark)
                .bind(at)
                .bind(c.partition.as_str());
        }
        q.execute(&mut **tx).await?;
    }
    for (i, c) in changes.iter().enumerate() {
        events.push_event(
            topics::DICOM_INSTANCES,
            event_key(instance, &c.id),
            &event(instance, c, first + i as i64, at),
        )?;
    }
    Ok(())
}

/// Why [`Store::index_group`] failed: a statement (the transaction was rolled back, nothing
/// of it is stored, so its requests can be tried again apart), or beginning or committing
/// (whether a failed commit took effect is unknown: nothing may be tried again).
#[derive(Debug)]
pub enum IndexFailure {
    Statement(DicomError),
    Commit(DicomError),
}

impl IndexFailure {
    pub fn into_error(self) -> DicomError {
        match self {
            IndexFailure::Statement(e) | IndexFailure::Commit(e) => e,
        }
    }
}

/// The statements of [`Store::index_group`], in `tx`.
async fn index_in(
    tx: &mut Transaction<'static, Any>,
    new: &[(&DataPartition, &NewInstance)],
) -> Result<Vec<Option<i64>>, DicomError> {
    let at = now_unix_ms();
    let mut out: Vec<Option<i64>> = vec![None; new.len()];
    // Instance rows, a statement per MAX_ROWS; the rows that come back are the ones inserted,
    // matched back by blob key (unique per upload, so exact even when two requests of a group
    // carry the same UIDs: the first row is inserted, the other conflicts).
    let position: std::collections::HashMap<&str, usize> = new
        .iter()
        .enumerate()
        .map(|(i, (_, n))| (n.blob_key.as_str(), i))
        .collect();
    for (_, chunk) in chunks(new) {
        let sql = values_statement(
            "INSERT INTO dicom_instances (instance, study_uid, series_uid, sop_uid, \
             sop_class_uid, transfer_syntax_uid, blob_key, size_bytes, attributes, metadata, \
             created_ms) VALUES ",
            11,
            chunk.len(),
            " ON CONFLICT (instance, study_uid, series_uid, sop_uid) DO NOTHING \
             RETURNING watermark, blob_key",
        );
        let mut q = sqlx::query(&sql);
        for &(partition, n) in chunk {
            q = q
                .bind(partition.index_key())
                .bind(n.id.study.as_str())
                .bind(n.id.series.as_str())
                .bind(n.id.sop.as_str())
                .bind(&n.sop_class_uid)
                .bind(&n.transfer_syntax_uid)
                .bind(n.blob_key.as_str())
                .bind(i64::try_from(n.size_bytes).unwrap_or(i64::MAX))
                .bind(&n.attributes)
                .bind(&n.metadata)
                .bind(at);
        }
        for row in q.fetch_all(&mut **tx).await? {
            let key: String = row.try_get("blob_key")?;
            let i = position.get(key.as_str()).copied().ok_or_else(|| {
                DicomError::Internal(format!("an inserted instance's blob {key} was not sent"))
            })?;
            out[i] = Some(row.try_get("watermark")?);
        }
    }
    // Study and series rows take the latest stored instance's values: per study (series),
    // the last stored instance of the group, whose watermark is the highest. One row per
    // key and statement (PostgreSQL updates a row at most once per statement), in key order
    // so that concurrent transactions lock rows in the same order.
    let mut studies: std::collections::BTreeMap<(&str, &str), (usize, i64)> = Default::default();
    let mut series: std::collections::BTreeMap<(&str, &str, &str), (usize, i64)> =
        Default::default();
    let names: Vec<String> = new.iter().map(|(p, _)| p.index_key()).collect();
    for (i, ((_, n), w)) in new.iter().zip(&out).enumerate() {
        let Some(w) = *w else { continue };
        let name = names[i].as_str();
        studies.insert((name, n.id.study.as_str()), (i, w));
        series.insert((name, n.id.study.as_str(), n.id.series.as_str()), (i, w));
    }
    let studies: Vec<(usize, i64)> = studies.into_values().collect();
    let series: Vec<(usize, i64)> = series.into_values().collect();
    for (_, chunk) in chunks(&series) {
        let sql = values_statement(
            "INSERT INTO dicom_series (instance, study_uid, series_uid, modality, \
             performed_procedure_step_start_date, manufacturer_model_name, attributes, \
             updated_watermark) VALUES ",
            8,
            chunk.len(),
            " ON CONFLICT (instance, study_uid, series_uid) DO UPDATE SET \
             modality = excluded.modality, \
             performed_procedure_step_start_date = excluded.performed_procedure_step_start_date, \
             manufacturer_model_name = excluded.manufacturer_model_name, \
             attributes = excluded.attributes, updated_watermark = excluded.updated_watermark",
        );
        let mut q = sqlx::query(&sql);
        for &(i, watermark) in chunk {
            let (n, se) = (new[i].1, &new[i].1.series);
            q = q
                .bind(names[i].as_str())
                .bind(n.id.study.as_str())
                .bind(n.id.series.as_str())
                .bind(&se.modality)
                .bind(&se.performed_procedure_step_start_date)
                .bind(&se.manufacturer_model_name)
                .bind(&se.attributes)
                .bind(watermark);
        }
        q.execute(&mut **tx).await?;
    }
    for (_, chunk) in chunks(&studies) {
        let sql = values_statement(
            "INSERT INTO dicom_studies (instance, study_uid, patient_id, patient_name, \
             patient_birth_date, accession_number, referring_physician_name, study_date, \
             study_description, attributes, updated_watermark, patient_name_folded, \
             patient_name_words, referring_physician_name_folded, \
             referring_physician_name_words) VALUES ",
            15,
            chunk.len(),
            " ON CONFLICT (instance, study_uid) DO UPDATE SET \
             patient_id = excluded.patient_id, patient_name = excluded.patient_name, \
             patient_birth_date = excluded.patient_birth_date, \
             accession_number = excluded.accession_number, \
             referring_physician_name = excluded.referring_physician_name, \
             study_date = excluded.study_date, study_description = excluded.study_description, \
             attributes = excluded.attributes, updated_watermark = excluded.updated_watermark, \
             patient_name_folded = excluded.patient_name_folded, \
             patient_name_words = excluded.patient_name_words, \
             referring_physician_name_folded = excluded.referring_physician_name_folded, \
             referring_physician_name_words = excluded.referring_physician_name_words",
        );
        let mut q = sqlx::query(&sql);
        for &(i, watermark) in chunk {
            let (n, s) = (new[i].1, &new[i].1.study);
            q = q
                .bind(names[i].as_str())
                .bind(n.id.study.as_str())
                .bind(&s.patient_id)
                .bind(&s.patient_name)
                .bind(&s.patient_birth_date)
                .bind(&s.accession_number)
                .bind(&s.referring_physician_name)
                .bind(&s.study_date)
                .bind(&s.study_description)
                .bind(&s.attributes)
                .bind(watermark)
                .bind(&s.patient_name_folded)
                .bind(&s.patient_name_words)
                .bind(&s.referring_physician_name_folded)
                .bind(&s.referring_physician_name_words);
        }
        q.execute(&mut **tx).await?;
    }
    // The studies' modalities, read from their series rows by a statement of its own: it
    // starts once this transaction holds the study rows, so it sees the series of every
    // transaction that held them before (its snapshot is newer than their commits).
    for (_, chunk) in chunks(&studies) {
        let sql = values_statement(
            &format!(
                "UPDATE dicom_studies SET modalities = {} WHERE (instance, study_uid) IN (VALUES ",
                study_modalities("dicom_studies")
            ),
            2,
            chunk.len(),
            ")",
        );
        let mut q = sqlx::query(&sql);
        for &(i, _) in chunk {
            q = q.bind(names[i].as_str()).bind(new[i].1.id.study.as_str());
        }
        q.execute(&mut **tx).await?;
    }
    // The change feed of each service instance (all its partitions), in name order (the
    // counter rows are locked in that order, so two groups never wait on each other
    // crosswise).
    let mut changes: std::collections::BTreeMap<&InstanceName, Vec<Change>> = Default::default();
    for ((partition, n), w) in new.iter().zip(&out) {
        if let Some(watermark) = *w {
            changes
                .entry(&partition.instance)
                .or_default()
                .push(Change {
                    partition: partition.name.clone(),
                    id: n.id.clone(),
                    action: DicomInstanceAction::Created,
                    watermark,
                });
        }
    }
    let mut events = outbox::Batch::default();
    for (name, changes) in &changes {
        record_changes(tx, name, changes, at, &mut events).await?;
    }
    events.insert(tx).await?;
    Ok(out)
}

impl Store {
    pub fn new(db: Database, blobs: SharedBlobStore, relay: Option<RelayWaker>) -> Self {
        Self {
            db,
            blobs,
            relay: relay.map(CoalescingWaker::new),
        }
    }

    /// The index database, for the read-only queries of search and the change feed.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Where the bytes of a new upload go: under the instance's and the study's prefix,
    /// unique per upload. The index maps UIDs to keys, so the key need not spell the series
    /// and SOP UIDs; keeping it short (at most 111 bytes) also keeps it within what
    /// S3-compatible stores that map keys to file names accept.
    pub fn blob_key(instance: &InstanceName, id: &InstanceRef) -> Result<BlobKey, DicomError> {
        Ok(BlobKey::new(format!(
            "{}{}/{}.dcm",
            crate::instances::blob_prefix(instance),
            id.study,
            uuid::Uuid::new_v4().simple()
        ))?)
    }

    /// Indexes `rows` (of one or several requests, of any partitions of any service instances) in one
    /// transaction: instance rows, study and series rows (latest instance wins), change-feed
    /// rows and `instance created` events. Returns, per row, its watermark, or `None` when an
    /// instance with its UIDs was already stored (earlier, or by an earlier row of `rows`).
    pub async fn index_group(
        &self,
        rows: &[(&DataPartition, &NewInstance)],
    ) -> Result<Vec<Option<i64>>, IndexFailure> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self
            .db
            .begin()
            .await
            .map_err(|e| IndexFailure::Commit(e.into()))?;
        let out = index_in(&mut tx, rows)
            .await
            .map_err(IndexFailure::Statement)?;
        tx.commit()
            .await
            .map_err(|e| IndexFailure::Commit(e.into()))?;
        self.wake_relay();
        Ok(out)
    }

    fn wake_relay(&self) {
        if let Some(r) = &self.relay {
            r.wake();
        }
    }

    /// The instances of a scope, in series then storage order.
    pub async fn instances(
        &self,
        partition: &DataPartition,
        scope: &Scope,
    ) -> Result<Vec<StoredInstance>, DicomError> {
        let (filter, params) = scope_filter(scope);
        let sql = format!(
            "SELECT watermark, study_uid, series_uid, sop_uid, transfer_syntax_uid, blob_key, \
             size_bytes FROM dicom_instances WHERE instance = $1 AND {filter} \
             ORDER BY series_uid, watermark"
        );
        let mut q = sqlx::query(&sql).bind(partition.index_key());
        for p in &params {
            q = q.bind(p);
        }
        q.fetch_all(self.db.pool())
            .await?
            .iter()
            .map(|row| {
                Ok(StoredInstance {
                    watermark: row.try_get("watermark")?,
                    id: instance_ref(row)?,
                    transfer_syntax_uid: row.try_get("transfer_syntax_uid")?,
                    blob_key: row.try_get("blob_key")?,
                    size_bytes: row.try_get("size_bytes")?,
                })
            })
            .collect()
    }

    /// The metadata of a scope's instances, or `None` if it has none.
    pub async fn metadata(
        &self,
        partition: &DataPartition,
        scope: &Scope,
    ) -> Result<Option<Metadata>, DicomError> {
        let (filter, params) = scope_filter(scope);
        let sql = format!(
            "SELECT watermark, metadata FROM dicom_instances WHERE instance = $1 AND {filter} \
             ORDER BY series_uid, watermark"
        );
        let mut q = sqlx::query(&sql).bind(partition.index_key());
        for p in &params {
            q = q.bind(p);
        }
        let rows = q.fetch_all(self.db.pool()).await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut max = 0_i64;
        let mut instances = Vec::with_capacity(rows.len());
        for row in &rows {
            max = max.max(row.try_get("watermark")?);
            instances.push(row.try_get("metadata")?);
        }
        // Watermarks only grow, so the newest one and the count change with every addition
        // and removal (Azure's metadata ETag is made the same way).
        Ok(Some(Metadata {
            etag: format!("\"{max}-{}\"", rows.len()),
            instances,
        }))
    }

    /// Removes a scope's instances from the index in one transaction (with change-feed rows
    /// and `instance deleted` events), then their blobs. `NotFound` when there are none.
    pub async fn delete(&self, partition: &DataPartition, scope: &Scope) -> Result<(), DicomError> {
        let (filter, params) = scope_filter(scope);
        let mut tx = self.db.begin().await?;
        let sql = format!(
            "DELETE FROM dicom_instances WHERE instance = $1 AND {filter} \
             RETURNING watermark, study_uid, series_uid, sop_uid, blob_key"
        );
        let mut q = sqlx::query(&sql).bind(partition.index_key());
        for p in &params {
            q = q.bind(p);
        }
        let rows = q.fetch_all(&mut *tx).await?;
        if rows.is_empty() {
            return Err(scope.not_found());
        }
        // Series and studies left without instances go too.
        sqlx::query(
            "DELETE FROM dicom_series WHERE instance = $1 AND study_uid = $2 AND NOT EXISTS \
             (SELECT 1 FROM dicom_instances i WHERE i.instance = dicom_series.instance \
             AND i.study_uid = dicom_series.study_uid AND i.series_uid = dicom_series.series_uid)",
        )
        .bind(partition.index_key())
        .bind(scope.study().as_str())
        .execute(&mut *tx)
        .await?;
        // The study's modalities, once its row is held (see `index_in`).
        sqlx::query(
            "UPDATE dicom_studies SET updated_watermark = updated_watermark \
             WHERE instance = $1 AND study_uid = $2",
        )
        .bind(partition.index_key())
        .bind(scope.study().as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "UPDATE dicom_studies SET modalities = {} WHERE instance = $1 AND study_uid = $2",
            study_modalities("dicom_studies")
        ))
        .bind(partition.index_key())
        .bind(scope.study().as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM dicom_studies WHERE instance = $1 AND study_uid = $2 AND NOT EXISTS \
             (SELECT 1 FROM dicom_instances i WHERE i.instance = dicom_studies.instance \
             AND i.study_uid = dicom_studies.study_uid)",
        )
        .bind(partition.index_key())
        .bind(scope.study().as_str())
        .execute(&mut *tx)
        .await?;
        let at = now_unix_ms();
        let mut events = outbox::Batch::default();
        let mut blobs = Vec::with_capacity(rows.len());
        let mut changes = Vec::with_capacity(rows.len());
        for row in &rows {
            changes.push(Change {
                partition: partition.name.clone(),
                id: instance_ref(row)?,
                action: DicomInstanceAction::Deleted,
                watermark: row.try_get("watermark")?,
            });
            blobs.push(row.try_get::<String, _>("blob_key")?);
        }
        record_changes(&mut tx, &partition.instance, &changes, at, &mut events).await?;
        events.insert(&mut tx).await?;
        tx.commit().await?;
        self.wake_relay();
        // The index no longer points at these blobs, so a failure here cannot make a read
        // fail; it is logged, and the instance's blobs go at the latest with the instance.
        for key in blobs {
            self.delete_blob(&key).await;
        }
        Ok(())
    }

    /// Deletes a blob that nothing points at (any more); failures are logged.
    pub async fn delete_blob(&self, key: &str) {
        let result = match BlobKey::new(key) {
            Ok(k) => self.blobs.delete(&k).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(blob = key, error = %e, "deleting an unindexed blob failed");
        }
    }

    /// Removes every row of `instance`, in every partition (deprovisioning), in the caller's
    /// transaction.
    pub async fn delete_instance_rows(
        tx: &mut Transaction<'_, Any>,
        instance: &InstanceName,
    ) -> Result<(), sqlx::Error> {
        // The index tables hold other partitions under `{instance}/{partition}`.
        for table in ["dicom_instances", "dicom_series", "dicom_studies"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE instance = $1 OR instance LIKE $2"
            ))
            .bind(instance.to_string())
            .bind(DataPartition::other_keys_pattern(instance))
            .execute(&mut **tx)
            .await?;
        }
        for table in [
            "dicom_changefeed",
            "dicom_changefeed_counters",
            "dicom_partitions",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE instance = $1"))
                .bind(instance.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_statements_number_parameters_row_by_row() {
        assert_eq!(
            values_statement("INSERT INTO t (a, b) VALUES ", 2, 2, " RETURNING a"),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) RETURNING a"
        );
    }

    #[test]
    fn chunks_carry_their_offsets() {
        let items: Vec<usize> = (0..MAX_ROWS + 3).collect();
        let got: Vec<(usize, usize)> = chunks(&items).map(|(i, c)| (i, c.len())).collect();
        assert_eq!(got, vec![(0, MAX_ROWS), (MAX_ROWS, 3)]);
    }
}
