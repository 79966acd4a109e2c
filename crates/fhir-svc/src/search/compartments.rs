//! The R4 CompartmentDefinitions (Patient, Encounter, RelatedPerson, Practitioner, Device):
//! which reference parameters of which types put a resource in a compartment. Compartment
//! search (`Patient/123/Observation?...`) is a search with one more condition: the resource
//! points at the compartment's owner through one of them.

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::domain::{ResourceId, ResourceType};
use crate::error::FhirError;

use super::params::{self, ParamType};
use super::query::Condition;

const DEFINITIONS: &str = include_str!("../../definitions/r4/compartments.json");

/// compartment type -> member type -> parameters
static COMPARTMENTS: LazyLock<HashMap<String, HashMap<String, Vec<String>>>> =
    LazyLock::new(|| serde_json::from_str(DEFINITIONS).expect("vendored compartments are JSON"));

/// The condition that puts a `member` resource in the compartment of `owner`/`id`.
pub fn condition(
    owner: &ResourceType,
    id: &ResourceId,
    member: &ResourceType,
) -> Result<Condition, FhirError> {
    let members = COMPARTMENTS.get(owner.as_str()).ok_or_else(|| {
        FhirError::invalid(format!("{owner} is not a compartment (R4 defines Patient, Encounter, RelatedPerson, Practitioner and Device)"))
    })?;
    let params = members.get(member.as_str()).ok_or_else(|| {
        FhirError::invalid(format!(
            "{member} resources are not in {owner} compartments"
        ))
    })?;
    let ways = params
        .iter()
        .filter(|p| {
            params::find(member.as_str(), p).is_some_and(|d| d.kind == ParamType::Reference)
        })
        .map(|p| Condition::Reference {
            param: p.clone(),
            values: vec![(Some(owner.to_string()), id.to_string())],
        })
        .collect();
    Ok(Condition::AnyOf(ways))
}

/// The reference parameters that put a `member` resource in a patient's compartment (none:
/// resources of that type are in no patient's compartment).
pub fn patient_params(member: &str) -> Vec<String> {
    COMPARTMENTS
        .get("Patient")
        .and_then(|members| members.get(member))
        .map(|params| {
            params
                .iter()
                .filter(|p| params::find(member, p).is_some_and(|d| d.kind == ParamType::Reference))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_join_the_patient_compartment_through_subject_and_performer() {
        let c = condition(
            &"Patient".parse().unwrap(),
            &"p1".parse().unwrap(),
            &"Observation".parse().unwrap(),
        )
        .unwrap();
        let Condition::AnyOf(ways) = c else {
            panic!("not AnyOf")
        };
        let params: Vec<String> = ways
            .iter()
            .map(|w| match w {
                Condition::Reference { param, .. } => param.clone(),
                _ => String::new(),
            })
            .collect();
        assert!(params.contains(&"subject".to_owned()), "{params:?}");
        assert!(params.contains(&"performer".to_owned()), "{params:?}");
        assert!(condition(
            &"Observation".parse().unwrap(),
            &"o".parse().unwrap(),
            &"Patient".parse().unwrap()
        )
        .is_err());
    }
}
