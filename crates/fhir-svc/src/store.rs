//! Resource storage: every version kept, a pointer to the current one, events in the same
//! transaction (outbox). One implementation for PostgreSQL and SQLite through the `Any` pool.
//!
//! Writes start with the pointer update (`fhir_current`), which both serialises concurrent
//! writers of one resource (a row lock on PostgreSQL, the write lock on SQLite) and decides
//! the version: `If-Match` is a `WHERE version = n` on that update, so of concurrent writers
//! with the same expectation exactly one succeeds.

use chrono::{DateTime, TimeZone, Utc};
use hds_core::db::{Database, Migrations};
use hds_core::events::v1::{FhirResourceAction, FhirResourceEvent};
use hds_core::events::{new_event_id, topics};
use hds_core::names::InstanceName;
use hds_core::outbox;
use serde_json::Value;
use sqlx::{Any, Row, Transaction};

use crate::domain::{instant, ResourceId, ResourceType};
use crate::error::FhirError;

pub fn migrations() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./migrations/postgres"),
        sqlite: sqlx::migrate!("./migrations/sqlite"),
    }
}

/// The HTTP method that made a version (history's `entry.request.method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "POST" => Method::Post,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => Method::Put,
        }
    }
}

/// One stored version.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    pub last_updated: DateTime<Utc>,
    pub method: Method,
    /// The resource as stored (with `meta`), or `None` for a deletion.
    pub body: Option<Value>,
    /// Commit order (history paging).
    pub seq: i64,
}

impl Version {
    pub fn is_deletion(&self) -> bool {
        self.body.is_none()
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub version: Version,
    /// The resource did not exist (or was deleted) before.
    pub created: bool,
}

/// Which history to list.
#[derive(Debug, Clone)]
pub enum HistoryScope {
    System,
    Type(ResourceType),
    Instance(ResourceType, ResourceId),
}

#[derive(Clone)]
pub struct Store {
    db: Database,
    relay: Option<hds_core::outbox::RelayWaker>,
}

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn version_from_row(row: &sqlx::any::AnyRow) -> Result<Version, FhirError> {
    let body: Option<String> = row.try_get("body")?;
    let method: String = row.try_get("method")?;
    Ok(Version {
        resource_type: row.try_get("resource_type")?,
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        last_updated: time(row.try_get("last_updated_ms")?),
        method: Method::parse(&method),
        body: body
            .map(|b| serde_json::from_str(&b))
            .transpose()
            .map_err(|e| FhirError::Internal(format!("stored resource is not JSON: {e}")))?,
        seq: row.try_get("seq")?,
    })
}

const VERSION_COLUMNS: &str = "seq, resource_type, id, version, last_updated_ms, method, body";

impl Store {
    pub fn new(db: Database, relay: Option<hds_core::outbox::RelayWaker>) -> Self {
        Self { db, relay }
    }

    /// The current version (possibly a deletion), if the resource ever existed.
    pub async fn read(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        id: &ResourceId,
    ) -> Result<Option<Version>, FhirError> {
        read_in(self.db.pool(), instance, rt, id).await
    }

    pub async fn vread(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        id: &ResourceId,
        version: i64,
    ) -> Result<Option<Version>, FhirError> {
        vread_in(self.db.pool(), instance, rt, id, version).await
    }

    /// Ids of current resources matching a search's conditions (at most `limit`).
    pub async fn find(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        conditions: &[crate::search::query::Condition],
        limit: i64,
    ) -> Result<Vec<String>, FhirError> {
        crate::search::query::find(self.db.pool(), instance, rt, conditions, limit).await
    }

    /// A transaction for several operations (a transaction bundle); finish it with
    /// [`Store::commit`].
    pub async fn begin(&self) -> Result<Transaction<'static, Any>, FhirError> {
        Ok(self.db.begin().await?)
    }

    pub async fn commit(&self, tx: Transaction<'static, Any>) -> Result<(), FhirError> {
        tx.commit().await?;
        self.wake();
        Ok(())
    }

    /// Writes a new version of `resource` (create, update or patch). `expected` is the
    /// `If-Match` version: the write happens only if it is the current one.
    pub async fn write(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        id: &ResourceId,
        resource: Value,
        method: Method,
        expected: Option<i64>,
    ) -> Result<Written, FhirError> {
        let mut tx = self.db.begin().await?;
        let written = write_in(&mut tx, instance, rt, id, resource, method, expected).await?;
        tx.commit().await?;
        self.wake();
        Ok(written)
    }

