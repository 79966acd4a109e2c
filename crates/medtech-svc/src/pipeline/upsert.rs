//! Writing a window's observation groups to FHIR as iomt-fhir does, in a few round trips
//! instead of two per Observation: read the existing Observations of their identifiers (an
//! Observation's id is its identifier's hash) with searches of up to [`READ_CHUNK`] ids;
//! write the absent ones and merge the present ones, in batch bundles of up to
//! [`WRITE_CHUNK`] entries, a merged one only if something changed and with `If-Match` on the
//! version read. An entry that lost a race (409/412) is read and merged again in the next
//! round. Each entry of a batch succeeds or fails on its own, as each PUT did; a bundle the
//! FHIR service refuses as a whole (over its entry or size limit) is sent again in halves.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use futures::stream::{self, StreamExt};
use serde_json::Value;

use super::failure::{error_type, Failure, Stage};
use super::fhir_client::{CallError, Endpoint, FhirClient};
use crate::fhir_mapping::CodeValueTemplate;
use crate::grouping::ObservationGroup;
use crate::identity::ResolvedIds;
use crate::observation::{self, MergeOutcome};

/// What a save did, Azure's `ResourceOperation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Created,
    Updated,
    NoOperation,
}

impl Saved {
    pub fn as_str(self) -> &'static str {
        match self {
            Saved::Created => "Created",
            Saved::Updated => "Updated",
            Saved::NoOperation => "NoOperation",
        }
    }
}

/// Rounds before a persistent race is reported as transient (retried later).
const RACE_ATTEMPTS: usize = 5;
/// Ids per search: about 6.5 KB of form body.
const READ_CHUNK: usize = 100;
/// Entries per batch bundle, well under fhir-svc's default limit of 500.
const WRITE_CHUNK: usize = 200;

/// A write of a round: the item, the Observation, the ETag it was merged into (none when
/// new), and what the write is.
type Write = (usize, Value, Option<String>, Saved);

/// One Observation to save: an observation group with its template and resolved ids.
pub struct Item<'a> {
    pub template: &'a CodeValueTemplate,
    pub group: &'a ObservationGroup,
    pub ids: &'a ResolvedIds,
}

fn conversion(template: &CodeValueTemplate, e: observation::ObservationError) -> Failure {
    Failure::permanent(
        Stage::FhirConversion,
        error_type::FHIR_CONVERSION,
        "ObservationConversionFailed",
        e.to_string(),
    )
    .with_template(template.type_name.to_string())
}

