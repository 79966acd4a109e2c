//! Bearer tokens and Azure's data-plane roles.
//!
//! A token is a JWT signed with RS256 by a key from a JWKS URL (Entra ID, Keycloak, ...) or
//! a configured public key; issuer, audience and expiry are checked. The `roles` claim (the
//! claim name is configurable) carries Azure role names, which map to the permissions the
//! services check. `hds token` mints tokens with a local key for tests and local use.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Off only for local use: a service bound to anything but loopback refuses to start
    /// without it.
    #[serde(default)]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub enabled: bool,
    /// Expected `iss`, e.g. `https://login.microsoftonline.com/{tenant}/v2.0` or `hds-local`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Expected `aud`, e.g. the FHIR service URL.
    #[serde(default)]
    pub audience: Option<String>,
    /// Where the signing keys are published (OpenID Connect `jwks_uri`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Or: a PEM public key, inline ...
    #[serde(default)]
    pub public_key_pem: Option<String>,
    /// ... or in a file.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// The claim that holds role names.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub leeway_secs: u64,
}

fn default_roles_claim() -> String {
    "roles".into()
}
fn default_leeway() -> u64 {
    60
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            issuer: None,
            audience: None,
            jwks_url: None,
            public_key_pem: None,
            public_key_file: None,
            roles_claim: default_roles_claim(),
            leeway_secs: default_leeway(),
        }
    }
}

/// What a caller may do; the data actions of Azure's built-in roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Permission {
    Read,
    Write,
    Delete,
    HardDelete,
    Export,
    Import,
    ConvertData,
    SearchParameter,
    Reindex,
    Smart,
    /// Control plane: create, change and delete workspaces and services.
    Manage,
    /// Control plane: read workspaces, services and operation results.
    ManageRead,
}

/// Azure's role names and the permissions each grants.
pub fn role_permissions(role: &str) -> &'static [Permission] {
    use Permission::*;
    match role {
        "FHIR Data Reader" => &[Read],
        "FHIR Data Writer" => &[Read, Write, Delete],
        "FHIR Data Contributor" => &[
            Read,
            Write,
            Delete,
            HardDelete,
            Export,
            Import,
            ConvertData,
            SearchParameter,
            Reindex,
        ],
        "FHIR Data Exporter" => &[Read, Export],
        "FHIR Data Importer" => &[Read, Import],
        "FHIR Data Converter" => &[ConvertData],
        "FHIR SMART User" => &[Smart],
        "DICOM Data Owner" => &[Read, Write, Delete],
        "DICOM Data Reader" => &[Read],
        "Owner" | "Contributor" => &[Manage, ManageRead],
        "Reader" => &[ManageRead],
        _ => &[],
    }
}

/// Every role name hds knows, for help texts.
pub const KNOWN_ROLES: &[&str] = &[
    "FHIR Data Reader",
    "FHIR Data Writer",
    "FHIR Data Contributor",
    "FHIR Data Exporter",
    "FHIR Data Importer",
    "FHIR Data Converter",
    "FHIR SMART User",
    "DICOM Data Owner",
    "DICOM Data Reader",
    "Owner",
    "Contributor",
    "Reader",
];

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub roles: Vec<String>,
    pub permissions: BTreeSet<Permission>,
    /// SMART on FHIR scopes from `scp`/`scope`, for the FHIR service to apply.
    pub scopes: Vec<String>,
}

impl Principal {
    /// The caller when auth is off (loopback only): may do everything.
    pub fn anonymous() -> Self {
        Self {
            subject: "anonymous".into(),
            roles: Vec::new(),
            permissions: role_permissions("FHIR Data Contributor")
                .iter()
                .chain(role_permissions("DICOM Data Owner"))
                .chain(role_permissions("Owner"))
                .chain(role_permissions("FHIR SMART User"))
                .copied()
                .collect(),
            scopes: Vec::new(),
        }
    }

    pub fn require(&self, permission: Permission) -> Result<(), AuthError> {
        if self.permissions.contains(&permission) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(permission))
        }
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    #[error("authentication required: send 'Authorization: Bearer <token>'")]
    MissingToken,
    #[error("the bearer token is invalid: {0}")]
    InvalidToken(String),
    #[error("the caller lacks the '{0:?}' permission for this request")]
    Forbidden(Permission),
    #[error("auth configuration: {0}")]
    Config(String),
}

impl AuthError {
    /// 401 or 403.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Forbidden(_) => 403,
            AuthError::Config(_) => 500,
            _ => 401,
        }
    }
}

