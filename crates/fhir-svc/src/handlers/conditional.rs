//! The conditional interactions (R4 http.html#cond-update and friends): a search decides the
//! target. None, one or several matches lead to different outcomes, as the spec sets out.

use crate::domain::ResourceId;
use crate::error::FhirError;
use crate::http::resource_id;

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

/// The resource a conditional update writes: the one match, or (none matching) the body's id
/// or a new one. A body id that differs from the match is a 400; several matches a 412.
pub fn update_target(found: Matches, body_id: Option<&str>) -> Result<ResourceId, FhirError> {
    match found {
        Matches::None => match body_id {
            Some(b) => resource_id(b),
            None => Ok(ResourceId::generate()),
        },
        Matches::One(found) => {
            if let Some(b) = body_id.filter(|b| *b != found) {
                return Err(FhirError::invalid(format!(
                    "the resource's id '{b}' is not that of the resource the criteria match ('{found}')"
                )));
            }
            resource_id(&found)
        }
        Matches::Several => Err(several("update")),
    }
}
