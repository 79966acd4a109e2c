//! Bearer-token validation: keys from a JWKS URL (served here over real HTTP) or a PEM key;
//! issuer, audience, expiry; Azure roles to permissions.

use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hds_core::auth::{AuthError, AuthSettings, Authenticator, LocalKey, Permission, LOCAL_ISSUER};
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;

fn jwks(key: &LocalKey, kid: &str) -> serde_json::Value {
    let public = rsa::RsaPublicKey::from_public_key_pem(&key.public_pem).unwrap();
    serde_json::json!({"keys": [{
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
    }]})
}

fn roles(r: &[&str]) -> Vec<String> {
    r.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn tokens_validate_against_a_jwks_url() {
    let dir = tempfile::tempdir().unwrap();
    let key = LocalKey::load_or_create(dir.path()).unwrap();
    let body = jwks(&key, "hds-local").to_string();
    let server = HttpServer::new(move || {
        let body = body.clone();
        App::new().route(
            "/keys",
            web::get().to(move || {
                let body = body.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(body)
                }
            }),
        )
    })
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    let running = server.run();
    let handle = running.handle();
    tokio::spawn(running);

    let auth = Authenticator::new(&AuthSettings {
        enabled: true,
        issuer: Some(LOCAL_ISSUER.into()),
        audience: Some("https://fhir.test".into()),
        jwks_url: Some(format!("http://{addr}/keys")),
        ..AuthSettings::default()
    })
    .unwrap();
    let ttl = Duration::from_secs(300);
    let token = key
        .mint(
            "alice",
            "https://fhir.test",
            &roles(&["FHIR Data Writer"]),
            ttl,
        )
        .unwrap();
    let who = auth
        .authenticate(Some(&format!("Bearer {token}")))
        .await
        .unwrap();
    assert_eq!(who.subject, "alice");
    assert!(who.require(Permission::Write).is_ok());
    assert!(who.require(Permission::Delete).is_ok());
    assert_eq!(
        who.require(Permission::HardDelete),
        Err(AuthError::Forbidden(Permission::HardDelete))
    );

    // A token signed by another key (same kid) fails.
    let other_dir = tempfile::tempdir().unwrap();
    let other = LocalKey::load_or_create(other_dir.path()).unwrap();
    let forged = other
        .mint(
            "mallory",
            "https://fhir.test",
            &roles(&["FHIR Data Contributor"]),
            ttl,
        )
        .unwrap();
    assert!(matches!(
        auth.authenticate(Some(&format!("Bearer {forged}"))).await,
        Err(AuthError::InvalidToken(_))
    ));
    handle.stop(false).await;
}

#[tokio::test]
async fn issuer_audience_and_expiry_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let key = LocalKey::load_or_create(dir.path()).unwrap();
    let auth = Authenticator::new(&AuthSettings {
        enabled: true,
        issuer: Some(LOCAL_ISSUER.into()),
        audience: Some("hds".into()),
        public_key_pem: Some(key.public_pem.clone()),
        leeway_secs: 0,
        ..AuthSettings::default()
    })
    .unwrap();
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_pem(key.private_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let now = chrono::Utc::now().timestamp();
    let good = serde_json::json!({"iss": LOCAL_ISSUER, "aud": "hds", "sub": "s", "exp": now + 600, "roles": ["DICOM Data Reader"]});
    let p = auth
        .authenticate(Some(&format!("Bearer {}", sign(good.clone()))))
        .await
        .unwrap();
    assert!(p.require(Permission::Read).is_ok());
    assert!(p.require(Permission::Write).is_err());

    for (field, value) in [
        ("iss", serde_json::json!("https://evil")),
        ("aud", serde_json::json!("other")),
        ("exp", serde_json::json!(now - 10)),
    ] {
        let mut claims = good.clone();
        claims[field] = value;
        let err = auth
            .authenticate(Some(&format!("Bearer {}", sign(claims))))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::InvalidToken(_)), "{field}: {err}");
        assert_eq!(err.status(), 401);
    }
    assert_eq!(auth.authenticate(None).await, Err(AuthError::MissingToken));
    assert_eq!(
        auth.authenticate(Some("Basic abc")).await,
        Err(AuthError::MissingToken)
    );
}

#[test]
fn enabling_auth_without_a_key_is_a_configuration_error() {
    let err = Authenticator::new(&AuthSettings {
        enabled: true,
        issuer: Some("i".into()),
        audience: Some("a".into()),
        ..AuthSettings::default()
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("jwks_url"), "{err}");
}
