//! What FHIRPath Patch needs of the R4 model and the JSON cannot tell: whether an element
//! repeats (an `add` of an absent `identifier` makes an array, of an absent `birthDate` a
//! single value), which elements are choices (`deceased[x]`: `deceasedBoolean`), and the
//! type of a complex element, to know the same of its children (`Patient.contact.name` is
//! a `HumanName`, whose `given` repeats).
//!
//! The table, `r4_elements.txt`, is generated from the R4 StructureDefinitions (resources and
//! complex data types) by the test below, which also checks it against the package. Each
//! type is a line of its own, `Name resource` or `Name type`, followed by its elements, one a
//! line, indented: the path below the type, `*` when it repeats, then the path of its
//! definition when the element is of a complex type (`HumanName`), a resource (`@`), or
//! refers to another element (`Questionnaire.item`). Single elements of a primitive type or
//! a backbone element are left out (a miss means single), and so are the elements every
//! type has (`id`, `extension`, `modifierExtension`) and, except in `Resource` and
//! `DomainResource`, those inherited from them (`meta`, `text`, `contained`, ...).

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use serde_json::Value;

use super::types;

const TABLE: &str = include_str!("r4_elements.txt");

struct Entry {
    repeating: bool,
    /// `None`: a backbone element (its children are below its own path) or a primitive.
    ctx: Option<&'static str>,
}

struct Model {
    /// By full definition path (`Patient.contact.name`, `HumanName.given`).
    elements: HashMap<String, Entry>,
    /// Every type of the table, and those that are resources.
    types: HashSet<&'static str>,
    resources: HashSet<&'static str>,
}

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let mut m = Model {
            elements: HashMap::new(),
            types: HashSet::new(),
            resources: HashSet::new(),
        };
        let mut current = "";
        for line in TABLE
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            if let Some(entry) = line.strip_prefix(' ') {
                let mut words = entry.split(' ');
                let path = words.next().unwrap_or_default();
                let (path, repeating) = match path.strip_suffix('*') {
                    Some(p) => (p, true),
                    None => (path, false),
                };
                let ctx = words.next();
                m.elements
                    .insert(format!("{current}.{path}"), Entry { repeating, ctx });
            } else {
                let mut words = line.split(' ');
                current = words.next().unwrap_or_default();
                m.types.insert(current);
                if words.next() == Some("resource") {
                    m.resources.insert(current);
                }
            }
        }
        m
    })
}

/// Where a node stands in the model: the definition path its children are found under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ctx {
    /// `Patient`, `Patient.contact`, `HumanName`.
    Path(String),
    /// A resource: the node's `resourceType` says which (see [`Ctx::settle`]).
    Resource,
    /// Not in the model (an unknown type or element): nothing is known below.
    Unknown,
}

impl Ctx {
    /// The context of a resource node.
    pub fn of_resource(v: &Value) -> Ctx {
        match types::resource_type(v) {
            Some(rt) => Ctx::Path(rt.to_string()),
            None => Ctx::Unknown,
        }
    }

    /// At the node itself (not the array of a repeating element): a resource context takes
    /// the node's `resourceType`.
    pub fn settle(self, node: &Value) -> Ctx {
        match self {
            Ctx::Resource if !node.is_array() => Ctx::of_resource(node),
            other => other,
        }
    }
}

/// An element of a context, as far as the model knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    /// `None`: unknown to the model.
    pub repeating: Option<bool>,
    /// The context of the element's value(s).
    pub ctx: Ctx,
    /// For a choice element, its name without the type (`deceased` for `deceased` and
    /// `deceasedBoolean`).
    pub choice: Option<String>,
}

impl Element {
    fn unknown() -> Self {
        Element {
            repeating: None,
            ctx: Ctx::Unknown,
            choice: None,
        }
    }
}

fn lookup(ctx: &str, name: &str) -> Option<(String, &'static Entry)> {
    let m = model();
    let full = format!("{ctx}.{name}");
    if let Some(e) = m.elements.get(&full) {
        return Some((full, e));
    }
    // Elements inherited by every resource are listed once, under their base.
    if m.resources.contains(ctx) {
        for base in ["DomainResource", "Resource"] {
            let full = format!("{base}.{name}");
            if let Some(e) = m.elements.get(&full) {
                return Some((full, e));
            }
        }
    }
    None
}

