use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::{json, Value};

use super::{compile, Expr, Item};

fn eval(expr: &str, resource: &Value) -> Vec<Value> {
    compile(expr)
        .unwrap_or_else(|e| panic!("{e}"))
        .evaluate(resource)
        .iter()
        .map(|i| i.value().clone())
        .collect()
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "extension": [
            {"url": "http://x", "valueString": "x-value"},
            {"url": "http://y", "valueCode": "y-value"}
        ],
        "name": [
            {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
            {"use": "usual", "given": ["Jim"]}
        ],
        "telecom": [
            {"system": "phone", "value": "555"},
            {"system": "email", "value": "p@x.org"}
        ],
        "birthDate": "1974-12-25",
        "deceasedBoolean": false,
        "active": true
    })
}

#[test]
fn paths_flatten_and_start_with_the_type() {
    let p = patient();
    assert_eq!(
        eval("Patient.name.given", &p),
        vec![json!("Peter"), json!("James"), json!("Jim")]
    );
    assert_eq!(eval("name.family", &p), vec![json!("Chalmers")]);
    assert_eq!(eval("Resource.id", &p), vec![json!("p1")]);
    assert_eq!(eval("DomainResource.id", &p), vec![json!("p1")]);
    assert!(eval("Observation.code", &p).is_empty());
    assert!(eval("Patient.nothing.here", &p).is_empty());
    // Members are borrowed nodes of the resource.
    let e = compile("Patient.birthDate").unwrap();
    assert_eq!(e.evaluate(&p), vec![Item::Node(&p["birthDate"])]);
}

#[test]
fn choice_elements_and_types() {
    let obs = json!({"resourceType": "Observation", "valueQuantity": {"value": 1}});
    let q = json!({"value": 1});
    assert_eq!(eval("Observation.value", &obs), vec![q.clone()]);
    assert_eq!(eval("Observation.value as Quantity", &obs), vec![q.clone()]);
    assert_eq!(
        eval("(Observation.value as Quantity)", &obs),
        vec![q.clone()]
    );
    assert_eq!(
        eval("Observation.value.as(Quantity)", &obs),
        vec![q.clone()]
    );
    assert_eq!(
        eval("Observation.value.ofType(Quantity)", &obs),
        vec![q.clone()]
    );
    assert_eq!(
        eval("Observation.value.ofType(FHIR.Quantity)", &obs),
        vec![q.clone()]
    );
    assert_eq!(
        eval("Observation.value is Quantity", &obs),
        vec![json!(true)]
    );
    assert_eq!(
        eval("Observation.value is Period", &obs),
        vec![json!(false)]
    );
    assert!(eval("Observation.value as CodeableConcept", &obs).is_empty());
    assert_eq!(
        eval("(Observation.value as Quantity).value", &obs),
        vec![json!(1)]
    );

    // Subtypes: an Age is a Quantity.
    let cond = json!({"resourceType": "Condition", "onsetAge": {"value": 52, "unit": "a"}});
    assert_eq!(eval("Condition.onset.as(Age)", &cond).len(), 1);
    assert_eq!(eval("Condition.onset as Quantity", &cond).len(), 1);
    assert!(eval("Condition.onset.as(dateTime)", &cond).is_empty());

    // Primitive choices carry their type, not just "a string".
    let obs = json!({"resourceType": "Observation", "effectiveDateTime": "2020-01-02T10:00:00Z"});
    assert_eq!(
        eval("Observation.effective as dateTime", &obs),
        vec![json!("2020-01-02T10:00:00Z")]
    );
    assert!(eval("Observation.effective as Period", &obs).is_empty());
    assert!(eval("Observation.effective as string", &obs).is_empty());
    let obs = json!({"resourceType": "Observation", "valueString": "2020"});
    assert!(eval("Observation.value as dateTime", &obs).is_empty());
    assert_eq!(
        eval("Observation.value as string", &obs),
        vec![json!("2020")]
    );
    // Several components: `as` filters each.
    let obs = json!({"resourceType": "Observation", "component": [
        {"valueQuantity": {"value": 1}},
        {"valueCodeableConcept": {"text": "a"}},
        {"valueQuantity": {"value": 2}}
    ]});
    assert_eq!(
        eval("(Observation.component.value as Quantity).value", &obs),
        vec![json!(1), json!(2)]
    );
    // `valueSet` is not a choice of `value`.
    let inc = json!({"resourceType": "X", "valueSet": ["http://vs"]});
    assert!(eval("X.value", &inc).is_empty());
    // Loose typing of nodes that are not from a choice key.
    let p = patient();
    assert_eq!(eval("Patient.birthDate is date", &p), vec![json!(true)]);
    assert_eq!(eval("Patient.active is boolean", &p), vec![json!(true)]);
    assert!(eval("Patient.name.ofType(HumanName)", &p).is_empty());
    assert_eq!(eval("Patient.name.given.ofType(string)", &p).len(), 3);
}

