//! The R4 definitions the validator checks against, precompiled once.
//!
//! `definitions/r4/` is derived from the official package by `scripts/fhir-definitions.py`
//! and compiled into the crate. On first use it is turned into a tree the walker can follow
//! without string work: every resource, datatype and backbone element becomes a [`Node`]
//! whose JSON property names (choice variants such as `valueQuantity` spelled out) map
//! straight to the element and the type they hold. Content references (`#Questionnaire.item`)
//! point at the referenced node; required bindings point at their enumerated value set.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use serde::Deserialize;

use crate::bindings::ValueSet;
use crate::primitives::{Formats, Primitive};

const STRUCTURES: &str = include_str!("../definitions/r4/structures.json");
const VALUE_SETS: &str = include_str!("../definitions/r4/value-sets.json");

/// The vendored definitions, parsed on first use. The data is compiled in and tested, so
/// failing to load it is a build defect, not an input error.
pub(crate) static DEFINITIONS: LazyLock<Definitions> = LazyLock::new(|| {
    Definitions::load(STRUCTURES, VALUE_SETS)
        .unwrap_or_else(|e| panic!("vendored R4 definitions: {e}"))
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeId(usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ValueSetId(usize);

/// A named type of the specification.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TypeDef {
    Primitive(Primitive),
    Complex { node: NodeId },
    Resource { node: NodeId, is_abstract: bool },
}

/// What an element holds, as far as walking the JSON is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ElementType {
    /// A primitive; `companion` tells whether a `_name` object may carry its id and
    /// extensions (not for Element.id, Extension.url, Resource.id, xhtml).
    Primitive {
        primitive: Primitive,
        companion: bool,
    },
    /// A datatype, or a backbone element defined inline: an object walked against the node.
    Object(NodeId),
    /// Any resource, whose own `resourceType` says what it is (`contained`,
    /// `Bundle.entry.resource`, `Parameters.parameter.resource`).
    Resource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Max {
    Bounded(u32),
    Unbounded,
}

impl Max {
    /// Whether the element is a JSON array (any max above 1).
    pub(crate) fn repeats(self) -> bool {
        !matches!(self, Max::Bounded(0 | 1))
    }

    pub(crate) fn allows(self, count: usize) -> bool {
        match self {
            Max::Bounded(max) => count <= max as usize,
            Max::Unbounded => true,
        }
    }
}

/// One element definition of a node.
#[derive(Debug)]
pub(crate) struct Element {
    /// The last part of its path: `status`, `value[x]`.
    pub(crate) name: Box<str>,
    pub(crate) min: u32,
    pub(crate) max: Max,
    /// The value set of a required binding, when it could be enumerated.
    pub(crate) binding: Option<ValueSetId>,
}

/// A JSON property name of a node: which element it fills and with what type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Property {
    pub(crate) element: usize,
    pub(crate) ty: ElementType,
}

/// The elements of a resource, a datatype or a backbone element.
#[derive(Debug, Default)]
pub(crate) struct Node {
    pub(crate) elements: Vec<Element>,
    properties: HashMap<Box<str>, Property>,
}

impl Node {
    pub(crate) fn property(&self, json_name: &str) -> Option<Property> {
        self.properties.get(json_name).copied()
    }
}

pub(crate) struct Definitions {
    types: HashMap<Box<str>, TypeDef>,
    nodes: Vec<Node>,
    value_sets: Vec<ValueSet>,
    pub(crate) formats: Formats,
    /// The node of `Element`: what a primitive's `_name` companion may hold.
    pub(crate) element: NodeId,
    pub(crate) extension: NodeId,
    pub(crate) coding: NodeId,
    pub(crate) codeable_concept: NodeId,
}

impl Definitions {
    pub(crate) fn type_def(&self, name: &str) -> Option<TypeDef> {
        self.types.get(name).copied()
    }

    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    pub(crate) fn value_set(&self, id: ValueSetId) -> &ValueSet {
        &self.value_sets[id.0]
    }

    fn load(structures: &str, value_sets: &str) -> Result<Definitions, String> {
        let lines: Vec<Line> =
            serde_json::from_str(structures).map_err(|e| format!("structures.json: {e}"))?;
        let value_set_lines: Vec<ValueSetLine> =
            serde_json::from_str(value_sets).map_err(|e| format!("value-sets.json: {e}"))?;
        let (value_sets, value_set_ids) = load_value_sets(value_set_lines);
        let mut builder = Builder {
            types: HashMap::new(),
            nodes: Vec::new(),
            value_set_ids,
        };
        let mut regexes = Vec::new();
        // First the types, so that elements can refer to any of them.
        for line in lines.iter().filter(|l| l.kind.is_some()) {
            let def = match line.kind.as_deref() {
                Some("primitive-type") => {
                    let p = Primitive::from_name(&line.path)
                        .ok_or_else(|| format!("unknown primitive {}", line.path))?;
                    if let Some(regex) = &line.regex {
                        regexes.push((p, regex.as_str()));
                    }
                    TypeDef::Primitive(p)
                }
                Some("complex-type") => TypeDef::Complex {
                    node: builder.new_node(),
                },
                Some("resource") => TypeDef::Resource {
                    node: builder.new_node(),
                    is_abstract: line.is_abstract,
                },
                other => return Err(format!("{}: unknown kind {other:?}", line.path)),
            };
            builder.types.insert(line.path.as_str().into(), def);
        }
        // Then the elements, type by type.
        let mut start = 0;
        while start < lines.len() {
            let end = lines[start + 1..]
                .iter()
                .position(|l| l.kind.is_some())
                .map_or(lines.len(), |i| start + 1 + i);
            builder.add_type(&lines[start], &lines[start + 1..end])?;
            start = end;
        }
        let object = |name: &str| match builder.types.get(name) {
            Some(TypeDef::Complex { node }) => Ok(*node),
            _ => Err(format!("no datatype {name}")),
        };
        Ok(Definitions {
            element: object("Element")?,
            extension: object("Extension")?,
            coding: object("Coding")?,
            codeable_concept: object("CodeableConcept")?,
            formats: Formats::new(&regexes)?,
            types: builder.types,
            nodes: builder.nodes,
            value_sets,
        })
    }
}

/// One line of structures.json: a type's root, or one of its elements.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    path: String,
    kind: Option<String>,
    #[serde(default, rename = "abstract")]
    is_abstract: bool,
    regex: Option<String>,
    min: Option<u32>,
    max: Option<String>,
    types: Option<Vec<String>>,
    #[serde(default)]
    plain: bool,
    #[serde(rename = "contentReference")]
    content_reference: Option<String>,
    binding: Option<String>,
    /// Read by [`crate::summary`], not by validation.
    #[serde(default)]
    #[allow(dead_code)]
    summary: bool,
}

