//! Evaluation of a parsed expression over `serde_json::Value`.
//!
//! Collections are `Vec<It>`: an [`Item`] plus the FHIR type when it is known. Anything the
//! spec calls an error is `Err(Fail)`, which [`super::Expr::evaluate`] turns into an empty
//! result. Nothing here indexes unchecked or recurses deeper than the expression tree (or the
//! JSON, which serde_json already bounds).

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use serde_json::{Number, Value};

use super::parser::{Ast, BinOp, Call, Func, Var};
use super::types::{self, TypeSpec};
use super::Item;

/// An evaluation error: the whole result is empty.
#[derive(Debug)]
pub(crate) struct Fail;

type R<T> = Result<T, Fail>;

/// No collection grows beyond this (`descendants().select(descendants())` on a big resource
/// would otherwise be quadratic in memory): beyond, evaluation fails.
const MAX_ITEMS: usize = 100_000;

#[derive(Debug, Clone)]
pub(crate) struct It<'a> {
    pub item: Item<'a>,
    /// The FHIR type, when known (a choice key's suffix, a date literal, ...).
    pub ty: Option<&'static str>,
}

impl<'a> It<'a> {
    fn node(v: &'a Value, ty: Option<&'static str>) -> Self {
        Self {
            item: Item::Node(v),
            ty,
        }
    }

    fn computed(v: Value) -> Self {
        Self {
            item: Item::Value(v),
            ty: None,
        }
    }

    fn v(&self) -> &Value {
        self.item.value()
    }
}

fn boolean<'a>(b: bool) -> Vec<It<'a>> {
    vec![It::computed(Value::Bool(b))]
}

fn integer<'a>(n: usize) -> Vec<It<'a>> {
    vec![It::computed(Value::from(n as u64))]
}

fn string<'a>(s: String) -> Vec<It<'a>> {
    vec![It::computed(Value::String(s))]
}

/// Where leading terms look: the items in focus and, inside `where()` & co, `$index`.
#[derive(Clone, Copy)]
struct Scope<'s, 'a> {
    focus: &'s [It<'a>],
    index: Option<usize>,
}

pub(crate) struct Evaluator<'a> {
    resource: &'a Value,
}

impl<'a> Evaluator<'a> {
    pub fn new(resource: &'a Value) -> Self {
        Self { resource }
    }

