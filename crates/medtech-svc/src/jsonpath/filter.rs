//! Filter expressions (`[?(...)]`) and Json.NET's comparison rules.
//!
//! Json.NET compares a left path's every result with the right side's every result; the
//! filter holds if any pair satisfies the operator. Numbers compare numerically (an integer
//! equals the same float), strings ordinally. For `<`/`>` a number on the left is compared
//! with a numeric string on the right as numbers (Json.NET converts with `ToDecimal`), a
//! string on the left with anything as strings. `==` never equates a number with a string.

use std::cmp::Ordering;

use regex::Regex;
use serde_json::Value;

use super::Step;

#[derive(Debug, Clone)]
pub(crate) enum FilterExpr {
    Or(Box<FilterExpr>, Box<FilterExpr>),
    And(Box<FilterExpr>, Box<FilterExpr>),
    /// A bare path: true when it selects anything.
    Exists(Operand),
    Compare(Operand, CompareOp, Operand),
}

#[derive(Debug, Clone)]
pub(crate) enum Operand {
    /// `@...` (relative to the tested node) or `$...` (relative to the document).
    Path {
        from_root: bool,
        steps: Vec<Step>,
    },
    Literal(Value),
    Regex(Regex),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CompareOp {
    Eq,
    Ne,
    StrictEq,
    StrictNe,
    Lt,
    Le,
    Gt,
    Ge,
    Regex,
}

impl FilterExpr {
    pub(crate) fn matches(&self, node: &Value, root: &Value) -> bool {
        match self {
            FilterExpr::Or(a, b) => a.matches(node, root) || b.matches(node, root),
            FilterExpr::And(a, b) => a.matches(node, root) && b.matches(node, root),
            FilterExpr::Exists(operand) => !resolve(operand, node, root).is_empty(),
            FilterExpr::Compare(left, op, right) => {
                let lefts = resolve(left, node, root);
                if let (CompareOp::Regex, Operand::Regex(re)) = (op, right) {
                    return lefts
                        .iter()
                        .any(|l| matches!(l, Value::String(s) if re.is_match(s)));
                }
                let rights = resolve(right, node, root);
                lefts
                    .iter()
                    .any(|l| rights.iter().any(|r| compare(l, *op, r)))
            }
        }
    }
}

fn resolve<'a>(operand: &'a Operand, node: &'a Value, root: &'a Value) -> Vec<&'a Value> {
    match operand {
        Operand::Path { from_root, steps } => {
            let start = if *from_root { root } else { node };
            super::evaluate(steps, start, root)
        }
        Operand::Literal(value) => vec![value],
        Operand::Regex(_) => Vec::new(),
    }
}

fn compare(left: &Value, op: CompareOp, right: &Value) -> bool {
    match op {
        CompareOp::Eq => loose_eq(left, right),
        CompareOp::Ne => !loose_eq(left, right),
        CompareOp::StrictEq => strict_eq(left, right),
        CompareOp::StrictNe => !strict_eq(left, right),
        CompareOp::Lt => order(left, right) == Some(Ordering::Less),
        CompareOp::Le => matches!(order(left, right), Some(Ordering::Less | Ordering::Equal)),
        CompareOp::Gt => order(left, right) == Some(Ordering::Greater),
        CompareOp::Ge => matches!(
            order(left, right),
            Some(Ordering::Greater | Ordering::Equal)
        ),
        CompareOp::Regex => false,
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Object(_) | Value::Array(_))
}

fn loose_eq(left: &Value, right: &Value) -> bool {
    if !is_scalar(left) || !is_scalar(right) {
        return false;
    }
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => number(a) == number(b),
        _ => left == right,
    }
}

fn strict_eq(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => {
            is_integer(a) == is_integer(b) && number(a) == number(b)
        }
        _ => is_scalar(left) && left == right,
    }
}

fn order(left: &Value, right: &Value) -> Option<Ordering> {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => number(a).partial_cmp(&number(b)),
        (Value::Number(a), Value::String(b)) => {
            number(a).partial_cmp(&b.trim().parse::<f64>().ok()?)
        }
        (Value::String(a), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
        (Value::String(a), Value::Number(b)) => Some(a.as_str().cmp(b.to_string().as_str())),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

fn number(n: &serde_json::Number) -> f64 {
    n.as_f64().unwrap_or(f64::NAN)
}

fn is_integer(n: &serde_json::Number) -> bool {
    n.is_i64() || n.is_u64()
}
