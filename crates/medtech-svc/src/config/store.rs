//! The `medtech_config` table: one row per instance, each part set on its own.

use hds_core::db::{Database, Migrations};
use sqlx::Row;

use super::{Destination, IngestionEndpoint, InstanceConfig};

pub fn migrations() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./migrations/postgres"),
        sqlite: sqlx::migrate!("./migrations/sqlite"),
    }
}

/// A part of the configuration, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    DeviceMapping,
    FhirMapping,
    Destination,
    /// The IotConnector's `ingestionEndpointConfiguration` (set by provisioning only).
    Ingestion,
}

impl Part {
    fn column(self) -> &'static str {
        match self {
            Part::DeviceMapping => "device_mapping",
            Part::FhirMapping => "fhir_mapping",
            Part::Destination => "destination_json",
            Part::Ingestion => "ingestion_json",
        }
    }
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<InstanceConfig, sqlx::Error> {
    let destination: Option<String> = row.try_get("destination_json")?;
    let ingestion: Option<String> = row.try_get("ingestion_json")?;
    Ok(InstanceConfig {
        device_mapping: row.try_get("device_mapping")?,
        fhir_mapping: row.try_get("fhir_mapping")?,
        // Written by `set` from a validated Destination; a row edited by hand into something
        // else reads as "no destination" rather than failing the pipeline.
        destination: destination.and_then(|d| serde_json::from_str::<Destination>(&d).ok()),
        // Likewise written from a validated IngestionEndpoint; unreadable means the defaults.
        ingestion: ingestion.and_then(|i| serde_json::from_str::<IngestionEndpoint>(&i).ok()),
        revision: row.try_get("revision")?,
    })
}

const SELECT: &str = "SELECT device_mapping, fhir_mapping, destination_json, ingestion_json, \
     revision FROM medtech_config WHERE instance = $1";

pub async fn get(db: &Database, instance: &str) -> Result<InstanceConfig, sqlx::Error> {
    let row = sqlx::query(SELECT)
        .bind(instance)
        .fetch_optional(db.pool())
        .await?;
    Ok(match row {
        Some(r) => from_row(&r)?,
        None => InstanceConfig::default(),
    })
}

/// [`get`] inside a transaction of the caller's (deprovisioning reads what it must delete).
pub async fn get_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    instance: &str,
) -> Result<InstanceConfig, sqlx::Error> {
    let row = sqlx::query(SELECT)
        .bind(instance)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(match row {
        Some(r) => from_row(&r)?,
        None => InstanceConfig::default(),
    })
}

/// Sets several parts at once (one transaction, one revision); parts not named stay as they
/// are. Returns the new revision.
pub async fn set(
    db: &Database,
    instance: &str,
    parts: &[(Part, String)],
) -> Result<i64, sqlx::Error> {
    let mut tx = db.begin().await.map_err(db_error)?;
    let revision = set_in(&mut tx, instance, parts).await?;
    tx.commit().await?;
    Ok(revision)
}

/// [`set`] inside a transaction of the caller's (provisioning's).
pub async fn set_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    instance: &str,
    parts: &[(Part, String)],
) -> Result<i64, sqlx::Error> {
    let now = hds_core::events::now_unix_ms();
    sqlx::query(
        "INSERT INTO medtech_config (instance, revision, updated_ms) VALUES ($1, 0, $2) \
         ON CONFLICT (instance) DO NOTHING",
    )
    .bind(instance)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    for (part, value) in parts {
        // The column name comes from the closed `Part` enum, never from input.
        let sql = format!(
            "UPDATE medtech_config SET {} = $2 WHERE instance = $1",
            part.column()
        );
        sqlx::query(&sql)
            .bind(instance)
            .bind(value)
            .execute(&mut **tx)
            .await?;
    }
    let revision: i64 = sqlx::query(
        "UPDATE medtech_config SET revision = revision + 1, updated_ms = $2 WHERE instance = $1 \
         RETURNING revision",
    )
    .bind(instance)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .try_get("revision")?;
    Ok(revision)
}

/// Forgets an instance's configuration (inside the deprovisioning transaction).
pub async fn delete(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    instance: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM medtech_config WHERE instance = $1")
        .bind(instance)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Every provisioned instance with its configuration revision (0: nothing set yet).
pub async fn revisions(db: &Database) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query(
        "SELECT i.name AS name, COALESCE(c.revision, 0) AS revision FROM instances i \
         LEFT JOIN medtech_config c ON c.instance = i.name ORDER BY i.name",
    )
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| Ok((r.try_get("name")?, r.try_get("revision")?)))
    .collect()
}

fn db_error(e: hds_core::db::DbError) -> sqlx::Error {
    match e {
        hds_core::db::DbError::Query(q) => q,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}
