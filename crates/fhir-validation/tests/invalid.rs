//! Invalid resources: each breaks one rule and must get exactly the issue that names it (so
//! a test also fails when the validator reports something extra), and the valid variants
//! next to them must get none.

use fhir_validation::{validate, IssueCode};
use serde_json::{json, Value};

/// The (code, path) of every issue.
fn issues(resource: &Value) -> Vec<(IssueCode, String)> {
    validate(resource)
        .into_iter()
        .map(|i| (i.code, i.path))
        .collect()
}

#[track_caller]
fn assert_issues(resource: Value, expected: &[(IssueCode, &str)]) {
    let expected: Vec<(IssueCode, String)> =
        expected.iter().map(|(c, p)| (*c, p.to_string())).collect();
    assert_eq!(issues(&resource), expected, "{:#?}", validate(&resource));
}

#[track_caller]
fn assert_valid(resource: Value) {
    let found = validate(&resource);
    assert!(found.is_empty(), "{found:#?}");
}

fn observation() -> Value {
    json!({"resourceType": "Observation", "status": "final", "code": {"text": "weight"}})
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn patient(extra: Value) -> Value {
    let mut p = json!({"resourceType": "Patient", "id": "p1"});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

#[test]
fn minimal_resources_are_valid() {
    assert_valid(observation());
    assert_valid(patient(json!({
        "active": true,
        "gender": "female",
        "birthDate": "1970-02-28",
        "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Peter</div>"},
        "extension": [{"url": "http://example.org/a", "valueString": "x"}],
    })));
}

#[test]
fn unknown_element() {
    assert_issues(
        patient(json!({"nickname": "Pete"})),
        &[(IssueCode::Structure, "Patient.nickname")],
    );
    assert_issues(
        patient(json!({"name": [{"family": "x", "middle": "y"}]})),
        &[(IssueCode::Structure, "Patient.name[0].middle")],
    );
    // `_name` only exists for primitives.
    assert_issues(
        patient(json!({"_name": [{"id": "a"}]})),
        &[(IssueCode::Structure, "Patient._name")],
    );
    assert_issues(
        patient(json!({"fhir_comments": ["old style"]})),
        &[(IssueCode::Structure, "Patient.fhir_comments")],
    );
}

#[test]
fn wrong_json_type() {
    assert_issues(
        patient(json!({"name": ["Peter"]})),
        &[(IssueCode::Structure, "Patient.name[0]")],
    );
    assert_issues(
        patient(json!({"active": "true"})),
        &[(IssueCode::Structure, "Patient.active")],
    );
    assert_issues(
        patient(json!({"gender": 1})),
        &[(IssueCode::Structure, "Patient.gender")],
    );
    assert_issues(
        with(observation(), "valueQuantity", json!({"value": "1.5"})),
        &[(IssueCode::Structure, "Observation.valueQuantity.value")],
    );
    assert_issues(
        with(observation(), "valueInteger", json!("5")),
        &[(IssueCode::Structure, "Observation.valueInteger")],
    );
    assert_issues(
        with(observation(), "code", json!("weight")),
        &[(IssueCode::Structure, "Observation.code")],
    );
}

#[test]
fn missing_required_elements() {
    assert_issues(
        json!({"resourceType": "Observation"}),
        &[
            (IssueCode::Required, "Observation.status"),
            (IssueCode::Required, "Observation.code"),
        ],
    );
    assert_issues(
        with(observation(), "component", json!([{"valueString": "x"}])),
        &[(IssueCode::Required, "Observation.component[0].code")],
    );
    // A choice element with min 1 is present through any of its types.
    let context = |value: Value| {
        with(
            json!({"resourceType": "Library", "status": "draft", "type": {"text": "x"}}),
            "useContext",
            json!([value]),
        )
    };
    assert_valid(context(
        json!({"code": {"code": "age"}, "valueQuantity": {"value": 3}}),
    ));
    assert_issues(
        context(json!({"code": {"code": "age"}})),
        &[(IssueCode::Required, "Library.useContext[0].value[x]")],
    );
    // A value given only through its `_name` companion is present.
    let mut absent = observation();
    absent.as_object_mut().unwrap().remove("status");
    absent["_status"] = json!({"extension": [{
        "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
        "valueCode": "unknown"
    }]});
    assert_valid(absent);
}

#[test]
fn arrays_follow_max() {
    assert_issues(
        patient(json!({"gender": ["male"]})),
        &[(IssueCode::Structure, "Patient.gender")],
    );
    assert_issues(
        with(observation(), "code", json!([{"text": "x"}])),
        &[(IssueCode::Structure, "Observation.code")],
    );
    assert_issues(
        patient(json!({"name": {"family": "x"}})),
        &[(IssueCode::Structure, "Patient.name")],
    );
    assert_issues(
        patient(json!({"name": [{"given": "Peter"}]})),
        &[(IssueCode::Structure, "Patient.name[0].given")],
    );
}

#[test]
fn primitive_formats() {
    assert_issues(
        patient(json!({"id": "p 1"})),
        &[(IssueCode::Value, "Patient.id")],
    );
    assert_valid(patient(json!({"id": "a".repeat(64)})));
    assert_issues(
        patient(json!({"id": "a".repeat(65)})),
        &[(IssueCode::Value, "Patient.id")],
    );
    assert_issues(
        with(observation(), "effectiveDateTime", json!("2020-13-01")),
        &[(IssueCode::Value, "Observation.effectiveDateTime")],
    );
    assert_issues(
        patient(json!({"birthDate": "2021-02-29"})),
        &[(IssueCode::Value, "Patient.birthDate")],
    );
    assert_issues(
        patient(json!({"implicitRules": "http://example.org/a rule"})),
        &[(IssueCode::Value, "Patient.implicitRules")],
    );
    assert_issues(
        patient(json!({"multipleBirthInteger": 2147483648u64})),
        &[(IssueCode::Value, "Patient.multipleBirthInteger")],
    );
    // Decimals are judged on their text, which arbitrary_precision keeps.
    let precise: Value = serde_json::from_str(
        r#"{"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": 1.50000000000000000001}}"#,
    )
    .unwrap();
    assert_valid(precise);
}

#[test]
fn required_bindings() {
    assert_issues(
        patient(json!({"gender": "x"})),
        &[(IssueCode::CodeInvalid, "Patient.gender")],
    );
    assert_issues(
        with(observation(), "status", json!("bogus")),
        &[(IssueCode::CodeInvalid, "Observation.status")],
    );
    // In a datatype: ContactPoint.system.
    assert_issues(
        patient(
            json!({"telecom": [{"system": "telegraph", "value": "1"}, {"system": "fax", "value": "2"}]}),
        ),
        &[(IssueCode::CodeInvalid, "Patient.telecom[0].system")],
    );
    let condition = |clinical_status: Value| json!({"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "clinicalStatus": clinical_status});
    let system = "http://terminology.hl7.org/CodeSystem/condition-clinical";
    assert_valid(condition(
        json!({"coding": [{"system": system, "code": "active"}]}),
    ));
    assert_valid(condition(json!({"text": "active, we think"})));
    assert_valid(condition(
        json!({"coding": [{"system": "http://snomed.info/sct", "code": "55561003"}, {"system": system, "code": "active"}]}),
    ));
    assert_issues(
        condition(json!({"coding": [{"system": system, "code": "bogus"}]})),
        &[(IssueCode::CodeInvalid, "Condition.clinicalStatus")],
    );
    assert_issues(
        condition(json!({"coding": [{"system": "http://snomed.info/sct", "code": "55561003"}]})),
        &[(IssueCode::CodeInvalid, "Condition.clinicalStatus")],
    );
    // Undecidable without a system: not judged.
    assert_valid(condition(json!({"coding": [{"code": "whatever"}]})));
    // Not enumerable (all MIME types): not judged.
    assert_valid(json!({"resourceType": "Binary", "contentType": "application/x-made-up"}));
}

#[test]
fn choice_elements() {
    assert_issues(
        with(
            with(observation(), "valueString", json!("x")),
            "valueBoolean",
            json!(true),
        ),
        &[(IssueCode::Structure, "Observation.valueBoolean")],
    );
    let reference = with(
        observation(),
        "valueReference",
        json!({"reference": "Patient/p1"}),
    );
    let message = &validate(&reference)[0].message;
    assert!(
        message.contains("\"Reference\" is not a type of value[x]"),
        "{message}"
    );
    assert_issues(
        reference,
        &[(IssueCode::Structure, "Observation.valueReference")],
    );
    assert_issues(
        with(observation(), "value", json!("x")),
        &[(IssueCode::Structure, "Observation.value")],
    );
    // A value and the companion of the same variant are one variant.
    assert_valid(with(
        with(observation(), "valueString", json!("x")),
        "_valueString",
        json!({"id": "v"}),
    ));
}

#[test]
fn contained_resources() {
    let mut invalid_contained = observation();
    invalid_contained.as_object_mut().unwrap().remove("status");
    assert_issues(
        patient(
            json!({"contained": [{"resourceType": "Organization", "id": "o1"}, invalid_contained]}),
        ),
        &[(IssueCode::Required, "Patient.contained[1].status")],
    );
    assert_issues(
        patient(json!({"contained": [{"resourceType": "Nothing", "id": "o1"}]})),
        &[(IssueCode::Invalid, "Patient.contained[0].resourceType")],
    );
    assert_issues(
        patient(json!({"contained": [{"id": "o1"}]})),
        &[(IssueCode::Required, "Patient.contained[0].resourceType")],
    );
}

#[test]
fn bundle_entries_and_parameters_are_validated_by_their_type() {
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": observation(), "request": {"method": "POST", "url": "Observation"}},
            {"resource": patient(json!({"gender": "x"})), "request": {"method": "POST", "url": "Patient"}},
        ]
    });
    assert_issues(
        bundle,
        &[(IssueCode::CodeInvalid, "Bundle.entry[1].resource.gender")],
    );
    let parameters = json!({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "a", "resource": patient(json!({}))},
            {"name": "b", "part": [{"name": "c", "resource": {"resourceType": "Observation", "status": "final"}}]},
        ]
    });
    assert_issues(
        parameters,
        &[(
            IssueCode::Required,
            "Parameters.parameter[1].part[0].resource.code",
        )],
    );
}