/// The issuer and audience one service instance expects of its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenExpectation {
    /// The OpenID authority, e.g. `https://login.microsoftonline.com/{tenant}`: tokens must
    /// carry it as `iss`, with or without a trailing `/` (authorities are written both ways).
    pub authority: String,
    pub audience: String,
}

impl TokenExpectation {
    fn issuers(&self) -> [String; 2] {
        let bare = self.authority.trim_end_matches('/');
        [bare.to_owned(), format!("{bare}/")]
    }
}

enum Keys {
    Static(DecodingKey),
    Jwks {
        url: String,
        client: reqwest::Client,
        cache: RwLock<(HashMap<String, DecodingKey>, Option<Instant>)>,
    },
}

/// Validates bearer tokens per [`AuthSettings`].
pub struct Authenticator {
    enabled: bool,
    keys: Option<Keys>,
    validation: Validation,
    roles_claim: String,
}

const JWKS_MIN_REFRESH: Duration = Duration::from_secs(60);

impl Authenticator {
    pub fn new(settings: &AuthSettings) -> Result<Arc<Self>, AuthError> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = settings.leeway_secs;
        validation.validate_nbf = true;
        if !settings.enabled {
            return Ok(Arc::new(Self {
                enabled: false,
                keys: None,
                validation,
                roles_claim: settings.roles_claim.clone(),
            }));
        }
        let issuer = settings
            .issuer
            .as_deref()
            .ok_or_else(|| AuthError::Config("auth.issuer is required when auth.enabled".into()))?;
        let audience = settings.audience.as_deref().ok_or_else(|| {
            AuthError::Config("auth.audience is required when auth.enabled".into())
        })?;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);

        let pem = match (&settings.public_key_pem, &settings.public_key_file) {
            (Some(pem), _) => Some(pem.clone().into_bytes()),
            (None, Some(file)) => Some(std::fs::read(file).map_err(|e| {
                AuthError::Config(format!("auth.public_key_file {}: {e}", file.display()))
            })?),
            (None, None) => None,
        };
        let keys =
            match (pem, &settings.jwks_url) {
                (Some(pem), _) => Keys::Static(
                    DecodingKey::from_rsa_pem(&pem)
                        .map_err(|e| AuthError::Config(format!("auth public key: {e}")))?,
                ),
                (None, Some(url)) => Keys::Jwks {
                    url: url.clone(),
                    client: reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .build()
                        .map_err(|e| AuthError::Config(format!("JWKS client: {e}")))?,
                    cache: RwLock::new((HashMap::new(), None)),
                },
                (None, None) => return Err(AuthError::Config(
                    "auth.enabled needs auth.jwks_url, auth.public_key_pem or auth.public_key_file"
                        .into(),
                )),
            };
        Ok(Arc::new(Self {
            enabled: true,
            keys: Some(keys),
            validation,
            roles_claim: settings.roles_claim.clone(),
        }))
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The caller of a request with this `Authorization` header value.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        self.authenticate_for(authorization, None).await
    }

    /// The caller of a request to a service instance that sets its own issuer and audience
    /// (a FHIR service's `authenticationConfiguration`): those replace the configured ones,
    /// the signing keys stay the service's. `None` checks the configured ones.
    pub async fn authenticate_for(
        &self,
        authorization: Option<&str>,
        expected: Option<&TokenExpectation>,
    ) -> Result<Principal, AuthError> {
        if !self.enabled {
            return Ok(Principal::anonymous());
        }
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MissingToken)?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        let key = self.key_for(header.kid.as_deref()).await?;
        let instance_validation;
        let validation = match expected {
            None => &self.validation,
            Some(e) => {
                let mut v = self.validation.clone();
                v.set_issuer(&e.issuers());
                v.set_audience(&[&e.audience]);
                instance_validation = v;
                &instance_validation
            }
        };
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, validation)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        Ok(self.principal(&data.claims))
    }

    fn principal(&self, claims: &serde_json::Value) -> Principal {
        let roles: Vec<String> = match claims.get(&self.roles_claim) {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        let scopes = ["scp", "scope"]
            .iter()
            .filter_map(|c| claims.get(*c).and_then(|v| v.as_str()))
            .flat_map(|s| s.split_whitespace().map(str::to_owned))
            .collect();
        Principal {
            subject: claims
                .get("oid")
                .or_else(|| claims.get("sub"))
                .and_then(|v| v.as_str())
                .unwrap_or("unknown")
                .to_owned(),
            permissions: roles
                .iter()
                .flat_map(|r| role_permissions(r).iter().copied())
                .collect(),
            roles,
            scopes,
        }
    }

    async fn key_for(&self, kid: Option<&str>) -> Result<DecodingKey, AuthError> {
        match self.keys.as_ref() {
            Some(Keys::Static(k)) => Ok(k.clone()),
            Some(Keys::Jwks { url, client, cache }) => {
                let kid =
                    kid.ok_or_else(|| AuthError::InvalidToken("token has no 'kid'".into()))?;
                if let Some(k) = cache.read().await.0.get(kid) {
                    return Ok(k.clone());
                }
                // An unknown kid may mean the keys rotated: refresh, at most once a minute.
                let mut guard = cache.write().await;
                let stale = guard.1.is_none_or(|t| t.elapsed() > JWKS_MIN_REFRESH);
                if stale {
                    let set: JwkSet = client
                        .get(url)
                        .send()
                        .await
                        .and_then(|r| r.error_for_status())
                        .map_err(|e| AuthError::InvalidToken(format!("cannot fetch JWKS: {e}")))?
                        .json()
                        .await
                        .map_err(|e| AuthError::InvalidToken(format!("bad JWKS: {e}")))?;
                    guard.0 = set
                        .keys
                        .iter()
                        .filter_map(|jwk| {
                            let id = jwk.common.key_id.clone()?;
                            DecodingKey::from_jwk(jwk).ok().map(|k| (id, k))
                        })
                        .collect();
                    guard.1 = Some(Instant::now());
                }
                guard
                    .0
                    .get(kid)
                    .cloned()
                    .ok_or_else(|| AuthError::InvalidToken(format!("unknown signing key '{kid}'")))
            }
            None => Err(AuthError::Config("no keys configured".into())),
        }
    }
}

