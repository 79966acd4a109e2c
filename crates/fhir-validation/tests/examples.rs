//! Every official R4 example (npm `hl7.fhir.r4.examples` 4.0.1, fetched into
//! `~/.cache/hds-fhir/package` by `python3 scripts/fhir-definitions.py --fetch-only`) is a
//! valid resource, so the validator must find no error in any of them, apart from the few
//! published examples that break the spec themselves, listed below with the rule they break.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fhir_validation::{validate, Issue, IssueCode, Severity};
use serde_json::Value;

/// A published example that is invalid: every error it gets must be the one named here, so
/// that listing it hides nothing else.
struct Exception {
    file: &'static str,
    code: IssueCode,
    /// Each error's path ends with one of these.
    paths: &'static [&'static str],
    reason: &'static str,
}

const fn exception(
    file: &'static str,
    code: IssueCode,
    paths: &'static [&'static str],
    reason: &'static str,
) -> Exception {
    Exception {
        file,
        code,
        paths,
        reason,
    }
}

/// `base` (SearchParameter.base, 1..*) is missing from the ten search parameters the
/// publisher generated for the CodeSystem and ValueSet extensions.
const NO_BASE: &str = "the generated search parameter has no `base`, which is 1..*";
const BASE: &[&str] = &["SearchParameter.base"];

/// The published examples that break R4 themselves. Each must still fail as described.
const KNOWN_EXCEPTIONS: &[Exception] = &[
    exception(
        "ImplementationGuide-fhir.json",
        IssueCode::Required,
        &["ImplementationGuide.name", "ImplementationGuide.status"],
        "the package's own IG resource has neither `name` nor `status`, both 1..1",
    ),
    exception(
        "Questionnaire-qs1.json",
        IssueCode::Required,
        &[".linkId"],
        "32 nested items (the display items of its groups) have no `linkId`, which is 1..1",
    ),
    exception(
        "SearchParameter-codesystem-extensions-CodeSystem-author.json",
        IssueCode::Required,
        BASE,
        NO_BASE,
    ),
    exception(
        "SearchParameter-codesystem-extensions-CodeSystem-effective.json",
        IssueCode::Required,
        BASE,
        NO_BASE,
    ),
    exception(
        "SearchParameter-codesystem-extensions-CodeSystem-end.json",
        IssueCode::Required,
        BASE,
        NO_BASE,
    ),
    exception(
        "SearchParameter-codesystem-extensions-CodeSystem-keyword.json",
        IssueCode::Required,
        BASE,
        NO_BASE,
    ),
    exception(
        "SearchParameter-codesystem-extensions-CodeSystem-workflow.json",
        IssueCode::Required,
        BASE,
        NO_BASE,
    ),
    exception(
        "SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json",
        IssueCode::Value,
        &["SearchParameter.id"],
        "its id has 67 characters; an id has at most 64",
    ),
    exception(
        "SearchParameter-valueset-extensions-ValueSet-author.json",
        IssueCode::Required,
        BASE,
        NO_BASE,
    ),
    exception(
        "SearchParameter-valueset-extensions-ValueSet-effective.json",
        IssueCode::Required,
        BASE,
        NO_BASE,
    ),
    exception(
        "SearchParameter-valueset-extensions-ValueSet-end.json",
        IssueCode::Required,
        BASE,
        NO_BASE,
    ),
    exception(
        "SearchParameter-valueset-extensions-ValueSet-keyword.json",
        IssueCode::Required,
        BASE,
        NO_BASE,
    ),
    exception(
        "SearchParameter-valueset-extensions-ValueSet-workflow.json",
        IssueCode::Required,
        BASE,
        NO_BASE,
    ),
];

/// Every file whose name starts with an uppercase letter and ends in .json is one resource.
fn examples(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".json") && name.starts_with(|c: char| c.is_ascii_uppercase())
        })
        .collect();
    files.sort();
    files
}

