//! The FHIR RESTful interactions (R4 http.html) as a client sees them, on SQLite + the
//! embedded bus and on PostgreSQL + Kafka.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use common::Env;
use hds_core::events::topics;
use hds_core::events::v1::{FhirResourceAction, FhirResourceEvent};
use hds_testkit::unique;
use prost::Message;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

struct Fhir {
    client: Client,
    base: String,
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }
    fn is_outcome(&self) -> bool {
        self.body["resourceType"] == "OperationOutcome"
    }
}

impl Fhir {
    async fn on(env: &Env, instance: &str) -> Self {
        env.provision(instance).await;
        Fhir {
            client: Client::new(),
            base: env.url(&format!("/{instance}")),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut r = self.client.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r
                .header("content-type", "application/fhir+json")
                .body(b.to_string());
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let res = r.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None, &[]).await
    }
    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body), &[]).await
    }
    async fn put(&self, path: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some(body), &[]).await
    }
}

async fn create_read_update_vread(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    let created = fhir
        .post("/Patient", json!({"resourceType": "Patient", "id": "ignored", "name": [{"family": "Chalmers", "given": ["Peter"]}], "birthDate": "1974-12-25"}))
        .await;
    assert_eq!(created.status, 201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_ne!(id, "ignored");
    assert_eq!(created.body["meta"]["versionId"], "1");
    assert_eq!(created.header("etag"), "W/\"1\"");
    assert!(created
        .header("location")
        .ends_with(&format!("/ws1-fhir/Patient/{id}/_history/1")));
    assert!(created.headers.contains_key("last-modified"));
    // Stored as received: the element order of the request is kept.
    let keys: Vec<&String> = created.body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["resourceType", "id", "name", "birthDate", "meta"]);

    let read = fhir.get(&format!("/Patient/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body, created.body);
    assert_eq!(
        read.header("content-type"),
        "application/fhir+json; charset=utf-8"
    );

    let mut changed = read.body.clone();
    changed["birthDate"] = json!("1974-12-26");
    let updated = fhir.put(&format!("/Patient/{id}"), changed).await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.body["meta"]["versionId"], "2");
    assert_eq!(updated.header("etag"), "W/\"2\"");

    let v1 = fhir.get(&format!("/Patient/{id}/_history/1")).await;
    assert_eq!(v1.status, 200);
    assert_eq!(v1.body["birthDate"], "1974-12-25");
    let v2 = fhir.get(&format!("/Patient/{id}/_history/2")).await;
    assert_eq!(v2.body["birthDate"], "1974-12-26");
    assert_eq!(
        fhir.get(&format!("/Patient/{id}/_history/3")).await.status,
        404
    );
    assert_eq!(
        fhir.get(&format!("/Patient/{id}/_history/x")).await.status,
        404
    );

    // Update-as-create with the client's id.
    let made = fhir.put("/Observation/obs-1", json!({"resourceType": "Observation", "id": "obs-1", "status": "final", "code": {"text": "x"}})).await;
    assert_eq!(made.status, 201);
    assert_eq!(made.body["id"], "obs-1");

    // Prefer: return=minimal and return=OperationOutcome.
    let minimal = fhir
        .call(
            Method::POST,
            "/Patient",
            Some(json!({"resourceType": "Patient"})),
            &[("prefer", "return=minimal")],
        )
        .await;
    assert_eq!(minimal.status, 201);
    assert_eq!(minimal.body, Value::Null);
    assert!(minimal.headers.contains_key("location"));
    let outcome = fhir
        .call(
            Method::POST,
            "/Patient",
            Some(json!({"resourceType": "Patient"})),
            &[("prefer", "return=OperationOutcome")],
        )
        .await;
    assert!(outcome.is_outcome());
    env.stop().await;
}

async fn conditional_headers(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    let p = fhir
        .put(
            "/Patient/c1",
            json!({"resourceType": "Patient", "id": "c1"}),
        )
        .await;
    assert_eq!(p.status, 201);
    let not_modified = fhir
        .call(
            Method::GET,
            "/Patient/c1",
            None,
            &[("if-none-match", "W/\"1\"")],
        )
        .await;
    assert_eq!(not_modified.status, 304);
    let modified = fhir
        .call(
            Method::GET,
            "/Patient/c1",
            None,
            &[("if-none-match", "W/\"0\"")],
        )
        .await;
    assert_eq!(modified.status, 200);
    let lm = p.header("last-modified").to_owned();
    assert_eq!(
        fhir.call(
            Method::GET,
            "/Patient/c1",
            None,
            &[("if-modified-since", &lm)]
        )
        .await
        .status,
        304
    );
    assert_eq!(
        fhir.call(
            Method::GET,
            "/Patient/c1",
            None,
            &[("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT")]
        )
        .await
        .status,
        200
    );

    let ok = fhir
        .call(
            Method::PUT,
            "/Patient/c1",
            Some(json!({"resourceType": "Patient", "id": "c1", "active": true})),
            &[("if-match", "W/\"1\"")],
        )
        .await;
    assert_eq!(ok.status, 200);
    let stale = fhir
        .call(
            Method::PUT,
            "/Patient/c1",
            Some(json!({"resourceType": "Patient", "id": "c1", "active": false})),
            &[("if-match", "W/\"1\"")],
        )
        .await;
    assert_eq!(stale.status, 412);
    assert!(stale.is_outcome());
    let absent = fhir
        .call(
            Method::PUT,
            "/Patient/none",
            Some(json!({"resourceType": "Patient", "id": "none"})),
            &[("if-match", "W/\"1\"")],
        )
        .await;
    assert_eq!(absent.status, 412);
    assert_eq!(fhir.get("/Patient/none").await.status, 404);
    assert_eq!(fhir.get("/Patient/c1").await.body["active"], true);
    env.stop().await;
}

/// Concurrent updates expecting the same version: exactly one wins, the rest get 412, and no
/// version is lost or doubled.
async fn concurrent_if_match_has_one_winner(env: Env) {
    let fhir = std::sync::Arc::new(Fhir::on(&env, "ws1-fhir").await);
    assert_eq!(
        fhir.put(
            "/Patient/race",
            json!({"resourceType": "Patient", "id": "race"})
        )
        .await
        .status,
        201
    );
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let fhir = fhir.clone();
            tokio::spawn(async move {
                fhir.call(
                    Method::PUT,
                    "/Patient/race",
                    Some(json!({"resourceType": "Patient", "id": "race", "gender": if n % 2 == 0 { "male" } else { "female" }})),
                    &[("if-match", "W/\"1\"")],
                )
                .await
                .status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().as_u16());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 412, 412, 412, 412, 412, 412, 412]);
    let history = fhir.get("/Patient/race/_history").await;
    let versions: Vec<&str> = history.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["2", "1"]);
    env.stop().await;
}

async fn delete_soft_hard_and_purge(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    for active in [true, false, true] {
        fhir.put(
            "/Patient/d1",
            json!({"resourceType": "Patient", "id": "d1", "active": active}),
        )
        .await;
    }
    let purge = fhir
        .call(Method::POST, "/Patient/d1/$purge-history", None, &[])
        .await;
    assert_eq!(purge.status, 204);
    assert_eq!(fhir.get("/Patient/d1/_history/1").await.status, 404);
    assert_eq!(fhir.get("/Patient/d1/_history/3").await.status, 200);

    let deleted = fhir.call(Method::DELETE, "/Patient/d1", None, &[]).await;
    assert_eq!(deleted.status, 204);
    let gone = fhir.get("/Patient/d1").await;
    assert_eq!(gone.status, 410);
    assert!(gone.is_outcome());
    assert_eq!(fhir.get("/Patient/d1/_history/4").await.status, 410);
    let history = fhir.get("/Patient/d1/_history").await;
    let entries = history.body["entry"].as_array().unwrap();
    assert_eq!(entries[0]["request"]["method"], "DELETE");
    assert!(entries[0].get("resource").is_none());
    assert_eq!(entries.len(), 2);
    // Deleting again, or something that never was, is still 204.
    assert_eq!(
        fhir.call(Method::DELETE, "/Patient/d1", None, &[])
            .await
            .status,
        204
    );
    assert_eq!(
        fhir.call(Method::DELETE, "/Patient/never", None, &[])
            .await
            .status,
        204
    );
    // Writing after a delete brings it back as a new version.
    let back = fhir
        .put(
            "/Patient/d1",
            json!({"resourceType": "Patient", "id": "d1"}),
        )
        .await;
    assert_eq!(back.status, 201);
    assert_eq!(back.body["meta"]["versionId"], "5");

    let hard = fhir
        .call(Method::DELETE, "/Patient/d1?hardDelete=true", None, &[])
        .await;
    assert_eq!(hard.status, 204);
    assert_eq!(fhir.get("/Patient/d1").await.status, 404);
    assert_eq!(fhir.get("/Patient/d1/_history").await.status, 404);
    assert_eq!(
        fhir.call(Method::DELETE, "/Patient/d1?hardDelete=maybe", None, &[])
            .await
            .status,
        400
    );
    let twice = fhir
        .call(
            Method::DELETE,
            "/Patient/d1?hardDelete=true&hardDelete=false",
            None,
            &[],
        )
        .await;
    assert_eq!(twice.status, 400);
    assert!(twice.is_outcome());
    env.stop().await;
}

async fn history_pages_with_next_links(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    for n in 0..5 {
        fhir.put(&format!("/Encounter/e{n}"), json!({"resourceType": "Encounter", "id": format!("e{n}"), "status": "finished", "class": {"code": "AMB"}})).await;
    }
    fhir.put(
        "/Patient/h1",
        json!({"resourceType": "Patient", "id": "h1"}),
    )
    .await;
    let mut url = "/Encounter/_history?_count=2".to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = fhir.get(&url).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.body["type"], "history");
        pages += 1;
        for e in page.body["entry"].as_array().unwrap() {
            seen.push(e["resource"]["id"].as_str().unwrap().to_owned());
        }
        let next = page.body["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next");
        match next {
            Some(l) => {
                let full = l["url"].as_str().unwrap();
                url = full.split_once("/ws1-fhir").unwrap().1.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["e4", "e3", "e2", "e1", "e0"]);
    let system = fhir.get("/_history?_count=100").await;
    assert_eq!(system.body["entry"].as_array().unwrap().len(), 6);
    let since = fhir
        .get(&format!(
            "/_history?_since={}",
            before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))
        .await;
    assert_eq!(since.status, 200);
    assert_eq!(since.body["entry"].as_array().unwrap().len(), 6);
    let future = fhir.get("/_history?_since=2999-01-01T00:00:00Z").await;
    assert_eq!(future.body["entry"].as_array().unwrap().len(), 0);
    assert_eq!(fhir.get("/_history?_since=yesterday").await.status, 400);
    assert_eq!(fhir.get("/_history?_count=-1").await.status, 400);
    env.stop().await;
}