#[test]
fn logic_and_equality() {
    let p = patient();
    let deceased = "Patient.deceased.exists() and Patient.deceased != false";
    assert_eq!(eval(deceased, &p), vec![json!(false)]);
    let dead = json!({"resourceType": "Patient", "deceasedDateTime": "2020-01-01"});
    assert_eq!(eval(deceased, &dead), vec![json!(true)]);
    let dead = json!({"resourceType": "Patient", "deceasedBoolean": true});
    assert_eq!(eval(deceased, &dead), vec![json!(true)]);
    let alive = json!({"resourceType": "Patient"});
    assert_eq!(eval(deceased, &alive), vec![json!(false)]);

    assert_eq!(eval("Patient.active.not()", &p), vec![json!(false)]);
    assert_eq!(eval("Patient.name.empty()", &p), vec![json!(false)]);
    assert_eq!(
        eval("Patient.name.exists(use = 'usual')", &p),
        vec![json!(true)]
    );
    assert_eq!(eval("true or {}", &p), vec![json!(true)]);
    assert!(eval("false or {}", &p).is_empty());
    assert_eq!(eval("false implies {}", &p), vec![json!(true)]);
    assert_eq!(eval("true xor false", &p), vec![json!(true)]);
    assert!(eval("Patient.gender = 'male'", &p).is_empty());
    assert_eq!(eval("1 = 1.0", &p), vec![json!(true)]);
    assert_eq!(eval("'a' != 'b'", &p), vec![json!(true)]);
    assert_eq!(eval("'Ab  c' ~ 'ab c'", &p), vec![json!(true)]);
    assert_eq!(
        eval("Patient.birthDate > @1970-01-01", &p),
        vec![json!(true)]
    );
    assert!(eval("Patient.birthDate > @1974", &p).is_empty());
    assert_eq!(eval("2 + 3 * 4 - 1", &p), vec![json!(13)]);
    assert_eq!(eval("7 div 2 = 3 and 7 mod 2 = 1", &p), vec![json!(true)]);
    assert_eq!(eval("'a' + 'b' & {} & 'c'", &p), vec![json!("abc")]);
    assert_eq!(eval("'Jim' in Patient.name.given", &p), vec![json!(true)]);
    assert_eq!(
        eval("Patient.name.given contains 'Bob'", &p),
        vec![json!(false)]
    );
    // Collections of different sizes are not equal.
    assert_eq!(
        eval("Patient.name.given = 'x' | 'y'", &p),
        vec![json!(false)]
    );
    // A type error (a multi-item criterion or comparison) makes the whole result empty.
    assert!(eval("Patient.name.where(given) | Patient.id", &p).is_empty());
    assert!(eval("Patient.name.given > 'a'", &p).is_empty());
}