#[test]
fn primitive_companions() {
    let ext = json!({"extension": [{"url": "http://example.org/e", "valueString": "x"}]});
    assert_valid(patient(
        json!({"name": [{"given": ["a", "b"], "_given": [null, ext]}]}),
    ));
    assert_valid(patient(
        json!({"name": [{"given": ["a", null], "_given": [null, ext]}]}),
    ));
    assert_valid(patient(json!({"name": [{"_given": [ext]}]})));
    assert_valid(patient(json!({"birthDate": "1970", "_birthDate": ext})));
    assert_issues(
        patient(json!({"name": [{"given": ["a", "b"], "_given": [ext]}]})),
        &[(IssueCode::Structure, "Patient.name[0].given")],
    );
    assert_issues(
        patient(json!({"name": [{"given": ["a", null], "_given": [ext, null]}]})),
        &[(IssueCode::Structure, "Patient.name[0].given[1]")],
    );
    assert_issues(
        patient(json!({"name": [{"given": ["a"], "_given": ext}]})),
        &[(IssueCode::Structure, "Patient.name[0].given")],
    );
    assert_issues(
        patient(json!({"birthDate": "1970", "_birthDate": [ext]})),
        &[(IssueCode::Structure, "Patient.birthDate")],
    );
    assert_issues(
        patient(json!({"_birthDate": {"extension": [{"url": "http://example.org/e"}]}})),
        &[(IssueCode::Invariant, "Patient.birthDate.extension[0]")],
    );
    // Element.id and Extension.url are bare values, without companions.
    assert_issues(
        patient(json!({"_id": ext})),
        &[(IssueCode::Structure, "Patient._id")],
    );
}

