//! Azure MedTech's custom JMESPath functions, with the semantics of iomt-fhir's
//! `Microsoft.Health.Expressions`: arithmetic on two integers stays integral (`divide` truncates),
//! a float on either side makes it floating point; `insertString` inserts at a character
//! position; `fromUnixTimestamp[Ms]` turn epoch seconds/milliseconds into a UTC time.
//!
//! Where iomt-fhir silently wraps an integer overflow (`add`, `subtract`, `multiply`), we fail
//! as its documentation says ("the result must fit in a long"). A time is returned as an
//! ISO 8601 string (JMESPath has no time type); the extractor reads it back as a timestamp.

use chrono::{DateTime, SecondsFormat};
use jmespath::functions::Function;
use jmespath::{Context, ErrorReason, JmespathError, Rcvar, Runtime, Variable};
use serde_json::Number;

type Outcome = Result<Rcvar, JmespathError>;

const FUNCTIONS: [(&str, usize); 8] = [
    ("add", 2),
    ("subtract", 2),
    ("multiply", 2),
    ("divide", 2),
    ("pow", 2),
    ("insertString", 3),
    ("fromUnixTimestamp", 1),
    ("fromUnixTimestampMs", 1),
];

/// How many arguments one of Azure's functions takes; `None` for any other function.
pub(crate) fn arity(name: &str) -> Option<usize> {
    FUNCTIONS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

pub(crate) fn register(runtime: &mut Runtime) {
    runtime.register_function("add", Box::new(Arithmetic(Op::Add)));
    runtime.register_function("subtract", Box::new(Arithmetic(Op::Subtract)));
    runtime.register_function("multiply", Box::new(Arithmetic(Op::Multiply)));
    runtime.register_function("divide", Box::new(Arithmetic(Op::Divide)));
    runtime.register_function("pow", Box::new(Arithmetic(Op::Pow)));
    runtime.register_function("insertString", Box::new(InsertString));
    runtime.register_function("fromUnixTimestamp", Box::new(FromUnix { millis: false }));
    runtime.register_function("fromUnixTimestampMs", Box::new(FromUnix { millis: true }));
    runtime.register_function("to_number", Box::new(ToNumber));
}

/// The built-in `to_number`, replaced because the crate's parses through serde (see
/// `convert`); same semantics: numbers pass, numeric strings convert, anything else is null.
struct ToNumber;

impl Function for ToNumber {
    fn evaluate(&self, args: &[Rcvar], ctx: &mut Context<'_>) -> Outcome {
        check_count("to_number", args, 1, ctx)?;
        Ok(match &*args[0] {
            Variable::Number(_) => args[0].clone(),
            Variable::String(s) => Rcvar::new(
                serde_json::from_str::<Number>(s.trim())
                    .map(Variable::Number)
                    .unwrap_or(Variable::Null),
            ),
            _ => Rcvar::new(Variable::Null),
        })
    }
}

fn fail(ctx: &Context<'_>, message: String) -> JmespathError {
    // The crate has no "custom failure" reason; `describe` shows this message as it is.
    JmespathError::from_ctx(ctx, ErrorReason::Parse(message))
}

fn check_count(
    name: &str,
    args: &[Rcvar],
    expected: usize,
    ctx: &Context<'_>,
) -> Result<(), JmespathError> {
    if args.len() == expected {
        Ok(())
    } else {
        Err(fail(
            ctx,
            format!("incorrect number of arguments provided to function {name}: expected {expected} but received {}", args.len()),
        ))
    }
}

/// A JSON number as Json.NET types it: an integer (fits a long) or a float.
enum Num {
    Int(i64),
    Float(f64),
}

fn number_arg(
    name: &str,
    args: &[Rcvar],
    pos: usize,
    ctx: &Context<'_>,
) -> Result<Num, JmespathError> {
    let invalid = || {
        fail(
            ctx,
            format!(
                "invalid-type: function {name} expects argument {pos} to be a number, not {:?}",
                args[pos]
            ),
        )
    };
    match &*args[pos] {
        Variable::Number(n) if n.is_i64() => n.as_i64().map(Num::Int).ok_or_else(invalid),
        Variable::Number(n) if n.is_u64() => Err(fail(
            ctx,
            format!("mathematic error: argument {pos} of {name} does not fit in a long"),
        )),
        Variable::Number(n) => n.as_f64().map(Num::Float).ok_or_else(invalid),
        _ => Err(invalid()),
    }
}

fn integer_arg(
    name: &str,
    args: &[Rcvar],
    pos: usize,
    ctx: &Context<'_>,
) -> Result<i64, JmespathError> {
    match number_arg(name, args, pos, ctx)? {
        Num::Int(i) => Ok(i),
        Num::Float(_) => Err(fail(
            ctx,
            format!("invalid-type: function {name} expects argument {pos} to be an integer"),
        )),
    }
}

fn string_arg<'a>(
    name: &str,
    args: &'a [Rcvar],
    pos: usize,
    ctx: &Context<'_>,
) -> Result<&'a str, JmespathError> {
    match &*args[pos] {
        Variable::String(s) => Ok(s),
        _ => Err(fail(
            ctx,
            format!("invalid-type: function {name} expects argument {pos} to be a string"),
        )),
    }
}

