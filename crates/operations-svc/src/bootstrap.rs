//! The workspace created at start when missing: `hds up` gives a newcomer working URLs at
//! once. It goes through the same path as any provisioning (a resource, an operation, a
//! command through the outbox), and its operation ids are derived from the resource ids, so
//! restarting never provisions twice.

use hds_core::db::Database;
use hds_core::events::v1::{OperationCommand, OperationKind as ProtoKind};
use hds_core::events::{new_event_id, now_unix_ms, topics};
use hds_core::names::{service_resource_id, InstanceName, ServiceKind, ServiceName, WorkspaceName};
use hds_core::outbox;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::operations::{self, NewOperation, OperationKind};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    /// `false` turns the bootstrap off (a deployment whose workspaces come through the API).
    #[serde(default = "default_true")]
    #[serde(deserialize_with = "hds_core::config::lenient")]
    pub enabled: bool,
    #[serde(default = "default_subscription")]
    pub subscription_id: String,
    #[serde(default = "default_resource_group")]
    pub resource_group: String,
    #[serde(default = "default_location")]
    pub location: String,
    #[serde(default = "default_workspace")]
    pub workspace: WorkspaceName,
    /// Service names to create in the workspace; an empty name skips that kind.
    #[serde(default = "default_fhir", deserialize_with = "name_or_empty")]
    pub fhir_service: Option<ServiceName>,
    #[serde(default = "default_dicom", deserialize_with = "name_or_empty")]
    pub dicom_service: Option<ServiceName>,
    #[serde(default = "default_medtech", deserialize_with = "name_or_empty")]
    pub medtech_service: Option<ServiceName>,
}

fn default_fhir() -> Option<ServiceName> {
    "fhir".parse().ok()
}
fn default_dicom() -> Option<ServiceName> {
    "dicom".parse().ok()
}
fn default_medtech() -> Option<ServiceName> {
    "medtech".parse().ok()
}

/// A service name, or `""` (or nothing) for none: TOML and environment variables have no null.
fn name_or_empty<'de, D>(deserializer: D) -> Result<Option<ServiceName>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

fn default_true() -> bool {
    true
}
fn default_subscription() -> String {
    "00000000-0000-0000-0000-000000000000".into()
}
fn default_resource_group() -> String {
    "hds".into()
}
fn default_location() -> String {
    "local".into()
}
fn default_workspace() -> WorkspaceName {
    "default".parse().expect("valid name")
}

impl Default for Bootstrap {
    fn default() -> Self {
        Self {
            enabled: true,
            subscription_id: default_subscription(),
            resource_group: default_resource_group(),
            location: default_location(),
            workspace: default_workspace(),
            fhir_service: default_fhir(),
            dicom_service: default_dicom(),
            medtech_service: default_medtech(),
        }
    }
}

/// One service the bootstrap creates.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub kind: ServiceKind,
    pub instance: InstanceName,
    pub resource_id: String,
    pub operation_id: String,
}

/// The operation id of a bootstrapped resource's creation: stable across restarts.
pub fn operation_id(resource_id: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("hds:bootstrap:{}", resource_id.to_ascii_lowercase()).as_bytes(),
    )
    .to_string()
}

pub fn plan(b: &Bootstrap) -> Vec<Planned> {
    if !b.enabled {
        return Vec::new();
    }
    [
        (ServiceKind::Fhir, &b.fhir_service),
        (ServiceKind::Dicom, &b.dicom_service),
        (ServiceKind::Medtech, &b.medtech_service),
    ]
    .into_iter()
    .filter_map(|(kind, name)| {
        let instance = InstanceName::new(b.workspace.clone(), name.clone()?);
        let resource_id =
            service_resource_id(&b.subscription_id, &b.resource_group, &instance, kind);
        Some(Planned {
            kind,
            operation_id: operation_id(&resource_id),
            instance,
            resource_id,
        })
    })
    .collect()
}

fn workspace_id(b: &Bootstrap) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.HealthcareApis/workspaces/{}",
        b.subscription_id, b.resource_group, b.workspace
    )
}

async fn insert_resource(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    kind: &str,
    instance: Option<&str>,
    location: &str,
    state: &str,
    active_operation: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let now = now_unix_ms();
    let done = sqlx::query(
        "INSERT INTO resources (id_key, id, kind, instance, location, properties_json, provisioning_state, etag, created_ms, updated_ms, active_operation) \
         VALUES ($1, $2, $3, $4, $5, '{}', $6, $7, $8, $8, $9) ON CONFLICT (id_key) DO NOTHING",
    )
    .bind(id.to_ascii_lowercase())
    .bind(id)
    .bind(kind)
    .bind(instance)
    .bind(location)
    .bind(state)
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(now)
    .bind(active_operation)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Creates whatever of the bootstrap is missing.
pub async fn apply(db: &Database, b: &Bootstrap) -> anyhow::Result<()> {
    for planned in plan(b) {
        let mut tx = db.begin().await?;
        insert_resource(
            &mut tx,
            &workspace_id(b),
            "workspaces",
            None,
            &b.location,
            "Succeeded",
            None,
        )
        .await?;
        let created = insert_resource(
            &mut tx,
            &planned.resource_id,
            planned.kind.arm_type(),
            Some(&planned.instance.to_string()),
            &b.location,
            "Creating",
            Some(&planned.operation_id),
        )
        .await?;
        if !created {
            continue;
        }
        operations::insert(
            &mut tx,
            NewOperation {
                id: &planned.operation_id,
                subscription_id: &b.subscription_id,
                location: &b.location,
                kind: OperationKind::Provision,
                resource_id: &planned.resource_id,
            },
        )
        .await?;
        let command = OperationCommand {
            event_id: new_event_id(),
            operation_id: planned.operation_id.clone(),
            kind: ProtoKind::ProvisionInstance as i32,
            resource_id: planned.resource_id.clone(),
            service_kind: planned.kind.to_proto() as i32,
            instance: planned.instance.to_string(),
            properties_json: "{}".into(),
            requested_at_unix_ms: now_unix_ms(),
        };
        outbox::enqueue(
            &mut tx,
            topics::OPERATIONS_COMMANDS,
            planned.resource_id.to_ascii_lowercase(),
            &command,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(resource = %planned.resource_id, operation = %planned.operation_id, "bootstrap: provisioning requested");
    }
    Ok(())
}

/// The provisioning state of a resource, if it exists.
pub async fn provisioning_state(
    db: &Database,
    resource_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query("SELECT provisioning_state FROM resources WHERE id_key = $1")
        .bind(resource_id.to_ascii_lowercase())
        .fetch_optional(db.pool())
        .await?
        .map(|r| r.try_get("provisioning_state"))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Settings;

    #[test]
    fn a_bootstrap_section_fills_in_defaults_and_empty_names_skip() {
        let mut defaults = Settings::local_defaults(std::path::Path::new("/tmp/x"));
        defaults.bootstrap = None;
        let none: Settings = hds_core::config::load(&defaults, None, vec![]).unwrap();
        assert_eq!(none.bootstrap, None);
        let some: Settings = hds_core::config::load(
            &defaults,
            None,
            vec![
                ("bootstrap.workspace", "contoso".into()),
                ("bootstrap.dicom_service", "".into()),
            ],
        )
        .unwrap();
        let b = some.bootstrap.unwrap();
        assert_eq!(b.workspace.as_ref(), "contoso");
        let kinds: Vec<ServiceKind> = plan(&b).iter().map(|p| p.kind).collect();
        assert_eq!(kinds, vec![ServiceKind::Fhir, ServiceKind::Medtech]);
        assert!(b.enabled);
    }
}
