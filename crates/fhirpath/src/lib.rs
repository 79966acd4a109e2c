//! A FHIRPath (<http://hl7.org/fhirpath/N1/>) evaluator over `serde_json::Value`, made for
//! search indexing (it runs the `expression` of every FHIR R4 SearchParameter) and for
//! FHIRPath Patch ([`patch`]). Compile once with [`compile`], evaluate many times with
//! [`Expr::evaluate`]; evaluation never panics, and whatever the spec calls an error gives an
//! empty result.
//!
//! [`Expr::locate`] evaluates the same way but answers where in the resource each item of the
//! result is (a [`Location`]: object keys and array indexes from the root), or an error when
//! evaluation fails or an item is not a node of the resource (a literal, `count()`, a
//! `resolve()` stub). It costs `evaluate` nothing: items that are nodes borrow them, and one
//! walk of the resource finds them by address afterwards. [`patch::apply`] applies a FHIRPath
//! Patch `Parameters` with it; see that module for what it supports. Its only knowledge of the
//! R4 model (which elements repeat, which are choices, the types of complex elements) is a
//! table generated from the R4 StructureDefinitions; the evaluator itself has none.
//!
//! There is no model of the FHIR resources, so types are known only where the JSON says:
//! - a node reached through a choice key (`valueQuantity` for `value`) has the key's type
//!   (`Quantity`; `valueDateTime` is a `dateTime`), subtypes included (`valueAge` is a
//!   `Quantity`, `sourceCanonical` a `uri`, `valueCode` a `string`);
//! - a resource has its `resourceType` (and is a `Resource`; a `DomainResource` unless it is
//!   a Bundle, Binary or Parameters);
//! - any other node is typed loosely from its JSON: a string is any string-like primitive
//!   (`string`, `code`, `uri`, ...; `date`/`dateTime`/`time` only if it looks like one), a
//!   number a `decimal` (and an `integer` when integral), `true`/`false` a `boolean`; an object
//!   that is not a resource has no known type, so `is`/`as`/`ofType()` with a complex type
//!   drop it. The R4 expressions only ever apply `as` to choice elements, so nothing they
//!   index is lost to this.
//!
//! Departures from the spec, each what a FHIR server indexing R4 needs:
//! - `x as T` and `x.as(T)` filter like `ofType(T)` instead of failing on several items
//!   (`Observation.component.value as Quantity` must index every component);
//! - `resolve()` fetches nothing: `#id` finds a contained resource, a reference inside a
//!   Bundle finds its entry, anything else becomes `{"resourceType": T, "id": id}` with `T`
//!   from the reference (`Patient/1`, `http://x/Patient/1`, canonical `http://x/ValueSet/v`)
//!   or `Reference.type`, so that `where(resolve() is Patient)` works;
//! - `hasExtension(url)` (used by R4 but not defined by it) is `extension(url).exists()`;
//! - string functions on a non-string give empty instead of an error; dates compare as
//!   text on their common precision (time zones not normalised); decimals are `f64`;
//! - `System.String` & co are folded onto the FHIR primitives (`string`, ...); quantity
//!   literals, `$total`, `aggregate()`, `matches()`, terminology and model functions are
//!   not supported (compile error).
//!
//! `tests/r4_search_differential.rs` checks the values every R4 SearchParameter extracts from
//! every official R4 example against `fhirpathpy` (PyPI), with what it normalises and its
//! short allow-list of fhirpathpy faults written there and in
//! `tests/python/fhirpath_differential.py` (workspace root).
//!
//! Limits, so that no input can exhaust the stack or memory: expressions nest at most 32 deep
//! (unions are flat and do not count; R4 needs far less), and a collection of more than
//! 100,000 items is an evaluation error.

mod eval;
mod lexer;
mod locate;
mod model;
mod parser;
pub mod patch;
mod types;

pub use locate::{LocateError, Location, Step};

#[cfg(test)]
mod tests;

use serde_json::Value;

/// A compiled expression.
#[derive(Debug, Clone)]
pub struct Expr {
    ast: parser::Ast,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("FHIRPath '{expression}': {message}")]
pub struct ParseError {
    pub expression: String,
    pub message: String,
}

/// Parses an expression; unknown functions and variables are errors.
pub fn compile(expression: &str) -> Result<Expr, ParseError> {
    let err = |message: String| ParseError {
        expression: expression.to_string(),
        message,
    };
    let tokens = lexer::lex(expression).map_err(err)?;
    let ast = parser::parse(tokens).map_err(err)?;
    Ok(Expr { ast })
}

/// Evaluation failed where the spec calls for an error; [`Expr::evaluate`] gives empty then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("FHIRPath evaluation error")]
pub struct EvalError;

/// One item of a result collection: a node of the resource (borrowed) or a computed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<'a> {
    Node(&'a Value),
    Value(Value),
}

impl<'a> Item<'a> {
    pub fn value(&self) -> &Value {
        match self {
            Item::Node(v) => v,
            Item::Value(v) => v,
        }
    }
}

impl Expr {
    /// Evaluates against a resource (the resource is both %resource and the initial context).
    /// Errors during evaluation (a type mismatch the spec would raise) yield an empty collection,
    /// never a panic.
    pub fn evaluate<'a>(&self, resource: &'a Value) -> Vec<Item<'a>> {
        match eval::Evaluator::new(resource).run(&self.ast) {
            Ok(items) => items.into_iter().map(|it| it.item).collect(),
            Err(eval::Fail) => Vec::new(),
        }
    }

    /// Evaluates with `focus`, a node of `resource`, as the initial context, and `resource` as
    /// `%resource`: how a composite search parameter's components see each item of its
    /// context (R4 `MolecularSequence.variant` components read `%resource.referenceSeq`).
    pub fn evaluate_on<'a>(&self, resource: &'a Value, focus: &'a Value) -> Vec<Item<'a>> {
        match eval::Evaluator::new(resource).run_on(&self.ast, focus) {
            Ok(items) => items.into_iter().map(|it| it.item).collect(),
            Err(eval::Fail) => Vec::new(),
        }
    }

    /// Evaluates like [`Expr::evaluate`], but tells an evaluation error (what the spec calls
    /// an error: a type mismatch, several items where one is required, ...) from an empty
    /// result.
    pub fn try_evaluate<'a>(&self, resource: &'a Value) -> Result<Vec<Item<'a>>, EvalError> {
        match eval::Evaluator::new(resource).run(&self.ast) {
            Ok(items) => Ok(items.into_iter().map(|it| it.item).collect()),
            Err(eval::Fail) => Err(EvalError),
        }
    }

    /// Evaluates like [`Expr::evaluate`], then gives where each item of the result is in the
    /// resource. An error when evaluation fails (instead of an empty result) or when an item
    /// is not a node of the resource (a literal, a computed value, a `resolve()` stub).
    pub fn locate(&self, resource: &Value) -> Result<Vec<Location>, LocateError> {
        locate_ast(&self.ast, resource)
    }
}

pub(crate) fn locate_ast(
    ast: &parser::Ast,
    resource: &Value,
) -> Result<Vec<Location>, LocateError> {
    let items = eval::Evaluator::new(resource)
        .run(ast)
        .map_err(|eval::Fail| LocateError::Evaluation)?;
    locate::locate(resource, &items)
}
