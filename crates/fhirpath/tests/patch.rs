//! FHIRPath Patch: the cases of the R4 test suite (fhir-test-cases `r4/patch/fhir-patch-tests.xml`,
//! in JSON), the spec page's examples, and the errors.

use fhirpath::patch::{apply, Kind, PatchError, Reason};
use fhirpath::{compile, LocateError, Location, Step};
use serde_json::{json, Value};

fn params(ops: Vec<Value>) -> Value {
    json!({"resourceType": "Parameters", "parameter": ops})
}

fn op(ty: &str, path: &str, more: Vec<Value>) -> Value {
    let mut parts = vec![
        json!({"name": "type", "valueCode": ty}),
        json!({"name": "path", "valueString": path}),
    ];
    parts.extend(more);
    json!({"name": "operation", "part": parts})
}

fn name(n: &str) -> Value {
    json!({"name": "name", "valueString": n})
}

/// `value` as `value<ty>`.
fn value(ty: &str, v: Value) -> Value {
    let mut part = json!({"name": "value"});
    part[format!("value{ty}")] = v;
    part
}

/// `value` given as parts.
fn value_parts(parts: Vec<Value>) -> Value {
    json!({"name": "value", "part": parts})
}

fn part(n: &str, ty: &str, v: Value) -> Value {
    let mut p = json!({"name": n});
    p[format!("value{ty}")] = v;
    p
}

fn int(n: &str, i: i64) -> Value {
    json!({"name": n, "valueInteger": i})
}

fn add(path: &str, n: &str, v: Value) -> Value {
    op("add", path, vec![name(n), v])
}

fn insert(path: &str, index: i64, v: Value) -> Value {
    op("insert", path, vec![int("index", index), v])
}

fn delete(path: &str) -> Value {
    op("delete", path, vec![])
}

fn replace(path: &str, v: Value) -> Value {
    op("replace", path, vec![v])
}

fn move_(path: &str, source: i64, destination: i64) -> Value {
    op(
        "move",
        path,
        vec![int("source", source), int("destination", destination)],
    )
}

#[track_caller]
fn patched(resource: &Value, ops: Vec<Value>) -> Value {
    apply(resource, &params(ops)).unwrap_or_else(|e| panic!("{e}"))
}

#[track_caller]
fn failure(resource: &Value, ops: Vec<Value>) -> PatchError {
    let before = resource.clone();
    let err = apply(resource, &params(ops)).expect_err("the patch should fail");
    assert_eq!(*resource, before);
    err
}

#[track_caller]
fn reason(resource: &Value, ops: Vec<Value>) -> Reason {
    match failure(resource, ops) {
        PatchError::Failed { reason, .. } => reason,
        other => panic!("not an operation failure: {other}"),
    }
}

#[track_caller]
fn malformed(ops: Value) -> String {
    let p = json!({"resourceType": "Patient"});
    match apply(&p, &ops) {
        Err(PatchError::Malformed { message, .. }) => message,
        other => panic!("not malformed: {other:?}"),
    }
}

fn identifiers(values: &[&str]) -> Value {
    Value::Array(
        values
            .iter()
            .map(|v| json!({"system": "http://example.org", "value": v}))
            .collect(),
    )
}

fn patient_with_identifiers(values: &[&str]) -> Value {
    json!({"resourceType": "Patient", "identifier": identifiers(values)})
}

fn chalmers() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "example",
        "identifier": [{"use": "usual", "system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
        "active": true,
        "name": [
            {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
            {"use": "usual", "given": ["Jim"]}
        ],
        "telecom": [
            {"use": "home"},
            {"system": "phone", "value": "(03) 5555 6473", "use": "work"}
        ],
        "gender": "male",
        "birthDate": "1974-12-25",
        "_birthDate": {"extension": [{
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
            "valueDateTime": "1974-12-25T14:35:45-05:00"
        }]},
        "deceasedBoolean": false,
        "contact": [{
            "name": {"family": "du Marché", "given": ["Bénédicte"]},
            "gender": "female"
        }],
        "managingOrganization": {"reference": "Organization/1"}
    })
}

// --- The R4 test suite ------------------------------------------------------------------------

#[test]
fn no_operations_change_nothing() {
    let p = json!({"resourceType": "Patient", "birthDate": "1920-01-01"});
    assert_eq!(patched(&p, vec![]), p);
    assert_eq!(
        apply(&p, &json!({"resourceType": "Parameters"})).unwrap(),
        p
    );
}