#[derive(Clone, Copy)]
enum Op {
    Add,
    Subtract,
    Multiply,
    Divide,
    Pow,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Subtract => "subtract",
            Op::Multiply => "multiply",
            Op::Divide => "divide",
            Op::Pow => "pow",
        }
    }
}

struct Arithmetic(Op);

impl Function for Arithmetic {
    fn evaluate(&self, args: &[Rcvar], ctx: &mut Context<'_>) -> Outcome {
        let name = self.0.name();
        check_count(name, args, 2, ctx)?;
        let (left, right) = (
            number_arg(name, args, 0, ctx)?,
            number_arg(name, args, 1, ctx)?,
        );
        let number = match (left, right) {
            (Num::Int(a), Num::Int(b)) => {
                Number::from(integer_op(self.0, a, b).map_err(|m| fail(ctx, m))?)
            }
            (a, b) => {
                let (a, b) = (as_f64(a), as_f64(b));
                let result = match self.0 {
                    Op::Add => a + b,
                    Op::Subtract => a - b,
                    Op::Multiply => a * b,
                    Op::Divide => a / b,
                    Op::Pow => a.powf(b),
                };
                Number::from_f64(result).ok_or_else(|| {
                    fail(
                        ctx,
                        format!("mathematic error: {name} gave no finite number"),
                    )
                })?
            }
        };
        Ok(Rcvar::new(Variable::Number(number)))
    }
}

fn as_f64(n: Num) -> f64 {
    match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    }
}

fn integer_op(op: Op, a: i64, b: i64) -> Result<i64, String> {
    let overflow = || format!("mathematic error: overflow in {}", op.name());
    match op {
        Op::Add => a.checked_add(b).ok_or_else(overflow),
        Op::Subtract => a.checked_sub(b).ok_or_else(overflow),
        Op::Multiply => a.checked_mul(b).ok_or_else(overflow),
        Op::Divide if b == 0 => Err("mathematic error: divide by zero".into()),
        Op::Divide => a.checked_div(b).ok_or_else(overflow),
        Op::Pow => {
            // iomt-fhir computes in doubles and converts to a long, rounding half to even.
            let result = (a as f64).powf(b as f64).round_ties_even();
            if result.is_finite() && result >= i64::MIN as f64 && result < i64::MAX as f64 {
                Ok(result as i64)
            } else {
                Err(overflow())
            }
        }
    }
}

struct InsertString;

impl Function for InsertString {
    fn evaluate(&self, args: &[Rcvar], ctx: &mut Context<'_>) -> Outcome {
        const NAME: &str = "insertString";
        check_count(NAME, args, 3, ctx)?;
        let original = string_arg(NAME, args, 0, ctx)?;
        let insert = string_arg(NAME, args, 1, ctx)?;
        let pos = integer_arg(NAME, args, 2, ctx)?;
        let chars = original.chars().count();
        let pos = usize::try_from(pos)
            .ok()
            .filter(|p| *p <= chars)
            .ok_or_else(|| fail(ctx, format!("insertString: position {pos} is out of range of a string of {chars} characters")))?;
        let mut out: String = original.chars().take(pos).collect();
        out.push_str(insert);
        out.extend(original.chars().skip(pos));
        Ok(Rcvar::new(Variable::String(out)))
    }
}

struct FromUnix {
    millis: bool,
}

impl Function for FromUnix {
    fn evaluate(&self, args: &[Rcvar], ctx: &mut Context<'_>) -> Outcome {
        let name = if self.millis {
            "fromUnixTimestampMs"
        } else {
            "fromUnixTimestamp"
        };
        check_count(name, args, 1, ctx)?;
        let value = integer_arg(name, args, 0, ctx)?;
        let time = if self.millis {
            DateTime::from_timestamp_millis(value)
        } else {
            DateTime::from_timestamp(value, 0)
        }
        .ok_or_else(|| fail(ctx, format!("{name}: {value} is out of the range of times")))?;
        Ok(Rcvar::new(Variable::String(
            time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        )))
    }
}