    pub fn run(&self, ast: &Ast) -> R<Vec<It<'a>>> {
        self.run_on(ast, self.resource)
    }

    /// Evaluates with `focus` as the initial context; `%resource` stays the resource.
    pub fn run_on(&self, ast: &Ast, focus: &'a Value) -> R<Vec<It<'a>>> {
        let focus = [It::node(focus, None)];
        self.eval(
            ast,
            Scope {
                focus: &focus,
                index: None,
            },
        )
    }

    fn eval(&self, ast: &Ast, sc: Scope<'_, 'a>) -> R<Vec<It<'a>>> {
        let out = self.eval_unchecked(ast, sc)?;
        if out.len() > MAX_ITEMS {
            return Err(Fail);
        }
        Ok(out)
    }

    fn eval_unchecked(&self, ast: &Ast, sc: Scope<'_, 'a>) -> R<Vec<It<'a>>> {
        Ok(match ast {
            Ast::Focus | Ast::This => sc.focus.to_vec(),
            Ast::Index => sc.index.map(integer).unwrap_or_default(),
            Ast::Empty => Vec::new(),
            Ast::Lit { value, ty } => vec![It {
                item: Item::Value(value.clone()),
                ty: *ty,
            }],
            Ast::Var(Var::Resource) => vec![It::node(self.resource, None)],
            Ast::Var(Var::Const(s)) => string((*s).to_string()),
            Ast::Ident(name) => {
                let mut out = Vec::new();
                for it in sc.focus {
                    if is_type_named(it, name) {
                        out.push(it.clone());
                    } else {
                        push_members(it, name, &mut out);
                    }
                }
                out
            }
            Ast::Member(src, name) => {
                let input = self.eval(src, sc)?;
                let mut out = Vec::new();
                for it in &input {
                    push_members(it, name, &mut out);
                }
                out
            }
            Ast::Call(src, call) => {
                let input = self.eval(src, sc)?;
                self.call(input, call, sc)?
            }
            Ast::Indexer(src, idx) => {
                let input = self.eval(src, sc)?;
                match self.int_arg(idx, sc)? {
                    Some(i) if i >= 0 => input.into_iter().nth(i as usize).into_iter().collect(),
                    _ => Vec::new(),
                }
            }
            Ast::Neg(inner) => {
                let input = self.eval(inner, sc)?;
                match single(&input)? {
                    None => Vec::new(),
                    Some(it) => match num(it.v()) {
                        Some(Num::I(i)) => i
                            .checked_neg()
                            .map(Num::I)
                            .map(num_value)
                            .unwrap_or_default(),
                        Some(Num::F(f)) => num_value(Num::F(-f)),
                        None => return Err(Fail),
                    },
                }
            }
            Ast::Union(parts) => {
                let mut out = Distinct::default();
                for p in parts {
                    for it in self.eval(p, sc)? {
                        out.insert(it);
                    }
                }
                out.items
            }
            Ast::Is(src, ty) => {
                let input = self.eval(src, sc)?;
                match single(&input)? {
                    None => Vec::new(),
                    Some(it) => boolean(is_type(it, ty)),
                }
            }
            // Lenient: a filter, like `ofType()`, so that `Observation.component.value as
            // Quantity` works on several components (the spec raises an error there).
            Ast::As(src, ty) => {
                let mut input = self.eval(src, sc)?;
                input.retain(|it| is_type(it, ty));
                input
            }
            Ast::Bin(op, l, r) => self.binary(*op, l, r, sc)?,
        })
    }

    fn call(&self, input: Vec<It<'a>>, call: &Call, sc: Scope<'_, 'a>) -> R<Vec<It<'a>>> {
        let arg = |i: usize| -> &Ast { &call.args[i] };
        let ty = || call.ty.as_ref().ok_or(Fail);
        Ok(match call.func {
            Func::Where => {
                let mut out = Vec::new();
                for (i, it) in input.iter().enumerate() {
                    if self.criterion(arg(0), it, i)? == Some(true) {
                        out.push(it.clone());
                    }
                }
                out
            }
            Func::Select => {
                let mut out = Vec::new();
                for (i, it) in input.iter().enumerate() {
                    out.extend(self.lambda(arg(0), it, i)?);
                    if out.len() > MAX_ITEMS {
                        return Err(Fail);
                    }
                }
                out
            }
            Func::Repeat => {
                let mut out = Distinct::default();
                let mut queue = input;
                while !queue.is_empty() {
                    let mut next = Vec::new();
                    for (i, it) in queue.iter().enumerate() {
                        for r in self.lambda(arg(0), it, i)? {
                            if out.insert(r.clone()) {
                                next.push(r);
                            }
                        }
                        if out.items.len() > MAX_ITEMS {
                            return Err(Fail);
                        }
                    }
                    queue = next;
                }
                out.items
            }
            Func::OfType | Func::As => {
                let ty = ty()?;
                input.into_iter().filter(|it| is_type(it, ty)).collect()
            }
            Func::Is => match single(&input)? {
                None => Vec::new(),
                Some(it) => boolean(is_type(it, ty()?)),
            },
            Func::Exists => {
                if call.args.is_empty() {
                    boolean(!input.is_empty())
                } else {
                    let mut any = false;
                    for (i, it) in input.iter().enumerate() {
                        if self.criterion(arg(0), it, i)? == Some(true) {
                            any = true;
                            break;
                        }
                    }
                    boolean(any)
                }
            }
            Func::Empty => boolean(input.is_empty()),
            Func::All => {
                let mut all = true;
                for (i, it) in input.iter().enumerate() {
                    if self.criterion(arg(0), it, i)? != Some(true) {
                        all = false;
                        break;
                    }
                }
                boolean(all)
            }
            Func::AllTrue | Func::AnyTrue | Func::AllFalse | Func::AnyFalse => {
                let mut bools = Vec::with_capacity(input.len());
                for it in &input {
                    bools.push(it.v().as_bool().ok_or(Fail)?);
                }
                boolean(match call.func {
                    Func::AllTrue => bools.iter().all(|b| *b),
                    Func::AnyTrue => bools.iter().any(|b| *b),
                    Func::AllFalse => bools.iter().all(|b| !*b),
                    _ => bools.iter().any(|b| !*b),
                })
            }
            Func::SubsetOf | Func::SupersetOf => {
                let other = self.eval(arg(0), sc)?;
                let (small, big) = if call.func == Func::SubsetOf {
                    (&input, &other)
                } else {
                    (&other, &input)
                };
                let big = Distinct::of(big.iter().cloned());
                boolean(small.iter().all(|a| big.contains(a)))
            }
            Func::Count => integer(input.len()),
            Func::Distinct => Distinct::of(input).items,
            Func::IsDistinct => {
                let n = input.len();
                boolean(Distinct::of(input).items.len() == n)
            }
            Func::Single => match input.len() {
                0 | 1 => input,
                _ => return Err(Fail),
            },
            Func::First => input.into_iter().take(1).collect(),
            Func::Last => input.into_iter().last().into_iter().collect(),
            Func::Tail => input.into_iter().skip(1).collect(),
            Func::Skip | Func::Take => {
                let n = self.int_arg(arg(0), sc)?.ok_or(Fail)?.max(0) as usize;
                if call.func == Func::Skip {
                    input.into_iter().skip(n).collect()
                } else {
                    input.into_iter().take(n).collect()
                }
            }
            Func::Intersect | Func::Exclude => {
                let other = Distinct::of(self.eval(arg(0), sc)?);
                if call.func == Func::Intersect {
                    Distinct::of(input.into_iter().filter(|it| other.contains(it))).items
                } else {
                    input.into_iter().filter(|it| !other.contains(it)).collect()
                }
            }
            Func::Union => {
                let other = self.eval(arg(0), sc)?;
                Distinct::of(input.into_iter().chain(other)).items
            }
            Func::Combine => {
                let mut out = input;
                out.extend(self.eval(arg(0), sc)?);
                out
            }
            Func::Iif => {
                let inner = Scope {
                    focus: &input,
                    index: sc.index,
                };
                let cond = to_bool(&self.eval(arg(0), inner)?)?;
                if cond == Some(true) {
                    self.eval(arg(1), inner)?
                } else if call.args.len() > 2 {
                    self.eval(arg(2), inner)?
                } else {
                    Vec::new()
                }
            }
            Func::ToString => match single(&input)? {
                None => Vec::new(),
                Some(it) => to_string(it.v()).map(string).unwrap_or_default(),
            },
            Func::ToInteger | Func::ConvertsToInteger => {
                let r = single(&input)?.map(|it| to_integer(it.v()));
                convert(call.func == Func::ConvertsToInteger, r)
            }
            Func::ToDecimal | Func::ConvertsToDecimal => {
                let r = single(&input)?.map(|it| to_decimal(it.v()));
                convert(call.func == Func::ConvertsToDecimal, r)
            }
            Func::ToBoolean | Func::ConvertsToBoolean => {
                let r = single(&input)?.map(|it| to_boolean(it.v()).map(Value::Bool));
                convert(call.func == Func::ConvertsToBoolean, r)
            }
            Func::ConvertsToString => match single(&input)? {
                None => Vec::new(),
                Some(it) => boolean(to_string(it.v()).is_some()),
            },
            Func::IndexOf
            | Func::StartsWith
            | Func::EndsWith
            | Func::ContainsStr
            | Func::Substring
            | Func::Replace => self.string_fn(&input, call, sc)?,
            Func::Upper | Func::Lower | Func::Length | Func::ToChars | Func::Trim => {
                let Some(s) = single_str(&input)? else {
                    return Ok(Vec::new());
                };
                match call.func {
                    Func::Upper => string(s.to_uppercase()),
                    Func::Lower => string(s.to_lowercase()),
                    Func::Length => integer(s.chars().count()),
                    Func::Trim => string(s.trim().to_string()),
                    _ => s
                        .chars()
                        .map(|c| It::computed(Value::String(c.to_string())))
                        .collect(),
                }
            }
            Func::Children => {
                let mut out = Vec::new();
                for it in &input {
                    push_children(it, &mut out);
                }
                out
            }
            Func::Descendants => {
                let mut out = Vec::new();
                let mut frontier = input;
                while !frontier.is_empty() {
                    let mut next = Vec::new();
                    for it in &frontier {
                        push_children(it, &mut next);
                    }
                    out.extend(next.iter().cloned());
                    if out.len() > MAX_ITEMS {
                        return Err(Fail);
                    }
                    frontier = next;
                }
                out
            }
            Func::Not => match to_bool(&input)? {
                None => Vec::new(),
                Some(b) => boolean(!b),
            },
            Func::Trace => input,
            Func::Now => vec![It {
                item: Item::Value(Value::String(
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                )),
                ty: Some("dateTime"),
            }],
            Func::Today => vec![It {
                item: Item::Value(Value::String(
                    chrono::Utc::now().format("%Y-%m-%d").to_string(),
                )),
                ty: Some("date"),
            }],
            Func::Extension | Func::HasExtension => {
                let Some(url) = self.str_arg(arg(0), sc)? else {
                    return Ok(if call.func == Func::HasExtension {
                        boolean(false)
                    } else {
                        Vec::new()
                    });
                };
                let mut exts = Vec::new();
                for it in &input {
                    push_members(it, "extension", &mut exts);
                }
                exts.retain(|e| e.v().get("url").and_then(Value::as_str) == Some(url.as_str()));
                if call.func == Func::HasExtension {
                    boolean(!exts.is_empty())
                } else {
                    exts
                }
            }
            Func::HasValue => boolean(matches!(
                single(&input)?.map(It::v),
                Some(Value::String(_) | Value::Number(_) | Value::Bool(_))
            )),
            Func::GetValue => match single(&input)? {
                Some(it)
                    if matches!(it.v(), Value::String(_) | Value::Number(_) | Value::Bool(_)) =>
                {
                    vec![it.clone()]
                }
                _ => Vec::new(),
            },
            Func::Resolve => {
                let mut out = Vec::new();
                for it in &input {
                    if let Some(r) = self.resolve(it.v()) {
                        out.push(r);
                    }
                }
                out
            }
        })
    }

    fn string_fn(&self, input: &[It<'a>], call: &Call, sc: Scope<'_, 'a>) -> R<Vec<It<'a>>> {
        let Some(s) = single_str(input)? else {
            return Ok(Vec::new());
        };
        let Some(a) = self.str_or_int_arg(&call.args[0], sc)? else {
            return Ok(Vec::new());
        };
        Ok(match (call.func, a) {
            (Func::StartsWith, Arg::Str(p)) => boolean(s.starts_with(&p)),
            (Func::EndsWith, Arg::Str(p)) => boolean(s.ends_with(&p)),
            (Func::ContainsStr, Arg::Str(p)) => boolean(s.contains(&p)),
            (Func::IndexOf, Arg::Str(p)) => match s.find(&p) {
                Some(byte) => integer(s[..byte].chars().count()),
                None => vec![It::computed(Value::from(-1))],
            },
            (Func::Replace, Arg::Str(p)) => {
                let Some(Arg::Str(with)) = self.str_or_int_arg(&call.args[1], sc)? else {
                    return Ok(Vec::new());
                };
                if p.is_empty() {
                    // Spec: an empty pattern surrounds every character with the substitution.
                    let mut r = with.clone();
                    for c in s.chars() {
                        r.push(c);
                        r.push_str(&with);
                    }
                    string(r)
                } else {
                    string(s.replace(&p, &with))
                }
            }
            (Func::Substring, Arg::Int(start)) => {
                let len = match call.args.get(1) {
                    None => None,
                    Some(a) => self.int_arg(a, sc)?.map(|l| l.max(0) as usize),
                };
                let count = s.chars().count();
                if start < 0 || start as usize >= count {
                    Vec::new()
                } else {
                    let it = s.chars().skip(start as usize);
                    string(match len {
                        Some(l) => it.take(l).collect(),
                        None => it.collect(),
                    })
                }
            }
            _ => return Err(Fail),
        })
    }

    /// Evaluates a lambda argument (`where`, `select`, ...) on one item.
    fn lambda(&self, ast: &Ast, it: &It<'a>, index: usize) -> R<Vec<It<'a>>> {
        self.eval(
            ast,
            Scope {
                focus: std::slice::from_ref(it),
                index: Some(index),
            },
        )
    }

    fn criterion(&self, ast: &Ast, it: &It<'a>, index: usize) -> R<Option<bool>> {
        to_bool(&self.lambda(ast, it, index)?)
    }

    fn int_arg(&self, ast: &Ast, sc: Scope<'_, 'a>) -> R<Option<i64>> {
        let r = self.eval(ast, sc)?;
        match single(&r)? {
            None => Ok(None),
            Some(it) => match num(it.v()) {
                Some(Num::I(i)) => Ok(Some(i)),
                _ => Err(Fail),
            },
        }
    }

    fn str_arg(&self, ast: &Ast, sc: Scope<'_, 'a>) -> R<Option<String>> {
        let r = self.eval(ast, sc)?;
        single_str(&r).map(|s| s.map(str::to_string))
    }

    fn str_or_int_arg(&self, ast: &Ast, sc: Scope<'_, 'a>) -> R<Option<Arg>> {
        let r = self.eval(ast, sc)?;
        Ok(match single(&r)?.map(It::v) {
            None => None,
            Some(Value::String(s)) => Some(Arg::Str(s.clone())),
            Some(v) => match num(v) {
                Some(Num::I(i)) => Some(Arg::Int(i)),
                _ => return Err(Fail),
            },
        })
    }

    fn binary(&self, op: BinOp, l: &Ast, r: &Ast, sc: Scope<'_, 'a>) -> R<Vec<It<'a>>> {
        let left = self.eval(l, sc)?;
        // Logic first: three-valued, right side only when it can change the outcome.
        match op {
            BinOp::And | BinOp::Or | BinOp::Xor | BinOp::Implies => {
                let a = to_bool(&left)?;
                let short = match op {
                    BinOp::And => a == Some(false),
                    BinOp::Or | BinOp::Implies => a == Some(op == BinOp::Or),
                    _ => false,
                };
                if short {
                    return Ok(boolean(op == BinOp::Or || op == BinOp::Implies));
                }
                let b = to_bool(&self.eval(r, sc)?)?;
                let res = match (op, a, b) {
                    (BinOp::And, Some(true), Some(true)) => Some(true),
                    (BinOp::And, _, Some(false)) => Some(false),
                    (BinOp::And, _, _) => None,
                    (BinOp::Or, _, Some(true)) => Some(true),
                    (BinOp::Or, Some(false), Some(false)) => Some(false),
                    (BinOp::Or, _, _) => None,
                    (BinOp::Xor, Some(x), Some(y)) => Some(x != y),
                    (BinOp::Xor, _, _) => None,
                    // Implies with `a` true or empty (false short-circuited above).
                    (_, Some(true), b) => b,
                    (_, _, Some(true)) => Some(true),
                    _ => None,
                };
                return Ok(res.map(boolean).unwrap_or_default());
            }
            _ => {}
        }
        let right = self.eval(r, sc)?;
        Ok(match op {
            BinOp::Eq | BinOp::Ne => {
                if left.is_empty() || right.is_empty() {
                    Vec::new()
                } else {
                    let eq = left.len() == right.len()
                        && left.iter().zip(&right).all(|(a, b)| same(a, b));
                    boolean(eq == (op == BinOp::Eq))
                }
            }
            BinOp::Equiv | BinOp::NotEquiv => {
                let eqv = left.len() == right.len()
                    && left
                        .iter()
                        .all(|a| right.iter().any(|b| equiv(a.v(), b.v())));
                boolean(eqv == (op == BinOp::Equiv))
            }
            BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => {
                let (Some(a), Some(b)) = (single(&left)?, single(&right)?) else {
                    return Ok(Vec::new());
                };
                match compare(a, b)? {
                    None => Vec::new(),
                    Some(o) => boolean(match op {
                        BinOp::Lt => o == Ordering::Less,
                        BinOp::Gt => o == Ordering::Greater,
                        BinOp::Le => o != Ordering::Greater,
                        _ => o != Ordering::Less,
                    }),
                }
            }
            BinOp::In | BinOp::Contains => {
                let (item, coll) = if op == BinOp::In {
                    (&left, &right)
                } else {
                    (&right, &left)
                };
                match single(item)? {
                    None => Vec::new(),
                    Some(x) => boolean(coll.iter().any(|c| same(c, x))),
                }
            }
            BinOp::Concat => {
                let a = single_str(&left)?.unwrap_or("");
                let b = single_str(&right)?.unwrap_or("");
                string(format!("{a}{b}"))
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::IntDiv | BinOp::Mod => {
                let (Some(a), Some(b)) = (single(&left)?, single(&right)?) else {
                    return Ok(Vec::new());
                };
                if let (BinOp::Add, Value::String(x), Value::String(y)) = (op, a.v(), b.v()) {
                    return Ok(string(format!("{x}{y}")));
                }
                let (Some(x), Some(y)) = (num(a.v()), num(b.v())) else {
                    return Err(Fail);
                };
                arithmetic(op, x, y).map(num_value).unwrap_or_default()
            }
            // Handled above.
            BinOp::And | BinOp::Or | BinOp::Xor | BinOp::Implies => Vec::new(),
        })
    }

    /// `resolve()` without fetching: `#id` finds a contained resource, a reference inside a
    /// Bundle finds the entry; anything else becomes a stub `{"resourceType", "id"}` carrying
    /// the type named by the reference (`Patient/1`, `http://x/fhir/Patient/1`,
    /// `Patient/1/_history/2`, a canonical `http://x/ValueSet/vs|1.0`) or by `Reference.type`.
    fn resolve(&self, v: &Value) -> Option<It<'a>> {
        let (reference, declared) = match v {
            Value::String(s) => (Some(s.as_str()), None),
            Value::Object(m) => (
                m.get("reference").and_then(Value::as_str),
                m.get("type").and_then(Value::as_str),
            ),
            _ => return None,
        };
        if let Some(r) = reference {
            if let Some(id) = r.strip_prefix('#') {
                if id.is_empty() {
                    return Some(It::node(self.resource, None));
                }
                let contained = self.resource.get("contained")?.as_array()?;
                return contained
                    .iter()
                    .find(|c| c.get("id").and_then(Value::as_str) == Some(id))
                    .map(|c| It::node(c, None));
            }
            if let Some(found) = self.in_bundle(r) {
                return Some(It::node(found, None));
            }
            if let Some((rt, id)) = split_reference(r) {
                return Some(stub(rt, Some(id)));
            }
        }
        let declared = declared.filter(|t| is_type_name(t))?;
        Some(stub(declared, None))
    }

    fn in_bundle(&self, reference: &str) -> Option<&'a Value> {
        if types::resource_type(self.resource) != Some("Bundle") {
            return None;
        }
        let relative = split_reference(reference);
        self.resource
            .get("entry")?
            .as_array()?
            .iter()
            .filter_map(|e| Some((e.get("fullUrl").and_then(Value::as_str), e.get("resource")?)))
            .find(|(full_url, res)| {
                *full_url == Some(reference)
                    || relative.is_some_and(|(rt, id)| {
                        !reference.contains(':')
                            && types::resource_type(res) == Some(rt)
                            && res.get("id").and_then(Value::as_str) == Some(id)
                    })
            })
            .map(|(_, res)| res)
    }
}

enum Arg {
    Str(String),
    Int(i64),
}

fn stub<'a>(rt: &str, id: Option<&str>) -> It<'a> {
    let mut m = serde_json::Map::new();
    m.insert("resourceType".into(), Value::String(rt.to_string()));
    if let Some(id) = id {
        m.insert("id".into(), Value::String(id.to_string()));
    }
    It::computed(Value::Object(m))
}

/// `Type` and `id` from the last `Type/id` of a reference (ignoring `|version` and
/// `/_history/n`).
fn split_reference(r: &str) -> Option<(&str, &str)> {
    let r = r.split('|').next().unwrap_or(r);
    let r = r.split("/_history/").next().unwrap_or(r);
    let r = r.split(['?', '#']).next().unwrap_or(r);
    let mut parts = r.trim_end_matches('/').rsplit('/');
    let id = parts.next()?;
    let rt = parts.next()?;
    (is_type_name(rt) && !id.is_empty()).then_some((rt, id))
}

fn is_type_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase()) && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// A leading identifier names the focus item's type (the resource's `resourceType`,
/// `Resource`, `DomainResource`, or the known type of the item).
fn is_type_named(it: &It<'_>, name: &str) -> bool {
    if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
        return false;
    }
    match it.ty {
        Some(t) => t == name,
        None => types::resource_type(it.v()).is_some_and(|rt| types::resource_is(rt, name)),
    }
}

