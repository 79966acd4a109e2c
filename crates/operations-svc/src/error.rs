//! Every error of the control plane, mapped once to ARM's error envelope
//! `{ "error": { "code", "message", "target", "details" } }` with the RPC's codes.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use hds_core::auth::AuthError;

use crate::resource_id::ResourceType;

#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("The api-version query parameter (?api-version=) is required for all requests. The supported versions are '{supported}'.", supported = crate::API_VERSION)]
    MissingApiVersion,
    #[error("The api-version '{0}' is invalid. The supported versions are '{supported}'.", supported = crate::API_VERSION)]
    InvalidApiVersion(String),
    #[error("The query string is invalid: {0}")]
    InvalidQuery(String),
    /// A request body that is not JSON or does not fit the resource's schema; `target` is
    /// the JSON path of the offending member.
    #[error("{message}")]
    InvalidBody {
        target: Option<String>,
        message: String,
    },
    #[error("The resource name '{name}' is invalid for type '{}': use 3 to 24 lowercase letters and digits (and, below a workspace, hyphens), starting with a letter.", rtype.arm_type())]
    InvalidResourceName { name: String, rtype: ResourceType },
    #[error("The resource group name '{0}' is invalid.")]
    InvalidResourceGroup(String),
    #[error("The 'location' property is required for this resource.")]
    LocationRequired,
    #[error("The resource '{id}' exists in location '{existing}'; its location cannot be changed to '{requested}'.")]
    InvalidResourceLocation {
        id: String,
        existing: String,
        requested: String,
    },
    #[error("The Resource '{0}' was not found.")]
    ResourceNotFound(String),
    #[error("The parent resource '{0}' was not found.")]
    ParentResourceNotFound(String),
    #[error("An operation is in progress on the resource '{0}'; retry when it has finished.")]
    AnotherOperationInProgress(String),
    #[error(
        "The resource '{0}' cannot be deleted while it has nested resources; delete them first."
    )]
    NestedResourcesExist(String),
    /// Azure's MedTech service takes one FHIR destination (its deployment errors: "Only one
    /// Destination resource is permitted per MedTech service").
    #[error("The maximum number of resource type iotconnectors/fhirdestinations has been reached: the MedTech service '{0}' has its one FHIR destination already.")]
    FhirDestinationQuotaExceeded(String),
    #[error("The media type '{0}' is not supported: send the body as application/json.")]
    UnsupportedMediaType(String),
    #[error("The condition of the If-Match or If-None-Match header was not met for '{0}'.")]
    PreconditionFailed(String),
    #[error("The operation '{0}' could not be found.")]
    OperationNotFound(String),
    #[error("The requested path '{0}' is not part of the Microsoft.HealthcareApis API.")]
    PathNotFound(String),
    #[error("The method '{0}' is not supported on this resource.")]
    MethodNotAllowed(String),
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("storage: {0}")]
    Database(#[from] hds_core::db::DbError),
    #[error("storage: {0}")]
    Outbox(#[from] hds_core::outbox::OutboxError),
}

impl ArmError {
    pub fn body(target: impl Into<String>, message: impl Into<String>) -> Self {
        ArmError::InvalidBody {
            target: Some(target.into()),
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ArmError::Auth(AuthError::Forbidden(_)) => "AuthorizationFailed",
            ArmError::Auth(AuthError::Config(_)) => "InternalServerError",
            ArmError::Auth(AuthError::MissingToken) => "AuthenticationFailed",
            ArmError::Auth(_) => "InvalidAuthenticationToken",
            ArmError::MissingApiVersion => "MissingApiVersionParameter",
            ArmError::InvalidApiVersion(_) => "InvalidApiVersionParameter",
            ArmError::InvalidQuery(_) | ArmError::InvalidBody { .. } => "InvalidRequestContent",
            ArmError::InvalidResourceName { .. } => "InvalidResourceName",
            ArmError::InvalidResourceGroup(_) => "InvalidResourceGroup",
            ArmError::LocationRequired => "LocationRequired",
            ArmError::InvalidResourceLocation { .. } => "InvalidResourceLocation",
            ArmError::ResourceNotFound(_) => "ResourceNotFound",
            ArmError::ParentResourceNotFound(_) => "ParentResourceNotFound",
            ArmError::AnotherOperationInProgress(_) => "AnotherOperationInProgress",
            ArmError::NestedResourcesExist(_) => "NestedResourcesExist",
            ArmError::FhirDestinationQuotaExceeded(_) => "QuotaExceeded",
            ArmError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ArmError::PreconditionFailed(_) => "PreconditionFailed",
            ArmError::OperationNotFound(_) => "OperationNotFound",
            ArmError::PathNotFound(_) => "InvalidResourceType",
            ArmError::MethodNotAllowed(_) => "MethodNotAllowed",
            ArmError::Storage(_) | ArmError::Database(_) | ArmError::Outbox(_) => {
                "ServiceUnavailable"
            }
        }
    }

    fn target(&self) -> Option<&str> {
        match self {
            ArmError::InvalidBody { target, .. } => target.as_deref(),
            ArmError::LocationRequired | ArmError::InvalidResourceLocation { .. } => {
                Some("location")
            }
            ArmError::MissingApiVersion | ArmError::InvalidApiVersion(_) => Some("api-version"),
            _ => None,
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
            | ArmError::InvalidQuery(_)
            | ArmError::InvalidBody { .. }
            | ArmError::InvalidResourceName { .. }
            | ArmError::InvalidResourceGroup(_)
            | ArmError::LocationRequired => StatusCode::BAD_REQUEST,
            ArmError::ResourceNotFound(_)
            | ArmError::ParentResourceNotFound(_)
            | ArmError::OperationNotFound(_)
            | ArmError::PathNotFound(_) => StatusCode::NOT_FOUND,
            ArmError::InvalidResourceLocation { .. }
            | ArmError::AnotherOperationInProgress(_)
            | ArmError::NestedResourcesExist(_)
            | ArmError::FhirDestinationQuotaExceeded(_) => StatusCode::CONFLICT,
            ArmError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ArmError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ArmError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ArmError::Storage(_) | ArmError::Database(_) | ArmError::Outbox(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            ArmError::Storage(_) | ArmError::Database(_) | ArmError::Outbox(_) => {
                tracing::error!(error = %self, "storage failure");
                "The service is temporarily unavailable; retry the request.".to_owned()
            }
            other => other.to_string(),
        };
        let mut res = HttpResponse::build(self.status_code());
        if self.status_code() == StatusCode::UNAUTHORIZED {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        res.json(serde_json::json!({
            "error": {
                "code": self.code(),
                "message": message,
                "target": self.target(),
                "details": [],
            }
        }))
    }
}
