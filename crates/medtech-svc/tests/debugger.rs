//! The mapping debugger: measurements, Observations and every error, without side effects.

use chrono::{TimeZone, Utc};
use medtech_svc::debug::{debug, Stage};
use medtech_svc::envelope::DeviceEvent;
use serde_json::{json, Map};

const DEVICE: &str = r#"{"templateType": "CollectionContent", "template": [{
  "templateType": "JsonPathContent", "template": {
    "typeName": "heartrate", "typeMatchExpression": "$..[?(@hr)]",
    "deviceIdExpression": "$.device", "patientIdExpression": "$.patient",
    "timestampExpression": "$.at",
    "values": [{"valueName": "hr", "valueExpression": "$.hr", "required": true}]}}]}"#;

const FHIR: &str = r#"{"templateType": "CollectionFhir", "template": [{
  "templateType": "CodeValueFhir", "template": {"typeName": "heartrate", "codes": [{"system": "http://loinc.org", "code": "8867-4"}],
    "value": {"valueName": "hr", "valueType": "Quantity", "unit": "/min"}}}]}"#;

fn event(body: serde_json::Value) -> DeviceEvent {
    DeviceEvent::from_body(body, Map::new(), Map::new())
}

#[test]
fn shows_measurements_observations_and_errors() {
    let issued = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let body = json!({"readings": [
        {"hr": 60, "device": "d1", "patient": "p1", "at": "2024-01-01T10:00:00Z"},
        {"hr": 61, "device": "d2", "at": "2024-01-01T10:00:00Z"},
        {"hr": null, "device": "d3", "patient": "p1", "at": "2024-01-01T10:00:00Z"}
    ]});
    let report = debug(DEVICE, FHIR, &event(body), issued);
    assert_eq!(report.measurements.len(), 2);
    assert_eq!(report.observations.len(), 1);
    assert_eq!(report.observations[0]["valueQuantity"]["value"], json!(60));
    let stages: Vec<Stage> = report.errors.iter().map(|e| e.stage).collect();
    assert_eq!(
        stages,
        [Stage::Normalization, Stage::FhirConversion],
        "{:?}",
        report.errors
    );
    assert!(report.errors[0].message.contains("[hr]"));
    assert!(report.errors[1].message.contains("patient id"));
    let serialized = serde_json::to_value(&report).unwrap();
    assert_eq!(serialized["measurements"][0]["type"], "heartrate");
    assert_eq!(
        serialized["measurements"][0]["occurrenceTimeUtc"],
        "2024-01-01T10:00:00.0000000Z"
    );
}

#[test]
fn mapping_errors_come_back_with_their_stage_and_the_rest_still_runs() {
    let issued = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let body = json!({"hr": 60, "device": "d1", "patient": "p1", "at": "2024-01-01T10:00:00Z"});
    let report = debug(
        DEVICE,
        r#"{"templateType": "CollectionFhir", "template": [{"templateType": "CodeValueFhir"}]}"#,
        &event(body.clone()),
        issued,
    );
    assert_eq!(report.measurements.len(), 1);
    assert!(report.observations.is_empty());
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].stage, Stage::FhirMapping);
    assert_eq!(report.errors[0].path.as_deref(), Some("$.template[0]"));

    let report = debug("not json", "", &event(body.clone()), issued);
    let stages: Vec<Stage> = report.errors.iter().map(|e| e.stage).collect();
    assert_eq!(stages, [Stage::DeviceMapping, Stage::FhirMapping]);

    let other_type = FHIR.replace("\"heartrate\"", "\"pulse\"");
    let report = debug(DEVICE, &other_type, &event(body), issued);
    assert!(report.errors[0]
        .message
        .contains("no FHIR template for the type 'heartrate'"));
}

#[test]
fn a_body_that_is_not_json_is_refused() {
    assert!(DeviceEvent::new(b"{not json", Map::new(), Map::new()).is_err());
    let empty = DeviceEvent::new(b"", Map::new(), Map::new()).unwrap();
    assert_eq!(empty.as_json()["Body"], serde_json::Value::Null);
}
