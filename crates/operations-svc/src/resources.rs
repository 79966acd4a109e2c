//! The stored resources and their ARM JSON: `id`, `name`, `type`, `etag`, `location`,
//! `tags`, `systemData`, `kind`, `identity`, `properties` (with `provisioningState`).

use chrono::{TimeZone, Utc};
use hds_core::events::topics;
use hds_core::names::InstanceName;
use serde_json::{json, Map, Value};
use sqlx::{any::AnyRow, Any, Executor, Row};

use crate::resource_id::ResourceType;

/// ARM's `provisioningState` values that hds goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisioningState {
    Creating,
    Updating,
    Deleting,
    Succeeded,
    Failed,
    Canceled,
}

impl ProvisioningState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProvisioningState::Creating => "Creating",
            ProvisioningState::Updating => "Updating",
            ProvisioningState::Deleting => "Deleting",
            ProvisioningState::Succeeded => "Succeeded",
            ProvisioningState::Failed => "Failed",
            ProvisioningState::Canceled => "Canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Creating" => ProvisioningState::Creating,
            "Updating" => ProvisioningState::Updating,
            "Deleting" => ProvisioningState::Deleting,
            "Succeeded" => ProvisioningState::Succeeded,
            "Failed" => ProvisioningState::Failed,
            "Canceled" => ProvisioningState::Canceled,
            _ => return None,
        })
    }
}

/// What operations-svc knows of the deployment, for the members Azure computes: where the
/// data-plane services are reached, and the Entra ID tenant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceUrls {
    /// dicom-svc's base URL: a DICOM service's `serviceUrl` is `{dicom}/{instance}`.
    pub dicom: Option<String>,
    /// The tenant of a FHIR service's default authority,
    /// `https://login.microsoftonline.com/{tenant}`; `None`: no default authority is shown.
    pub tenant: Option<String>,
}

