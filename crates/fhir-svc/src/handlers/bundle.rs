//! batch and transaction: `POST [base]` with a `Bundle` of type `batch` or `transaction`
//! (R4 http.html#transaction).
//!
//! A transaction is one database transaction: every entry succeeds or nothing is stored (and
//! no event leaves). Entries run in the spec's order (DELETE, POST, PUT/PATCH, GET/HEAD);
//! `urn:uuid:` and other `fullUrl`s of created resources are rewritten in every reference.
//! The first failing entry fails the whole bundle with its own status and OperationOutcome.
//! A batch runs each entry in a transaction of its own (several at once on PostgreSQL); an
//! entry that fails gets its status and OperationOutcome in the response and the others go on.
//!
//! Conditional URLs (`Patient?identifier=...`, `ifNoneExist`, conditional references) are
//! searches of the index, under a lock on their criteria.

use std::collections::{HashMap, HashSet};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use base64::Engine;
use chrono::Utc;
use futures::stream::{self, StreamExt};
use hds_core::auth::Permission;
use hds_core::names::InstanceName;
use serde_json::{json, Value};

use super::conditional::{several, update_target, Matches};
use super::creations::{Creation, Creations};
use super::patch::Patch;
use super::FhirCaller;
use crate::domain::{etag, instant, parse_etag, ResourceId, ResourceType};
use crate::error::FhirError;
use crate::http::{
    base_url, check_type, read_resource, resource_id, Config, FhirState, Instance, FHIR_JSON,
};
use crate::instance_config::InstanceConfig;
use crate::search::custom::Catalog;
use crate::search::keys;
use crate::search::query::{self, Condition};
use crate::store::{self, Method, Version, WriteTx, Written};
use crate::versioning;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    /// The spec's processing order within a transaction.
    fn order(self) -> u8 {
        match self {
            Verb::Delete => 0,
            Verb::Post => 1,
            Verb::Put | Verb::Patch => 2,
            Verb::Get | Verb::Head => 3,
        }
    }
    fn permission(self) -> Permission {
        match self {
            Verb::Get | Verb::Head => Permission::Read,
            Verb::Post | Verb::Put | Verb::Patch => Permission::Write,
            Verb::Delete => Permission::Delete,
        }
    }
}

#[derive(Debug, Clone)]
enum Target {
    Type(ResourceType),
    Resource(ResourceType, ResourceId),
    Version(ResourceType, ResourceId, i64),
}

#[derive(Debug, Clone)]
struct Entry {
    index: usize,
    verb: Verb,
    target: Target,
    full_url: Option<String>,
    resource: Option<Value>,
    if_match: Option<i64>,
    /// `Type?search` of a conditional PUT, PATCH or DELETE.
    conditions: Option<Vec<Condition>>,
    /// `ifNoneExist` of a conditional create.
    if_none_exist: Option<Vec<Condition>>,
}

impl Entry {
    /// Whether running the entry searches the store: a conditional URL, `ifNoneExist`, or a
    /// conditional reference in its resource.
    fn searches(&self) -> bool {
        self.conditions.is_some()
            || self.if_none_exist.is_some()
            || self.resource.as_ref().is_some_and(|r| {
                let mut found = Vec::new();
                collect_conditional_references(r, &mut found);
                !found.is_empty()
            })
    }

    /// The resource the entry names by id, if it names one.
    fn resource_named(&self) -> Option<(String, String)> {
        match &self.target {
            Target::Type(_) => None,
            Target::Resource(t, id) | Target::Version(t, id, _) => {
                Some((t.as_str().to_owned(), id.as_str().to_owned()))
            }
        }
    }
}

fn entry_error(index: usize, message: impl std::fmt::Display) -> FhirError {
    FhirError::invalid(format!("Bundle.entry[{index}]: {message}"))
}