#[test]
fn primitives() {
    let p = json!({"resourceType": "Patient", "birthDate": "1920-01-01"});
    assert_eq!(
        patched(
            &p,
            vec![replace(
                "Patient.birthDate",
                value("Date", json!("1930-01-01"))
            )]
        ),
        json!({"resourceType": "Patient", "birthDate": "1930-01-01"})
    );
    assert_eq!(
        patched(&p, vec![delete("Patient.birthDate")]),
        json!({"resourceType": "Patient"})
    );
    // The spec's example: add a birthDate to the Patient.
    let empty = json!({"resourceType": "Patient"});
    assert_eq!(
        patched(
            &empty,
            vec![add(
                "Patient",
                "birthDate",
                value("Date", json!("1930-01-01"))
            )]
        ),
        json!({"resourceType": "Patient", "birthDate": "1930-01-01"})
    );
}

#[test]
fn nested_primitives() {
    let p = json!({"resourceType": "Patient", "contact": [{"name": {"text": "a name"}, "gender": "male"}]});
    assert_eq!(
        patched(
            &p,
            vec![replace(
                "Patient.contact[0].gender",
                value("Code", json!("female"))
            )]
        ),
        json!({"resourceType": "Patient", "contact": [{"name": {"text": "a name"}, "gender": "female"}]})
    );
    assert_eq!(
        patched(
            &p,
            vec![replace(
                "Patient.contact[0].name.text",
                value("String", json!("the name"))
            )]
        ),
        json!({"resourceType": "Patient", "contact": [{"name": {"text": "the name"}, "gender": "male"}]})
    );
    assert_eq!(
        patched(&p, vec![delete("Patient.contact[0].gender")]),
        json!({"resourceType": "Patient", "contact": [{"name": {"text": "a name"}}]})
    );
    // The name left empty goes too.
    assert_eq!(
        patched(&p, vec![delete("Patient.contact[0].name.text")]),
        json!({"resourceType": "Patient", "contact": [{"gender": "male"}]})
    );
    let no_gender = json!({"resourceType": "Patient", "contact": [{"name": {"text": "a name"}}]});
    assert_eq!(
        patched(
            &no_gender,
            vec![add(
                "Patient.contact[0]",
                "gender",
                value("Code", json!("male"))
            )]
        ),
        p
    );
}

#[test]
fn complex_values() {
    let empty = json!({"resourceType": "Patient"});
    let married = json!({"resourceType": "Patient", "maritalStatus": {"text": "married"}});
    assert_eq!(
        patched(
            &empty,
            vec![add(
                "Patient",
                "maritalStatus",
                value("CodeableConcept", json!({"text": "married"}))
            )]
        ),
        married
    );
    let with_id =
        json!({"resourceType": "Patient", "maritalStatus": {"id": "1", "text": "married"}});
    assert_eq!(
        patched(
            &with_id,
            vec![replace(
                "Patient.maritalStatus",
                value("CodeableConcept", json!({"id": "2", "text": "not married"}))
            )]
        ),
        json!({"resourceType": "Patient", "maritalStatus": {"id": "2", "text": "not married"}})
    );
    assert_eq!(
        patched(&married, vec![delete("Patient.maritalStatus")]),
        empty
    );
}

#[test]
fn anonymous_types_given_as_parts() {
    // The spec's example: a contact (a backbone element) given as parts. `contact` repeats,
    // so it is a list even with one item.
    let empty = json!({"resourceType": "Patient"});
    let with_contact =
        json!({"resourceType": "Patient", "contact": [{"name": {"text": "a name"}}]});
    assert_eq!(
        patched(
            &empty,
            vec![add(
                "Patient",
                "contact",
                value_parts(vec![part("name", "HumanName", json!({"text": "a name"}))])
            )]
        ),
        with_contact
    );
    assert_eq!(
        patched(&with_contact, vec![delete("Patient.contact[0]")]),
        empty
    );

    // Parts nest; which repeat and which are choices comes from the model.
    let obs = json!({"resourceType": "Observation", "status": "final"});
    let component = value_parts(vec![
        json!({"name": "code", "part": [
            {"name": "coding", "part": [
                {"name": "system", "valueUri": "http://loinc.org"},
                {"name": "code", "valueCode": "8480-6"}
            ]},
            {"name": "text", "valueString": "Systolic"}
        ]}),
        part("value", "Quantity", json!({"value": 107, "unit": "mmHg"})),
        part(
            "interpretation",
            "CodeableConcept",
            json!({"text": "normal"}),
        ),
    ]);
    assert_eq!(
        patched(&obs, vec![add("Observation", "component", component)]),
        json!({"resourceType": "Observation", "status": "final", "component": [{
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}], "text": "Systolic"},
            "valueQuantity": {"value": 107, "unit": "mmHg"},
            "interpretation": [{"text": "normal"}]
        }]})
    );
}

