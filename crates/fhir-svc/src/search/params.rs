//! The R4 SearchParameters, compiled once per process.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use serde::Deserialize;

const DEFINITIONS: &str = include_str!("../../definitions/r4/search-parameters.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Token,
    String,
    Reference,
    Date,
    Uri,
    Number,
    Quantity,
}

#[derive(Deserialize)]
struct Definition {
    code: String,
    #[serde(rename = "type")]
    kind: ParamType,
    base: Vec<String>,
    expression: String,
    #[serde(default)]
    target: Vec<String>,
}

/// One search parameter of one resource type.
#[derive(Debug)]
pub struct Param {
    pub code: String,
    pub kind: ParamType,
    pub expression: fhirpath::Expr,
    /// For a reference parameter, the types it can point at.
    pub targets: Vec<String>,
}

pub struct Registry {
    by_type: HashMap<String, Vec<Arc<Param>>>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::load);

impl Registry {
    fn load() -> Self {
        let definitions: Vec<Definition> =
            serde_json::from_str(DEFINITIONS).expect("vendored search parameters are JSON");
        let mut by_type: HashMap<String, Vec<Arc<Param>>> = HashMap::new();
        let mut common: Vec<Arc<Param>> = Vec::new();
        for d in definitions {
            let expression = match fhirpath::compile(&d.expression) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(code = %d.code, error = %e, "search parameter not indexed");
                    continue;
                }
            };
            let param = Arc::new(Param {
                code: d.code,
                kind: d.kind,
                expression,
                targets: d.target,
            });
            for base in d.base {
                if base == "Resource" || base == "DomainResource" {
                    common.push(param.clone());
                    continue;
                }
                // A parameter of many types (`patient`: thirty of them) is a union with a branch
                // per type; each type runs only its own branches, which give the same values.
                let own = own_branches(&d.expression, &base)
                    .and_then(|e| fhirpath::compile(&e).ok())
                    .map(|expression| {
                        Arc::new(Param {
                            code: param.code.clone(),
                            kind: param.kind,
                            expression,
                            targets: param.targets.clone(),
                        })
                    });
                by_type
                    .entry(base)
                    .or_default()
                    .push(own.unwrap_or_else(|| param.clone()));
            }
        }
        for rt in crate::domain::ResourceType::all() {
            by_type
                .entry(rt.to_owned())
                .or_default()
                .extend(common.iter().cloned());
        }
        Self { by_type }
    }
}

/// The branches of a union expression (`A.x | B.y | (A.z as T)`) that start at `base`, when
/// there are others: any other branch starts at another type and gives nothing on a `base`.
/// `None` when every branch is kept (or none starts at a type).
fn own_branches(expression: &str, base: &str) -> Option<String> {
    let mut branches = Vec::new();
    let (mut depth, mut quoted, mut start) = (0usize, false, 0);
    for (i, c) in expression.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            '|' if !quoted && depth == 0 => {
                branches.push(expression[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    branches.push(expression[start..].trim());
    if branches.len() < 2 {
        return None;
    }
    let root = |b: &str| -> Option<String> {
        let b = b.trim_start_matches('(');
        let name: String = b
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        name.starts_with(|c: char| c.is_ascii_uppercase())
            .then_some(name)
    };
    // A branch that does not start at a type (none in R4) keeps the whole expression.
    if branches.iter().any(|b| root(b).is_none()) {
        return None;
    }
    let own: Vec<&str> = branches
        .iter()
        .copied()
        .filter(|b| root(b).as_deref() == Some(base))
        .collect();
    match own.as_slice() {
        [] => None,
        _ if own.len() == branches.len() => None,
        // A union also drops repeated values: one branch alone needs that said.
        [one] => Some(format!("({one}).distinct()")),
        _ => Some(own.join(" | ")),
    }
}

/// The parameters that apply to a resource type.
pub fn for_type(resource_type: &str) -> &'static [Arc<Param>] {
    REGISTRY
        .by_type
        .get(resource_type)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// One parameter of a resource type, by its code.
pub fn find(resource_type: &str, code: &str) -> Option<&'static Param> {
    for_type(resource_type)
        .iter()
        .find(|p| p.code == code)
        .map(|p| p.as_ref())
}

/// One composite SearchParameter (R4 `type: composite`): its components are evaluated
/// together on each item of its context expression, so `code$value` pairs stay paired.
#[derive(Debug)]
pub struct Composite {
    pub code: String,
    pub context: fhirpath::Expr,
    /// Each component's parameter type and its expression relative to the context (with
    /// `%resource` the whole resource).
    pub components: Vec<(ParamType, fhirpath::Expr)>,
}

#[derive(Deserialize)]
struct CompositeDefinition {
    code: String,
    base: Vec<String>,
    expression: String,
    components: Vec<ComponentDefinition>,
}

#[derive(Deserialize)]
struct ComponentDefinition {
    #[serde(rename = "type")]
    kind: ParamType,
    expression: String,
}

const COMPOSITE_DEFINITIONS: &str = include_str!("../../definitions/r4/composite-parameters.json");

static COMPOSITES: LazyLock<HashMap<String, Vec<Arc<Composite>>>> = LazyLock::new(|| {
    let definitions: Vec<CompositeDefinition> = serde_json::from_str(COMPOSITE_DEFINITIONS)
        .expect("vendored composite parameters are JSON");
    let mut by_type: HashMap<String, Vec<Arc<Composite>>> = HashMap::new();
    for d in definitions {
        let compiled = fhirpath::compile(&d.expression).and_then(|context| {
            let components = d
                .components
                .iter()
                .map(|c| fhirpath::compile(&c.expression).map(|e| (c.kind, e)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((context, components))
        });
        let Ok((context, components)) = compiled else {
            tracing::warn!(code = %d.code, "composite search parameter not indexed");
            continue;
        };
        let composite = Arc::new(Composite {
            code: d.code,
            context,
            components,
        });
        for base in d.base {
            by_type.entry(base).or_default().push(composite.clone());
        }
    }
    by_type
});

/// The composite parameters of a resource type.
pub fn composites_for(resource_type: &str) -> &'static [Arc<Composite>] {
    COMPOSITES
        .get(resource_type)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// One composite parameter of a resource type, by its code.
pub fn find_composite(resource_type: &str, code: &str) -> Option<&'static Composite> {
    composites_for(resource_type)
        .iter()
        .find(|p| p.code == code)
        .map(|p| p.as_ref())
}

#[cfg(test)]
mod tests {
    use super::own_branches;

    #[test]
    fn a_type_keeps_its_own_branches() {
        let e = "AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient) | (Observation.value as Quantity) | Observation.component.value";
        assert_eq!(
            own_branches(e, "Observation").as_deref(),
            Some("(Observation.value as Quantity) | Observation.component.value")
        );
        assert_eq!(
            own_branches(e, "CarePlan").as_deref(),
            Some("(CarePlan.subject.where(resolve() is Patient)).distinct()")
        );
        // One branch, or all of them the type's own: nothing to take away.
        assert_eq!(own_branches("Observation.code", "Observation"), None);
        assert_eq!(
            own_branches("Observation.a | Observation.b", "Observation"),
            None
        );
        // A bar inside parentheses or quotes is not a branch.
        assert_eq!(
            own_branches("A.x.where(y = 'p|q') | B.z", "A").as_deref(),
            Some("(A.x.where(y = 'p|q')).distinct()")
        );
    }
}
