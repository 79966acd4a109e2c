//! The Json.NET JSONPath grammar: `$`/`@` roots, `.name`, `..name`, `[...]` indexers (names,
//! indexes, slices, `*`, `?(filter)`), and filter expressions with `&&`, `||`, comparisons,
//! regular expressions and literals.

use regex::Regex;
use serde_json::Value;

use super::filter::{CompareOp, FilterExpr, Operand};
use super::{JsonPathError, Step};

pub(crate) fn parse_path(source: &str) -> Result<Vec<Step>, JsonPathError> {
    let mut p = Parser {
        source,
        chars: source.chars().collect(),
        pos: 0,
    };
    p.skip_ws();
    if p.chars.is_empty() || p.pos == p.chars.len() {
        return Err(p.error("the expression is empty"));
    }
    if p.peek() == Some('$') {
        p.pos += 1;
    }
    let steps = p.steps(false)?;
    p.skip_ws();
    if p.pos != p.chars.len() {
        return Err(p.error("unexpected character"));
    }
    Ok(steps)
}

struct Parser<'s> {
    source: &'s str,
    chars: Vec<char>,
    pos: usize,
}

/// Characters that end an unquoted member name.
fn ends_name(c: char, in_filter: bool) -> bool {
    matches!(
        c,
        '.' | '[' | ']' | '(' | ')' | ' ' | '\t' | '\r' | '\n' | '\'' | '"'
    ) || (in_filter && matches!(c, '=' | '<' | '>' | '!' | '&' | '|' | ','))
}