#[test]
fn lists() {
    let two = patient_with_identifiers(&["value 1", "value 2"]);
    // Contents changed, list unchanged.
    assert_eq!(
        patched(
            &two,
            vec![
                replace(
                    "Patient.identifier[0].value",
                    value("String", json!("value 2"))
                ),
                replace(
                    "Patient.identifier[1].value",
                    value("String", json!("value 1"))
                ),
            ]
        ),
        patient_with_identifiers(&["value 2", "value 1"])
    );
    let v3 = value(
        "Identifier",
        json!({"system": "http://example.org", "value": "value 3"}),
    );
    assert_eq!(
        patched(&two, vec![add("Patient", "identifier", v3.clone())]),
        patient_with_identifiers(&["value 1", "value 2", "value 3"])
    );
    assert_eq!(
        patched(&two, vec![insert("Patient.identifier", 1, v3.clone())]),
        patient_with_identifiers(&["value 1", "value 3", "value 2"])
    );
    assert_eq!(
        patched(&two, vec![insert("Patient.identifier", 0, v3.clone())]),
        patient_with_identifiers(&["value 3", "value 1", "value 2"])
    );
    assert_eq!(
        patched(&two, vec![insert("Patient.identifier", 2, v3.clone())]),
        patient_with_identifiers(&["value 1", "value 2", "value 3"])
    );
    let three = patient_with_identifiers(&["value 1", "value 2", "value 3"]);
    for (i, left) in [
        (0, ["value 2", "value 3"]),
        (1, ["value 1", "value 3"]),
        (2, ["value 1", "value 2"]),
    ] {
        assert_eq!(
            patched(&three, vec![delete(&format!("Patient.identifier[{i}]"))]),
            patient_with_identifiers(&left)
        );
    }
    // Deleting the last item removes the list.
    let one = patient_with_identifiers(&["value 1"]);
    assert_eq!(
        patched(&one, vec![delete("Patient.identifier[0]")]),
        json!({"resourceType": "Patient"})
    );
    // Adding to no list makes one (the suite's "operation on missing element #2"), given as
    // valueIdentifier or as parts.
    let empty = json!({"resourceType": "Patient"});
    let expected = patient_with_identifiers(&["value 3"]);
    assert_eq!(
        patched(&empty, vec![add("Patient", "identifier", v3.clone())]),
        expected
    );
    let as_parts = value_parts(vec![
        part("system", "Uri", json!("http://example.org")),
        part("value", "String", json!("value 3")),
    ]);
    assert_eq!(
        patched(&empty, vec![add("Patient", "identifier", as_parts)]),
        expected
    );
    assert_eq!(
        patched(&empty, vec![insert("Patient.identifier", 0, v3)]),
        expected
    );
}

/// (source, destination) of each move.
type Moves = &'static [(i64, i64)];

#[test]
fn reorder_lists() {
    let four = patient_with_identifiers(&["value 1", "value 2", "value 3", "value 4"]);
    let cases: [(Moves, [&str; 4]); 6] = [
        (&[(3, 1)], ["value 1", "value 4", "value 2", "value 3"]),
        (&[(3, 0)], ["value 4", "value 1", "value 2", "value 3"]),
        (&[(3, 2)], ["value 1", "value 2", "value 4", "value 3"]),
        (&[(0, 3)], ["value 2", "value 3", "value 4", "value 1"]),
        (
            &[(1, 0), (2, 1)],
            ["value 2", "value 3", "value 1", "value 4"],
        ),
        (
            &[(3, 0), (3, 1), (3, 2)],
            ["value 4", "value 3", "value 2", "value 1"],
        ),
    ];
    for (moves, expected) in cases {
        let ops = moves
            .iter()
            .map(|(s, d)| move_("Patient.identifier", *s, *d))
            .collect();
        assert_eq!(
            patched(&four, ops),
            patient_with_identifiers(&expected),
            "{moves:?}"
        );
    }
}