/// Bad input gets an OperationOutcome and stores nothing.
async fn bad_input_is_refused_and_stores_nothing(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    let raw = |body: &'static str, ct: &'static str| {
        let c = fhir.client.clone();
        let url = format!("{}/Patient", fhir.base);
        async move {
            c.post(url)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let malformed = raw("{\"resourceType\": \"Patient\",", "application/fhir+json").await;
    assert_eq!(malformed.status(), 400);
    let outcome: Value = malformed.json().await.unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(raw("[1, 2]", "application/fhir+json").await.status(), 400);
    // A NUL in a string: no FHIR string holds one (and PostgreSQL's text cannot).
    let nul = raw(
        "{\"resourceType\": \"Patient\", \"name\": [{\"family\": \"a\\u0000b\"}]}",
        "application/fhir+json",
    )
    .await;
    assert_eq!(nul.status(), 400);
    assert_eq!(
        raw("{\"resourceType\": \"Patient\"}", "application/xml")
            .await
            .status(),
        415
    );

    let wrong_type = fhir
        .post("/Patient", json!({"resourceType": "Observation"}))
        .await;
    assert_eq!(wrong_type.status, 400);
    assert!(wrong_type.body["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("resourceType"));
    let no_type = fhir.post("/Patient", json!({"name": []})).await;
    assert_eq!(no_type.status, 400);
    let id_mismatch = fhir
        .put("/Patient/a", json!({"resourceType": "Patient", "id": "b"}))
        .await;
    assert_eq!(id_mismatch.status, 400);
    let no_id = fhir
        .put("/Patient/a", json!({"resourceType": "Patient"}))
        .await;
    assert_eq!(no_id.status, 400);
    let bad_id = fhir
        .put(
            "/Patient/a$b",
            json!({"resourceType": "Patient", "id": "a$b"}),
        )
        .await;
    assert_eq!(bad_id.status, 400);
    let unknown_type = fhir
        .post("/Patients", json!({"resourceType": "Patients"}))
        .await;
    assert_eq!(unknown_type.status, 404);
    assert!(unknown_type.is_outcome());
    let huge = json!({"resourceType": "Patient", "text": {"status": "generated", "div": "x".repeat(70 * 1024 * 1024)}});
    let too_big = fhir.post("/Patient", huge).await;
    assert_eq!(too_big.status, 413);
    assert!(too_big.is_outcome());

    let history = fhir.get("/_history").await;
    assert_eq!(
        history.body["entry"].as_array().unwrap().len(),
        0,
        "something was stored"
    );
    env.stop().await;
}

/// Instances are isolated, and every write reports its event through the outbox.
async fn isolation_and_events(env: Env) {
    let a = Fhir::on(&env, "ws1-fhir").await;
    let b = Fhir::on(&env, "ws1-other").await;
    let mut events = env
        .bus
        .subscribe(&unique("g"), &[topics::FHIR_RESOURCES])
        .await
        .unwrap();
    a.put(
        "/Patient/iso",
        json!({"resourceType": "Patient", "id": "iso"}),
    )
    .await;
    a.put(
        "/Patient/iso",
        json!({"resourceType": "Patient", "id": "iso", "active": true}),
    )
    .await;
    a.call(Method::DELETE, "/Patient/iso", None, &[]).await;
    assert_eq!(b.get("/Patient/iso").await.status, 404);
    assert_eq!(
        b.get("/_history").await.body["entry"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        b.put(
            "/Patient/iso",
            json!({"resourceType": "Patient", "id": "iso"})
        )
        .await
        .status,
        201
    );

    let mut got = Vec::new();
    while got.len() < 4 {
        let d = tokio::time::timeout(Duration::from_secs(60), events.next())
            .await
            .expect("events arrive")
            .unwrap();
        got.push(FhirResourceEvent::decode(d.payload.as_slice()).unwrap());
    }
    let of_a: Vec<(i32, i64)> = got
        .iter()
        .filter(|e| e.instance == "ws1-fhir")
        .map(|e| (e.action, e.version_id))
        .collect();
    assert_eq!(
        of_a,
        [
            (FhirResourceAction::Created as i32, 1),
            (FhirResourceAction::Updated as i32, 2),
            (FhirResourceAction::Deleted as i32, 3)
        ]
    );
    assert!(got
        .iter()
        .all(|e| e.resource_type == "Patient" && e.resource_id == "iso"));
    let ids: BTreeSet<&str> = got.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), 4);
    events.close().await;
    env.stop().await;
}

async fn capability_statement(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    let cs = fhir.get("/metadata").await;
    assert_eq!(cs.status, 200);
    assert_eq!(cs.body["resourceType"], "CapabilityStatement");
    assert_eq!(cs.body["fhirVersion"], "4.0.1");
    let patient = cs.body["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap();
    let codes: Vec<&str> = patient["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    for code in [
        "read",
        "vread",
        "update",
        "delete",
        "history-instance",
        "history-type",
        "create",
    ] {
        assert!(codes.contains(&code), "{code}");
    }
    assert!(codes.contains(&"search-type"));
    let params: Vec<&str> = patient["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "identifier",
        "name",
        "birthdate",
        "general-practitioner",
        "_id",
    ] {
        assert!(params.contains(&p), "{p} not in {params:?}");
    }
    assert_eq!(
        Fhir {
            client: Client::new(),
            base: env.url("/ws1-nothere")
        }
        .get("/metadata")
        .await
        .status,
        404
    );
    env.stop().await;
}

async fn transaction_bundles(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    fhir.put(
        "/Patient/old",
        json!({"resourceType": "Patient", "id": "old"}),
    )
    .await;
    fhir.put(
        "/Patient/keep",
        json!({"resourceType": "Patient", "id": "keep", "active": true}),
    )
    .await;
    let patch = base64::engine::general_purpose::STANDARD
        .encode(r#"[{"op":"replace","path":"/active","value":false}]"#);
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "GET", "url": "Patient/keep"}},
            {"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
             "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                          "subject": {"reference": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059"}},
             "request": {"method": "POST", "url": "Observation"}},
            {"fullUrl": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059",
             "resource": {"resourceType": "Patient", "name": [{"family": "Tx"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Practitioner", "id": "pr1"}, "request": {"method": "PUT", "url": "Practitioner/pr1"}},
            {"request": {"method": "DELETE", "url": "Patient/old"}},
            {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch},
             "request": {"method": "PATCH", "url": "Patient/keep"}}
        ]
    });
    let res = fhir.post("", bundle).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["type"], "transaction-response");
    let entries = res.body["entry"].as_array().unwrap();
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "200 OK",
            "201 Created",
            "201 Created",
            "201 Created",
            "204 No Content",
            "200 OK"
        ]
    );
    // GET runs last: it sees the patch made in the same transaction.
    assert_eq!(entries[0]["resource"]["active"], false);
    let patient_id = entries[2]["resource"]["id"].as_str().unwrap();
    let obs = &entries[1]["resource"];
    assert_eq!(obs["subject"]["reference"], format!("Patient/{patient_id}"));
    assert!(entries[1]["response"]["location"]
        .as_str()
        .unwrap()
        .starts_with("Observation/"));
    let obs_id = obs["id"].as_str().unwrap();
    assert_eq!(
        fhir.get(&format!("/Observation/{obs_id}")).await.body["subject"]["reference"],
        format!("Patient/{patient_id}")
    );
    assert_eq!(
        fhir.get(&format!("/Patient/{patient_id}")).await.status,
        200
    );
    assert_eq!(fhir.get("/Patient/old").await.status, 410);
    assert_eq!(fhir.get("/Practitioner/pr1").await.status, 200);
    env.stop().await;
}

