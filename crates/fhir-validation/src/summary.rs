//! The top-level elements of each resource type, with what `_summary` needs of them: whether
//! the element is part of the summary (`isSummary`) and whether it is mandatory (min ≥ 1).

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

/// One top-level element of a resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopElement {
    /// The element's name; for a choice (`value[x]`), its stem (`value`).
    pub name: String,
    pub choice: bool,
    pub summary: bool,
    pub mandatory: bool,
}

impl TopElement {
    /// Whether the JSON key `key` (or its `_key` companion) is this element.
    pub fn matches(&self, key: &str) -> bool {
        let key = key.strip_prefix('_').unwrap_or(key);
        if self.choice {
            key.strip_prefix(self.name.as_str())
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
        } else {
            key == self.name
        }
    }
}

#[derive(Deserialize)]
struct Line {
    path: String,
    kind: Option<String>,
    min: Option<u32>,
    #[serde(default)]
    summary: bool,
}

static TOP: LazyLock<HashMap<String, Vec<TopElement>>> = LazyLock::new(|| {
    let mut out: HashMap<String, Vec<TopElement>> = HashMap::new();
    let mut resources = std::collections::HashSet::new();
    for raw in include_str!("../definitions/r4/structures.json").lines() {
        let raw = raw.trim().trim_end_matches(',');
        let Ok(line) = serde_json::from_str::<Line>(raw) else {
            continue;
        };
        if line.kind.as_deref() == Some("resource") {
            resources.insert(line.path.clone());
            continue;
        }
        let Some((ty, name)) = line.path.split_once('.') else {
            continue;
        };
        if name.contains('.') || !resources.contains(ty) {
            continue;
        }
        let (name, choice) = match name.strip_suffix("[x]") {
            Some(stem) => (stem.to_owned(), true),
            None => (name.to_owned(), false),
        };
        out.entry(ty.to_owned()).or_default().push(TopElement {
            name,
            choice,
            summary: line.summary,
            mandatory: line.min.unwrap_or(0) >= 1,
        });
    }
    out
});

/// The top-level elements of `resource_type` (empty for an unknown type).
pub fn top_elements(resource_type: &str) -> &'static [TopElement] {
    TOP.get(resource_type).map(Vec::as_slice).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observation_summary_and_mandatory_elements() {
        let top = top_elements("Observation");
        let get = |n: &str| top.iter().find(|e| e.name == n).unwrap();
        assert!(get("status").summary && get("status").mandatory);
        assert!(get("code").mandatory);
        assert!(!get("note").summary && !get("note").mandatory);
        assert!(get("value").choice && get("value").matches("valueQuantity"));
        assert!(!get("value").matches("valueless"));
        assert!(top_elements("NoSuchType").is_empty());
    }
}