/// Azure's host of FHIR services: a service's default audience is its URL there.
const FHIR_SERVICE_HOST: &str = "fhir.azurehealthcareapis.com";
/// Entra ID's authority host.
const ENTRA_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The tenant of an Entra ID issuer (`https://login.microsoftonline.com/{tenant}/v2.0`,
/// `https://sts.windows.net/{tenant}/`), if `issuer` is one.
pub fn entra_tenant(issuer: &str) -> Option<String> {
    let rest = issuer
        .strip_prefix("https://login.microsoftonline.com/")
        .or_else(|| issuer.strip_prefix("https://sts.windows.net/"))?;
    let tenant = rest.split('/').next()?;
    (!tenant.is_empty()).then(|| tenant.to_owned())
}

impl ServiceUrls {
    /// The `authenticationConfiguration` Azure gives a FHIR service that is sent none (its
    /// tenant's authority, its own URL as audience). Shown only: an instance without its own
    /// authority and audience checks tokens against fhir-svc's `[auth]`, and what equals
    /// these defaults is not stored (see [`drop_computed_defaults`]), so that a client that
    /// PUTs back what it read changes nothing.
    fn fhir_authentication(&self, instance: Option<&str>) -> Map<String, Value> {
        let mut auth = Map::new();
        if let Some(tenant) = &self.tenant {
            auth.insert(
                "authority".into(),
                format!("{ENTRA_AUTHORITY}/{tenant}").into(),
            );
        }
        if let Some(instance) = instance {
            auth.insert(
                "audience".into(),
                format!("https://{instance}.{FHIR_SERVICE_HOST}").into(),
            );
        }
        auth
    }

    /// The read-only `serviceUrl` of a resource, for the types that have one.
    fn service_url(&self, r: &Resource) -> Option<String> {
        match (r.rtype, &self.dicom, &r.instance) {
            (ResourceType::DicomService, Some(base), Some(instance)) => {
                Some(format!("{}/{instance}", base.trim_end_matches('/')))
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// The id as the resource was created (ARM keeps the first spelling).
    pub id: String,
    pub rtype: ResourceType,
    /// `{ws}-{service}` for resources a data-plane instance serves.
    pub instance: Option<String>,
    pub location: String,
    pub tags: Map<String, Value>,
    pub kind: Option<String>,
    pub identity: Option<Value>,
    /// The writable properties as the client sent them (mapping documents verbatim).
    pub properties: Map<String, Value>,
    pub state: ProvisioningState,
    pub etag: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub created_by: String,
    pub modified_by: String,
    pub active_operation: Option<String>,
}

fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// Whether the type has a managed `identity` (`ServiceManagedIdentity` in the spec).
fn has_identity(t: ResourceType) -> bool {
    matches!(
        t,
        ResourceType::FhirService | ResourceType::DicomService | ResourceType::IotConnector
    )
}

/// The `properties` members Azure returns although the client did not send them (its
/// defaults, and read-only members the service computes), per type, with the values hds
/// actually behaves by, so that a client that PUTs back what it read changes nothing.
/// Taken from the spec, `Microsoft.HealthcareApis` 2024-03-31 (`healthcare-apis.json`
/// definitions and the `examples/` responses):
///
/// - workspace (`Workspace.properties`; `workspaces/Workspaces_Get.json` shows only
///   `provisioningState`): `privateEndpointConnections: []` (private endpoints are not
///   offered), `publicNetworkAccess: "Enabled"`;
/// - FHIR service (`fhirservices/FhirServices_Create.json`, `FhirServices_Get.json`,
///   `FhirServiceProperties`): `acrConfiguration` without registries,
///   `authenticationConfiguration.smartProxyEnabled: false` and `smartIdentityProviders: []`,
///   `corsConfiguration` without origins (no CORS), `exportConfiguration`,
///   `importConfiguration` disabled, `implementationGuidesConfiguration.usCoreMissingData:
///   false`, `resourceVersionPolicyConfiguration` `versioned` (fhir-svc's default),
///   `privateEndpointConnections: []`, `publicNetworkAccess: "Enabled"`, `eventState:
///   "Disabled"` (hds publishes no Event Grid events), `encryption` without a
///   customer-managed key;
/// - DICOM service (`dicomservices/DicomServices_Get.json`, `DicomServices_Patch.json`,
///   `DicomServiceProperties`): `authenticationConfiguration`, `corsConfiguration` as FHIR's,
///   `privateEndpointConnections`, `publicNetworkAccess`, `eventState`, `encryption`,
///   `storageConfiguration` (hds's blob store: no storage account), `enableDataPartitions:
///   false` (dicom-svc's default);
/// - IoT connector (`iotconnectors/iotconnector_Patch.json`; 2023-11-01's `iotconnector_Get.json`):
///   `ingestionEndpointConfiguration` with the topic medtech-svc reads when none is named
///   (`eventHubName: "hds.devices.{ws}-{name}"`) and `consumerGroup: "$Default"` (which
///   medtech-svc reads as the instance's own group), and `deviceMapping` (without content
///   until the client sends one);
/// - FHIR destination (`iotconnector_fhirdestination_Create.json`): every member is
///   required in the request, nothing to add.
///
/// Computed as Azure does, outside this table (see [`ServiceUrls`]): a FHIR service's
/// `authenticationConfiguration.authority` (`https://login.microsoftonline.com/{tenant}`,
/// when the tenant is known) and `audience` (`https://{ws}-{name}.fhir.azurehealthcareapis.com`).
///
/// What hds cannot know, and leaves out: the DICOM service's
/// `authority`/`audiences` when the client sends none (Azure computes them from the tenant
/// and the service URL; hds's data-plane services then check tokens against their own
/// `[auth]` settings, which operations-svc does not see), a DICOM `serviceUrl` without
/// `[management] dicom_base_url`, `exportConfiguration.storageAccountName`,
/// `importConfiguration.integrationDataStore` and `corsConfiguration.maxAge` (no default:
/// Azure shows `null`), `ingestionEndpointConfiguration.fullyQualifiedEventHubNamespace`
/// (hds has one bus, not Event Hubs namespaces), and `identity.principalId`/`tenantId`.
fn defaults(t: ResourceType, instance: Option<&str>) -> Value {
    let no_cors = json!({"origins": [], "headers": [], "methods": [], "allowCredentials": false});
    match t {
        ResourceType::Workspace => json!({
            "privateEndpointConnections": [],
            "publicNetworkAccess": "Enabled",
        }),
        ResourceType::FhirService => json!({
            "acrConfiguration": {"loginServers": [], "ociArtifacts": []},
            "authenticationConfiguration": {"smartProxyEnabled": false, "smartIdentityProviders": []},
            "corsConfiguration": no_cors,
            "exportConfiguration": {},
            "importConfiguration": {"enabled": false, "initialImportMode": false},
            "implementationGuidesConfiguration": {"usCoreMissingData": false},
            "resourceVersionPolicyConfiguration": {"default": "versioned", "resourceTypeOverrides": {}},
            "privateEndpointConnections": [],
            "publicNetworkAccess": "Enabled",
            "eventState": "Disabled",
            "encryption": {},
        }),
        ResourceType::DicomService => json!({
            "authenticationConfiguration": {},
            "corsConfiguration": no_cors,
            "privateEndpointConnections": [],
            "publicNetworkAccess": "Enabled",
            "eventState": "Disabled",
            "encryption": {},
            "storageConfiguration": {},
            "enableDataPartitions": false,
        }),
        ResourceType::IotConnector => {
            let mut ingestion = json!({"consumerGroup": "$Default"});
            if let Some(name) = instance.and_then(|i| i.parse::<InstanceName>().ok()) {
                ingestion["eventHubName"] = topics::devices(&name).into();
            }
            json!({
                "ingestionEndpointConfiguration": ingestion,
                "deviceMapping": {},
            })
        }
        ResourceType::FhirDestination => json!({}),
    }
}

/// Adds the members of `defaults` that `target` lacks (or has as `null`), member by member
/// in nested objects; what the client set is never replaced.
fn fill(target: &mut Map<String, Value>, defaults: Map<String, Value>) {
    for (name, default) in defaults {
        match (target.get_mut(&name), default) {
            (Some(Value::Object(set)), Value::Object(d)) => fill(set, d),
            (None | Some(Value::Null), d) => {
                target.insert(name, d);
            }
            _ => {}
        }
    }
}

/// Removes from a PUT's `properties` the members equal to what Azure computes and hds only
/// shows (a FHIR service's default authority and audience): a client that PUTs back what it
/// read must not turn the shown defaults into settings fhir-svc would then enforce.
pub fn drop_computed_defaults(
    t: ResourceType,
    instance: Option<&str>,
    properties: &mut Map<String, Value>,
    urls: &ServiceUrls,
) {
    if t != ResourceType::FhirService {
        return;
    }
    let computed = urls.fhir_authentication(instance);
    if let Some(Value::Object(auth)) = properties.get_mut("authenticationConfiguration") {
        for (name, value) in computed {
            if auth.get(&name) == Some(&value) {
                auth.remove(&name);
            }
        }
    }
}

impl Resource {
    pub fn name(&self) -> &str {
        self.id.rsplit('/').next().unwrap_or_default()
    }

    pub fn key(&self) -> String {
        self.id.to_ascii_lowercase()
    }

    /// The resource as ARM shows it: the client's `properties` with the members Azure fills
    /// in (see [`defaults`]) where the client left them out.
    pub fn to_json(&self, urls: &ServiceUrls) -> Value {
        let mut properties = self.properties.clone();
        properties.insert("provisioningState".into(), self.state.as_str().into());
        if let Some(url) = urls.service_url(self) {
            properties.insert("serviceUrl".into(), url.into());
        }
        if let Value::Object(d) = defaults(self.rtype, self.instance.as_deref()) {
            fill(&mut properties, d);
        }
        if self.rtype == ResourceType::FhirService {
            let mut computed = Map::new();
            computed.insert(
                "authenticationConfiguration".into(),
                Value::Object(urls.fhir_authentication(self.instance.as_deref())),
            );
            fill(&mut properties, computed);
        }
        let mut body = json!({
            "id": self.id,
            "name": self.name(),
            "type": self.rtype.arm_type(),
            "etag": self.etag,
            "location": self.location,
        });
        let obj = body.as_object_mut().expect("an object");
        if self.rtype != ResourceType::FhirDestination {
            obj.insert("tags".into(), Value::Object(self.tags.clone()));
        }
        if let Some(kind) = &self.kind {
            obj.insert("kind".into(), kind.clone().into());
        }
        match &self.identity {
            Some(identity) => {
                obj.insert("identity".into(), identity.clone());
            }
            // Services without a managed identity show it as Azure does.
            None if has_identity(self.rtype) => {
                obj.insert("identity".into(), json!({"type": "None"}));
            }
            None => {}
        }
        obj.insert(
            "systemData".into(),
            json!({
                "createdBy": self.created_by,
                "createdByType": "User",
                "createdAt": rfc3339(self.created_ms),
                "lastModifiedBy": self.modified_by,
                "lastModifiedByType": "User",
                "lastModifiedAt": rfc3339(self.updated_ms),
            }),
        );
        obj.insert("properties".into(), Value::Object(properties));
        body
    }

    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let kind: String = row.try_get("kind")?;
        let state: String = row.try_get("provisioning_state")?;
        let identity: Option<String> = row.try_get("identity_json")?;
        Ok(Resource {
            id: row.try_get("id")?,
            rtype: ResourceType::from_segment(&kind).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown resource kind '{kind}'").into())
            })?,
            instance: row.try_get("instance")?,
            location: row.try_get("location")?,
            tags: object(&row.try_get::<String, _>("tags_json")?),
            kind: row.try_get("resource_kind")?,
            identity: identity.and_then(|i| serde_json::from_str(&i).ok()),
            properties: object(&row.try_get::<String, _>("properties_json")?),
            state: ProvisioningState::parse(&state).unwrap_or(ProvisioningState::Failed),
            etag: row.try_get("etag")?,
            created_ms: row.try_get("created_ms")?,
            updated_ms: row.try_get("updated_ms")?,
            created_by: row.try_get("created_by")?,
            modified_by: row.try_get("modified_by")?,
            active_operation: row.try_get("active_operation")?,
        })
    }
}

const COLUMNS: &str = "id, kind, instance, location, tags_json, resource_kind, identity_json, \
    properties_json, provisioning_state, etag, created_ms, updated_ms, created_by, modified_by, \
    active_operation";

pub async fn get<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    key: &str,
) -> Result<Option<Resource>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM resources WHERE id_key = $1"
    ))
    .bind(key)
    .fetch_optional(executor)
    .await?
    .map(|r| Resource::from_row(&r))
    .transpose()
}

