//! Every error of the FHIR service, mapped once to an `OperationOutcome` with its status.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use hds_core::auth::AuthError;
use serde_json::json;

/// One problem, as an `OperationOutcome.issue`.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// An issue-type code: `invalid`, `structure`, `value`, `required`, `not-supported`, ...
    pub code: &'static str,
    pub diagnostics: String,
    /// Where, as a FHIRPath expression (`Patient.name[0].given`).
    pub expression: Option<String>,
}

impl Issue {
    pub fn invalid(diagnostics: impl Into<String>) -> Self {
        Self {
            code: "invalid",
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FhirError {
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("the FHIR service '{0}' does not exist")]
    UnknownInstance(String),
    #[error("'{0}' is not a supported FHIR interaction here")]
    NotFound(String),
    #[error("Resource type '{resource_type}' with id '{id}' couldn't be found.")]
    ResourceNotFound { resource_type: String, id: String },
    #[error(
        "Resource type '{resource_type}' with id '{id}' and version '{version}' couldn't be found."
    )]
    VersionNotFound {
        resource_type: String,
        id: String,
        version: String,
    },
    #[error("The resource '{resource_type}/{id}' has been deleted (version {version}).")]
    Gone {
        resource_type: String,
        id: String,
        version: i64,
    },
    #[error(
        "The supplied version '{wanted}' did not match the current version '{current}' (If-Match)."
    )]
    VersionMismatch { current: i64, wanted: i64 },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    /// The instance's `versioned-update` policy wants `If-Match` on this write.
    #[error("An If-Match header is required for updates on resource type '{resource_type}'.")]
    IfMatchRequired { resource_type: String },
    #[error("the request is invalid")]
    Invalid(Vec<Issue>),
    #[error("the bundle has {entries} entries; the limit is {limit}")]
    TooManyEntries { entries: usize, limit: usize },
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("Content-Type '{0}' is not supported: send application/fhir+json")]
    UnsupportedMediaType(String),
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("outbox: {0}")]
    Outbox(#[from] hds_core::outbox::OutboxError),
    /// A transient failure the client may retry (the write was not stored).
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<hds_core::db::DbError> for FhirError {
    fn from(e: hds_core::db::DbError) -> Self {
        match e {
            hds_core::db::DbError::Query(e) => FhirError::Storage(e),
            other => FhirError::Internal(other.to_string()),
        }
    }
}

impl FhirError {
    /// A single-issue 400.
    pub fn invalid(diagnostics: impl Into<String>) -> Self {
        FhirError::Invalid(vec![Issue::invalid(diagnostics)])
    }

    fn issue_code(&self) -> &'static str {
        match self {
            FhirError::Auth(AuthError::Forbidden(_)) => "forbidden",
            FhirError::Auth(AuthError::Config(_)) => "exception",
            FhirError::Auth(_) => "login",
            FhirError::UnknownInstance(_)
            | FhirError::NotFound(_)
            | FhirError::ResourceNotFound { .. }
            | FhirError::VersionNotFound { .. } => "not-found",
            FhirError::Gone { .. } => "deleted",
            FhirError::VersionMismatch { .. } | FhirError::Conflict(_) => "conflict",
            FhirError::PreconditionFailed(_) => "multiple-matches",
            FhirError::IfMatchRequired { .. } => "business-rule",
            FhirError::Invalid(_) => "invalid",
            FhirError::PayloadTooLarge { .. } | FhirError::TooManyEntries { .. } => "too-costly",
            FhirError::UnsupportedMediaType(_) => "not-supported",
            FhirError::Storage(_) | FhirError::Outbox(_) | FhirError::Unavailable(_) => "transient",
            FhirError::Internal(_) => "exception",
        }
    }

    /// This error as an `OperationOutcome` (also for bundle entry responses).
    pub fn outcome(&self) -> serde_json::Value {
        operation_outcome(self.issues())
    }

    fn issues(&self) -> Vec<serde_json::Value> {
        let one = |code: &str, diagnostics: String| {
            vec![json!({"severity": "error", "code": code, "diagnostics": diagnostics})]
        };
        match self {
            FhirError::Invalid(issues) => issues
                .iter()
                .map(|i| {
                    let mut v =
                        json!({"severity": "error", "code": i.code, "diagnostics": i.diagnostics});
                    if let Some(e) = &i.expression {
                        v["expression"] = json!([e]);
                    }
                    v
                })
                .collect(),
            // Storage details stay in the log.
            FhirError::Storage(e) => {
                tracing::error!(error = %e, "storage failure");
                one(
                    self.issue_code(),
                    "the service's storage is unavailable; try again".into(),
                )
            }
            FhirError::Outbox(e) => {
                tracing::error!(error = %e, "outbox failure");
                one(
                    self.issue_code(),
                    "the service's storage is unavailable; try again".into(),
                )
            }
            FhirError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                one(self.issue_code(), "an internal error occurred".into())
            }
            other => one(other.issue_code(), other.to_string()),
        }
    }
}

/// An `OperationOutcome` with the given issues.
pub fn operation_outcome(issues: Vec<serde_json::Value>) -> serde_json::Value {
    json!({
        "resourceType": "OperationOutcome",
        "id": uuid::Uuid::new_v4().to_string(),
        "issue": issues,
    })
}

impl ResponseError for FhirError {
    fn status_code(&self) -> StatusCode {
        match self {
            FhirError::Auth(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED)
            }
            FhirError::UnknownInstance(_)
            | FhirError::NotFound(_)
            | FhirError::ResourceNotFound { .. }
            | FhirError::VersionNotFound { .. } => StatusCode::NOT_FOUND,
            FhirError::Gone { .. } => StatusCode::GONE,
            FhirError::VersionMismatch { .. }
            | FhirError::PreconditionFailed(_)
            | FhirError::IfMatchRequired { .. } => StatusCode::PRECONDITION_FAILED,
            FhirError::Conflict(_) => StatusCode::CONFLICT,
            FhirError::Invalid(_) | FhirError::TooManyEntries { .. } => StatusCode::BAD_REQUEST,
            FhirError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            FhirError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            FhirError::Storage(_) | FhirError::Outbox(_) | FhirError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            FhirError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if self.status_code() == StatusCode::UNAUTHORIZED {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.content_type(crate::http::FHIR_JSON)
            .body(self.outcome().to_string())
    }
}

impl hds_core::dataplane::DataPlaneError for FhirError {
    fn unknown_instance(instance: &hds_core::names::InstanceName) -> Self {
        FhirError::UnknownInstance(instance.to_string())
    }
    fn not_found(method: &str, path: &str) -> Self {
        FhirError::NotFound(format!("{method} {path}"))
    }
}
