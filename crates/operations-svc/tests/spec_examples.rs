//! Resources answer with the JSON of the spec (`Microsoft.HealthcareApis` 2024-03-31,
//! azure-rest-api-specs `specification/healthcareapis/resource-manager/Microsoft.HealthcareApis/stable/2024-03-31/`):
//! a resource created with a minimal body shows every member the spec's example responses
//! show, with the JSON type of the spec's schema, filled with the values hds behaves by;
//! what the client set is kept; and a client that PUTs back what it read changes nothing.
//! On SQLite + the embedded bus and on PostgreSQL + Kafka (tansu), with the real data plane.
//!
//! The member lists below are read off the example responses (and, where an example shows
//! less than the schema, the schema's definition), minus what hds cannot know (see
//! `operations_svc::resources`' `defaults`).

mod common;

use common::{header, Backend, Stack};
use reqwest::Method;
use serde_json::{json, Map, Value};

#[derive(Clone, Copy, Debug)]
enum Type {
    Str,
    Bool,
    Arr,
    Obj,
}

use Type::*;

impl Type {
    fn check(self, v: &Value) -> bool {
        match self {
            Str => v.is_string(),
            Bool => v.is_boolean(),
            Arr => v.is_array(),
            Obj => v.is_object(),
        }
    }
}

/// `examples/workspaces/Workspaces_Get.json` shows `provisioningState` only; the other
/// members are those of `definitions/Workspace.properties` in `healthcare-apis.json`.
const WORKSPACE_PROPERTIES: &[(&str, Type)] = &[
    ("provisioningState", Str),
    ("privateEndpointConnections", Arr),
    ("publicNetworkAccess", Str),
];

/// The 200 response of `examples/fhirservices/FhirServices_Create.json` (a superset of
/// `FhirServices_Get.json`'s), then the members of `definitions/FhirServiceProperties` the
/// example leaves out.
const FHIR_PROPERTIES: &[(&str, Type)] = &[
    ("authenticationConfiguration", Obj),
    ("corsConfiguration", Obj),
    ("exportConfiguration", Obj),
    ("importConfiguration", Obj),
    ("implementationGuidesConfiguration", Obj),
    ("eventState", Str),
    ("provisioningState", Str),
    ("encryption", Obj),
    // definitions/FhirServiceProperties
    ("acrConfiguration", Obj),
    ("privateEndpointConnections", Arr),
    ("publicNetworkAccess", Str),
    ("resourceVersionPolicyConfiguration", Obj),
];

/// Nested members of the same example response (`authority` only when the tenant is known,
/// see `fhir_authentication_defaults_are_azures`; `maxAge`, `storageAccountName` and
/// `integrationDataStore` have no value hds could show).
const FHIR_NESTED: &[(&str, &str, Type)] = &[
    ("authenticationConfiguration", "audience", Str),
    ("authenticationConfiguration", "smartProxyEnabled", Bool),
    ("authenticationConfiguration", "smartIdentityProviders", Arr),
    ("corsConfiguration", "origins", Arr),
    ("corsConfiguration", "headers", Arr),
    ("corsConfiguration", "methods", Arr),
    ("corsConfiguration", "allowCredentials", Bool),
    ("importConfiguration", "enabled", Bool),
    ("importConfiguration", "initialImportMode", Bool),
    (
        "implementationGuidesConfiguration",
        "usCoreMissingData",
        Bool,
    ),
];

/// The top level of `FhirServices_Create.json`'s 200 response.
const FHIR_TOP: &[(&str, Type)] = &[
    ("name", Str),
    ("id", Str),
    ("location", Str),
    ("type", Str),
    ("tags", Obj),
    ("kind", Str),
    ("etag", Str),
    ("properties", Obj),
    ("identity", Obj),
];

