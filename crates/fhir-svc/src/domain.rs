//! FHIR's own vocabulary: resource types, logical ids, versions, instants.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};

/// Every concrete R4 resource type, from the official StructureDefinitions
/// (`scripts/fhir-definitions.py` derives the file).
const RESOURCE_TYPES: &str = include_str!("../definitions/r4/resource-types.txt");

/// A concrete R4 resource type, e.g. `Patient`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceType(String);

/// The types as a set: a type is checked for every reference a resource holds.
static KNOWN: std::sync::LazyLock<std::collections::HashSet<&'static str>> =
    std::sync::LazyLock::new(|| ResourceType::all().collect());

impl FromStr for ResourceType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if KNOWN.contains(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!("'{s}' is not a FHIR R4 resource type"))
        }
    }
}

impl ResourceType {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Every resource type, in order.
    pub fn all() -> impl Iterator<Item = &'static str> {
        RESOURCE_TYPES.lines().filter(|l| !l.is_empty())
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A logical id: `[A-Za-z0-9\-\.]{1,64}` (FHIR R4 `id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId(String);

impl FromStr for ResourceId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=64).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "'{s}' is not a valid id: use 1 to 64 letters, digits, '-' and '.'"
            ))
        }
    }
}

impl ResourceId {
    /// A new server-assigned id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// FHIR `instant` text of a time: `2026-11-27T01:02:03.456Z`.
pub fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `ETag: W/"3"`.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// The version in an `ETag`/`If-Match` value: `W/"3"`, `"3"` or `3`.
pub fn parse_etag(value: &str) -> Option<i64> {
    value
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_ids() {
        assert!("Patient".parse::<ResourceType>().is_ok());
        assert!("Bundle".parse::<ResourceType>().is_ok());
        assert!("patient".parse::<ResourceType>().is_err());
        assert!("DomainResource".parse::<ResourceType>().is_err());
        assert_eq!(ResourceType::all().count(), 146);
        assert!("a.b-C9".parse::<ResourceId>().is_ok());
        assert!("a/b".parse::<ResourceId>().is_err());
        assert!("".parse::<ResourceId>().is_err());
        assert!("x".repeat(65).parse::<ResourceId>().is_err());
        assert_eq!(parse_etag("W/\"12\""), Some(12));
        assert_eq!(parse_etag("\"3\""), Some(3));
        assert_eq!(parse_etag("W/\"x\""), None);
    }
}