fn entry_ctx(full: String, e: &Entry) -> Ctx {
    match e.ctx {
        None => Ctx::Path(full),
        Some("@") => Ctx::Resource,
        Some(p) => Ctx::Path(p.to_string()),
    }
}

/// The element that a JSON key (`name`, or a choice key `valueQuantity`) or a patch's element
/// name (`deceased`) stands for in `ctx`.
pub(crate) fn element(ctx: &Ctx, key: &str) -> Element {
    if key == "extension" || key == "modifierExtension" {
        return Element {
            repeating: Some(true),
            ctx: Ctx::Path("Extension".into()),
            choice: None,
        };
    }
    if key == "id" {
        return Element {
            repeating: Some(false),
            ctx: Ctx::Unknown,
            choice: None,
        };
    }
    let Ctx::Path(p) = ctx else {
        return Element::unknown();
    };
    if let Some((full, e)) = lookup(p, key) {
        return Element {
            repeating: Some(e.repeating),
            ctx: entry_ctx(full, e),
            choice: None,
        };
    }
    if lookup(p, &format!("{key}[x]")).is_some() {
        return Element {
            repeating: Some(false),
            ctx: Ctx::Unknown,
            choice: Some(key.to_string()),
        };
    }
    // A choice key: the name, then the type with a capital (`valueCodeableConcept`).
    for (i, _) in key.char_indices().filter(|(_, c)| c.is_ascii_uppercase()) {
        let (base, suffix) = key.split_at(i);
        if lookup(p, &format!("{base}[x]")).is_some() {
            let ctx = match types::choice_type(suffix) {
                Some(t) => Ctx::Path(t.to_string()),
                None => Ctx::Unknown,
            };
            return Element {
                repeating: Some(false),
                ctx,
                choice: Some(base.to_string()),
            };
        }
    }
    // Not listed: a single primitive or backbone element (whose children are listed under
    // its path), or no element at all.
    let root = p.split('.').next().unwrap_or_default();
    Element {
        repeating: model().types.contains(root).then_some(false),
        ctx: Ctx::Path(format!("{p}.{key}")),
        choice: None,
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write;
    use std::path::PathBuf;

    use serde_json::Value;

    use super::*;

    fn package_dir() -> Option<PathBuf> {
        let dir = PathBuf::from(std::env::var_os("HOME")?).join(".cache/hds-fhir/package");
        dir.is_dir().then_some(dir)
    }

    /// The table, from the StructureDefinitions of the package (see the module doc).
    fn generate(dir: &std::path::Path) -> String {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with("StructureDefinition-") && name.ends_with(".json")
            })
            .collect();
        files.sort();
        let mut out = String::from(
            "# R4 elements for FHIRPath Patch, generated from the R4 StructureDefinitions:\n\
             # see src/model.rs (HDS_REGENERATE=1 cargo test -p fhirpath model rewrites it).\n",
        );
        for f in files {
            let sd: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
            let kind = sd["kind"].as_str().unwrap_or_default();
            if sd["derivation"] != "specialization" || !matches!(kind, "resource" | "complex-type")
            {
                continue;
            }
            let name = sd["type"].as_str().unwrap();
            let inherited_too = matches!(name, "Resource" | "DomainResource");
            let mut lines = String::new();
            for e in sd["snapshot"]["element"].as_array().unwrap() {
                let path = e["path"].as_str().unwrap();
                let Some(rel) = path.strip_prefix(name).and_then(|r| r.strip_prefix('.')) else {
                    continue;
                };
                let last = rel.rsplit('.').next().unwrap();
                if matches!(last, "id" | "extension" | "modifierExtension") {
                    continue;
                }
                let base = e["base"]["path"].as_str().unwrap_or_default();
                let base_type = base.split('.').next().unwrap_or_default();
                if !inherited_too && matches!(base_type, "Resource" | "DomainResource") {
                    continue;
                }
                let repeating = !matches!(e["max"].as_str(), Some("1" | "0"));
                let codes: Vec<&str> = e["type"]
                    .as_array()
                    .map(|ts| ts.iter().filter_map(|t| t["code"].as_str()).collect())
                    .unwrap_or_default();
                let ctx = if let Some(r) = e["contentReference"].as_str() {
                    Some(r.trim_start_matches('#'))
                } else {
                    match codes.as_slice() {
                        ["BackboneElement" | "Element"] => None,
                        ["Resource"] => Some("@"),
                        [t] if t.starts_with(|c: char| c.is_ascii_uppercase())
                            && !t.contains('/') =>
                        {
                            Some(*t)
                        }
                        _ => None,
                    }
                };
                if !repeating && ctx.is_none() && !rel.ends_with("[x]") {
                    continue;
                }
                write!(lines, " {rel}{}", if repeating { "*" } else { "" }).unwrap();
                if let Some(c) = ctx {
                    write!(lines, " {c}").unwrap();
                }
                lines.push('\n');
            }
            let kind = if kind == "resource" {
                "resource"
            } else {
                "type"
            };
            writeln!(out, "{name} {kind}").unwrap();
            out.push_str(&lines);
        }
        out
    }

    #[test]
    fn the_table_is_the_one_the_package_gives() {
        let Some(dir) = package_dir() else {
            println!("skipped: no R4 package at ~/.cache/hds-fhir/package");
            return;
        };
        let generated = generate(&dir);
        if std::env::var_os("HDS_REGENERATE").is_some() {
            let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/r4_elements.txt");
            std::fs::write(file, &generated).unwrap();
            return;
        }
        assert!(
            generated == TABLE,
            "src/r4_elements.txt is stale: HDS_REGENERATE=1 cargo test -p fhirpath model"
        );
    }

    fn path(p: &str) -> Ctx {
        Ctx::Path(p.into())
    }

    #[test]
    fn elements() {
        let patient = path("Patient");
        let e = element(&patient, "identifier");
        assert_eq!(e.repeating, Some(true));
        assert_eq!(e.ctx, path("Identifier"));
        assert_eq!(element(&patient, "birthDate").repeating, Some(false));
        assert_eq!(element(&patient, "nothing").repeating, Some(false));
        // Inherited from DomainResource / Resource.
        assert_eq!(element(&patient, "contained").ctx, Ctx::Resource);
        assert_eq!(element(&patient, "meta").ctx, path("Meta"));
        // Backbone elements, data types, references to other elements.
        let contact = element(&patient, "contact");
        assert_eq!(
            (contact.repeating, &contact.ctx),
            (Some(true), &path("Patient.contact"))
        );
        let name = element(&contact.ctx, "name");
        assert_eq!(
            (name.repeating, &name.ctx),
            (Some(false), &path("HumanName"))
        );
        assert_eq!(element(&name.ctx, "given").repeating, Some(true));
        let item = element(&path("Questionnaire.item"), "item");
        assert_eq!(item.ctx, path("Questionnaire.item"));
        // Choices, by name or by key.
        let d = element(&patient, "deceased");
        assert_eq!(d.choice.as_deref(), Some("deceased"));
        let v = element(&path("Observation"), "valueQuantity");
        assert_eq!(v.choice.as_deref(), Some("value"));
        assert_eq!(v.ctx, path("Quantity"));
        assert_eq!(element(&v.ctx, "value").repeating, Some(false));
        // Everywhere.
        assert_eq!(
            element(&path("HumanName"), "extension").repeating,
            Some(true)
        );
        assert_eq!(element(&Ctx::Unknown, "extension").ctx, path("Extension"));
        // Below a single backbone element (not listed itself).
        let detail = element(&path("CarePlan.activity"), "detail");
        assert_eq!(detail.repeating, Some(false));
        assert_eq!(element(&detail.ctx, "goal").repeating, Some(true));
        assert_eq!(element(&detail.ctx, "code").ctx, path("CodeableConcept"));
        // `text` of a data type is not the resource's narrative.
        assert_eq!(element(&path("HumanName"), "text").repeating, Some(false));
        assert_eq!(
            element(&path("HumanName"), "text").ctx,
            path("HumanName.text")
        );
        // Unknown types: nothing known.
        assert_eq!(element(&path("Nothing"), "identifier").repeating, None);
        assert_eq!(element(&Ctx::Unknown, "identifier").repeating, None);
    }
}