impl Parser<'_> {
    fn error(&self, message: &str) -> JsonPathError {
        JsonPathError {
            path: self.source.to_owned(),
            position: self.pos,
            message: message.to_owned(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), JsonPathError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(&format!("expected '{c}'")))
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\r' | '\n')) {
            self.pos += 1;
        }
    }

    /// Steps until the end, or (inside a filter) until something that is not a path.
    fn steps(&mut self, in_filter: bool) -> Result<Vec<Step>, JsonPathError> {
        let mut steps = Vec::new();
        // A leading bare name (`Body.x`, or `@x` after the root) is a member step.
        if let Some(c) = self.peek() {
            if !ends_name(c, in_filter) {
                steps.push(Step::Members(vec![self.name(in_filter)?]));
            }
        }
        loop {
            match self.peek() {
                Some('.') if self.peek_at(1) == Some('.') => {
                    self.pos += 2;
                    steps.push(self.scan_step(in_filter)?);
                }
                Some('.') => {
                    self.pos += 1;
                    if self.eat('*') {
                        steps.push(Step::Wildcard);
                    } else if self.peek() == Some('[') {
                        // Json.NET accepts `a.[0]` as `a[0]`.
                        steps.push(self.bracket(false)?);
                    } else {
                        steps.push(Step::Members(vec![self.name(in_filter)?]));
                    }
                }
                Some('[') => steps.push(self.bracket(false)?),
                _ => return Ok(steps),
            }
        }
    }

    fn scan_step(&mut self, in_filter: bool) -> Result<Step, JsonPathError> {
        match self.peek() {
            Some('*') => {
                self.pos += 1;
                Ok(Step::ScanWildcard)
            }
            Some('[') => self.bracket(true),
            Some(c) if !ends_name(c, in_filter) => {
                Ok(Step::ScanMembers(vec![self.name(in_filter)?]))
            }
            _ => Err(self.error("expected a name, '*' or '[' after '..'")),
        }
    }

    fn name(&mut self, in_filter: bool) -> Result<String, JsonPathError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if ends_name(c, in_filter) {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("expected a member name"));
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    fn bracket(&mut self, scan: bool) -> Result<Step, JsonPathError> {
        self.expect('[')?;
        self.skip_ws();
        let step = match self.peek() {
            Some('?') => {
                self.pos += 1;
                self.expect('(')?;
                let expr = self.or_expr()?;
                self.skip_ws();
                self.expect(')')?;
                if scan {
                    Step::ScanFilter(expr)
                } else {
                    Step::Filter(expr)
                }
            }
            Some('*') => {
                self.pos += 1;
                if scan {
                    Step::ScanWildcard
                } else {
                    Step::Wildcard
                }
            }
            Some('\'' | '"') => {
                let mut names = vec![self.quoted()?];
                self.skip_ws();
                while self.eat(',') {
                    self.skip_ws();
                    names.push(self.quoted()?);
                    self.skip_ws();
                }
                if scan {
                    Step::ScanMembers(names)
                } else {
                    Step::Members(names)
                }
            }
            _ if scan => return Err(self.error("only names, '*' and filters may follow '..'")),
            _ => self.index_or_slice()?,
        };
        self.skip_ws();
        self.expect(']')?;
        Ok(step)
    }

    fn index_or_slice(&mut self) -> Result<Step, JsonPathError> {
        let first = self.opt_int()?;
        self.skip_ws();
        if self.peek() == Some(':') {
            let mut parts = vec![first];
            while self.eat(':') {
                self.skip_ws();
                parts.push(self.opt_int()?);
                self.skip_ws();
            }
            if parts.len() > 3 {
                return Err(self.error("a slice has at most three parts"));
            }
            return Ok(Step::Slice {
                start: parts[0],
                end: parts[1],
                step: parts.get(2).copied().flatten(),
            });
        }
        let mut indexes = vec![first.ok_or_else(|| self.error("expected an index"))?];
        while self.eat(',') {
            self.skip_ws();
            indexes.push(
                self.opt_int()?
                    .ok_or_else(|| self.error("expected an index"))?,
            );
            self.skip_ws();
        }
        Ok(Step::Indexes(indexes))
    }

    fn opt_int(&mut self) -> Result<Option<i64>, JsonPathError> {
        let start = self.pos;
        self.eat('-');
        while matches!(self.peek(), Some('0'..='9')) {
            self.pos += 1;
        }
        if self.pos == start {
            return Ok(None);
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        text.parse()
            .map(Some)
            .map_err(|_| self.error("expected an integer"))
    }

    fn quoted(&mut self) -> Result<String, JsonPathError> {
        let quote = self.peek().ok_or_else(|| self.error("expected a quote"))?;
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some('\\') => {
                    self.pos += 1;
                    let escaped = self
                        .peek()
                        .ok_or_else(|| self.error("unterminated string"))?;
                    out.push(match escaped {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                    self.pos += 1;
                }
                Some(c) if c == quote => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn or_expr(&mut self) -> Result<FilterExpr, JsonPathError> {
        let mut left = self.and_expr()?;
        loop {
            self.skip_ws();
            if self.peek() == Some('|') && self.peek_at(1) == Some('|') {
                self.pos += 2;
                let right = self.and_expr()?;
                left = FilterExpr::Or(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn and_expr(&mut self) -> Result<FilterExpr, JsonPathError> {
        let mut left = self.unary()?;
        loop {
            self.skip_ws();
            if self.peek() == Some('&') && self.peek_at(1) == Some('&') {
                self.pos += 2;
                let right = self.unary()?;
                left = FilterExpr::And(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn unary(&mut self) -> Result<FilterExpr, JsonPathError> {
        self.skip_ws();
        if self.eat('(') {
            let inner = self.or_expr()?;
            self.skip_ws();
            self.expect(')')?;
            return Ok(inner);
        }
        let left = self.operand()?;
        self.skip_ws();
        let Some(op) = self.compare_op() else {
            return match left {
                Operand::Path { .. } => Ok(FilterExpr::Exists(left)),
                _ => Err(self.error("expected a comparison after a literal")),
            };
        };
        self.skip_ws();
        let right = if op == CompareOp::Regex {
            Operand::Regex(self.regex()?)
        } else {
            self.operand()?
        };
        Ok(FilterExpr::Compare(left, op, right))
    }

    fn compare_op(&mut self) -> Option<CompareOp> {
        let two: String = self.chars[self.pos..].iter().take(3).collect();
        let (op, len) = if two.starts_with("===") {
            (CompareOp::StrictEq, 3)
        } else if two.starts_with("!==") {
            (CompareOp::StrictNe, 3)
        } else if two.starts_with("==") {
            (CompareOp::Eq, 2)
        } else if two.starts_with("!=") {
            (CompareOp::Ne, 2)
        } else if two.starts_with("<=") {
            (CompareOp::Le, 2)
        } else if two.starts_with(">=") {
            (CompareOp::Ge, 2)
        } else if two.starts_with("=~") {
            (CompareOp::Regex, 2)
        } else if two.starts_with('<') {
            (CompareOp::Lt, 1)
        } else if two.starts_with('>') {
            (CompareOp::Gt, 1)
        } else {
            return None;
        };
        self.pos += len;
        Some(op)
    }

    fn operand(&mut self) -> Result<Operand, JsonPathError> {
        match self.peek() {
            Some('@') => {
                self.pos += 1;
                Ok(Operand::Path {
                    from_root: false,
                    steps: self.steps(true)?,
                })
            }
            Some('$') => {
                self.pos += 1;
                Ok(Operand::Path {
                    from_root: true,
                    steps: self.steps(true)?,
                })
            }
            Some('\'' | '"') => Ok(Operand::Literal(Value::String(self.quoted()?))),
            Some('-' | '0'..='9') => self.number(),
            _ => {
                for (word, value) in [
                    ("true", Value::Bool(true)),
                    ("false", Value::Bool(false)),
                    ("null", Value::Null),
                ] {
                    let end = self.pos + word.len();
                    if end <= self.chars.len()
                        && self.chars[self.pos..end].iter().copied().eq(word.chars())
                    {
                        self.pos = end;
                        return Ok(Operand::Literal(value));
                    }
                }
                Err(self.error("expected a path, a string, a number, true, false or null"))
            }
        }
    }

    fn number(&mut self) -> Result<Operand, JsonPathError> {
        let start = self.pos;
        self.eat('-');
        while matches!(self.peek(), Some('0'..='9' | '.' | 'e' | 'E' | '+' | '-')) {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        serde_json::from_str::<serde_json::Number>(&text)
            .map(|n| Operand::Literal(Value::Number(n)))
            .map_err(|_| self.error("invalid number"))
    }

    fn regex(&mut self) -> Result<Regex, JsonPathError> {
        self.expect('/')?;
        let mut pattern = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated regular expression")),
                Some('\\') if self.peek_at(1) == Some('/') => {
                    pattern.push('/');
                    self.pos += 2;
                }
                Some('/') => {
                    self.pos += 1;
                    break;
                }
                Some(c) => {
                    pattern.push(c);
                    self.pos += 1;
                }
            }
        }
        let mut flags = String::new();
        while let Some(c @ ('i' | 'm' | 's' | 'x')) = self.peek() {
            flags.push(c);
            self.pos += 1;
        }
        let pattern = if flags.is_empty() {
            pattern
        } else {
            format!("(?{flags}){pattern}")
        };
        Regex::new(&pattern).map_err(|e| self.error(&format!("invalid regular expression: {e}")))
    }
}
