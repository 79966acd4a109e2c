//! FHIR destination mappings: value types, period intervals, correlation ids, merging into
//! existing Observations, and load-time validation.

use chrono::{DateTime, Utc};
use medtech_svc::fhir_mapping::FhirMapping;
use medtech_svc::grouping::{group_measurements, observation_groups, ObservationGroup};
use medtech_svc::identity::{create_mode_ids, ResolvedIds, TypeName};
use medtech_svc::measurement::{Measurement, MeasurementProperty};
use medtech_svc::observation::{self, MergeOutcome, ObservationError};
use medtech_svc::time::parse_timestamp;
use serde_json::{json, Value};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/iomt-fhir/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn collection(templates: &[String]) -> String {
    format!(
        r#"{{"templateType": "CollectionFhir", "template": [{}]}}"#,
        templates.join(",")
    )
}

fn t(s: &str) -> DateTime<Utc> {
    parse_timestamp(s).unwrap()
}

fn measurement(type_name: &str, at: &str, props: &[(&str, &str)]) -> Measurement {
    Measurement {
        type_name: TypeName::new(type_name).unwrap(),
        occurrence_time_utc: t(at),
        device_id: "device1".into(),
        patient_id: Some("patient1".into()),
        encounter_id: None,
        correlation_id: None,
        properties: props
            .iter()
            .map(|(n, v)| MeasurementProperty {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect(),
    }
}

fn ids() -> ResolvedIds {
    create_mode_ids("patient1", "device1", None, None)
}

fn issued() -> DateTime<Utc> {
    t("2024-01-01T00:00:00Z")
}

/// The observation groups and Observations of `measurements` (all of one key).
fn build(mapping: &FhirMapping, measurements: Vec<Measurement>) -> Vec<(ObservationGroup, Value)> {
    let groups = group_measurements(measurements);
    assert_eq!(groups.len(), 1);
    let template = mapping.template_for(&groups[0].key.type_name).unwrap();
    observation_groups(&groups[0], template.period_interval)
        .unwrap()
        .into_iter()
        .map(|g| {
            let o = observation::build(template, &g, &ids(), issued()).unwrap();
            (g, o)
        })
        .collect()
}

#[test]
fn sampled_data_hourly_window() {
    let mapping =
        FhirMapping::parse(&collection(&[fixture("CodeValueFhirTemplate_SampledData")])).unwrap();
    let built = build(
        &mapping,
        vec![
            measurement("heartrate", "2020-01-01T10:00:11Z", &[("hr", "62")]),
            measurement("heartrate", "2020-01-01T10:00:00Z", &[("hr", "60")]),
        ],
    );
    assert_eq!(built.len(), 1);
    let (group, o) = &built[0];
    assert_eq!(group.id_segment, "20200101100000Z.20200101105959Z");
    assert_eq!(
        o["effectivePeriod"],
        json!({"start": "2020-01-01T10:00:00.0000000Z", "end": "2020-01-01T10:59:59.9999999Z"})
    );
    let sampled = &o["valueSampledData"];
    assert_eq!(sampled["origin"], json!({"value": 0, "unit": "bpm"}));
    assert_eq!(sampled["period"], json!(5000));
    assert_eq!(sampled["dimensions"], json!(1));
    let data = sampled["data"].as_str().unwrap();
    assert!(data.starts_with("60 E 62 E "), "{data}");
    assert_eq!(data.split(' ').count(), 720);
    let id = observation::identifier(group, &ids());
    assert_eq!(o["id"], json!(id.resource_id()));
    assert!(id
        .value
        .ends_with(".heartrate.20200101100000Z.20200101105959Z"));
}

#[test]
fn codeable_concept_value_and_string_component() {
    let mapping = FhirMapping::parse(&collection(&[fixture(
        "CodeValueFhirTemplate_CodeableConceptAndStringComponent",
    )]))
    .unwrap();
    let built = build(
        &mapping,
        vec![measurement(
            "alarmEvent",
            "2020-01-01T10:00:00Z",
            &[("alarm", "x"), ("reason", "battery low")],
        )],
    );
    let o = &built[0].1;
    assert_eq!(
        o["valueCodeableConcept"],
        json!({"coding": [{"system": "https://www.contoso.com/events/v1", "code": "alarmEvent", "display": "Alarm Event"}], "text": "Alarm!"})
    );
    assert_eq!(o["component"][0]["valueString"], "battery low");
    assert_eq!(o["component"][0]["code"]["coding"][1]["code"], "reason");
}

#[test]
fn categories_quantity_and_daily_windows() {
    let template = r#"{"templateType": "CodeValueFhirTemplate", "template": {
        "typeName": "Weight", "periodInterval": "1440",
        "category": [{"text": "vitals", "codes": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "codes": [{"code": "29463-7", "system": "http://loinc.org"}],
        "value": {"valueName": "kg", "valueType": "Quantity", "unit": "kg"}}}"#;
    let mapping = FhirMapping::parse(&collection(&[template.to_owned()])).unwrap();
    let built = build(
        &mapping,
        vec![
            measurement("weight", "2020-01-01T10:00:00Z", &[("kg", "80.50")]),
            measurement("weight", "2020-01-02T01:00:00Z", &[("kg", "80.4")]),
        ],
    );
    assert_eq!(built.len(), 2);
    assert_eq!(built[0].0.id_segment, "20200101000000Z.20200101235959Z");
    assert_eq!(built[0].1["valueQuantity"]["unit"], "kg");
    assert_eq!(built[0].1["valueQuantity"]["value"].to_string(), "80.50");
    assert_eq!(
        built[0].1["category"][0]["coding"][0]["code"],
        "vital-signs"
    );
    assert_eq!(built[1].1["valueQuantity"]["value"].to_string(), "80.4");

    let hourly = template.replace("\"1440\"", "\"Hourly\"");
    let mapping = FhirMapping::parse(&collection(&[hourly])).unwrap();
    let groups = group_measurements(vec![
        measurement("weight", "2020-01-01T10:00:00Z", &[("kg", "80")]),
        measurement("weight", "2020-01-01T10:30:00Z", &[("kg", "81")]),
    ]);
    let template = mapping.template_for(&groups[0].key.type_name).unwrap();
    let g = &observation_groups(&groups[0], template.period_interval).unwrap()[0];
    let err = observation::build(template, g, &ids(), issued()).unwrap_err();
    assert!(
        err.to_string().contains("expected 1 value, received 2"),
        "{err}"
    );
}

#[test]
fn correlation_id_groups_and_names_the_observation() {
    let template = r#"{"templateType": "CodeValueFhir", "template": {"typeName": "session", "periodInterval": -1,
        "codes": [], "value": {"valueName": "v", "valueType": "String"}}}"#;
    let mapping = FhirMapping::parse(&collection(&[template.to_owned()])).unwrap();
    let mut a = measurement("session", "2020-01-01T10:00:00Z", &[("v", "a")]);
    a.correlation_id = Some("corr-1".into());
    let mut b = measurement("session", "2020-01-01T09:00:00Z", &[("w", "b")]);
    b.correlation_id = Some("corr-1".into());
    let built = build(&mapping, vec![a.clone(), b]);
    assert_eq!(built.len(), 1);
    let (g, o) = &built[0];
    assert_eq!(
        observation::identifier(g, &ids()).value,
        format!("{}.{}.session.corr-1", ids().patient, ids().device)
    );
    assert_eq!(
        o["effectivePeriod"]["start"],
        "2020-01-01T09:00:00.0000000Z"
    );
    assert_eq!(o["effectivePeriod"]["end"], "2020-01-01T10:00:00.0000000Z");
    assert_eq!(o["valueString"], "a");

    a.correlation_id = None;
    let groups = group_measurements(vec![a]);
    let err = observation_groups(&groups[0], mapping.templates()[0].period_interval).unwrap_err();
    assert!(err.to_string().contains("correlation id"));
}

