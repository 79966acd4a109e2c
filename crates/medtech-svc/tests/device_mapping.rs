//! Device mappings of every template kind against Azure's documented samples (fixtures from
//! microsoft/iomt-fhir, see fixtures/README.md), fan-out, calculated functions, required
//! values, and load-time validation with paths and lines.

use medtech_svc::envelope::DeviceEvent;
use medtech_svc::measurement::Measurement;
use medtech_svc::template::{DeviceMapping, Normalization};
use serde_json::{json, Map, Value};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/iomt-fhir/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn object(v: &Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// An event given as Azure's envelope (`Body`, `Properties`, `SystemProperties`).
fn envelope(v: &Value) -> DeviceEvent {
    DeviceEvent::from_body(
        v["Body"].clone(),
        object(&v["Properties"]),
        object(&v["SystemProperties"]),
    )
}

fn body(v: Value) -> DeviceEvent {
    DeviceEvent::from_body(v, Map::new(), Map::new())
}

fn normalize(mapping: &str, event: &DeviceEvent) -> Normalization {
    DeviceMapping::parse(mapping).unwrap().normalize(event)
}

fn ok(mapping: &str, event: &DeviceEvent) -> Vec<Measurement> {
    let n = normalize(mapping, event);
    assert!(n.errors.is_empty(), "{:?}", n.errors);
    n.measurements
}

fn props(m: &Measurement) -> Vec<(&str, &str)> {
    m.properties
        .iter()
        .map(|p| (p.name.as_str(), p.value.as_str()))
        .collect()
}

fn time(m: &Measurement) -> String {
    medtech_svc::time::format_round_trip(m.occurrence_time_utc)
}

fn single(mapping_json: Value) -> String {
    json!({"templateType": "CollectionContent", "template": [mapping_json]}).to_string()
}

#[test]
fn calculated_content_blood_pressure_sample() {
    let payload: Value = serde_json::from_str(&fixture(
        "Documentation_CalculatedFunction_BloodPressure_Payload",
    ))
    .unwrap();
    let ms = ok(
        &fixture("Documentation_CalculatedFunction_BloodPressure_Template"),
        &envelope(&payload),
    );
    assert_eq!(ms.len(), 1);
    assert_eq!(ms[0].type_name.as_str(), "bloodpressure");
    assert_eq!(ms[0].device_id, "device123");
    assert_eq!(time(&ms[0]), "2019-02-01T22:46:01.8750000Z");
    assert_eq!(props(&ms[0]), [("systolic", "123"), ("diastolic", "87")]);
    assert_eq!(ms[0].patient_id, None);
}

#[test]
fn type_match_fans_out_one_measurement_per_match() {
    let payload: Value = serde_json::from_str(&fixture(
        "Documentation_CalculatedFunction_MultipleMatches_Payload",
    ))
    .unwrap();
    let ms = ok(
        &fixture("Documentation_CalculatedFunction_MultipleMatches_Template"),
        &envelope(&payload),
    );
    assert_eq!(ms.len(), 2);
    assert!(ms.iter().all(|m| m.device_id == "device123"));
    assert_eq!(props(&ms[0]), [("systolic", "120"), ("diastolic", "80")]);
    assert_eq!(time(&ms[0]), "2021-07-13T17:29:01.0611440Z");
    assert_eq!(props(&ms[1]), [("systolic", "122"), ("diastolic", "82")]);
    assert_eq!(time(&ms[1]), "2021-07-13T17:28:01.0611220Z");
}

#[test]
fn calculated_content_mixes_jmespath_functions_and_jsonpath() {
    let payload: Value = serde_json::from_str(&fixture(
        "Documentation_CalculatedFunction_TransformData_Payload",
    ))
    .unwrap();
    let ms = ok(
        &fixture("Documentation_CalculatedFunction_TransformData_Template"),
        &envelope(&payload),
    );
    assert_eq!(ms.len(), 2);
    let inches = (78.0_f64 * 0.0254).to_string();
    assert_eq!(props(&ms[0]), [("height", inches.as_str())]);
    assert_eq!(time(&ms[0]), "2019-02-01T22:46:01.8750000Z");
    assert_eq!(props(&ms[1]), [("height", "1.9304")]);
}

#[test]
fn jmespath_default_language_projection_and_custom_functions() {
    let mapping = single(json!({
        "templateType": "CalculatedContent",
        "template": {
            "typeName": "heartrate",
            "defaultExpressionLanguage": "JmesPath",
            "typeMatchExpression": "Body[?heartrate]",
            "deviceIdExpression": "insertString(matchedToken.device, 'dev-', `0`)",
            "patientIdExpression": "Properties.patient",
            "timestampExpression": "fromUnixTimestampMs(matchedToken.at)",
            "values": [
                {"valueName": "hr", "valueExpression": "matchedToken.heartrate", "required": true},
                {"valueName": "hrTimesTwo", "valueExpression": "multiply(matchedToken.heartrate, `2`)"},
                {"valueName": "fromJsonPath", "valueExpression": {"value": "$.matchedToken.heartrate", "language": "JsonPath"}}
            ]
        }
    }));
    let event = DeviceEvent::from_body(
        json!([{"heartrate": 61, "device": "a", "at": 1626799080000_i64}, {"steps": 10}, {"heartrate": 62.5, "device": "b", "at": 0}]),
        object(&json!({"patient": "p1"})),
        Map::new(),
    );
    let ms = ok(&mapping, &event);
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[0].device_id, "dev-a");
    assert_eq!(ms[0].patient_id.as_deref(), Some("p1"));
    assert_eq!(time(&ms[0]), "2021-07-20T16:38:00.0000000Z");
    assert_eq!(
        props(&ms[0]),
        [("hr", "61"), ("hrTimesTwo", "122"), ("fromJsonPath", "61")]
    );
    assert_eq!(
        props(&ms[1]),
        [
            ("hr", "62.5"),
            ("hrTimesTwo", "125"),
            ("fromJsonPath", "62.5")
        ]
    );
    assert_eq!(time(&ms[1]), "1970-01-01T00:00:00.0000000Z");
}

