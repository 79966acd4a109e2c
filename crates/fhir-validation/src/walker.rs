//! The walk over one resource's JSON, element by element, against the definitions' nodes.
//!
//! The JSON format (R4 json.html) decides the shape of every element: a property whose max
//! is above 1 is an array even with one item, one whose max is 1 is not; a primitive is a
//! JSON boolean, number or string and may have a `_name` companion object holding its id and
//! extensions (for arrays, a `_name` array aligned with the values, `null` filling the gaps);
//! a resource names its type in `resourceType`. Empty objects, empty arrays, empty strings
//! and stray `null`s are not allowed.
//!
//! The walk borrows the input and renders paths only when it reports, so validating a valid
//! resource allocates little beyond one counter vector per object.

use serde_json::{Map, Value};

use crate::definitions::{Definitions, Element, ElementType, Max, Node, NodeId, TypeDef};
use crate::issue::{Issue, IssueCode};
use crate::path::Path;
use crate::primitives::{json_type_name, quote, Primitive};

/// How many objects deep the walk goes before it gives up on a branch. Real resources stay
/// far below (a Questionnaire's nested items, extensions of extensions); the cap keeps a
/// hostile input from exhausting the stack.
pub(crate) const MAX_DEPTH: usize = 100;

pub(crate) struct Walker<'a> {
    defs: &'static Definitions,
    path: Path<'a>,
    issues: Vec<Issue>,
    /// Scratch for `_name` lookups, so that looking for a companion does not allocate.
    companion_key: String,
    too_deep: bool,
}