impl Entry {
    fn parse(
        index: usize,
        mut entry: Value,
        base: &str,
        catalog: &Catalog,
    ) -> Result<Self, FhirError> {
        let request = entry
            .get("request")
            .ok_or_else(|| entry_error(index, "has no request"))?;
        let verb = match request.get("method").and_then(Value::as_str) {
            Some("GET") => Verb::Get,
            Some("HEAD") => Verb::Head,
            Some("POST") => Verb::Post,
            Some("PUT") => Verb::Put,
            Some("PATCH") => Verb::Patch,
            Some("DELETE") => Verb::Delete,
            other => {
                return Err(entry_error(
                    index,
                    format!("request.method {other:?} is not an HTTP method of FHIR"),
                ))
            }
        };
        if request.get("ifNoneMatch").is_some() || request.get("ifModifiedSince").is_some() {
            return Err(entry_error(
                index,
                "ifNoneMatch and ifModifiedSince are not supported in bundles",
            ));
        }
        let url = request
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| entry_error(index, "has no request.url"))?;
        let url = url
            .strip_prefix(base)
            .unwrap_or(url)
            .trim_start_matches('/');
        let (path, search) = match url.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (url, None),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let rt = |s: &str| s.parse::<ResourceType>().map_err(|e| entry_error(index, e));
        let id = |s: &str| s.parse::<ResourceId>().map_err(|e| entry_error(index, e));
        let target = match parts.as_slice() {
            [t] => Target::Type(rt(t)?),
            [t, i] => Target::Resource(rt(t)?, id(i)?),
            [t, i, "_history", v] => Target::Version(
                rt(t)?,
                id(i)?,
                v.parse()
                    .map_err(|_| entry_error(index, format!("'{v}' is not a version")))?,
            ),
            _ => {
                return Err(entry_error(
                    index,
                    format!("request.url '{url}' is not supported in a bundle"),
                ))
            }
        };
        let conditions = match (search, &target, verb) {
            (None, ..) => None,
            (Some(q), Target::Type(t), Verb::Put | Verb::Patch | Verb::Delete) => {
                Some(query::parse(catalog, t, q).map_err(|e| annotate(index, e))?)
            }
            (Some(_), ..) => {
                return Err(entry_error(
                    index,
                    format!("search URLs ('{url}') are not supported in a bundle yet"),
                ))
            }
        };
        let fits = matches!(
            (verb, &target, conditions.is_some()),
            (Verb::Post, Target::Type(_), false)
                | (
                    Verb::Put | Verb::Patch | Verb::Delete,
                    Target::Resource(..),
                    false
                )
                | (
                    Verb::Put | Verb::Patch | Verb::Delete,
                    Target::Type(_),
                    true
                )
                | (
                    Verb::Get | Verb::Head,
                    Target::Resource(..) | Target::Version(..),
                    false
                )
        );
        if !fits {
            return Err(entry_error(
                index,
                format!("{verb:?} {url} is not supported in a bundle"),
            ));
        }
        let if_none_exist = match (request.get("ifNoneExist").and_then(Value::as_str), &target) {
            (None, _) => None,
            (Some(q), Target::Type(t)) if verb == Verb::Post => {
                let q = q.split_once('?').map_or(q, |(_, q)| q);
                Some(query::parse(catalog, t, q).map_err(|e| annotate(index, e))?)
            }
            (Some(_), _) => return Err(entry_error(index, "ifNoneExist belongs to a POST")),
        };
        let if_match = match request.get("ifMatch").and_then(Value::as_str) {
            Some(v) => Some(parse_etag(v).ok_or_else(|| {
                entry_error(index, "ifMatch must be a version ETag such as W/\"1\"")
            })?),
            None => None,
        };
        let resource = entry
            .as_object_mut()
            .and_then(|o| o.shift_remove("resource"));
        if matches!(verb, Verb::Post | Verb::Put | Verb::Patch) && resource.is_none() {
            return Err(entry_error(index, "has no resource"));
        }
        Ok(Entry {
            index,
            verb,
            target,
            full_url: entry
                .get("fullUrl")
                .and_then(Value::as_str)
                .map(str::to_owned),
            resource,
            if_match,
            conditions,
            if_none_exist,
        })
    }
}

/// An entry with its searches done: what it will do, to which resource.
enum Plan {
    /// Write (POST, PUT, PATCH) or DELETE this resource, or read it.
    Run(Entry),
    /// A conditional create found its resource: answer with it, write nothing. Its fullUrl
    /// then stands for that resource.
    Exists(Version, Option<String>),
    /// A conditional delete found nothing: 204, nothing to do.
    Nothing,
}

