//! The grammar of FHIRPath N1, by precedence climbing (loosest first):
//! `implies` < `or xor` < `and` < `in contains` < `= ~ != !~` < `< > <= >=` < `|`
//! < `is as` < `+ - &` < `* / div mod` < unary `+ -` < `.` and `[]`.

use serde_json::Value;

use super::lexer::{Tok, Token};
use super::types::TypeSpec;

/// Nesting beyond this is refused, so that no expression can overflow the stack
/// (evaluation recurses along the tree). Unions are flat and do not count.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone)]
pub(crate) enum Ast {
    /// The input collection of the current (sub-)expression: the resource, or the item that
    /// `where`/`select`/... is looking at.
    Focus,
    /// `{}`
    Empty,
    /// A literal; `ty` is set for date/time literals.
    Lit {
        value: Value,
        ty: Option<&'static str>,
    },
    This,
    Index,
    Var(Var),
    /// An identifier at the start of a path: a type name matching the focus selects it,
    /// anything else is a member of it.
    Ident(String),
    Member(Box<Ast>, String),
    Call(Box<Ast>, Call),
    Indexer(Box<Ast>, Box<Ast>),
    Neg(Box<Ast>),
    Bin(BinOp, Box<Ast>, Box<Ast>),
    /// `a | b | c`, flat.
    Union(Vec<Ast>),
    Is(Box<Ast>, TypeSpec),
    As(Box<Ast>, TypeSpec),
}

#[derive(Debug, Clone)]
pub(crate) enum Var {
    /// `%resource`, `%rootResource`, `%context`.
    Resource,
    /// `%ucum`, `%sct`, `%loinc`.
    Const(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Implies,
    Or,
    Xor,
    And,
    In,
    Contains,
    Eq,
    Equiv,
    Ne,
    NotEquiv,
    Lt,
    Gt,
    Le,
    Ge,
    Add,
    Sub,
    Concat,
    Mul,
    Div,
    IntDiv,
    Mod,
}

#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub func: Func,
    pub args: Vec<Ast>,
    /// The type argument of `ofType`, `as`, `is`.
    pub ty: Option<TypeSpec>,
}

macro_rules! functions {
    ($($variant:ident = $name:literal ($min:literal, $max:literal)),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Func { $($variant),* }
        impl Func {
            fn lookup(name: &str) -> Option<(Func, usize, usize)> {
                match name {
                    $($name => Some((Func::$variant, $min, $max)),)*
                    _ => None,
                }
            }
        }
    };
}

functions! {
    // Filtering and projection.
    Where = "where" (1, 1),
    Select = "select" (1, 1),
    Repeat = "repeat" (1, 1),
    OfType = "ofType" (1, 1),
    As = "as" (1, 1),
    Is = "is" (1, 1),
    // Existence.
    Exists = "exists" (0, 1),
    Empty = "empty" (0, 0),
    All = "all" (1, 1),
    AllTrue = "allTrue" (0, 0),
    AnyTrue = "anyTrue" (0, 0),
    AllFalse = "allFalse" (0, 0),
    AnyFalse = "anyFalse" (0, 0),
    SubsetOf = "subsetOf" (1, 1),
    SupersetOf = "supersetOf" (1, 1),
    Count = "count" (0, 0),
    Distinct = "distinct" (0, 0),
    IsDistinct = "isDistinct" (0, 0),
    // Subsetting.
    Single = "single" (0, 0),
    First = "first" (0, 0),
    Last = "last" (0, 0),
    Tail = "tail" (0, 0),
    Skip = "skip" (1, 1),
    Take = "take" (1, 1),
    Intersect = "intersect" (1, 1),
    Exclude = "exclude" (1, 1),
    // Combining.
    Union = "union" (1, 1),
    Combine = "combine" (1, 1),
    // Conversion.
    Iif = "iif" (2, 3),
    ToString = "toString" (0, 0),
    ToInteger = "toInteger" (0, 0),
    ToDecimal = "toDecimal" (0, 0),
    ToBoolean = "toBoolean" (0, 0),
    ConvertsToString = "convertsToString" (0, 0),
    ConvertsToInteger = "convertsToInteger" (0, 0),
    ConvertsToDecimal = "convertsToDecimal" (0, 0),
    ConvertsToBoolean = "convertsToBoolean" (0, 0),
    // Strings.
    IndexOf = "indexOf" (1, 1),
    Substring = "substring" (1, 2),
    StartsWith = "startsWith" (1, 1),
    EndsWith = "endsWith" (1, 1),
    ContainsStr = "contains" (1, 1),
    Upper = "upper" (0, 0),
    Lower = "lower" (0, 0),
    Replace = "replace" (2, 2),
    Length = "length" (0, 0),
    ToChars = "toChars" (0, 0),
    Trim = "trim" (0, 0),
    // Tree navigation.
    Children = "children" (0, 0),
    Descendants = "descendants" (0, 0),
    // Utility.
    Not = "not" (0, 0),
    Trace = "trace" (1, 2),
    Now = "now" (0, 0),
    Today = "today" (0, 0),
    // FHIR additions.
    Extension = "extension" (1, 1),
    HasExtension = "hasExtension" (1, 1),
    HasValue = "hasValue" (0, 0),
    GetValue = "getValue" (0, 0),
    Resolve = "resolve" (0, 0),
}