/// One line of value-sets.json.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueSetLine {
    url: String,
    version: Option<String>,
    codes: Option<HashMap<String, Vec<String>>>,
    #[allow(dead_code)] // why it is skipped: for people reading the file
    skipped: Option<String>,
}

/// The enumerated value sets, and their ids by binding canonical (`url` and `url|version`).
fn load_value_sets(lines: Vec<ValueSetLine>) -> (Vec<ValueSet>, HashMap<String, ValueSetId>) {
    let mut sets = Vec::new();
    let mut ids = HashMap::new();
    for line in lines {
        let Some(codes) = line.codes else { continue };
        let id = ValueSetId(sets.len());
        let codes = codes
            .into_iter()
            .map(|(system, codes)| {
                (
                    system.into_boxed_str(),
                    codes
                        .into_iter()
                        .map(String::into_boxed_str)
                        .collect::<HashSet<_>>(),
                )
            })
            .collect();
        if let Some(version) = &line.version {
            ids.insert(format!("{}|{version}", line.url), id);
        }
        ids.insert(line.url.clone(), id);
        sets.push(ValueSet::new(line.url.into_boxed_str(), codes));
    }
    (sets, ids)
}

struct Builder {
    types: HashMap<Box<str>, TypeDef>,
    nodes: Vec<Node>,
    value_set_ids: HashMap<String, ValueSetId>,
}

