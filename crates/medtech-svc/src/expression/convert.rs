//! Conversions between serde_json values and JMESPath variables.
//!
//! The workspace builds serde_json with `arbitrary_precision` (FHIR decimals keep their
//! digits). Under that feature serde hands every number to a generic deserializer as a
//! one-entry map `{"$serde_json::private::Number": "12"}`, and the `jmespath` crate, which
//! converts through serde, turns numbers into such objects (in data, in literals like
//! `` `10` `` and in `to_number`'s result). So values are converted here by hand, and
//! variables that went through serde are repaired.

use std::collections::BTreeMap;

use jmespath::ast::{Ast, KeyValuePair};
use jmespath::{Rcvar, Variable};
use serde_json::{Map, Number, Value};

const NUMBER_TOKEN: &str = "$serde_json::private::Number";

pub(crate) fn to_variable(value: &Value) -> Variable {
    match value {
        Value::Null => Variable::Null,
        Value::Bool(b) => Variable::Bool(*b),
        Value::Number(n) => Variable::Number(n.clone()),
        Value::String(s) => Variable::String(s.clone()),
        Value::Array(items) => {
            Variable::Array(items.iter().map(|v| Rcvar::new(to_variable(v))).collect())
        }
        Value::Object(map) => Variable::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), Rcvar::new(to_variable(v))))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

/// A number that serde smuggled through as a map, if `map` is one.
fn smuggled_number(map: &BTreeMap<String, Rcvar>) -> Option<Number> {
    match (map.len(), map.get(NUMBER_TOKEN).map(|v| &**v)) {
        (1, Some(Variable::String(text))) => serde_json::from_str(text).ok(),
        _ => None,
    }
}

pub(crate) fn to_value(var: &Variable) -> Value {
    match var {
        Variable::Null | Variable::Expref(_) => Value::Null,
        Variable::Bool(b) => Value::Bool(*b),
        Variable::Number(n) => Value::Number(n.clone()),
        Variable::String(s) => Value::String(s.clone()),
        Variable::Array(items) => Value::Array(items.iter().map(|v| to_value(v)).collect()),
        Variable::Object(map) => match smuggled_number(map) {
            Some(n) => Value::Number(n),
            None => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), to_value(v)))
                    .collect::<Map<_, _>>(),
            ),
        },
    }
}

/// `var` with every smuggled number turned back into a number.
pub(crate) fn repair(var: &Variable) -> Variable {
    match var {
        Variable::Array(items) => {
            Variable::Array(items.iter().map(|v| Rcvar::new(repair(v))).collect())
        }
        Variable::Object(map) => match smuggled_number(map) {
            Some(n) => Variable::Number(n),
            None => Variable::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), Rcvar::new(repair(v))))
                    .collect(),
            ),
        },
        other => other.clone(),
    }
}

/// The syntax tree with its literals repaired.
pub(crate) fn repair_literals(ast: Ast) -> Ast {
    let fix = |b: Box<Ast>| Box::new(repair_literals(*b));
    match ast {
        Ast::Literal { offset, value } => Ast::Literal {
            offset,
            value: Rcvar::new(repair(&value)),
        },
        Ast::Comparison {
            offset,
            comparator,
            lhs,
            rhs,
        } => Ast::Comparison {
            offset,
            comparator,
            lhs: fix(lhs),
            rhs: fix(rhs),
        },
        Ast::Condition {
            offset,
            predicate,
            then,
        } => Ast::Condition {
            offset,
            predicate: fix(predicate),
            then: fix(then),
        },
        Ast::Expref { offset, ast } => Ast::Expref {
            offset,
            ast: fix(ast),
        },
        Ast::Flatten { offset, node } => Ast::Flatten {
            offset,
            node: fix(node),
        },
        Ast::Not { offset, node } => Ast::Not {
            offset,
            node: fix(node),
        },
        Ast::ObjectValues { offset, node } => Ast::ObjectValues {
            offset,
            node: fix(node),
        },
        Ast::Function { offset, name, args } => Ast::Function {
            offset,
            name,
            args: args.into_iter().map(repair_literals).collect(),
        },
        Ast::MultiList { offset, elements } => Ast::MultiList {
            offset,
            elements: elements.into_iter().map(repair_literals).collect(),
        },
        Ast::MultiHash { offset, elements } => Ast::MultiHash {
            offset,
            elements: elements
                .into_iter()
                .map(|kv| KeyValuePair {
                    key: kv.key,
                    value: repair_literals(kv.value),
                })
                .collect(),
        },
        Ast::Projection { offset, lhs, rhs } => Ast::Projection {
            offset,
            lhs: fix(lhs),
            rhs: fix(rhs),
        },
        Ast::And { offset, lhs, rhs } => Ast::And {
            offset,
            lhs: fix(lhs),
            rhs: fix(rhs),
        },
        Ast::Or { offset, lhs, rhs } => Ast::Or {
            offset,
            lhs: fix(lhs),
            rhs: fix(rhs),
        },
        Ast::Subexpr { offset, lhs, rhs } => Ast::Subexpr {
            offset,
            lhs: fix(lhs),
            rhs: fix(rhs),
        },
        leaf @ (Ast::Identity { .. }
        | Ast::Field { .. }
        | Ast::Index { .. }
        | Ast::Slice { .. }) => leaf,
    }
}