#[test]
fn empty_values_and_null() {
    assert_issues(
        patient(json!({"name": [{"family": ""}]})),
        &[(IssueCode::Value, "Patient.name[0].family")],
    );
    assert_issues(
        patient(json!({"name": [{}]})),
        &[(IssueCode::Structure, "Patient.name[0]")],
    );
    assert_issues(
        patient(json!({"name": []})),
        &[(IssueCode::Structure, "Patient.name")],
    );
    assert_issues(
        patient(json!({"gender": null})),
        &[(IssueCode::Structure, "Patient.gender")],
    );
    assert_issues(
        patient(json!({"name": [null]})),
        &[(IssueCode::Structure, "Patient.name[0]")],
    );
    assert_issues(
        patient(json!({"name": [{"given": [null]}]})),
        &[(IssueCode::Structure, "Patient.name[0].given[0]")],
    );
    assert_issues(
        patient(json!({"managingOrganization": {}})),
        &[(IssueCode::Structure, "Patient.managingOrganization")],
    );
}

#[test]
fn extensions() {
    assert_issues(
        patient(json!({"extension": [{"valueString": "x"}]})),
        &[(IssueCode::Required, "Patient.extension[0].url")],
    );
    assert_issues(
        patient(
            json!({"extension": [{"url": "http://example.org/a", "valueString": "x", "extension": [{"url": "b", "valueCode": "c"}]}]}),
        ),
        &[(IssueCode::Invariant, "Patient.extension[0]")],
    );
    assert_issues(
        patient(json!({"modifierExtension": [{"url": "http://example.org/a"}]})),
        &[(IssueCode::Invariant, "Patient.modifierExtension[0]")],
    );
    assert_valid(patient(
        json!({"extension": [{"url": "http://example.org/a", "extension": [{"url": "b", "valueCode": "c"}]}]}),
    ));
    assert_issues(
        patient(json!({"extension": [{"url": "http://example.org/a", "valueFoo": "x"}]})),
        &[(IssueCode::Structure, "Patient.extension[0].valueFoo")],
    );
}

