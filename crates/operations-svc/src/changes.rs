//! ARM's asynchronous protocol for changes: PUT, PATCH and DELETE.
//!
//! A change is one transaction: the resource row (with the operation now active on it), the
//! operation record and, when a data-plane service must act, the `OperationCommand` in the
//! outbox (keyed by the resource id of the instance, so commands of one instance are handled
//! in order). The operation ends when the data plane reports on `hds.operations.status`
//! (see `status`). Workspaces have no data-plane side: their operations end in the same
//! transaction.
//!
//! A resource with an active operation refuses further changes (409
//! `AnotherOperationInProgress`); the refusal is the `active_operation IS NULL` condition of
//! the UPDATE itself, so two racing requests cannot both win on either backend.

use hds_core::db::Database;
use hds_core::events::v1::{OperationCommand, OperationKind as ProtoKind};
use hds_core::events::{new_event_id, now_unix_ms, topics};
use hds_core::outbox::{self, RelayWaker};
use serde_json::{Map, Value};
use sqlx::{Any, Transaction};

use crate::body::{same_location, PatchBody, PutBody};
use crate::error::ArmError;
use crate::operations::{self, NewOperation, OperationKind, Report};
use crate::resource_id::{collection_prefix, ResourcePath, ResourceType};
use crate::resources::{self, ProvisioningState, Resource};

/// Where a change runs and who asks.
pub struct Ctx<'a> {
    pub db: &'a Database,
    pub relay: &'a RelayWaker,
    pub caller: &'a str,
}

/// `If-Match` / `If-None-Match` of the request.
#[derive(Debug, Default, Clone)]
pub struct Preconditions {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
}

fn bare_etag(s: &str) -> &str {
    let s = s.trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    s.trim_matches('"')
}

impl Preconditions {
    fn check(&self, existing: Option<&Resource>, id: &str) -> Result<(), ArmError> {
        let failed = || ArmError::PreconditionFailed(id.to_owned());
        if let Some(m) = &self.if_match {
            let Some(r) = existing else {
                return Err(failed());
            };
            let ok = m.split(',').map(bare_etag).any(|t| t == "*" || t == r.etag);
            if !ok {
                return Err(failed());
            }
        }
        if let Some(n) = &self.if_none_match {
            if let Some(r) = existing {
                if n.split(',').map(bare_etag).any(|t| t == "*" || t == r.etag) {
                    return Err(failed());
                }
            }
        }
        Ok(())
    }
}

/// A change the data plane (or, for workspaces, nobody) still carries out.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub resource: Resource,
    pub created: bool,
    pub operation: String,
    pub subscription: String,
}

fn new_etag() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn busy(r: &Resource) -> Result<(), ArmError> {
    match r.active_operation {
        Some(_) => Err(ArmError::AnotherOperationInProgress(r.id.clone())),
        None => Ok(()),
    }
}