impl Builder {
    fn new_node(&mut self) -> NodeId {
        self.nodes.push(Node::default());
        NodeId(self.nodes.len() - 1)
    }

    /// Adds the elements of one type (in snapshot order: a backbone element comes right
    /// before its children) to the type's node and to new backbone nodes.
    fn add_type(&mut self, root: &Line, elements: &[Line]) -> Result<(), String> {
        let root_node = match self.types.get(root.path.as_str()) {
            Some(TypeDef::Complex { node } | TypeDef::Resource { node, .. }) => *node,
            Some(TypeDef::Primitive(_)) if elements.is_empty() => return Ok(()),
            _ => {
                return Err(format!(
                    "{}: elements of a type that has no node",
                    root.path
                ))
            }
        };
        let mut nodes_by_path: HashMap<&str, NodeId> =
            HashMap::from([(root.path.as_str(), root_node)]);
        let mut content_references = Vec::new();
        for (i, line) in elements.iter().enumerate() {
            let (parent, name) = line
                .path
                .rsplit_once('.')
                .ok_or_else(|| format!("{}: not an element path", line.path))?;
            let parent = *nodes_by_path
                .get(parent)
                .ok_or_else(|| format!("{}: parent not defined before", line.path))?;
            let has_children = elements.get(i + 1).is_some_and(|next| {
                next.path.len() > line.path.len()
                    && next.path.starts_with(&line.path)
                    && next.path.as_bytes()[line.path.len()] == b'.'
            });
            let max = match line.max.as_deref() {
                Some("*") => Max::Unbounded,
                Some(n) => Max::Bounded(n.parse().map_err(|_| format!("{}: max {n}", line.path))?),
                None => return Err(format!("{}: no max", line.path)),
            };
            let binding = line
                .binding
                .as_ref()
                .and_then(|canonical| self.value_set_ids.get(canonical).copied());
            let node = &mut self.nodes[parent.0];
            let element = node.elements.len();
            node.elements.push(Element {
                name: name.into(),
                min: line.min.unwrap_or(0),
                max,
                binding,
            });
            if let Some(reference) = &line.content_reference {
                content_references.push((parent, element, name, reference.trim_start_matches('#')));
                continue;
            }
            let types = line
                .types
                .as_deref()
                .ok_or_else(|| format!("{}: neither types nor contentReference", line.path))?;
            let typed: Vec<(Box<str>, ElementType)> = if has_children {
                let child = self.new_node();
                nodes_by_path.insert(&line.path, child);
                vec![(name.into(), ElementType::Object(child))]
            } else if let Some(prefix) = name.strip_suffix("[x]") {
                types
                    .iter()
                    .map(|t| {
                        Ok((
                            choice_name(prefix, t).into(),
                            self.element_type(t, line.plain)?,
                        ))
                    })
                    .collect::<Result<_, String>>()?
            } else if let [t] = types {
                vec![(name.into(), self.element_type(t, line.plain)?)]
            } else {
                return Err(format!("{}: several types but not a choice", line.path));
            };
            for (json_name, ty) in typed {
                self.add_property(parent, json_name, Property { element, ty }, &line.path)?;
            }
        }
        for (parent, element, name, target) in content_references {
            let target = *nodes_by_path
                .get(target)
                .ok_or_else(|| format!("contentReference to unknown {target}"))?;
            self.add_property(
                parent,
                name.into(),
                Property {
                    element,
                    ty: ElementType::Object(target),
                },
                name,
            )?;
        }
        Ok(())
    }

    fn add_property(
        &mut self,
        node: NodeId,
        json_name: Box<str>,
        property: Property,
        path: &str,
    ) -> Result<(), String> {
        match self.nodes[node.0].properties.insert(json_name, property) {
            None => Ok(()),
            Some(_) => Err(format!("{path}: JSON name defined twice")),
        }
    }

