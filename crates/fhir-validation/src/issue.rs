//! What the validator reports: one [`Issue`] per problem, shaped like an OperationOutcome
//! issue so that the FHIR service can map it one to one.

use std::fmt;

/// One problem found in a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueCode,
    /// FHIRPath-style location of the offending element, e.g. `Patient.name[0].given[1]`.
    /// Repeating elements always carry their index; a choice element is named by its JSON
    /// key (`Observation.valueQuantity`); a missing element by its definition's name
    /// (`Observation.status`, `UsageContext.value[x]`). Inside a nested resource the path
    /// continues from where the resource sits (`Bundle.entry[0].resource.status`).
    pub path: String,
    pub message: String,
}

impl Issue {
    pub(crate) fn error(code: IssueCode, path: String, message: String) -> Issue {
        Issue {
            severity: Severity::Error,
            code,
            path,
            message,
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} at {}: {}",
            self.severity.as_str(),
            self.code.as_str(),
            self.path,
            self.message
        )
    }
}

/// OperationOutcome `issue.severity` (http://hl7.org/fhir/issue-severity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// The OperationOutcome `issue.code`s (http://hl7.org/fhir/issue-type) this validator uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueCode {
    /// The JSON does not have the shape the definitions give it: an unknown element, a JSON
    /// type that does not fit (a string where an object or a number belongs), an array where
    /// a single value belongs or the reverse, too many items, empty objects or arrays, `null`
    /// outside a primitive array's alignment, misaligned `_name` companions, two variants of
    /// one choice element.
    Structure,
    /// A required element (min ≥ 1), or a resource's `resourceType`, is missing.
    Required,
    /// A primitive's text does not have its type's format (regex, range, calendar date), or
    /// is an empty string.
    Value,
    /// A rule of the base specification that is checked structurally here (only `ext-1`: an
    /// extension has either a value or nested extensions, not both).
    Invariant,
    /// A code outside the value set of a required binding.
    CodeInvalid,
    /// The input is not a resource at all: not a JSON object, or an unknown or abstract
    /// `resourceType`.
    Invalid,
    /// A string longer than the 1 MiB characters R4 allows.
    TooLong,
    /// The resource nests deeper than the validator follows.
    TooCostly,
}

impl IssueCode {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::Structure => "structure",
            IssueCode::Required => "required",
            IssueCode::Value => "value",
            IssueCode::Invariant => "invariant",
            IssueCode::CodeInvalid => "code-invalid",
            IssueCode::Invalid => "invalid",
            IssueCode::TooLong => "too-long",
            IssueCode::TooCostly => "too-costly",
        }
    }
}
