//! FHIRPath Patch (FHIR R4, <http://hl7.org/fhir/R4/fhirpatch.html>): a `Parameters`
//! resource whose `operation` parameters each `add`, `insert`, `delete`, `replace` or `move`
//! an element found by a FHIRPath expression. [`apply`] checks the whole patch first (its
//! shape and every path's syntax), then applies the operations in order to a copy of the
//! resource; the first one that fails fails the patch, and the resource is left as it was.
//!
//! How each operation finds its target, with [`crate::Expr::locate`] (the locations of the
//! nodes a path selects). Any path whose items are nodes of the resource will do: member
//! navigation, indexers, `where()`, `first()`/`last()`/`tail()`/`skip()`/`take()`/`single()`,
//! `ofType()`/`as`, unions and `combine()`, `select()`, `iif()`, `children()`, `extension(url)`,
//! `%resource`, `resolve()` of a contained `#id` reference. A path whose result is computed
//! (a literal, `count()`, `upper()`, a `resolve()` stub) is an error, as is a FHIRPath error
//! (`single()` on several items) that plain evaluation would turn into an empty result.
//! By operation:
//!
//! - `add`: `path` selects one element, an object (`Patient`, `Patient.contact[0]`), to which
//!   `name` is added: appended when it repeats, an error when it does not and is there;
//! - `insert`, `move`: `path` must end with an element name (`Patient.identifier`,
//!   `Patient.name[0].given`): everything before it selects one element, and the list is
//!   that element's member (absent is an empty list); indexes count the list's entries;
//! - `delete`: `path` selects at most one element (none: nothing to do), which is removed;
//! - `replace`: `path` selects one element, which is replaced whole.
//!
//! Values: `valueX` gives the JSON of the value as is (a primitive, or the object of a data
//! type) and `_valueX` its extensions, which go to the `_name` companion; `resource` gives a
//! resource (to add to `contained`); parts give an object whose members are the parts, by
//! name (recursively, a name given twice making a list). Whether an element repeats, and
//! the element a choice is (`deceased` with `valueBoolean` is `deceasedBoolean`), come from
//! a table of the R4 elements (generated from the R4 StructureDefinitions): a new repeating
//! element is an array even with one item. Where the table knows nothing (an element of no R4
//! type), the JSON decides: an existing array is a list, anything else is single.
//!
//! The JSON stays FHIR JSON: removing a primitive removes its `_name` companion, and the
//! entries of `_name` arrays move with those of `name`; an element left empty by a
//! `delete` is removed too (an empty array, an object with no members), up to the resource.
//! Object members keep their order; new ones go at the end of their object.
//!
//! Limits: values are not checked against the type of the element they go to (validating
//! the result is the caller's business); extensions of primitives cannot be patched (paths
//! do not reach into `_name`, and `add` to a primitive is an error); a primitive given only
//! as `_valueX` (extensions, no value) is refused; a primitive array entry that is `null`
//! (only extensions, in `_name`) is not selected by paths, though `insert` and `move` count
//! it.

use std::collections::HashSet;
use std::fmt;

use serde_json::{Map, Value};

use crate::locate::{self, Location, Step};
use crate::model::{self, Ctx};
use crate::parser::Ast;
use crate::{compile, locate_ast, Expr, LocateError};

/// Values given as parts nest at most this deep.
const MAX_VALUE_DEPTH: usize = 64;

/// The type of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Add,
    Insert,
    Delete,
    Replace,
    Move,
}

impl Kind {
    fn parse(code: &str) -> Option<Kind> {
        Some(match code {
            "add" => Kind::Add,
            "insert" => Kind::Insert,
            "delete" => Kind::Delete,
            "replace" => Kind::Replace,
            "move" => Kind::Move,
            _ => return None,
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Add => "add",
            Kind::Insert => "insert",
            Kind::Delete => "delete",
            Kind::Replace => "replace",
            Kind::Move => "move",
        })
    }
}