pub(crate) fn is_type(it: &It<'_>, spec: &TypeSpec) -> bool {
    match it.ty {
        Some(t) => types::is_subtype(t, &spec.name),
        None => types::loosely_is(it.v(), &spec.name),
    }
}

/// Members named `name` of an item: arrays flattened, `null`s (placeholders aligned with
/// `_name`) skipped. When there is no such key, a choice key `name` + type suffix is looked
/// for and its items carry that type.
fn push_members<'a>(it: &It<'a>, name: &str, out: &mut Vec<It<'a>>) {
    match &it.item {
        Item::Node(v) => {
            let v: &'a Value = v;
            members(v, name, |c, ty| out.push(It::node(c, ty)))
        }
        Item::Value(v) => members(v, name, |c, ty| {
            out.push(It {
                item: Item::Value(c.clone()),
                ty,
            })
        }),
    }
}

fn members<'v>(v: &'v Value, name: &str, mut f: impl FnMut(&'v Value, Option<&'static str>)) {
    let Value::Object(m) = v else { return };
    if let Some(c) = m.get(name) {
        flatten(c, None, &mut f);
        return;
    }
    for (k, c) in m {
        if let Some(ty) = k.strip_prefix(name).and_then(types::choice_type) {
            flatten(c, Some(ty), &mut f);
        }
    }
}

