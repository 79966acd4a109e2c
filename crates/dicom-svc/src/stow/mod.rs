//! Store Transaction, STOW-RS (PS3.18 10.5): `POST {s}/studies[/{study}]` with
//! `multipart/related; type="application/dicom"` or a single `application/dicom` body.
//!
//! Parts are handled as they arrive, several at a time (`IN_FLIGHT`): read (`parse`) and
//! validated (`validate`) on the blocking pool, their bytes written to the blob store, while
//! the next part is read. When the body has been read, every stored part is indexed in one
//! database transaction, shared with concurrent requests (`group_commit`). Whatever fails for
//! one instance is reported for that instance in the response data set (`response`) and leaves
//! nothing behind: its blob is deleted if it was written. Only a request that cannot be read at
//! all (wrong media type, malformed multipart, a part over the size limit, storage down) is an
//! error response; then every blob the request wrote is deleted.

pub mod parse;
pub mod response;
pub mod validate;

use std::collections::{HashSet, VecDeque};

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use hds_core::auth::Permission;
use hds_core::names::InstanceName;
use serde_json::{Map, Value};

use crate::dicomweb::json;
use crate::dicomweb::media;
use crate::dicomweb::multipart::{DicomParts, Part};
use crate::domain::{ApiVersion, InstanceRef, StudyUid};
use crate::error::DicomError;
use crate::http::{api_base, DicomCaller, DicomState, Version};
use crate::partitions::{self, Partitioned};
use crate::store::{NewInstance, SeriesColumns, Store, StudyColumns};
use dicom_dictionary_std::tags;
use response::{FailureReason, StoreResponse, WarningReason};

/// An instance whose blob is written, waiting for the request's index transaction.
struct Written {
    record: NewInstance,
    warning: Option<WarningReason>,
    failed_attributes: Vec<String>,
}

pub async fn store(
    req: HttpRequest,
    caller: DicomCaller,
    Version(version): Version,
    Partitioned(partition): Partitioned,
    state: web::Data<DicomState>,
    payload: web::Payload,
) -> Result<HttpResponse, DicomError> {
    caller.require(Permission::Write)?;
    let required_study = req
        .match_info()
        .get("study")
        .map(StudyUid::from_path)
        .transpose()?;
    media::require_dicom_json(&req)?;
    let content_type = media::content_type(&req)?;
    let mut parts = DicomParts::new(&content_type, payload, state.max_part_bytes)?;
    // A store is how a partition comes to exist (Azure's implicit creation), once the caller
    // may write and the request is one a store could accept.
    partitions::ensure(state.store.db(), &partition).await?;
    let instance = &partition.instance;
    let base = api_base(&req, &state, instance);
    let mut response = StoreResponse::new(
        version,
        required_study
            .as_ref()
            .map(|s| format!("{base}/studies/{s}")),
    );

    let mut written: Vec<Written> = Vec::new();
    let read = receive_all(
        &mut parts,
        &state.store,
        instance,
        version,
        required_study.as_ref(),
        &mut response,
        &mut written,
    )
    .await;
    if let Err(e) = read {
        discard(
            &state.store,
            written.iter().map(|w| w.record.blob_key.as_str()),
        )
        .await;
        return Err(e);
    }

    // Kept apart from the records, which travel to the committer: if the answer never comes
    // back (the service stops), the blobs still go.
    let keys: Vec<String> = written
        .iter()
        .map(|w| w.record.blob_key.as_str().to_owned())
        .collect();
    let (records, reports): (Vec<NewInstance>, Vec<Report>) = written
        .into_iter()
        .map(|w| {
            (
                w.record,
                Report {
                    warning: w.warning,
                    failed_attributes: w.failed_attributes,
                },
            )
        })
        .unzip();
    let (records, indexed) = state.index.index(partition.clone(), records).await;
    let indexed = match indexed {
        Ok(indexed) => indexed,
        Err(e) => {
            discard(&state.store, keys.iter().map(String::as_str)).await;
            return Err(e);
        }
    };
    for ((record, report), watermark) in records.iter().zip(&reports).zip(indexed) {
        let id = &record.id;
        if watermark.is_some() {
            response.stored(
                &record.sop_class_uid,
                id.sop.as_str(),
                format!(
                    "{base}/studies/{}/series/{}/instances/{}",
                    id.study, id.series, id.sop
                ),
                report.warning,
                &report.failed_attributes,
            );
        } else {
            state.store.delete_blob(record.blob_key.as_str()).await;
            response.failed(
                Some(&record.sop_class_uid),
                Some(id.sop.as_str()),
                FailureReason::SopInstanceAlreadyExists,
                &[],
            );
        }
    }
    Ok(response.into_response())
}