    /// Deletes the resource: a soft delete keeps history and answers 410 on read; a hard
    /// delete removes every version. Returns the deletion version of a soft delete.
    pub async fn delete(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        id: &ResourceId,
        hard: bool,
    ) -> Result<Option<Version>, FhirError> {
        let mut tx = self.db.begin().await?;
        let deleted = delete_in(&mut tx, instance, rt, id, hard).await?;
        tx.commit().await?;
        self.wake();
        Ok(deleted)
    }

    /// `$purge-history`: removes every version but the current one.
    pub async fn purge_history(
        &self,
        instance: &InstanceName,
        rt: &ResourceType,
        id: &ResourceId,
    ) -> Result<u64, FhirError> {
        let done = sqlx::query(
            "DELETE FROM fhir_versions WHERE instance = $1 AND resource_type = $2 AND id = $3 \
             AND version < (SELECT version FROM fhir_current WHERE instance = $1 \
             AND resource_type = $2 AND id = $3)",
        )
        .bind(instance.to_string())
        .bind(rt.as_str())
        .bind(id.as_str())
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Versions newest first: at most `count`, changed at or after `since`, older than the
    /// `before` cursor (a `seq`).
    pub async fn history(
        &self,
        instance: &InstanceName,
        scope: &HistoryScope,
        since: Option<DateTime<Utc>>,
        before: Option<i64>,
        count: i64,
    ) -> Result<Vec<Version>, FhirError> {
        let (filter, rt, id) = match scope {
            HistoryScope::System => ("", None, None),
            HistoryScope::Type(rt) => (" AND resource_type = $5", Some(rt.as_str()), None),
            HistoryScope::Instance(rt, id) => (
                " AND resource_type = $5 AND id = $6",
                Some(rt.as_str()),
                Some(id.as_str()),
            ),
        };
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM fhir_versions WHERE instance = $1 \
             AND last_updated_ms >= $2 AND seq < $3{filter} ORDER BY seq DESC LIMIT $4"
        );
        let mut q = sqlx::query(&sql)
            .bind(instance.to_string())
            .bind(since.map_or(i64::MIN, |t| t.timestamp_millis()))
            .bind(before.unwrap_or(i64::MAX))
            .bind(count);
        if let Some(rt) = rt {
            q = q.bind(rt);
        }
        if let Some(id) = id {
            q = q.bind(id);
        }
        q.fetch_all(self.db.pool())
            .await?
            .iter()
            .map(version_from_row)
            .collect()
    }

    /// Removes every resource of an instance (the instance is being deleted).
    pub async fn delete_instance(
        tx: &mut Transaction<'_, Any>,
        instance: &InstanceName,
    ) -> Result<(), sqlx::Error> {
        crate::search::index::delete_instance(tx, instance).await?;
        for table in ["fhir_current", "fhir_versions"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE instance = $1"))
                .bind(instance.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    fn wake(&self) {
        if let Some(r) = &self.relay {
            r.wake();
        }
    }
}

/// The current version through any executor (the pool, or a transaction).
pub async fn read_in<'e, E>(
    executor: E,
    instance: &InstanceName,
    rt: &ResourceType,
    id: &ResourceId,
) -> Result<Option<Version>, FhirError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let row = sqlx::query(
        "SELECT v.seq, v.resource_type, v.id, v.version, v.last_updated_ms, v.method, v.body \
         FROM fhir_current c JOIN fhir_versions v ON v.instance = c.instance \
         AND v.resource_type = c.resource_type AND v.id = c.id AND v.version = c.version \
         WHERE c.instance = $1 AND c.resource_type = $2 AND c.id = $3",
    )
    .bind(instance.to_string())
    .bind(rt.as_str())
    .bind(id.as_str())
    .fetch_optional(executor)
    .await?;
    row.as_ref().map(version_from_row).transpose()
}

pub async fn vread_in<'e, E>(
    executor: E,
    instance: &InstanceName,
    rt: &ResourceType,
    id: &ResourceId,
    version: i64,
) -> Result<Option<Version>, FhirError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let row = sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS} FROM fhir_versions \
         WHERE instance = $1 AND resource_type = $2 AND id = $3 AND version = $4"
    ))
    .bind(instance.to_string())
    .bind(rt.as_str())
    .bind(id.as_str())
    .bind(version)
    .fetch_optional(executor)
    .await?;
    row.as_ref().map(version_from_row).transpose()
}

