//! Every error of the control plane, mapped once to ARM's error envelope
//! `{ "error": { "code", "message", "details" } }` with the RPC's codes.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use hds_core::auth::AuthError;

#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("The api-version query parameter (?api-version=) is required for all requests.")]
    MissingApiVersion,
    #[error("The api-version '{0}' is invalid. The supported versions are '{supported}'.", supported = crate::API_VERSION)]
    InvalidApiVersion(String),
    #[error("The query string is invalid: {0}")]
    InvalidQuery(String),
    #[error("The operation '{0}' could not be found.")]
    OperationNotFound(String),
    #[error("The requested path '{0}' is not part of the Microsoft.HealthcareApis API.")]
    PathNotFound(String),
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
}

impl ArmError {
    fn code(&self) -> &'static str {
        match self {
            ArmError::Auth(AuthError::Forbidden(_)) => "AuthorizationFailed",
            ArmError::Auth(AuthError::Config(_)) => "InternalServerError",
            ArmError::Auth(AuthError::MissingToken) => "AuthenticationFailed",
            ArmError::Auth(_) => "InvalidAuthenticationToken",
            ArmError::MissingApiVersion => "MissingApiVersionParameter",
            ArmError::InvalidApiVersion(_) => "InvalidApiVersionParameter",
            ArmError::InvalidQuery(_) => "InvalidRequestContent",
            ArmError::OperationNotFound(_) => "OperationNotFound",
            ArmError::PathNotFound(_) => "InvalidResourceType",
            ArmError::Storage(_) => "ServiceUnavailable",
        }
    }
}

impl ResponseError for ArmError {
    fn status_code(&self) -> StatusCode {
        match self {
            ArmError::Auth(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED)
            }
            ArmError::MissingApiVersion
            | ArmError::InvalidApiVersion(_)
            | ArmError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            ArmError::OperationNotFound(_) | ArmError::PathNotFound(_) => StatusCode::NOT_FOUND,
            ArmError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            ArmError::Storage(e) => {
                tracing::error!(error = %e, "storage failure");
                "The service is temporarily unavailable; retry the request.".to_owned()
            }
            other => other.to_string(),
        };
        let mut res = HttpResponse::build(self.status_code());
        if self.status_code() == StatusCode::UNAUTHORIZED {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.json(serde_json::json!({
            "error": { "code": self.code(), "message": message, "details": [] }
        }))
    }
}
