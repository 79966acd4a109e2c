//! Bearer tokens for the pipeline's calls to fhir-svc, when authentication is on.
//!
//! Azure's MedTech service calls its FHIR service with its managed identity. Here the service
//! signs its own tokens with the key its `[auth]` section trusts (the private half of
//! `auth.public_key_file`, kept as `signing-key.pem` the way `hds token` keeps it; or
//! `medtech.signing_key_dir`), with the configured issuer, the audience of the destination's
//! FHIR service and the role "FHIR Data Writer" (read, search and write are all it does).
//! A token is reused for every call to its audience until shortly before it expires.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use hds_core::auth::AuthSettings;
use jsonwebtoken::EncodingKey;

/// The role the tokens carry.
pub const ROLE: &str = "FHIR Data Writer";
/// The subject the tokens carry.
pub const SUBJECT: &str = "medtech-svc";
const TTL: Duration = Duration::from_secs(3600);
/// A cached token is replaced when less than this is left of it.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading the signing key {}: {source}", path.display())]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the signing key {} is not an RSA private key: {source}", path.display())]
    BadKey {
        path: PathBuf,
        source: jsonwebtoken::errors::Error,
    },
    #[error("auth.issuer is required to sign tokens for fhir-svc")]
    NoIssuer,
    #[error("no audience for fhir-svc: set auth.audience or the destination's fhirAudience")]
    NoAudience,
    #[error("signing a token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

pub struct FhirTokens {
    key: EncodingKey,
    issuer: String,
    /// The service's own audience, for destinations that name none.
    default_audience: Option<String>,
    /// Audience -> (token, expiry in Unix seconds).
    cache: Mutex<HashMap<String, (String, i64)>>,
}

impl FhirTokens {
    /// The token source for `auth`, or `None` when authentication is off. With it on but no
    /// private key configured or beside `auth.public_key_file` (tokens from Entra ID through
    /// a JWKS URL), the pipeline sends no token, and says so.
    pub fn from_settings(
        auth: &AuthSettings,
        key_dir: Option<&Path>,
    ) -> Result<Option<Self>, TokenError> {
        if !auth.enabled {
            return Ok(None);
        }
        let path = match key_dir {
            Some(dir) => dir.join("signing-key.pem"),
            None => {
                let beside = auth
                    .public_key_file
                    .as_deref()
                    .and_then(Path::parent)
                    .map(|d| d.join("signing-key.pem"))
                    .filter(|p| p.is_file());
                match beside {
                    Some(p) => p,
                    None => {
                        tracing::warn!("auth is on but no signing key is configured (medtech.signing_key_dir): the pipeline calls fhir-svc without a token");
                        return Ok(None);
                    }
                }
            }
        };
        let pem = std::fs::read(&path).map_err(|source| TokenError::ReadKey {
            path: path.clone(),
            source,
        })?;
        let key =
            EncodingKey::from_rsa_pem(&pem).map_err(|e| TokenError::BadKey { path, source: e })?;
        Ok(Some(Self {
            key,
            issuer: auth.issuer.clone().ok_or(TokenError::NoIssuer)?,
            default_audience: auth.audience.clone(),
            cache: Mutex::default(),
        }))
    }

    /// A bearer token for `audience` (the service's own when `None`).
    pub fn bearer(&self, audience: Option<&str>) -> Result<String, TokenError> {
        let audience = audience
            .or(self.default_audience.as_deref())
            .ok_or(TokenError::NoAudience)?;
        let now = chrono::Utc::now().timestamp();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((token, exp)) = cache.get(audience) {
            if *exp - now > RENEW_BEFORE.as_secs() as i64 {
                return Ok(token.clone());
            }
        }
        let (token, exp) =
            hds_core::auth::sign_token(&self.key, &self.issuer, SUBJECT, audience, &[ROLE], TTL)?;
        cache.insert(audience.to_owned(), (token.clone(), exp));
        Ok(token)
    }
}