#[test]
fn narrative() {
    let text = |div: Value| patient(json!({"text": {"status": "generated", "div": div}}));
    assert_issues(
        text(json!("<p>hi</p>")),
        &[(IssueCode::Value, "Patient.text.div")],
    );
    assert_issues(
        text(json!({"div": "x"})),
        &[(IssueCode::Structure, "Patient.text.div")],
    );
    assert_issues(
        patient(
            json!({"text": {"status": "generated", "div": "<div>x</div>", "_div": {"id": "d"}}}),
        ),
        &[(IssueCode::Structure, "Patient.text._div")],
    );
    assert_issues(
        patient(json!({"text": {"status": "generated"}})),
        &[(IssueCode::Required, "Patient.text.div")],
    );
}

#[test]
fn not_a_resource() {
    assert_issues(
        json!({"resourceType": "Foo"}),
        &[(IssueCode::Invalid, "resourceType")],
    );
    assert_issues(
        json!({"resourceType": "DomainResource"}),
        &[(IssueCode::Invalid, "resourceType")],
    );
    assert_issues(
        json!({"resourceType": 1}),
        &[(IssueCode::Structure, "resourceType")],
    );
    assert_issues(json!({"id": "x"}), &[(IssueCode::Required, "resourceType")]);
    assert_issues(json!([observation()]), &[(IssueCode::Invalid, "")]);
    assert_issues(json!(null), &[(IssueCode::Invalid, "")]);
    assert_issues(
        json!({"resourceType": "Patient", "resourceType2": 1}),
        &[(IssueCode::Structure, "Patient.resourceType2")],
    );
    // resourceType is only a property of resources.
    assert_issues(
        patient(json!({"name": [{"resourceType": "HumanName", "family": "x"}]})),
        &[(IssueCode::Structure, "Patient.name[0].resourceType")],
    );
}