#[test]
fn later_measurement_at_the_same_instant_wins_and_groups_split_by_key() {
    let groups = group_measurements(vec![
        measurement("hr", "2020-01-01T10:00:00Z", &[("v", "1")]),
        measurement("hr", "2020-01-01T10:00:00Z", &[("v", "2")]),
        measurement("steps", "2020-01-01T10:00:00Z", &[("v", "3")]),
    ]);
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].measurements.len(), 1);
    assert_eq!(groups[0].measurements[0].properties[0].value, "2");
}

fn bp_mapping() -> FhirMapping {
    FhirMapping::parse(&collection(&[fixture("CodeValueFhirTemplate_Components")])).unwrap()
}

#[test]
fn merge_sampled_data_new_value_wins_and_status_amended() {
    let mapping = bp_mapping();
    let template = &mapping.templates()[0];
    let built = build(
        &mapping,
        vec![measurement(
            "bloodpressure",
            "2020-01-01T10:00:00Z",
            &[("systolic", "120"), ("diastolic", "80")],
        )],
    );
    let (group, existing) = &built[0];
    assert_eq!(
        observation::merge(template, group, existing).unwrap(),
        MergeOutcome::Unchanged
    );

    let later = build(
        &mapping,
        vec![
            measurement(
                "bloodpressure",
                "2020-01-01T10:00:00Z",
                &[("systolic", "125")],
            ),
            measurement(
                "bloodpressure",
                "2020-01-01T10:00:05Z",
                &[("systolic", "130"), ("diastolic", "85")],
            ),
        ],
    );
    let MergeOutcome::Amended(merged) =
        observation::merge(template, &later[0].0, existing).unwrap()
    else {
        panic!("expected a change");
    };
    assert_eq!(merged["status"], "amended");
    assert_eq!(merged["id"], existing["id"]);
    assert_eq!(merged["issued"], existing["issued"]);
    let systolic = merged["component"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"]["text"] == "systolic")
        .unwrap();
    assert!(systolic["valueSampledData"]["data"]
        .as_str()
        .unwrap()
        .starts_with("125 130 E"));
    let diastolic = merged["component"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"]["text"] == "diastolic")
        .unwrap();
    assert!(diastolic["valueSampledData"]["data"]
        .as_str()
        .unwrap()
        .starts_with("80 85 E"));
    // Merging the same data again changes nothing.
    assert_eq!(
        observation::merge(template, &later[0].0, &merged).unwrap(),
        MergeOutcome::Unchanged
    );
}

#[test]
fn merge_adds_missing_components_widens_the_period_and_refuses_wrong_types() {
    let mapping = bp_mapping();
    let template = &mapping.templates()[0];
    let built = build(
        &mapping,
        vec![measurement(
            "bloodpressure",
            "2020-01-01T10:00:00Z",
            &[("systolic", "120")],
        )],
    );
    let (_, existing) = &built[0];
    assert_eq!(existing["component"].as_array().unwrap().len(), 1);
    let with_diastolic = build(
        &mapping,
        vec![measurement(
            "bloodpressure",
            "2020-01-01T10:00:05Z",
            &[("diastolic", "80")],
        )],
    );
    let MergeOutcome::Amended(merged) =
        observation::merge(template, &with_diastolic[0].0, existing).unwrap()
    else {
        panic!("expected a change");
    };
    assert_eq!(merged["component"].as_array().unwrap().len(), 2);

    let mut narrow = existing.clone();
    narrow.as_object_mut().unwrap().remove("effectivePeriod");
    narrow["effectiveDateTime"] = json!("2020-01-01T10:30:00Z");
    let MergeOutcome::Amended(merged) =
        observation::merge(template, &with_diastolic[0].0, &narrow).unwrap()
    else {
        panic!("expected a change");
    };
    assert_eq!(merged.get("effectiveDateTime"), None);
    assert_eq!(
        merged["effectivePeriod"]["start"],
        "2020-01-01T10:00:00.0000000Z"
    );
    assert_eq!(
        merged["effectivePeriod"]["end"],
        "2020-01-01T10:59:59.9999999Z"
    );

    let mut wrong = existing.clone();
    let comp = &mut wrong["component"][0];
    let sampled = comp
        .as_object_mut()
        .unwrap()
        .remove("valueSampledData")
        .unwrap();
    comp["valueQuantity"] = sampled;
    let again = build(
        &mapping,
        vec![measurement(
            "bloodpressure",
            "2020-01-01T10:00:05Z",
            &[("systolic", "121")],
        )],
    );
    let err = observation::merge(template, &again[0].0, &wrong).unwrap_err();
    assert!(matches!(err, ObservationError::Value { .. }), "{err}");

    let err = observation::merge(
        template,
        &again[0].0,
        &json!({"resourceType": "Observation"}),
    )
    .unwrap_err();
    assert!(matches!(err, ObservationError::Existing(_)), "{err}");
}

#[test]
fn azure_collection_fixture_loads_and_looks_types_up_in_any_case() {
    let mapping = FhirMapping::parse(&fixture("CollectionFhirTemplateValid")).unwrap();
    assert_eq!(mapping.templates().len(), 6);
    assert!(mapping
        .template_for(&TypeName::new("HEARTRATE").unwrap())
        .is_some());
    assert!(mapping
        .template_for(&TypeName::new("unknown").unwrap())
        .is_none());
}

#[test]
fn invalid_fhir_mappings_name_every_problem() {
    let mapping = r#"{
  "templateType": "CollectionFhir",
  "template": [
    {"templateType": "CodeValueFhir", "template": {"typeName": "hr", "codes": [], "periodInterval": 30}},
    {"templateType": "CodeValueFhir", "template": {"typeName": "HR", "codes": []}},
    {"templateType": "CodeValueFhir", "template": {"typeName": "a", "value": {"valueName": "v", "valueType": "Integer"}}},
    {"templateType": "CodeValueFhir", "template": {"typeName": "b", "codes": [],
      "components": [{"codes": []}, {"codes": [], "value": {"valueName": "s", "valueType": "SampledData"}}]}},
    {"templateType": "JsonPathContent", "template": {}}
  ]
}"#;
    let errors = FhirMapping::parse(mapping).unwrap_err().errors;
    let found: Vec<(&str, Option<usize>)> =
        errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
    assert_eq!(
        found,
        [
            ("$.template[0].template.periodInterval", Some(4)),
            ("$.template[2].template", Some(6)),
            ("$.template[2].template.value.valueType", Some(6)),
            ("$.template[3].template.components[0]", Some(8)),
            ("$.template[3].template.components[1].value", Some(8)),
            ("$.template[4].templateType", Some(9)),
        ],
        "{errors:#?}"
    );
    assert!(errors[1].message.contains("codes"));
    assert!(errors[2].message.contains("Integer"));
    assert!(errors[4].message.contains("defaultPeriod"));
    // The duplicate type name (any case) of template[1] is reported once the first is valid.
    let dup = r#"{"templateType": "CollectionFhir", "template": [
        {"templateType": "CodeValueFhir", "template": {"typeName": "hr", "codes": []}},
        {"templateType": "CodeValueFhir", "template": {"typeName": "HR", "codes": []}}]}"#;
    let errors = FhirMapping::parse(dup).unwrap_err().errors;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "$.template[1].template");
    assert!(errors[0].message.contains("duplicate"));
}

/// The pipeline commits a message only once every group it fed is written: a group must
/// name each message that went into it, including one whose measurement a later one
/// replaced.
#[test]
fn each_group_names_every_message_that_went_into_it() {
    use medtech_svc::grouping::group_with_sources;
    let groups = group_with_sources(vec![
        (0, measurement("hr", "2020-01-01T10:00:00Z", &[("v", "1")])),
        (
            1,
            measurement("steps", "2020-01-01T10:00:00Z", &[("v", "3")]),
        ),
        (2, measurement("hr", "2020-01-01T10:00:00Z", &[("v", "2")])),
        (3, measurement("hr", "2020-01-01T10:01:00Z", &[("v", "4")])),
    ]);
    assert_eq!(groups.len(), 2);
    let (hr, hr_sources) = &groups[0];
    assert_eq!(hr.key.type_name.to_string(), "hr");
    assert_eq!(hr_sources.iter().copied().collect::<Vec<_>>(), [0, 2, 3]);
    let values: Vec<&str> = hr
        .measurements
        .iter()
        .map(|m| m.properties[0].value.as_str())
        .collect();
    assert_eq!(values, ["2", "4"]);
    assert_eq!(groups[1].1.iter().copied().collect::<Vec<_>>(), [1]);
}