fn flatten<'v>(
    c: &'v Value,
    ty: Option<&'static str>,
    f: &mut impl FnMut(&'v Value, Option<&'static str>),
) {
    match c {
        Value::Array(xs) => xs.iter().filter(|x| !x.is_null()).for_each(|x| f(x, ty)),
        Value::Null => {}
        _ => f(c, ty),
    }
}

/// `children()`: every member of an object except `resourceType` and the `_x` companions.
fn push_children<'a>(it: &It<'a>, out: &mut Vec<It<'a>>) {
    let keep = |k: &String| k.as_str() != "resourceType" && !k.starts_with('_');
    match &it.item {
        Item::Node(v) => {
            let v: &'a Value = v;
            if let Value::Object(m) = v {
                for (_, c) in m.iter().filter(|(k, _)| keep(k)) {
                    flatten(c, None, &mut |c, t| out.push(It::node(c, t)));
                }
            }
        }
        Item::Value(Value::Object(m)) => {
            for (_, c) in m.iter().filter(|(k, _)| keep(k)) {
                flatten(c, None, &mut |c, t| {
                    out.push(It {
                        item: Item::Value(c.clone()),
                        ty: t,
                    })
                });
            }
        }
        Item::Value(_) => {}
    }
}

/// Singleton evaluation of collections as a boolean.
fn to_bool(c: &[It<'_>]) -> R<Option<bool>> {
    match c {
        [] => Ok(None),
        [it] => Ok(Some(it.v().as_bool().unwrap_or(true))),
        _ => Err(Fail),
    }
}

fn single<'c, 'a>(c: &'c [It<'a>]) -> R<Option<&'c It<'a>>> {
    match c {
        [] => Ok(None),
        [it] => Ok(Some(it)),
        _ => Err(Fail),
    }
}