#[cfg(test)]
mod tests {
    use crate::expression::JmesPath;
    use serde_json::{json, Value};

    fn eval(expr: &str, data: Value) -> Result<Option<Value>, String> {
        JmesPath::compile(expr)?
            .select_one(&data)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn arithmetic_as_documented() {
        let lr = |l: Value, r: Value| json!({"left": l, "right": r});
        assert_eq!(eval("add(`10`, `10`)", json!({})).unwrap(), Some(json!(20)));
        assert_eq!(
            eval("add(left, right)", lr(json!(40), json!(50))).unwrap(),
            Some(json!(90))
        );
        assert_eq!(
            eval("add(left, right)", lr(json!(-1), json!(10.5))).unwrap(),
            Some(json!(9.5))
        );
        assert_eq!(
            eval("subtract(left, right)", lr(json!(40), json!(50))).unwrap(),
            Some(json!(-10))
        );
        assert_eq!(
            eval("multiply(left, right)", lr(json!(40), json!(50))).unwrap(),
            Some(json!(2000))
        );
        assert_eq!(
            eval("divide(left, right)", lr(json!(100), json!(25))).unwrap(),
            Some(json!(4))
        );
        // Two integers divide as integers, as iomt-fhir's code does.
        assert_eq!(
            eval("divide(left, right)", lr(json!(40), json!(50))).unwrap(),
            Some(json!(0))
        );
        assert_eq!(
            eval("divide(left, right)", lr(json!(40.0), json!(50))).unwrap(),
            Some(json!(0.8))
        );
        assert!(eval("divide(left, right)", lr(json!(50), json!(0)))
            .unwrap_err()
            .contains("divide by zero"));
        assert_eq!(
            eval("pow(`10`, `10`)", json!({})).unwrap(),
            Some(json!(10_000_000_000_i64))
        );
        assert_eq!(
            eval("pow(left, right)", lr(json!(100), json!(0.5))).unwrap(),
            Some(json!(10.0))
        );
        assert!(eval("pow(left, right)", lr(json!(40), json!(50)))
            .unwrap_err()
            .contains("overflow"));
        assert!(eval("add(left, right)", lr(json!(i64::MAX), json!(1)))
            .unwrap_err()
            .contains("overflow"));
        assert!(eval("add(left, right)", lr(json!("1"), json!(1)))
            .unwrap_err()
            .contains("invalid-type"));
    }

    #[test]
    fn insert_string_as_documented() {
        let data = |o: &str, t: &str, p: i64| json!({"original": o, "toInsert": t, "pos": p});
        let f = "insertString(original, toInsert, pos)";
        assert_eq!(
            eval("insertString('mple', 'sa', `0`)", json!({})).unwrap(),
            Some(json!("sample"))
        );
        assert_eq!(
            eval(f, data("suess", "cc", 2)).unwrap(),
            Some(json!("success"))
        );
        assert_eq!(
            eval(f, data("myString", "!!", 8)).unwrap(),
            Some(json!("myString!!"))
        );
        assert_eq!(
            eval(
                "insertString(original, toInsert, length(original))",
                data("sample ", "text", 0)
            )
            .unwrap(),
            Some(json!("sample text"))
        );
        assert!(eval(f, data("myString", "!!", 100))
            .unwrap_err()
            .contains("out of range"));
        assert!(eval(f, data("myString", "!!", -1))
            .unwrap_err()
            .contains("out of range"));
    }

    #[test]
    fn unix_timestamps() {
        assert_eq!(
            eval("fromUnixTimestamp(unix)", json!({"unix": 1625677200})).unwrap(),
            Some(json!("2021-07-07T17:00:00Z"))
        );
        assert_eq!(
            eval(
                "fromUnixTimestampMs(unix)",
                json!({"unix": 1626799080000_i64})
            )
            .unwrap(),
            Some(json!("2021-07-20T16:38:00Z"))
        );
        assert_eq!(
            eval("fromUnixTimestamp(unix)", json!({"unix": -1})).unwrap(),
            Some(json!("1969-12-31T23:59:59Z"))
        );
        assert!(eval("fromUnixTimestamp(unix)", json!({"unix": 1.5})).is_err());
        assert!(eval("fromUnixTimestamp(unix)", json!({"unix": i64::MAX})).is_err());
    }
}
