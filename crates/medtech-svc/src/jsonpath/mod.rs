//! JSONPath as Json.NET (Newtonsoft) evaluates it, because Azure MedTech mappings are written
//! against that dialect and users bring them unchanged.
//!
//! Why not a crate: `serde_json_path` and `jsonpath-rust` implement RFC 9535, which differs
//! from Json.NET exactly where MedTech mappings live:
//! - `@systolic` (no dot after `@`) is Json.NET shorthand for `@.systolic`; RFC 9535 rejects it,
//!   and Azure's own samples use it (`$..[?(@systolic && @diastolic)]`).
//! - `$..[?(filter)]` in Json.NET tests the node it starts from as well as its descendants
//!   (`DescendantsAndSelf`); RFC 9535 tests only descendants. iomt-fhir's IoT Hub sample
//!   `$..[?(@Body.heartrate)]` matches the envelope itself and needs the Json.NET reading.
//! - A bare `[?(filter)]` on an object matches nothing in Json.NET (it iterates the object's
//!   properties, not their values); RFC 9535 tests the member values.
//! - `SelectToken` fails when a path yields more than one node; the extractors rely on that.
//! - Comparisons follow Json.NET's coercions (a number compared with a numeric string).
//!
//! A filter's bare path (`@.a`) is true when the path selects anything, whatever the value
//! (`null` and `false` included): Json.NET's "exists" operator.

mod filter;
mod parse;

use serde_json::Value;

use filter::FilterExpr;

/// A parsed JSONPath expression.
#[derive(Debug, Clone)]
pub struct JsonPath {
    source: String,
    steps: Vec<Step>,
}

/// One step of a path, in Json.NET's terms.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// `.name`, `['name']`, `['a','b']`
    Members(Vec<String>),
    /// `.*`, `[*]`
    Wildcard,
    /// `[0]`, `[0,2]`
    Indexes(Vec<i64>),
    /// `[start:end:step]`
    Slice {
        start: Option<i64>,
        end: Option<i64>,
        step: Option<i64>,
    },
    /// `[?(expr)]`: elements of an array that match.
    Filter(FilterExpr),
    /// `..name`, `..['name']`: every descendant property of that name.
    ScanMembers(Vec<String>),
    /// `..*`: the node and all its descendants.
    ScanWildcard,
    /// `..[?(expr)]`: the node and all its descendants that match.
    ScanFilter(FilterExpr),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid JSONPath '{path}' at character {position}: {message}")]
pub struct JsonPathError {
    pub path: String,
    pub position: usize,
    pub message: String,
}

/// `SelectToken` found more than one node.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the JSONPath '{0}' returned multiple tokens where one was expected")]
pub struct MultipleTokens(pub String);

impl JsonPath {
    pub fn parse(source: &str) -> Result<Self, JsonPathError> {
        let steps = parse::parse_path(source)?;
        Ok(Self {
            source: source.to_owned(),
            steps,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Every node the path selects, in document order (Json.NET's `SelectTokens`).
    pub fn select<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        evaluate(&self.steps, root, root)
    }

    /// The one node the path selects, if any (Json.NET's `SelectToken`).
    pub fn select_one<'a>(&self, root: &'a Value) -> Result<Option<&'a Value>, MultipleTokens> {
        let mut found = self.select(root);
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => Err(MultipleTokens(self.source.clone())),
        }
    }
}

/// Applies `steps` starting from `start`; `root` is what `$` means inside filters.
pub(crate) fn evaluate<'a>(steps: &[Step], start: &'a Value, root: &'a Value) -> Vec<&'a Value> {
    let mut current = vec![start];
    for step in steps {
        let mut next = Vec::new();
        for node in current {
            apply(step, node, root, &mut next);
        }
        current = next;
        if current.is_empty() {
            break;
        }
    }
    current
}

fn apply<'a>(step: &Step, node: &'a Value, root: &'a Value, out: &mut Vec<&'a Value>) {
    match step {
        Step::Members(names) => {
            if let Value::Object(map) = node {
                out.extend(names.iter().filter_map(|n| map.get(n)));
            }
        }
        Step::Wildcard => match node {
            Value::Object(map) => out.extend(map.values()),
            Value::Array(items) => out.extend(items.iter()),
            _ => {}
        },
        Step::Indexes(indexes) => {
            if let Value::Array(items) = node {
                out.extend(
                    indexes
                        .iter()
                        .filter_map(|i| usize::try_from(*i).ok().and_then(|i| items.get(i))),
                );
            }
        }
        Step::Slice { start, end, step } => {
            if let Value::Array(items) = node {
                slice(items, *start, *end, *step, out);
            }
        }
        Step::Filter(expr) => {
            // Json.NET iterates an object's properties here, and a property never matches.
            if let Value::Array(items) = node {
                out.extend(items.iter().filter(|item| expr.matches(item, root)));
            }
        }
        Step::ScanMembers(names) => scan_members(node, names, out),
        Step::ScanWildcard => {
            out.push(node);
            descendants(node, out);
        }
        Step::ScanFilter(expr) => {
            let mut all = vec![node];
            descendants(node, &mut all);
            out.extend(all.into_iter().filter(|n| expr.matches(n, root)));
        }
    }
}

/// All descendants of `node` in document (pre-)order, not `node` itself.
fn descendants<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
    let children: Box<dyn Iterator<Item = &'a Value>> = match node {
        Value::Object(map) => Box::new(map.values()),
        Value::Array(items) => Box::new(items.iter()),
        _ => return,
    };
    for child in children {
        out.push(child);
        descendants(child, out);
    }
}

