//! The integer keys the search index is organised by.
//!
//! An index row names its resource by `rkey` and its parameter by `pkey` instead of by
//! (instance, type, id) and (instance, type, param): a btree entry then compares integers
//! instead of strings, and rows are half as wide. Both keys are derived from the names (the
//! first 64 bits of a SHA-256 over them), not allocated, so a writer knows them without asking
//! the database, and a query computes them from the names it was given.
//!
//! Two resources of one database with the same `rkey` cannot exist: `fhir_current.rkey` is
//! unique, and the second write fails instead of mixing their index rows. For parameters a
//! collision would go unnoticed, but there are only thousands of them per instance and a
//! collision among n keys has a chance of about n²/2⁶⁵ (10⁻⁹ at a hundred thousand).

use std::cell::RefCell;
use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// What a key is of: a resource and a parameter with the same names get different keys.
#[derive(Clone, Copy)]
enum Kind {
    Resource = b'r' as isize,
    Param = b'p' as isize,
    Criteria = b'c' as isize,
}

fn key(kind: Kind, instance: &str, resource_type: &str, name: &str) -> i64 {
    let mut h = Sha256::new();
    h.update([kind as u8, 0]);
    for part in [instance, resource_type, name] {
        // Length-prefixed, so no two tuples of names feed the same bytes.
        h.update((part.len() as u32).to_le_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_le_bytes(first)
}

/// The key of resource `resource_type/id` of `instance`.
pub fn resource(instance: &str, resource_type: &str, id: &str) -> i64 {
    key(Kind::Resource, instance, resource_type, id)
}

/// The key of search parameter `param` (or `param:modifier` for the rows a modifier reads)
/// of `resource_type` in `instance`. Every write needs a dozen of these, always the same
/// few thousand per instance: each thread keeps those it made.
pub fn param(instance: &str, resource_type: &str, param: &str) -> i64 {
    type Cache = HashMap<String, HashMap<String, HashMap<String, i64>>>;
    thread_local! {
        static MADE: RefCell<Cache> = RefCell::new(HashMap::new());
    }
    MADE.with(|made| {
        let mut made = made.borrow_mut();
        let known = made
            .get(instance)
            .and_then(|types| types.get(resource_type))
            .and_then(|params| params.get(param));
        if let Some(k) = known {
            return *k;
        }
        let k = key(Kind::Param, instance, resource_type, param);
        made.entry(instance.to_owned())
            .or_default()
            .entry(resource_type.to_owned())
            .or_default()
            .insert(param.to_owned(), k);
        k
    })
}

/// The key of a conditional create's criteria (their parsed form, printed) on `resource_type`
/// in `instance`: the lock that makes concurrent creates with the same criteria take turns.
pub fn criteria(instance: &str, resource_type: &str, criteria: &str) -> i64 {
    key(Kind::Criteria, instance, resource_type, criteria)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_every_name_and_kind() {
        let k = resource("ws-fhir", "Patient", "1");
        assert_eq!(k, resource("ws-fhir", "Patient", "1"));
        assert_ne!(k, resource("ws-fhir2", "Patient", "1"));
        assert_ne!(k, resource("ws-fhir", "Group", "1"));
        assert_ne!(k, resource("ws-fhir", "Patient", "2"));
        assert_ne!(k, param("ws-fhir", "Patient", "1"));
        // Boundaries between names matter.
        assert_ne!(resource("a", "bc", "d"), resource("ab", "c", "d"));
    }

    #[test]
    fn keys_never_change() {
        // Stored keys outlive the binary: a new derivation would orphan every index row.
        assert_eq!(resource("ws-fhir", "Patient", "1"), -6529652842142078806);
        assert_eq!(param("ws-fhir", "Patient", "name"), -1399584035537408851);
    }
}
