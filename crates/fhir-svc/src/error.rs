//! Every error of the FHIR service, mapped once to an `OperationOutcome` with its status.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use hds_core::auth::AuthError;

#[derive(Debug, thiserror::Error)]
pub enum FhirError {
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("the FHIR service '{0}' does not exist")]
    UnknownInstance(String),
    #[error("'{0}' is not a supported FHIR interaction here")]
    NotFound(String),
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
}

impl FhirError {
    /// The OperationOutcome issue type (http://hl7.org/fhir/R4/valueset-issue-type.html).
    fn issue_code(&self) -> &'static str {
        match self {
            FhirError::Auth(AuthError::Forbidden(_)) => "forbidden",
            FhirError::Auth(AuthError::Config(_)) => "exception",
            FhirError::Auth(_) => "login",
            FhirError::UnknownInstance(_) | FhirError::NotFound(_) => "not-found",
            FhirError::Storage(_) => "exception",
        }
    }
}

impl ResponseError for FhirError {
    fn status_code(&self) -> StatusCode {
        match self {
            FhirError::Auth(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED)
            }
            FhirError::UnknownInstance(_) | FhirError::NotFound(_) => StatusCode::NOT_FOUND,
            FhirError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let diagnostics = match self {
            // Storage details stay in the log.
            FhirError::Storage(e) => {
                tracing::error!(error = %e, "storage failure");
                "the service's storage is unavailable; try again".to_owned()
            }
            other => other.to_string(),
        };
        let outcome = serde_json::json!({
            "resourceType": "OperationOutcome",
            "id": uuid::Uuid::new_v4().to_string(),
            "issue": [{
                "severity": "error",
                "code": self.issue_code(),
                "diagnostics": diagnostics,
            }]
        });
        let mut res = HttpResponse::build(self.status_code());
        if self.status_code() == StatusCode::UNAUTHORIZED {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.content_type("application/fhir+json; charset=utf-8")
            .body(outcome.to_string())
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
