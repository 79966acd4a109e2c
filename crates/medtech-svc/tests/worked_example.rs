//! The worked example of the MedTech issue, which must come out exactly as Azure makes it.

use chrono::{TimeZone, Utc};
use medtech_svc::envelope::DeviceEvent;
use medtech_svc::fhir_mapping::FhirMapping;
use medtech_svc::grouping::group_measurements;
use medtech_svc::identity::{create_mode_ids, created_device, created_patient};
use medtech_svc::template::DeviceMapping;
use serde_json::{json, Map};

const DEVICE_MAPPING: &str = r#"{
  "templateType": "CollectionContent",
  "template": [{
    "templateType": "JsonPathContent",
    "template": {
      "typeName": "bloodpressure",
      "typeMatchExpression": "$..[?(@systolic && @diastolic)]",
      "deviceIdExpression": "$.deviceid",
      "patientIdExpression": "$.patientid",
      "timestampExpression": "$.measurementdatetime",
      "values": [
        {"valueName": "systolic", "valueExpression": "$.systolic", "required": true},
        {"valueName": "diastolic", "valueExpression": "$.diastolic", "required": true}
      ]
    }
  }]
}"#;

const FHIR_MAPPING: &str = r#"{
  "templateType": "CollectionFhir",
  "template": [{
    "templateType": "CodeValueFhir",
    "template": {
      "typeName": "bloodpressure",
      "periodInterval": 0,
      "codes": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}],
      "components": [
        {"codes": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}],
         "value": {"valueName": "systolic", "valueType": "Quantity", "unit": "mmHg",
                   "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
        {"codes": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic blood pressure"}],
         "value": {"valueName": "diastolic", "valueType": "Quantity", "unit": "mmHg",
                   "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
      ]
    }
  }]
}"#;

const MESSAGE: &str = r#"{"systolic":120,"diastolic":80,"deviceid":"device1","patientid":"patient1","measurementdatetime":"2023-10-09T19:18:23+00:00"}"#;

#[test]
fn blood_pressure_in_create_mode_gets_azures_ids() {
    let device = DeviceMapping::parse(DEVICE_MAPPING).unwrap();
    let fhir = FhirMapping::parse(FHIR_MAPPING).unwrap();
    let event = DeviceEvent::new(MESSAGE.as_bytes(), Map::new(), Map::new()).unwrap();

    let normalized = device.normalize(&event);
    assert!(normalized.errors.is_empty(), "{:?}", normalized.errors);
    assert_eq!(normalized.measurements.len(), 1);

    let patient = created_patient("patient1");
    assert_eq!(
        patient["id"],
        "cd3ee1fc63936b0083c968fe962a726d383ab6ee83af53d4f50507ccd646b68a"
    );
    assert_eq!(patient["identifier"], json!([{"value": "patient1"}]));
    let ids = create_mode_ids("patient1", "device1", None, None);
    let device_resource = created_device("device1", None, &ids.patient);
    assert_eq!(
        device_resource["id"],
        "e55c4dadeb1050efd66966053edc1a9f921022858367eff94c3fc7660ed1f1ef"
    );
    assert_eq!(
        device_resource["patient"]["reference"],
        "Patient/cd3ee1fc63936b0083c968fe962a726d383ab6ee83af53d4f50507ccd646b68a"
    );

    let groups = group_measurements(normalized.measurements);
    assert_eq!(groups.len(), 1);
    let issued = Utc.with_ymd_and_hms(2023, 10, 9, 19, 18, 30).unwrap();
    let observations = medtech_svc::debug::observations(&fhir, &groups[0], &ids, issued).unwrap();
    assert_eq!(observations.len(), 1);
    let o = &observations[0];
    assert_eq!(
        o["id"],
        "9775bc0753197aa95458c15a4d5eef689c07b33d7f19706dde2247b3124abfad"
    );
    assert_eq!(
        o["identifier"],
        json!([{
            "system": "https://azure.microsoft.com/en-us/services/iomt-fhir-connector/",
            "value": "cd3ee1fc63936b0083c968fe962a726d383ab6ee83af53d4f50507ccd646b68a.e55c4dadeb1050efd66966053edc1a9f921022858367eff94c3fc7660ed1f1ef.bloodpressure.20231009191823Z.20231009191823Z"
        }])
    );
    assert_eq!(
        o["effectivePeriod"],
        json!({"start": "2023-10-09T19:18:23.0000000Z", "end": "2023-10-09T19:18:23.0000000Z"})
    );
    assert_eq!(o["status"], "final");
    assert_eq!(
        o["subject"]["reference"],
        format!("Patient/{}", ids.patient)
    );
    assert_eq!(o["device"]["reference"], format!("Device/{}", ids.device));
    assert_eq!(o["issued"], "2023-10-09T19:18:30.0000000+00:00");
    assert_eq!(
        o["code"],
        json!({
            "coding": [
                {"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"},
                {"system": "https://azure.microsoft.com/en-us/services/iomt-fhir-connector/",
                 "code": "bloodpressure", "display": "bloodpressure"}
            ],
            "text": "bloodpressure"
        })
    );
    let components = o["component"].as_array().unwrap();
    assert_eq!(components.len(), 2);
    assert_eq!(
        components[0]["valueQuantity"],
        json!({"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"})
    );
    assert_eq!(components[1]["valueQuantity"]["value"], json!(80));
    assert_eq!(components[0]["code"]["coding"][0]["code"], "8480-6");
    assert_eq!(components[1]["code"]["coding"][0]["code"], "8462-4");
    assert_eq!(components[1]["code"]["text"], "diastolic");
    let keys: Vec<&str> = o.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "resourceType",
            "id",
            "identifier",
            "status",
            "code",
            "subject",
            "effectivePeriod",
            "issued",
            "device",
            "component"
        ]
    );
}