/// Runs an entry's searches (conditional URL, ifNoneExist) inside `tx`, fixing its target.
async fn plan(tx: &mut WriteTx, instance: &InstanceName, mut e: Entry) -> Result<Plan, FhirError> {
    let Target::Type(rt) = e.target.clone() else {
        return Ok(Plan::Run(e));
    };
    if let Some(conditions) = e.if_none_exist.take() {
        store::lock_criteria(tx, instance, &rt, &conditions).await?;
        return match Matches::of(
            query::find(
                &mut **tx.conn_for(&query::types_read(&rt, &conditions)).await?,
                instance,
                &rt,
                &conditions,
                2,
            )
            .await?,
        ) {
            Matches::None => Ok(Plan::Run(e)),
            Matches::One(id) => {
                let id = resource_id(&id)?;
                let v = store::read_in(&mut **tx.conn().await?, instance, &rt, &id)
                    .await?
                    .ok_or_else(|| FhirError::Internal("a matched resource vanished".into()))?;
                Ok(Plan::Exists(v, e.full_url.clone()))
            }
            Matches::Several => Err(several("create")),
        };
    }
    let Some(conditions) = e.conditions.take() else {
        return Ok(Plan::Run(e));
    };
    let found = Matches::of(
        query::find(
            &mut **tx.conn_for(&query::types_read(&rt, &conditions)).await?,
            instance,
            &rt,
            &conditions,
            2,
        )
        .await?,
    );
    let body_id = e
        .resource
        .as_ref()
        .and_then(|r| r.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let id = match (found, e.verb) {
        (Matches::Several, Verb::Patch) => return Err(several("patch")),
        (Matches::Several, Verb::Delete) => return Err(several("delete")),
        (Matches::None, Verb::Delete) => return Ok(Plan::Nothing),
        (Matches::None, Verb::Patch) => {
            return Err(FhirError::ResourceNotFound {
                resource_type: rt.to_string(),
                id: "(conditional patch)".into(),
            })
        }
        (Matches::One(found), Verb::Patch | Verb::Delete) => resource_id(&found)?,
        (found, _) => update_target(found, body_id.as_deref())?,
    };
    if e.verb == Verb::Put {
        if let Some(Value::Object(o)) = &mut e.resource {
            o.insert("id".into(), Value::String(id.to_string()));
        }
    }
    e.target = Target::Resource(rt, id);
    Ok(Plan::Run(e))
}

/// Replaces conditional references (`Type?search`) by the one resource each matches.
/// `resolved` remembers the answers within one bundle: a bundle's entries tend to point at the
/// same few practitioners and organisations.
async fn resolve_conditional_references(
    tx: &mut WriteTx,
    catalog: &Catalog,
    instance: &InstanceName,
    resource: &mut Value,
    resolved: &mut HashMap<String, String>,
) -> Result<(), FhirError> {
    let mut wanted = Vec::new();
    collect_conditional_references(resource, &mut wanted);
    for reference in wanted {
        if resolved.contains_key(&reference) {
            continue;
        }
        let (t, q) = reference.split_once('?').unwrap_or_default();
        let rt: ResourceType = t.parse().map_err(|e: String| {
            FhirError::invalid(format!("conditional reference '{reference}': {e}"))
        })?;
        let conditions = query::parse(catalog, &rt, q)?;
        match Matches::of(
            query::find(
                &mut **tx.conn_for(&query::types_read(&rt, &conditions)).await?,
                instance,
                &rt,
                &conditions,
                2,
            )
            .await?,
        ) {
            Matches::One(id) => {
                resolved.insert(reference, format!("{rt}/{id}"));
            }
            Matches::None => {
                return Err(FhirError::invalid(format!(
                    "the conditional reference '{reference}' matches no resource"
                )))
            }
            Matches::Several => {
                return Err(FhirError::PreconditionFailed(format!(
                    "the conditional reference '{reference}' matches more than one resource"
                )))
            }
        }
    }
    rewrite_references(resource, resolved);
    Ok(())
}

/// Whether the searches of conditional references `wanted` must wait for the creations made
/// so far: when one of those is of a type a search reads. (A bundle's patients and
/// observations point at practitioners and organisations it does not create: their searches
/// then run at once, and the creations go on being made and sent meanwhile.) A reference that
/// does not parse waits too, and fails when resolved, after the entries before it.
fn searches_wait_for(creations: &Creations, catalog: &Catalog, wanted: &[String]) -> bool {
    wanted.iter().any(|reference| {
        let reads = reference.split_once('?').and_then(|(t, q)| {
            let rt: ResourceType = t.parse().ok()?;
            let conditions = query::parse(catalog, &rt, q).ok()?;
            Some(query::types_read(&rt, &conditions))
        });
        reads.is_none_or(|types| creations.makes_any(&types))
    })
}

/// `Type?search`: a resource type before the `?` (the search itself may hold URLs).
fn is_conditional(reference: &str) -> bool {
    reference
        .split_once('?')
        .is_some_and(|(t, _)| t.parse::<ResourceType>().is_ok())
}

fn collect_conditional_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj {
                match (k.as_str(), v) {
                    ("reference", Value::String(s)) if is_conditional(s) => out.push(s.clone()),
                    _ => collect_conditional_references(v, out),
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|v| collect_conditional_references(v, out)),
        _ => {}
    }
}