#[test]
fn where_this_index_and_subsetting() {
    let p = patient();
    assert_eq!(
        eval("Patient.telecom.where(system='email').value", &p),
        vec![json!("p@x.org")]
    );
    assert_eq!(
        eval("Patient.name.given.where($this.startsWith('J'))", &p),
        vec![json!("James"), json!("Jim")]
    );
    assert_eq!(
        eval("Patient.name.given.where($index = 1)", &p),
        vec![json!("James")]
    );
    assert_eq!(eval("Patient.name.given.first()", &p), vec![json!("Peter")]);
    assert_eq!(eval("Patient.name.given.last()", &p), vec![json!("Jim")]);
    assert_eq!(eval("Patient.name.given[1]", &p), vec![json!("James")]);
    assert!(eval("Patient.name.given[7]", &p).is_empty());
    assert_eq!(eval("Patient.name.given.count()", &p), vec![json!(3)]);
    assert_eq!(
        eval("Patient.name.given.skip(1).take(1)", &p),
        vec![json!("James")]
    );
    assert_eq!(
        eval("Patient.name.select(given.first())", &p),
        vec![json!("Peter"), json!("Jim")]
    );
    assert_eq!(
        eval("Patient.name.given.tail().count()", &p),
        vec![json!(2)]
    );
    assert!(eval("Patient.name.given.single()", &p).is_empty());
    assert_eq!(
        eval("Patient.name.where(family.exists()).given.single()", &p).len(),
        0
    );
    assert_eq!(eval("%resource.id", &p), vec![json!("p1")]);
    // A composite parameter's component: the context is an item inside the resource.
    let name = &p["name"][0];
    let family_and_id = crate::compile("family | %resource.id").unwrap();
    let values: Vec<Value> = family_and_id
        .evaluate_on(&p, name)
        .iter()
        .map(|i| i.value().clone())
        .collect();
    assert_eq!(values, vec![name["family"].clone(), json!("p1")]);
    assert_eq!(
        eval(
            "Patient.name.where(use = %resource.name.first().use).family",
            &p
        ),
        vec![json!("Chalmers")]
    );
    assert_eq!(
        eval("Patient.name.given.distinct().count()", &p),
        vec![json!(3)]
    );
    assert_eq!(eval("iif(Patient.active, 'y', 'n')", &p), vec![json!("y")]);
    assert_eq!(
        eval("Patient.name.family.upper()", &p),
        vec![json!("CHALMERS")]
    );
    assert_eq!(
        eval("Patient.name.family.substring(1, 3)", &p),
        vec![json!("hal")]
    );
    assert_eq!(eval("Patient.name.family.length()", &p), vec![json!(8)]);
    assert_eq!(
        eval("Patient.birthDate.children().count()", &p),
        vec![json!(0)]
    );
    assert_eq!(
        eval("Patient.telecom.descendants().count()", &p),
        vec![json!(4)]
    );
}

#[test]
fn try_evaluate_tells_errors_from_empty() {
    let p = patient();
    let e = compile("Patient.name.given.startsWith('P')").unwrap();
    // Several items where one is required: an error, which `evaluate` reports as empty.
    assert_eq!(e.try_evaluate(&p), Err(super::EvalError));
    assert!(e.evaluate(&p).is_empty());
    let e = compile("Patient.contact.name").unwrap();
    assert_eq!(e.try_evaluate(&p), Ok(Vec::new()));
    let e = compile("Patient.birthDate").unwrap();
    assert_eq!(
        e.try_evaluate(&p),
        Ok(vec![Item::Node(&json!("1974-12-25"))])
    );
}

#[test]
fn unions() {
    let p = patient();
    assert_eq!(
        eval("Patient.name.family | Patient.telecom.value", &p),
        vec![json!("Chalmers"), json!("555"), json!("p@x.org")]
    );
    // Each side is a whole expression; duplicates are removed; other types yield nothing.
    assert_eq!(
        eval(
            "Observation.code | (Patient.name.given.where($this = 'Jim')) | Patient.name[1].given",
            &p
        ),
        vec![json!("Jim")]
    );
    assert_eq!(
        eval(
            "Patient.telecom.where(system='email') | Person.telecom.where(system='email')",
            &p
        ),
        vec![json!({"system": "email", "value": "p@x.org"})]
    );
    assert_eq!(
        eval("Patient.name.given.union(Patient.name.family).count()", &p),
        vec![json!(4)]
    );
    assert_eq!(
        eval("Patient.name.given.combine(Patient.name.given).count()", &p),
        vec![json!(6)]
    );
    assert_eq!(
        eval("(1 | 1.0 | 2 | 'a' | 'a').count()", &p),
        vec![json!(3)]
    );
    let objects =
        "(Patient.telecom | Patient.telecom.select($this) | Patient.name.first()).count()";
    assert_eq!(eval(objects, &p), vec![json!(3)]);
    // Many items (duplicates are found by hashing; speed belongs to benchmarks, not here).
    let entries: Vec<Value> = (0..20_000)
        .map(|i| json!({"item": {"reference": format!("Patient/{i}")}}))
        .collect();
    let list = json!({"resourceType": "List", "entry": entries});
    assert_eq!(
        eval("List.entry.item | List.entry.item", &list).len(),
        20_000
    );
    assert_eq!(
        eval("List.entry.item.distinct().count()", &list),
        vec![json!(20_000)]
    );
}

