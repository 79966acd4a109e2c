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
                } else {
                    by_type.entry(base).or_default().push(param.clone());
                }
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
    /// Each component's parameter type and its expression relative to the context.
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
        // Components that look outside their context (`%resource...`) are left out: the
        // evaluator sees only the context item there.
        if d.components.iter().any(|c| c.expression.contains('%')) {
            continue;
        }
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
