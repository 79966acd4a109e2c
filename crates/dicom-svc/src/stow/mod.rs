//! Store Transaction, STOW-RS (PS3.18 10.5): `POST {s}/studies[/{study}]` with
//! `multipart/related; type="application/dicom"` or a single `application/dicom` body.
//!
//! Parts are handled as they arrive: read (`parse`), validated (`validate`), their bytes
//! written to the blob store. When the body has been read, every stored part is indexed in
//! one database transaction (`store::Store::index`). Whatever fails for one instance is
//! reported for that instance in the response data set (`response`) and leaves nothing behind:
//! its blob is deleted if it was written. Only a request that cannot be read at all (wrong
//! media type, malformed multipart, a part over the size limit, storage down) is an error
//! response; then every blob the request wrote is deleted.

pub mod parse;
pub mod response;
pub mod validate;

use std::collections::HashSet;

use actix_web::{web, HttpRequest, HttpResponse};
use hds_core::auth::Permission;
use hds_core::names::InstanceName;
use serde_json::{Map, Value};

use crate::dicomweb::json;
use crate::dicomweb::media;
use crate::dicomweb::multipart::DicomParts;
use crate::domain::{ApiVersion, InstanceRef, StudyUid};
use crate::error::DicomError;
use crate::http::{api_base, DicomCaller, DicomState, Instance, Version};
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
    Instance(instance): Instance,
    Version(version): Version,
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
    let base = api_base(&req, &state, &instance);
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
        &instance,
        version,
        required_study.as_ref(),
        &mut response,
        &mut written,
    )
    .await;
    if let Err(e) = read {
        discard(&state.store, &written).await;
        return Err(e);
    }

    let indexed = match state.store.index(&instance, &written, |w| &w.record).await {
        Ok(indexed) => indexed,
        Err(e) => {
            discard(&state.store, &written).await;
            return Err(e);
        }
    };
    for (w, watermark) in written.iter().zip(indexed) {
        let id = &w.record.id;
        if watermark.is_some() {
            response.stored(
                &w.record.sop_class_uid,
                id.sop.as_str(),
                format!(
                    "{base}/studies/{}/series/{}/instances/{}",
                    id.study, id.series, id.sop
                ),
                w.warning,
                &w.failed_attributes,
            );
        } else {
            state.store.delete_blob(w.record.blob_key.as_str()).await;
            response.failed(
                Some(&w.record.sop_class_uid),
                Some(id.sop.as_str()),
                FailureReason::SopInstanceAlreadyExists,
                &[],
            );
        }
    }
    Ok(response.into_response())
}

/// Reads every part; each valid one is written to the blob store and added to `written`.
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
    while let Some(part) = parts.next().await? {
        let received = match parse::read(part) {
            Ok(r) => r,
            Err(why) => {
                tracing::info!(reason = %why, "a STOW-RS part is not readable DICOM");
                response.failed(None, None, FailureReason::ValidationFailure, &[]);
                continue;
            }
        };
        let (class, sop) = validate::reported_uids(&received.dataset);
        let accepted = match validate::validate(
            &received.dataset,
            &received.transfer_syntax_uid,
            version,
            required_study,
        ) {
            Ok(a) => a,
            Err(rejected) => {
                response.failed(
                    class.as_deref(),
                    sop.as_deref(),
                    rejected.reason,
                    &rejected.failed_attributes,
                );
                continue;
            }
        };
        // The same instance twice in one request: the first one is stored (as on Azure).
        if !seen.insert(accepted.id.clone()) {
            response.failed(
                class.as_deref(),
                sop.as_deref(),
                FailureReason::SopInstanceAlreadyExists,
                &[],
            );
            continue;
        }
        let metadata = json::dataset(&received.dataset, &accepted.dropped);
        let key = Store::blob_key(instance, &accepted.id)?;
        let size = match store
            .blobs
            .put(
                &key,
                futures::StreamExt::boxed(futures::stream::iter(
                    received.bytes.into_iter().map(Ok),
                )),
            )
            .await
        {
            Ok(size) => size,
            Err(e) => {
                tracing::warn!(error = %e, blob = %key, "storing an instance's bytes failed");
                response.failed(
                    class.as_deref(),
                    sop.as_deref(),
                    FailureReason::ProcessingFailure,
                    &[],
                );
                continue;
            }
        };
        debug_assert_eq!(size as usize, received.len);
        written.push(Written {
            record: record(
                accepted.id,
                accepted.sop_class_uid.to_string(),
                received.transfer_syntax_uid,
                key,
                size,
                &metadata,
            ),
            warning: accepted.warning,
            failed_attributes: accepted.failed_attributes,
        });
    }
    Ok(())
}

/// Deletes the blobs of a request that will not be indexed.
async fn discard(store: &Store, written: &[Written]) {
    for w in written {
        store.delete_blob(w.record.blob_key.as_str()).await;
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
