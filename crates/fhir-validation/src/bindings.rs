//! Required bindings: whether a code, Coding or CodeableConcept is in the bound value set.
//!
//! Only value sets the package enumerates are known here (see the crate docs for the ones it
//! cannot); an element bound to any other value set is not checked. Extensible, preferred
//! and example bindings are never checked: the spec allows codes outside them.
//!
//! The rule for codings, chosen so that an error is only reported when it is certain:
//! - a Coding is *in* the value set when its system is one of the value set's systems and
//!   its code is one of that system's codes there;
//! - it is *not in* when its system is one of them and its code is not, or when its system is
//!   none of them (the value set is fully enumerated, so it has no codes from other systems);
//! - it is *undecided* when it has no system or no code (it may be a text-only or
//!   extension-only coding).
//!
//! A Coding bound directly is an error only when it is *not in*. A CodeableConcept is an
//! error only when it has codings, none is *in* and none is *undecided*: a CodeableConcept
//! may carry translations from other systems next to the required one, and one that has only
//! text is not checked.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

/// A value set of a required binding, enumerated: its codes by system.
#[derive(Debug)]
pub(crate) struct ValueSet {
    pub(crate) url: Box<str>,
    codes: HashMap<Box<str>, HashSet<Box<str>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Membership {
    In,
    NotIn,
    Undecided,
}

impl ValueSet {
    pub(crate) fn new(url: Box<str>, codes: HashMap<Box<str>, HashSet<Box<str>>>) -> ValueSet {
        ValueSet { url, codes }
    }

    /// A bare code (type code, or a bound string/uri) has no system: it is valid when any of
    /// the value set's systems has it.
    pub(crate) fn contains_code(&self, code: &str) -> bool {
        self.codes.values().any(|codes| codes.contains(code))
    }

    fn coding(&self, coding: &Map<String, Value>) -> Membership {
        let (Some(Value::String(system)), Some(Value::String(code))) =
            (coding.get("system"), coding.get("code"))
        else {
            return Membership::Undecided;
        };
        match self.codes.get(system.as_str()) {
            Some(codes) if codes.contains(code.as_str()) => Membership::In,
            _ => Membership::NotIn,
        }
    }

    /// Whether a Coding (a JSON object) may be used where this value set is required.
    pub(crate) fn allows_coding(&self, coding: &Map<String, Value>) -> bool {
        self.coding(coding) != Membership::NotIn
    }

    /// Whether a CodeableConcept (a JSON object) may be used where this value set is
    /// required.
    pub(crate) fn allows_codeable_concept(&self, concept: &Map<String, Value>) -> bool {
        let Some(Value::Array(codings)) = concept.get("coding") else {
            return true;
        };
        let mut any = false;
        for coding in codings {
            let Value::Object(coding) = coding else {
                continue;
            };
            any = true;
            if self.coding(coding) != Membership::NotIn {
                return true;
            }
        }
        !any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value_set() -> ValueSet {
        let mut codes = HashMap::new();
        codes.insert(
            "http://s".into(),
            ["a".into(), "b".into()].into_iter().collect(),
        );
        ValueSet::new("http://vs".into(), codes)
    }

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn codes() {
        assert!(value_set().contains_code("a"));
        assert!(!value_set().contains_code("c"));
    }

    #[test]
    fn codings() {
        let vs = value_set();
        assert!(vs.allows_coding(&object(json!({"system": "http://s", "code": "a"}))));
        assert!(!vs.allows_coding(&object(json!({"system": "http://s", "code": "c"}))));
        assert!(!vs.allows_coding(&object(json!({"system": "http://other", "code": "a"}))));
        assert!(vs.allows_coding(&object(json!({"code": "zzz"}))));
        assert!(vs.allows_coding(&object(json!({"system": "http://s", "display": "A"}))));
    }

    #[test]
    fn codeable_concepts() {
        let vs = value_set();
        let cc = |v: Value| vs.allows_codeable_concept(&object(v));
        assert!(cc(json!({"text": "only text"})));
        assert!(cc(
            json!({"coding": [{"system": "http://other", "code": "x"}, {"system": "http://s", "code": "b"}]})
        ));
        assert!(!cc(
            json!({"coding": [{"system": "http://other", "code": "x"}]})
        ));
        assert!(!cc(
            json!({"coding": [{"system": "http://s", "code": "x"}]})
        ));
        assert!(cc(
            json!({"coding": [{"system": "http://other", "code": "x"}, {"display": "?"}]})
        ));
    }
}