/// What one entry did.
struct Outcome {
    status: StatusCode,
    version: Option<Version>,
    location: bool,
    /// The resource's JSON as stored, when at hand: the response carries it as it is instead
    /// of serialising the version's body again.
    stored: Option<String>,
}

impl Outcome {
    /// A conditional create found its resource: 200 with it.
    fn existing(v: Version) -> Self {
        Outcome {
            status: StatusCode::OK,
            version: Some(v),
            location: false,
            stored: None,
        }
    }

    /// A conditional delete found nothing: 204.
    fn nothing() -> Self {
        Outcome {
            status: StatusCode::NO_CONTENT,
            version: None,
            location: false,
            stored: None,
        }
    }
}

pub async fn process(
    req: HttpRequest,
    caller: FhirCaller,
    Instance(instance): Instance,
    Config(config): Config,
    state: web::Data<FhirState>,
    body: web::Payload,
) -> Result<HttpResponse, FhirError> {
    let mut bundle = read_resource(&req, body, state.max_body_bytes).await?;
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(FhirError::invalid(
            "POST to the service base takes a Bundle",
        ));
    }
    let transaction = match bundle.get("type").and_then(Value::as_str) {
        Some("transaction") => true,
        Some("batch") => false,
        other => {
            return Err(FhirError::invalid(format!(
                "Bundle.type must be batch or transaction, not {other:?}"
            )))
        }
    };
    let raw = match bundle.get_mut("entry") {
        Some(Value::Array(entries)) => std::mem::take(entries),
        _ => Vec::new(),
    };
    if raw.len() > state.max_bundle_entries {
        return Err(FhirError::TooManyEntries {
            entries: raw.len(),
            limit: state.max_bundle_entries,
        });
    }
    let base = base_url(&req, &state, &instance);
    let catalog = state.store.catalog(&instance).await?;
    let parsed: Vec<Result<Entry, FhirError>> = raw
        .into_iter()
        .enumerate()
        .map(|(i, e)| Entry::parse(i, e, &base, &catalog))
        .collect();
    let (kind, responses) = if transaction {
        (
            "transaction-response",
            run_transaction(&caller, &instance, &config, &catalog, &state, parsed).await?,
        )
    } else {
        (
            "batch-response",
            run_batch(&caller, &instance, &config, &catalog, &state, parsed).await,
        )
    };
    // Written as text, entry by entry, so stored resources go in as they are.
    let head = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": kind,
        "meta": {"lastUpdated": instant(Utc::now())},
    })
    .to_string();
    let mut body = String::with_capacity(head.len() + 512 * responses.len());
    body.push_str(&head[..head.len() - 1]);
    body.push_str(",\"entry\":[");
    for (i, r) in responses.into_iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        write_entry(&mut body, &base, r);
    }
    body.push_str("]}");
    Ok(HttpResponse::Ok().content_type(FHIR_JSON).body(body))
}

/// A batch's entries run as separate transactions. R4 says they must not depend on one
/// another (3.1.0.11.2), yet clients do send, say, the same conditional create twice; so
/// entries run several at once (where the database gains from it) only while nothing about
/// them can meet: entries that search (conditional, or with conditional references) run
/// alone, in their place, as do entries on a resource an entry of the same run names. The
/// answers keep the entries' order.
async fn run_batch(
    caller: &FhirCaller,
    instance: &InstanceName,
    config: &InstanceConfig,
    catalog: &Catalog,
    state: &FhirState,
    parsed: Vec<Result<Entry, FhirError>>,
) -> Vec<Result<Outcome, FhirError>> {
    let mut out = Vec::with_capacity(parsed.len());
    let mut run: Vec<Result<Entry, FhirError>> = Vec::new();
    let mut named: HashSet<(String, String)> = HashSet::new();
    for entry in parsed {
        let (alone, resource) = match &entry {
            Ok(e) => (e.searches(), e.resource_named()),
            Err(_) => (false, None),
        };
        if alone || resource.as_ref().is_some_and(|r| named.contains(r)) {
            run_together(caller, instance, config, catalog, state, &mut run, &mut out).await;
            named.clear();
        }
        if alone {
            out.push(run_batch_entry(caller, instance, config, catalog, state, entry).await);
            continue;
        }
        named.extend(resource);
        run.push(entry);
    }
    run_together(caller, instance, config, catalog, state, &mut run, &mut out).await;
    out
}