/// Why a patch was not applied. `operation` is the position of the operation in
/// `Parameters.parameter`, from 1.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    #[error("a FHIRPath Patch must be a Parameters resource with a list of parameters")]
    NotParameters,
    /// The operation is not well formed (a missing or unknown part, a wrong value type, a
    /// path that does not compile, ...): the patch is invalid whatever the resource.
    #[error("operation {operation}: {message}")]
    Malformed { operation: usize, message: String },
    /// The operation cannot be applied to this resource.
    #[error("operation {operation} ({kind} {path}): {reason}")]
    Failed {
        operation: usize,
        kind: Kind,
        path: String,
        reason: Reason,
    },
}

/// Why an operation cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("the path cannot be evaluated on this resource (a FHIRPath error)")]
    Evaluation,
    #[error("the path selects a computed value, not an element of the resource")]
    NotAnElement,
    #[error("the path matches no element")]
    NoMatch,
    #[error("the path matches {0} elements where one is required")]
    Several(usize),
    #[error("the path selects the resource itself, which cannot be deleted or replaced")]
    Root,
    #[error("the path selects a primitive value, which has no elements")]
    Primitive,
    #[error("'{0}' is already present and does not repeat")]
    AlreadyPresent(String),
    #[error("the path must end with the name of the list (as in Patient.identifier)")]
    NotAListPath,
    #[error("'{0}' is not a list")]
    NotAList(String),
    #[error("index {index} is out of range: the list has {len} items")]
    IndexOutOfRange { index: usize, len: usize },
    #[error("'{0}' is a choice element: its value must be a value[x], which names the type")]
    UntypedChoice(String),
    #[error("'{0}' does not repeat but is given {1} times")]
    NotRepeating(String, usize),
}

/// Applies a FHIRPath Patch (`parameters`, a `Parameters` resource) to `resource`, giving the
/// patched resource. Nothing is applied unless everything is.
pub fn apply(resource: &Value, parameters: &Value) -> Result<Value, PatchError> {
    let ops = parse(parameters)?;
    let mut doc = resource.clone();
    for op in &ops {
        apply_op(&mut doc, op).map_err(|reason| PatchError::Failed {
            operation: op.number,
            kind: op.kind,
            path: op.path.clone(),
            reason,
        })?;
    }
    Ok(doc)
}

struct Operation {
    number: usize,
    kind: Kind,
    path: String,
    expr: Expr,
    action: Action,
}

/// What an operation does, with the parts its type needs.
enum Action {
    Add { name: String, value: PValue },
    Insert { value: PValue, index: usize },
    Delete,
    Replace { value: PValue },
    Move { source: usize, destination: usize },
}

/// A value as the patch gives it.
enum PValue {
    /// `valueX` (`suffix` is `X`) with its `_valueX`, or a `resource`.
    Typed {
        value: Value,
        companion: Option<Value>,
        suffix: Option<String>,
    },
    /// Parts, in order: (element name, value).
    Parts(Vec<(String, PValue)>),
}

fn parse(parameters: &Value) -> Result<Vec<Operation>, PatchError> {
    let obj = parameters
        .as_object()
        .filter(|o| o.get("resourceType").and_then(Value::as_str) == Some("Parameters"))
        .ok_or(PatchError::NotParameters)?;
    let params = match obj.get("parameter") {
        None => return Ok(Vec::new()),
        Some(Value::Array(ps)) => ps,
        Some(_) => return Err(PatchError::NotParameters),
    };
    params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            parse_operation(i + 1, p).map_err(|message| PatchError::Malformed {
                operation: i + 1,
                message,
            })
        })
        .collect()
}

const PARTS: [&str; 7] = [
    "type",
    "path",
    "name",
    "value",
    "index",
    "source",
    "destination",
];