#[test]
fn extensions() {
    let p = patient();
    assert_eq!(
        eval("Patient.extension('http://x')", &p),
        vec![json!({"url": "http://x", "valueString": "x-value"})]
    );
    assert_eq!(
        eval("Patient.extension('http://y').value", &p),
        vec![json!("y-value")]
    );
    assert_eq!(
        eval("Patient.extension('http://y').value.ofType(code)", &p),
        vec![json!("y-value")]
    );
    assert!(eval("Patient.extension('http://z')", &p).is_empty());
    assert_eq!(
        eval("Patient.hasExtension('http://x')", &p),
        vec![json!(true)]
    );
    let qr = json!({"resourceType": "QuestionnaireResponse", "item": [
        {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/questionnaireresponse-isSubject", "valueBoolean": true}],
         "answer": [{"valueReference": {"reference": "Patient/1"}}, {"valueString": "x"}]},
        {"answer": [{"valueReference": {"reference": "Patient/2"}}]}
    ]});
    assert_eq!(
        eval("QuestionnaireResponse.item.where(hasExtension('http://hl7.org/fhir/StructureDefinition/questionnaireresponse-isSubject')).answer.value.ofType(Reference)", &qr),
        vec![json!({"reference": "Patient/1"})]
    );
}

#[test]
fn resolve_and_references() {
    let account = json!({"resourceType": "Account", "subject": [
        {"reference": "Patient/123"},
        {"reference": "Device/d1"},
        {"reference": "http://example.org/fhir/Patient/456/_history/2"},
        {"reference": "urn:uuid:1234"},
        {"reference": "urn:uuid:5678", "type": "Patient"},
        {"identifier": {"value": "no reference"}},
        {"reference": "#pat"},
        {"reference": "#dev"}
    ], "contained": [
        {"resourceType": "Patient", "id": "pat"},
        {"resourceType": "Device", "id": "dev"}
    ]});
    assert_eq!(
        eval(
            "Account.subject.where(resolve() is Patient).reference",
            &account
        ),
        vec![
            json!("Patient/123"),
            json!("http://example.org/fhir/Patient/456/_history/2"),
            json!("urn:uuid:5678"),
            json!("#pat")
        ]
    );
    assert_eq!(
        eval("Account.subject.resolve().id", &account),
        vec![
            json!("123"),
            json!("d1"),
            json!("456"),
            json!("pat"),
            json!("dev")
        ]
    );
    assert_eq!(
        eval(
            "Account.subject.where(resolve() is Device).reference",
            &account
        ),
        vec![json!("Device/d1"), json!("#dev")]
    );
    // Inside a bundle, references find their entry.
    let bundle = json!({"resourceType": "Bundle", "type": "document", "entry": [
        {"fullUrl": "urn:uuid:c1", "resource": {"resourceType": "Composition", "id": "c", "subject": {"reference": "urn:uuid:p1"}}},
        {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "p"}}
    ]});
    assert_eq!(
        eval("Bundle.entry[0].resource", &bundle),
        vec![bundle["entry"][0]["resource"].clone()]
    );
    assert_eq!(
        eval(
            "Bundle.entry[0].resource.subject.where(resolve() is Patient)",
            &bundle
        ),
        vec![json!({"reference": "urn:uuid:p1"})]
    );
    assert_eq!(
        eval("Bundle.entry[0].resource.subject.resolve().id", &bundle),
        vec![json!("p")]
    );
    assert!(eval("Bundle.entry[2].resource", &bundle).is_empty());
}

#[test]
fn literals_and_lexing() {
    let p = patient();
    assert_eq!(eval(r"'it\'s \u00e9\t\\'", &p), vec![json!("it's é\t\\")]);
    assert_eq!(
        eval("Patient.`name`.given.first()", &p),
        vec![json!("Peter")]
    );
    assert_eq!(eval("-1.50 + 1", &p), vec![json!(-0.5)]);
    assert_eq!(eval("@2020-01-01T10:00 is dateTime", &p), vec![json!(true)]);
    assert_eq!(eval("%ucum", &p), vec![json!("http://unitsofmeasure.org")]);
    assert_eq!(
        eval("Patient.id // comment\n /* c */ = 'p1'", &p),
        vec![json!(true)]
    );
}