/// The 200 response of `examples/dicomservices/DicomServices_Patch.json` (that of
/// `DicomServices_Get.json` plus `enableDataPartitions`), then the members of
/// `definitions/DicomServiceProperties` the example leaves out.
const DICOM_PROPERTIES: &[(&str, Type)] = &[
    ("authenticationConfiguration", Obj),
    ("corsConfiguration", Obj),
    ("provisioningState", Str),
    ("serviceUrl", Str),
    ("eventState", Str),
    ("encryption", Obj),
    ("storageConfiguration", Obj),
    ("enableDataPartitions", Bool),
    // definitions/DicomServiceProperties
    ("privateEndpointConnections", Arr),
    ("publicNetworkAccess", Str),
];

/// The top level of `DicomServices_Create.json`'s 200 response.
const DICOM_TOP: &[(&str, Type)] = &[
    ("name", Str),
    ("id", Str),
    ("location", Str),
    ("type", Str),
    ("properties", Obj),
    ("identity", Obj),
];

/// The 200 response of `examples/iotconnectors/iotconnector_Patch.json` (the index holds
/// no 2024-03-31 `iotconnector_Get.json`; 2023-11-01's shows the same members).
/// `fullyQualifiedEventHubNamespace` has no hds counterpart.
const IOT_PROPERTIES: &[(&str, Type)] = &[
    ("provisioningState", Str),
    ("ingestionEndpointConfiguration", Obj),
    ("deviceMapping", Obj),
];

const IOT_NESTED: &[(&str, &str, Type)] = &[
    ("ingestionEndpointConfiguration", "eventHubName", Str),
    ("ingestionEndpointConfiguration", "consumerGroup", Str),
];

/// The top level of `iotconnector_Patch.json`'s 200 response.
const IOT_TOP: &[(&str, Type)] = &[
    ("name", Str),
    ("id", Str),
    ("type", Str),
    ("location", Str),
    ("etag", Str),
    ("tags", Obj),
    ("identity", Obj),
    ("properties", Obj),
    ("systemData", Obj),
];

/// The members of `v` that are missing or of another type than `expected`.
fn wrong_members(v: &Value, expected: &[(&str, Type)]) -> Vec<String> {
    expected
        .iter()
        .filter(|(name, t)| !v.get(name).is_some_and(|m| t.check(m)))
        .map(|(name, t)| format!("{name} ({t:?})"))
        .collect()
}

fn wrong_nested(v: &Value, expected: &[(&str, &str, Type)]) -> Vec<String> {
    expected
        .iter()
        .filter(|(parent, name, t)| !v[parent].get(name).is_some_and(|m| t.check(m)))
        .map(|(parent, name, t)| format!("{parent}.{name} ({t:?})"))
        .collect()
}

fn assert_members(resource: &Value, top: &[(&str, Type)], properties: &[(&str, Type)]) {
    let missing = [
        wrong_members(resource, top),
        wrong_members(&resource["properties"], properties),
    ]
    .concat();
    assert!(
        missing.is_empty(),
        "missing or mistyped: {missing:?} in {resource}"
    );
}

/// `properties` without the members that vary from one answer to the next.
fn settled(resource: &Value) -> Value {
    let mut p: Map<String, Value> = resource["properties"].as_object().unwrap().clone();
    p.remove("provisioningState");
    p.remove("serviceUrl");
    Value::Object(p)
}

/// PUT, then follow the operation to its end; returns the resource as GET shows it.
async fn put(stack: &Stack, url: &str, body: &Value, expected: u16) -> Value {
    let res = stack.send(Method::PUT, url, Some(body)).await;
    assert_eq!(res.status(), expected, "{url}");
    let op = header(&res, "azure-asyncoperation");
    assert_eq!(stack.wait(&op).await["status"], "Succeeded", "{url}");
    let (status, got) = stack.json(Method::GET, url, None).await;
    assert_eq!(status, 200);
    assert_eq!(got["properties"]["provisioningState"], "Succeeded", "{got}");
    got
}