fn parse_operation(number: usize, p: &Value) -> Result<Operation, String> {
    let p = p.as_object().ok_or("a parameter must be an object")?;
    if p.get("name").and_then(Value::as_str) != Some("operation") {
        return Err("a parameter must be named 'operation'".into());
    }
    let parts = match p.get("part") {
        Some(Value::Array(parts)) => parts,
        _ => return Err("an operation must have parts (type, path, ...)".into()),
    };
    let mut by_name: Vec<(&str, &Map<String, Value>)> = Vec::new();
    for part in parts {
        let part = part.as_object().ok_or("a part must be an object")?;
        let name = part
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a part must have a name")?;
        if !PARTS.contains(&name) {
            return Err(format!(
                "unknown part '{name}' (expected type, path, name, value, index, source, destination)"
            ));
        }
        if by_name.iter().any(|(n, _)| *n == name) {
            return Err(format!("part '{name}' is given more than once"));
        }
        by_name.push((name, part));
    }
    let get = |name: &str| by_name.iter().find(|(n, _)| *n == name).map(|(_, p)| *p);
    let required = |name: &str| get(name).ok_or(format!("part '{name}' is missing"));

    let code = string_part(required("type")?, "type")?;
    let kind = Kind::parse(code).ok_or(format!(
        "unknown operation type '{code}' (expected add, insert, delete, replace or move)"
    ))?;
    let path = string_part(required("path")?, "path")?.to_string();
    let expr = compile(&path).map_err(|e| format!("invalid path: {e}"))?;
    let value = || parse_value(required("value")?, 0);
    let action = match kind {
        Kind::Add => {
            let name = string_part(required("name")?, "name")?;
            if !is_element_name(name) {
                return Err(format!("'{name}' is not an element name"));
            }
            Action::Add {
                name: name.to_string(),
                value: value()?,
            }
        }
        Kind::Insert => Action::Insert {
            value: value()?,
            index: index_part(required("index")?, "index")?,
        },
        Kind::Delete => Action::Delete,
        Kind::Replace => Action::Replace { value: value()? },
        Kind::Move => Action::Move {
            source: index_part(required("source")?, "source")?,
            destination: index_part(required("destination")?, "destination")?,
        },
    };
    Ok(Operation {
        number,
        kind,
        path,
        expr,
        action,
    })
}

fn is_element_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic()) && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The `value[x]` members of a part: (suffix, value).
fn typed_values(part: &Map<String, Value>) -> impl Iterator<Item = (&str, &Value)> {
    part.iter().filter_map(|(k, v)| {
        let suffix = k.strip_prefix("value")?;
        suffix
            .starts_with(|c: char| c.is_ascii_uppercase())
            .then_some((suffix, v))
    })
}

fn string_part<'p>(part: &'p Map<String, Value>, name: &str) -> Result<&'p str, String> {
    let mut values = typed_values(part);
    match (values.next(), values.next()) {
        (Some(("String" | "Code", Value::String(s))), None) => Ok(s),
        _ => Err(format!(
            "part '{name}' must have a valueString or valueCode"
        )),
    }
}

fn index_part(part: &Map<String, Value>, name: &str) -> Result<usize, String> {
    let mut values = typed_values(part);
    let n = match (values.next(), values.next()) {
        (Some(("Integer" | "UnsignedInt" | "PositiveInt", Value::Number(n))), None) => n.as_u64(),
        _ => None,
    };
    n.and_then(|n| usize::try_from(n).ok()).ok_or(format!(
        "part '{name}' must have a valueInteger of 0 or more"
    ))
}