/// Sets `id` and `meta.versionId`/`meta.lastUpdated`, keeping the rest of `meta`.
fn stamp(resource: &mut Value, id: &ResourceId, version: i64, at: DateTime<Utc>) {
    if let Value::Object(map) = resource {
        map.insert("id".into(), Value::String(id.to_string()));
        let meta = map
            .entry("meta")
            .or_insert_with(|| Value::Object(Default::default()));
        if !meta.is_object() {
            *meta = Value::Object(Default::default());
        }
        if let Value::Object(meta) = meta {
            meta.insert("versionId".into(), Value::String(version.to_string()));
            meta.insert("lastUpdated".into(), Value::String(instant(at)));
        }
    }
}

pub async fn write_in(
    tx: &mut Transaction<'_, Any>,
    instance: &InstanceName,
    rt: &ResourceType,
    id: &ResourceId,
    mut resource: Value,
    method: Method,
    expected: Option<i64>,
) -> Result<Written, FhirError> {
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let inst = instance.to_string();
    // The pointer first: it takes the lock that orders writers of this resource.
    let mut sql = String::from(
        "UPDATE fhir_current SET version = version + 1, deleted = 0, last_updated_ms = $4 \
         WHERE instance = $1 AND resource_type = $2 AND id = $3",
    );
    if expected.is_some() {
        sql.push_str(" AND version = $5");
    }
    sql.push_str(" RETURNING version, deleted");
    let mut q = sqlx::query(&sql)
        .bind(&inst)
        .bind(rt.as_str())
        .bind(id.as_str())
        .bind(now_ms);
    if let Some(v) = expected {
        q = q.bind(v);
    }
    // A server-assigned id (POST) is new: no pointer to move, and one round trip saved.
    let updated = if method == Method::Post && expected.is_none() {
        None
    } else {
        q.fetch_optional(&mut **tx).await?
    };
    let (version, created) = match updated {
        Some(row) => (row.try_get::<i64, _>("version")?, false),
        None => {
            let existing: Option<i64> = if method == Method::Post {
                None
            } else {
                sqlx::query(
                    "SELECT version FROM fhir_current WHERE instance = $1 AND resource_type = $2 AND id = $3",
                )
                .bind(&inst)
                .bind(rt.as_str())
                .bind(id.as_str())
                .fetch_optional(&mut **tx)
                .await?
                .map(|r| r.try_get("version"))
                .transpose()?
            };
            match (existing, expected) {
                (Some(current), Some(wanted)) => {
                    return Err(FhirError::VersionMismatch { current, wanted })
                }
                (None, Some(wanted)) => {
                    return Err(FhirError::VersionMismatch { current: 0, wanted })
                }
                (Some(_), None) => {
                    return Err(FhirError::Internal(
                        "resource pointer changed under a write lock".into(),
                    ))
                }
                (None, None) => {
                    let inserted = sqlx::query(
                        "INSERT INTO fhir_current (instance, resource_type, id, version, deleted, last_updated_ms) \
                         VALUES ($1, $2, $3, 1, 0, $4) ON CONFLICT (instance, resource_type, id) DO NOTHING",
                    )
                    .bind(&inst)
                    .bind(rt.as_str())
                    .bind(id.as_str())
                    .bind(now_ms)
                    .execute(&mut **tx)
                    .await?;
                    if inserted.rows_affected() == 0 {
                        // Another writer created it first; the client may retry.
                        return Err(FhirError::Conflict(format!(
                            "{rt}/{id} was created concurrently; retry the request"
                        )));
                    }
                    (1, true)
                }
            }
        }
    };
    // A write after a deletion starts the resource again: report it as created.
    let created = created || was_deleted(tx, &inst, rt, id, version).await?;
    stamp(&mut resource, id, version, now);
    let body = resource.to_string();
    let seq: i64 = sqlx::query(
        "INSERT INTO fhir_versions (instance, resource_type, id, version, last_updated_ms, method, body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq",
    )
    .bind(&inst)
    .bind(rt.as_str())
    .bind(id.as_str())
    .bind(version)
    .bind(now_ms)
    .bind(method.as_str())
    .bind(&body)
    .fetch_one(&mut **tx)
    .await?
    .try_get("seq")?;
    // A brand-new resource has no index rows to replace.
    let fresh = version == 1;
    crate::search::index::write(
        tx,
        instance,
        rt.as_str(),
        id.as_str(),
        Some(&resource),
        fresh,
    )
    .await?;
    let action = if created {
        FhirResourceAction::Created
    } else {
        FhirResourceAction::Updated
    };
    enqueue_event(tx, instance, rt, id, version, action).await?;
    Ok(Written {
        version: Version {
            resource_type: rt.to_string(),
            id: id.to_string(),
            version,
            last_updated: now,
            method,
            body: Some(resource),
            seq,
        },
        created,
    })
}

