//! Continuation tokens: where the next page of a search starts.
//!
//! Every search pages by keyset — the next page starts after the last row of this one, by
//! the search's own order — so a page neither skips nor repeats a match when others write
//! meanwhile (R4 search.html#paging leaves the token to the server; Azure's are opaque too).
//! A token is that last row's position, as base64url JSON: clients must not build or read
//! them, and the server refuses one it did not make for this search with a 400.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::FhirError;

/// One `_sort` key's value in a row: text (strings, tokens, references, ids), a number
/// (dates in ms, `_lastUpdated`), or none (the resource has no value: it sorts last).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SortValue {
    Text(String),
    Int(i64),
    Missing,
}

/// The last row of a page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k")]
pub enum Cursor {
    /// A type-level search in id order: after this id.
    #[serde(rename = "id")]
    Id { id: String },
    /// A type-level search in resource-key order (see `query::find_page`): after this key.
    #[serde(rename = "key")]
    Key { key: i64 },
    /// A `_sort`ed search: after the row with these sort values (one per key) and this id.
    #[serde(rename = "sort")]
    Sorted { values: Vec<SortValue>, id: String },
    /// A system-level search (types in name order, then each type's own order): after the
    /// row of `within` in that type's search.
    #[serde(rename = "sys")]
    System {
        resource_type: String,
        within: Box<Cursor>,
    },
}

impl Cursor {
    /// The token of a `next` link.
    pub fn token(&self) -> String {
        // Serialising these plain types cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// The cursor a token stands for; anything else is the client's mistake.
    pub fn parse(token: &str) -> Result<Self, FhirError> {
        URL_SAFE_NO_PAD
            .decode(token.trim_end_matches('='))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(not_this_search)
    }
}

/// A token of another kind of search (or none of ours).
pub fn not_this_search() -> FhirError {
    FhirError::invalid("the continuation token does not belong to this search")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_say_nothing_readable() {
        let cursors = [
            Cursor::Id { id: "a-1".into() },
            Cursor::Key { key: -42 },
            Cursor::Sorted {
                values: vec![
                    SortValue::Text("smith".into()),
                    SortValue::Int(-5),
                    SortValue::Missing,
                ],
                id: "p.2".into(),
            },
            Cursor::System {
                resource_type: "Patient".into(),
                within: Box::new(Cursor::Id { id: "x".into() }),
            },
        ];
        for c in cursors {
            let token = c.token();
            assert!(!token.contains("smith") && !token.contains('/'));
            assert_eq!(Cursor::parse(&token).unwrap(), c);
        }
    }

    #[test]
    fn foreign_tokens_are_refused() {
        for bad in ["@20", "Patient/1", "", "e30", "!!"] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }
}
