//! OpenTelemetry: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, a service exports its spans over
//! OTLP/HTTP, and a request's W3C `traceparent` makes the service's span part of that trace.
//! The receiving end is a minimal OTLP/HTTP endpoint (no collector can be installed here); it
//! only records what arrives.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpResponse, HttpServer};
use hds_e2e::Service;
use hds_testkit::free_port;

#[tokio::test]
async fn request_spans_join_the_callers_trace_and_are_exported() {
    let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let sink = received.clone();
    let server = HttpServer::new(move || {
        let sink = sink.clone();
        App::new().route(
            "/v1/traces",
            web::post().to(move |body: web::Bytes| {
                sink.lock().unwrap().push(body.to_vec());
                async { HttpResponse::Ok().finish() }
            }),
        )
    })
    .bind(("127.0.0.1", 0))
    .unwrap();
    let collector = server.addrs()[0];
    let handle = server.run();
    let server_task = tokio::spawn(handle);

    let dir = tempfile::tempdir().unwrap();
    let env: BTreeMap<String, String> = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            format!("http://{collector}"),
        ),
        (
            "HDS_DATABASE__URL".to_owned(),
            format!("sqlite://{}/fhir.db", dir.path().display()),
        ),
        (
            "HDS_BUS__EMBEDDED__DATABASE_URL".to_owned(),
            format!("sqlite://{}/bus.db", dir.path().display()),
        ),
    ]
    .into();
    let mut fhir = Service::spawn("fhir-svc", free_port(), &env, dir.path());
    fhir.wait_ready().await;

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let r = reqwest::Client::new()
        .get(format!("{}/health/live", fhir.base))
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Spans are flushed at shutdown at the latest.
    let (status, log) = fhir.terminate().await;
    assert!(status.success(), "{log}");

    let bodies = received.lock().unwrap().concat();
    let id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert!(!bodies.is_empty(), "nothing was exported:\n{log}");
    assert!(
        bodies.windows(16).any(|w| w == id.as_slice()),
        "no exported span carries the caller's trace id"
    );
    assert!(
        bodies.windows(8).any(|w| w == b"fhir-svc"),
        "service.name missing"
    );
    server_task.abort();
}