pub(crate) fn parse(tokens: Vec<Token>) -> Result<Ast, String> {
    let mut p = Parser {
        toks: tokens,
        i: 0,
        depth: 0,
    };
    if p.toks.is_empty() {
        return Err("empty expression".into());
    }
    let ast = p.expr()?;
    match p.peek() {
        None => Ok(ast),
        Some(t) => Err(format!("unexpected {} at {}", describe(&t.tok), t.pos)),
    }
}

#[derive(Clone, Copy)]
enum Infix {
    Bin(BinOp),
    Union,
    Is,
    As,
}

struct Parser {
    toks: Vec<Token>,
    i: usize,
    depth: usize,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("'{s}'"),
        Tok::Delimited(s) => format!("`{s}`"),
        Tok::Str(s) => format!("string '{s}'"),
        Tok::Num(s) => format!("number {s}"),
        Tok::DateTime(s) => format!("@{s}"),
        Tok::Var(s) => format!("%{s}"),
        Tok::Special(s) => format!("${s}"),
        Tok::Sym(s) => format!("'{s}'"),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.i)
    }

    fn peek_tok(&self) -> Option<&Tok> {
        self.peek().map(|t| &t.tok)
    }

    fn at_sym(&self, sym: &str) -> bool {
        matches!(self.peek_tok(), Some(Tok::Sym(s)) if *s == sym)
    }

    fn expect_sym(&mut self, sym: &str) -> Result<(), String> {
        if self.at_sym(sym) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{sym}'")))
        }
    }

    fn unexpected(&self, wanted: &str) -> String {
        match self.peek() {
            Some(t) => format!(
                "expected {wanted} but found {} at {}",
                describe(&t.tok),
                t.pos
            ),
            None => format!("expected {wanted} but the expression ended"),
        }
    }

    fn expr(&mut self) -> Result<Ast, String> {
        let saved = self.depth;
        self.deeper()?;
        let r = self.binary(0);
        self.depth = saved;
        r
    }

    /// Counts one more level of tree depth on the current path.
    fn deeper(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err("expression nested too deeply".into())
        } else {
            Ok(())
        }
    }

    /// The infix operator at the cursor and its precedence (higher binds tighter).
    fn infix(&self) -> Option<(Infix, u8)> {
        Some(match self.peek_tok()? {
            Tok::Ident(s) => match s.as_str() {
                "implies" => (Infix::Bin(BinOp::Implies), 1),
                "or" => (Infix::Bin(BinOp::Or), 2),
                "xor" => (Infix::Bin(BinOp::Xor), 2),
                "and" => (Infix::Bin(BinOp::And), 3),
                "in" => (Infix::Bin(BinOp::In), 4),
                "contains" => (Infix::Bin(BinOp::Contains), 4),
                "is" => (Infix::Is, 8),
                "as" => (Infix::As, 8),
                "div" => (Infix::Bin(BinOp::IntDiv), 10),
                "mod" => (Infix::Bin(BinOp::Mod), 10),
                _ => return None,
            },
            Tok::Sym(s) => match *s {
                "=" => (Infix::Bin(BinOp::Eq), 5),
                "~" => (Infix::Bin(BinOp::Equiv), 5),
                "!=" => (Infix::Bin(BinOp::Ne), 5),
                "!~" => (Infix::Bin(BinOp::NotEquiv), 5),
                "<" => (Infix::Bin(BinOp::Lt), 6),
                ">" => (Infix::Bin(BinOp::Gt), 6),
                "<=" => (Infix::Bin(BinOp::Le), 6),
                ">=" => (Infix::Bin(BinOp::Ge), 6),
                "|" => (Infix::Union, 7),
                "+" => (Infix::Bin(BinOp::Add), 9),
                "-" => (Infix::Bin(BinOp::Sub), 9),
                "&" => (Infix::Bin(BinOp::Concat), 9),
                "*" => (Infix::Bin(BinOp::Mul), 10),
                "/" => (Infix::Bin(BinOp::Div), 10),
                _ => return None,
            },
            _ => return None,
        })
    }

    /// Operators of precedence `min` or more, left-associative (precedence climbing).
    fn binary(&mut self, min: u8) -> Result<Ast, String> {
        let saved = self.depth;
        let mut left = self.unary()?;
        while let Some((op, prec)) = self.infix() {
            if prec < min {
                break;
            }
            self.i += 1;
            left = match op {
                Infix::Is => {
                    self.deeper()?;
                    Ast::Is(Box::new(left), self.type_spec()?)
                }
                Infix::As => {
                    self.deeper()?;
                    Ast::As(Box::new(left), self.type_spec()?)
                }
                // Flat, and not deeper: R4 has expressions with dozens of unions.
                Infix::Union => {
                    let right = self.binary(prec + 1)?;
                    match left {
                        Ast::Union(mut parts) => {
                            parts.push(right);
                            Ast::Union(parts)
                        }
                        other => Ast::Union(vec![other, right]),
                    }
                }
                Infix::Bin(b) => {
                    self.deeper()?;
                    let right = self.binary(prec + 1)?;
                    Ast::Bin(b, Box::new(left), Box::new(right))
                }
            };
        }
        self.depth = saved;
        Ok(left)
    }

    fn unary(&mut self) -> Result<Ast, String> {
        if self.at_sym("+") || self.at_sym("-") {
            let neg = self.at_sym("-");
            self.i += 1;
            let saved = self.depth;
            self.deeper()?;
            let inner = self.unary();
            self.depth = saved;
            let inner = inner?;
            return Ok(if neg {
                Ast::Neg(Box::new(inner))
            } else {
                inner
            });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Ast, String> {
        let saved = self.depth;
        let mut ast = self.term()?;
        loop {
            if self.at_sym(".") || self.at_sym("[") {
                self.deeper()?;
            }
            if self.at_sym(".") {
                self.i += 1;
                let name = match self.peek_tok() {
                    Some(Tok::Ident(s)) | Some(Tok::Delimited(s)) => s.clone(),
                    _ => return Err(self.unexpected("a name after '.'")),
                };
                self.i += 1;
                ast = if self.at_sym("(") {
                    let call = self.call(&name)?;
                    Ast::Call(Box::new(ast), call)
                } else {
                    Ast::Member(Box::new(ast), name)
                };
            } else if self.at_sym("[") {
                self.i += 1;
                let idx = self.expr()?;
                self.expect_sym("]")?;
                ast = Ast::Indexer(Box::new(ast), Box::new(idx));
            } else {
                self.depth = saved;
                return Ok(ast);
            }
        }
    }

    fn term(&mut self) -> Result<Ast, String> {
        let Some(tok) = self.peek_tok().cloned() else {
            return Err(self.unexpected("a term"));
        };
        self.i += 1;
        Ok(match tok {
            Tok::Sym("(") => {
                let e = self.expr()?;
                self.expect_sym(")")?;
                e
            }
            Tok::Sym("{") => {
                self.expect_sym("}")?;
                Ast::Empty
            }
            Tok::Str(s) => Ast::Lit {
                value: Value::String(s),
                ty: None,
            },
            Tok::Num(n) => {
                let num: serde_json::Number =
                    n.parse().map_err(|_| format!("bad number literal {n}"))?;
                if self.at_quantity_unit() {
                    return Err("quantity literals are not supported".into());
                }
                Ast::Lit {
                    value: Value::Number(num),
                    ty: None,
                }
            }
            Tok::DateTime(s) => {
                let ty = if s.starts_with('T') {
                    "time"
                } else if s.contains('T') {
                    "dateTime"
                } else {
                    "date"
                };
                let text = s.strip_prefix('T').unwrap_or(&s).trim_end_matches('T');
                Ast::Lit {
                    value: Value::String(text.to_string()),
                    ty: Some(ty),
                }
            }
            Tok::Var(v) => Ast::Var(match v.as_str() {
                "resource" | "rootResource" | "context" => Var::Resource,
                "ucum" => Var::Const("http://unitsofmeasure.org"),
                "sct" => Var::Const("http://snomed.info/sct"),
                "loinc" => Var::Const("http://loinc.org"),
                _ => return Err(format!("unknown variable %{v}")),
            }),
            Tok::Special(s) => match s.as_str() {
                "this" => Ast::This,
                "index" => Ast::Index,
                _ => return Err(format!("unsupported ${s}")),
            },
            Tok::Ident(s) if s == "true" || s == "false" => Ast::Lit {
                value: Value::Bool(s == "true"),
                ty: None,
            },
            Tok::Ident(s) | Tok::Delimited(s) => {
                if self.at_sym("(") {
                    let call = self.call(&s)?;
                    Ast::Call(Box::new(Ast::Focus), call)
                } else {
                    Ast::Ident(s)
                }
            }
            other => {
                self.i -= 1;
                return Err(self.unexpected(&format!("a term, not {}", describe(&other))));
            }
        })
    }

    fn at_quantity_unit(&self) -> bool {
        match self.peek_tok() {
            Some(Tok::Str(_)) => true,
            Some(Tok::Ident(s)) => matches!(
                s.trim_end_matches('s'),
                "year" | "month" | "week" | "day" | "hour" | "minute" | "second" | "millisecond"
            ),
            _ => false,
        }
    }

    /// `name(args)`, the current token being `(`.
    fn call(&mut self, name: &str) -> Result<Call, String> {
        let (func, min, max) =
            Func::lookup(name).ok_or_else(|| format!("unknown function {name}()"))?;
        self.expect_sym("(")?;
        let mut args = Vec::new();
        if !self.at_sym(")") {
            loop {
                args.push(self.expr()?);
                if self.at_sym(",") {
                    self.i += 1;
                } else {
                    break;
                }
            }
        }
        self.expect_sym(")")?;
        if args.len() < min || args.len() > max {
            return Err(if min == max {
                format!("{name}() takes {min} argument(s), got {}", args.len())
            } else {
                format!(
                    "{name}() takes {min} to {max} arguments, got {}",
                    args.len()
                )
            });
        }
        let ty = if matches!(func, Func::OfType | Func::As | Func::Is) {
            let spec =
                type_from_ast(&args[0]).ok_or_else(|| format!("{name}() needs a type name"))?;
            args.clear();
            Some(spec)
        } else {
            None
        };
        Ok(Call { func, args, ty })
    }

    /// `Name` or `Namespace.Name` after `is`/`as`.
    fn type_spec(&mut self) -> Result<TypeSpec, String> {
        let first = match self.peek_tok() {
            Some(Tok::Ident(s)) | Some(Tok::Delimited(s)) => s.clone(),
            _ => return Err(self.unexpected("a type name")),
        };
        self.i += 1;
        if self.at_sym(".") && (first == "FHIR" || first == "System") {
            if let Some(Tok::Ident(s)) | Some(Tok::Delimited(s)) =
                self.toks.get(self.i + 1).map(|t| &t.tok)
            {
                let name = s.clone();
                self.i += 2;
                return Ok(TypeSpec::new(Some(&first), &name));
            }
        }
        Ok(TypeSpec::new(None, &first))
    }
}

/// The type named by a function argument (`ofType(Quantity)`, `as(FHIR.Period)`).
fn type_from_ast(ast: &Ast) -> Option<TypeSpec> {
    match ast {
        Ast::Ident(name) => Some(TypeSpec::new(None, name)),
        Ast::Member(inner, name) => match inner.as_ref() {
            Ast::Ident(ns) => Some(TypeSpec::new(Some(ns), name)),
            _ => None,
        },
        _ => None,
    }
}