/// A client that PUTs back what it read (as the SDKs' read-modify-write does) is accepted
/// and keeps the resource as it was (`expected`): the filled-in members are what hds
/// behaves by anyway.
async fn round_trip(stack: &Stack, url: &str, read: &Value, expected: &Value) {
    let again = put(stack, url, read, 200).await;
    assert_eq!(&settled(&again), expected, "{url}: {again}");
}

fn device_mapping() -> Value {
    json!({"templateType": "CollectionContent", "template": [{"templateType": "JsonPathContent",
        "template": {"typeName": "heartrate", "typeMatchExpression": "$..[?(@heartRate)]",
        "deviceIdExpression": "$.deviceId", "timestampExpression": "$.endDate",
        "values": [{"required": "true", "valueExpression": "$.heartRate", "valueName": "hr"}]}}]})
}

async fn resources_show_the_members_of_the_spec(backend: Backend) {
    let stack = Stack::with_data_plane(backend).await;
    let minimal = json!({"location": "westus2"});
    let no_cors = json!({"origins": [], "headers": [], "methods": [], "allowCredentials": false});

    // Workspace.
    let ws = stack.workspace_url("specws");
    let got = put(&stack, &ws, &minimal, 201).await;
    assert!(
        wrong_members(&got["properties"], WORKSPACE_PROPERTIES).is_empty(),
        "{got}"
    );
    assert_eq!(
        settled(&got),
        json!({"privateEndpointConnections": [], "publicNetworkAccess": "Enabled"})
    );
    let ws2 = stack.workspace_url("specws2");
    let got = put(
        &stack,
        &ws2,
        &json!({"location": "westus2", "properties": {"publicNetworkAccess": "Disabled"}}),
        201,
    )
    .await;
    assert_eq!(
        settled(&got),
        json!({"privateEndpointConnections": [], "publicNetworkAccess": "Disabled"}),
        "the client's value is kept"
    );

    // FHIR service.
    let fhir = format!("{ws}/fhirservices/fhir1");
    let res = stack.send(Method::PUT, &fhir, Some(&minimal)).await;
    assert_eq!(res.status(), 201);
    let op = header(&res, "azure-asyncoperation");
    let created: Value = res.json().await.unwrap();
    assert_members(&created, FHIR_TOP, FHIR_PROPERTIES);
    stack.wait(&op).await;
    let (_, got) = stack.json(Method::GET, &fhir, None).await;
    assert_members(&got, FHIR_TOP, FHIR_PROPERTIES);
    let nested = wrong_nested(&got["properties"], FHIR_NESTED);
    assert!(nested.is_empty(), "{nested:?} in {got}");
    let fhir_defaults = json!({
        "acrConfiguration": {"loginServers": [], "ociArtifacts": []},
        // Azure's default audience: the service's URL there.
        "authenticationConfiguration": {"smartProxyEnabled": false, "smartIdentityProviders": [],
            "audience": "https://specws-fhir1.fhir.azurehealthcareapis.com"},
        "corsConfiguration": no_cors,
        "exportConfiguration": {},
        "importConfiguration": {"enabled": false, "initialImportMode": false},
        "implementationGuidesConfiguration": {"usCoreMissingData": false},
        "resourceVersionPolicyConfiguration": {"default": "versioned", "resourceTypeOverrides": {}},
        "privateEndpointConnections": [],
        "publicNetworkAccess": "Enabled",
        "eventState": "Disabled",
        "encryption": {},
    });
    assert_eq!(settled(&got), fhir_defaults, "{got}");
    assert_eq!(got["identity"], json!({"type": "None"}));
    round_trip(&stack, &fhir, &got, &fhir_defaults).await;

    let fhir2 = format!("{ws}/fhirservices/fhir2");
    let got = put(
        &stack,
        &fhir2,
        &json!({"location": "westus2", "identity": {"type": "SystemAssigned"}, "properties": {
            "authenticationConfiguration": {"authority": "https://login.example.org/t", "audience": "https://specws-fhir2.example.org", "smartProxyEnabled": true},
            "corsConfiguration": {"origins": ["https://app.example.org"], "maxAge": 300},
            "resourceVersionPolicyConfiguration": {"default": "no-version"},
            "publicNetworkAccess": "Disabled",
            // Read-only: ignored, as ARM does.
            "eventState": "Enabled"}}),
        201,
    )
    .await;
    let mut expected = fhir_defaults.clone();
    expected["authenticationConfiguration"] = json!({"authority": "https://login.example.org/t",
        "audience": "https://specws-fhir2.example.org", "smartProxyEnabled": true, "smartIdentityProviders": []});
    expected["corsConfiguration"] = json!({"origins": ["https://app.example.org"], "maxAge": 300,
        "headers": [], "methods": [], "allowCredentials": false});
    expected["resourceVersionPolicyConfiguration"] =
        json!({"default": "no-version", "resourceTypeOverrides": {}});
    expected["publicNetworkAccess"] = "Disabled".into();
    assert_eq!(
        settled(&got),
        expected,
        "the client's values are kept: {got}"
    );
    assert_eq!(
        json!([got["identity"], got["properties"]["eventState"]]),
        json!([{"type": "SystemAssigned"}, "Disabled"]),
        "the client's identity is kept, its read-only eventState is not"
    );

    // Lists show the same (and PATCH answers, below).
    let (_, list) = stack
        .json(Method::GET, &format!("{ws}/fhirservices"), None)
        .await;
    for item in list["value"].as_array().unwrap() {
        assert_members(item, FHIR_TOP, FHIR_PROPERTIES);
    }

    // DICOM service.
    let dicom = format!("{ws}/dicomservices/dicom1");
    let got = put(&stack, &dicom, &minimal, 201).await;
    assert_members(&got, DICOM_TOP, DICOM_PROPERTIES);
    let dicom_defaults = json!({
        "authenticationConfiguration": {},
        "corsConfiguration": no_cors,
        "privateEndpointConnections": [],
        "publicNetworkAccess": "Enabled",
        "eventState": "Disabled",
        "encryption": {},
        "storageConfiguration": {},
        "enableDataPartitions": false,
    });
    assert_eq!(settled(&got), dicom_defaults, "{got}");
    let (status, patched) = stack
        .json(Method::PATCH, &dicom, Some(&json!({"tags": {"a": "b"}})))
        .await;
    assert_eq!(status, 200);
    assert_members(&patched, DICOM_TOP, DICOM_PROPERTIES);
    round_trip(&stack, &dicom, &patched, &dicom_defaults).await;

    let dicom2 = format!("{ws}/dicomservices/dicom2");
    let got = put(
        &stack,
        &dicom2,
        &json!({"location": "westus2", "properties": {"enableDataPartitions": true,
            "corsConfiguration": {"origins": ["*"], "allowCredentials": false}}}),
        201,
    )
    .await;
    let mut expected = dicom_defaults.clone();
    expected["enableDataPartitions"] = true.into();
    expected["corsConfiguration"] =
        json!({"origins": ["*"], "headers": [], "methods": [], "allowCredentials": false});
    assert_eq!(
        settled(&got),
        expected,
        "the client's values are kept: {got}"
    );

    // IoT connector.
    let iot = format!("{ws}/iotconnectors/iot1");
    let got = put(&stack, &iot, &minimal, 201).await;
    assert_members(&got, IOT_TOP, IOT_PROPERTIES);
    let nested = wrong_nested(&got["properties"], IOT_NESTED);
    assert!(nested.is_empty(), "{nested:?} in {got}");
    let iot_defaults = json!({
        // What medtech-svc reads when none is named: the instance's topic, and Event Hubs'
        // default group, which it reads as the instance's own.
        "ingestionEndpointConfiguration": {"eventHubName": "hds.devices.specws-iot1", "consumerGroup": "$Default"},
        "deviceMapping": {},
    });
    assert_eq!(settled(&got), iot_defaults, "{got}");
    round_trip(&stack, &iot, &got, &iot_defaults).await;

    let iot2 = format!("{ws}/iotconnectors/iot2");
    let got = put(
        &stack,
        &iot2,
        &json!({"location": "westus2", "properties": {
            "ingestionEndpointConfiguration": {"eventHubName": "specdevices"},
            "deviceMapping": {"content": device_mapping()}}}),
        201,
    )
    .await;
    assert_eq!(
        settled(&got),
        json!({
            "ingestionEndpointConfiguration": {"eventHubName": "specdevices", "consumerGroup": "$Default"},
            "deviceMapping": {"content": device_mapping()},
        }),
        "the client's values are kept: {got}"
    );
}