#[test]
fn compile_errors_never_panic() {
    for bad in [
        "",
        "Patient.",
        "Patient.name.foo()",
        "Patient.where()",
        "Patient.name.where(a, b)",
        "(Patient.name",
        "'unterminated",
        "Patient.name[0",
        "%nope",
        "$total",
        "1 'mg'",
        "Patient.name as",
        "Patient.name ! x",
        "ofType(1)",
        "Patient.name.exists(",
        "@",
        "'\\q'",
        "'\\u12'",
    ] {
        let err = compile(bad).expect_err(bad);
        assert_eq!(err.expression, bad);
        assert!(err.to_string().starts_with("FHIRPath '"), "{err}");
    }
    let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    assert!(compile(&deep).is_err());
    let long = format!("Patient{}", ".name".repeat(5000));
    assert!(compile(&long).is_err());
    let negs = format!("{}1", "-".repeat(5000));
    assert!(compile(&negs).is_err());
    let wide = vec!["Patient.name"; 2000].join(" | ");
    assert!(compile(&wide).is_ok());
}

#[test]
fn odd_data_never_panics() {
    let exprs = [
        "Patient.name.given",
        "Patient.name.given.substring(-1, 5) | Patient.name.given.substring(99)",
        "Patient.name.given.indexOf('é')",
        "Patient.deceased.exists() and Patient.deceased != false",
        "Patient.value as Quantity",
        "Patient.link.other.resolve()",
        "descendants().count()",
        "children().repeat(children()).count()",
        "Patient.id + 1",
        "Patient.count * 9223372036854775807",
        "Patient.count div 0 | Patient.count mod 0 | Patient.count / 0",
        "-Patient.count",
        "Patient.name.given[-1]",
        "Patient.name.given[Patient.count]",
        "Patient.name.given.toInteger() | Patient.count.toDecimal() | Patient.x.toBoolean()",
        "Patient.name.skip(-5).take(-1)",
        "Patient.name.given.replace('', '-')",
        "now() > @2000 and today() > @2000-01-01",
    ];
    let weird = [
        json!(null),
        json!([1, 2]),
        json!("Patient"),
        json!({"resourceType": 7}),
        json!({"resourceType": "Patient", "name": [null, {"given": [null, "é€", 5]}], "count": 9223372036854775807_i64, "link": [{"other": {"reference": "/"}}, {"other": {"reference": "#"}}]}),
        json!({"resourceType": "Patient", "name": {"given": "not an array"}, "count": 0, "x": [[[]]]}),
        json!({"resourceType": "Patient", "valueQuantity": [{"value": 1}, null], "deceasedDateTime": "x", "deceasedBoolean": true}),
    ];
    for e in exprs {
        let c = compile(e).unwrap_or_else(|err| panic!("{err}"));
        for w in &weird {
            let _ = c.evaluate(w);
        }
    }
}

// --- The official R4 package ----------------------------------------------------------------

fn package_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("HOME")?).join(".cache/hds-fhir/package");
    dir.is_dir().then_some(dir)
}

struct Param {
    file: String,
    code: String,
    base: Vec<String>,
    expression: String,
}