/// Saves every item, with up to `concurrency` requests in flight; the outcomes in the order
/// of `items`.
pub async fn save_all(
    client: &FhirClient,
    fhir: &Endpoint,
    items: &[Item<'_>],
    concurrency: usize,
) -> Vec<Result<Saved, Failure>> {
    let issued = Utc::now();
    let mut outcomes: Vec<Option<Result<Saved, Failure>>> = Vec::with_capacity(items.len());
    let mut fresh: Vec<(String, Value)> = Vec::with_capacity(items.len());
    for item in items {
        match observation::build(item.template, item.group, item.ids, issued) {
            Ok(o) => {
                let id = o["id"].as_str().unwrap_or_default().to_owned();
                fresh.push((id, o));
                outcomes.push(None);
            }
            Err(e) => {
                fresh.push((String::new(), Value::Null));
                outcomes.push(Some(Err(conversion(item.template, e))));
            }
        }
    }
    for _ in 0..RACE_ATTEMPTS {
        // Each id once per round: groups of one window that make the same Observation (the
        // same window under different encounters, say) merge one after the other.
        let mut seen = HashSet::new();
        let round: Vec<usize> = (0..items.len())
            .filter(|&i| outcomes[i].is_none() && seen.insert(fresh[i].0.as_str()))
            .collect();
        if round.is_empty() {
            break;
        }
        let existing = match read_existing(client, fhir, &round, &fresh, concurrency).await {
            Ok(found) => found,
            Err(f) => {
                for &i in &round {
                    outcomes[i] = Some(Err(f.clone().with_template(type_of(&items[i]))));
                }
                continue;
            }
        };
        // What each item of the round writes: the new Observation, or the merged one with the
        // ETag of the version it was merged into.
        let mut writes: Vec<Write> = Vec::new();
        for &i in &round {
            let (id, new) = &fresh[i];
            match existing.get(id.as_str()) {
                None => writes.push((i, new.clone(), None, Saved::Created)),
                Some(current) => {
                    match observation::merge(items[i].template, items[i].group, current) {
                        Err(e) => outcomes[i] = Some(Err(conversion(items[i].template, e))),
                        Ok(MergeOutcome::Unchanged) => outcomes[i] = Some(Ok(Saved::NoOperation)),
                        Ok(MergeOutcome::Amended(merged)) => {
                            writes.push((i, merged, version_etag(current), Saved::Updated))
                        }
                    }
                }
            }
        }
        let mut chunks: Vec<&[Write]> = writes.chunks(WRITE_CHUNK).collect();
        while !chunks.is_empty() {
            // The futures are made first: a closure handing out borrowing futures would not
            // be `Send` for every lifetime, which the worker's `tokio::spawn` needs.
            let batches: Vec<_> = chunks
                .drain(..)
                .map(|chunk| async move {
                    let batch: Vec<(&Value, Option<&str>)> =
                        chunk.iter().map(|(_, r, e, _)| (r, e.as_deref())).collect();
                    (chunk, client.put_batch(fhir, &batch).await)
                })
                .collect();
            let written: Vec<_> = stream::iter(batches)
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await;
            for (chunk, answer) in written {
                match answer {
                    Ok(results) => {
                        for ((i, _, _, saved), result) in chunk.iter().zip(results) {
                            outcomes[*i] = match result {
                                Ok(_) => Some(Ok(*saved)),
                                Err(CallError::Conflict) => None,
                                Err(CallError::Failed(f)) => {
                                    Some(Err(f.with_template(type_of(&items[*i]))))
                                }
                            };
                        }
                    }
                    // The bundle refused as a whole (more entries or bytes than the FHIR
                    // service takes in one): its halves, down to single entries, which then
                    // answer for themselves.
                    Err(f) if !f.transient && chunk.len() > 1 => {
                        let (a, b) = chunk.split_at(chunk.len() / 2);
                        chunks.extend([a, b]);
                    }
                    Err(f) => {
                        for (i, ..) in chunk {
                            outcomes[*i] = Some(Err(f.clone().with_template(type_of(&items[*i]))));
                        }
                    }
                }
            }
        }
    }
    outcomes
        .into_iter()
        .zip(&fresh)
        .map(|(o, (id, _))| {
            o.unwrap_or_else(|| {
                Err(Failure::transient(
                    "ObservationContention",
                    format!("Observation/{id} kept changing under concurrent writers"),
                ))
            })
        })
        .collect()
}

fn type_of(item: &Item<'_>) -> String {
    item.template.type_name.to_string()
}

/// The existing Observations of the round's items, by id.
async fn read_existing(
    client: &FhirClient,
    fhir: &Endpoint,
    round: &[usize],
    fresh: &[(String, Value)],
    concurrency: usize,
) -> Result<HashMap<String, Value>, Failure> {
    let searches: Vec<_> = round
        .chunks(READ_CHUNK)
        .map(|chunk| async move {
            let ids: Vec<&str> = chunk.iter().map(|&i| fresh[i].0.as_str()).collect();
            client.read_many(fhir, "Observation", &ids).await
        })
        .collect();
    let answers: Vec<Result<Vec<Value>, Failure>> = stream::iter(searches)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut found = HashMap::new();
    for answer in answers {
        for resource in answer? {
            if let Some(id) = resource["id"].as_str() {
                found.insert(id.to_owned(), resource);
            }
        }
    }
    Ok(found)
}

/// `W/"{meta.versionId}"`, the ETag of the version a search returned.
fn version_etag(resource: &Value) -> Option<String> {
    resource
        .pointer("/meta/versionId")
        .and_then(Value::as_str)
        .map(|v| format!("W/\"{v}\""))
}