#[test]
fn deep_nesting_is_cut_off_once() {
    let mut item = json!({"linkId": "leaf", "type": "display"});
    for i in 0..300 {
        item = json!({"linkId": i.to_string(), "type": "group", "item": [item]});
    }
    let questionnaire = json!({"resourceType": "Questionnaire", "status": "draft", "item": [item]});
    let found = issues(&questionnaire);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, IssueCode::TooCostly);
    assert!(
        found[0].1.starts_with("Questionnaire.item[0].item[0]"),
        "{}",
        found[0].1
    );

    let mut ext = json!({"url": "leaf", "valueString": "x"});
    for _ in 0..300 {
        ext = json!({"url": "n", "extension": [ext]});
    }
    let found = issues(&patient(json!({"extension": [ext]})));
    assert_eq!(
        found.iter().map(|i| i.0).collect::<Vec<_>>(),
        [IssueCode::TooCostly]
    );
    // 50 levels are fine.
    let mut item = json!({"linkId": "leaf", "type": "display"});
    for i in 0..50 {
        item = json!({"linkId": i.to_string(), "type": "group", "item": [item]});
    }
    assert_valid(json!({"resourceType": "Questionnaire", "status": "draft", "item": [item]}));
}

/// Any JSON is input: replacing any single value of a rich resource by any kind of JSON
/// value gives issues (when the replacement cannot be valid anywhere), never a panic.
#[test]
fn never_panics_on_any_replacement() {
    let ext = json!({"url": "http://example.org/e", "valueString": "x"});
    let resource = json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:0a1b2c3d-0000-4000-8000-000000000000", "resource": patient(json!({
                "meta": {"versionId": "1", "lastUpdated": "2020-01-01T00:00:00Z"},
                "text": {"status": "generated", "div": "<div>x</div>"},
                "contained": [observation()],
                "extension": [ext.clone()],
                "name": [{"given": ["a", null], "_given": [null, {"extension": [ext.clone()]}]}],
                "gender": "other",
                "multipleBirthInteger": 2,
            }))},
            {"resource": with(observation(), "valueQuantity", json!({"value": 1.5, "unit": "kg"}))},
        ]
    });
    let replacements = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1.5),
        json!(""),
        json!("x y"),
        json!([]),
        json!([null]),
        json!([1, {}]),
        json!({}),
        json!({"resourceType": "Patient"}),
        json!({"url": 1}),
    ];
    fn positions(value: &Value, at: &mut Vec<String>, all: &mut Vec<Vec<String>>) {
        all.push(at.clone());
        let children: Vec<(String, &Value)> = match value {
            Value::Object(o) => o.iter().map(|(k, v)| (k.clone(), v)).collect(),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
            _ => Vec::new(),
        };
        for (key, child) in children {
            at.push(key);
            positions(child, at, all);
            at.pop();
        }
    }
    let mut all = Vec::new();
    positions(&resource, &mut Vec::new(), &mut all);
    let mut validated = 0;
    for position in &all[1..] {
        for replacement in &replacements {
            let mut mutated = resource.clone();
            let mut slot = &mut mutated;
            for key in position {
                slot = match slot {
                    Value::Array(a) => &mut a[key.parse::<usize>().unwrap()],
                    other => &mut other[key.as_str()],
                };
            }
            let unchanged = slot == replacement;
            *slot = replacement.clone();
            let found = validate(&mutated);
            // Whatever else may be valid somewhere, these never are.
            let never_valid = [json!(null), json!(""), json!([]), json!({}), json!([null])];
            assert!(
                unchanged || !found.is_empty() || !never_valid.contains(replacement),
                "{position:?} = {replacement}"
            );
            validated += 1;
        }
    }
    assert!(validated > 500, "{validated}");
}
