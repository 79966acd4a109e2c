//! Reading a mapping document (device or FHIR destination) the way Json.NET reads Azure's:
//! member names match in any case, unknown members are errors, `"true"` is a boolean. Every
//! problem is collected (not just the first) as a [`MappingError`] naming the JSON path of the
//! offending value and, found in the source text, its line and column.

use std::fmt;

use serde_json::{Map, Value};

/// One problem of a mapping, where it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MappingError {
    /// JSONPath of the offending value, e.g. `$.template[0].template.typeName`.
    pub path: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => {
                write!(f, "{} (line {l}, column {c}): {}", self.path, self.message)
            }
            _ => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Every problem of a mapping that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("the mapping is invalid: {}", .errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct InvalidMapping {
    pub errors: Vec<MappingError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Where a value is in the document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Loc(Vec<Seg>);

impl Loc {
    pub fn key(&self, key: &str) -> Loc {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        Loc(segs)
    }

    pub fn index(&self, index: usize) -> Loc {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        Loc(segs)
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for seg in &self.0 {
            match seg {
                Seg::Key(k) if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                    write!(f, ".{k}")?
                }
                Seg::Key(k) => write!(f, "['{}']", k.replace('\'', "\\'"))?,
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// The document being read and the problems found so far.
pub(crate) struct Doc<'s> {
    source: &'s str,
    errors: Vec<MappingError>,
}

impl<'s> Doc<'s> {
    /// Parses `source`; a document that is not JSON is one error at the parser's position.
    pub fn parse(source: &'s str) -> Result<(Value, Doc<'s>), InvalidMapping> {
        match serde_json::from_str::<Value>(source) {
            Ok(value) => Ok((
                value,
                Doc {
                    source,
                    errors: Vec::new(),
                },
            )),
            Err(e) => Err(InvalidMapping {
                errors: vec![MappingError {
                    path: "$".into(),
                    line: Some(e.line()),
                    column: Some(e.column()),
                    message: format!("the mapping is not valid JSON: {e}"),
                }],
            }),
        }
    }

    pub fn error(&mut self, loc: &Loc, message: impl Into<String>) {
        let (line, column) =
            locate(self.source, &loc.0).map_or((None, None), |(l, c)| (Some(l), Some(c)));
        self.errors.push(MappingError {
            path: loc.to_string(),
            line,
            column,
            message: message.into(),
        });
    }

    pub fn finish<T>(self, value: T) -> Result<T, InvalidMapping> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(InvalidMapping {
                errors: self.errors,
            })
        }
    }

    pub fn object<'v>(&mut self, value: &'v Value, loc: &Loc, what: &str) -> Option<Obj<'v>> {
        match value {
            Value::Object(map) => Some(Obj {
                map,
                loc: loc.clone(),
                used: Vec::new(),
            }),
            _ => {
                self.error(loc, format!("expected an object for {what}"));
                None
            }
        }
    }

    pub fn array<'v>(&mut self, value: &'v Value, loc: &Loc, what: &str) -> Option<&'v [Value]> {
        match value {
            Value::Array(items) => Some(items),
            _ => {
                self.error(loc, format!("expected an array for {what}"));
                None
            }
        }
    }

    /// A string member; a required one that is missing, null or blank is an error.
    pub fn string(
        &mut self,
        obj: &mut Obj<'_>,
        name: &str,
        required: bool,
    ) -> Option<(String, Loc)> {
        let Some((value, loc)) = obj.get(name) else {
            if required {
                self.error(&obj.loc, format!("required property '{name}' is missing"));
            }
            return None;
        };
        match value {
            Value::String(s) if required && s.trim().is_empty() => {
                self.error(&loc, format!("'{name}' must not be empty"));
                None
            }
            Value::String(s) => Some((s.clone(), loc)),
            Value::Null if !required => None,
            Value::Number(n) => Some((n.to_string(), loc)),
            _ => {
                self.error(&loc, format!("expected a string for '{name}'"));
                None
            }
        }
    }

    /// A boolean member, accepting `"true"`/`"false"` as Json.NET does; missing is `false`.
    pub fn boolean(&mut self, obj: &mut Obj<'_>, name: &str) -> bool {
        match obj.get(name) {
            None | Some((Value::Null, _)) => false,
            Some((Value::Bool(b), _)) => *b,
            Some((Value::String(s), _)) if s.eq_ignore_ascii_case("true") => true,
            Some((Value::String(s), _)) if s.eq_ignore_ascii_case("false") => false,
            Some((_, loc)) => {
                self.error(&loc, format!("expected true or false for '{name}'"));
                false
            }
        }
    }

    /// Reports the members of `obj` that were never asked for, except `ignored` ones (members
    /// Azure's classes declare but ignore, such as an IoT template's fixed expressions).
    pub fn unknown_members(&mut self, obj: &Obj<'_>, type_name: &str, ignored: &[&str]) {
        for key in obj.map.keys() {
            let known = obj.used.iter().any(|u| u == key)
                || ignored.iter().any(|i| i.eq_ignore_ascii_case(key));
            if !known {
                self.error(
                    &obj.loc.key(key),
                    format!("could not find member '{key}' on object of type '{type_name}'"),
                );
            }
        }
    }
}

