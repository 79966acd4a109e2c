//! Resources are checked against the R4 StructureDefinitions (crate `fhir-validation`) on
//! every write, so that nothing the specification forbids is stored, and on `$validate`.

use serde_json::Value;

use crate::error::{FhirError, Issue};

/// What is wrong with `resource`, as OperationOutcome issues with their paths.
pub fn problems(resource: &Value) -> Vec<Issue> {
    fhir_validation::validate(resource)
        .into_iter()
        .map(|i| {
            let issue = Issue {
                code: i.code.as_str(),
                diagnostics: if i.path.is_empty() {
                    i.message
                } else {
                    format!("{}: {}", i.path, i.message)
                },
                expression: None,
            };
            if i.path.is_empty() {
                issue
            } else {
                issue.at(i.path)
            }
        })
        .collect()
}

/// A write's check: every problem of the resource in one 400.
pub fn check(resource: &Value) -> Result<(), FhirError> {
    let problems = problems(resource);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(FhirError::Invalid(problems))
    }
}
