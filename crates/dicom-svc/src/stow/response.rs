//! The STOW-RS response data set (PS3.18 10.5.3, Azure's "Store Response Payload"): which
//! instances were stored (ReferencedSOPSequence, with their RetrieveURL and any warning),
//! which failed and why (FailedSOPSequence with FailureReason), and the status it implies.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde_json::{json, Map, Value};

use crate::dicomweb::json::attr;
use crate::dicomweb::media::DICOM_JSON;
use crate::domain::ApiVersion;

/// Why an instance was not stored (Azure's "Store Failure Reason Codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// 272: a general failure while storing (the blob store or database failed for it).
    ProcessingFailure,
    /// 43264: the instance failed validation (or is not readable DICOM).
    ValidationFailure,
    /// 43265: its StudyInstanceUID is not the one of the request URL.
    StudyInstanceUidMismatch,
    /// 45070: an instance with the same three UIDs is already stored.
    SopInstanceAlreadyExists,
    /// 45071: the instance is being created by another request. hds never leaves an instance
    /// half-created (blob first, then one transaction), so it does not produce this code.
    PendingSopInstance,
}

impl FailureReason {
    pub fn code(self) -> u16 {
        match self {
            FailureReason::ProcessingFailure => 272,
            FailureReason::ValidationFailure => 43264,
            FailureReason::StudyInstanceUidMismatch => 43265,
            FailureReason::SopInstanceAlreadyExists => 45070,
            FailureReason::PendingSopInstance => 45071,
        }
    }
}

/// Why a stored instance may have issues (Azure's "Store Warning Reason Codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarningReason {
    /// 45063: the data set does not match the constraints of its SOP class.
    DatasetDoesNotMatchSopClass,
    /// 1: the data set has validation warnings (v2).
    DatasetHasValidationWarnings,
}

impl WarningReason {
    pub fn code(self) -> u16 {
        match self {
            WarningReason::DatasetDoesNotMatchSopClass => 45063,
            WarningReason::DatasetHasValidationWarnings => 1,
        }
    }
}

fn error_comments(messages: &[String]) -> Value {
    let items: Vec<Value> = messages
        .iter()
        .map(|m| json!({ "00000902": attr("LO", vec![json!(m)]) }))
        .collect();
    json!({ "vr": "SQ", "Value": items })
}

fn uid(values: Option<&str>) -> Option<Value> {
    values.map(|v| attr("UI", vec![json!(v)]))
}

/// The response being built while the request's parts are stored.
pub struct StoreResponse {
    version: ApiVersion,
    study_url: Option<String>,
    referenced: Vec<Value>,
    failed: Vec<Value>,
    warned: bool,
}

impl StoreResponse {
    /// `study_url`: the study's RetrieveURL when the request named the study.
    pub fn new(version: ApiVersion, study_url: Option<String>) -> Self {
        Self {
            version,
            study_url,
            referenced: Vec::new(),
            failed: Vec::new(),
            warned: false,
        }
    }

    pub fn stored(
        &mut self,
        sop_class_uid: &str,
        sop_instance_uid: &str,
        retrieve_url: String,
        warning: Option<WarningReason>,
        failed_attributes: &[String],
    ) {
        let mut item = Map::new();
        item.insert("00081150".into(), attr("UI", vec![json!(sop_class_uid)]));
        item.insert("00081155".into(), attr("UI", vec![json!(sop_instance_uid)]));
        item.insert("00081190".into(), attr("UR", vec![json!(retrieve_url)]));
        if let Some(w) = warning {
            self.warned = true;
            item.insert("00081196".into(), attr("US", vec![json!(w.code())]));
        }
        // v2 lists the attributes that failed validation, also when there are none.
        if self.version.is_lenient() {
            item.insert("00741048".into(), error_comments(failed_attributes));
        }
        self.referenced.push(Value::Object(item));
    }

    pub fn failed(
        &mut self,
        sop_class_uid: Option<&str>,
        sop_instance_uid: Option<&str>,
        reason: FailureReason,
        failed_attributes: &[String],
    ) {
        let mut item = Map::new();
        if let Some(v) = uid(sop_class_uid) {
            item.insert("00081150".into(), v);
        }
        if let Some(v) = uid(sop_instance_uid) {
            item.insert("00081155".into(), v);
        }
        item.insert("00081197".into(), attr("US", vec![json!(reason.code())]));
        if !failed_attributes.is_empty() {
            item.insert("00741048".into(), error_comments(failed_attributes));
        }
        self.failed.push(Value::Object(item));
    }

    /// 200 all stored (v2: 202 if any has a warning), 202 some stored, 409 none stored,
    /// 204 for a request without parts.
    pub fn status(&self) -> StatusCode {
        match (self.referenced.is_empty(), self.failed.is_empty()) {
            (true, true) => StatusCode::NO_CONTENT,
            (false, false) => StatusCode::ACCEPTED,
            (false, true) if self.warned && self.version.is_lenient() => StatusCode::ACCEPTED,
            (false, true) => StatusCode::OK,
            (true, false) => StatusCode::CONFLICT,
        }
    }

    pub fn into_response(self) -> HttpResponse {
        let status = self.status();
        if status == StatusCode::NO_CONTENT {
            return HttpResponse::NoContent().finish();
        }
        let mut body = Map::new();
        if let (Some(url), false) = (&self.study_url, self.referenced.is_empty()) {
            body.insert("00081190".into(), attr("UR", vec![json!(url)]));
        }
        if !self.failed.is_empty() {
            body.insert(
                "00081198".into(),
                json!({ "vr": "SQ", "Value": self.failed }),
            );
        }
        if !self.referenced.is_empty() {
            body.insert(
                "00081199".into(),
                json!({ "vr": "SQ", "Value": self.referenced }),
            );
        }
        HttpResponse::build(status)
            .content_type(DICOM_JSON)
            .body(Value::Object(body).to_string())
    }
}
