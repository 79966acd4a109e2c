//! Every error of the MedTech service's HTTP surface, mapped once to its status and the
//! `{ "error": { "code", "message" } }` shape Azure's management errors use (the MedTech
//! service has no data-plane API of its own in Azure; devices reach it through the bus).
//! Invalid mappings answer 400 with one `details` entry per problem: its JSON path as
//! `target`, and its `line` and `column` in the document sent.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use hds_core::auth::AuthError;

use crate::mapping_doc::InvalidMapping;

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
    /// A mapping or destination that does not load; `details` names each problem.
    #[error("the {what} is invalid ({} problem(s))", errors.errors.len())]
    Invalid {
        code: &'static str,
        what: &'static str,
        errors: InvalidMapping,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("no {0} has been set for this MedTech service")]
    NotConfigured(&'static str),
    #[error("event bus: {0}")]
    Bus(#[from] hds_core::bus::BusError),
}

impl MedtechError {
    fn code(&self) -> &'static str {
        match self {
            MedtechError::Auth(AuthError::Forbidden(_)) => "AuthorizationFailed",
            MedtechError::Auth(AuthError::Config(_)) => "InternalServerError",
            MedtechError::Auth(_) => "AuthenticationFailed",
            MedtechError::UnknownInstance(_) => "ResourceNotFound",
            MedtechError::NotFound(_) => "NotFound",
            MedtechError::Storage(_) | MedtechError::Bus(_) => "ServiceUnavailable",
            MedtechError::Invalid { code, .. } => code,
            MedtechError::BadRequest(_) => "BadRequest",
            MedtechError::PayloadTooLarge(_) => "PayloadTooLarge",
            MedtechError::NotConfigured(_) => "NotFound",
        }
    }
}

impl ResponseError for MedtechError {
    fn status_code(&self) -> StatusCode {
        match self {
            MedtechError::Auth(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED)
            }
            MedtechError::UnknownInstance(_)
            | MedtechError::NotFound(_)
            | MedtechError::NotConfigured(_) => StatusCode::NOT_FOUND,
            MedtechError::Storage(_) | MedtechError::Bus(_) => StatusCode::SERVICE_UNAVAILABLE,
            MedtechError::Invalid { .. } | MedtechError::BadRequest(_) => StatusCode::BAD_REQUEST,
            MedtechError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            MedtechError::Storage(e) => {
                tracing::error!(error = %e, "storage failure");
                "the service's storage is unavailable; try again".to_owned()
            }
            MedtechError::Bus(e) => {
                tracing::error!(error = %e, "event bus failure");
                "the event bus is unavailable; the message was not accepted; try again".to_owned()
            }
            MedtechError::Invalid { what, errors, .. } => format!(
                "the {what} is invalid: {} problem(s), see details",
                errors.errors.len()
            ),
            other => other.to_string(),
        };
        let mut res = HttpResponse::build(self.status_code());
        if self.status_code() == StatusCode::UNAUTHORIZED {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        let mut error = serde_json::json!({"code": self.code(), "message": message});
        if let MedtechError::Invalid { code, errors, .. } = self {
            // ARM's `details`, each naming where the problem is (`target`) and its line.
            error["details"] = errors
                .errors
                .iter()
                .map(|e| {
                    let mut d =
                        serde_json::json!({"code": code, "target": e.path, "message": e.message});
                    if let Some(line) = e.line {
                        d["line"] = line.into();
                    }
                    if let Some(column) = e.column {
                        d["column"] = column.into();
                    }
                    d
                })
                .collect();
        }
        res.json(serde_json::json!({ "error": error }))
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
