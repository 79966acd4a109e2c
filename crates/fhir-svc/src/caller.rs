//! The authenticated caller of a FHIR request. Tokens are checked against the addressed
//! instance's `authenticationConfiguration` (authority as issuer, audience) when it has one,
//! else against the service's `[auth]` issuer and audience; the signing keys are always the
//! service's. With auth off every caller may do everything, whatever the instance says.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use hds_core::auth::{AuthError, Authenticator, Permission, Principal};

use crate::error::FhirError;
use crate::http::resolve;

pub struct FhirCaller {
    pub principal: Principal,
}

impl FhirCaller {
    pub fn require(&self, permission: Permission) -> Result<(), FhirError> {
        self.principal.require(permission).map_err(FhirError::from)
    }
}

impl FromRequest for FhirCaller {
    type Error = FhirError;
    type Future = LocalBoxFuture<'static, Result<Self, FhirError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let auth = req
                .app_data::<web::Data<Authenticator>>()
                .cloned()
                .ok_or_else(|| AuthError::Config("no authenticator registered".into()))?;
            let authorization = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if !auth.enabled() {
                return Ok(Self {
                    principal: auth.authenticate(authorization).await?,
                });
            }
            // An unknown instance is checked against the service's settings; the handler's
            // instance extractor answers 404 for it (to callers with a valid token only).
            let resolved = resolve(&req).await.ok();
            let expected = resolved
                .as_ref()
                .and_then(|r| r.config.as_ref())
                .and_then(|c| c.auth.as_ref());
            Ok(Self {
                principal: auth.authenticate_for(authorization, expected).await?,
            })
        })
    }
}