/// PUT: creates the resource (201) or replaces its settings (200).
pub async fn put(
    ctx: &Ctx<'_>,
    path: &ResourcePath,
    body: PutBody,
    pre: &Preconditions,
) -> Result<Accepted, ArmError> {
    let t = path.rtype();
    let key = path.key();
    let mut tx = ctx.db.begin().await?;
    let parent = match path.parent() {
        Some(p) => {
            // Serializes with other changes below the same parent (a connector's
            // destinations are all sent in each of its commands).
            resources::lock(&mut *tx, &p.key()).await?;
            let found = resources::get(&mut *tx, &p.key())
                .await?
                .filter(|r| r.state != ProvisioningState::Deleting)
                .ok_or_else(|| ArmError::ParentResourceNotFound(p.id()))?;
            Some(found)
        }
        None => None,
    };
    let existing = resources::get(&mut *tx, &key).await?;
    pre.check(existing.as_ref(), &path.id())?;
    if let Some(e) = &existing {
        busy(e)?;
    }
    if t == ResourceType::FhirDestination {
        check_fhir_service_reference(&mut tx, &body.properties).await?;
        if let (None, Some(connector)) = (&existing, &parent) {
            if resources::has_children(&mut *tx, &connector.key()).await? {
                return Err(ArmError::FhirDestinationQuotaExceeded(
                    connector.name().to_owned(),
                ));
            }
        }
    }
    let location = body
        .location
        .clone()
        .or_else(|| existing.as_ref().map(|e| e.location.clone()))
        .or_else(|| parent.as_ref().map(|p| p.location.clone()))
        .ok_or(ArmError::LocationRequired)?;
    if let Some(e) = &existing {
        if !same_location(&e.location, &location) {
            return Err(ArmError::InvalidResourceLocation {
                id: e.id.clone(),
                existing: e.location.clone(),
                requested: location,
            });
        }
    }

    let operation = uuid::Uuid::new_v4().to_string();
    let now = now_unix_ms();
    let synchronous = t.service_kind().is_none();
    let state = match (&existing, synchronous) {
        (_, true) => ProvisioningState::Succeeded,
        (Some(_), false) => ProvisioningState::Updating,
        (None, false) => ProvisioningState::Creating,
    };
    let resource = Resource {
        id: existing
            .as_ref()
            .map(|e| e.id.clone())
            .unwrap_or_else(|| path.id()),
        rtype: t,
        instance: path.instance().map(|i| i.to_string()),
        location: existing
            .as_ref()
            .map(|e| e.location.clone())
            .unwrap_or(location),
        tags: body.tags.unwrap_or_default(),
        kind: body.kind,
        identity: body.identity,
        properties: body.properties,
        state,
        etag: new_etag(),
        created_ms: existing.as_ref().map(|e| e.created_ms).unwrap_or(now),
        updated_ms: now,
        created_by: existing
            .as_ref()
            .map(|e| e.created_by.clone())
            .unwrap_or_else(|| ctx.caller.to_owned()),
        modified_by: ctx.caller.to_owned(),
        active_operation: (!synchronous).then(|| operation.clone()),
    };
    let written = match &existing {
        Some(_) => resources::update_idle(&mut *tx, &resource).await?,
        None => resources::insert(&mut *tx, &resource).await?,
    };
    if !written {
        return Err(ArmError::AnotherOperationInProgress(resource.id));
    }
    record_operation(
        &mut tx,
        path,
        &resource,
        &operation,
        OperationKind::Provision,
    )
    .await?;
    if synchronous {
        operations::advance(&mut tx, &operation, Report::succeeded_now()).await?;
    } else {
        send_command(&mut tx, &resource, parent.as_ref(), &operation, false).await?;
    }
    tx.commit().await?;
    ctx.relay.wake();
    Ok(Accepted {
        created: existing.is_none(),
        resource,
        operation,
        subscription: path.subscription.clone(),
    })
}

/// PATCH: tags and identity, which no data-plane service uses: done at once (200).
pub async fn patch(
    ctx: &Ctx<'_>,
    path: &ResourcePath,
    body: PatchBody,
    pre: &Preconditions,
) -> Result<Resource, ArmError> {
    let mut tx = ctx.db.begin().await?;
    let mut r = resources::get(&mut *tx, &path.key())
        .await?
        .ok_or_else(|| ArmError::ResourceNotFound(path.id()))?;
    pre.check(Some(&r), &r.id)?;
    busy(&r)?;
    if let Some(tags) = body.tags {
        r.tags = tags;
    }
    if let Some(identity) = body.identity {
        r.identity = Some(identity);
    }
    r.etag = new_etag();
    r.updated_ms = now_unix_ms();
    r.modified_by = ctx.caller.to_owned();
    if !resources::update_idle(&mut *tx, &r).await? {
        return Err(ArmError::AnotherOperationInProgress(r.id));
    }
    tx.commit().await?;
    Ok(r)
}

/// DELETE: `None` when there is nothing to delete (204).
pub async fn delete(
    ctx: &Ctx<'_>,
    path: &ResourcePath,
    pre: &Preconditions,
) -> Result<Option<Accepted>, ArmError> {
    let mut tx = ctx.db.begin().await?;
    let parent = match path.parent() {
        Some(p) => {
            resources::lock(&mut *tx, &p.key()).await?;
            resources::get(&mut *tx, &p.key()).await?
        }
        None => None,
    };
    let Some(mut r) = resources::get(&mut *tx, &path.key()).await? else {
        pre.check(None, &path.id())?;
        return Ok(None);
    };
    pre.check(Some(&r), &r.id)?;
    busy(&r)?;
    // A workspace with services, or a connector with destinations, is refused rather than
    // cascaded: deleting data is never a side effect (docs/architecture.md).
    if resources::has_children(&mut *tx, &r.key()).await? {
        return Err(ArmError::NestedResourcesExist(r.id));
    }
    let operation = uuid::Uuid::new_v4().to_string();
    record_operation(&mut tx, path, &r, &operation, OperationKind::Deprovision).await?;
    if r.rtype.service_kind().is_none() {
        resources::delete(&mut *tx, &r.key()).await?;
        operations::advance(&mut tx, &operation, Report::succeeded_now()).await?;
    } else {
        r.state = ProvisioningState::Deleting;
        r.etag = new_etag();
        r.updated_ms = now_unix_ms();
        r.modified_by = ctx.caller.to_owned();
        r.active_operation = Some(operation.clone());
        if !resources::update_idle(&mut *tx, &r).await? {
            return Err(ArmError::AnotherOperationInProgress(r.id));
        }
        send_command(&mut tx, &r, parent.as_ref(), &operation, true).await?;
    }
    tx.commit().await?;
    ctx.relay.wake();
    Ok(Some(Accepted {
        created: false,
        resource: r,
        operation,
        subscription: path.subscription.clone(),
    }))
}