impl<'a> Walker<'a> {
    pub(crate) fn new(defs: &'static Definitions) -> Walker<'a> {
        Walker {
            defs,
            path: Path::default(),
            issues: Vec::new(),
            companion_key: String::new(),
            too_deep: false,
        }
    }

    pub(crate) fn into_issues(self) -> Vec<Issue> {
        self.issues
    }

    fn report(&mut self, code: IssueCode, message: String) {
        self.issues
            .push(Issue::error(code, self.path.render(), message));
    }

    fn report_at(&mut self, child: &str, code: IssueCode, message: String) {
        self.issues.push(Issue::error(
            code,
            self.path.render_with(Some(child)),
            message,
        ));
    }

    /// Validates a top-level resource: any JSON value may come in.
    pub(crate) fn root(&mut self, value: &'a Value) {
        match value {
            Value::Object(resource) => self.resource(resource, 1, true),
            other => self.report(
                IssueCode::Invalid,
                format!(
                    "a resource must be a JSON object, not {}",
                    json_type_name(other)
                ),
            ),
        }
    }

    /// A resource, found at the top (where its type starts the path) or in an element of
    /// type Resource (where the path goes on from the element).
    fn resource(&mut self, resource: &'a Map<String, Value>, depth: usize, is_root: bool) {
        let type_name = match resource.get("resourceType") {
            Some(Value::String(name)) => name.as_str(),
            None => {
                return self.report_at(
                    "resourceType",
                    IssueCode::Required,
                    "a resource must have a resourceType".into(),
                )
            }
            Some(other) => {
                let message = format!(
                    "resourceType must be a string, not {}",
                    json_type_name(other)
                );
                return self.report_at("resourceType", IssueCode::Structure, message);
            }
        };
        let node = match self.defs.type_def(type_name) {
            Some(TypeDef::Resource {
                node,
                is_abstract: false,
            }) => node,
            Some(TypeDef::Resource {
                is_abstract: true, ..
            }) => {
                let message = format!(
                    "{} is abstract: a resource must have a concrete type",
                    quote(type_name)
                );
                return self.report_at("resourceType", IssueCode::Invalid, message);
            }
            _ => {
                let message = format!("{} is not an R4 resource type", quote(type_name));
                return self.report_at("resourceType", IssueCode::Invalid, message);
            }
        };
        if is_root {
            self.path.push_name(type_name);
        }
        self.object(node, resource, depth, true);
        if is_root {
            self.path.pop();
        }
    }

    /// The properties of one JSON object against the elements of its node.
    fn object(
        &mut self,
        node: NodeId,
        object: &'a Map<String, Value>,
        depth: usize,
        is_resource: bool,
    ) {
        if depth > MAX_DEPTH {
            if !self.too_deep {
                self.too_deep = true;
                self.report(
                    IssueCode::TooCostly,
                    format!("the resource nests more than {MAX_DEPTH} objects deep"),
                );
            }
            return;
        }
        if object.is_empty() {
            return self.report(IssueCode::Structure, "an object must not be empty".into());
        }
        let defs = self.defs;
        let node = defs.node(node);
        // Per element: how many values it got, and by which JSON name (a choice has several).
        let mut seen: Vec<(usize, Option<&'a str>)> = vec![(0, None); node.elements.len()];
        for (key, value) in object {
            if is_resource && key == "resourceType" {
                continue;
            }
            let (name, is_companion) = match key.strip_prefix('_') {
                Some(name) => (name, true),
                None => (key.as_str(), false),
            };
            let Some(property) = node.property(name) else {
                self.unknown(node, key);
                continue;
            };
            let has_companion = matches!(
                property.ty,
                ElementType::Primitive {
                    companion: true,
                    ..
                }
            );
            if is_companion && !has_companion {
                self.unknown(node, key);
                continue;
            }
            if is_companion && object.contains_key(name) {
                continue; // walked together with its value
            }
            let element = &node.elements[property.element];
            let (count, variant) = &mut seen[property.element];
            match variant {
                Some(other) if *other != name => {
                    let message = format!(
                        "{} takes one type: {other} and {name} are both present",
                        element.name
                    );
                    self.report_at(key, IssueCode::Structure, message);
                    continue;
                }
                _ => *variant = Some(name),
            }
            let (value, companion) = match is_companion {
                true => (None, Some(value)),
                false if has_companion => (Some(value), self.companion_of(object, name)),
                false => (Some(value), None),
            };
            self.path.push_name(name);
            *count += self.property(element, property.ty, name, value, companion, depth);
            self.path.pop();
        }
        for (element, (count, _)) in node.elements.iter().zip(seen) {
            if count < element.min as usize {
                let message = match count {
                    0 => format!("{} is required", element.name),
                    _ => format!(
                        "{} needs at least {} values, found {count}",
                        element.name, element.min
                    ),
                };
                self.report_at(&element.name, IssueCode::Required, message);
            }
        }
    }

    fn unknown(&mut self, node: &Node, key: &str) {
        let name = key.strip_prefix('_').unwrap_or(key);
        // `valueReference` where value[x] has no Reference: say so.
        let choice = node.elements.iter().find_map(|e| {
            let prefix = e.name.strip_suffix("[x]")?;
            let type_name = name.strip_prefix(prefix)?;
            type_name
                .starts_with(|c: char| c.is_ascii_uppercase())
                .then_some((&e.name, type_name))
        });
        let message = match (key, choice) {
            ("fhir_comments", _) => "fhir_comments is not allowed in R4 JSON".to_string(),
            (_, Some((element, type_name))) => {
                format!("{} is not a type of {element} here", quote(type_name))
            }
            _ => format!("unknown element {}", quote(key)),
        };
        self.report_at(key, IssueCode::Structure, message);
    }

    fn companion_of(&mut self, object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
        self.companion_key.clear();
        self.companion_key.push('_');
        self.companion_key.push_str(name);
        object.get(self.companion_key.as_str())
    }

    /// One element's value (and `_name` companion); returns how many values it holds, for
    /// the min check. A value of the wrong shape counts as present: it is reported once, as
    /// what it is.
    fn property(
        &mut self,
        element: &'static Element,
        ty: ElementType,
        name: &str,
        value: Option<&'a Value>,
        companion: Option<&'a Value>,
        depth: usize,
    ) -> usize {
        if element.max == Max::Bounded(0) {
            self.report(
                IssueCode::Structure,
                format!("{name} is not allowed (max 0)"),
            );
            return 1;
        }
        match (ty, value) {
            (ElementType::Primitive { primitive, .. }, _) => {
                self.primitive_property(element, primitive, name, value, companion, depth)
            }
            (ElementType::Object(_) | ElementType::Resource, Some(value)) => {
                self.object_property(element, ty, name, value, depth)
            }
            (_, None) => 0,
        }
    }

    fn object_property(
        &mut self,
        element: &'static Element,
        ty: ElementType,
        name: &str,
        value: &'a Value,
        depth: usize,
    ) -> usize {
        if !element.max.repeats() {
            if value.is_array() {
                self.report(
                    IssueCode::Structure,
                    format!("{name} has max 1: it must not be an array"),
                );
            } else {
                self.object_item(element, ty, value, depth);
            }
            return 1;
        }
        let Value::Array(items) = value else {
            self.report(
                IssueCode::Structure,
                format!("{name} repeats: it must be an array, even for one value"),
            );
            return 1;
        };
        if items.is_empty() {
            self.report(IssueCode::Structure, "an array must not be empty".into());
            return 1;
        }
        self.check_max(element, name, items.len());
        for (i, item) in items.iter().enumerate() {
            self.path.push_index(i);
            self.object_item(element, ty, item, depth);
            self.path.pop();
        }
        items.len()
    }

    fn check_max(&mut self, element: &Element, name: &str, count: usize) {
        if let (false, Max::Bounded(max)) = (element.max.allows(count), element.max) {
            self.report(
                IssueCode::Structure,
                format!("{name} allows at most {max} values, found {count}"),
            );
        }
    }

    fn object_item(
        &mut self,
        element: &'static Element,
        ty: ElementType,
        item: &'a Value,
        depth: usize,
    ) {
        let object = match item {
            Value::Object(object) => object,
            other => {
                let what = if ty == ElementType::Resource {
                    "a resource"
                } else {
                    "this element"
                };
                let message = format!(
                    "{what} must be a JSON object, not {}",
                    json_type_name(other)
                );
                return self.report(IssueCode::Structure, message);
            }
        };
        let node = match ty {
            ElementType::Object(node) => node,
            _ => return self.resource(object, depth + 1, false),
        };
        self.object(node, object, depth + 1, false);
        if object.is_empty() {
            return;
        }
        if node == self.defs.extension {
            self.extension_value_or_children(object);
        }
        if let Some(id) = element.binding {
            let value_set = self.defs.value_set(id);
            let allowed = if node == self.defs.codeable_concept {
                value_set.allows_codeable_concept(object)
            } else if node == self.defs.coding {
                value_set.allows_coding(object)
            } else {
                true
            };
            if !allowed {
                let message = format!("no coding is in the required value set {}", value_set.url);
                self.report(IssueCode::CodeInvalid, message);
            }
        }
    }

    /// ext-1: "Must have either extensions or value[x], not both". It is a FHIRPath
    /// invariant, but a purely structural one, and an extension without either means nothing.
    fn extension_value_or_children(&mut self, extension: &Map<String, Value>) {
        let has_value = extension
            .keys()
            .any(|k| k.strip_prefix('_').unwrap_or(k).starts_with("value"));
        if has_value == extension.contains_key("extension") {
            let message = match has_value {
                true => "ext-1: an extension has a value or nested extensions, not both",
                false => "ext-1: an extension must have a value or nested extensions",
            };
            self.report(IssueCode::Invariant, message.into());
        }
    }

    fn primitive_property(
        &mut self,
        element: &'static Element,
        primitive: Primitive,
        name: &str,
        value: Option<&'a Value>,
        companion: Option<&'a Value>,
        depth: usize,
    ) -> usize {
        if !element.max.repeats() {
            match value {
                Some(Value::Array(_)) => self.report(
                    IssueCode::Structure,
                    format!("{name} has max 1: it must not be an array"),
                ),
                Some(Value::Null) => {
                    self.report(IssueCode::Structure, format!("{name} must not be null"))
                }
                Some(value) => self.primitive_value(element, primitive, value),
                None => {}
            }
            match companion {
                Some(Value::Object(companion)) => {
                    self.object(self.defs.element, companion, depth + 1, false)
                }
                Some(other) => {
                    let message = format!(
                        "_{name} must be a JSON object, not {}",
                        json_type_name(other)
                    );
                    self.report(IssueCode::Structure, message);
                }
                None => {}
            }
            return 1;
        }
        let values = match value {
            Some(Value::Array(values)) => Some(values),
            Some(_) => {
                self.report(
                    IssueCode::Structure,
                    format!("{name} repeats: it must be an array, even for one value"),
                );
                return 1;
            }
            None => None,
        };
        let companions = match companion {
            Some(Value::Array(companions)) => Some(companions),
            Some(_) => {
                self.report(
                    IssueCode::Structure,
                    format!("_{name} must be an array aligned with {name}"),
                );
                None
            }
            None => None,
        };
        if values.is_some_and(Vec::is_empty) || companions.is_some_and(Vec::is_empty) {
            self.report(IssueCode::Structure, "an array must not be empty".into());
            return 1;
        }
        let (value_count, companion_count) =
            (values.map_or(0, Vec::len), companions.map_or(0, Vec::len));
        if values.is_some() && companions.is_some() && value_count != companion_count {
            let message = format!(
                "_{name} has {companion_count} items and {name} has {value_count}: they must align, null filling the gaps"
            );
            self.report(IssueCode::Structure, message);
        }
        let count = value_count.max(companion_count);
        self.check_max(element, name, count);
        for i in 0..count {
            let value = values.and_then(|v| v.get(i)).filter(|v| !v.is_null());
            let companion = companions.and_then(|c| c.get(i)).filter(|c| !c.is_null());
            self.path.push_index(i);
            match (value, companion) {
                (None, None) => {
                    let message = format!("a null in {name} or _{name} must be matched by a value at the same index of the other");
                    self.report(IssueCode::Structure, message);
                }
                (value, companion) => {
                    if let Some(value) = value {
                        self.primitive_value(element, primitive, value);
                    }
                    match companion {
                        Some(Value::Object(companion)) => {
                            self.object(self.defs.element, companion, depth + 1, false)
                        }
                        Some(other) => {
                            let message = format!(
                                "_{name} items must be JSON objects, not {}",
                                json_type_name(other)
                            );
                            self.report(IssueCode::Structure, message);
                        }
                        None => {}
                    }
                }
            }
            self.path.pop();
        }
        count
    }

    /// One primitive value: its JSON kind and format, then its required binding.
    fn primitive_value(&mut self, element: &Element, primitive: Primitive, value: &Value) {
        if let Err(problem) = self.defs.formats.check(primitive, value) {
            return self.report(problem.code, problem.message);
        }
        if let (Some(id), Value::String(code)) = (element.binding, value) {
            let value_set = self.defs.value_set(id);
            if primitive.is_coded() && !value_set.contains_code(code) {
                let message = format!(
                    "{} is not in the required value set {}",
                    quote(code),
                    value_set.url
                );
                self.report(IssueCode::CodeInvalid, message);
            }
        }
    }
}
