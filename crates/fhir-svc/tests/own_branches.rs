//! A parameter of many types runs, on each type, only the branches of its union that start at
//! that type (`search::params`). Over every official R4 example, those give exactly what the
//! whole R4 expression gives.

use fhir_svc::search::params;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Definition {
    code: String,
    base: Vec<String>,
    expression: String,
}

#[test]
fn own_branches_give_what_the_whole_expression_gives() {
    let definitions: Vec<Definition> =
        serde_json::from_str(include_str!("../definitions/r4/search-parameters.json")).unwrap();
    let whole: Vec<(Definition, fhirpath::Expr)> = definitions
        .into_iter()
        .filter(|d| d.expression.contains('|') && d.base.len() > 1)
        .filter_map(|d| fhirpath::compile(&d.expression).ok().map(|e| (d, e)))
        .collect();
    let mut compared = 0;
    for entry in std::fs::read_dir(hds_testkit::fhir_examples()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".json") || !name.starts_with(|c: char| c.is_ascii_uppercase()) {
            continue;
        }
        let Ok(resource) = serde_json::from_slice::<Value>(&std::fs::read(&path).unwrap()) else {
            continue;
        };
        let Some(rt) = resource["resourceType"].as_str() else {
            continue;
        };
        for (d, expression) in &whole {
            if !d.base.iter().any(|b| b == rt) {
                continue;
            }
            let own = params::find(rt, &d.code).expect("registered");
            let got: Vec<Value> = own
                .expression
                .evaluate(&resource)
                .iter()
                .map(|i| i.value().clone())
                .collect();
            let want: Vec<Value> = expression
                .evaluate(&resource)
                .iter()
                .map(|i| i.value().clone())
                .collect();
            assert_eq!(got, want, "{name}: {rt}.{}", d.code);
            compared += 1;
        }
    }
    assert!(compared > 10_000, "only {compared} evaluations compared");
}