#[test]
fn iot_hub_template_reads_system_properties_and_falls_back_to_enqueued_time() {
    let mapping =
        single(serde_json::from_str(&fixture("IotJsonPathContentTemplateValid")).unwrap());
    let payload: Value = serde_json::from_str(&fixture("IotHubPayloadExample")).unwrap();
    let ms = ok(&mapping, &envelope(&payload));
    assert_eq!(ms.len(), 1);
    assert_eq!(ms[0].device_id, "ev-d795-1d04-55ae");
    assert_eq!(time(&ms[0]), "2019-01-30T22:45:02.6073744Z");
    assert_eq!(props(&ms[0]), [("hr", "203")]);

    let payload: Value =
        serde_json::from_str(&fixture("IotHubPayloadExampleMissingCreateTime")).unwrap();
    let ms = ok(&mapping, &envelope(&payload));
    assert_eq!(time(&ms[0]), "2019-02-01T22:46:01.8750000Z");
}

#[test]
fn iot_central_template_reads_device_id_and_enqueued_time() {
    let mapping = single(json!({
        "templateType": "IotCentralJsonPathContent",
        "template": {
            "typeName": "telemetry",
            "typeMatchExpression": "$..[?(@telemetry)]",
            "values": [
                {"required": "true", "valueExpression": "$.telemetry.Activity", "valueName": "activity"},
                {"required": "true", "valueExpression": "$.telemetry.BloodPressure.Diastolic", "valueName": "bp_diastolic"}
            ]
        }
    }));
    let payload: Value = serde_json::from_str(&fixture("IotCentralPayloadExample")).unwrap();
    let ms = ok(&mapping, &body(payload));
    assert_eq!(ms.len(), 1);
    assert_eq!(ms[0].device_id, "1vzb5ghlsg1");
    assert_eq!(time(&ms[0]), "2020-08-05T22:26:55.4550000Z");
    assert_eq!(
        props(&ms[0]),
        [("activity", "running"), ("bp_diastolic", "7")]
    );
}

#[test]
fn json_path_content_values_are_read_as_json_net_reads_them() {
    let mapping = single(json!({
        "templateType": "JsonPathContentTemplate",
        "template": {
            "typeName": "vitals",
            "typeMatchExpression": "$..[?(@hr)]",
            "deviceIdExpression": "$.device",
            "timestampExpression": "$.date",
            "correlationIdExpression": "$.session",
            "encounterIdExpression": "$.encounter",
            "values": [
                {"valueName": "hr", "valueExpression": "$.hr", "required": true},
                {"valueName": "temp", "valueExpression": "$.temp"},
                {"valueName": "worn", "valueExpression": "$.worn"},
                {"valueName": "absent", "valueExpression": "$.nothing"},
                {"valueName": "object", "valueExpression": "$.nested"}
            ]
        }
    }));
    let event = body(
        json!({"hr": 72, "temp": 36.60, "worn": true, "device": 7, "date": "2024-01-01T00:00:00Z",
                            "session": "s-1", "nested": {"a": 1}}),
    );
    let ms = ok(&mapping, &event);
    assert_eq!(ms[0].device_id, "7");
    assert_eq!(ms[0].correlation_id.as_deref(), Some("s-1"));
    assert_eq!(ms[0].encounter_id, None);
    // Optional values that are absent or not scalar are left out.
    assert_eq!(
        props(&ms[0]),
        [("hr", "72"), ("temp", "36.6"), ("worn", "True")]
    );
}