fn parse_value(part: &Map<String, Value>, depth: usize) -> Result<PValue, String> {
    if depth > MAX_VALUE_DEPTH {
        return Err("the value is nested too deeply".into());
    }
    let name = part.get("name").and_then(Value::as_str).unwrap_or("value");
    let typed: Vec<(&str, &Value)> = typed_values(part).collect();
    let resource = part.get("resource");
    let parts = part.get("part");
    let given = typed.len() + usize::from(resource.is_some()) + usize::from(parts.is_some());
    if given != 1 {
        let only_extensions = part.keys().any(|k| k.starts_with("_value"));
        return Err(if given == 0 && only_extensions {
            format!("part '{name}': a value given only as _value[x] (extensions) is not supported")
        } else {
            format!("part '{name}' must have exactly one of value[x], resource or parts")
        });
    }
    if let Some((suffix, value)) = typed.first() {
        if value.is_null() {
            return Err(format!("part '{name}': value{suffix} is null"));
        }
        return Ok(PValue::Typed {
            value: (*value).clone(),
            companion: part.get(&format!("_value{suffix}")).cloned(),
            suffix: Some(suffix.to_string()),
        });
    }
    if let Some(r) = resource {
        if !r.is_object() {
            return Err(format!("part '{name}': the resource must be an object"));
        }
        return Ok(PValue::Typed {
            value: r.clone(),
            companion: None,
            suffix: None,
        });
    }
    let Some(Value::Array(parts)) = parts else {
        return Err(format!("part '{name}': parts must be a list"));
    };
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        let p = p.as_object().ok_or("a part must be an object")?;
        let n = p
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a part must have a name")?;
        if !is_element_name(n) {
            return Err(format!("part '{name}': '{n}' is not an element name"));
        }
        out.push((n.to_string(), parse_value(p, depth + 1)?));
    }
    Ok(PValue::Parts(out))
}

/// A value ready to go in: its JSON, its `_` companion, the type its `valueX` named.
struct Built {
    value: Value,
    companion: Option<Value>,
    suffix: Option<String>,
}

/// The JSON of a value going to an element whose context is `ctx` (for parts: which of
/// them repeat, which are choices).
fn build(v: &PValue, ctx: &Ctx) -> Result<Built, Reason> {
    let parts = match v {
        PValue::Typed {
            value,
            companion,
            suffix,
        } => {
            return Ok(Built {
                value: value.clone(),
                companion: companion.clone(),
                suffix: suffix.clone(),
            })
        }
        PValue::Parts(parts) => parts,
    };
    let mut names: Vec<&str> = Vec::new();
    for (n, _) in parts {
        if !names.contains(&n.as_str()) {
            names.push(n);
        }
    }
    let mut obj = Map::new();
    for name in names {
        let elem = model::element(ctx, name);
        let values = parts
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| build(v, &elem.ctx))
            .collect::<Result<Vec<_>, _>>()?;
        if values.len() > 1 && elem.repeating == Some(false) {
            return Err(Reason::NotRepeating(name.to_string(), values.len()));
        }
        let key = element_key(name, elem.choice.as_deref(), values.first())?;
        if values.len() > 1 || elem.repeating == Some(true) {
            obj.insert(key.clone(), Value::Array(Vec::new()));
            for (i, b) in values.into_iter().enumerate() {
                insert_entry(&mut obj, &key, i, b);
            }
        } else if let Some(b) = values.into_iter().next() {
            set_member(&mut obj, &key, b);
        }
    }
    Ok(Built {
        value: Value::Object(obj),
        companion: None,
        suffix: None,
    })
}

/// The JSON key of element `name` holding `value`: a choice named without its type
/// (`deceased`) takes the type of the `valueX` (`deceasedBoolean`).
fn element_key(name: &str, choice: Option<&str>, value: Option<&Built>) -> Result<String, Reason> {
    match choice {
        Some(base) if base == name => match value.and_then(|b| b.suffix.as_deref()) {
            Some(suffix) => Ok(format!("{name}{suffix}")),
            None => Err(Reason::UntypedChoice(name.to_string())),
        },
        _ => Ok(name.to_string()),
    }
}

fn apply_op(doc: &mut Value, op: &Operation) -> Result<(), Reason> {
    let path = &op.expr.ast;
    match &op.action {
        Action::Add { name, value } => add(doc, path, name, value),
        Action::Insert { value, index } => insert(doc, path, value, *index),
        Action::Delete => {
            let found = select(doc, path)?;
            match found.as_slice() {
                [] => Ok(()),
                [loc] => remove(doc, loc),
                _ => Err(Reason::Several(found.len())),
            }
        }
        Action::Replace { value } => replace(doc, path, value),
        Action::Move {
            source,
            destination,
        } => move_entry(doc, path, *source, *destination),
    }
}