/// The resources of type `t` whose key starts with `prefix` (lowercase), in id order: at
/// most `limit` of them, starting after the key `after`. A prefix comparison rather than
/// LIKE: resource group names may contain `_`.
pub async fn list<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    t: ResourceType,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Resource>, sqlx::Error> {
    // Keys sharing the prefix sort after it, so the prefix itself is a safe "after nothing".
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM resources WHERE kind = $1 AND substr(id_key, 1, length($2)) = $2 \
         AND id_key > $3 ORDER BY id_key LIMIT $4"
    ))
    .bind(t.segment())
    .bind(prefix)
    .bind(after.unwrap_or(prefix))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(executor)
    .await?
    .iter()
    .map(Resource::from_row)
    .collect()
}

/// Every resource of type `t` whose key starts with `prefix`, in id order.
pub async fn list_all<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    t: ResourceType,
    prefix: &str,
) -> Result<Vec<Resource>, sqlx::Error> {
    list(executor, t, prefix, None, usize::MAX).await
}

/// Whether anything is nested below `key`.
pub async fn has_children<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    key: &str,
) -> Result<bool, sqlx::Error> {
    let prefix = format!("{key}/");
    Ok(
        sqlx::query(
            "SELECT id_key FROM resources WHERE substr(id_key, 1, length($1)) = $1 LIMIT 1",
        )
        .bind(&prefix)
        .fetch_optional(executor)
        .await?
        .is_some(),
    )
}

