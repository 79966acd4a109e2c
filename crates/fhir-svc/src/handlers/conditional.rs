//! The conditional interactions (R4 http.html#cond-update and friends): a search decides the
//! target. None, one or several matches lead to different outcomes, as the spec sets out.

use crate::error::FhirError;

/// How many resources a condition matched.
pub enum Matches {
    None,
    One(String),
    Several,
}

impl Matches {
    pub fn of(mut ids: Vec<String>) -> Self {
        match ids.len() {
            0 => Matches::None,
            1 => Matches::One(ids.remove(0)),
            _ => Matches::Several,
        }
    }
}

pub fn several(what: &str) -> FhirError {
    FhirError::PreconditionFailed(format!(
        "the criteria of the conditional {what} match more than one resource"
    ))
}