/// Runs the entries of `run`, appending their answers in order. They are first tried as one
/// transaction: when every entry succeeds, as they mostly do, that is one commit instead of
/// one each. If any fails, nothing of it stays and each entry runs on its own, so that each
/// gets its own answer. Entries with a `fullUrl` always run on their own: in a transaction,
/// references to it would be rewritten, which a batch must not do.
async fn run_together(
    caller: &FhirCaller,
    instance: &InstanceName,
    config: &InstanceConfig,
    catalog: &Catalog,
    state: &FhirState,
    run: &mut Vec<Result<Entry, FhirError>>,
    out: &mut Vec<Result<Outcome, FhirError>>,
) {
    let shareable = run.len() > 1
        && run
            .iter()
            .all(|e| matches!(e, Ok(e) if e.full_url.is_none()));
    if shareable {
        let entries = run.iter().flatten().cloned().map(Ok).collect();
        let together = run_transaction(caller, instance, config, catalog, state, entries).await;
        if let Ok(answers) = together {
            run.clear();
            out.extend(answers);
            return;
        }
    }
    let answers: Vec<_> = stream::iter(run.drain(..))
        .map(|entry| run_batch_entry(caller, instance, config, catalog, state, entry))
        .buffered(state.store.concurrent_writers())
        .collect()
        .await;
    out.extend(answers);
}

async fn run_batch_entry(
    caller: &FhirCaller,
    instance: &InstanceName,
    config: &InstanceConfig,
    catalog: &Catalog,
    state: &FhirState,
    entry: Result<Entry, FhirError>,
) -> Result<Outcome, FhirError> {
    let entry = entry?;
    caller.require(entry.verb.permission())?;
    let mut tx = state.store.begin().await?;
    let outcome = match plan(&mut tx, instance, entry).await? {
        Plan::Exists(v, _) => Outcome::existing(v),
        Plan::Nothing => Outcome::nothing(),
        Plan::Run(mut entry) => {
            let id = matches!(entry.target, Target::Type(_)).then(ResourceId::generate);
            let mut resource = entry.resource.take();
            if let Some(r) = &mut resource {
                resolve_conditional_references(&mut tx, catalog, instance, r, &mut HashMap::new())
                    .await?;
            }
            execute(&mut tx, instance, config, &entry, resource, id).await?
        }
    };
    state.store.commit(tx).await?;
    Ok(outcome)
}