/// A FHIR service created without `authenticationConfiguration` shows Azure's defaults
/// (`FhirServices_Create.json`: `https://login.microsoftonline.com/{tenant}` and
/// `https://{ws}-{name}.fhir.azurehealthcareapis.com`); they are shown, not stored, so the
/// instance keeps checking tokens against fhir-svc's `[auth]`, also after a client PUT back
/// what it read; what a client sets is kept.
async fn fhir_authentication_defaults_are_azures(backend: Backend) {
    const TENANT: &str = "abfde7b2-df0f-47e6-aabf-2462b07508dc";
    let stack = Stack::with_data_plane_and(backend, |s| {
        s.management.tenant_id = Some(TENANT.into());
    })
    .await;
    let ws = stack.workspace_url("authws");
    put(&stack, &ws, &json!({"location": "westus2"}), 201).await;
    let fhir = format!("{ws}/fhirservices/fhir1");
    let got = put(&stack, &fhir, &json!({"location": "westus2"}), 201).await;
    let expected = json!({
        "authority": format!("https://login.microsoftonline.com/{TENANT}"),
        "audience": "https://authws-fhir1.fhir.azurehealthcareapis.com",
        "smartProxyEnabled": false,
        "smartIdentityProviders": [],
    });
    assert_eq!(
        got["properties"]["authenticationConfiguration"], expected,
        "{got}"
    );

    let again = put(&stack, &fhir, &got, 200).await;
    assert_eq!(again["properties"]["authenticationConfiguration"], expected);
    // What fhir-svc was told: no authority or audience of its own.
    let instances: Value = reqwest::get(format!("{}/instances", stack.fhir.clone().unwrap()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let instance = instances["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "authws-fhir1")
        .unwrap_or_else(|| panic!("no instance in {instances}"));
    let told = &instance["properties"]["authenticationConfiguration"];
    assert!(
        told.get("authority").is_none() && told.get("audience").is_none(),
        "the shown defaults became settings: {instance}"
    );

    // The client's own values are kept (and stored: fhir-svc enforces them).
    let own =
        json!({"authority": "https://login.example.org/t", "audience": "https://fhir.example.org"});
    let fhir2 = format!("{ws}/fhirservices/fhir2");
    let got = put(
        &stack,
        &fhir2,
        &json!({"location": "westus2", "properties": {"authenticationConfiguration": own}}),
        201,
    )
    .await;
    let auth = &got["properties"]["authenticationConfiguration"];
    assert_eq!(
        json!({"authority": auth["authority"], "audience": auth["audience"]}),
        own
    );
}

#[tokio::test]
async fn embedded_fhir_authentication_defaults_are_azures() {
    fhir_authentication_defaults_are_azures(Backend::Embedded).await;
}

#[tokio::test]
async fn kafka_fhir_authentication_defaults_are_azures() {
    fhir_authentication_defaults_are_azures(Backend::Kafka).await;
}

#[tokio::test]
async fn embedded_resources_show_the_members_of_the_spec() {
    resources_show_the_members_of_the_spec(Backend::Embedded).await;
}

#[tokio::test]
async fn kafka_resources_show_the_members_of_the_spec() {
    resources_show_the_members_of_the_spec(Backend::Kafka).await;
}
