//! Azure's data partitions (`enableDataPartitions`): several copies of the same UIDs in one
//! DICOM service, each in its own partition, addressed as `/{instance}/v{n}/partitions/{name}/`
//! before the STOW, WADO, QIDO and delete paths. `GET /{instance}/v{n}/partitions` lists them;
//! the change feed stays at the base URL and spans every partition (its entries say which).
//!
//! As on Azure (`PopulateDataPartitionFilterAttribute`): with the feature off a partition path
//! is 400 `DataPartitionsFeatureDisabled`; with it on a DICOMweb path without a partition is 400
//! `DataPartitionsMissingPartition`. A store creates its partition implicitly; any other
//! request naming an unknown partition is 400. `Microsoft.Default` always exists: it holds what
//! was stored before the feature was turned on. Partitions are never deleted on their own, only
//! with the instance.
//!
//! Storage. A partition is a storage namespace, not a column: the `instance` column of the
//! index tables holds the instance name for `Microsoft.Default` and `{instance}/{partition}`
//! for any other ([`DataPartition::index_key`]). That column is already the isolation key of
//! every primary key, unique constraint and index, and a partition needs exactly that
//! isolation (UIDs unique within it, no query crossing it); extending the key's value keeps
//! every statement and index as it was and needs no table rebuild on SQLite. Neither an
//! instance name nor a partition name can contain `/`, so keys never collide, and the default
//! partition's key being the bare name keeps existing data where Azure puts it. The change feed
//! is the exception: it is numbered per instance across partitions, so its rows keep the
//! instance and carry the partition name in a column of their own. Blobs need no partition:
//! their keys are unique per upload and found through the index, and all live under the
//! instance's prefix, which deprovisioning removes.

use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use futures::future::LocalBoxFuture;
use hds_core::auth::Permission;
use hds_core::db::Database;
use hds_core::events::now_unix_ms;
use hds_core::names::InstanceName;
use serde::Serialize;
use sqlx::{Any, Row, Transaction};

use crate::domain::PartitionName;
use crate::error::DicomError;
use crate::http::{resolve, DicomCaller, DicomState, Version};

/// Whether an instance's ARM properties turn data partitions on.
pub fn enabled(properties: &serde_json::Value) -> bool {
    properties
        .get("enableDataPartitions")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

/// One partition of one DICOM service instance: where a DICOMweb request reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataPartition {
    pub instance: InstanceName,
    pub name: PartitionName,
}

impl DataPartition {
    /// The instance's only partition when partitions are off.
    pub fn default_of(instance: InstanceName) -> Self {
        Self {
            instance,
            name: PartitionName::default_partition(),
        }
    }

    /// The value of the index tables' `instance` column for this partition (see the module
    /// comment for why a namespace and not a column).
    pub fn index_key(&self) -> String {
        if self.name.is_default() {
            self.instance.to_string()
        } else {
            format!("{}/{}", self.instance, self.name)
        }
    }

    /// `LIKE` pattern of the index keys of an instance's other partitions. Instance names are
    /// lowercase letters, digits and hyphens: nothing `LIKE` treats specially.
    pub fn other_keys_pattern(instance: &InstanceName) -> String {
        format!("{instance}/%")
    }
}

/// The partition a DICOMweb request addresses, checked as Azure checks it. A store's
/// partition may not exist yet (the handler creates it once the caller may write); any other
/// request's partition exists.
pub struct Partitioned(pub DataPartition);

impl FromRequest for Partitioned {
    type Error = DicomError;
    type Future = LocalBoxFuture<'static, Result<Self, DicomError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let (instance, registered) = resolve(&req).await?;
            let named = req.match_info().get("partition");
            let name = match (enabled(&registered.properties), named) {
                (false, None) => return Ok(Partitioned(DataPartition::default_of(instance))),
                (false, Some(_)) => return Err(DicomError::DataPartitionsFeatureDisabled),
                (true, None) => return Err(DicomError::DataPartitionsMissingPartition),
                (true, Some(raw)) => PartitionName::parse(raw)?,
            };
            let partition = DataPartition { instance, name };
            // POST is STOW-RS, the one request that creates its partition.
            if req.method() != Method::POST {
                let state = req
                    .app_data::<web::Data<DicomState>>()
                    .ok_or_else(|| DicomError::Internal("no DICOM state".into()))?;
                if !exists(state.store.db(), &partition).await? {
                    return Err(DicomError::DataPartitionNotFound);
                }
            }
            Ok(Partitioned(partition))
        })
    }
}