/// The single string of a collection; `None` when empty or not a string (lenient).
fn single_str<'c>(c: &'c [It<'_>]) -> R<Option<&'c str>> {
    Ok(single(c)?.and_then(|it| it.v().as_str()))
}

/// A collection without duplicates (by `=`), in linear time: items are bucketed by a hash
/// that agrees with [`json_eq`], so that a union of thousands of items stays cheap.
#[derive(Default)]
struct Distinct<'a> {
    items: Vec<It<'a>>,
    buckets: HashMap<u64, Vec<usize>>,
}

impl<'a> Distinct<'a> {
    fn of(items: impl IntoIterator<Item = It<'a>>) -> Self {
        let mut d = Self::default();
        for it in items {
            d.insert(it);
        }
        d
    }

    /// Adds `it` unless an equal item is there; whether it was added.
    fn insert(&mut self, it: It<'a>) -> bool {
        let h = hash_of(it.v());
        let bucket = self.buckets.entry(h).or_default();
        if bucket.iter().any(|&i| same(&self.items[i], &it)) {
            return false;
        }
        bucket.push(self.items.len());
        self.items.push(it);
        true
    }

    fn contains(&self, it: &It<'_>) -> bool {
        self.buckets
            .get(&hash_of(it.v()))
            .is_some_and(|b| b.iter().any(|&i| same(&self.items[i], it)))
    }
}

