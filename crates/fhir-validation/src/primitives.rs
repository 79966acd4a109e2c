//! The FHIR primitive types and how their values look in JSON.
//!
//! Each primitive has a JSON kind (boolean, number, string) and, for most, a regex published
//! on `<type>.value` in its StructureDefinition; the regexes come from the vendored
//! definitions and are compiled once. What the regexes cannot say (integer ranges, calendar
//! days, forbidden control characters, string length, `<div` for xhtml) is checked here by
//! hand, from the R4 datatypes page.

use std::fmt;

use regex::Regex;
use serde_json::Value;

use crate::issue::IssueCode;

/// The twenty R4 primitive types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Primitive {
    Base64Binary,
    Boolean,
    Canonical,
    Code,
    Date,
    DateTime,
    Decimal,
    Id,
    Instant,
    Integer,
    Markdown,
    Oid,
    PositiveInt,
    String,
    Time,
    UnsignedInt,
    Uri,
    Url,
    Uuid,
    Xhtml,
}

impl Primitive {
    pub(crate) const ALL: [Primitive; 20] = [
        Primitive::Base64Binary,
        Primitive::Boolean,
        Primitive::Canonical,
        Primitive::Code,
        Primitive::Date,
        Primitive::DateTime,
        Primitive::Decimal,
        Primitive::Id,
        Primitive::Instant,
        Primitive::Integer,
        Primitive::Markdown,
        Primitive::Oid,
        Primitive::PositiveInt,
        Primitive::String,
        Primitive::Time,
        Primitive::UnsignedInt,
        Primitive::Uri,
        Primitive::Url,
        Primitive::Uuid,
        Primitive::Xhtml,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Primitive::Base64Binary => "base64Binary",
            Primitive::Boolean => "boolean",
            Primitive::Canonical => "canonical",
            Primitive::Code => "code",
            Primitive::Date => "date",
            Primitive::DateTime => "dateTime",
            Primitive::Decimal => "decimal",
            Primitive::Id => "id",
            Primitive::Instant => "instant",
            Primitive::Integer => "integer",
            Primitive::Markdown => "markdown",
            Primitive::Oid => "oid",
            Primitive::PositiveInt => "positiveInt",
            Primitive::String => "string",
            Primitive::Time => "time",
            Primitive::UnsignedInt => "unsignedInt",
            Primitive::Uri => "uri",
            Primitive::Url => "url",
            Primitive::Uuid => "uuid",
            Primitive::Xhtml => "xhtml",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Primitive> {
        Primitive::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether the value may carry a `_name` companion with an id and extensions. xhtml may
    /// not: its StructureDefinition sets `xhtml.extension` to max 0, and the JSON format
    /// writes a narrative's div as a bare string.
    pub(crate) fn has_companion(self) -> bool {
        self != Primitive::Xhtml
    }

    /// Whether a required binding on an element of this type is checked against the code
    /// (code, and string/uri when bound).
    pub(crate) fn is_coded(self) -> bool {
        matches!(self, Primitive::Code | Primitive::String | Primitive::Uri)
    }

    /// string and the types derived from it, which share its 1 MiB limit (xhtml, uri and
    /// base64Binary are not strings: narratives and attachments may be larger).
    fn is_string(self) -> bool {
        matches!(
            self,
            Primitive::String | Primitive::Code | Primitive::Id | Primitive::Markdown
        )
    }

    fn json_kind(self) -> JsonKind {
        match self {
            Primitive::Boolean => JsonKind::Boolean,
            Primitive::Integer => JsonKind::Integer {
                min: i32::MIN as i64,
            },
            Primitive::PositiveInt => JsonKind::Integer { min: 1 },
            Primitive::UnsignedInt => JsonKind::Integer { min: 0 },
            Primitive::Decimal => JsonKind::Decimal,
            _ => JsonKind::String,
        }
    }
}

impl fmt::Display for Primitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a primitive is written in JSON (R4 json.html#primitive).
enum JsonKind {
    Boolean,
    /// A JSON number without fraction or exponent, at most 2^31-1 (R4 integers are 32-bit).
    Integer {
        min: i64,
    },
    Decimal,
    String,
}

/// R4 strings "SHALL NOT exceed 1MB (1024*1024 characters) in size" (datatypes.html#string).
const MAX_STRING_CHARS: usize = 1024 * 1024;

/// Why a primitive value is invalid.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) code: IssueCode,
    pub(crate) message: String,
}

fn problem(code: IssueCode, message: String) -> Result<(), Problem> {
    Err(Problem { code, message })
}

/// The compiled format regex of each primitive, indexed by [`Primitive`].
pub(crate) struct Formats {
    regexes: Vec<Option<Regex>>,
}

impl Formats {
    /// `regexes` are the published ones, by primitive; a primitive without one (xhtml) is
    /// checked by kind only.
    pub(crate) fn new(regexes: &[(Primitive, &str)]) -> Result<Formats, String> {
        let mut compiled: Vec<Option<Regex>> = Primitive::ALL.iter().map(|_| None).collect();
        for (primitive, regex) in regexes {
            let re = compile(regex).map_err(|e| format!("regex of {primitive}: {e}"))?;
            compiled[*primitive as usize] = Some(re);
        }
        Ok(Formats { regexes: compiled })
    }

    /// Checks one JSON value (never `null` or an array: the walker deals with those) against
    /// the primitive's JSON kind and format.
    pub(crate) fn check(&self, primitive: Primitive, value: &Value) -> Result<(), Problem> {
        match (primitive.json_kind(), value) {
            (JsonKind::Boolean, Value::Bool(_)) => Ok(()),
            (JsonKind::Integer { min }, Value::Number(n)) => {
                let text = n.as_str();
                self.check_regex(primitive, text)?;
                match text.parse::<i64>() {
                    Ok(v) if v >= min && v <= i32::MAX as i64 => Ok(()),
                    _ => problem(
                        IssueCode::Value,
                        format!(
                            "{text} is out of range for {primitive} ({min}..={})",
                            i32::MAX
                        ),
                    ),
                }
            }
            (JsonKind::Decimal, Value::Number(n)) => self.check_regex(primitive, n.as_str()),
            (JsonKind::String, Value::String(s)) => self.check_string(primitive, s),
            (_, other) => problem(
                IssueCode::Structure,
                format!(
                    "a {primitive} must be a JSON {}, not {}",
                    match primitive.json_kind() {
                        JsonKind::Boolean => "boolean",
                        JsonKind::Integer { .. } | JsonKind::Decimal => "number",
                        JsonKind::String => "string",
                    },
                    json_type_name(other)
                ),
            ),
        }
    }

    fn check_string(&self, primitive: Primitive, s: &str) -> Result<(), Problem> {
        if s.is_empty() {
            return problem(
                IssueCode::Value,
                format!("a {primitive} must not be an empty string"),
            );
        }
        if primitive.is_string()
            && s.len() > MAX_STRING_CHARS
            && s.chars().count() > MAX_STRING_CHARS
        {
            return problem(
                IssueCode::TooLong,
                format!("a {primitive} must not exceed {MAX_STRING_CHARS} characters"),
            );
        }
        if let Some(c) = s
            .chars()
            .find(|&c| c < ' ' && !matches!(c, '\t' | '\n' | '\r'))
        {
            return problem(
                IssueCode::Value,
                format!(
                    "a {primitive} must not contain the control character U+{:04X}",
                    c as u32
                ),
            );
        }
        if primitive == Primitive::Xhtml {
            // The narrative is not parsed: that it is a div is all the JSON format promises.
            if !s.trim_start().starts_with("<div") {
                return problem(
                    IssueCode::Value,
                    "xhtml must be a <div> element".to_string(),
                );
            }
            return Ok(());
        }
        self.check_regex(primitive, s)?;
        if matches!(
            primitive,
            Primitive::Date | Primitive::DateTime | Primitive::Instant
        ) && !is_calendar_day(s)
        {
            return problem(
                IssueCode::Value,
                format!("{} is not a calendar date", quote(s)),
            );
        }
        Ok(())
    }

    fn check_regex(&self, primitive: Primitive, text: &str) -> Result<(), Problem> {
        match &self.regexes[primitive as usize] {
            Some(re) if !re.is_match(text) => problem(
                IssueCode::Value,
                format!("{} is not a valid {primitive}", quote(text)),
            ),
            _ => Ok(()),
        }
    }
}

/// Compiles a published regex for whole-value matching.
///
/// FHIR's regexes are written for Java, where `\s` is ASCII whitespace `[ \t\n\x0B\f\r]`; in
/// the `regex` crate it is Unicode whitespace, which would make `[ \r\n\t\S]+` (string)
/// reject a no-break space. So `\s`/`\S` are spelled out as the ASCII classes first.
fn compile(regex: &str) -> Result<Regex, regex::Error> {
    let java = regex
        .replace(r"\S", r"[^\t\n\x0B\x0C\r ]")
        .replace(r"\s", r"[\t\n\x0B\x0C\r ]");
    Regex::new(&format!("^(?:{java})$"))
}

/// The regexes of date, dateTime and instant allow day 31 in every month: a date must also
/// exist (`2021-02-29` does not).
fn is_calendar_day(s: &str) -> bool {
    let (Some(year), Some(month), Some(day)) = (s.get(0..4), s.get(5..7), s.get(8..10)) else {
        return true; // only a year or a year-month: the regex said enough
    };
    let (Ok(year), Ok(month), Ok(day)) = (
        year.parse::<u32>(),
        month.parse::<u32>(),
        day.parse::<u32>(),
    ) else {
        return true;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    day <= days
}

/// A value for a message: quoted, and cut short so that a megabyte of base64 is not echoed.
pub(crate) fn quote(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

pub(crate) fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::DEFINITIONS;
    use serde_json::json;

    fn check(primitive: Primitive, value: Value) -> Result<(), IssueCode> {
        DEFINITIONS
            .formats
            .check(primitive, &value)
            .map_err(|p| p.code)
    }

    #[test]
    fn every_primitive_has_its_published_regex_except_xhtml() {
        for p in Primitive::ALL {
            assert_eq!(
                DEFINITIONS.formats.regexes[p as usize].is_some(),
                p != Primitive::Xhtml,
                "{p}"
            );
        }
    }

    #[test]
    fn ids() {
        assert_eq!(check(Primitive::Id, json!("a-1.B")), Ok(()));
        assert_eq!(check(Primitive::Id, json!("a b")), Err(IssueCode::Value));
        assert_eq!(check(Primitive::Id, json!("x".repeat(64))), Ok(()));
        assert_eq!(
            check(Primitive::Id, json!("x".repeat(65))),
            Err(IssueCode::Value)
        );
        assert_eq!(check(Primitive::Id, json!(12)), Err(IssueCode::Structure));
    }

    #[test]
    fn dates_must_exist() {
        assert_eq!(
            check(Primitive::DateTime, json!("2020-02-29T10:00:00Z")),
            Ok(())
        );
        assert_eq!(
            check(Primitive::Date, json!("2021-02-29")),
            Err(IssueCode::Value)
        );
        assert_eq!(
            check(Primitive::Date, json!("2021-04-31")),
            Err(IssueCode::Value)
        );
        assert_eq!(
            check(Primitive::DateTime, json!("2020-13-01")),
            Err(IssueCode::Value)
        );
        assert_eq!(check(Primitive::DateTime, json!("2020-12")), Ok(()));
        assert_eq!(
            check(Primitive::DateTime, json!("2020-12-01T10:00")),
            Err(IssueCode::Value)
        );
        assert_eq!(
            check(Primitive::Instant, json!("2020-12-01")),
            Err(IssueCode::Value)
        );
        assert_eq!(
            check(Primitive::Time, json!("24:00:00")),
            Err(IssueCode::Value)
        );
    }

    #[test]
    fn numbers_keep_their_text() {
        let n = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert_eq!(check(Primitive::Decimal, n("1.50")), Ok(()));
        assert_eq!(check(Primitive::Decimal, n("-0.5e10")), Ok(()));
        assert_eq!(
            check(Primitive::Decimal, json!("1.5")),
            Err(IssueCode::Structure)
        );
        assert_eq!(check(Primitive::Integer, n("1.0")), Err(IssueCode::Value));
        assert_eq!(check(Primitive::Integer, n("2147483647")), Ok(()));
        assert_eq!(
            check(Primitive::Integer, n("2147483648")),
            Err(IssueCode::Value)
        );
        assert_eq!(check(Primitive::Integer, n("-2147483648")), Ok(()));
        assert_eq!(
            check(Primitive::Integer, json!("1")),
            Err(IssueCode::Structure)
        );
        assert_eq!(check(Primitive::PositiveInt, n("0")), Err(IssueCode::Value));
        assert_eq!(check(Primitive::UnsignedInt, n("0")), Ok(()));
        assert_eq!(
            check(Primitive::UnsignedInt, n("-1")),
            Err(IssueCode::Value)
        );
        assert_eq!(
            check(Primitive::Boolean, json!("true")),
            Err(IssueCode::Structure)
        );
        assert_eq!(check(Primitive::Boolean, json!(false)), Ok(()));
    }

    #[test]
    fn strings() {
        assert_eq!(check(Primitive::String, json!("")), Err(IssueCode::Value));
        assert_eq!(
            check(Primitive::String, json!(" padded\tand\r\nlines ")),
            Ok(())
        );
        assert_eq!(check(Primitive::String, json!("no\u{a0}break")), Ok(()));
        assert_eq!(
            check(Primitive::String, json!("bell\u{7}")),
            Err(IssueCode::Value)
        );
        assert_eq!(
            check(Primitive::String, json!("x".repeat(MAX_STRING_CHARS + 1))),
            Err(IssueCode::TooLong)
        );
        let big_div = format!("<div>{}</div>", "x".repeat(MAX_STRING_CHARS));
        assert_eq!(check(Primitive::Xhtml, json!(big_div)), Ok(()));
        assert_eq!(
            check(Primitive::Uri, json!("http://a b")),
            Err(IssueCode::Value)
        );
        assert_eq!(check(Primitive::Code, json!(" x")), Err(IssueCode::Value));
        assert_eq!(check(Primitive::Oid, json!("urn:oid:1.2.3")), Ok(()));
        assert_eq!(
            check(Primitive::Uuid, json!("urn:uuid:not-a-uuid")),
            Err(IssueCode::Value)
        );
        assert_eq!(check(Primitive::Base64Binary, json!("aGk=")), Ok(()));
        assert_eq!(
            check(Primitive::Base64Binary, json!("aGk")),
            Err(IssueCode::Value)
        );
        assert_eq!(
            check(
                Primitive::Xhtml,
                json!("<div xmlns=\"http://www.w3.org/1999/xhtml\"/>")
            ),
            Ok(())
        );
        assert_eq!(
            check(Primitive::Xhtml, json!("<p>hi</p>")),
            Err(IssueCode::Value)
        );
    }

    #[test]
    fn quoting_cuts_long_values() {
        assert_eq!(quote("ab"), "\"ab\"");
        assert!(quote(&"é".repeat(500)).chars().count() < 90);
    }
}