async fn record_operation(
    tx: &mut Transaction<'_, Any>,
    path: &ResourcePath,
    r: &Resource,
    operation: &str,
    kind: OperationKind,
) -> Result<(), ArmError> {
    operations::insert(
        tx,
        NewOperation {
            id: operation,
            subscription_id: &path.subscription,
            location: &r.location,
            kind,
            resource_id: &r.id,
        },
    )
    .await?;
    Ok(())
}

/// A FHIR destination writes into a FHIR service of hds: its id must name one.
async fn check_fhir_service_reference(
    tx: &mut Transaction<'_, Any>,
    properties: &Map<String, Value>,
) -> Result<(), ArmError> {
    const TARGET: &str = "properties.fhirServiceResourceId";
    let id = properties
        .get("fhirServiceResourceId")
        .and_then(Value::as_str)
        .ok_or_else(|| ArmError::body(TARGET, "'fhirServiceResourceId' is required."))?;
    // The spec's own example omits the leading slash.
    let key = format!("/{}", id.trim_start_matches('/')).to_ascii_lowercase();
    let found = resources::get(&mut **tx, &key)
        .await?
        .filter(|r| r.rtype == ResourceType::FhirService);
    match found {
        Some(_) => Ok(()),
        None => Err(ArmError::body(
            TARGET,
            format!("'{id}' is not a FHIR service of this deployment."),
        )),
    }
}

/// What a MedTech instance is told: the connector's properties, merged with the properties
/// of its first live destination (`resourceIdentityResolutionType`, `fhirServiceResourceId`,
/// `fhirMapping`: medtech-svc reads them there, `medtech_svc::config::arm`; an instance writes
/// to one FHIR service), and, under `fhirDestinations`, each live destination's properties by
/// name.
async fn connector_properties(
    tx: &mut Transaction<'_, Any>,
    connector: &Resource,
) -> Result<Map<String, Value>, ArmError> {
    let mut props = connector.properties.clone();
    let prefix = collection_prefix(&connector.key(), ResourceType::FhirDestination);
    let mut destinations = Map::new();
    for d in resources::list_all(&mut **tx, ResourceType::FhirDestination, &prefix).await? {
        if d.state != ProvisioningState::Deleting {
            if destinations.is_empty() {
                for (k, v) in &d.properties {
                    if k != "provisioningState" {
                        props.insert(k.clone(), v.clone());
                    }
                }
            }
            destinations.insert(d.name().to_owned(), Value::Object(d.properties.clone()));
        }
    }
    props.insert("fhirDestinations".into(), Value::Object(destinations));
    Ok(props)
}

/// Enqueues the data plane's part of a change. A destination's change is a new
/// configuration of its connector's instance, so it goes out as the connector's command.
async fn send_command(
    tx: &mut Transaction<'_, Any>,
    r: &Resource,
    parent: Option<&Resource>,
    operation: &str,
    delete: bool,
) -> Result<(), ArmError> {
    let (target, kind, properties) = match r.rtype {
        ResourceType::Workspace => return Ok(()),
        ResourceType::FhirService | ResourceType::DicomService => {
            let kind = if delete {
                ProtoKind::DeprovisionInstance
            } else {
                ProtoKind::ProvisionInstance
            };
            (r, kind, r.properties.clone())
        }
        ResourceType::IotConnector if delete => {
            (r, ProtoKind::DeprovisionInstance, r.properties.clone())
        }
        ResourceType::IotConnector => (
            r,
            ProtoKind::ProvisionInstance,
            connector_properties(tx, r).await?,
        ),
        ResourceType::FhirDestination => {
            let connector = parent.ok_or_else(|| ArmError::ParentResourceNotFound(r.id.clone()))?;
            (
                connector,
                ProtoKind::ProvisionInstance,
                connector_properties(tx, connector).await?,
            )
        }
    };
    let (Some(service_kind), Some(instance)) = (target.rtype.service_kind(), &target.instance)
    else {
        return Ok(());
    };
    let command = OperationCommand {
        event_id: new_event_id(),
        operation_id: operation.to_owned(),
        kind: kind as i32,
        resource_id: target.id.clone(),
        service_kind: service_kind.to_proto() as i32,
        instance: instance.clone(),
        properties_json: Value::Object(properties).to_string(),
        requested_at_unix_ms: now_unix_ms(),
    };
    outbox::enqueue(tx, topics::OPERATIONS_COMMANDS, target.key(), &command).await?;
    Ok(())
}