/// An object being read: remembers which members were used, to report the others.
pub(crate) struct Obj<'v> {
    map: &'v Map<String, Value>,
    pub loc: Loc,
    used: Vec<String>,
}

impl<'v> Obj<'v> {
    /// A member by name: the exact spelling first, then any case (Json.NET's rule).
    pub fn get(&mut self, name: &str) -> Option<(&'v Value, Loc)> {
        let (key, value) = self
            .map
            .get_key_value(name)
            .or_else(|| self.map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))?;
        self.used.push(key.clone());
        Some((value, self.loc.key(key)))
    }
}

/// Line and column (1-based) of the value at `path` in the JSON text, if it is there.
fn locate(source: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let mut scan = Scan {
        bytes: source.as_bytes(),
        pos: 0,
    };
    scan.ws();
    let offset = scan.find(path)?;
    let before = source.get(..offset)?;
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, column))
}

/// A minimal JSON scanner that walks to a path without building values.
struct Scan<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Scan<'_> {
    fn ws(&mut self) {
        while matches!(self.bytes.get(self.pos), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.ws();
        (self.bytes.get(self.pos) == Some(&b)).then(|| self.pos += 1)
    }

    fn find(&mut self, path: &[Seg]) -> Option<usize> {
        self.ws();
        let Some((seg, rest)) = path.split_first() else {
            return Some(self.pos);
        };
        match seg {
            Seg::Key(wanted) => {
                self.eat(b'{')?;
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.eat(b':')?;
                    if &key == wanted {
                        return self.find(rest);
                    }
                    self.skip_value()?;
                    self.eat(b',')?;
                }
            }
            Seg::Index(wanted) => {
                self.eat(b'[')?;
                for _ in 0..*wanted {
                    self.skip_value()?;
                    self.eat(b',')?;
                }
                self.find(rest)
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        let start = self.pos;
        if self.bytes.get(self.pos) != Some(&b'"') {
            return None;
        }
        self.pos += 1;
        loop {
            match self.bytes.get(self.pos)? {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    let raw = std::str::from_utf8(self.bytes.get(start..self.pos)?).ok()?;
                    return serde_json::from_str(raw).ok();
                }
                _ => self.pos += 1,
            }
        }
    }

    fn skip_value(&mut self) -> Option<()> {
        self.ws();
        match self.bytes.get(self.pos)? {
            b'"' => self.string().map(|_| ()),
            open @ (b'{' | b'[') => {
                let close = if *open == b'{' { b'}' } else { b']' };
                self.pos += 1;
                if self.eat(close).is_some() {
                    return Some(());
                }
                loop {
                    if *open == b'{' {
                        self.ws();
                        self.string()?;
                        self.eat(b':')?;
                    }
                    self.skip_value()?;
                    if self.eat(b',').is_none() {
                        return self.eat(close);
                    }
                }
            }
            _ => {
                while let Some(b) = self.bytes.get(self.pos) {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
                        break;
                    }
                    self.pos += 1;
                }
                Some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_values_by_path() {
        let source = "{\n  \"a\": [1, {\"b\": \"x\"}],\n  \"c\": {\n    \"d\": true\n  }\n}";
        let at = |loc: Loc| locate(source, &loc.0);
        assert_eq!(at(Loc::default().key("a").index(1).key("b")), Some((2, 18)));
        assert_eq!(at(Loc::default().key("c").key("d")), Some((4, 10)));
        assert_eq!(at(Loc::default().key("zz")), None);
        assert_eq!(
            Loc::default()
                .key("template")
                .index(0)
                .key("a b")
                .to_string(),
            "$.template[0]['a b']"
        );
    }
}