/// Whether `partition` exists; `Microsoft.Default` always does.
pub async fn exists(db: &Database, partition: &DataPartition) -> Result<bool, DicomError> {
    if partition.name.is_default() {
        return Ok(true);
    }
    Ok(sqlx::query(
        "SELECT 1 AS found FROM dicom_partitions WHERE instance = $1 AND partition_name = $2",
    )
    .bind(partition.instance.to_string())
    .bind(partition.name.as_str())
    .fetch_optional(db.pool())
    .await?
    .is_some())
}

/// How many times [`ensure`] tries to take a partition key before giving up: each attempt
/// fails only when a concurrent store took the same key for another new partition.
const KEY_ATTEMPTS: usize = 8;

/// Creates `partition` unless it exists (a store's implicit creation). Keys are numbered per
/// instance from 2 (`Microsoft.Default` is 1, as on Azure): the next key is read and inserted
/// in one statement, and a concurrent creation that took the same key makes this insert a
/// no-op (`ON CONFLICT DO NOTHING` covers both unique keys), so it reads again and retries.
pub async fn ensure(db: &Database, partition: &DataPartition) -> Result<(), DicomError> {
    if partition.name.is_default() {
        return Ok(());
    }
    for _ in 0..KEY_ATTEMPTS {
        sqlx::query(
            "INSERT INTO dicom_partitions (instance, partition_name, partition_key, created_ms) \
             SELECT $1, $2, COALESCE(MAX(partition_key), 1) + 1, $3 FROM dicom_partitions \
             WHERE instance = $1 ON CONFLICT DO NOTHING",
        )
        .bind(partition.instance.to_string())
        .bind(partition.name.as_str())
        .bind(now_unix_ms())
        .execute(db.pool())
        .await?;
        if exists(db, partition).await? {
            return Ok(());
        }
    }
    Err(DicomError::Unavailable(format!(
        "no key for partition {} after {KEY_ATTEMPTS} attempts",
        partition.name
    )))
}

/// Whether `instance` has partitions besides `Microsoft.Default` (which forbids turning the
/// feature off, as on Azure).
pub async fn has_created(
    tx: &mut Transaction<'_, Any>,
    instance: &InstanceName,
) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("SELECT 1 AS found FROM dicom_partitions WHERE instance = $1 LIMIT 1")
            .bind(instance.to_string())
            .fetch_optional(&mut **tx)
            .await?
            .is_some(),
    )
}

/// Azure's `PartitionEntry`, as System.Text.Json writes it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionEntry {
    pub partition_key: i64,
    pub partition_name: String,
    pub created_date: String,
}

/// `GET /{instance}/v{n}/partitions`: every partition, `Microsoft.Default` (created with the
/// instance) first, then in creation order.
pub async fn list(
    req: HttpRequest,
    caller: DicomCaller,
    _version: Version,
    state: web::Data<DicomState>,
) -> Result<HttpResponse, DicomError> {
    caller.require(Permission::Read)?;
    let (instance, registered) = resolve(&req).await?;
    if !enabled(&registered.properties) {
        return Err(DicomError::DataPartitionsFeatureDisabled);
    }
    let mut entries = vec![PartitionEntry {
        partition_key: 1,
        partition_name: PartitionName::DEFAULT.to_owned(),
        created_date: crate::changefeed::timestamp(registered.created_unix_ms),
    }];
    let rows = sqlx::query(
        "SELECT partition_key, partition_name, created_ms FROM dicom_partitions \
         WHERE instance = $1 ORDER BY partition_key",
    )
    .bind(instance.to_string())
    .fetch_all(state.store.db().pool())
    .await?;
    for row in &rows {
        entries.push(PartitionEntry {
            partition_key: row.try_get("partition_key")?,
            partition_name: row.try_get("partition_name")?,
            created_date: crate::changefeed::timestamp(row.try_get("created_ms")?),
        });
    }
    Ok(HttpResponse::Ok().json(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_partition_keeps_the_instance_key() {
        let instance: InstanceName = "ws1-dicom".parse().unwrap();
        let default = DataPartition::default_of(instance.clone());
        assert_eq!(default.index_key(), "ws1-dicom");
        let other = DataPartition {
            instance: instance.clone(),
            name: PartitionName::parse("site-a").unwrap(),
        };
        assert_eq!(other.index_key(), "ws1-dicom/site-a");
        assert_eq!(DataPartition::other_keys_pattern(&instance), "ws1-dicom/%");
    }

    #[test]
    fn the_feature_is_read_from_the_properties() {
        assert!(enabled(&serde_json::json!({"enableDataPartitions": true})));
        assert!(!enabled(
            &serde_json::json!({"enableDataPartitions": false})
        ));
        assert!(!enabled(&serde_json::json!({})));
    }
}