#[test]
fn operation_on_missing_element() {
    let p = json!({"resourceType": "Patient", "identifier": [{"use": "official", "value": "123"}]});
    let err = failure(
        &p,
        vec![add(
            "Patient.identifier.where(use = 'official').period",
            "end",
            value("Date", json!("2021-12-01")),
        )],
    );
    assert_eq!(
        err.to_string(),
        "operation 1 (add Patient.identifier.where(use = 'official').period): \
         the path matches no element"
    );
}

#[test]
fn full_resource() {
    let p = chalmers();
    let out = patched(
        &p,
        vec![replace(
            "Patient.name[0].family",
            value("String", json!("Chalmers1")),
        )],
    );
    let mut expected = p.clone();
    expected["name"][0]["family"] = json!("Chalmers1");
    assert_eq!(out, expected);
}

// --- The operations on a fuller Patient --------------------------------------------------------

#[test]
fn add_and_insert_given_names() {
    let p = chalmers();
    let out = patched(
        &p,
        vec![
            insert("Patient.name[0].given", 0, value("String", json!("Pete"))),
            insert("Patient.name[0].given", 1, value("String", json!("P."))),
            add("Patient.name[1]", "given", value("String", json!("Jimmy"))),
            add(
                "Patient.name.where(use = 'usual')",
                "family",
                value("String", json!("C")),
            ),
        ],
    );
    assert_eq!(
        out["name"][0]["given"],
        json!(["Pete", "P.", "Peter", "James"])
    );
    assert_eq!(
        out["name"][1],
        json!({"use": "usual", "given": ["Jim", "Jimmy"], "family": "C"})
    );
}

#[test]
fn delete_and_replace_with_where() {
    let p = chalmers();
    let out = patched(&p, vec![delete("Patient.telecom.where(use = 'home')")]);
    assert_eq!(
        out["telecom"],
        json!([{"system": "phone", "value": "(03) 5555 6473", "use": "work"}])
    );
    let out = patched(
        &p,
        vec![replace(
            "Patient.telecom.where(use = 'work').first().value",
            value("String", json!("555")),
        )],
    );
    assert_eq!(out["telecom"][1]["value"], json!("555"));
    // A filter matching nothing deletes nothing.
    assert_eq!(
        patched(&p, vec![delete("Patient.telecom.where(use = 'mobile')")]),
        p
    );
    assert_eq!(
        patched(
            &p,
            vec![replace("Patient.gender", value("Code", json!("female")))]
        )["gender"],
        json!("female")
    );
}

#[test]
fn move_a_name() {
    let p = chalmers();
    let out = patched(&p, vec![move_("Patient.name", 1, 0)]);
    assert_eq!(out["name"][0]["use"], json!("usual"));
    assert_eq!(out["name"][1]["use"], json!("official"));
    assert_eq!(patched(&out, vec![move_("Patient.name", 0, 1)]), p);
    // Within a list of primitives.
    let out = patched(&p, vec![move_("Patient.name[0].given", 1, 0)]);
    assert_eq!(out["name"][0]["given"], json!(["James", "Peter"]));
}

#[test]
fn primitive_companions_follow_their_values() {
    let p = chalmers();
    // Deleting a primitive deletes its extensions.
    let out = patched(&p, vec![delete("Patient.birthDate")]);
    assert!(out.get("birthDate").is_none() && out.get("_birthDate").is_none());
    // Replacing it replaces them (the element is replaced whole), unless the new value has its own.
    let out = patched(
        &p,
        vec![replace(
            "Patient.birthDate",
            value("Date", json!("1974-12-26")),
        )],
    );
    assert_eq!(out["birthDate"], json!("1974-12-26"));
    assert!(out.get("_birthDate").is_none());
    let with_ext = json!({
        "name": "value",
        "valueDate": "1974-12-26",
        "_valueDate": {"id": "b"}
    });
    let out = patched(&p, vec![replace("Patient.birthDate", with_ext.clone())]);
    assert_eq!(out["_birthDate"], json!({"id": "b"}));
    let empty = json!({"resourceType": "Patient"});
    let out = patched(&empty, vec![add("Patient", "birthDate", with_ext)]);
    assert_eq!(
        out,
        json!({"resourceType": "Patient", "birthDate": "1974-12-26", "_birthDate": {"id": "b"}})
    );

    // `_given` entries stay aligned with `given`.
    let named = json!({"resourceType": "Patient", "name": [{
        "given": ["A", "B", "C"],
        "_given": [null, {"id": "b"}, null]
    }]});
    let out = patched(&named, vec![delete("Patient.name[0].given[1]")]);
    assert_eq!(out["name"][0], json!({"given": ["A", "C"]}));
    let out = patched(&named, vec![delete("Patient.name[0].given[0]")]);
    assert_eq!(
        out["name"][0],
        json!({"given": ["B", "C"], "_given": [{"id": "b"}, null]})
    );
    let out = patched(
        &named,
        vec![insert(
            "Patient.name[0].given",
            0,
            value("String", json!("Z")),
        )],
    );
    assert_eq!(
        out["name"][0],
        json!({"given": ["Z", "A", "B", "C"], "_given": [null, null, {"id": "b"}, null]})
    );
    let out = patched(&named, vec![move_("Patient.name[0].given", 1, 2)]);
    assert_eq!(
        out["name"][0],
        json!({"given": ["A", "C", "B"], "_given": [null, null, {"id": "b"}]})
    );
    let out = patched(
        &named,
        vec![replace(
            "Patient.name[0].given[1]",
            value("String", json!("Bee")),
        )],
    );
    assert_eq!(out["name"][0], json!({"given": ["A", "Bee", "C"]}));
    let plain = json!({"resourceType": "Patient", "name": [{"given": ["A"]}]});
    let out = patched(
        &plain,
        vec![add(
            "Patient.name[0]",
            "given",
            json!({"name": "value", "valueString": "B", "_valueString": {"id": "x"}}),
        )],
    );
    assert_eq!(
        out["name"][0],
        json!({"given": ["A", "B"], "_given": [null, {"id": "x"}]})
    );
}