async fn run_transaction(
    caller: &FhirCaller,
    instance: &InstanceName,
    config: &InstanceConfig,
    catalog: &Catalog,
    state: &FhirState,
    parsed: Vec<Result<Entry, FhirError>>,
) -> Result<Vec<Result<Outcome, FhirError>>, FhirError> {
    let entries: Vec<Entry> = parsed.into_iter().collect::<Result<_, _>>()?;
    for e in &entries {
        caller.require(e.verb.permission())?;
    }
    let mut tx = state.store.begin().await?;
    // Searches first, so every entry's target is known before anything is written.
    let mut plans = Vec::with_capacity(entries.len());
    for e in entries {
        let index = e.index;
        plans.push(
            plan(&mut tx, instance, e)
                .await
                .map_err(|err| annotate(index, err))?,
        );
    }
    // Identities: each created resource gets its id now, so references to it can be rewritten.
    let mut ids: Vec<Option<ResourceId>> = Vec::with_capacity(plans.len());
    let mut rewrite: HashMap<String, String> = HashMap::new();
    let mut touched: HashSet<(String, String)> = HashSet::new();
    for (i, p) in plans.iter().enumerate() {
        let (rt, id, full_url, writes) = match p {
            Plan::Run(e) => match &e.target {
                Target::Type(rt) => (rt.to_string(), ResourceId::generate(), &e.full_url, true),
                Target::Resource(rt, id) => (
                    rt.to_string(),
                    id.clone(),
                    &e.full_url,
                    !matches!(e.verb, Verb::Get | Verb::Head),
                ),
                Target::Version(..) => {
                    ids.push(None);
                    continue;
                }
            },
            Plan::Exists(v, full_url) => {
                ids.push(None);
                if let Some(full) = full_url {
                    rewrite.insert(full.clone(), format!("{}/{}", v.resource_type, v.id));
                }
                continue;
            }
            Plan::Nothing => {
                ids.push(None);
                continue;
            }
        };
        if writes && !touched.insert((rt.clone(), id.to_string())) {
            return Err(entry_error(
                i,
                format!("{rt}/{id} is the target of more than one entry"),
            ));
        }
        if let Some(full) = full_url {
            rewrite.insert(full.clone(), format!("{rt}/{id}"));
        }
        let new = matches!(p, Plan::Run(e) if matches!(e.target, Target::Type(_)));
        ids.push(new.then_some(id));
    }
    // PUTs of ids that do not exist yet are creations, made in bulk with the POSTs.
    let fresh = fresh_puts(&mut tx, instance, &plans).await?;
    let mut order: Vec<usize> = (0..plans.len()).collect();
    order.sort_by_key(|i| match &plans[*i] {
        Plan::Run(e) => e.verb.order(),
        _ => 0,
    });

    let mut results: Vec<Option<Outcome>> = (0..plans.len()).map(|_| None).collect();
    let mut resolved: HashMap<String, String> = HashMap::new();
    // Creations are made on other threads; whatever reads the transaction waits for them.
    let mut creations = Creations::new(instance, tx.custom_params(instance).await?);
    let mut made: Vec<(usize, Written, String)> = Vec::new();
    for i in order {
        let outcome = match &mut plans[i] {
            Plan::Exists(v, _) => Outcome::existing(v.clone()),
            Plan::Nothing => Outcome::nothing(),
            Plan::Run(e) => {
                let mut resource = e.resource.take();
                if let Some(r) = &mut resource {
                    rewrite_references(r, &rewrite);
                    let mut wanted = Vec::new();
                    collect_conditional_references(r, &mut wanted);
                    wanted.retain(|w| !resolved.contains_key(w));
                    if searches_wait_for(&creations, catalog, &wanted) {
                        // Its search must see the creations before it.
                        finish_creations(&mut creations, &mut tx, &mut made).await?;
                    }
                    let found = resolve_conditional_references(
                        &mut tx,
                        catalog,
                        instance,
                        r,
                        &mut resolved,
                    )
                    .await;
                    if let Err(err) = found {
                        // Creations before it may still be being made: an earlier entry's
                        // failure is the one to report.
                        finish_creations(&mut creations, &mut tx, &mut made).await?;
                        return Err(annotate(i, err));
                    }
                }
                let creates = match (&e.verb, &e.target) {
                    (Verb::Post, Target::Type(rt)) => {
                        Some((rt, ids[i].clone().unwrap_or_else(ResourceId::generate)))
                    }
                    (Verb::Put, Target::Resource(rt, id)) if fresh.contains(&i) => {
                        Some((rt, id.clone()))
                    }
                    _ => None,
                };
                if let Some((rt, id)) = creates {
                    let resource = resource.unwrap_or_default();
                    let checked = check_type(&resource, rt).and_then(|()| match e.verb {
                        Verb::Put => check_put_id(&resource, &id),
                        _ => Ok(()),
                    });
                    if let Err(err) = checked {
                        // An earlier entry's failure is the one to report.
                        finish_creations(&mut creations, &mut tx, &mut made).await?;
                        return Err(annotate(i, err));
                    }
                    let creation = Creation {
                        entry: i,
                        resource_type: rt.clone(),
                        id,
                        method: if e.verb == Verb::Put {
                            Method::Put
                        } else {
                            Method::Post
                        },
                        resource,
                    };
                    creations
                        .push(&mut tx, creation, &mut |i, w, text| made.push((i, w, text)))
                        .await
                        .map_err(|(i, err)| annotate(i, err))?;
                    continue;
                }
                finish_creations(&mut creations, &mut tx, &mut made).await?;
                // The first failure ends it: dropping the transaction rolls everything back.
                execute(&mut tx, instance, config, e, resource, ids[i].clone())
                    .await
                    .map_err(|err| annotate(i, err))?
            }
        };
        results[i] = Some(outcome);
    }
    finish_creations(&mut creations, &mut tx, &mut made).await?;
    for (i, w, text) in made {
        results[i] = Some(Outcome {
            status: StatusCode::CREATED,
            version: Some(w.version),
            location: true,
            stored: Some(text),
        });
    }
    state.store.commit(tx).await?;
    Ok(results
        .into_iter()
        .map(|o| o.ok_or_else(|| FhirError::Internal("entry not run".into())))
        .collect())
}