    fn element_type(&self, name: &str, plain: bool) -> Result<ElementType, String> {
        match self.types.get(name) {
            Some(TypeDef::Primitive(primitive)) => Ok(ElementType::Primitive {
                primitive: *primitive,
                companion: !plain && primitive.has_companion(),
            }),
            Some(TypeDef::Complex { node }) => Ok(ElementType::Object(*node)),
            Some(TypeDef::Resource {
                is_abstract: true, ..
            }) if name == "Resource" => Ok(ElementType::Resource),
            _ => Err(format!("unknown element type {name}")),
        }
    }
}

/// The JSON name of one type of a choice element: `value[x]` + `dateTime` = `valueDateTime`.
fn choice_name(prefix: &str, type_name: &str) -> String {
    let mut chars = type_name.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase());
    prefix.chars().chain(first).chain(chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn property(type_name: &str, path: &[&str]) -> Option<Property> {
        let defs = &*DEFINITIONS;
        let mut node = match defs.type_def(type_name)? {
            TypeDef::Complex { node } | TypeDef::Resource { node, .. } => node,
            TypeDef::Primitive(_) => return None,
        };
        let (last, inner) = path.split_last()?;
        for name in inner {
            match defs.node(node).property(name)?.ty {
                ElementType::Object(n) => node = n,
                _ => return None,
            }
        }
        defs.node(node).property(last)
    }

    #[test]
    fn loads_every_resource_type() {
        let concrete = DEFINITIONS
            .types
            .values()
            .filter(|t| {
                matches!(
                    t,
                    TypeDef::Resource {
                        is_abstract: false,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(concrete, 146);
        assert_eq!(
            DEFINITIONS.types.len(),
            146 + 2 + 41 + 20,
            "resources, 2 abstract ones, datatypes, primitives"
        );
    }

    #[test]
    fn choice_variants_are_spelled_out() {
        assert_eq!(choice_name("value", "dateTime"), "valueDateTime");
        let p = property("Observation", &["valueQuantity"]).unwrap();
        assert!(matches!(p.ty, ElementType::Object(_)));
        let s = property("Observation", &["valueString"]).unwrap();
        assert_eq!(s.element, p.element);
        assert!(property("Observation", &["valueReference"]).is_none());
        assert!(property("Observation", &["value"]).is_none());
    }

    #[test]
    fn content_references_point_at_their_node() {
        let item = property("Questionnaire", &["item"]).unwrap();
        let nested = property("Questionnaire", &["item", "item"]).unwrap();
        assert_eq!(item.ty, nested.ty);
        assert!(property("Questionnaire", &["item", "item", "item", "linkId"]).is_some());
    }

    #[test]
    fn plain_primitives_have_no_companion() {
        let id = property("Patient", &["id"]).unwrap().ty;
        assert_eq!(
            id,
            ElementType::Primitive {
                primitive: Primitive::Id,
                companion: false
            }
        );
        let url = property("Extension", &["url"]).unwrap().ty;
        assert_eq!(
            url,
            ElementType::Primitive {
                primitive: Primitive::Uri,
                companion: false
            }
        );
        let gender = property("Patient", &["gender"]).unwrap().ty;
        assert_eq!(
            gender,
            ElementType::Primitive {
                primitive: Primitive::Code,
                companion: true
            }
        );
    }

    #[test]
    fn required_bindings_resolve_with_their_version() {
        let defs = &*DEFINITIONS;
        let Some(TypeDef::Resource { node, .. }) = defs.type_def("Observation") else {
            panic!()
        };
        let status = &defs.node(node).elements[defs.node(node).property("status").unwrap().element];
        let vs = defs.value_set(status.binding.expect("observation-status is enumerable"));
        assert_eq!(&*vs.url, "http://hl7.org/fhir/ValueSet/observation-status");
        assert!(vs.contains_code("final"));
        let Some(TypeDef::Complex { node }) = defs.type_def("Attachment") else {
            panic!()
        };
        let content_type =
            &defs.node(node).elements[defs.node(node).property("contentType").unwrap().element];
        assert!(
            content_type.binding.is_none(),
            "mimetypes cannot be enumerated"
        );
    }
}