#[test]
fn choice_elements() {
    let p = json!({"resourceType": "Patient", "gender": "male"});
    // `deceased` with a valueBoolean is `deceasedBoolean`.
    let dead = patched(
        &p,
        vec![add("Patient", "deceased", value("Boolean", json!(true)))],
    );
    assert_eq!(
        dead,
        json!({"resourceType": "Patient", "gender": "male", "deceasedBoolean": true})
    );
    // Present under any type.
    assert_eq!(
        reason(
            &dead,
            vec![add(
                "Patient",
                "deceased",
                value("DateTime", json!("2020-01-01"))
            )]
        ),
        Reason::AlreadyPresent("deceased".into())
    );
    // Replacing a choice takes the new type, in place.
    let out = patched(
        &dead,
        vec![replace(
            "Patient.deceased",
            value("DateTime", json!("2020-01-01")),
        )],
    );
    assert_eq!(
        out,
        json!({"resourceType": "Patient", "gender": "male", "deceasedDateTime": "2020-01-01"})
    );
    let obs =
        json!({"resourceType": "Observation", "valueQuantity": {"value": 1}, "status": "final"});
    let out = patched(
        &obs,
        vec![replace("Observation.value", value("String", json!("one")))],
    );
    assert_eq!(
        out,
        json!({"resourceType": "Observation", "valueString": "one", "status": "final"})
    );
    let out = patched(
        &obs,
        vec![replace(
            "Observation.value.value",
            value("Decimal", json!(2)),
        )],
    );
    assert_eq!(out["valueQuantity"], json!({"value": 2}));
    assert_eq!(
        patched(&obs, vec![delete("Observation.value")]),
        json!({"resourceType": "Observation", "status": "final"})
    );
    // A choice needs the type that a value[x] gives.
    assert_eq!(
        reason(&p, vec![add("Patient", "deceased", value_parts(vec![]))]),
        Reason::UntypedChoice("deceased".into())
    );
}

#[test]
fn contained_resources() {
    let p = json!({"resourceType": "Patient", "id": "p"});
    let org = json!({"resourceType": "Organization", "id": "o1", "name": "Acme"});
    let out = patched(
        &p,
        vec![
            add(
                "Patient",
                "contained",
                json!({"name": "value", "resource": org}),
            ),
            add(
                "Patient",
                "managingOrganization",
                value("Reference", json!({"reference": "#o1"})),
            ),
            add(
                "Patient.managingOrganization.resolve()",
                "alias",
                value("String", json!("ACME")),
            ),
        ],
    );
    assert_eq!(
        out,
        json!({
            "resourceType": "Patient",
            "id": "p",
            "contained": [{"resourceType": "Organization", "id": "o1", "name": "Acme", "alias": ["ACME"]}],
            "managingOrganization": {"reference": "#o1"}
        })
    );
    assert_eq!(
        patched(
            &out,
            vec![
                delete("Patient.managingOrganization"),
                delete("Patient.contained.where(id = 'o1')")
            ]
        ),
        p
    );
}