async fn was_deleted(
    tx: &mut Transaction<'_, Any>,
    inst: &str,
    rt: &ResourceType,
    id: &ResourceId,
    version: i64,
) -> Result<bool, sqlx::Error> {
    if version <= 1 {
        return Ok(false);
    }
    let previous = sqlx::query(
        "SELECT body IS NULL AS gone FROM fhir_versions \
         WHERE instance = $1 AND resource_type = $2 AND id = $3 AND version = $4",
    )
    .bind(inst)
    .bind(rt.as_str())
    .bind(id.as_str())
    .bind(version - 1)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match previous {
        Some(row) => row
            .try_get::<bool, _>("gone")
            .or_else(|_| row.try_get::<i64, _>("gone").map(|v| v != 0))?,
        None => false,
    })
}

pub async fn delete_in(
    tx: &mut Transaction<'_, Any>,
    instance: &InstanceName,
    rt: &ResourceType,
    id: &ResourceId,
    hard: bool,
) -> Result<Option<Version>, FhirError> {
    let inst = instance.to_string();
    let now = Utc::now();
    if hard {
        let gone = sqlx::query(
            "DELETE FROM fhir_current WHERE instance = $1 AND resource_type = $2 AND id = $3 RETURNING version",
        )
        .bind(&inst)
        .bind(rt.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await?;
        sqlx::query(
            "DELETE FROM fhir_versions WHERE instance = $1 AND resource_type = $2 AND id = $3",
        )
        .bind(&inst)
        .bind(rt.as_str())
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?;
        crate::search::index::write(tx, instance, rt.as_str(), id.as_str(), None, false).await?;
        if let Some(row) = gone {
            let version: i64 = row.try_get("version")?;
            enqueue_event(tx, instance, rt, id, version, FhirResourceAction::Deleted).await?;
        }
        return Ok(None);
    }
    let row = sqlx::query(
        "UPDATE fhir_current SET version = version + 1, deleted = 1, last_updated_ms = $4 \
         WHERE instance = $1 AND resource_type = $2 AND id = $3 AND deleted = 0 RETURNING version",
    )
    .bind(&inst)
    .bind(rt.as_str())
    .bind(id.as_str())
    .bind(now.timestamp_millis())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let version: i64 = row.try_get("version")?;
    let seq: i64 = sqlx::query(
        "INSERT INTO fhir_versions (instance, resource_type, id, version, last_updated_ms, method, body) \
         VALUES ($1, $2, $3, $4, $5, 'DELETE', NULL) RETURNING seq",
    )
    .bind(&inst)
    .bind(rt.as_str())
    .bind(id.as_str())
    .bind(version)
    .bind(now.timestamp_millis())
    .fetch_one(&mut **tx)
    .await?
    .try_get("seq")?;
    crate::search::index::write(tx, instance, rt.as_str(), id.as_str(), None, false).await?;
    enqueue_event(tx, instance, rt, id, version, FhirResourceAction::Deleted).await?;
    Ok(Some(Version {
        resource_type: rt.to_string(),
        id: id.to_string(),
        version,
        last_updated: now,
        method: Method::Delete,
        body: None,
        seq,
    }))
}

/// Azure's FHIR event data: resource type, service, id, version.
async fn enqueue_event(
    tx: &mut Transaction<'_, Any>,
    instance: &InstanceName,
    rt: &ResourceType,
    id: &ResourceId,
    version: i64,
    action: FhirResourceAction,
) -> Result<(), FhirError> {
    let event = FhirResourceEvent {
        event_id: new_event_id(),
        instance: instance.to_string(),
        action: action as i32,
        resource_type: rt.to_string(),
        resource_id: id.to_string(),
        version_id: version,
        occurred_at_unix_ms: Utc::now().timestamp_millis(),
    };
    outbox::enqueue(
        tx,
        topics::FHIR_RESOURCES,
        format!("{instance}/{rt}/{id}"),
        &event,
    )
    .await
    .map_err(|e| FhirError::Internal(e.to_string()))
}
