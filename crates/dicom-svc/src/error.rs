//! Every error of the DICOM service, mapped once to its status and a plain-text message, as
//! Azure's DICOM service answers errors outside STOW-RS. (A STOW-RS request that was read
//! answers with its response dataset, also for 409: see `stow::response`.)
//!
//! Client mistakes are 4xx with a message that says what to change; failures of the database,
//! blob store or outbox are 503 with the detail in the log only.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use hds_core::auth::AuthError;

use crate::domain::ApiVersion;

#[derive(Debug, thiserror::Error)]
pub enum DicomError {
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("The DICOM service '{0}' does not exist.")]
    UnknownInstance(String),
    /// A route or resource that does not exist; the message is Azure's for the level.
    #[error("{0}")]
    NotFound(String),
    /// `/v3/...`: answered as ASP.NET API versioning does, in its JSON error shape.
    #[error("The HTTP resource that matches the request URI '{uri}' does not support the API version '{version}'.")]
    UnsupportedApiVersion { uri: String, version: String },
    #[error("The string '{0}' was not recognized as a valid DICOM identifier.")]
    InvalidIdentifier(String),
    #[error("{0}")]
    BadRequest(String),
    /// A `/partitions/...` path on an instance without `enableDataPartitions`.
    #[error("Data partitions feature is disabled.")]
    DataPartitionsFeatureDisabled,
    /// A DICOMweb path without `/partitions/{name}` on an instance with partitions.
    #[error("PartitionName value is missing in the route segment.")]
    DataPartitionsMissingPartition,
    #[error("The specified PartitionName is invalid.")]
    InvalidPartitionName,
    /// Only STOW-RS creates partitions; other requests must name an existing one.
    #[error("Specified PartitionName does not exist.")]
    DataPartitionNotFound,
    #[error("The specified content type '{0}' is not supported.")]
    UnsupportedMediaType(String),
    #[error("The request headers are not acceptable")]
    NotAcceptable,
    #[error("A part of the request is larger than the limit of {limit} bytes.")]
    PartTooLarge { limit: usize },
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("blob store: {0}")]
    Blob(#[from] hds_core::blob::BlobError),
    #[error("outbox: {0}")]
    Outbox(#[from] hds_core::outbox::OutboxError),
    /// A dependency failed for another request of the same group commit (`group_commit`).
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl DicomError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        DicomError::BadRequest(message.into())
    }
}

impl ResponseError for DicomError {
    fn status_code(&self) -> StatusCode {
        match self {
            DicomError::Auth(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED)
            }
            DicomError::UnknownInstance(_) | DicomError::NotFound(_) => StatusCode::NOT_FOUND,
            DicomError::UnsupportedApiVersion { .. }
            | DicomError::InvalidIdentifier(_)
            | DicomError::BadRequest(_)
            // Azure answers every partition mistake 400, a missing partition included
            // (`DataPartitionsNotFoundException` is a `BadRequestException`).
            | DicomError::DataPartitionsFeatureDisabled
            | DicomError::DataPartitionsMissingPartition
            | DicomError::InvalidPartitionName
            | DicomError::DataPartitionNotFound => StatusCode::BAD_REQUEST,
            DicomError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            DicomError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            DicomError::PartTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            DicomError::Storage(_)
            | DicomError::Blob(_)
            | DicomError::Outbox(_)
            | DicomError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            DicomError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if self.status_code() == StatusCode::UNAUTHORIZED {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let DicomError::UnsupportedApiVersion { .. } = self {
            res.insert_header(("api-supported-versions", ApiVersion::SUPPORTED));
            return res.json(serde_json::json!({
                "error": {
                    "code": "UnsupportedApiVersion",
                    "message": self.to_string(),
                    "innerError": null,
                }
            }));
        }
        let message = match self {
            DicomError::Storage(_)
            | DicomError::Blob(_)
            | DicomError::Outbox(_)
            | DicomError::Unavailable(_) => {
                tracing::error!(error = %self, "storage failure");
                "The server is currently unable to receive requests. Please retry your request."
                    .to_owned()
            }
            DicomError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                "An internal error occurred.".to_owned()
            }
            other => other.to_string(),
        };
        res.content_type("text/plain; charset=utf-8").body(message)
    }
}

impl From<hds_core::db::DbError> for DicomError {
    fn from(e: hds_core::db::DbError) -> Self {
        match e {
            hds_core::db::DbError::Query(e) => DicomError::Storage(e),
            other => DicomError::Internal(other.to_string()),
        }
    }
}

impl hds_core::dataplane::DataPlaneError for DicomError {
    fn unknown_instance(instance: &hds_core::names::InstanceName) -> Self {
        DicomError::UnknownInstance(instance.to_string())
    }
    fn not_found(method: &str, path: &str) -> Self {
        DicomError::NotFound(format!(
            "The requested resource '{method} {path}' was not found."
        ))
    }
}