#[test]
fn numbers_and_member_order_are_kept() {
    let text = r#"{"resourceType":"Observation","status":"final","valueQuantity":{"value":1.50,"unit":"mg"},"note":[{"text":"a"}],"issued":"2020-01-01T00:00:00Z"}"#;
    let obs: Value = serde_json::from_str(text).unwrap();
    let out = patched(
        &obs,
        vec![
            replace("Observation.status", value("Code", json!("amended"))),
            replace("Observation.value.unit", value("String", json!("g"))),
            add("Observation", "comment", value("String", json!("x"))),
        ],
    );
    assert_eq!(
        serde_json::to_string(&out).unwrap(),
        r#"{"resourceType":"Observation","status":"amended","valueQuantity":{"value":1.50,"unit":"g"},"note":[{"text":"a"}],"issued":"2020-01-01T00:00:00Z","comment":"x"}"#
    );
    let precise: Value =
        serde_json::from_str(r#"{"name":"value","valueDecimal":0.10000000000000000001}"#).unwrap();
    let out = patched(&obs, vec![replace("Observation.value.value", precise)]);
    assert!(serde_json::to_string(&out)
        .unwrap()
        .contains(r#""value":0.10000000000000000001"#));
}

// --- Errors ------------------------------------------------------------------------------------

#[test]
fn paths_matching_nothing_or_too_much() {
    let p = chalmers();
    let err = failure(
        &json!({"resourceType": "Patient"}),
        vec![replace(
            "Patient.birthDate",
            value("Date", json!("2000-01-01")),
        )],
    );
    assert_eq!(
        err,
        PatchError::Failed {
            operation: 1,
            kind: Kind::Replace,
            path: "Patient.birthDate".into(),
            reason: Reason::NoMatch
        }
    );
    assert_eq!(
        err.to_string(),
        "operation 1 (replace Patient.birthDate): the path matches no element"
    );
    assert_eq!(
        reason(
            &p,
            vec![replace("Patient.name.use", value("Code", json!("old")))]
        ),
        Reason::Several(2)
    );
    assert_eq!(
        reason(&p, vec![delete("Patient.telecom")]),
        Reason::Several(2)
    );
    assert_eq!(
        reason(&p, vec![delete("Patient.name.given")]),
        Reason::Several(3)
    );
    assert_eq!(
        reason(
            &p,
            vec![add("Patient.name", "text", value("String", json!("x")))]
        ),
        Reason::Several(2)
    );
    assert_eq!(
        reason(
            &p,
            vec![insert("Patient.name.given", 0, value("String", json!("x")))]
        ),
        Reason::Several(2)
    );
    assert_eq!(reason(&p, vec![delete("Patient")]), Reason::Root);
    assert_eq!(
        reason(&p, vec![replace("Patient", value("String", json!("x")))]),
        Reason::Root
    );
    // Not elements of the resource.
    assert_eq!(
        reason(
            &p,
            vec![replace("Patient.gender.upper()", value("Code", json!("x")))]
        ),
        Reason::NotAnElement
    );
    assert_eq!(reason(&p, vec![delete("'x'")]), Reason::NotAnElement);
    assert_eq!(
        reason(&p, vec![delete("Patient.name.single()")]),
        Reason::Evaluation
    );
}

#[test]
fn indexes_out_of_range() {
    let p = chalmers();
    let v = value("String", json!("x"));
    assert_eq!(
        reason(&p, vec![insert("Patient.name[0].given", 3, v.clone())]),
        Reason::IndexOutOfRange { index: 3, len: 2 }
    );
    assert_eq!(
        reason(&p, vec![insert("Patient.address", 1, v.clone())]),
        Reason::IndexOutOfRange { index: 1, len: 0 }
    );
    assert_eq!(
        reason(&p, vec![move_("Patient.name", 0, 2)]),
        Reason::IndexOutOfRange { index: 2, len: 2 }
    );
    assert_eq!(
        reason(&p, vec![move_("Patient.name", 5, 0)]),
        Reason::IndexOutOfRange { index: 5, len: 2 }
    );
    assert_eq!(
        reason(&p, vec![move_("Patient.address", 0, 0)]),
        Reason::IndexOutOfRange { index: 0, len: 0 }
    );
}

#[test]
fn adding_what_is_there() {
    let p = chalmers();
    assert_eq!(
        reason(
            &p,
            vec![add(
                "Patient",
                "birthDate",
                value("Date", json!("2000-01-01"))
            )]
        ),
        Reason::AlreadyPresent("birthDate".into())
    );
    assert_eq!(
        reason(
            &p,
            vec![add(
                "Patient.name[0]",
                "family",
                value("String", json!("X"))
            )]
        ),
        Reason::AlreadyPresent("family".into())
    );
    assert_eq!(
        reason(
            &p,
            vec![add(
                "Patient.gender",
                "extension",
                value("String", json!("x"))
            )]
        ),
        Reason::Primitive
    );
}

#[test]
fn lists_and_not_lists() {
    let p = chalmers();
    let v = value("String", json!("x"));
    assert_eq!(
        reason(&p, vec![insert("Patient.gender", 0, v.clone())]),
        Reason::NotAList("gender".into())
    );
    assert_eq!(
        reason(&p, vec![insert("Patient.birthTime", 0, v.clone())]),
        Reason::NotAList("birthTime".into())
    );
    assert_eq!(
        reason(&p, vec![move_("Patient.gender", 0, 0)]),
        Reason::NotAList("gender".into())
    );
    assert_eq!(
        reason(
            &p,
            vec![insert("Patient.name.where(use = 'usual')", 0, v.clone())]
        ),
        Reason::NotAListPath
    );
    assert_eq!(
        reason(&p, vec![insert("Patient", 0, v.clone())]),
        Reason::NotAListPath
    );
    // A list named without the type: relative to the resource.
    assert_eq!(
        patched(&p, vec![move_("name", 1, 0)])["name"][0]["use"],
        json!("usual")
    );
    // Parts naming a single element twice.
    let twice = value_parts(vec![
        part("family", "String", json!("A")),
        part("family", "String", json!("B")),
    ]);
    assert_eq!(
        reason(&p, vec![add("Patient", "name", twice)]),
        Reason::NotRepeating("family".into(), 2)
    );
}

#[test]
fn a_failing_operation_changes_nothing() {
    let p = chalmers();
    let err = failure(
        &p,
        vec![
            replace("Patient.gender", value("Code", json!("female"))),
            delete("Patient.identifier"),
            replace(
                "Patient.birthTime",
                value("DateTime", json!("2000-01-01T00:00:00Z")),
            ),
            delete("Patient.active"),
        ],
    );
    assert_eq!(
        err.to_string(),
        "operation 3 (replace Patient.birthTime): the path matches no element"
    );
    // Operations apply in order: the second sees the first's work.
    let err = failure(
        &p,
        vec![
            delete("Patient.birthDate"),
            replace("Patient.birthDate", value("Date", json!("2000-01-01"))),
        ],
    );
    assert!(matches!(
        err,
        PatchError::Failed {
            operation: 2,
            kind: Kind::Replace,
            reason: Reason::NoMatch,
            ..
        }
    ));
    // A malformed operation anywhere: nothing is tried.
    let err = failure(
        &p,
        vec![
            delete("Patient.active"),
            op("remove", "Patient.gender", vec![]),
        ],
    );
    assert!(
        matches!(err, PatchError::Malformed { operation: 2, .. }),
        "{err}"
    );
}

#[test]
fn malformed_patches() {
    let p = json!({"resourceType": "Patient"});
    assert_eq!(
        apply(&p, &json!({"resourceType": "Patient"})),
        Err(PatchError::NotParameters)
    );
    assert_eq!(apply(&p, &json!([])), Err(PatchError::NotParameters));
    assert_eq!(
        apply(&p, &json!({"resourceType": "Parameters", "parameter": {}})),
        Err(PatchError::NotParameters)
    );
    let one = |o: Value| params(vec![o]);
    assert!(malformed(one(json!({"name": "operation"}))).contains("must have parts"));
    assert!(malformed(one(json!({"name": "op", "part": []}))).contains("named 'operation'"));
    let no_type =
        json!({"name": "operation", "part": [{"name": "path", "valueString": "Patient"}]});
    assert_eq!(malformed(one(no_type)), "part 'type' is missing");
    let err = apply(&p, &one(op("remove", "Patient.gender", vec![]))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "operation 1: unknown operation type 'remove' (expected add, insert, delete, replace or move)"
    );
    let no_path = json!({"name": "operation", "part": [{"name": "type", "valueCode": "delete"}]});
    assert_eq!(malformed(one(no_path)), "part 'path' is missing");
    assert_eq!(
        malformed(one(op(
            "add",
            "Patient",
            vec![value("Date", json!("2000-01-01"))]
        ))),
        "part 'name' is missing"
    );
    assert_eq!(
        malformed(one(op("add", "Patient", vec![name("birthDate")]))),
        "part 'value' is missing"
    );
    assert_eq!(
        malformed(one(op("replace", "Patient.gender", vec![]))),
        "part 'value' is missing"
    );
    assert_eq!(
        malformed(one(op(
            "insert",
            "Patient.name",
            vec![value("HumanName", json!({}))]
        ))),
        "part 'index' is missing"
    );
    assert_eq!(
        malformed(one(op("move", "Patient.name", vec![int("source", 0)]))),
        "part 'destination' is missing"
    );
    assert!(malformed(one(insert(
        "Patient.name",
        -1,
        value("HumanName", json!({}))
    )))
    .contains("0 or more"));
    assert!(malformed(one(op(
        "insert",
        "Patient.name",
        vec![
            json!({"name": "index", "valueString": "1"}),
            value("HumanName", json!({}))
        ]
    )))
    .contains("valueInteger"));
    assert!(malformed(one(op(
        "delete",
        "Patient.name",
        vec![json!({"name": "where", "valueString": "x"})]
    )))
    .contains("unknown part 'where'"));
    assert!(malformed(one(op(
        "delete",
        "Patient.name",
        vec![json!({"name": "path", "valueString": "x"})]
    )))
    .contains("more than once"));
    assert!(malformed(one(delete("Patient.name.(")))
        .starts_with("invalid path: FHIRPath 'Patient.name.('"));
    assert!(malformed(one(delete("Patient.name.nosuchfunction()"))).starts_with("invalid path"));
    assert!(malformed(one(add(
        "Patient",
        "birth.date",
        value("Date", json!("2000"))
    )))
    .contains("not an element name"));
    let both = json!({"name": "value", "valueString": "x", "part": []});
    assert!(malformed(one(add("Patient", "gender", both))).contains("exactly one of"));
    let two = json!({"name": "value", "valueString": "x", "valueCode": "y"});
    assert!(malformed(one(add("Patient", "gender", two))).contains("exactly one of"));
    let none = json!({"name": "value"});
    assert!(malformed(one(add("Patient", "gender", none))).contains("exactly one of"));
    let only_ext = json!({"name": "value", "_valueString": {"id": "x"}});
    assert!(malformed(one(add("Patient", "gender", only_ext))).contains("not supported"));
    let unnamed = value_parts(vec![json!({"valueString": "x"})]);
    assert!(malformed(one(add("Patient", "contact", unnamed))).contains("must have a name"));
    let bad_type = json!({"name": "operation", "part": [{"name": "type", "valueInteger": 1}, {"name": "path", "valueString": "Patient"}]});
    assert!(malformed(one(bad_type)).contains("valueString or valueCode"));
}

// --- Locating ----------------------------------------------------------------------------------

#[test]
fn locate() {
    let p = chalmers();
    let at = |e: &str| -> Vec<String> {
        compile(e)
            .unwrap()
            .locate(&p)
            .unwrap()
            .iter()
            .map(Location::to_string)
            .collect()
    };
    assert_eq!(at("Patient"), vec![""]);
    assert_eq!(at("Patient.birthDate"), vec!["/birthDate"]);
    assert_eq!(
        at("Patient.name.given"),
        vec!["/name/0/given/0", "/name/0/given/1", "/name/1/given/0"]
    );
    assert_eq!(
        at("Patient.telecom.where(use = 'work')"),
        vec!["/telecom/1"]
    );
    assert_eq!(at("Patient.deceased"), vec!["/deceasedBoolean"]);
    assert_eq!(
        at("Patient.contact.name.family"),
        vec!["/contact/0/name/family"]
    );
    assert_eq!(at("Patient.nothing"), Vec::<String>::new());
    assert_eq!(
        at("(Patient.gender | Patient.birthDate).last()"),
        vec!["/birthDate"]
    );
    let loc = &compile("Patient.name[1].given")
        .unwrap()
        .locate(&p)
        .unwrap()[0];
    assert_eq!(
        loc.steps(),
        [
            Step::Key("name".into()),
            Step::Index(1),
            Step::Key("given".into()),
            Step::Index(0)
        ]
    );
    assert_eq!(loc.get(&p), Some(&json!("Jim")));
    assert_eq!(
        compile("Patient.name.given.count()").unwrap().locate(&p),
        Err(LocateError::NotANode { index: 0 })
    );
    assert_eq!(
        compile("Patient.name.single()").unwrap().locate(&p),
        Err(LocateError::Evaluation)
    );
}