/// What the response says of a stored instance besides its UIDs.
struct Report {
    warning: Option<WarningReason>,
    failed_attributes: Vec<String>,
}

/// Parts read, checked and written at the same time, at most: reading the next part does not
/// wait for the previous one's checks (on the blocking pool) and upload, while the parts in
/// memory stay bounded.
const IN_FLIGHT: usize = 8;

/// Why one part was not stored, as the response reports it.
struct Failure {
    class: Option<String>,
    sop: Option<String>,
    reason: FailureReason,
    failed_attributes: Vec<String>,
}

impl Failure {
    /// A failure of the service, not of the part.
    fn processing(class: Option<String>, sop: Option<String>) -> Self {
        Failure {
            class,
            sop,
            reason: FailureReason::ProcessingFailure,
            failed_attributes: Vec::new(),
        }
    }
}

/// What became of one part.
enum Outcome {
    Failed(Failure),
    Written(Box<Written>),
}

/// Reads every part; each valid one is written to the blob store and added to `written`, in
/// the order of the parts.
async fn receive_all(
    parts: &mut DicomParts,
    store: &Store,
    instance: &InstanceName,
    version: ApiVersion,
    required_study: Option<&StudyUid>,
    response: &mut StoreResponse,
    written: &mut Vec<Written>,
) -> Result<(), DicomError> {
    let mut seen: HashSet<InstanceRef> = HashSet::new();
    let mut pending: VecDeque<tokio::task::JoinHandle<Outcome>> = VecDeque::new();
    let read = loop {
        if pending.len() >= IN_FLIGHT {
            let next = pending.pop_front().expect("pending is not empty");
            settle(next.await, store, &mut seen, response, written).await;
        }
        match parts.next().await {
            Ok(Some(part)) => pending.push_back(tokio::spawn(receive(
                part,
                store.clone(),
                instance.clone(),
                version,
                required_study.cloned(),
            ))),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // Also after a failed read: every part's upload is over before the caller decides what
    // to keep, so none is left behind.
    for next in pending {
        settle(next.await, store, &mut seen, response, written).await;
    }
    read
}

/// Records a part's outcome in the response (failures) or `written`.
async fn settle(
    outcome: Result<Outcome, tokio::task::JoinError>,
    store: &Store,
    seen: &mut HashSet<InstanceRef>,
    response: &mut StoreResponse,
    written: &mut Vec<Written>,
) {
    let outcome = outcome.unwrap_or_else(|e| {
        tracing::error!(error = %e, "handling a STOW-RS part failed");
        Outcome::Failed(Failure::processing(None, None))
    });
    match outcome {
        Outcome::Failed(f) => response.failed(
            f.class.as_deref(),
            f.sop.as_deref(),
            f.reason,
            &f.failed_attributes,
        ),
        // The same instance twice in one request: the first one is stored (as on Azure).
        Outcome::Written(w) if !seen.insert(w.record.id.clone()) => {
            store.delete_blob(w.record.blob_key.as_str()).await;
            response.failed(
                Some(&w.record.sop_class_uid),
                Some(w.record.id.sop.as_str()),
                FailureReason::SopInstanceAlreadyExists,
                &[],
            );
        }
        Outcome::Written(w) => written.push(*w),
    }
}

/// One part: read, validated and made into index rows on the blocking pool (dicom-rs parsing
/// and the DICOM JSON are CPU work), then its bytes written to the blob store.
async fn receive(
    part: Part,
    store: Store,
    instance: InstanceName,
    version: ApiVersion,
    required_study: Option<StudyUid>,
) -> Outcome {
    let checked = tokio::task::spawn_blocking(move || {
        check(part, &instance, version, required_study.as_ref())
    })
    .await;
    let (bytes, written) = match checked {
        Ok(Ok(ready)) => ready,
        Ok(Err(failed)) => return Outcome::Failed(failed),
        Err(e) => {
            tracing::error!(error = %e, "checking a STOW-RS part failed");
            return Outcome::Failed(Failure::processing(None, None));
        }
    };
    let key = &written.record.blob_key;
    let body = futures::StreamExt::boxed(futures::stream::iter(bytes.into_iter().map(Ok)));
    match store.blobs.put(key, body).await {
        Ok(size) => {
            debug_assert_eq!(size, written.record.size_bytes);
            Outcome::Written(written)
        }
        Err(e) => {
            tracing::warn!(error = %e, blob = %key, "storing an instance's bytes failed");
            Outcome::Failed(Failure::processing(
                Some(written.record.sop_class_uid),
                Some(written.record.id.sop.to_string()),
            ))
        }
    }
}

/// Reads and validates a part and makes its index rows: the bytes to store and the instance,
/// or why it fails.
fn check(
    part: Part,
    instance: &InstanceName,
    version: ApiVersion,
    required_study: Option<&StudyUid>,
) -> Result<(Vec<Bytes>, Box<Written>), Failure> {
    let received = parse::read(part).map_err(|why| {
        tracing::info!(reason = %why, "a STOW-RS part is not readable DICOM");
        Failure {
            class: None,
            sop: None,
            reason: FailureReason::ValidationFailure,
            failed_attributes: Vec::new(),
        }
    })?;
    let (class, sop) = validate::reported_uids(&received.dataset);
    let accepted = match validate::validate(
        &received.dataset,
        &received.transfer_syntax_uid,
        version,
        required_study,
    ) {
        Ok(a) => a,
        Err(rejected) => {
            return Err(Failure {
                class,
                sop,
                reason: rejected.reason,
                failed_attributes: rejected.failed_attributes,
            })
        }
    };
    let metadata = json::dataset(&received.dataset, &accepted.dropped);
    let key = Store::blob_key(instance, &accepted.id).map_err(|e| {
        tracing::warn!(error = %e, "no blob key for an instance");
        Failure::processing(class.clone(), sop.clone())
    })?;
    let written = Box::new(Written {
        record: record(
            accepted.id,
            accepted.sop_class_uid.to_string(),
            received.transfer_syntax_uid,
            key,
            received.len as u64,
            &metadata,
        ),
        warning: accepted.warning,
        failed_attributes: accepted.failed_attributes,
    });
    Ok((received.bytes, written))
}

/// Deletes the blobs of a request that will not be indexed.
async fn discard(store: &Store, keys: impl Iterator<Item = &str>) {
    for key in keys {
        store.delete_blob(key).await;
    }
}

/// The index rows of an instance, from its metadata (so that what is searched is what
/// metadata shows: v2 drops invalid attributes from both).
fn record(
    id: InstanceRef,
    sop_class_uid: String,
    transfer_syntax_uid: String,
    blob_key: hds_core::blob::BlobKey,
    size_bytes: u64,
    metadata: &Map<String, Value>,
) -> NewInstance {
    // Index values without NUL padding, so a search finds them with or without it.
    let get = |tag| json::first_string(metadata, tag).map(|v| v.trim_end_matches('\0').to_owned());
    let as_json =
        |tags: &[dicom_core::Tag]| Value::Object(json::subset(metadata, tags)).to_string();
    // Written straight from the map (no copy of it as a `Value` first).
    let metadata_text = serde_json::to_string(metadata).unwrap_or_else(|_| "{}".into());
    let patient_name = get(tags::PATIENT_NAME);
    let referring = get(tags::REFERRING_PHYSICIAN_NAME);
    let folded = |n: &Option<String>| n.as_deref().map(crate::person_name::fold);
    let words = |n: &Option<String>| n.as_deref().map(crate::person_name::words);
    NewInstance {
        id,
        sop_class_uid,
        transfer_syntax_uid,
        blob_key,
        size_bytes,
        study: StudyColumns {
            patient_id: get(tags::PATIENT_ID),
            patient_name_folded: folded(&patient_name),
            patient_name_words: words(&patient_name),
            referring_physician_name_folded: folded(&referring),
            referring_physician_name_words: words(&referring),
            patient_name,
            patient_birth_date: get(tags::PATIENT_BIRTH_DATE),
            accession_number: get(tags::ACCESSION_NUMBER),
            referring_physician_name: referring,
            study_date: get(tags::STUDY_DATE),
            study_description: get(tags::STUDY_DESCRIPTION),
            attributes: as_json(crate::attributes::STUDY),
        },
        series: SeriesColumns {
            modality: get(tags::MODALITY),
            performed_procedure_step_start_date: get(tags::PERFORMED_PROCEDURE_STEP_START_DATE),
            manufacturer_model_name: get(tags::MANUFACTURER_MODEL_NAME),
            attributes: as_json(crate::attributes::SERIES),
        },
        attributes: as_json(crate::attributes::INSTANCE),
        metadata: metadata_text,
    }
}