fn hash_of(v: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    hash_json(v, &mut h);
    h.finish()
}

/// Equal values (by [`json_eq`]) hash alike: numbers by value, object members in any order.
fn hash_json(v: &Value, h: &mut DefaultHasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => {
            2u8.hash(h);
            match num(v) {
                // +0.0 for -0.0; integers as the decimal they equal.
                Some(x) => (as_f64(x) + 0.0).to_bits().hash(h),
                None => n.to_string().hash(h),
            }
        }
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(xs) => {
            (4u8, xs.len()).hash(h);
            xs.iter().for_each(|x| hash_json(x, h));
        }
        Value::Object(m) => {
            (5u8, m.len()).hash(h);
            let mut sum = 0u64;
            for (k, x) in m {
                let mut eh = DefaultHasher::new();
                k.hash(&mut eh);
                hash_json(x, &mut eh);
                sum = sum.wrapping_add(eh.finish());
            }
            sum.hash(h);
        }
    }
}

/// `=` on two items.
fn same(a: &It<'_>, b: &It<'_>) -> bool {
    if let (Item::Node(x), Item::Node(y)) = (&a.item, &b.item) {
        if std::ptr::eq(*x, *y) {
            return true;
        }
    }
    json_eq(a.v(), b.v())
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => {
            matches!(compare_num(num(a), num(b)), Some(Ordering::Equal))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_eq(v, w))
        }
        _ => a == b,
    }
}

