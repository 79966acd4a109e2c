//! An instance's `corsConfiguration`, applied by dicom-svc on PostgreSQL + Kafka (tansu) + S3:
//! preflights answered, `Access-Control-*` headers on every answer to an allowed origin
//! (stores, errors included), nothing for other instances; a new command changes it live.

mod common;

use std::time::Duration;

use common::{Env, Generated};
use hds_core::events::v1::{OperationCommand, OperationKind, OperationState, OperationStatus};
use hds_core::events::{new_event_id, to_message, topics};
use hds_core::names::ServiceKind;
use hds_testkit::unique;
use prost::Message;
use reqwest::Method;
use serde_json::{json, Value};

/// Provisions (or re-provisions) `instance` with these ARM `properties`; returns once
/// dicom-svc reported the command handled.
async fn provision(env: &Env, instance: &str, properties: Value) {
    let mut statuses = env
        .bus
        .subscribe(&unique("g"), &[topics::OPERATIONS_STATUS])
        .await
        .unwrap();
    let cmd = OperationCommand {
        event_id: new_event_id(),
        operation_id: new_event_id(),
        kind: OperationKind::ProvisionInstance as i32,
        resource_id: format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.HealthcareApis/workspaces/ws1/dicomservices/{instance}"),
        service_kind: ServiceKind::Dicom.to_proto() as i32,
        instance: instance.into(),
        properties_json: properties.to_string(),
        requested_at_unix_ms: 0,
    };
    env.bus
        .publish(
            topics::OPERATIONS_COMMANDS,
            to_message(&cmd, cmd.resource_id.clone()),
        )
        .await
        .unwrap();
    loop {
        let d = tokio::time::timeout(Duration::from_secs(60), statuses.next())
            .await
            .expect("a status within 60 s")
            .unwrap();
        let s = OperationStatus::decode(d.payload.as_slice()).unwrap();
        if s.operation_id == cmd.operation_id {
            assert_eq!(s.state, OperationState::Succeeded as i32, "{s:?}");
            break;
        }
    }
    statuses.close().await;
}

fn allowed_origin(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn cors_follows_the_instance_configuration() {
    let env = Env::kafka().await;
    let origin = "https://viewer.example.org";
    provision(
        &env,
        "ws1-viewer",
        json!({"corsConfiguration": {"origins": [origin], "headers": ["content-type"],
            "methods": ["GET", "POST"], "maxAge": 120}}),
    )
    .await;
    provision(&env, "ws1-closed", json!({})).await;
    let c = reqwest::Client::new();
    let preflight = |instance: &str, origin: &str| {
        c.request(Method::OPTIONS, env.url(&format!("/{instance}/v2/studies")))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "Content-Type")
            .send()
    };

    let res = preflight("ws1-viewer", origin).await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(allowed_origin(&res).as_deref(), Some(origin));
    assert_eq!(res.headers()["access-control-allow-methods"], "GET,POST");
    assert_eq!(
        res.headers()["access-control-allow-headers"],
        "content-type"
    );
    assert_eq!(res.headers()["access-control-max-age"], "120");
    assert!(res
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
    let other = preflight("ws1-viewer", "https://elsewhere.example.org")
        .await
        .unwrap();
    assert_eq!(other.status(), 204);
    assert_eq!(allowed_origin(&other), None);

    // A store and an error answer both carry the header for the allowed origin.
    let g = Generated::new(&common::new_uid());
    let (content_type, body) = common::multipart(&[&g.bytes]);
    let stored = c
        .post(env.url("/ws1-viewer/v2/studies"))
        .header("Content-Type", content_type)
        .header("Accept", "application/dicom+json")
        .header("Origin", origin)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200);
    assert_eq!(allowed_origin(&stored).as_deref(), Some(origin));
    let unsupported = c
        .get(env.url("/ws1-viewer/v3/studies"))
        .header("Origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(unsupported.status(), 400);
    assert_eq!(allowed_origin(&unsupported).as_deref(), Some(origin));

    // Another instance without CORS: no preflight answer and no headers.
    let closed = preflight("ws1-closed", origin).await.unwrap();
    assert_ne!(closed.status(), 204);
    assert_eq!(allowed_origin(&closed), None);
    let search = c
        .get(env.url("/ws1-closed/v2/studies"))
        .header("Origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(search.status(), 204);
    assert_eq!(allowed_origin(&search), None);

    // A new configuration applies as soon as its command is handled.
    provision(
        &env,
        "ws1-viewer",
        json!({"corsConfiguration": {"origins": ["*"]}}),
    )
    .await;
    let any = preflight("ws1-viewer", "https://elsewhere.example.org")
        .await
        .unwrap();
    assert_eq!(
        allowed_origin(&any),
        None,
        "POST and Content-Type are no longer allowed"
    );
    let search = c
        .get(env.url("/ws1-viewer/v2/studies"))
        .header("Origin", "https://elsewhere.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed_origin(&search).as_deref(), Some("*"));
    env.stop().await;
}
