//! Every error of the DICOM service, mapped once to its status and a plain-text message, as
//! Azure's DICOM service answers errors outside STOW-RS.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use hds_core::auth::AuthError;

#[derive(Debug, thiserror::Error)]
pub enum DicomError {
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("The DICOM service '{0}' does not exist.")]
    UnknownInstance(String),
    #[error("The requested resource '{0}' was not found.")]
    NotFound(String),
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
}

impl ResponseError for DicomError {
    fn status_code(&self) -> StatusCode {
        match self {
            DicomError::Auth(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED)
            }
            DicomError::UnknownInstance(_) | DicomError::NotFound(_) => StatusCode::NOT_FOUND,
            DicomError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            DicomError::Storage(e) => {
                tracing::error!(error = %e, "storage failure");
                "The server is currently unable to receive requests. Please retry your request."
                    .to_owned()
            }
            other => other.to_string(),
        };
        let mut res = HttpResponse::build(self.status_code());
        if self.status_code() == StatusCode::UNAUTHORIZED {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.content_type("text/plain; charset=utf-8").body(message)
    }
}

impl hds_core::dataplane::DataPlaneError for DicomError {
    fn unknown_instance(instance: &hds_core::names::InstanceName) -> Self {
        DicomError::UnknownInstance(instance.to_string())
    }
    fn not_found(method: &str, path: &str) -> Self {
        DicomError::NotFound(format!("{method} {path}"))
    }
}