/// Makes and queues every creation added so far, noting each in `made`; a failure names its
/// entry.
async fn finish_creations(
    creations: &mut Creations,
    tx: &mut WriteTx,
    made: &mut Vec<(usize, Written, String)>,
) -> Result<(), FhirError> {
    creations
        .finish(tx, &mut |i, w, text| made.push((i, w, text)))
        .await
        .map_err(|(i, err)| annotate(i, err))
}

/// Says which entry failed, keeping the error's status.
fn annotate(index: usize, err: FhirError) -> FhirError {
    match err {
        FhirError::Invalid(mut issues) => {
            for i in &mut issues {
                if !i.diagnostics.starts_with("Bundle.entry[") {
                    i.diagnostics = format!("Bundle.entry[{index}]: {}", i.diagnostics);
                }
            }
            FhirError::Invalid(issues)
        }
        other => other,
    }
}

fn rewrite_references(value: &mut Value, map: &HashMap<String, String>) {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj.iter_mut() {
                if k == "reference" {
                    if let Value::String(s) = v {
                        if let Some(new) = map.get(s.as_str()) {
                            *s = new.clone();
                        }
                        continue;
                    }
                }
                rewrite_references(v, map);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_references(v, map)),
        _ => {}
    }
}

async fn execute(
    tx: &mut WriteTx,
    instance: &InstanceName,
    config: &InstanceConfig,
    e: &Entry,
    resource: Option<Value>,
    new_id: Option<ResourceId>,
) -> Result<Outcome, FhirError> {
    match (&e.verb, &e.target) {
        (Verb::Post, Target::Type(rt)) => {
            let resource = resource.unwrap_or_default();
            check_type(&resource, rt)?;
            let id = new_id.unwrap_or_else(ResourceId::generate);
            let history = versioning::history(config, rt);
            let w = store::write_in(tx, instance, rt, &id, resource, Method::Post, None, history)
                .await?;
            Ok(Outcome {
                status: StatusCode::CREATED,
                version: Some(w.version),
                location: true,
                stored: None,
            })
        }
        (Verb::Put, Target::Resource(rt, id)) => {
            let resource = resource.unwrap_or_default();
            check_type(&resource, rt)?;
            check_put_id(&resource, id)?;
            if e.if_match.is_none() && versioning::requires_if_match(config, rt) {
                let exists = store::read_in(&mut **tx.conn().await?, instance, rt, id)
                    .await?
                    .is_some_and(|v| v.body.is_some());
                versioning::check_update(config, rt, e.if_match, exists)?;
            }
            let history = versioning::history(config, rt);
            let w = store::write_in(
                tx,
                instance,
                rt,
                id,
                resource,
                Method::Put,
                e.if_match,
                history,
            )
            .await?;
            let status = if w.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(Outcome {
                status,
                version: Some(w.version),
                location: true,
                stored: None,
            })
        }
        (Verb::Patch, Target::Resource(rt, id)) => {
            let patch = patch_of(resource)?;
            let current = store::read_in(&mut **tx.conn().await?, instance, rt, id)
                .await?
                .ok_or_else(|| FhirError::ResourceNotFound {
                    resource_type: rt.to_string(),
                    id: id.to_string(),
                })?;
            let mut doc = current.body.clone().ok_or_else(|| FhirError::Gone {
                resource_type: rt.to_string(),
                id: id.to_string(),
                version: current.version,
            })?;
            versioning::check_update(config, rt, e.if_match, true)?;
            patch.apply(&mut doc, rt, id)?;
            let expected = Some(e.if_match.unwrap_or(current.version));
            let history = versioning::history(config, rt);
            let w = store::write_in(tx, instance, rt, id, doc, Method::Patch, expected, history)
                .await?;
            Ok(Outcome {
                status: StatusCode::OK,
                version: Some(w.version),
                location: false,
                stored: None,
            })
        }
        (Verb::Delete, Target::Resource(rt, id)) => {
            let v = store::delete_in(tx, instance, rt, id, false, versioning::history(config, rt))
                .await?;
            Ok(Outcome {
                status: StatusCode::NO_CONTENT,
                version: v,
                location: false,
                stored: None,
            })
        }
        (Verb::Get | Verb::Head, Target::Resource(rt, id)) => {
            let v = store::read_in(&mut **tx.conn().await?, instance, rt, id)
                .await?
                .ok_or_else(|| FhirError::ResourceNotFound {
                    resource_type: rt.to_string(),
                    id: id.to_string(),
                })?;
            found(v, e.verb)
        }
        (Verb::Get | Verb::Head, Target::Version(rt, id, n)) => {
            let v = store::vread_in(&mut **tx.conn().await?, instance, rt, id, *n)
                .await?
                .ok_or_else(|| FhirError::VersionNotFound {
                    resource_type: rt.to_string(),
                    id: id.to_string(),
                    version: n.to_string(),
                })?;
            found(v, e.verb)
        }
        _ => Err(FhirError::invalid(
            "this request is not supported in a bundle",
        )),
    }
}