/// The key pair `hds token` signs with, kept as PEM files in a folder.
pub struct LocalKey {
    pub private_pem: String,
    pub public_pem: String,
    pub public_key_file: PathBuf,
}

pub const LOCAL_ISSUER: &str = "hds-local";

impl LocalKey {
    /// Loads `{dir}/signing-key.pem` and `{dir}/signing-key.pub.pem`, creating them if absent.
    pub fn load_or_create(dir: &Path) -> Result<Self, AuthError> {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let private_file = dir.join("signing-key.pem");
        let public_file = dir.join("signing-key.pub.pem");
        let err = |what: &str, e: &dyn std::fmt::Display| AuthError::Config(format!("{what}: {e}"));
        if private_file.is_file() && public_file.is_file() {
            return Ok(Self {
                private_pem: std::fs::read_to_string(&private_file)
                    .map_err(|e| err("reading signing key", &e))?,
                public_pem: std::fs::read_to_string(&public_file)
                    .map_err(|e| err("reading public key", &e))?,
                public_key_file: public_file,
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| err("creating key folder", &e))?;
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
            .map_err(|e| err("generating RSA key", &e))?;
        let private_pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| err("encoding private key", &e))?
            .to_string();
        let public_pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| err("encoding public key", &e))?;
        write_private(&private_file, &private_pem).map_err(|e| err("writing signing key", &e))?;
        std::fs::write(&public_file, &public_pem).map_err(|e| err("writing public key", &e))?;
        Ok(Self {
            private_pem,
            public_pem,
            public_key_file: public_file,
        })
    }

    /// A token for `roles`, valid for `ttl`.
    pub fn mint(
        &self,
        subject: &str,
        audience: &str,
        roles: &[String],
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let key = EncodingKey::from_rsa_pem(self.private_pem.as_bytes())
            .map_err(|e| AuthError::Config(format!("signing key: {e}")))?;
        let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
        sign_token(&key, LOCAL_ISSUER, subject, audience, &roles, ttl)
            .map(|(token, _)| token)
            .map_err(|e| AuthError::Config(format!("signing token: {e}")))
    }
}

/// A token (RS256, key id `hds-local`) from `issuer` to `audience` for `roles`, valid for `ttl`
/// from now; with its expiry (Unix seconds). `hds token` and medtech-svc's calls to fhir-svc
/// sign theirs here.
pub fn sign_token(
    key: &EncodingKey,
    issuer: &str,
    subject: &str,
    audience: &str,
    roles: &[&str],
    ttl: Duration,
) -> Result<(String, i64), jsonwebtoken::errors::Error> {
    let now = chrono::Utc::now().timestamp();
    let exp = now + ttl.as_secs() as i64;
    let claims = serde_json::json!({
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": exp,
        "roles": roles,
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("hds-local".into());
    Ok((jsonwebtoken::encode(&header, &claims, key)?, exp))
}

#[cfg(unix)]
fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    std::fs::write(path, pem)
}