/// The locations the path selects, without repeats.
fn select(doc: &Value, ast: &Ast) -> Result<Vec<Location>, Reason> {
    let found = locate_ast(ast, doc).map_err(|e| match e {
        LocateError::Evaluation => Reason::Evaluation,
        LocateError::NotANode { .. } => Reason::NotAnElement,
    })?;
    let mut seen = HashSet::new();
    Ok(found
        .into_iter()
        .filter(|l| seen.insert(l.clone()))
        .collect())
}

fn one(doc: &Value, ast: &Ast) -> Result<Location, Reason> {
    let mut found = select(doc, ast)?;
    match found.len() {
        0 => Err(Reason::NoMatch),
        1 => Ok(found.remove(0)),
        n => Err(Reason::Several(n)),
    }
}

/// The model context of the node at `steps`.
fn ctx_at(doc: &Value, steps: &[Step]) -> Ctx {
    let mut ctx = Ctx::of_resource(doc);
    let mut node = doc;
    for step in steps {
        match step {
            Step::Key(k) => {
                // A `_name` companion is an Element: only `id` and `extension`, which the
                // model knows everywhere.
                ctx = if k.starts_with('_') {
                    Ctx::Unknown
                } else {
                    model::element(&ctx, k).ctx
                };
                node = &node[k.as_str()];
            }
            Step::Index(i) => node = &node[*i],
        }
        ctx = ctx.settle(node);
    }
    ctx
}

/// The object at `steps`, or why there is none.
fn object_at<'d>(doc: &'d mut Value, steps: &[Step]) -> Result<&'d mut Map<String, Value>, Reason> {
    locate::get_mut(doc, steps)
        .ok_or(Reason::NoMatch)?
        .as_object_mut()
        .ok_or(Reason::Primitive)
}

fn add(doc: &mut Value, path: &Ast, name: &str, value: &PValue) -> Result<(), Reason> {
    let at = one(doc, path)?;
    let ctx = ctx_at(doc, at.steps());
    let elem = model::element(&ctx, name);
    let value = build(value, &elem.ctx)?;
    let key = element_key(name, elem.choice.as_deref(), Some(&value))?;
    let obj = object_at(doc, at.steps())?;
    // A choice is there under any of its types (`deceasedDateTime` is `deceased`).
    if elem.choice.is_some()
        && obj
            .keys()
            .any(|k| !k.starts_with('_') && model::element(&ctx, k).choice == elem.choice)
    {
        return Err(Reason::AlreadyPresent(name.to_string()));
    }
    match obj.get_mut(&key) {
        Some(Value::Array(items)) => {
            let len = items.len();
            insert_entry(obj, &key, len, value);
        }
        None | Some(Value::Null) => {
            if elem.repeating == Some(true) {
                obj.insert(key.clone(), Value::Array(Vec::new()));
                insert_entry(obj, &key, 0, value);
            } else {
                set_member(obj, &key, value);
            }
        }
        Some(single) => {
            if elem.repeating != Some(true) {
                return Err(Reason::AlreadyPresent(name.to_string()));
            }
            // A repeating element written as a single value: make it the list it is.
            let first = single.take();
            *single = Value::Array(vec![first]);
            insert_entry(obj, &key, 1, value);
        }
    }
    Ok(())
}

/// For `insert` and `move`: the location of the one element holding the list, and the
/// list's name (the last name of the path).
fn list_of(doc: &Value, ast: &Ast) -> Result<(Location, String), Reason> {
    match ast {
        Ast::Member(src, name) => Ok((one(doc, src)?, name.clone())),
        Ast::Ident(name) if !name.starts_with(|c: char| c.is_ascii_uppercase()) => {
            Ok((Location::default(), name.clone()))
        }
        _ => Err(Reason::NotAListPath),
    }
}