/// A PUT's resource carries the id of its `request.url`.
fn check_put_id(resource: &Value, id: &ResourceId) -> Result<(), FhirError> {
    match resource.get("id").and_then(Value::as_str) {
        Some(i) if i == id.as_str() => Ok(()),
        _ => Err(FhirError::invalid(format!(
            "the resource's id must be '{id}' as in request.url"
        ))),
    }
}

/// The entries (by index) that PUT an id with no pointer yet, without `ifMatch`: creations.
async fn fresh_puts(
    tx: &mut WriteTx,
    instance: &InstanceName,
    plans: &[Plan],
) -> Result<HashSet<usize>, FhirError> {
    let inst = instance.to_string();
    let candidates: Vec<(usize, i64)> = plans
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Plan::Run(Entry {
                verb: Verb::Put,
                target: Target::Resource(rt, id),
                if_match: None,
                ..
            }) => Some((i, keys::resource(&inst, rt.as_str(), id.as_str()))),
            _ => None,
        })
        .collect();
    if candidates.is_empty() {
        return Ok(HashSet::new());
    }
    let rkeys: Vec<i64> = candidates.iter().map(|(_, k)| *k).collect();
    let existing = store::existing_keys(tx, &rkeys).await?;
    Ok(candidates
        .into_iter()
        .filter(|(_, k)| !existing.contains(k))
        .map(|(i, _)| i)
        .collect())
}

fn found(v: Version, verb: Verb) -> Result<Outcome, FhirError> {
    if v.is_deletion() {
        return Err(FhirError::Gone {
            resource_type: v.resource_type,
            id: v.id,
            version: v.version,
        });
    }
    let mut v = v;
    if verb == Verb::Head {
        v.body = None;
    }
    Ok(Outcome {
        status: StatusCode::OK,
        version: Some(v),
        location: false,
        stored: None,
    })
}

/// A PATCH entry carries a FHIRPath Patch (a Parameters resource) or a JSON Patch in a
/// Binary (`contentType` application/json-patch+json).
fn patch_of(resource: Option<Value>) -> Result<Patch, FhirError> {
    let kind = resource
        .as_ref()
        .and_then(|r| r.get("resourceType"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    match (kind.as_deref(), resource) {
        (Some("Parameters"), Some(parameters)) => Patch::fhirpath(parameters),
        (Some("Binary"), Some(binary)) => {
            let content_type = binary
                .get("contentType")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if content_type != "application/json-patch+json" {
                return Err(FhirError::UnsupportedMediaType(
                    "Binary.contentType must be application/json-patch+json".into(),
                ));
            }
            let data = binary
                .get("data")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| FhirError::invalid(format!("Binary.data is not base64: {e}")))?;
            Patch::parse(content_type, &bytes)
        }
        _ => Err(FhirError::invalid(
            "a PATCH entry takes a Parameters resource (FHIRPath Patch) or a Binary holding a JSON Patch",
        )),
    }
}

fn status_line(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

/// Appends one response entry: fullUrl, resource (its stored text when at hand), response.
fn write_entry(out: &mut String, base: &str, result: Result<Outcome, FhirError>) {
    match result {
        Ok(o) => {
            let mut response = json!({"status": status_line(o.status)});
            out.push('{');
            if let Some(v) = o.version {
                response["etag"] = json!(etag(v.version));
                response["lastModified"] = json!(instant(v.last_updated));
                if o.location {
                    response["location"] = json!(format!(
                        "{}/{}/_history/{}",
                        v.resource_type, v.id, v.version
                    ));
                }
                let full_url = format!("{base}/{}/{}", v.resource_type, v.id);
                out.push_str(&format!("\"fullUrl\":{},", json!(full_url)));
                match (o.stored, v.body) {
                    (Some(text), _) => out.push_str(&format!("\"resource\":{text},")),
                    (None, Some(body)) => out.push_str(&format!("\"resource\":{body},")),
                    (None, None) => {}
                }
            }
            out.push_str(&format!("\"response\":{response}}}"));
        }
        Err(e) => out.push_str(
            &json!({
                "response": {"status": status_line(e.status_code()), "outcome": e.outcome()}
            })
            .to_string(),
        ),
    }
}