fn search_parameters(dir: &std::path::Path) -> Vec<Param> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("package folder")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("SearchParameter-") && n.ends_with(".json"))
        .collect();
    entries.sort();
    for name in entries {
        let text = std::fs::read_to_string(dir.join(&name)).expect("readable");
        let sp: Value = serde_json::from_str(&text).expect("JSON");
        let Some(expression) = sp["expression"].as_str() else {
            continue;
        };
        out.push(Param {
            file: name,
            code: sp["code"].as_str().unwrap_or_default().to_string(),
            base: sp["base"]
                .as_array()
                .map(|b| {
                    b.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            expression: expression.to_string(),
        });
    }
    out
}

#[test]
fn every_r4_search_parameter_compiles() {
    let Some(dir) = package_dir() else {
        println!("skipped: no R4 package at ~/.cache/hds-fhir/package");
        return;
    };
    let params = search_parameters(&dir);
    assert!(
        params.len() > 1000,
        "only {} search parameters",
        params.len()
    );
    let failures: Vec<String> = params
        .iter()
        .filter_map(|p| {
            compile(&p.expression)
                .err()
                .map(|e| format!("{}: {e}", p.file))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!("compiled {} search parameter expressions", params.len());
}

#[test]
fn every_r4_search_parameter_evaluates_on_the_examples() {
    let Some(dir) = package_dir() else {
        println!("skipped: no R4 package at ~/.cache/hds-fhir/package");
        return;
    };
    let started = Instant::now();
    let params = search_parameters(&dir);
    let compiled: Vec<(&Param, Expr)> = params
        .iter()
        .map(|p| (p, compile(&p.expression).expect("compiles")))
        .collect();
    let mut by_base: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (p, _)) in compiled.iter().enumerate() {
        for b in &p.base {
            by_base.entry(b.as_str()).or_default().push(i);
        }
    }
    let for_type = |rt: &str| -> Vec<usize> {
        let mut v: Vec<usize> = by_base.get(rt).cloned().unwrap_or_default();
        v.extend(by_base.get("Resource").into_iter().flatten());
        if !matches!(rt, "Bundle" | "Binary" | "Parameters") {
            v.extend(by_base.get("DomainResource").into_iter().flatten());
        }
        v
    };

    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("package folder")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && !n.starts_with("SearchParameter-"))
        .collect();
    names.sort();
    // Parsing the package dominates; the few huge definition bundles add nothing a sample of
    // the others does not, so files over 2 MB are left out.
    const MAX_BYTES: u64 = 2_000_000;
    let (mut files, mut evaluations, mut non_empty, mut skipped) = (0, 0, 0, 0);
    let mut found: HashMap<(String, String), Vec<Value>> = HashMap::new();
    let spot = [
        ("Patient-example.json", "name"),
        ("Observation-example.json", "code"),
        ("Observation-example.json", "patient"),
        ("Observation-example.json", "value-quantity"),
        ("Observation-example.json", "date"),
        ("Patient-example.json", "deceased"),
    ];
    for name in &names {
        let path = dir.join(name);
        if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) > MAX_BYTES {
            skipped += 1;
            continue;
        }
        let Ok(resource) =
            serde_json::from_slice::<Value>(&std::fs::read(&path).expect("readable"))
        else {
            continue;
        };
        let Some(rt) = resource["resourceType"].as_str() else {
            continue;
        };
        files += 1;
        for i in for_type(rt) {
            let (p, e) = &compiled[i];
            let result = e.evaluate(&resource);
            evaluations += 1;
            if !result.is_empty() {
                non_empty += 1;
            }
            if spot.contains(&(name.as_str(), p.code.as_str())) {
                found
                    .entry((name.clone(), p.code.clone()))
                    .or_default()
                    .extend(result.iter().map(|i| i.value().clone()));
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{evaluations} evaluations ({non_empty} non-empty) of {} expressions on {files} resources \
         ({skipped} files over {MAX_BYTES} bytes skipped) in {elapsed:?}",
        compiled.len()
    );
    assert!(
        files > 2000 && evaluations > 50_000,
        "{files} files, {evaluations} evaluations"
    );

    let get = |f: &str, c: &str| {
        found
            .get(&(f.to_string(), c.to_string()))
            .cloned()
            .unwrap_or_default()
    };
    let patient: Value =
        serde_json::from_slice(&std::fs::read(dir.join("Patient-example.json")).unwrap()).unwrap();
    let obs: Value =
        serde_json::from_slice(&std::fs::read(dir.join("Observation-example.json")).unwrap())
            .unwrap();
    assert_eq!(
        get("Patient-example.json", "name"),
        patient["name"].as_array().unwrap().clone()
    );
    assert_eq!(
        get("Observation-example.json", "code"),
        vec![obs["code"].clone()]
    );
    assert!(get("Observation-example.json", "code")[0]["coding"].is_array());
    assert_eq!(
        get("Observation-example.json", "patient"),
        vec![json!({"reference": "Patient/example"})]
    );
    assert_eq!(
        get("Observation-example.json", "value-quantity"),
        vec![obs["valueQuantity"].clone()]
    );
    assert_eq!(
        get("Observation-example.json", "date"),
        vec![obs["effectiveDateTime"].clone()]
    );
    assert_eq!(get("Patient-example.json", "deceased"), vec![json!(false)]);
    let subject = compile("Observation.subject.where(resolve() is Patient)").unwrap();
    assert_eq!(
        subject.evaluate(&obs),
        vec![Item::Node(&json!({"reference": "Patient/example"}))]
    );
}