fn insert(doc: &mut Value, path: &Ast, value: &PValue, index: usize) -> Result<(), Reason> {
    let (at, name) = list_of(doc, path)?;
    let ctx = ctx_at(doc, at.steps());
    let elem = model::element(&ctx, &name);
    if elem.choice.is_some() {
        return Err(Reason::NotAList(name));
    }
    let value = build(value, &elem.ctx)?;
    let obj = object_at(doc, at.steps())?;
    match obj.get(&name) {
        Some(Value::Array(items)) => {
            if index > items.len() {
                return Err(Reason::IndexOutOfRange {
                    index,
                    len: items.len(),
                });
            }
        }
        None | Some(Value::Null) => {
            if elem.repeating == Some(false) {
                return Err(Reason::NotAList(name));
            }
            if index > 0 {
                return Err(Reason::IndexOutOfRange { index, len: 0 });
            }
            obj.insert(name.clone(), Value::Array(Vec::new()));
        }
        Some(_) => return Err(Reason::NotAList(name)),
    }
    insert_entry(obj, &name, index, value);
    Ok(())
}

fn move_entry(doc: &mut Value, path: &Ast, from: usize, to: usize) -> Result<(), Reason> {
    let (at, name) = list_of(doc, path)?;
    let obj = object_at(doc, at.steps())?;
    let len = match obj.get(&name) {
        Some(Value::Array(items)) => items.len(),
        None | Some(Value::Null) => 0,
        Some(_) => return Err(Reason::NotAList(name)),
    };
    for index in [from, to] {
        if index >= len {
            return Err(Reason::IndexOutOfRange { index, len });
        }
    }
    let move_in = |items: &mut Vec<Value>| {
        let item = items.remove(from);
        items.insert(to, item);
    };
    if let Some(Value::Array(items)) = obj.get_mut(&name) {
        move_in(items);
    }
    if let Some(Value::Array(c)) = obj.get_mut(&companion(&name)) {
        if c.len() < len {
            c.resize(len, Value::Null);
        }
        move_in(c);
    }
    Ok(())
}

fn replace(doc: &mut Value, path: &Ast, value: &PValue) -> Result<(), Reason> {
    let at = one(doc, path)?;
    let slot = Slot::of(&at)?;
    let ctx = ctx_at(doc, slot.parent());
    let obj = object_at(doc, slot.parent())?;
    match slot {
        Slot::Member { key, .. } => {
            let elem = model::element(&ctx, key);
            let value = build(value, &elem.ctx)?;
            // A choice takes the type of its new value (`valueQuantity` to `valueString`).
            let new_key = match (&elem.choice, &value.suffix) {
                (Some(base), Some(suffix)) if !key.starts_with('_') => format!("{base}{suffix}"),
                _ => key.to_string(),
            };
            let pos = obj.keys().position(|k| k == key).unwrap_or(obj.len());
            obj.shift_remove(key);
            if !key.starts_with('_') {
                obj.shift_remove(&companion(key));
            }
            obj.shift_insert(pos, new_key.clone(), value.value);
            if let Some(c) = value.companion {
                insert_after(obj, &new_key, companion(&new_key), c);
            }
        }
        Slot::Entry { key, index, .. } => {
            let elem = model::element(&ctx, key);
            let value = build(value, &elem.ctx)?;
            let Some(Value::Array(items)) = obj.get_mut(key) else {
                return Err(Reason::NoMatch);
            };
            let len = items.len();
            items[index] = value.value;
            set_companion_entry(obj, key, len, index, value.companion);
        }
    }
    Ok(())
}

/// Where a located element sits in its parent object.
enum Slot<'l> {
    /// `parent.key`
    Member { parent: &'l [Step], key: &'l str },
    /// `parent.key[index]`
    Entry {
        parent: &'l [Step],
        key: &'l str,
        index: usize,
    },
}

impl<'l> Slot<'l> {
    fn of(at: &'l Location) -> Result<Slot<'l>, Reason> {
        match at.steps() {
            [] => Err(Reason::Root),
            [parent @ .., Step::Key(key)] => Ok(Slot::Member { parent, key }),
            [parent @ .., Step::Key(key), Step::Index(index)] => Ok(Slot::Entry {
                parent,
                key,
                index: *index,
            }),
            // An array in an array: not FHIR JSON.
            _ => Err(Reason::NotAnElement),
        }
    }

    fn parent(&self) -> &'l [Step] {
        match self {
            Slot::Member { parent, .. } | Slot::Entry { parent, .. } => parent,
        }
    }
}