#[test]
fn required_values_fail_the_message() {
    let mapping = fixture("Documentation_CalculatedFunction_BloodPressure_Template");
    // `@diastolic` exists (it is null), so the type matches; the required value then fails.
    let n = normalize(
        &mapping,
        &body(
            json!({"systolic": "120", "diastolic": null, "endDate": "2019-02-01T22:46:01Z", "deviceId": "d"}),
        ),
    );
    assert!(n.measurements.is_empty());
    assert_eq!(n.errors.len(), 1);
    assert!(
        n.errors[0]
            .message
            .contains("null or empty value was supplied for the required field [diastolic]"),
        "{}",
        n.errors[0]
    );
    assert_eq!(
        n.errors[0].expression_path.as_deref(),
        Some("$.template[0].template.values[1].valueExpression")
    );

    let n = normalize(
        &mapping,
        &body(json!({"systolic": "120", "diastolic": "80", "deviceId": "d"})),
    );
    assert!(
        n.errors[0].message.contains("[TimestampExpression]"),
        "{}",
        n.errors[0]
    );

    let n = normalize(
        &mapping,
        &body(
            json!({"systolic": "120", "diastolic": "80", "endDate": "not a time", "deviceId": "d"}),
        ),
    );
    assert!(
        n.errors[0]
            .message
            .contains("'not a time' is not a valid time"),
        "{}",
        n.errors[0]
    );

    let n = normalize(
        &mapping,
        &body(
            json!({"systolic": "120", "diastolic": "80", "endDate": "2019-02-01T22:46:01Z", "deviceId": "  "}),
        ),
    );
    assert!(
        n.errors[0].message.contains("[DeviceIdExpression]"),
        "{}",
        n.errors[0]
    );
}

#[test]
fn an_expression_selecting_several_tokens_fails() {
    let mapping = single(json!({
        "templateType": "JsonPathContent",
        "template": {"typeName": "t", "typeMatchExpression": "$.Body", "deviceIdExpression": "$..id",
                     "timestampExpression": "$.date"}
    }));
    let n = normalize(
        &mapping,
        &body(json!({"id": "a", "inner": {"id": "b"}, "date": "2024-01-01"})),
    );
    assert!(n.measurements.is_empty());
    assert!(
        n.errors[0].message.contains("multiple tokens"),
        "{}",
        n.errors[0]
    );
}

#[test]
fn no_match_is_no_measurement_and_no_error() {
    let mapping = fixture("Documentation_CalculatedFunction_BloodPressure_Template");
    let n = normalize(&mapping, &body(json!({"heartrate": 60})));
    assert_eq!(n, Normalization::default());
}

#[test]
fn invalid_mappings_name_every_problem_with_path_and_line() {
    let mapping = r#"{
  "templateType": "CollectionContent",
  "template": [
    {
      "templateType": "JsonPathContent",
      "template": {
        "typeMatchExpression": "$..[?(@heartrate",
        "deviceIdExpression": "$.device",
        "timestampExpression": "$.date",
        "colour": "blue"
      }
    },
    {
      "templateType": "CalculatedContent",
      "template": {
        "typeName": "hr",
        "typeMatchExpression": {"value": "nosuch(@)", "language": "JmesPath"},
        "deviceIdExpression": {"value": "$.d", "language": "Klingon"},
        "timestampExpression": "$.t",
        "values": [{"valueName": "x"}]
      }
    },
    {"templateType": "NoSuchContent", "template": {}}
  ]
}"#;
    let errors = DeviceMapping::parse(mapping).unwrap_err().errors;
    let found: Vec<(&str, Option<usize>)> =
        errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        found,
        [
            ("$.template[0].template", Some(6)),
            ("$.template[0].template.typeMatchExpression", Some(7)),
            ("$.template[0].template.colour", Some(10)),
            ("$.template[1].template.typeMatchExpression.value", Some(17)),
            (
                "$.template[1].template.deviceIdExpression.language",
                Some(18)
            ),
            ("$.template[1].template.values[0]", Some(20)),
            ("$.template[2].templateType", Some(23)),
        ],
        "{errors:#?}"
    );
    assert!(errors[0].message.contains("typeName"));
    assert!(errors[1].message.contains("JSONPath"));
    assert!(errors[2].message.contains("colour"));
    assert!(errors[3].message.contains("nosuch"));
    assert!(errors[4].message.contains("Klingon"));
    assert!(errors[5].message.contains("valueExpression"));
    assert!(errors[6].message.contains("NoSuchContent"));
    assert_eq!(errors[1].column, Some(32));
}

#[test]
fn azure_mixed_validity_fixture_reports_the_iot_template_without_type_match() {
    let errors = DeviceMapping::parse(&fixture("CollectionContentTemplateMixedValidity"))
        .unwrap_err()
        .errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "$.template[2].template");
    assert!(errors[0].message.contains("typeMatchExpression"));
}

#[test]
fn root_must_be_a_collection_and_json() {
    let errors = DeviceMapping::parse(&fixture("JsonPathContentTemplateValid"))
        .unwrap_err()
        .errors;
    assert_eq!(errors[0].path, "$.templateType");
    assert_eq!(errors[0].line, Some(2));
    let errors = DeviceMapping::parse("{\n \"templateType\": ")
        .unwrap_err()
        .errors;
    assert_eq!(errors[0].line, Some(2));
    assert!(errors[0].message.contains("not valid JSON"));
    assert!(
        DeviceMapping::parse(r#"{"templateType": "CollectionContent", "template": {}}"#).is_err()
    );
    let empty =
        DeviceMapping::parse(r#"{"templateType": "CollectionContentTemplate", "template": []}"#)
            .unwrap();
    assert!(empty.templates().is_empty());
}