/// The errors of one example, or why it could not be read as the resource its name says.
fn errors(path: &Path) -> Result<Vec<Issue>, String> {
    let name = path.file_name().unwrap().to_string_lossy();
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let resource: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let expected_type = name.split(['-', '.']).next().unwrap();
    if resource["resourceType"] != expected_type {
        return Err(format!(
            "resourceType {} is not {expected_type}",
            resource["resourceType"]
        ));
    }
    Ok(validate(&resource)
        .into_iter()
        .filter(|i| i.severity == Severity::Error)
        .collect())
}

/// Runs `check` on every example, on all cores (the package is 190 MB of JSON and the tests
/// are an unoptimised build), keyed by file name.
fn for_every_example<T: Send>(check: impl Fn(&Path) -> T + Sync) -> BTreeMap<String, T> {
    let files = examples(&hds_testkit::fhir_examples());
    assert!(files.len() > 5000, "only {} examples", files.len());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = files.len().div_ceil(workers);
    let check = &check;
    let results: BTreeMap<String, T> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|p| {
                            (
                                p.file_name().unwrap().to_string_lossy().into_owned(),
                                check(p),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(results.len(), files.len());
    results
}

#[test]
fn every_official_example_is_valid() {
    let results = for_every_example(errors);
    let mut report = Vec::new();
    for (name, result) in &results {
        let exception = KNOWN_EXCEPTIONS.iter().find(|e| e.file == name);
        let issues = match result {
            Ok(issues) => issues,
            Err(e) => {
                report.push(format!("{name}: unreadable: {e}"));
                continue;
            }
        };
        match exception {
            Some(e) if issues.is_empty() => report.push(format!(
                "{name}: listed as a known exception ({}) but valid",
                e.reason
            )),
            Some(e) => {
                let other = issues
                    .iter()
                    .filter(|i| i.code != e.code || !e.paths.iter().any(|p| i.path.ends_with(p)));
                report.extend(other.map(|i| format!("{name}: besides its known exception: {i}")));
            }
            None => {
                report.extend(issues.iter().take(5).map(|i| format!("{name}: {i}")));
                if issues.len() > 5 {
                    report.push(format!("{name}: ... {} more", issues.len() - 5));
                }
            }
        }
    }
    for e in KNOWN_EXCEPTIONS {
        assert!(
            results.contains_key(e.file),
            "known exception {} is not in the package",
            e.file
        );
    }
    let valid = results
        .values()
        .filter(|r| matches!(r, Ok(i) if i.is_empty()))
        .count();
    println!(
        "{} examples, {valid} valid, {} known exceptions",
        results.len(),
        KNOWN_EXCEPTIONS.len()
    );
    assert!(
        report.is_empty(),
        "{} problems:\n{}",
        report.len(),
        report.join("\n")
    );
}

/// The walk reaches every object of every example: with an unknown element added to each
/// object, each of them is reported, once.
#[test]
fn every_object_of_every_example_is_walked() {
    fn add_unknown(value: &mut Value) -> usize {
        match value {
            Value::Object(object) => {
                let nested: usize = object.values_mut().map(add_unknown).sum();
                object.insert("zzUnknown".into(), Value::Bool(true));
                nested + 1
            }
            Value::Array(items) => items.iter_mut().map(add_unknown).sum(),
            _ => 0,
        }
    }
    let results = for_every_example(|path| {
        let name = path.file_name().unwrap().to_string_lossy();
        if KNOWN_EXCEPTIONS.iter().any(|e| e.file == name) {
            return Ok(());
        }
        let mut resource: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let objects = add_unknown(&mut resource);
        let issues = validate(&resource);
        let unknown = issues
            .iter()
            .filter(|i| i.code == IssueCode::Structure && i.path.ends_with(".zzUnknown"))
            .count();
        match (unknown == objects, issues.len() == unknown) {
            (true, true) => Ok(()),
            _ => Err(format!(
                "{objects} objects, {unknown} unknown reported, {} issues in all",
                issues.len()
            )),
        }
    });
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} examples:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