/// `~`: strings compared case-insensitively with whitespace normalised.
fn equiv(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            let norm = |s: &str| {
                s.split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase()
            };
            norm(x) == norm(y)
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equiv(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| equiv(v, w))
        }
        _ => json_eq(a, b),
    }
}

/// `Ok(None)`: not comparable to a result (dates of different precision); `Err`: a type error.
fn compare(a: &It<'_>, b: &It<'_>) -> R<Option<Ordering>> {
    match (a.v(), b.v()) {
        (Value::Number(_), Value::Number(_)) => Ok(compare_num(num(a.v()), num(b.v()))),
        (Value::String(x), Value::String(y)) => {
            let temporal = |it: &It<'_>, s: &str| {
                matches!(it.ty, Some("date" | "dateTime" | "instant" | "time"))
                    || types::looks_like_datetime(s)
            };
            if temporal(a, x) && temporal(b, y) {
                // Date/time strings: compared on their common precision; equal so far but of
                // different precision is no answer. (Time zones are not normalised.)
                let (xb, yb) = (x.as_bytes(), y.as_bytes());
                for (p, q) in xb.iter().zip(yb) {
                    if p != q {
                        return Ok(Some(p.cmp(q)));
                    }
                }
                Ok((xb.len() == yb.len()).then_some(Ordering::Equal))
            } else {
                Ok(Some(x.cmp(y)))
            }
        }
        _ => Err(Fail),
    }
}