fn scan_members<'a>(node: &'a Value, names: &[String], out: &mut Vec<&'a Value>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                if names.iter().any(|n| n == key) {
                    out.push(value);
                }
                scan_members(value, names, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                scan_members(item, names, out);
            }
        }
        _ => {}
    }
}

fn slice<'a>(
    items: &'a [Value],
    start: Option<i64>,
    end: Option<i64>,
    step: Option<i64>,
    out: &mut Vec<&'a Value>,
) {
    let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
    let step = step.unwrap_or(1);
    if step == 0 {
        return;
    }
    let clamp = |i: i64| if i < 0 { (len + i).max(0) } else { i.min(len) };
    let get = |i: i64| usize::try_from(i).ok().and_then(|i| items.get(i));
    if step > 0 {
        let (mut i, end) = (clamp(start.unwrap_or(0)), clamp(end.unwrap_or(len)));
        while i < end {
            out.extend(get(i));
            i += step;
        }
    } else {
        let mut i = start.map_or(len - 1, |s| clamp(s).min(len - 1));
        let end = end.map_or(-1, clamp);
        while i > end {
            out.extend(get(i));
            i += step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn select(path: &str, doc: &Value) -> Vec<Value> {
        JsonPath::parse(path)
            .unwrap()
            .select(doc)
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn at_shorthand_and_existence_truthiness() {
        let doc = json!({"Body": {"systolic": 120, "diastolic": null}, "Properties": {}});
        let found = select("$..[?(@systolic && @diastolic)]", &doc);
        assert_eq!(found, vec![json!({"systolic": 120, "diastolic": null})]);
        assert!(select("$..[?(@systolic && @pulse)]", &doc).is_empty());
    }

    #[test]
    fn scan_filter_includes_the_starting_node() {
        let doc = json!({"Body": {"heartrate": "203"}, "Properties": {}});
        let found = select("$..[?(@Body.heartrate)]", &doc);
        assert_eq!(found, vec![doc.clone()]);
    }

    #[test]
    fn scan_filter_is_document_order() {
        let doc = json!({"a": {"x": 1, "b": {"x": 2}}, "c": {"x": 3}});
        let xs: Vec<Value> = select("$..[?(@.x)]", &doc)
            .into_iter()
            .map(|v| v["x"].clone())
            .collect();
        assert_eq!(xs, vec![json!(1), json!(2), json!(3)]);
    }

    #[test]
    fn filter_on_an_object_matches_nothing_as_in_json_net() {
        let doc = json!({"Body": {"hr": {"v": 1}}});
        assert!(select("$.Body[?(@.v)]", &doc).is_empty());
        let doc = json!({"Body": [{"v": 1}, {"w": 2}]});
        assert_eq!(select("$.Body[?(@.v)]", &doc), vec![json!({"v": 1})]);
    }

    #[test]
    fn comparisons_follow_json_net() {
        let doc = json!([{"unit": "inches", "n": 10}, {"unit": "meters", "n": "9"}]);
        assert_eq!(select("$..[?(@unit == 'inches')]", &doc).len(), 1);
        // A string on the left compares as text: "9" > 9 is false, 10 > 9 is true.
        assert_eq!(select("$[?(@.n > 9)]", &doc).len(), 1);
        // 10 >= '10' as numbers; "9" >= "10" as text (ordinal).
        assert_eq!(select("$[?(@.n >= '10')]", &doc).len(), 2);
        assert_eq!(select("$[?(@.unit =~ /^met/)]", &doc).len(), 1);
        assert_eq!(select("$[?(@.n != 10)]", &doc).len(), 1);
        assert_eq!(
            select("$[?(@.n == 10 || @.unit == 'meters')]", &doc).len(),
            2
        );
    }

    #[test]
    fn members_indexes_slices_and_hyphenated_names() {
        let doc = json!({"SystemProperties": {"iothub-connection-device-id": "d1"},
                         "a": [0, 1, 2, 3], "b c": true});
        assert_eq!(
            select("$.SystemProperties.iothub-connection-device-id", &doc),
            vec![json!("d1")]
        );
        assert_eq!(select("$.a[1,3]", &doc), vec![json!(1), json!(3)]);
        assert_eq!(select("$.a[-2:]", &doc), vec![json!(2), json!(3)]);
        assert_eq!(select("$.a[::-2]", &doc), vec![json!(3), json!(1)]);
        assert_eq!(select("$['b c']", &doc), vec![json!(true)]);
        assert_eq!(select("a[0]", &doc), vec![json!(0)]);
        assert_eq!(select("$..x", &json!({"x": 1, "y": {"x": 2}})).len(), 2);
    }

    #[test]
    fn select_one_refuses_several_tokens() {
        let doc = json!({"a": [1, 2]});
        let path = JsonPath::parse("$.a[*]").unwrap();
        assert!(path.select_one(&doc).is_err());
        let path = JsonPath::parse("$.a[0]").unwrap();
        assert_eq!(path.select_one(&doc).unwrap(), Some(&json!(1)));
    }

    #[test]
    fn malformed_paths_are_errors_not_panics() {
        for bad in [
            "$.[",
            "$[?(@.a ==)]",
            "$['a",
            "$[1:2:3:4]",
            "$..",
            "$[?(@.a",
            "",
            "$[?(@.a =~ /[/)]",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad} should not parse");
        }
    }
}
