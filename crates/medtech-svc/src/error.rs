//! Every error of the MedTech service's HTTP surface, mapped once to its status and the
//! `{ "error": { "code", "message" } }` shape Azure's management errors use (the MedTech
//! service has no data-plane API of its own in Azure; devices reach it through the bus).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use hds_core::auth::AuthError;

#[derive(Debug, thiserror::Error)]
pub enum MedtechError {
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("the MedTech service '{0}' does not exist")]
    UnknownInstance(String),
    #[error("'{0}' is not an endpoint of the MedTech service")]
    NotFound(String),
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
}

impl MedtechError {
    fn code(&self) -> &'static str {
        match self {
            MedtechError::Auth(AuthError::Forbidden(_)) => "AuthorizationFailed",
            MedtechError::Auth(AuthError::Config(_)) => "InternalServerError",
            MedtechError::Auth(_) => "AuthenticationFailed",
            MedtechError::UnknownInstance(_) => "ResourceNotFound",
            MedtechError::NotFound(_) => "NotFound",
            MedtechError::Storage(_) => "ServiceUnavailable",
        }
    }
}

impl ResponseError for MedtechError {
    fn status_code(&self) -> StatusCode {
        match self {
            MedtechError::Auth(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED)
            }
            MedtechError::UnknownInstance(_) | MedtechError::NotFound(_) => StatusCode::NOT_FOUND,
            MedtechError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            MedtechError::Storage(e) => {
                tracing::error!(error = %e, "storage failure");
                "the service's storage is unavailable; try again".to_owned()
            }
            other => other.to_string(),
        };
        let mut res = HttpResponse::build(self.status_code());
        if self.status_code() == StatusCode::UNAUTHORIZED {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.json(serde_json::json!({"error": {"code": self.code(), "message": message}}))
    }
}

impl hds_core::dataplane::DataPlaneError for MedtechError {
    fn unknown_instance(instance: &hds_core::names::InstanceName) -> Self {
        MedtechError::UnknownInstance(instance.to_string())
    }
    fn not_found(method: &str, path: &str) -> Self {
        MedtechError::NotFound(format!("{method} {path}"))
    }
}
