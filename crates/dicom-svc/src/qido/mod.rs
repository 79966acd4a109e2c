//! Search Transaction, QIDO-RS (PS3.18 10.6) at its six paths: `studies`, `series`,
//! `instances`, `studies/{s}/series`, `studies/{s}/instances`,
//! `studies/{s}/series/{se}/instances`.
//!
//! Matching and returned attributes are Azure's (v2 conformance statement, "Search (QIDO-RS)"),
//! plus what PS3.18 has and Azure lacks: `*`/`?` wildcards, UID lists, date ranges on every
//! date attribute. `query` reads the request, `search` asks the index, `response` writes the
//! DICOM JSON. No match is 204, as on Azure.

pub mod attributes;
pub mod query;
pub mod response;
pub mod search;

use actix_web::{web, HttpRequest, HttpResponse};
use hds_core::auth::Permission;

use crate::dicomweb::media::{self, DICOM_JSON};
use crate::domain::{SeriesUid, StudyUid};
use crate::error::DicomError;
use crate::http::{DicomCaller, DicomState, Version};
use crate::partitions::Partitioned;
use attributes::Level;
use query::{Query, Target};

async fn search(
    req: HttpRequest,
    caller: DicomCaller,
    partition: Partitioned,
    state: web::Data<DicomState>,
    level: Level,
) -> Result<HttpResponse, DicomError> {
    caller.require(Permission::Read)?;
    let Partitioned(partition) = partition;
    media::require_dicom_json(&req)?;
    let info = req.match_info();
    let target = Target {
        level,
        study: info.get("study").map(StudyUid::from_path).transpose()?,
        series: info.get("series").map(SeriesUid::from_path).transpose()?,
    };
    // Percent-decoded pairs, repeated names kept (includefield may come more than once).
    let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|_| DicomError::bad_request("The query string included invalid characters."))?
        .into_inner();
    let query = Query::parse(target, &pairs)?;
    let db = state.store.db();
    let hits = search::page(db, &partition, &query).await?;
    if hits.is_empty() {
        return Ok(HttpResponse::NoContent().finish());
    }
    let wanted = |tag| response::wants_computed(&query, tag);
    let computed = search::computed(db, &partition, level, &hits, &wanted).await?;
    let body = response::write(&query, &hits, &computed);
    Ok(HttpResponse::Ok().content_type(DICOM_JSON).body(body))
}

pub async fn studies(
    req: HttpRequest,
    caller: DicomCaller,
    _version: Version,
    partition: Partitioned,
    state: web::Data<DicomState>,
) -> Result<HttpResponse, DicomError> {
    search(req, caller, partition, state, Level::Study).await
}

pub async fn series(
    req: HttpRequest,
    caller: DicomCaller,
    _version: Version,
    partition: Partitioned,
    state: web::Data<DicomState>,
) -> Result<HttpResponse, DicomError> {
    search(req, caller, partition, state, Level::Series).await
}

pub async fn instances(
    req: HttpRequest,
    caller: DicomCaller,
    _version: Version,
    partition: Partitioned,
    state: web::Data<DicomState>,
) -> Result<HttpResponse, DicomError> {
    search(req, caller, partition, state, Level::Instance).await
}