fn text(v: &Map<String, Value>) -> String {
    Value::Object(v.clone()).to_string()
}

/// Inserts a new resource; `false` when one with this id exists already (a racing PUT).
pub async fn insert<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    r: &Resource,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO resources (id_key, id, kind, instance, location, tags_json, resource_kind, identity_json, \
         properties_json, provisioning_state, etag, created_ms, updated_ms, created_by, modified_by, active_operation) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (id_key) DO NOTHING",
    )
    .bind(r.key())
    .bind(&r.id)
    .bind(r.rtype.segment())
    .bind(&r.instance)
    .bind(&r.location)
    .bind(text(&r.tags))
    .bind(&r.kind)
    .bind(r.identity.as_ref().map(Value::to_string))
    .bind(text(&r.properties))
    .bind(r.state.as_str())
    .bind(&r.etag)
    .bind(r.created_ms)
    .bind(r.updated_ms)
    .bind(&r.created_by)
    .bind(&r.modified_by)
    .bind(&r.active_operation)
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces a resource's mutable parts, only if no operation is running on it (the
/// condition that makes a concurrent change lose with 409 rather than interleave).
pub async fn update_idle<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    r: &Resource,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE resources SET tags_json = $2, resource_kind = $3, identity_json = $4, properties_json = $5, \
         provisioning_state = $6, etag = $7, updated_ms = $8, modified_by = $9, active_operation = $10 \
         WHERE id_key = $1 AND active_operation IS NULL",
    )
    .bind(r.key())
    .bind(text(&r.tags))
    .bind(&r.kind)
    .bind(r.identity.as_ref().map(Value::to_string))
    .bind(text(&r.properties))
    .bind(r.state.as_str())
    .bind(&r.etag)
    .bind(r.updated_ms)
    .bind(&r.modified_by)
    .bind(&r.active_operation)
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn delete<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    key: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM resources WHERE id_key = $1")
        .bind(key)
        .execute(executor)
        .await?;
    Ok(())
}

