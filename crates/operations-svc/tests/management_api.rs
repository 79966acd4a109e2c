//! The Microsoft.HealthcareApis management API: resources, ARM's asynchronous protocol and
//! its errors, on SQLite + the embedded bus and on PostgreSQL + Kafka (tansu). Where
//! operations must finish, the real fhir-svc, dicom-svc and medtech-svc carry them out.

mod common;

use common::{header, Backend, Stack, GROUP, SUB};
use reqwest::Method;
use serde_json::{json, Value};

fn fhir_destination_body(fhir_id: &str) -> Value {
    // Numbers with trailing zeros and member order show whether the mapping is verbatim.
    serde_json::from_str(&format!(
        r#"{{"location":"westus","properties":{{"resourceIdentityResolutionType":"Create","fhirServiceResourceId":"{fhir_id}",
        "fhirMapping":{{"content":{{"templateType":"CollectionFhirTemplate","template":[{{"templateType":"CodeValueFhir",
        "template":{{"typeName":"heartrate","value":{{"valueType":"Quantity","valueName":"hr","unit":"count/min","defaultPeriod":5000.0}},
        "codes":[{{"system":"http://loinc.org","code":"8867-4"}}]}}}}]}}}}}}}}"#
    ))
    .unwrap()
}

fn device_mapping() -> Value {
    serde_json::from_str(
        r#"{"templateType":"CollectionContent","template":[{"templateType":"JsonPathContent",
        "template":{"typeName":"heartrate","typeMatchExpression":"$..[?(@heartRate)]",
        "deviceIdExpression":"$.deviceId","timestampExpression":"$.endDate",
        "values":[{"required":"true","valueExpression":"$.heartRate","valueName":"hr"}]}}]}"#,
    )
    .unwrap()
}

/// PUT, then follow the operation to its end; returns the final resource.
async fn create(stack: &Stack, url: &str, body: &Value) -> Value {
    let res = stack.send(Method::PUT, url, Some(body)).await;
    assert_eq!(res.status(), 201, "{url}");
    let operation = header(&res, "azure-asyncoperation");
    assert!(operation.starts_with("http://127.0.0.1:"), "{operation}");
    assert_eq!(header(&res, "location"), operation);
    assert_eq!(header(&res, "retry-after"), "1");
    let created: Value = res.json().await.unwrap();
    let done = stack.wait(&operation).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    assert!(done["endTime"].is_string());
    let (status, got) = stack.json(Method::GET, url, None).await;
    assert_eq!(status, 200);
    assert_eq!(got["properties"]["provisioningState"], "Succeeded");
    assert_eq!(got["id"], created["id"]);
    got
}

async fn delete(stack: &Stack, url: &str) {
    let res = stack.send(Method::DELETE, url, None).await;
    assert_eq!(res.status(), 202, "{url}");
    let done = stack.wait(&header(&res, "azure-asyncoperation")).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    let (status, body) = stack.json(Method::GET, url, None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "ResourceNotFound");
    let again = stack.send(Method::DELETE, url, None).await;
    assert_eq!(again.status(), 204);
}