/// A failing entry rolls the whole transaction back.
async fn a_failing_entry_rolls_back_the_transaction(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    fhir.put("/Patient/p", json!({"resourceType": "Patient", "id": "p"}))
        .await;
    fhir.put("/Patient/q", json!({"resourceType": "Patient", "id": "q"}))
        .await;
    let before = fhir.get("/_history?_count=100").await.body["entry"]
        .as_array()
        .unwrap()
        .len();
    // Enough creations that some are sent to the database before the failing entry runs.
    let failing = |last: Value| {
        let mut entries: Vec<Value> = (0..300)
            .map(|_| json!({"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}))
            .collect();
        entries.push(json!({"request": {"method": "DELETE", "url": "Patient/p"}}));
        entries.push(last);
        json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    };
    let cases = [
        (
            json!({"resource": {"resourceType": "Patient", "id": "x"}, "request": {"method": "PUT", "url": "Patient/y"}}),
            400,
        ),
        (
            json!({"resource": {"resourceType": "Patient", "id": "q"}, "request": {"method": "PUT", "url": "Patient/q", "ifMatch": "W/\"7\""}}),
            412,
        ),
        (
            json!({"request": {"method": "GET", "url": "Patient/missing"}}),
            404,
        ),
        (
            json!({"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient?identifier=a|b"}}),
            400,
        ),
        (
            json!({"request": {"method": "DELETE", "url": "Patient/p"}}),
            400,
        ),
    ];
    for (last, status) in cases {
        let res = fhir.post("", failing(last.clone())).await;
        assert_eq!(res.status.as_u16(), status, "{last}: {}", res.body);
        assert!(res.is_outcome());
    }
    assert_eq!(
        fhir.get("/Patient/p").await.status,
        200,
        "the delete was not rolled back"
    );
    let after = fhir.get("/_history?_count=100").await.body["entry"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "something was stored");
    env.stop().await;
}

async fn batch_entries_fail_alone(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    let res = fhir
        .post("", json!({
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {"resource": {"resourceType": "Patient", "name": [{"family": "Good"}]}, "request": {"method": "POST", "url": "Patient"}},
                {"resource": {"resourceType": "Observation"}, "request": {"method": "POST", "url": "Patient"}},
                {"request": {"method": "GET", "url": "Patient/missing"}},
                {"request": {"method": "FETCH", "url": "Patient"}},
                {"resource": {"resourceType": "Patient", "id": "b2"}, "request": {"method": "PUT", "url": "Patient/b2"}}
            ]
        }))
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["type"], "batch-response");
    let entries = res.body["entry"].as_array().unwrap();
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "201 Created",
            "400 Bad Request",
            "404 Not Found",
            "400 Bad Request",
            "201 Created"
        ]
    );
    assert_eq!(
        entries[1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(fhir.get("/Patient/b2").await.status, 200);
    let good = entries[0]["resource"]["id"].as_str().unwrap();
    assert_eq!(fhir.get(&format!("/Patient/{good}")).await.status, 200);

    // Entries run several at once (on PostgreSQL), but two on one resource keep their order:
    // the later PUT is version 2, and wins; the writes around them all land.
    let put = |family: &str| {
        json!({"resource": {"resourceType": "Patient", "id": "twice", "name": [{"family": family}]},
               "request": {"method": "PUT", "url": "Patient/twice"}})
    };
    let mut entry: Vec<Value> = (0..20)
        .map(|i| {
            json!({"resource": {"resourceType": "Patient", "id": format!("many{i}")},
                        "request": {"method": "PUT", "url": format!("Patient/many{i}")}})
        })
        .collect();
    entry.insert(3, put("First"));
    entry.insert(4, put("Second"));
    let res = fhir
        .post(
            "",
            json!({"resourceType": "Bundle", "type": "batch", "entry": entry}),
        )
        .await;
    let statuses: Vec<&str> = res.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.len(), 22);
    assert_eq!(statuses[3], "201 Created");
    assert_eq!(statuses[4], "200 OK");
    assert_eq!(statuses.iter().filter(|s| **s == "201 Created").count(), 21);
    let twice = fhir.get("/Patient/twice").await;
    assert_eq!(twice.body["name"][0]["family"], "Second");
    assert_eq!(twice.body["meta"]["versionId"], "2");
    // Version 1 was a PUT of a new id, made with the run's creations: history says PUT.
    let history = fhir.get("/Patient/twice/_history").await;
    let methods: Vec<&str> = history.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request"]["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["PUT", "PUT"]);
    for i in 0..20 {
        assert_eq!(fhir.get(&format!("/Patient/many{i}")).await.status, 200);
    }

    // Over the entry limit (500 by default), not a bundle, not a known bundle type.
    let many: Vec<Value> = (0..501)
        .map(|_| json!({"request": {"method": "GET", "url": "Patient/b2"}}))
        .collect();
    let too_many = fhir
        .post(
            "",
            json!({"resourceType": "Bundle", "type": "batch", "entry": many}),
        )
        .await;
    assert_eq!(too_many.status, 400);
    assert!(too_many.body["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("limit is 500"));
    assert_eq!(
        fhir.post("", json!({"resourceType": "Patient"}))
            .await
            .status,
        400
    );
    assert_eq!(
        fhir.post("", json!({"resourceType": "Bundle", "type": "collection"}))
            .await
            .status,
        400
    );
    env.stop().await;
}

async fn conditional_interactions(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    let npi = |n: &str| json!({"resourceType": "Practitioner", "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": n}], "name": [{"family": "Nguyễn", "given": ["An"]}], "birthDate": "1970-05-06"});
    // Conditional create: the first creates, the second finds it.
    let ine = [(
        "if-none-exist",
        "identifier=http://hl7.org/fhir/sid/us-npi|111",
    )];
    let first = fhir
        .call(Method::POST, "/Practitioner", Some(npi("111")), &ine)
        .await;
    assert_eq!(first.status, 201);
    let again = fhir
        .call(Method::POST, "/Practitioner", Some(npi("111")), &ine)
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["meta"]["versionId"], "1", "nothing was written");
    // The search index also answers by string (accent- and case-insensitive prefix), date and token without system.
    let by_id = format!("_id={}", first.body["id"].as_str().unwrap());
    for criteria in ["name=nguyen", "given=AN", "identifier=111", by_id.as_str()] {
        let r = fhir
            .call(
                Method::POST,
                "/Practitioner",
                Some(npi("111")),
                &[("if-none-exist", criteria)],
            )
            .await;
        assert_eq!(r.status, 200, "{criteria}");
    }
    let r = fhir
        .call(
            Method::POST,
            "/Practitioner",
            Some(npi("222")),
            &[("if-none-exist", "identifier=222")],
        )
        .await;
    assert_eq!(r.status, 201);
    // Dates match by their precision.
    let patient = json!({"resourceType": "Patient", "birthDate": "1970-05-06"});
    assert_eq!(
        fhir.call(
            Method::POST,
            "/Patient",
            Some(patient.clone()),
            &[("if-none-exist", "birthdate=1970-05")]
        )
        .await
        .status,
        201
    );
    for (criteria, status) in [
        ("birthdate=1970-05", 200),
        ("birthdate=1970", 200),
        ("birthdate=1970-05-06", 200),
        ("birthdate=ge1970-05-01", 200),
        ("birthdate=lt1970-05-06", 201),
    ] {
        let r = fhir
            .call(
                Method::POST,
                "/Patient",
                Some(patient.clone()),
                &[("if-none-exist", criteria)],
            )
            .await;
        assert_eq!(r.status.as_u16(), status, "{criteria}");
        if status == 201 {
            fhir.call(
                Method::DELETE,
                &format!("/Patient/{}", r.body["id"].as_str().unwrap()),
                None,
                &[],
            )
            .await;
        }
    }
    // Two now match the name: 412.
    let two = fhir
        .call(
            Method::POST,
            "/Practitioner",
            Some(npi("333")),
            &[("if-none-exist", "name=nguyen")],
        )
        .await;
    assert_eq!(two.status, 412);
    // Unknown parameters are refused, not ignored.
    let unknown = fhir
        .call(
            Method::POST,
            "/Practitioner",
            Some(npi("333")),
            &[("if-none-exist", "shoe-size=42")],
        )
        .await;
    assert_eq!(unknown.status, 400);

    // Conditional update: one match updates it; none creates; several is 412.
    let mut changed = npi("111");
    changed["active"] = json!(true);
    let up = fhir
        .call(
            Method::PUT,
            "/Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|111",
            Some(changed),
            &[],
        )
        .await;
    assert_eq!(up.status, 200, "{}", up.body);
    assert_eq!(up.body["id"], first.body["id"]);
    assert_eq!(up.body["meta"]["versionId"], "2");
    let created = fhir
        .call(
            Method::PUT,
            "/Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|444",
            Some(npi("444")),
            &[],
        )
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(
        fhir.call(
            Method::PUT,
            "/Practitioner?name=nguyen",
            Some(npi("555")),
            &[]
        )
        .await
        .status,
        412
    );

    // Conditional delete.
    assert_eq!(
        fhir.call(
            Method::DELETE,
            "/Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|999",
            None,
            &[]
        )
        .await
        .status,
        204
    );
    assert_eq!(
        fhir.call(Method::DELETE, "/Practitioner?name=nguyen", None, &[])
            .await
            .status,
        412
    );
    assert_eq!(
        fhir.call(
            Method::DELETE,
            "/Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|444",
            None,
            &[]
        )
        .await
        .status,
        204
    );
    let id444 = created.body["id"].as_str().unwrap();
    assert_eq!(
        fhir.get(&format!("/Practitioner/{id444}")).await.status,
        410
    );
    // A deleted resource no longer matches.
    let back = fhir
        .call(
            Method::POST,
            "/Practitioner",
            Some(npi("444")),
            &[(
                "if-none-exist",
                "identifier=http://hl7.org/fhir/sid/us-npi|444",
            )],
        )
        .await;
    assert_eq!(back.status, 201);
    env.stop().await;
}

/// Transactions with ifNoneExist and conditional references, as Synthea writes them.
async fn conditional_entries_and_references(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    let org = |n: &str| {
        json!({
            "fullUrl": format!("urn:uuid:org-{n}"),
            "resource": {"resourceType": "Organization", "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": n}], "name": n},
            "request": {"method": "POST", "url": "Organization", "ifNoneExist": format!("identifier=https://github.com/synthetichealth/synthea|{n}")}
        })
    };
    let batch = fhir.post("", json!({"resourceType": "Bundle", "type": "batch", "entry": [org("a"), org("b"), org("a")]})).await;
    let statuses: Vec<&str> = batch.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["201 Created", "201 Created", "200 OK"]);
    let org_a = batch.body["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let tx = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "managingOrganization": {"reference": "Organization?identifier=https://github.com/synthetichealth/synthea|a"}},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:e1", "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                "subject": {"reference": "urn:uuid:p1"}, "serviceProvider": {"reference": "Organization?identifier=https://github.com/synthetichealth/synthea|b"}},
             "request": {"method": "POST", "url": "Encounter"}},
            org("a"),
            {"resource": {"resourceType": "Organization", "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": "b"}], "name": "B renamed"},
             "request": {"method": "PUT", "url": "Organization?identifier=https://github.com/synthetichealth/synthea|b"}}
        ]
    });
    let res = fhir.post("", tx).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let e = res.body["entry"].as_array().unwrap();
    assert_eq!(
        e[0]["resource"]["managingOrganization"]["reference"],
        format!("Organization/{org_a}")
    );
    let patient = e[0]["resource"]["id"].as_str().unwrap();
    assert_eq!(
        e[1]["resource"]["subject"]["reference"],
        format!("Patient/{patient}")
    );
    assert!(e[1]["resource"]["serviceProvider"]["reference"]
        .as_str()
        .unwrap()
        .starts_with("Organization/"));
    assert_eq!(e[2]["response"]["status"], "200 OK");
    assert_eq!(e[3]["response"]["status"], "200 OK");
    assert_eq!(e[3]["resource"]["name"], "B renamed");

    // A conditional reference finds a resource the transaction created before it (its search
    // waits for the creations of the type it reads), not only stored ones.
    let created_first = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        org("c"),
        {"resource": {"resourceType": "Patient", "managingOrganization": {"reference": "Organization?identifier=https://github.com/synthetichealth/synthea|c"}},
         "request": {"method": "POST", "url": "Patient"}}]});
    let res = fhir.post("", created_first).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let e = res.body["entry"].as_array().unwrap();
    assert_eq!(
        e[1]["resource"]["managingOrganization"]["reference"],
        format!("Organization/{}", e[0]["resource"]["id"].as_str().unwrap())
    );

    // An invalid entry before a failing conditional reference is the failure reported.
    let both_bad = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "gender": 7}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "managingOrganization": {"reference": "Organization?identifier=https://github.com/synthetichealth/synthea|zzz"}},
         "request": {"method": "POST", "url": "Patient"}}]});
    let res = fhir.post("", both_bad).await;
    assert_eq!(res.status, 400, "{}", res.body);
    let said = res.body.to_string();
    assert!(said.contains("Bundle.entry[0]"), "{said}");
    assert!(!said.contains("Bundle.entry[1]"), "{said}");

    // A conditional reference that matches nothing, or several, fails the transaction.
    let dangling = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "managingOrganization": {"reference": "Organization?identifier=https://github.com/synthetichealth/synthea|zzz"}},
         "request": {"method": "POST", "url": "Patient"}}]});
    assert_eq!(fhir.post("", dangling).await.status, 400);
    fhir.post("/Organization", json!({"resourceType": "Organization", "name": "a twin", "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": "a"}]})).await;
    let ambiguous = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "managingOrganization": {"reference": "Organization?identifier=https://github.com/synthetichealth/synthea|a"}},
         "request": {"method": "POST", "url": "Patient"}}]});
    assert_eq!(fhir.post("", ambiguous).await.status, 412);
    env.stop().await;
}