#[derive(Debug, Clone, Copy)]
enum Num {
    I(i64),
    F(f64),
}

fn num(v: &Value) -> Option<Num> {
    let n = v.as_number()?;
    match n.as_i64() {
        Some(i) => Some(Num::I(i)),
        None => n.as_f64().filter(|f| f.is_finite()).map(Num::F),
    }
}

fn as_f64(n: Num) -> f64 {
    match n {
        Num::I(i) => i as f64,
        Num::F(f) => f,
    }
}

fn compare_num(a: Option<Num>, b: Option<Num>) -> Option<Ordering> {
    match (a?, b?) {
        (Num::I(x), Num::I(y)) => Some(x.cmp(&y)),
        (x, y) => as_f64(x).partial_cmp(&as_f64(y)),
    }
}

fn num_value<'a>(n: Num) -> Vec<It<'a>> {
    let v = match n {
        Num::I(i) => Value::from(i),
        Num::F(f) => match Number::from_f64(f) {
            Some(n) => Value::Number(n),
            None => return Vec::new(),
        },
    };
    vec![It::computed(v)]
}

/// Integer arithmetic is checked (overflow: empty); decimals are `f64`.
fn arithmetic(op: BinOp, x: Num, y: Num) -> Option<Num> {
    if let (Num::I(a), Num::I(b)) = (x, y) {
        return match op {
            BinOp::Add => a.checked_add(b).map(Num::I),
            BinOp::Sub => a.checked_sub(b).map(Num::I),
            BinOp::Mul => a.checked_mul(b).map(Num::I),
            BinOp::Div => (b != 0).then(|| Num::F(a as f64 / b as f64)),
            BinOp::IntDiv => a.checked_div(b).map(Num::I),
            BinOp::Mod => a.checked_rem(b).map(Num::I),
            _ => None,
        };
    }
    let (a, b) = (as_f64(x), as_f64(y));
    let r = match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div if b != 0.0 => a / b,
        BinOp::IntDiv if b != 0.0 => {
            let q = (a / b).trunc();
            return (q.abs() < i64::MAX as f64).then_some(Num::I(q as i64));
        }
        BinOp::Mod if b != 0.0 => a % b,
        _ => return None,
    };
    r.is_finite().then_some(Num::F(r))
}

fn to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn to_integer(v: &Value) -> Option<Value> {
    match v {
        Value::Number(_) => match num(v)? {
            Num::I(i) => Some(Value::from(i)),
            Num::F(_) => None,
        },
        Value::String(s) => s.trim().parse::<i64>().ok().map(Value::from),
        Value::Bool(b) => Some(Value::from(*b as i64)),
        _ => None,
    }
}

fn to_decimal(v: &Value) -> Option<Value> {
    match v {
        Value::Number(_) => Some(v.clone()),
        Value::String(s) => {
            let t = s.trim();
            let plain = !t.is_empty()
                && t.trim_start_matches(['+', '-'])
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.');
            if plain {
                t.trim_start_matches('+')
                    .parse::<Number>()
                    .ok()
                    .map(Value::Number)
            } else {
                None
            }
        }
        Value::Bool(b) => Some(Value::from(*b as i64)),
        _ => None,
    }
}

fn to_boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(true),
            "false" | "f" | "no" | "n" | "0" | "0.0" => Some(false),
            _ => None,
        },
        Value::Number(_) => match num(v)? {
            Num::I(1) => Some(true),
            Num::I(0) => Some(false),
            Num::F(f) if f == 1.0 || f == 0.0 => Some(f == 1.0),
            _ => None,
        },
        _ => None,
    }
}

/// `toX()` gives the converted value (or empty), `convertsToX()` whether there is one.
fn convert<'a>(test: bool, r: Option<Option<Value>>) -> Vec<It<'a>> {
    match r {
        None => Vec::new(),
        Some(v) if test => boolean(v.is_some()),
        Some(v) => v.map(It::computed).into_iter().collect(),
    }
}
