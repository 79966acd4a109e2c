//! JMESPath through the `jmespath` crate (the reference Rust implementation), with Azure's
//! custom functions registered in one shared runtime.
//!
//! Azure (JmesPath.Net) distinguishes a projection's result from a plain array: a type match
//! fans out over a projection's elements, while a single-value expression fails when a
//! projection yields more than one. The crate returns both as arrays, so whether a result is a
//! projection is read from the expression's syntax tree.

use std::sync::LazyLock;

use jmespath::ast::Ast;
use jmespath::{ErrorReason, JmespathError, Runtime};
use serde_json::Value;

use super::EvalError;
use super::{convert, functions};

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    let mut runtime = Runtime::new();
    runtime.register_builtin_functions();
    functions::register(&mut runtime);
    runtime
});

/// A compiled expression. It keeps the syntax tree and runs it with `jmespath::interpret`:
/// `Expression::search` would convert the data through serde (see `convert`).
#[derive(Clone)]
pub struct JmesPath {
    source: String,
    ast: Ast,
    projection: bool,
}

impl std::fmt::Debug for JmesPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JmesPath({})", self.source)
    }
}

/// The message of a JMESPath error, without the crate's position diagram.
pub(crate) fn describe(e: &JmespathError) -> String {
    match &e.reason {
        ErrorReason::Parse(m) => m.clone(),
        ErrorReason::Runtime(r) => r.to_string(),
    }
}

impl JmesPath {
    pub fn compile(source: &str) -> Result<Self, String> {
        let ast = jmespath::parse(source).map_err(|e| {
            format!(
                "the JMESPath expression could not be parsed: {}",
                describe(&e)
            )
        })?;
        let ast = convert::repair_literals(ast);
        check_functions(&ast)?;
        let projection = matches!(ast, Ast::Projection { .. });
        Ok(Self {
            source: source.to_owned(),
            ast,
            projection,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    fn search(&self, data: &Value) -> Result<Value, EvalError> {
        let failed = |message: String| EvalError::Failed {
            expression: self.as_str().to_owned(),
            message,
        };
        let data = jmespath::Rcvar::new(convert::to_variable(data));
        let mut ctx = jmespath::Context::new(&self.source, &RUNTIME);
        let result =
            jmespath::interpret(&data, &self.ast, &mut ctx).map_err(|e| failed(describe(&e)))?;
        Ok(convert::to_value(&result))
    }

    pub fn select_one(&self, data: &Value) -> Result<Option<Value>, EvalError> {
        match self.search(data)? {
            Value::Array(items) if self.projection && items.len() > 1 => {
                Err(EvalError::MultipleTokens(self.as_str().to_owned()))
            }
            Value::Null => Ok(None),
            other => Ok(Some(other)),
        }
    }

    pub fn select_all(&self, data: &Value) -> Result<Vec<Value>, EvalError> {
        match self.search(data)? {
            Value::Array(items) if self.projection => Ok(items),
            Value::Null => Ok(Vec::new()),
            other => Ok(vec![other]),
        }
    }
}

/// Unknown functions and wrong argument counts of Azure's functions are mapping errors, found
/// when the mapping is loaded (as JmesPath.Net finds them when it parses), not per message.
fn check_functions(ast: &Ast) -> Result<(), String> {
    let mut children: Vec<&Ast> = Vec::new();
    match ast {
        Ast::Function { name, args, .. } => {
            if RUNTIME.get_function(name).is_none() {
                return Err(format!("unknown JMESPath function '{name}'"));
            }
            if let Some(expected) = functions::arity(name) {
                if args.len() != expected {
                    return Err(format!(
                        "incorrect number of arguments provided to function {name}: expected {expected} but received {}",
                        args.len()
                    ));
                }
            }
            children.extend(args.iter());
        }
        Ast::Comparison { lhs, rhs, .. }
        | Ast::Projection { lhs, rhs, .. }
        | Ast::And { lhs, rhs, .. }
        | Ast::Or { lhs, rhs, .. }
        | Ast::Subexpr { lhs, rhs, .. } => children.extend([&**lhs, &**rhs]),
        Ast::Condition {
            predicate, then, ..
        } => children.extend([&**predicate, &**then]),
        Ast::Expref { ast, .. } => children.push(ast),
        Ast::Flatten { node, .. } | Ast::Not { node, .. } | Ast::ObjectValues { node, .. } => {
            children.push(node)
        }
        Ast::MultiList { elements, .. } => children.extend(elements.iter()),
        Ast::MultiHash { elements, .. } => children.extend(elements.iter().map(|kv| &kv.value)),
        Ast::Identity { .. }
        | Ast::Field { .. }
        | Ast::Index { .. }
        | Ast::Literal { .. }
        | Ast::Slice { .. } => {}
    }
    children.into_iter().try_for_each(check_functions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn projections_fan_out_and_single_values_refuse_them() {
        let p = JmesPath::compile("to_array(@)[?heartrate]").unwrap();
        let data = json!([{"heartrate": 1}, {"heartrate": 2}, {"steps": 3}]);
        assert_eq!(p.select_all(&data).unwrap().len(), 2);
        assert!(matches!(
            p.select_one(&data),
            Err(EvalError::MultipleTokens(_))
        ));
        let plain = JmesPath::compile("a").unwrap();
        assert_eq!(
            plain.select_all(&json!({"a": [1, 2]})).unwrap(),
            vec![json!([1, 2])]
        );
        assert_eq!(plain.select_one(&json!({"b": 1})).unwrap(), None);
    }

    #[test]
    fn unknown_functions_and_wrong_arity_fail_at_compile() {
        assert!(JmesPath::compile("nosuch(a)")
            .unwrap_err()
            .contains("nosuch"));
        assert!(JmesPath::compile("add(a)").unwrap_err().contains("add"));
        assert!(JmesPath::compile("insertString(a, b, c, d)").is_err());
        assert!(JmesPath::compile("divide(left").is_err());
        assert!(JmesPath::compile("add(`1`, `2`)").is_ok());
    }
}