macro_rules! rest_suite {
    ($backend:ident) => {
        mod $backend {
            use super::*;
            #[tokio::test]
            async fn create_read_update_vread() {
                super::create_read_update_vread(Env::$backend().await).await
            }
            #[tokio::test]
            async fn conditional_headers() {
                super::conditional_headers(Env::$backend().await).await
            }
            #[tokio::test]
            async fn concurrent_if_match_has_one_winner() {
                super::concurrent_if_match_has_one_winner(Env::$backend().await).await
            }
            #[tokio::test]
            async fn delete_soft_hard_and_purge() {
                super::delete_soft_hard_and_purge(Env::$backend().await).await
            }
            #[tokio::test]
            async fn history_pages_with_next_links() {
                super::history_pages_with_next_links(Env::$backend().await).await
            }
            #[tokio::test]
            async fn bad_input_is_refused_and_stores_nothing() {
                super::bad_input_is_refused_and_stores_nothing(Env::$backend().await).await
            }
            #[tokio::test]
            async fn isolation_and_events() {
                super::isolation_and_events(Env::$backend().await).await
            }
            #[tokio::test]
            async fn json_patch() {
                super::json_patch(Env::$backend().await).await
            }
            #[tokio::test]
            async fn validation_on_write_and_validate() {
                super::validation_on_write_and_validate(Env::$backend().await).await
            }
            #[tokio::test]
            async fn search_pages_and_lenient_parameters() {
                super::search_pages_and_lenient_parameters(Env::$backend().await).await
            }
            #[tokio::test]
            async fn search_includes_and_revincludes() {
                super::search_includes_and_revincludes(Env::$backend().await).await
            }
            #[tokio::test]
            async fn search_numbers_quantities_and_uris() {
                super::search_numbers_quantities_and_uris(Env::$backend().await).await
            }
            #[tokio::test]
            async fn fhirpath_patch() {
                super::fhirpath_patch(Env::$backend().await).await
            }
            #[tokio::test]
            async fn transaction_bundles() {
                super::transaction_bundles(Env::$backend().await).await
            }
            #[tokio::test]
            async fn a_failing_entry_rolls_back_the_transaction() {
                super::a_failing_entry_rolls_back_the_transaction(Env::$backend().await).await
            }
            #[tokio::test]
            async fn batch_entries_fail_alone() {
                super::batch_entries_fail_alone(Env::$backend().await).await
            }
            #[tokio::test]
            async fn conditional_interactions() {
                super::conditional_interactions(Env::$backend().await).await
            }
            #[tokio::test]
            async fn conditional_entries_and_references() {
                super::conditional_entries_and_references(Env::$backend().await).await
            }
            #[tokio::test]
            async fn index_is_rebuilt_for_resources_without_keys() {
                super::index_is_rebuilt_for_resources_without_keys(Env::$backend().await).await
            }
            #[tokio::test]
            async fn concurrent_conditional_creates_make_one_resource() {
                super::concurrent_conditional_creates_make_one_resource(Env::$backend().await).await
            }
            #[tokio::test]
            async fn reindex_rebuilds_the_index_and_reports_progress() {
                super::reindex_rebuilds_the_index_and_reports_progress(Env::$backend().await).await
            }
            #[tokio::test]
            async fn reindex_resumes_after_its_last_batch() {
                super::reindex_resumes_after_its_last_batch(Env::$backend().await).await
            }
            #[tokio::test]
            async fn custom_search_parameter_is_searchable_after_reindex() {
                super::custom_search_parameter_is_searchable_after_reindex(Env::$backend().await)
                    .await
            }
            #[tokio::test]
            async fn malformed_search_input_is_a_clear_error() {
                super::malformed_search_input_is_a_clear_error(Env::$backend().await).await
            }
            #[tokio::test]
            async fn capability_statement() {
                super::capability_statement(Env::$backend().await).await
            }
        }
    };
}