async fn instances(base: &str) -> Vec<String> {
    let v: Value = reqwest::get(format!("{base}/instances"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = v["value"].as_array().unwrap();
    list.iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A MedTech instance's configuration as medtech-svc holds it (`destination`,
/// `mappings/device`, `mappings/fhir`).
async fn medtech_config(base: &str, instance: &str, part: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{base}/{instance}/{part}"))
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn every_resource_kind_is_created_listed_changed_and_deleted(backend: Backend) {
    let stack = Stack::with_data_plane(backend).await;
    let ws = stack.workspace_url("ws1");
    // A workspace has no data-plane side: its operation has ended already.
    let res = stack
        .send(
            Method::PUT,
            &ws,
            Some(&json!({"location": "West US 2", "tags": {"env": "test"}})),
        )
        .await;
    assert_eq!(res.status(), 201);
    let op = stack.wait(&header(&res, "azure-asyncoperation")).await;
    assert_eq!(op["status"], "Succeeded");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["name"], "ws1");
    assert_eq!(body["type"], "Microsoft.HealthcareApis/workspaces");
    assert_eq!(body["tags"]["env"], "test");
    assert!(body["etag"].is_string());
    assert!(body["systemData"]["createdAt"].is_string());

    let fhir_url = format!("{ws}/fhirservices/fhir1");
    let fhir = create(
        &stack,
        &fhir_url,
        &json!({"location": "West US 2", "properties": {"authenticationConfiguration": {"authority": "https://login.example.org/t", "audience": "https://ws1-fhir1.example.org"}}}),
    )
    .await;
    assert_eq!(fhir["kind"], "fhir-R4");
    assert_eq!(
        fhir["type"],
        "Microsoft.HealthcareApis/workspaces/fhirservices"
    );
    assert_eq!(
        fhir["properties"]["authenticationConfiguration"]["audience"],
        "https://ws1-fhir1.example.org"
    );
    // Only once the operation ended does the data plane serve the instance.
    let fhir_base = stack.fhir.clone().unwrap();
    assert!(instances(&fhir_base)
        .await
        .contains(&"ws1-fhir1".to_owned()));
    let metadata = reqwest::get(format!("{fhir_base}/ws1-fhir1/metadata"))
        .await
        .unwrap();
    assert_eq!(metadata.status(), 200);

    // PUT on an existing resource: 200, Updating, then Succeeded again.
    let res = stack
        .send(
            Method::PUT,
            &fhir_url,
            Some(&json!({"location": "westus2", "kind": "fhir-R4"})),
        )
        .await;
    assert_eq!(res.status(), 200);
    let op_url = header(&res, "azure-asyncoperation");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["properties"]["provisioningState"], "Updating");
    assert_eq!(stack.wait(&op_url).await["status"], "Succeeded");

    let dicom_url = format!("{ws}/dicomservices/dicom1");
    create(&stack, &dicom_url, &json!({"location": "westus2"})).await;
    assert!(instances(stack.dicom.as_ref().unwrap())
        .await
        .contains(&"ws1-dicom1".to_owned()));

    let iot_url = format!("{ws}/iotconnectors/iot1");
    let iot = create(
        &stack,
        &iot_url,
        &json!({"location": "westus2", "properties": {
            "ingestionEndpointConfiguration": {"eventHubName": "devices", "consumerGroup": "cg"},
            "deviceMapping": {"content": device_mapping()}}}),
    )
    .await;
    assert_eq!(
        iot["properties"]["deviceMapping"]["content"],
        device_mapping()
    );
    let medtech_base = stack.medtech.clone().unwrap();
    assert!(instances(&medtech_base)
        .await
        .contains(&"ws1-iot1".to_owned()));

    let dest_url = format!("{iot_url}/fhirdestinations/dest1");
    let fhir_id = fhir["id"]
        .as_str()
        .unwrap()
        .trim_start_matches('/')
        .to_owned();
    create(&stack, &dest_url, &fhir_destination_body(&fhir_id)).await;
    let raw = stack
        .send(Method::GET, &dest_url, None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        raw.contains(r#""value":{"valueType":"Quantity","valueName":"hr","unit":"count/min","defaultPeriod":5000.0}"#),
        "mapping returned verbatim: {raw}"
    );
    // The destination reached the MedTech instance as its connector's configuration.
    let listed: Value = reqwest::get(format!("{medtech_base}/instances"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = listed.to_string();
    assert!(
        text.contains("fhirDestinations") && text.contains("dest1"),
        "{text}"
    );
    // ... and medtech-svc applies it: the instance's destination and FHIR mapping are set,
    // without which its pipeline never starts.
    let (status, applied) = medtech_config(&medtech_base, "ws1-iot1", "destination").await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["fhirService"], "ws1-fhir1", "{applied}");
    assert_eq!(applied["resolutionType"], "Create", "{applied}");
    let (status, applied) = medtech_config(&medtech_base, "ws1-iot1", "mappings/fhir").await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["template"][0]["template"]["typeName"], "heartrate");

    // Lists.
    for (url, names) in [
        (format!("{}/subscriptions/{SUB}/providers/Microsoft.HealthcareApis/workspaces", stack.base), vec!["ws1"]),
        (format!("{}/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.HealthcareApis/workspaces", stack.base), vec!["ws1"]),
        (format!("{}/subscriptions/other/providers/Microsoft.HealthcareApis/workspaces", stack.base), vec![]),
        (format!("{ws}/fhirservices"), vec!["fhir1"]),
        (format!("{ws}/dicomservices"), vec!["dicom1"]),
        (format!("{ws}/iotconnectors"), vec!["iot1"]),
        (format!("{iot_url}/fhirdestinations"), vec!["dest1"]),
    ] {
        let (status, body) = stack.json(Method::GET, &url, None).await;
        assert_eq!(status, 200, "{url}");
        let got: Vec<&str> = body["value"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(got, names, "{url}");
    }

    // PATCH: tags, done at once, never 201.
    let (status, patched) = stack
        .json(
            Method::PATCH,
            &fhir_url,
            Some(&json!({"tags": {"owner": "me"}})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(patched["tags"], json!({"owner": "me"}));
    assert_ne!(patched["etag"], fhir["etag"]);
    let (status, _) = stack
        .json(Method::PATCH, &dest_url, Some(&json!({"tags": {}})))
        .await;
    assert_eq!(status, 405, "destinations have no PATCH");

    // A workspace with services is not deleted (no cascade).
    let (status, body) = stack.json(Method::DELETE, &ws, None).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "NestedResourcesExist");
    let (status, _) = stack.json(Method::DELETE, &iot_url, None).await;
    assert_eq!(status, 409, "a connector with destinations");

    delete(&stack, &dest_url).await;
    delete(&stack, &iot_url).await;
    assert!(!instances(&medtech_base)
        .await
        .contains(&"ws1-iot1".to_owned()));
    delete(&stack, &dicom_url).await;
    delete(&stack, &fhir_url).await;
    assert!(!instances(&fhir_base)
        .await
        .contains(&"ws1-fhir1".to_owned()));
    let gone = reqwest::get(format!("{fhir_base}/ws1-fhir1/metadata"))
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    delete(&stack, &ws).await;
}

async fn changes_wait_for_the_running_operation_and_honour_etags(backend: Backend) {
    // No data plane: the FHIR service's operation stays open, deterministically.
    let stack = Stack::control_plane(backend).await;
    let ws = stack.workspace_url("ws2");
    let (status, workspace) = stack
        .json(Method::PUT, &ws, Some(&json!({"location": "westus"})))
        .await;
    assert_eq!(status, 201);
    let fhir_url = format!("{ws}/fhirservices/fhir2");
    let res = stack
        .send(Method::PUT, &fhir_url, Some(&json!({"location": "westus"})))
        .await;
    assert_eq!(res.status(), 201);
    let op_url = header(&res, "azure-asyncoperation");
    let op = stack.http.get(&op_url).send().await.unwrap();
    assert_eq!(
        header(&op, "retry-after"),
        "1",
        "an open operation says when to poll"
    );
    let op: Value = op.json().await.unwrap();
    assert_eq!(op["status"], "Requested");
    assert!(op["startTime"].is_string() && op.get("endTime").is_none());

    for (method, body) in [
        (Method::PUT, Some(json!({"location": "westus"}))),
        (Method::PATCH, Some(json!({"tags": {"a": "b"}}))),
        (Method::DELETE, None),
    ] {
        let (status, err) = stack.json(method.clone(), &fhir_url, body.as_ref()).await;
        assert_eq!(status, 409, "{method}");
        assert_eq!(err["error"]["code"], "AnotherOperationInProgress");
    }

    // If-Match / If-None-Match on the workspace.
    let etag = workspace["etag"].as_str().unwrap();
    let stale = stack
        .http
        .patch(stack.url(&ws))
        .header("If-Match", "\"not-the-etag\"")
        .json(&json!({"tags": {"a": "b"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    let err: Value = stale.json().await.unwrap();
    assert_eq!(err["error"]["code"], "PreconditionFailed");
    let fresh = stack
        .http
        .patch(stack.url(&ws))
        .header("If-Match", format!("\"{etag}\""))
        .json(&json!({"tags": {"a": "b"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
    let exists = stack
        .http
        .put(stack.url(&ws))
        .header("If-None-Match", "*")
        .json(&json!({"location": "westus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(exists.status(), 412);
    let moved = stack
        .json(Method::PUT, &ws, Some(&json!({"location": "eastus"})))
        .await;
    assert_eq!(moved.0, 409);
    assert_eq!(moved.1["error"]["code"], "InvalidResourceLocation");
}

async fn bad_requests_get_arm_errors(backend: Backend) {
    let stack = Stack::control_plane(backend).await;
    let ws = stack.workspace_url("ws3");
    let expect = |(status, body): (u16, Value), want: u16, code: &str| {
        assert_eq!(status, want, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].is_string());
        assert!(body["error"]["details"].is_array());
        body
    };

    // api-version: missing or unknown lists the supported one.
    let res = stack.http.get(&ws).send().await.unwrap();
    assert!(res.headers().contains_key("x-ms-request-id"));
    let body = expect(
        (res.status().as_u16(), res.json().await.unwrap()),
        400,
        "MissingApiVersionParameter",
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("2024-03-31"));
    let res = stack
        .http
        .get(format!("{ws}?api-version=2021-11-01"))
        .send()
        .await
        .unwrap();
    let body = expect(
        (res.status().as_u16(), res.json().await.unwrap()),
        400,
        "InvalidApiVersionParameter",
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("2024-03-31"));

    expect(
        stack
            .json(
                Method::PUT,
                &stack.workspace_url("Bad-Name"),
                Some(&json!({"location": "x"})),
            )
            .await,
        400,
        "InvalidResourceName",
    );
    expect(
        stack
            .json(
                Method::PUT,
                &stack.workspace_url("ab"),
                Some(&json!({"location": "x"})),
            )
            .await,
        400,
        "InvalidResourceName",
    );
    expect(
        stack.json(Method::PUT, &ws, Some(&json!({}))).await,
        400,
        "LocationRequired",
    );
    expect(
        stack.json(Method::GET, &ws, None).await,
        404,
        "ResourceNotFound",
    );
    expect(
        stack
            .json(
                Method::PUT,
                &format!("{ws}/fhirservices/fhir3"),
                Some(&json!({"location": "x"})),
            )
            .await,
        404,
        "ParentResourceNotFound",
    );
    expect(
        stack
            .json(Method::GET, &format!("{ws}/dicomservices"), None)
            .await,
        404,
        "ParentResourceNotFound",
    );

    let res = stack
        .http
        .put(stack.url(&ws))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("x-ms-request-id"));
    expect(
        (res.status().as_u16(), res.json().await.unwrap()),
        400,
        "InvalidRequestContent",
    );

    assert_eq!(
        stack
            .json(Method::PUT, &ws, Some(&json!({"location": "westus"})))
            .await
            .0,
        201
    );
    expect(
        stack
            .json(
                Method::PUT,
                &format!("{ws}/fhirservices/fhir3"),
                Some(&json!({"location": "westus", "kind": "fhir-Stu3"})),
            )
            .await,
        400,
        "InvalidRequestContent",
    );
    // Bodies of the wrong shape anywhere are the client's mistake, never a 500.
    for bad in [
        json!([]),
        json!({"location": 5}),
        json!({"location": "westus", "tags": ["a"]}),
        json!({"location": "westus", "properties": []}),
        json!({"location": "westus", "identity": "SystemAssigned"}),
        json!({"location": "westus", "identity": {"type": 3}}),
        json!({"location": "westus", "properties": {"authenticationConfiguration": "x"}}),
        json!({"location": "westus", "properties": {"corsConfiguration": {"origins": "*"}}}),
        json!({"location": "westus", "properties": {"exportConfiguration": []}}),
    ] {
        let (status, body) = stack
            .json(Method::PUT, &format!("{ws}/fhirservices/fhir3"), Some(&bad))
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"]["code"].is_string(), "{bad}: {body}");
    }
    let res = stack
        .http
        .put(stack.url(&format!("{ws}/fhirservices/fhir3")))
        .header("content-type", "text/plain")
        .body(json!({"location": "westus"}).to_string())
        .send()
        .await
        .unwrap();
    expect(
        (res.status().as_u16(), res.json().await.unwrap()),
        415,
        "UnsupportedMediaType",
    );
    expect(
        stack
            .json(
                Method::PUT,
                &format!("{ws}/fhirservices/x_y"),
                Some(&json!({"location": "westus"})),
            )
            .await,
        400,
        "InvalidResourceName",
    );
    let body = expect(
        stack.json(Method::PUT, &format!("{ws}/fhirservices/fhir3"), Some(&json!({"location": "westus", "properties": {"corsConfiguration": {"maxAge": -1}}}))).await,
        400,
        "InvalidRequestContent",
    );
    assert_eq!(
        body["error"]["target"],
        "properties.corsConfiguration.maxAge"
    );
    expect(
        stack
            .json(
                Method::PUT,
                &format!("{ws}/iotconnectors/iot3"),
                Some(&json!({"location": "westus", "tags": {"a": 1}})),
            )
            .await,
        400,
        "InvalidRequestContent",
    );

    // A destination needs its mapping and a FHIR service that exists.
    let iot = format!("{ws}/iotconnectors/iot3");
    assert_eq!(
        stack
            .json(Method::PUT, &iot, Some(&json!({"location": "westus"})))
            .await
            .0,
        201
    );
    let body = expect(
        stack.json(Method::PUT, &format!("{iot}/fhirdestinations/dest3"), Some(&json!({"properties": {"resourceIdentityResolutionType": "Create", "fhirServiceResourceId": "x"}}))).await,
        400,
        "InvalidRequestContent",
    );
    assert_eq!(body["error"]["target"], "properties.fhirMapping");
    let missing_fhir = format!("/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.HealthcareApis/workspaces/ws3/fhirservices/nothere");
    let body = expect(
        stack
            .json(
                Method::PUT,
                &format!("{iot}/fhirdestinations/dest3"),
                Some(&fhir_destination_body(&missing_fhir)),
            )
            .await,
        400,
        "InvalidRequestContent",
    );
    assert_eq!(body["error"]["target"], "properties.fhirServiceResourceId");

    let (status, ops) = stack
        .json(
            Method::GET,
            &format!(
                "{}/providers/Microsoft.HealthcareApis/operations",
                stack.base
            ),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = ops["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"Microsoft.HealthcareApis/workspaces/fhirservices/write"),
        "{names:?}"
    );
    assert!(names.contains(&"Microsoft.HealthcareApis/locations/operationresults/read"));
    expect(
        stack.json(Method::POST, &ws, None).await,
        405,
        "MethodNotAllowed",
    );
}

/// The data plane refuses a change (medtech-svc finds the device mapping invalid): the
/// operation ends `Failed` with medtech-svc's reason, the resource shows
/// `provisioningState: Failed`, nothing serves; a corrected PUT succeeds, and a failed
/// resource can be deleted.
async fn a_data_plane_failure_fails_the_operation_and_the_resource(backend: Backend) {
    let stack = Stack::with_data_plane(backend).await;
    let ws = stack.workspace_url("ws4");
    create(&stack, &ws, &json!({"location": "westus"})).await;
    let iot = format!("{ws}/iotconnectors/iot4");
    let bad = json!({"location": "westus", "properties": {"deviceMapping": {"content": {
        "templateType": "CollectionContent",
        "template": [{"templateType": "NoSuchTemplate", "template": {}}]
    }}}});
    let res = stack.send(Method::PUT, &iot, Some(&bad)).await;
    assert_eq!(res.status(), 201);
    let operation = header(&res, "azure-asyncoperation");
    let done = stack.wait(&operation).await;
    assert_eq!(done["status"], "Failed", "{done}");
    assert_eq!(done["error"]["code"], "InvalidMapping", "{done}");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("$.deviceMapping.content.template[0]"),
        "the reason names the problem: {message}"
    );
    assert!(done["endTime"].is_string());
    let (status, got) = stack.json(Method::GET, &iot, None).await;
    assert_eq!(status, 200);
    assert_eq!(got["properties"]["provisioningState"], "Failed", "{got}");
    let medtech = stack.medtech.clone().unwrap();
    assert!(
        !instances(&medtech).await.contains(&"ws4-iot4".to_owned()),
        "a failed provisioning leaves no instance"
    );
    let r = reqwest::get(format!("{medtech}/ws4-iot4/mappings/device"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // The failure ended the operation: the resource takes a corrected PUT (200: it exists).
    let good = json!({"location": "westus", "properties": {"deviceMapping": {"content": device_mapping()}}});
    let res = stack.send(Method::PUT, &iot, Some(&good)).await;
    assert_eq!(res.status(), 200);
    let done = stack.wait(&header(&res, "azure-asyncoperation")).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    let (_, got) = stack.json(Method::GET, &iot, None).await;
    assert_eq!(got["properties"]["provisioningState"], "Succeeded", "{got}");
    assert!(instances(&medtech).await.contains(&"ws4-iot4".to_owned()));

    // A resource that failed and was never fixed can still be deleted.
    let other = format!("{ws}/iotconnectors/iot5");
    let res = stack.send(Method::PUT, &other, Some(&bad)).await;
    let done = stack.wait(&header(&res, "azure-asyncoperation")).await;
    assert_eq!(done["status"], "Failed", "{done}");
    delete(&stack, &other).await;
    delete(&stack, &iot).await;
    delete(&stack, &ws).await;
}

macro_rules! suite {
    ($backend:ident, $variant:expr) => {
        mod $backend {
            #[tokio::test]
            async fn every_resource_kind_is_created_listed_changed_and_deleted() {
                super::every_resource_kind_is_created_listed_changed_and_deleted($variant).await
            }
            #[tokio::test]
            async fn changes_wait_for_the_running_operation_and_honour_etags() {
                super::changes_wait_for_the_running_operation_and_honour_etags($variant).await
            }
            #[tokio::test]
            async fn a_data_plane_failure_fails_the_operation_and_the_resource() {
                super::a_data_plane_failure_fails_the_operation_and_the_resource($variant).await
            }
            #[tokio::test]
            async fn bad_requests_get_arm_errors() {
                super::bad_requests_get_arm_errors($variant).await
            }
        }
    };
}

suite!(embedded, super::Backend::Embedded);
suite!(kafka, super::Backend::Kafka);
