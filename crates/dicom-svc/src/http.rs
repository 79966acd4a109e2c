//! What every DICOMweb handler shares: the instance and API version in the path, the UIDs of
//! the path as domain types, and the service's state.

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use hds_core::names::InstanceName;
use hds_core::ops::Caller;
use hds_core::provisioning::{Instance as RegisteredInstance, InstanceRegistry};

use crate::domain::{ApiVersion, Scope, SeriesUid, SopInstanceUid, StudyUid};
use crate::error::DicomError;
use crate::store::Store;

pub type DicomCaller = Caller<DicomError>;

/// What handlers need besides the request.
#[derive(Clone)]
pub struct DicomState {
    pub store: Store,
    /// Where STOW-RS requests are indexed, together with concurrent ones.
    pub index: crate::group_commit::GroupCommit,
    /// The largest DICOM part (instance) a STOW-RS request may carry; parts are held in memory.
    pub max_part_bytes: usize,
    pub public_base_url: Option<String>,
}

/// The DICOM service instance the request addresses (first path segment), known to exist.
pub struct Instance(pub InstanceName);

impl FromRequest for Instance {
    type Error = DicomError;
    type Future = LocalBoxFuture<'static, Result<Self, DicomError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { resolve(&req).await.map(|(name, _)| Instance(name)) })
    }
}

/// The instance the path names and its registry entry (its ARM properties), or why not.
pub async fn resolve(req: &HttpRequest) -> Result<(InstanceName, RegisteredInstance), DicomError> {
    let raw = req.match_info().get("instance").unwrap_or_default();
    let name: InstanceName = raw.parse().map_err(|_| {
        DicomError::NotFound(format!(
            "The requested resource '{} {}' was not found.",
            req.method(),
            req.path()
        ))
    })?;
    let registry = req
        .app_data::<web::Data<InstanceRegistry>>()
        .ok_or_else(|| DicomError::Internal("no instance registry".into()))?;
    match registry.get(&name).await? {
        Some(found) => Ok((name, found)),
        None => Err(DicomError::UnknownInstance(name.to_string())),
    }
}

/// The API version of the path (`/{instance}/v2/...`); a version Azure does not serve is a 400.
#[derive(Debug, Clone, Copy)]
pub struct Version(pub ApiVersion);

impl FromRequest for Version {
    type Error = DicomError;
    type Future = std::future::Ready<Result<Self, DicomError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let segment = req.match_info().get("version").unwrap_or_default();
        std::future::ready(
            ApiVersion::from_segment(segment)
                .map(Version)
                .ok_or_else(|| DicomError::UnsupportedApiVersion {
                    uri: req.full_url().to_string(),
                    version: segment.trim_start_matches('v').to_owned(),
                }),
        )
    }
}

/// The study, series and instance UIDs the path names, whichever it has.
pub fn scope(req: &HttpRequest) -> Result<Scope, DicomError> {
    let info = req.match_info();
    let study = StudyUid::from_path(info.get("study").unwrap_or_default())?;
    let Some(series) = info.get("series") else {
        return Ok(Scope::Study(study));
    };
    let series = SeriesUid::from_path(series)?;
    let Some(sop) = info.get("sop") else {
        return Ok(Scope::Series(study, series));
    };
    Ok(Scope::Instance(
        study,
        series,
        SopInstanceUid::from_path(sop)?,
    ))
}

/// The base URL of the versioned API, for RetrieveURLs: `{root}/{instance}/v{n}`, with
/// `/partitions/{name}` when the request named a partition (Azure's retrieve URLs keep it).
pub fn api_base(req: &HttpRequest, state: &DicomState, instance: &InstanceName) -> String {
    let root = match &state.public_base_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    };
    let version = req.match_info().get("version").unwrap_or("v1");
    match req.match_info().get("partition") {
        Some(partition) => format!("{root}/{instance}/{version}/partitions/{partition}"),
        None => format!("{root}/{instance}/{version}"),
    }
}