async fn json_patch(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    fhir.put(
        "/Patient/jp",
        json!({"resourceType": "Patient", "id": "jp", "active": true, "name": [{"family": "Old"}]}),
    )
    .await;
    let patch = |ops: Value, headers: Vec<(&'static str, &'static str)>| {
        let c = fhir.client.clone();
        let url = format!("{}/Patient/jp", fhir.base);
        async move {
            let mut r = c
                .patch(url)
                .header("content-type", "application/json-patch+json")
                .body(ops.to_string());
            for (k, v) in headers {
                r = r.header(k, v);
            }
            let res = r.send().await.unwrap();
            let status = res.status();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = patch(
        json!([
            {"op": "replace", "path": "/name/0/family", "value": "New"},
            {"op": "add", "path": "/gender", "value": "female"},
            {"op": "remove", "path": "/active"}
        ]),
        vec![],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"][0]["family"], "New");
    assert_eq!(body["gender"], "female");
    assert!(body.get("active").is_none());
    assert_eq!(body["meta"]["versionId"], "2");
    assert_eq!(
        fhir.get("/Patient/jp/_history").await.body["entry"][0]["request"]["method"],
        "PATCH"
    );

    // A failing test op applies nothing.
    let (status, body) = patch(
        json!([
            {"op": "replace", "path": "/gender", "value": "male"},
            {"op": "test", "path": "/gender", "value": "other"}
        ]),
        vec![],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(fhir.get("/Patient/jp").await.body["gender"], "female");
    // Not the same resource afterwards.
    let (status, _) = patch(
        json!([{"op": "replace", "path": "/id", "value": "other"}]),
        vec![],
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = patch(
        json!([{"op": "replace", "path": "/resourceType", "value": "Person"}]),
        vec![],
    )
    .await;
    assert_eq!(status, 400);
    // If-Match.
    let (status, _) = patch(
        json!([{"op": "add", "path": "/active", "value": true}]),
        vec![("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(status, 412);
    let (status, body) = patch(
        json!([{"op": "add", "path": "/active", "value": true}]),
        vec![("if-match", "W/\"2\"")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["meta"]["versionId"], "3");
    // Not a patch document; not a patch media type.
    let (status, _) = patch(json!({"op": "add"}), vec![]).await;
    assert_eq!(status, 400);
    let wrong = fhir
        .client
        .patch(format!("{}/Patient/jp", fhir.base))
        .header("content-type", "text/plain")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 415);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(fhir.get("/Patient/jp").await.body["meta"]["versionId"], "3");
    let missing = fhir
        .client
        .patch(format!("{}/Patient/nope", fhir.base))
        .header("content-type", "application/json-patch+json")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    env.stop().await;
}

fn expressions(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["expression"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect()
}

/// Every write is checked against the R4 StructureDefinitions: an invalid resource is a 400
/// listing each problem with its path, and nothing is stored. `$validate` answers the same
/// checks without writing.
async fn validation_on_write_and_validate(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    let invalid = json!({"resourceType": "Observation", "status": "bogus", "foo": 1,
        "code": {"text": "x"}, "effectiveDateTime": "2020-13-01", "valueString": "a", "valueBoolean": true});
    let wants = [
        "Observation.status",
        "Observation.foo",
        "Observation.effectiveDateTime",
    ];

    let created = fhir
        .call(Method::POST, "/Observation", Some(invalid.clone()), &[])
        .await;
    assert_eq!(created.status, 400, "{}", created.body);
    let found = expressions(&created.body);
    for want in wants {
        assert!(found.iter().any(|e| e == want), "{want} not in {found:?}");
    }
    // Two value[x] variants are reported too.
    assert!(
        created.body["issue"].as_array().unwrap().len() >= 4,
        "{}",
        created.body
    );

    let mut with_id = invalid.clone();
    with_id["id"] = json!("bad1");
    let put = fhir
        .call(Method::PUT, "/Observation/bad1", Some(with_id), &[])
        .await;
    assert_eq!(put.status, 400, "{}", put.body);
    assert_eq!(fhir.get("/Observation/bad1").await.status, 404);

    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Observation"},
         "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "ok"}}},
        {"request": {"method": "POST", "url": "Observation"}, "resource": invalid.clone()},
    ]});
    let tx = fhir.call(Method::POST, "", Some(bundle), &[]).await;
    assert_eq!(tx.status, 400, "{}", tx.body);
    assert!(
        tx.body.to_string().contains("Bundle.entry[1]"),
        "{}",
        tx.body
    );
    let history = fhir.get("/Observation/_history").await;
    assert_eq!(
        history.body["entry"].as_array().map_or(0, Vec::len),
        0,
        "{}",
        history.body
    );

    // A patch whose result is invalid is refused like any write.
    fhir.put(
        "/Patient/v1",
        json!({"resourceType": "Patient", "id": "v1", "gender": "female"}),
    )
    .await;
    let patched = fhir
        .client
        .patch(format!("{}/Patient/v1", fhir.base))
        .header("content-type", "application/json-patch+json")
        .body(json!([{"op": "replace", "path": "/gender", "value": "x"}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 400);
    let outcome: Value = patched.json().await.unwrap();
    assert_eq!(expressions(&outcome), vec!["Patient.gender".to_string()]);
    assert_eq!(fhir.get("/Patient/v1").await.body["meta"]["versionId"], "1");

    // $validate: the same checks, answered 200 with the issues, nothing written.
    let answer = fhir
        .call(
            Method::POST,
            "/Observation/$validate",
            Some(invalid.clone()),
            &[],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let found = expressions(&answer.body);
    for want in wants {
        assert!(found.iter().any(|e| e == want), "{want} not in {found:?}");
    }
    assert!(answer.body["issue"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["severity"] == "error"));
    let ok = fhir
        .call(
            Method::POST,
            "/Patient/$validate",
            Some(json!({"resourceType": "Patient", "name": [{"family": "Fine"}]})),
            &[],
        )
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.body["issue"][0]["severity"], "information",
        "{}",
        ok.body
    );
    // As Parameters, mode=update on an instance: the id must be the URL's.
    let wrapped = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": {"resourceType": "Patient", "id": "other"}},
        {"name": "mode", "valueCode": "update"},
    ]});
    let update = fhir
        .call(Method::POST, "/Patient/v1/$validate", Some(wrapped), &[])
        .await;
    assert_eq!(update.status, 200);
    assert_eq!(expressions(&update.body), vec!["Patient.id".to_string()]);
    let stored = fhir.get("/Patient/v1/$validate").await;
    assert_eq!(stored.status, 200);
    assert_eq!(
        stored.body["issue"][0]["severity"], "information",
        "{}",
        stored.body
    );
    assert_eq!(fhir.get("/Patient/none/$validate").await.status, 404);
    let wrong_type = fhir
        .call(
            Method::POST,
            "/Patient/$validate",
            Some(json!({"resourceType": "Observation"})),
            &[],
        )
        .await;
    assert_eq!(expressions(&wrong_type.body)[0], "resourceType");
    assert_eq!(fhir.get("/Patient/v1").await.body["meta"]["versionId"], "1");
    env.stop().await;
}

fn ids_of(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Type-level search: matches a page at a time through `next` links to the end, each once;
/// totals; unknown parameters ignored with a warning, or refused with `handling=strict`.
async fn search_pages_and_lenient_parameters(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    for i in 0..25 {
        let birth = if i < 5 { "1990-05-01" } else { "2005-01-01" };
        let created = fhir
            .post(
                "/Patient",
                json!({"resourceType": "Patient", "identifier": [{"system": "urn:search", "value": format!("s{i}")}],
                       "name": [{"family": "Searchmé", "given": [format!("G{i}")]}], "birthDate": birth}),
            )
            .await;
        assert_eq!(created.status, 201);
    }
    fhir.post(
        "/Patient",
        json!({"resourceType": "Patient", "name": [{"family": "Other"}]}),
    )
    .await;
    let gone = fhir
        .post(
            "/Patient",
            json!({"resourceType": "Patient", "name": [{"family": "Searchme"}]}),
        )
        .await;
    let gone_id = gone.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        fhir.call(Method::DELETE, &format!("/Patient/{gone_id}"), None, &[])
            .await
            .status,
        204
    );

    // Pages of 10 to the end: 25 matches, each once, the deleted one not among them.
    let mut seen = Vec::new();
    let mut page = fhir.get("/Patient?family=searchme&_count=10").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["type"], "searchset");
    let mut pages = 1;
    loop {
        seen.extend(ids_of(&page.body));
        let next = page.body["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
        let Some(next) = next else { break };
        let res = fhir.client.get(&next).send().await.unwrap();
        assert_eq!(res.status(), 200);
        page = Answer {
            status: res.status(),
            headers: res.headers().clone(),
            body: res.json().await.unwrap(),
        };
        pages += 1;
    }
    assert_eq!(pages, 3);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (25, 25));
    assert!(!seen.contains(&gone_id));

    let total = fhir
        .get("/Patient?family=searchme&_total=accurate&_count=1")
        .await;
    assert_eq!(total.body["total"], 25);
    assert_eq!(ids_of(&total.body).len(), 1);
    let count = fhir.get("/Patient?family=searchme&_summary=count").await;
    assert_eq!(count.body["total"], 25);
    assert_eq!(ids_of(&count.body).len(), 0);
    let older = fhir
        .get("/Patient?family=searchme&birthdate=lt2000&_total=accurate")
        .await;
    assert_eq!(older.body["total"], 5);
    let one = fhir.get("/Patient?identifier=urn:search|s7").await;
    assert_eq!(ids_of(&one.body).len(), 1);
    assert_eq!(
        one.body["entry"][0]["resource"]["identifier"][0]["value"],
        "s7"
    );
    let none = fhir.get("/Patient?family=nobody").await;
    assert_eq!(none.status, 200);
    assert_eq!(ids_of(&none.body).len(), 0);

    // Modifiers and prefixes: :contains, :missing, :not, sa / eb / ap.
    let total_of = |q: &'static str| {
        let fhir = &fhir;
        async move {
            let a = fhir.get(&format!("{q}&_total=accurate&_count=0")).await;
            assert_eq!(a.status, 200, "{q}: {}", a.body);
            assert!(
                !a.body["entry"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["search"]["mode"] == "outcome"),
                "{q} was not understood: {}",
                a.body
            );
            a.body["total"].as_i64().unwrap()
        }
    };
    assert_eq!(total_of("/Patient?family:contains=RCHM").await, 25);
    assert_eq!(total_of("/Patient?family:contains=%25").await, 0);
    assert_eq!(
        total_of("/Patient?family=searchme&birthdate:missing=true").await,
        0
    );
    assert_eq!(
        total_of("/Patient?family=other&birthdate:missing=true").await,
        1
    );
    assert_eq!(
        total_of("/Patient?family=searchme&birthdate:missing=false").await,
        25
    );
    assert_eq!(
        total_of("/Patient?family=searchme&identifier:not=urn:search|s7").await,
        24
    );
    assert_eq!(
        total_of("/Patient?family=searchme&birthdate=sa2000-01-01").await,
        20
    );
    assert_eq!(
        total_of("/Patient?family=searchme&birthdate=eb2000").await,
        5
    );
    assert_eq!(
        total_of("/Patient?family=searchme&birthdate=ap1990-05").await,
        5
    );

    // Lenient: an unknown parameter is ignored and reported; strict: 400.
    let lenient = fhir
        .get("/Patient?family=searchme&unknown-thing=1&_count=50")
        .await;
    assert_eq!(lenient.status, 200);
    assert_eq!(ids_of(&lenient.body).len(), 25);
    let outcome = lenient.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .expect("an outcome entry");
    assert!(
        outcome["resource"].to_string().contains("unknown-thing"),
        "{outcome}"
    );
    let strict = fhir
        .call(
            Method::GET,
            "/Patient?family=searchme&unknown-thing=1",
            None,
            &[("prefer", "handling=strict")],
        )
        .await;
    assert_eq!(strict.status, 400);
    assert!(strict.is_outcome());
    assert_eq!(fhir.get("/Patient?_count=many").await.status, 400);
    assert_eq!(fhir.get("/Patient?birthdate=notadate").await.status, 200);

    // _sort on several keys, paged to the end: each once, in order.
    let mut sorted = Vec::new();
    let mut page = fhir
        .get("/Patient?family=searchme&_sort=birthdate,-given&_count=10")
        .await;
    loop {
        assert_eq!(page.status, 200, "{}", page.body);
        for e in page.body["entry"].as_array().unwrap() {
            if e["search"]["mode"] == "match" {
                let r = &e["resource"];
                sorted.push((
                    r["birthDate"].as_str().unwrap().to_owned(),
                    r["name"][0]["given"][0].as_str().unwrap().to_lowercase(),
                ));
            }
        }
        let next = page.body["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
        let Some(next) = next else { break };
        let res = fhir.client.get(&next).send().await.unwrap();
        page = Answer {
            status: res.status(),
            headers: res.headers().clone(),
            body: res.json().await.unwrap(),
        };
    }
    assert_eq!(sorted.len(), 25);
    let mut expected = sorted.clone();
    expected.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    assert_eq!(sorted, expected);
    assert_eq!(sorted[0], ("1990-05-01".to_owned(), "g4".to_owned()));
    assert_eq!(
        fhir.call(
            Method::GET,
            "/Patient?_sort=nonsense",
            None,
            &[("prefer", "handling=strict")]
        )
        .await
        .status,
        400
    );

    // _elements and _summary shape what comes back, tagged SUBSETTED.
    let elements = fhir
        .get("/Patient?identifier=urn:search|s3&_elements=birthDate")
        .await;
    let r = &elements.body["entry"][0]["resource"];
    assert_eq!(r["birthDate"], "1990-05-01", "{r}");
    assert!(
        r.get("name").is_none() && r.get("identifier").is_none(),
        "{r}"
    );
    assert!(r["id"].is_string());
    assert!(r["meta"]["tag"].to_string().contains("SUBSETTED"), "{r}");
    let data = fhir
        .get("/Patient?identifier=urn:search|s3&_summary=data")
        .await;
    assert!(data.body["entry"][0]["resource"]["name"].is_array());
    let text = fhir
        .get("/Patient?identifier=urn:search|s3&_summary=text")
        .await;
    assert!(text.body["entry"][0]["resource"].get("name").is_none());
    // Patient.name and birthDate are summary elements.
    let summary = fhir
        .get("/Patient?identifier=urn:search|s3&_summary=true")
        .await;
    let r = &summary.body["entry"][0]["resource"];
    assert!(r["name"].is_array() && r["birthDate"].is_string(), "{r}");
    assert!(r["meta"]["tag"].to_string().contains("SUBSETTED"), "{r}");
    // Observation.status and code are mandatory: _summary=text keeps them.
    fhir.put(
        "/Observation/sum1",
        json!({"resourceType": "Observation", "id": "sum1", "status": "final",
               "code": {"text": "c"}, "note": [{"text": "n"}]}),
    )
    .await;
    let text = fhir.get("/Observation?_id=sum1&_summary=text").await;
    let r = &text.body["entry"][0]["resource"];
    assert_eq!(r["status"], "final", "{r}");
    assert!(r.get("code").is_some() && r.get("note").is_none(), "{r}");
    assert!(fhir.get("/Patient/_history").await.status.is_success());

    // POST _search takes the parameters as a form.
    let posted = fhir
        .client
        .post(format!("{}/Patient/_search", fhir.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("family=searchme&_count=50")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let posted: Value = posted.json().await.unwrap();
    assert_eq!(ids_of(&posted).len(), 25);
    env.stop().await;
}

fn entries_by_mode(bundle: &Value, mode: &str) -> Vec<String> {
    let mut out: Vec<String> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == mode)
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

/// `_include`, `_revinclude` and `:iterate`: referenced and referring resources come along
/// as `include` entries, each once. Chained parameters and `_has` select through references.
async fn search_includes_and_revincludes(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    for (path, body) in [
        (
            "/Patient/inc-p1",
            json!({"resourceType": "Patient", "id": "inc-p1", "name": [{"family": "Chainy"}]}),
        ),
        (
            "/Patient/inc-p2",
            json!({"resourceType": "Patient", "id": "inc-p2", "name": [{"family": "Deep"}]}),
        ),
        (
            "/Encounter/inc-e1",
            json!({"resourceType": "Encounter", "id": "inc-e1", "status": "finished",
            "class": {"code": "AMB"}, "subject": {"reference": "Patient/inc-p2"}}),
        ),
        (
            "/Observation/inc-o1",
            json!({"resourceType": "Observation", "id": "inc-o1", "status": "final",
            "code": {"coding": [{"system": "urn:c", "code": "inc"}]}, "subject": {"reference": "Patient/inc-p1"}}),
        ),
        (
            "/Observation/inc-o2",
            json!({"resourceType": "Observation", "id": "inc-o2", "status": "final",
            "code": {"coding": [{"system": "urn:c", "code": "inc"}]}, "subject": {"reference": "Patient/inc-p1"},
            "encounter": {"reference": "Encounter/inc-e1"}}),
        ),
    ] {
        assert!(fhir.put(path, body).await.status.is_success());
    }
    let inc = fhir
        .get("/Observation?code=urn:c|inc&_include=Observation:subject")
        .await;
    assert_eq!(
        entries_by_mode(&inc.body, "match"),
        ["Observation/inc-o1", "Observation/inc-o2"]
    );
    assert_eq!(entries_by_mode(&inc.body, "include"), ["Patient/inc-p1"]);

    let all = fhir
        .get("/Observation?code=urn:c|inc&_include=Observation:*")
        .await;
    assert_eq!(
        entries_by_mode(&all.body, "include"),
        ["Encounter/inc-e1", "Patient/inc-p1"]
    );

    let iterate = fhir
        .get("/Observation?_id=inc-o2&_include=Observation:encounter&_include:iterate=Encounter:subject")
        .await;
    assert_eq!(
        entries_by_mode(&iterate.body, "include"),
        ["Encounter/inc-e1", "Patient/inc-p2"]
    );

    let rev = fhir
        .get("/Patient?_id=inc-p1&_revinclude=Observation:subject")
        .await;
    assert_eq!(entries_by_mode(&rev.body, "match"), ["Patient/inc-p1"]);
    assert_eq!(
        entries_by_mode(&rev.body, "include"),
        ["Observation/inc-o1", "Observation/inc-o2"]
    );

    // Chains, typed, untyped where the parameter has one target type, and two levels deep.
    let chained = fhir.get("/Observation?subject:Patient.name=chainy").await;
    assert_eq!(
        entries_by_mode(&chained.body, "match"),
        ["Observation/inc-o1", "Observation/inc-o2"],
        "{}",
        chained.body
    );
    assert_eq!(
        entries_by_mode(&chained.body, "match"),
        ["Observation/inc-o1", "Observation/inc-o2"]
    );
    let untyped = fhir.get("/Observation?patient.name=chainy").await;
    assert_eq!(
        entries_by_mode(&untyped.body, "match"),
        ["Observation/inc-o1", "Observation/inc-o2"]
    );
    let deep = fhir
        .get("/Observation?encounter:Encounter.subject:Patient.name=deep")
        .await;
    assert_eq!(entries_by_mode(&deep.body, "match"), ["Observation/inc-o2"]);
    assert!(ids_of(
        &fhir
            .get("/Observation?subject:Patient.name=nobody")
            .await
            .body
    )
    .is_empty());
    // subject can point at Group, Device, Patient or Location: the type must be named.
    let ambiguous = fhir
        .call(
            Method::GET,
            "/Observation?subject.name=chainy",
            None,
            &[("prefer", "handling=strict")],
        )
        .await;
    assert_eq!(ambiguous.status, 400);
    assert!(
        ambiguous.body.to_string().contains("subject:"),
        "{}",
        ambiguous.body
    );

    // _has: patients that observations with this code point at; nested _has too.
    let has = fhir
        .get("/Patient?_has:Observation:subject:code=urn:c|inc")
        .await;
    assert_eq!(entries_by_mode(&has.body, "match"), ["Patient/inc-p1"]);
    let none = fhir
        .get("/Patient?_has:Observation:subject:code=urn:c|other")
        .await;
    assert!(ids_of(&none.body).is_empty());
    let nested = fhir
        .get("/Patient?_has:Encounter:subject:_has:Observation:encounter:code=urn:c|inc")
        .await;
    assert_eq!(entries_by_mode(&nested.body, "match"), ["Patient/inc-p2"]);
    let bad_has = fhir
        .call(
            Method::GET,
            "/Patient?_has:Observation:status:code=x",
            None,
            &[("prefer", "handling=strict")],
        )
        .await;
    assert_eq!(bad_has.status, 400);

    // System search over the listed types, paged across them.
    let system = fhir
        .get("?_type=Patient,Observation&_id=inc-p1,inc-o1,inc-o2&_count=2")
        .await;
    assert_eq!(system.status, 200, "{}", system.body);
    // Types in name order; within a type, the search's own order (by key, with `_id`).
    let mut first = entries_by_mode(&system.body, "match");
    first.sort();
    assert_eq!(first, ["Observation/inc-o1", "Observation/inc-o2"]);
    let next = system.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .expect("a next page")["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let rest: Value = fhir
        .client
        .get(&next)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(entries_by_mode(&rest, "match"), ["Patient/inc-p1"]);
    assert_eq!(fhir.get("?_id=inc-p1").await.status, 400);
    assert_eq!(
        fhir.get("?_type=Patient,Observation&code=x").await.status,
        400
    );

    // Compartments: what points at the patient through the compartment's parameters.
    let compartment = fhir.get("/Patient/inc-p1/Observation").await;
    assert_eq!(compartment.status, 200, "{}", compartment.body);
    let mut matched = entries_by_mode(&compartment.body, "match");
    matched.sort();
    assert_eq!(matched, ["Observation/inc-o1", "Observation/inc-o2"]);
    assert!(ids_of(&fhir.get("/Patient/inc-p2/Observation").await.body).is_empty());
    assert_eq!(
        entries_by_mode(&fhir.get("/Patient/inc-p2/Encounter").await.body, "match"),
        ["Encounter/inc-e1"]
    );
    let paged = fhir
        .get("/Patient/inc-p1/Observation?code=urn:c|inc&_count=1")
        .await;
    let next = paged.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .expect("a next page")["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(next.contains("/Patient/inc-p1/Observation?"), "{next}");
    let second: Value = fhir
        .client
        .get(&next)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // One a page, in the search's own order: together the two, each once.
    let mut both = [ids_of(&paged.body), ids_of(&second)].concat();
    both.sort();
    assert_eq!(both, ["inc-o1", "inc-o2"]);
    assert_eq!(fhir.get("/Observation/inc-o1/Patient").await.status, 400);

    // Not a reference parameter: ignored with a warning, or 400 when strict.
    let bad = fhir
        .get("/Observation?code=urn:c|inc&_include=Observation:status")
        .await;
    assert_eq!(bad.status, 200);
    assert_eq!(entries_by_mode(&bad.body, "outcome").len(), 1);
    let strict = fhir
        .call(
            Method::GET,
            "/Observation?_include=Observation:status",
            None,
            &[("prefer", "handling=strict")],
        )
        .await;
    assert_eq!(strict.status, 400);
    env.stop().await;
}

/// Number, quantity and uri parameters: precision ranges, prefixes, units, :below/:above.
async fn search_numbers_quantities_and_uris(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    for (i, (value, unit)) in [(100.0, "mg"), (100.4, "mg"), (101.0, "mg"), (100.0, "g")]
        .iter()
        .enumerate()
    {
        let o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "q"},
            "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org", "code": unit}});
        assert_eq!(
            fhir.put(&format!("/Observation/q{i}"), {
                let mut o = o;
                o["id"] = json!(format!("q{i}"));
                o
            })
            .await
            .status,
            201
        );
    }
    for (i, p) in [0.2, 0.8].iter().enumerate() {
        let r = json!({"resourceType": "RiskAssessment", "id": format!("r{i}"), "status": "final",
            "subject": {"reference": "Patient/x"}, "prediction": [{"probabilityDecimal": p}]});
        assert_eq!(
            fhir.put(&format!("/RiskAssessment/r{i}"), r).await.status,
            201
        );
    }
    for (i, url) in [
        "http://acme.org/fhir/ValueSet/a",
        "http://acme.org/fhir/ValueSet/b",
        "http://other.org/vs",
    ]
    .iter()
    .enumerate()
    {
        let vs = json!({"resourceType": "ValueSet", "id": format!("v{i}"), "status": "active", "url": url});
        assert_eq!(fhir.put(&format!("/ValueSet/v{i}"), vs).await.status, 201);
    }
    let ids = |q: &'static str| {
        let fhir = &fhir;
        async move {
            let a = fhir.get(q).await;
            assert_eq!(a.status, 200, "{q}: {}", a.body);
            let mut ids = ids_of(&a.body);
            ids.sort();
            assert!(
                !a.body["entry"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["search"]["mode"] == "outcome"),
                "{q} was not understood: {}",
                a.body
            );
            ids
        }
    };
    // 100 stands for [99.5, 100.5): 100 and 100.4 in any unit; with a unit, that unit only.
    assert_eq!(
        ids("/Observation?value-quantity=100").await,
        ["q0", "q1", "q3"]
    );
    assert_eq!(
        ids("/Observation?value-quantity=100||mg").await,
        ["q0", "q1"]
    );
    assert_eq!(
        ids("/Observation?value-quantity=100.0|http://unitsofmeasure.org|mg").await,
        ["q0"]
    );
    assert_eq!(
        ids("/Observation?value-quantity=gt100|http://unitsofmeasure.org|mg").await,
        ["q1", "q2"]
    );
    assert_eq!(
        ids("/Observation?value-quantity=le100.4||mg").await,
        ["q0", "q1"]
    );
    assert_eq!(ids("/RiskAssessment?probability=0.8").await, ["r1"]);
    assert_eq!(ids("/RiskAssessment?probability=lt0.5").await, ["r0"]);
    assert_eq!(ids("/RiskAssessment?probability=ap0.21").await, ["r0"]);
    assert_eq!(
        ids("/ValueSet?url=http://acme.org/fhir/ValueSet/a").await,
        ["v0"]
    );
    assert_eq!(
        ids("/ValueSet?url:below=http://acme.org/fhir").await,
        ["v0", "v1"]
    );
    assert_eq!(
        ids("/ValueSet?url:above=http://other.org/vs/more").await,
        ["v2"]
    );
    // :of-type on identifiers, :identifier on references.
    let typed = json!({"resourceType": "Patient", "id": "typed", "identifier": [{
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
        "system": "urn:mrn", "value": "12345"}]});
    assert_eq!(fhir.put("/Patient/typed", typed).await.status, 201);
    let by_business_id = json!({"resourceType": "Observation", "id": "byid", "status": "final",
        "code": {"text": "x"}, "subject": {"identifier": {"system": "urn:mrn", "value": "12345"}}});
    assert_eq!(
        fhir.put("/Observation/byid", by_business_id).await.status,
        201
    );
    assert_eq!(
        ids("/Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345")
            .await,
        ["typed"]
    );
    assert!(ids(
        "/Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|999"
    )
    .await
    .is_empty());
    assert_eq!(
        ids("/Observation?subject:identifier=urn:mrn|12345").await,
        ["byid"]
    );
    // :text matches a CodeableConcept's text or a coding's display, by prefix, any case.
    let coded = json!({"resourceType": "Observation", "id": "coded", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}],
                 "text": "Pulse"}});
    assert_eq!(fhir.put("/Observation/coded", coded).await.status, 201);
    assert_eq!(ids("/Observation?code:text=heart").await, ["coded"]);
    assert_eq!(ids("/Observation?code:text=PULSE").await, ["coded"]);
    assert!(ids("/Observation?code:text=rate").await.is_empty());
    // Composite parameters keep each code with its own value.
    let bp = json!({"resourceType": "Observation", "id": "bp", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
             "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
             "valueQuantity": {"value": 80, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]});
    assert_eq!(fhir.put("/Observation/bp", bp).await.status, 201);
    assert_eq!(
        ids("/Observation?component-code-value-quantity=http://loinc.org|8480-6$gt100").await,
        ["bp"]
    );
    assert_eq!(
        ids("/Observation?component-code-value-quantity=http://loinc.org|8462-4$80|http://unitsofmeasure.org|mm[Hg]").await,
        ["bp"]
    );
    // 8462-4 is 80: a test for more than 100 must not borrow 8480-6's 120.
    assert!(
        ids("/Observation?component-code-value-quantity=http://loinc.org|8462-4$gt100")
            .await
            .is_empty()
    );
    assert_eq!(
        ids("/Observation?code-value-quantity=http://unitsofmeasure.org|mg$100")
            .await
            .len(),
        0
    );
    let weight = json!({"resourceType": "Observation", "id": "w", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "valueQuantity": {"value": 70.5, "system": "http://unitsofmeasure.org", "code": "kg"}});
    assert_eq!(fhir.put("/Observation/w", weight).await.status, 201);
    assert_eq!(
        ids("/Observation?code-value-quantity=http://loinc.org|29463-7$ge70").await,
        ["w"]
    );
    assert!(
        ids("/Observation?code-value-quantity=http://loinc.org|29463-7$lt70")
            .await
            .is_empty()
    );
    let wrong = fhir
        .call(
            Method::GET,
            "/Observation?code-value-quantity=29463-7",
            None,
            &[("prefer", "handling=strict")],
        )
        .await;
    assert_eq!(wrong.status, 400);
    let bad = fhir
        .call(
            Method::GET,
            "/RiskAssessment?probability=abc",
            None,
            &[("prefer", "handling=strict")],
        )
        .await;
    assert_eq!(bad.status, 400);
    env.stop().await;
}