/// Takes the row lock of a resource (PostgreSQL; SQLite holds the database lock already),
/// so that changes building on it serialize.
pub async fn lock<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    key: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE resources SET updated_ms = updated_ms WHERE id_key = $1")
        .bind(key)
        .execute(executor)
        .await?;
    Ok(())
}

/// Ends a resource's operation: its state and no active operation. Only the operation that
/// is active may end it (a stale report for an older operation changes nothing).
pub async fn finish<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    key: &str,
    operation: &str,
    state: ProvisioningState,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE resources SET provisioning_state = $1, active_operation = NULL \
         WHERE id_key = $2 AND (active_operation = $3 OR active_operation IS NULL)",
    )
    .bind(state.as_str())
    .bind(key)
    .bind(operation)
    .execute(executor)
    .await?;
    Ok(())
}

/// Removes a resource whose deletion `operation` carried out.
pub async fn remove_deleted<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    key: &str,
    operation: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM resources WHERE id_key = $1 AND (active_operation = $2 OR active_operation IS NULL)")
        .bind(key)
        .bind(operation)
        .execute(executor)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_gaps_and_never_replace() {
        let mut set =
            json!({"corsConfiguration": {"origins": ["*"], "headers": null}, "eventState": "x"});
        let Value::Object(m) = &mut set else {
            unreachable!()
        };
        fill(
            m,
            json!({"corsConfiguration": {"origins": [], "headers": [], "methods": []}, "eventState": "Disabled", "encryption": {}})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(
            set,
            json!({"corsConfiguration": {"origins": ["*"], "headers": [], "methods": []}, "eventState": "x", "encryption": {}})
        );
        assert_eq!(
            defaults(ResourceType::IotConnector, Some("ws1-iot1"))
                ["ingestionEndpointConfiguration"],
            json!({"consumerGroup": "$Default", "eventHubName": "hds.devices.ws1-iot1"})
        );
    }

    #[test]
    fn the_tenant_comes_from_entra_id_issuers_only() {
        for (issuer, tenant) in [
            ("https://login.microsoftonline.com/t1/v2.0", Some("t1")),
            (
                "https://login.microsoftonline.com/contoso.onmicrosoft.com",
                Some("contoso.onmicrosoft.com"),
            ),
            ("https://sts.windows.net/t2/", Some("t2")),
            ("https://login.microsoftonline.com/", None),
            ("hds-local", None),
            ("https://login.example.org/t3", None),
        ] {
            assert_eq!(entra_tenant(issuer).as_deref(), tenant, "{issuer}");
        }
    }

    #[test]
    fn only_the_computed_authentication_defaults_are_dropped() {
        let urls = ServiceUrls {
            dicom: None,
            tenant: Some("t1".into()),
        };
        let mut p = json!({"authenticationConfiguration": {
            "authority": "https://login.microsoftonline.com/t1",
            "audience": "https://fhir.example.org",
            "smartProxyEnabled": true}})
        .as_object()
        .unwrap()
        .clone();
        drop_computed_defaults(ResourceType::FhirService, Some("ws1-fhir1"), &mut p, &urls);
        assert_eq!(
            Value::Object(p.clone()),
            json!({"authenticationConfiguration": {"audience": "https://fhir.example.org", "smartProxyEnabled": true}})
        );
        let mut q = json!({"authenticationConfiguration": {
            "audience": "https://ws1-fhir1.fhir.azurehealthcareapis.com"}})
        .as_object()
        .unwrap()
        .clone();
        drop_computed_defaults(ResourceType::DicomService, Some("ws1-fhir1"), &mut q, &urls);
        assert!(
            q["authenticationConfiguration"].get("audience").is_some(),
            "not a FHIR service"
        );
        drop_computed_defaults(ResourceType::FhirService, Some("ws1-fhir1"), &mut q, &urls);
        assert_eq!(Value::Object(q), json!({"authenticationConfiguration": {}}));
    }
}