/// Removes the element at `at`, and then whatever that leaves empty, up to the resource.
fn remove(doc: &mut Value, at: &Location) -> Result<(), Reason> {
    let mut at = at.clone();
    loop {
        let slot = Slot::of(&at)?;
        let parent = slot.parent().to_vec();
        let obj = object_at(doc, &parent)?;
        match slot {
            Slot::Member { key, .. } => {
                obj.shift_remove(key);
                if !key.starts_with('_') {
                    obj.shift_remove(&companion(key));
                }
            }
            Slot::Entry { key, index, .. } => {
                let Some(Value::Array(items)) = obj.get_mut(key) else {
                    return Err(Reason::NoMatch);
                };
                items.remove(index);
                let empty = items.is_empty();
                if let Some(Value::Array(c)) = obj.get_mut(&companion(key)) {
                    if index < c.len() {
                        c.remove(index);
                    }
                }
                if empty {
                    obj.shift_remove(key);
                    obj.shift_remove(&companion(key));
                } else {
                    tidy_companion(obj, key);
                }
            }
        }
        if parent.is_empty() || !obj.is_empty() {
            return Ok(());
        }
        at = Location(parent);
    }
}

fn companion(key: &str) -> String {
    format!("_{key}")
}

/// Inserts `key` right after `after` (at the end if `after` is not there).
fn insert_after(obj: &mut Map<String, Value>, after: &str, key: String, v: Value) {
    let pos = obj
        .keys()
        .position(|k| k == after)
        .map_or(obj.len(), |p| p + 1);
    obj.shift_insert(pos, key, v);
}

/// Sets a single element and its companion.
fn set_member(obj: &mut Map<String, Value>, key: &str, b: Built) {
    obj.insert(key.to_string(), b.value);
    if let Some(c) = b.companion {
        insert_after(obj, key, companion(key), c);
    }
}

/// Inserts an entry into the array `key` (which exists), keeping a `_key` array aligned.
fn insert_entry(obj: &mut Map<String, Value>, key: &str, index: usize, b: Built) {
    let Some(Value::Array(items)) = obj.get_mut(key) else {
        return;
    };
    let old_len = items.len();
    items.insert(index, b.value);
    let ck = companion(key);
    match obj.get_mut(&ck) {
        Some(Value::Array(c)) => {
            if c.len() < old_len {
                c.resize(old_len, Value::Null);
            }
            c.insert(index, b.companion.unwrap_or(Value::Null));
            tidy_companion(obj, key);
        }
        Some(_) => {}
        None => {
            if let Some(cv) = b.companion {
                let mut c = vec![Value::Null; old_len + 1];
                c[index] = cv;
                insert_after(obj, key, ck, Value::Array(c));
            }
        }
    }
}

/// Sets entry `index` of the `_key` array (for an array `key` of `len` entries).
fn set_companion_entry(
    obj: &mut Map<String, Value>,
    key: &str,
    len: usize,
    index: usize,
    cv: Option<Value>,
) {
    let ck = companion(key);
    match obj.get_mut(&ck) {
        Some(Value::Array(c)) => {
            if c.len() < len {
                c.resize(len, Value::Null);
            }
            c[index] = cv.unwrap_or(Value::Null);
            tidy_companion(obj, key);
        }
        Some(_) => {}
        None => {
            if let Some(cv) = cv {
                let mut c = vec![Value::Null; len];
                c[index] = cv;
                insert_after(obj, key, ck, Value::Array(c));
            }
        }
    }
}

/// A `_key` array with nothing in it goes.
fn tidy_companion(obj: &mut Map<String, Value>, key: &str) {
    let ck = companion(key);
    if let Some(Value::Array(c)) = obj.get(&ck) {
        if c.iter().all(Value::is_null) {
            obj.shift_remove(&ck);
        }
    }
}