/// FHIRPath Patch (R4 fhirpatch.html): a Parameters body on the instance, on a search
/// (conditional patch), and as a transaction entry.
async fn fhirpath_patch(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    fhir.put(
        "/Patient/fp",
        json!({"resourceType": "Patient", "id": "fp", "identifier": [{"system": "urn:s", "value": "fp-1"}],
               "name": [{"family": "Old", "given": ["Ann"]}],
               "telecom": [{"system": "phone", "value": "1", "use": "home"}, {"system": "phone", "value": "2", "use": "work"}]}),
    )
    .await;
    let op = |parts: Value| json!({"name": "operation", "part": parts});
    let params = |ops: Vec<Value>| json!({"resourceType": "Parameters", "parameter": ops});
    let ok = fhir
        .call(
            Method::PATCH,
            "/Patient/fp",
            Some(params(vec![
                op(json!([{"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient"},
                          {"name": "name", "valueString": "birthDate"}, {"name": "value", "valueDate": "1980-02-03"}])),
                op(json!([{"name": "type", "valueCode": "insert"}, {"name": "path", "valueString": "Patient.name[0].given"},
                          {"name": "index", "valueInteger": 0}, {"name": "value", "valueString": "Beth"}])),
                op(json!([{"name": "type", "valueCode": "delete"}, {"name": "path", "valueString": "Patient.telecom.where(use = 'work')"}])),
                op(json!([{"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.name[0].family"},
                          {"name": "value", "valueString": "New"}])),
            ])),
            &[],
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["birthDate"], "1980-02-03");
    assert_eq!(ok.body["name"][0]["given"], json!(["Beth", "Ann"]));
    assert_eq!(ok.body["name"][0]["family"], "New");
    assert_eq!(ok.body["telecom"].as_array().unwrap().len(), 1);
    assert_eq!(ok.body["meta"]["versionId"], "2");

    // A failing operation applies nothing: replace of an element that is not there.
    let failed = fhir
        .call(
            Method::PATCH,
            "/Patient/fp",
            Some(params(vec![
                op(json!([{"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.gender"},
                          {"name": "value", "valueCode": "female"}])),
            ])),
            &[],
        )
        .await;
    assert_eq!(failed.status, 400, "{}", failed.body);
    assert!(failed.is_outcome());
    assert!(
        failed.body.to_string().contains("matches no element"),
        "{}",
        failed.body
    );
    // Not Parameters, or Parameters without operations.
    for bad in [
        json!({"resourceType": "Patient"}),
        params(vec![json!({"name": "operation"})]),
    ] {
        let answer = fhir
            .call(Method::PATCH, "/Patient/fp", Some(bad), &[])
            .await;
        assert_eq!(answer.status, 400, "{}", answer.body);
    }
    assert_eq!(fhir.get("/Patient/fp").await.body["meta"]["versionId"], "2");

    // Conditional patch: the one resource the search matches.
    let gender = params(vec![op(
        json!([{"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient"},
               {"name": "name", "valueString": "gender"}, {"name": "value", "valueCode": "female"}]),
    )]);
    let cond = fhir
        .call(
            Method::PATCH,
            "/Patient?identifier=urn:s|fp-1",
            Some(gender.clone()),
            &[],
        )
        .await;
    assert_eq!(cond.status, 200, "{}", cond.body);
    assert_eq!(cond.body["id"], "fp");
    assert_eq!(cond.body["gender"], "female");
    let none = fhir
        .call(
            Method::PATCH,
            "/Patient?identifier=urn:s|nobody",
            Some(gender.clone()),
            &[],
        )
        .await;
    assert_eq!(none.status, 404, "{}", none.body);
    fhir.put(
        "/Patient/fp2",
        json!({"resourceType": "Patient", "id": "fp2", "identifier": [{"system": "urn:s", "value": "fp-1"}]}),
    )
    .await;
    let two = fhir
        .call(
            Method::PATCH,
            "/Patient?identifier=urn:s|fp-1",
            Some(gender),
            &[],
        )
        .await;
    assert_eq!(two.status, 412, "{}", two.body);

    // In a transaction.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "request": {"method": "PATCH", "url": "Patient/fp"},
        "resource": params(vec![op(json!([{"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.gender"}, {"name": "value", "valueCode": "other"}]))]),
    }]});
    let done = fhir.call(Method::POST, "", Some(bundle), &[]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["entry"][0]["response"]["status"], "200 OK");
    let now = fhir.get("/Patient/fp").await.body;
    assert_eq!(now["gender"], "other");
    assert_eq!(now["meta"]["versionId"], "4");
    env.stop().await;
}

/// A metric's value from `/metrics` (0 when absent).
async fn metric(env: &Env, name: &str) -> f64 {
    let text = reqwest::get(env.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.split(['{', ' ']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

/// On SQLite, writes that arrive while a commit is under way wait and then share one commit
/// (one fsync): the write lock is held from outside while 20 creates arrive; the first
/// group (those there when the committer woke) blocks on the lock, the rest queue, and they
/// all commit in one second, shared transaction: 20 writes, at most 2 commits.
#[tokio::test]
async fn embedded_group_commit_shares_one_commit_among_waiting_writes() {
    let env = Env::embedded().await;
    let fhir = std::sync::Arc::new(Fhir::on(&env, "ws1-fhir").await);
    let commits_before = metric(&env, "fhir_group_commits_total").await;
    let writes_before = metric(&env, "fhir_group_writes_total").await;

    let outside = hds_testkit::sqlite_database(env._dir.path(), "fhir").await;
    let lock = outside.begin().await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let fhir = fhir.clone();
            tokio::spawn(async move {
                fhir.call(
                    Method::POST,
                    "/Patient",
                    Some(json!({"resourceType": "Patient", "name": [{"family": format!("G{n}")}]})),
                    &[],
                )
                .await
                .status
            })
        })
        .collect();
    // Until all 20 are either in the blocked group or waiting (a condition, not a delay).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let queued = loop {
        let committing = metric(&env, "fhir_group_writes_committing").await;
        let waiting = metric(&env, "fhir_group_writes_waiting").await;
        if committing >= 1.0 && committing + waiting == 20.0 {
            break waiting;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "writes never queued: {}",
            reqwest::get(env.url("/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        );
        tokio::task::yield_now().await;
    };
    lock.rollback().await.unwrap();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    assert_eq!(
        metric(&env, "fhir_group_writes_total").await - writes_before,
        20.0
    );
    // The blocked group, then (if any queued behind it) one commit for all the others.
    let groups = if queued > 0.0 { 2.0 } else { 1.0 };
    assert_eq!(
        metric(&env, "fhir_group_commits_total").await - commits_before,
        groups
    );
    let history = fhir.get("/Patient/_history?_count=50").await;
    assert_eq!(history.body["entry"].as_array().unwrap().len(), 20);
    env.stop().await;
}

rest_suite!(embedded);
rest_suite!(kafka);

/// Resources stored before the index was keyed (migration 1004 drops the old index tables)
/// have no key and no index rows: the service rebuilds both when it starts.
async fn index_is_rebuilt_for_resources_without_keys(mut env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    let patient = fhir
        .post(
            "/Patient",
            json!({"resourceType": "Patient", "name": [{"family": "Backfill"}]}),
        )
        .await;
    assert_eq!(patient.status, 201);
    let pid = patient.body["id"].as_str().unwrap().to_owned();
    let obs = fhir
        .post(
            "/Observation",
            json!({"resourceType": "Observation", "status": "final",
                   "code": {"coding": [{"system": "urn:c", "code": "bf"}]},
                   "subject": {"reference": format!("Patient/{pid}")}}),
        )
        .await;
    assert_eq!(obs.status, 201);
    let gone = fhir
        .post("/Patient", json!({"resourceType": "Patient"}))
        .await;
    let gone_id = gone.body["id"].as_str().unwrap().to_owned();
    let deleted = fhir
        .call(Method::DELETE, &format!("/Patient/{gone_id}"), None, &[])
        .await;
    assert_eq!(deleted.status, 204);

    // As an older version left them: no keys, no index rows.
    let pool = env.deps.db.pool().clone();
    sqlx::query("UPDATE fhir_current SET rkey = NULL")
        .execute(&pool)
        .await
        .unwrap();
    wipe_index(&pool).await;
    let chained = "/Observation?subject:Patient.name=backfill&code=urn:c|bf";
    assert_eq!(ids_of(&fhir.get(chained).await.body), Vec::<String>::new());

    env.restart().await;
    let fhir = Fhir {
        client: Client::new(),
        base: env.url("/ws1-fhir"),
    };
    assert_eq!(
        ids_of(&fhir.get(chained).await.body),
        vec![obs.body["id"].as_str().unwrap().to_owned()]
    );
    assert_eq!(
        ids_of(&fhir.get("/Patient?name=backfill").await.body),
        vec![pid.clone()]
    );
    // Every pointer has its key again, the deleted resource's too.
    let pool = env.deps.db.pool().clone();
    let unkeyed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM fhir_current WHERE rkey IS NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(unkeyed, 0);
    assert_eq!(fhir.get(&format!("/Patient/{gone_id}")).await.status, 410);
}

/// Conditional creates with the same criteria, all at once: one creates, the others find it.
async fn concurrent_conditional_creates_make_one_resource(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    let body = json!({"resourceType": "Patient",
        "identifier": [{"system": "urn:cc", "value": "once"}]});
    let answers = futures::future::join_all((0..8).map(|_| {
        fhir.call(
            Method::POST,
            "/Patient",
            Some(body.clone()),
            &[("If-None-Exist", "identifier=urn:cc|once")],
        )
    }))
    .await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        7,
        "{statuses:?}"
    );
    let ids: BTreeSet<String> = answers
        .iter()
        .map(|a| a.body["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let found = fhir.get("/Patient?identifier=urn:cc|once").await;
    assert_eq!(ids_of(&found.body), ids.into_iter().collect::<Vec<_>>());
}

/// `$reindex` rebuilds every resource's index rows, reporting progress until Completed.
async fn reindex_rebuilds_the_index_and_reports_progress(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let created = fhir
            .post(
                "/Patient",
                json!({"resourceType": "Patient", "name": [{"family": "Reindexme", "given": [format!("n{i}")]}]}),
            )
            .await;
        assert_eq!(created.status, 201);
        ids.push(created.body["id"].as_str().unwrap().to_owned());
    }
    ids.sort();
    let gone = fhir
        .post("/Patient", json!({"resourceType": "Patient"}))
        .await;
    let gone = gone.body["id"].as_str().unwrap().to_owned();
    let deleted = fhir
        .call(Method::DELETE, &format!("/Patient/{gone}"), None, &[])
        .await;
    assert_eq!(deleted.status, 204);
    // An index missing its rows, as after a change of the definitions.
    wipe_index(env.deps.db.pool()).await;
    assert_eq!(
        ids_of(&fhir.get("/Patient?name=reindexme").await.body),
        Vec::<String>::new()
    );

    let started = fhir
        .call(
            Method::POST,
            "/$reindex",
            Some(json!({"resourceType": "Parameters"})),
            &[],
        )
        .await;
    assert_eq!(started.status, 201, "{}", started.body);
    assert_eq!(started.body["resourceType"], "Parameters");
    let location = started.headers["content-location"]
        .to_str()
        .unwrap()
        .to_owned();
    let job = location.rsplit('/').next().unwrap().to_owned();
    assert_eq!(started.body["id"], job.as_str());
    let done = reindex_completed(&fhir, &job).await;
    // The deleted one is not reindexed.
    assert_eq!(
        parameter(&done, "totalResourcesToReindex")["valueDecimal"],
        5
    );
    assert_eq!(
        parameter(&done, "resourcesSuccessfullyReindexed")["valueDecimal"],
        5
    );
    assert_eq!(parameter(&done, "progress")["valueDecimal"], 100.0);
    assert!(parameter(&done, "endTime")["valueDateTime"].is_string());
    assert_eq!(ids_of(&fhir.get("/Patient?name=reindexme").await.body), ids);

    assert_eq!(
        fhir.get("/_operations/reindex/no-such-job").await.status,
        404
    );
}

/// A job stopped after some batches (here: made to look so) resumes after the last key it
/// did when the service starts again, and does not redo what it did.
async fn reindex_resumes_after_its_last_batch(mut env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    for i in 0..5 {
        let created = fhir
            .post(
                "/Patient",
                json!({"resourceType": "Patient", "name": [{"family": "Resumeme", "given": [format!("n{i}")]}]}),
            )
            .await;
        assert_eq!(created.status, 201);
    }
    let pool = env.deps.db.pool().clone();
    wipe_index(&pool).await;
    let keyed: Vec<(i64, String)> = sqlx::query_as(
        "SELECT rkey, id FROM fhir_current WHERE instance = 'ws1-fhir' ORDER BY rkey",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(keyed.len(), 5);
    let now = chrono::Utc::now().timestamp_millis();
    sqlx::query(
        "INSERT INTO fhir_reindex_jobs (id, instance, status, queued_ms, started_ms, total, done, after_rkey) \
         VALUES ('resumed', 'ws1-fhir', 'Running', $1, $1, 5, 3, $2)",
    )
    .bind(now)
    .bind(keyed[2].0)
    .execute(&pool)
    .await
    .unwrap();

    env.restart().await;
    let fhir = Fhir {
        client: Client::new(),
        base: env.url("/ws1-fhir"),
    };
    let done = reindex_completed(&fhir, "resumed").await;
    assert_eq!(
        parameter(&done, "resourcesSuccessfullyReindexed")["valueDecimal"],
        5
    );
    // Only the two after the cursor were redone; the first three were "done" before.
    let mut expected: Vec<String> = keyed[3..].iter().map(|(_, id)| id.clone()).collect();
    expected.sort();
    assert_eq!(
        ids_of(&fhir.get("/Patient?name=resumeme").await.body),
        expected
    );
}

/// Malformed search input: strictly a 400 with an OperationOutcome, leniently a warning; never
/// a 5xx, never the database's words, and nothing it asks of the database runs.
async fn malformed_search_input_is_a_clear_error(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    let created = fhir
        .post(
            "/Patient",
            json!({"resourceType": "Patient", "name": [{"family": "Kept"}]}),
        )
        .await;
    assert_eq!(created.status, 201);
    let long = "x".repeat(10_000);
    let queries = [
        "/Patient?birthdate=notadate".to_owned(),
        "/Patient?birthdate=ge2020-13-45".to_owned(),
        "/Patient?_lastUpdated=gt2020-01-01T25:00:00Z".to_owned(),
        "/Patient?name:nonsense=x".to_owned(),
        "/Patient?general-practitioner.nonsense=x".to_owned(),
        "/Patient?general-practitioner:Nope.name=x".to_owned(),
        "/Patient?general-practitioner:Observation.code.x.y.z.w=1".to_owned(),
        "/Patient?name=%27%20OR%201%3D1%20--".to_owned(),
        "/Patient?name=x%27)%3B%20DROP%20TABLE%20fhir_current%3B%20--".to_owned(),
        "/Patient?_id=%27%3B%20DELETE%20FROM%20fhir_versions%3B%20--".to_owned(),
        "/Patient?_id=%00".to_owned(),
        "/Observation?value-quantity=abc%7Cdef".to_owned(),
        "/Observation?value-quantity=gt".to_owned(),
        "/Observation?code-value-quantity=a$b$c".to_owned(),
        "/Observation?date=ap".to_owned(),
        "/Patient?identifier=%7C%7C%7C".to_owned(),
        "/Patient?_count=-1".to_owned(),
        "/Patient?_count=abc".to_owned(),
        "/Patient?_sort=nonsense".to_owned(),
        "/Patient?_include=Nope:nope".to_owned(),
        "/Patient?_revinclude=Observation:nope".to_owned(),
        "/Patient?_has:Observation:nope:code=x".to_owned(),
        "/Patient?_has=bad".to_owned(),
        "/Patient?_summary=nonsense".to_owned(),
        "/Patient?_total=nonsense".to_owned(),
        "/Patient?name:contains=%25_%5C".to_owned(),
        "/Patient?name=%F0%9F%98%80".to_owned(),
        format!("/Patient?name={long}"),
        "/?_type=Nope".to_owned(),
        "/?_type=Patient&name:nonsense=x".to_owned(),
    ];
    for q in &queries {
        for strict in [false, true] {
            let headers: &[(&str, &str)] = if strict {
                &[("Prefer", "handling=strict")]
            } else {
                &[]
            };
            let answer = fhir.call(Method::GET, q, None, headers).await;
            let code = answer.status.as_u16();
            assert!(
                code == 200 || code == 400,
                "{q} (strict: {strict}): {code} {}",
                answer.body
            );
            let text = answer.body.to_string().to_lowercase();
            for leak in [
                "select ",
                "syntax error",
                "sqlx",
                "error returned from database",
                "sqlite",
            ] {
                assert!(
                    !text.contains(leak),
                    "{q}: the answer shows '{leak}': {text}"
                );
            }
            if code == 400 {
                assert_eq!(answer.body["resourceType"], "OperationOutcome", "{q}");
            }
        }
    }
    // Nothing ran that was asked in the values.
    let found = fhir.get("/Patient?name=kept").await;
    assert_eq!(found.status, 200);
    assert_eq!(
        ids_of(&found.body),
        vec![created.body["id"].as_str().unwrap().to_owned()]
    );
}

/// Deletes every index row, as an index missing rows (older definitions) would be.
async fn wipe_index(pool: &sqlx::AnyPool) {
    for table in [
        "tokens",
        "strings",
        "references",
        "dates",
        "numbers",
        "quantities",
        "uris",
        "composites",
    ] {
        sqlx::query(&format!("DELETE FROM fhir_index_{table}"))
            .execute(pool)
            .await
            .unwrap();
    }
}

/// A parameter of a Parameters resource, by name.
fn parameter(parameters: &Value, name: &str) -> Value {
    parameters["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The status `$status` reports for the custom parameter `code` (`None`: not listed).
async fn custom_status(fhir: &Fhir, code: &str) -> Option<String> {
    let answer = fhir.get("/SearchParameter/$status").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let part = |p: &Value, name: &str| -> Value {
        parameter(&json!({"parameter": p["part"]}), name)["valueString"].clone()
    };
    answer.body["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| part(p, "code") == code)
        .map(|p| part(p, "status").as_str().unwrap().to_owned())
}

/// A SearchParameter resource defines a parameter: indexed on write at once (searchable
/// with `x-ms-use-partial-indices`), searchable everywhere once `$reindex` has covered the
/// resources stored before it, gone when the SearchParameter is deleted.
async fn custom_search_parameter_is_searchable_after_reindex(env: Env) {
    let fhir = Fhir::on(&env, "ws1-fhir").await;
    let patient = |id: &str, colour: &str| {
        json!({"resourceType": "Patient", "id": id, "extension": [
            {"url": "http://example.org/eye-colour", "valueCode": colour}]})
    };
    for (id, colour) in [("p1-old-blue", "blue"), ("p2-old-brown", "brown")] {
        assert_eq!(
            fhir.put(&format!("/Patient/{id}"), patient(id, colour))
                .await
                .status,
            201
        );
    }
    let definition = json!({"resourceType": "SearchParameter", "id": "eye-colour",
        "url": "http://example.org/SearchParameter/eye-colour", "name": "EyeColour",
        "status": "active", "description": "A patient's eye colour", "code": "eye-colour",
        "base": ["Patient"], "type": "token",
        "expression": "Patient.extension('http://example.org/eye-colour').value"});
    let created = fhir
        .put("/SearchParameter/eye-colour", definition.clone())
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        fhir.put("/Patient/p3-new-blue", patient("p3-new-blue", "blue"))
            .await
            .status,
        201
    );
    assert_eq!(
        custom_status(&fhir, "eye-colour").await.as_deref(),
        Some("Supported")
    );

    // Before a reindex: ignored with a warning (all three match), refused when strict...
    let lenient = fhir.get("/Patient?eye-colour=blue").await;
    assert_eq!(ids_of(&lenient.body).len(), 3, "{}", lenient.body);
    assert!(lenient.body.to_string().contains("eye-colour"));
    let strict = fhir
        .call(
            Method::GET,
            "/Patient?eye-colour=blue",
            None,
            &[("prefer", "handling=strict")],
        )
        .await;
    assert_eq!(strict.status, 400);
    // ...and with partial indices, only what was written since matches.
    let partial = fhir
        .call(
            Method::GET,
            "/Patient?eye-colour=blue",
            None,
            &[("x-ms-use-partial-indices", "true")],
        )
        .await;
    assert_eq!(ids_of(&partial.body), ["p3-new-blue"]);

    let started = fhir
        .call(
            Method::POST,
            "/$reindex",
            Some(json!({"resourceType": "Parameters"})),
            &[],
        )
        .await;
    assert_eq!(started.status, 201, "{}", started.body);
    reindex_completed(&fhir, started.body["id"].as_str().unwrap()).await;
    assert_eq!(
        custom_status(&fhir, "eye-colour").await.as_deref(),
        Some("Enabled")
    );

    // Searchable as any parameter: values, :not, chains, conditional create, sort.
    let mut blue = ids_of(&fhir.get("/Patient?eye-colour=blue").await.body);
    blue.sort();
    assert_eq!(blue, ["p1-old-blue", "p3-new-blue"]);
    assert_eq!(
        ids_of(&fhir.get("/Patient?eye-colour:not=blue").await.body),
        ["p2-old-brown"]
    );
    let obs = fhir
        .post(
            "/Observation",
            json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "eyes"}, "subject": {"reference": "Patient/p2-old-brown"}}),
        )
        .await;
    assert_eq!(obs.status, 201);
    assert_eq!(
        ids_of(
            &fhir
                .get("/Observation?subject:Patient.eye-colour=brown")
                .await
                .body
        ),
        [obs.body["id"].as_str().unwrap()]
    );
    let exists = fhir
        .call(
            Method::POST,
            "/Patient",
            Some(patient("ignored", "brown")),
            &[("if-none-exist", "eye-colour=brown")],
        )
        .await;
    assert_eq!(exists.status, 200, "{}", exists.body);
    assert_eq!(exists.body["id"], "p2-old-brown");
    assert_eq!(
        ids_of(&fhir.get("/Patient?_sort=eye-colour").await.body),
        ["p1-old-blue", "p3-new-blue", "p2-old-brown"]
    );

    // Definitions that cannot work are refused and leave nothing behind.
    for bad in [
        json!({"resourceType": "SearchParameter", "url": "http://example.org/sp/x", "name": "X",
            "status": "active", "description": "x", "code": "broken", "base": ["Patient"],
            "type": "token", "expression": "Patient.("}),
        json!({"resourceType": "SearchParameter", "url": "http://example.org/sp/y", "name": "Y",
            "status": "active", "description": "y", "code": "eye-colour", "base": ["Patient"],
            "type": "string", "expression": "Patient.gender"}),
    ] {
        let refused = fhir.post("/SearchParameter", bad).await;
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert!(refused.is_outcome());
    }
    assert_eq!(custom_status(&fhir, "broken").await, None);
    let listed = fhir.get("/SearchParameter?_summary=count").await;
    assert_eq!(listed.body["total"], 1, "{}", listed.body);

    // Deleted, it defines nothing: ignored again.
    let deleted = fhir
        .call(Method::DELETE, "/SearchParameter/eye-colour", None, &[])
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(custom_status(&fhir, "eye-colour").await, None);
    let strict = fhir
        .call(
            Method::GET,
            "/Patient?eye-colour=blue",
            None,
            &[("prefer", "handling=strict")],
        )
        .await;
    assert_eq!(strict.status, 400);
}

/// Polls reindex job `job` until it is Completed (within a minute); its last report.
async fn reindex_completed(fhir: &Fhir, job: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answer = fhir.get(&format!("/_operations/reindex/{job}")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        match parameter(&answer.body, "status")["valueString"].as_str() {
            Some("Completed") => return answer.body,
            Some("Queued" | "Running") => {}
            other => panic!("status {other:?}: {}", answer.body),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
