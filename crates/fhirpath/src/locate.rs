//! Where in the resource the items of a result are: [`super::Expr::locate`].
//!
//! Evaluation is not changed for this: the items that are nodes of the resource borrow them
//! ([`Item::Node`]), so after an ordinary evaluation one walk of the resource finds each
//! node by its address. Search indexing pays nothing; a patch pays one walk per path.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use super::eval::It;
use super::Item;

/// One step from a JSON value to a child: an object member or an array entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Where a node is in a JSON document: the steps from the root (none for the root itself).
/// Displays as a JSON Pointer (`/name/0/given/1`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Location(pub Vec<Step>);

impl Location {
    pub fn steps(&self) -> &[Step] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The node at this location in `root`.
    pub fn get<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        get(root, &self.0)
    }

    /// The node at this location in `root`, mutably.
    pub fn get_mut<'v>(&self, root: &'v mut Value) -> Option<&'v mut Value> {
        get_mut(root, &self.0)
    }
}

pub(crate) fn get<'v>(root: &'v Value, steps: &[Step]) -> Option<&'v Value> {
    steps.iter().try_fold(root, |v, s| match s {
        Step::Key(k) => v.as_object()?.get(k),
        Step::Index(i) => v.as_array()?.get(*i),
    })
}

pub(crate) fn get_mut<'v>(root: &'v mut Value, steps: &[Step]) -> Option<&'v mut Value> {
    steps.iter().try_fold(root, |v, s| match s {
        Step::Key(k) => v.as_object_mut()?.get_mut(k),
        Step::Index(i) => v.as_array_mut()?.get_mut(*i),
    })
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("");
        }
        for s in &self.0 {
            match s {
                Step::Key(k) => write!(f, "/{}", k.replace('~', "~0").replace('/', "~1"))?,
                Step::Index(i) => write!(f, "/{i}")?,
            }
        }
        Ok(())
    }
}

/// Why a result cannot be located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    /// Evaluation failed where [`super::Expr::evaluate`] would give an empty result (a
    /// FHIRPath error such as `single()` on several items).
    #[error("the expression cannot be evaluated on this resource")]
    Evaluation,
    /// Item `index` of the result is computed (a literal, a function's value, a `resolve()`
    /// stub), not a node of the resource.
    #[error("item {index} of the result is a computed value, not an element of the resource")]
    NotANode { index: usize },
}

/// The location of each item, in order; an error if one is not a node of `root`.
pub(crate) fn locate<'a>(root: &'a Value, items: &[It<'a>]) -> Result<Vec<Location>, LocateError> {
    let mut wanted: HashMap<*const Value, Option<Location>> = HashMap::new();
    for (index, it) in items.iter().enumerate() {
        match it.item {
            Item::Node(v) => {
                wanted.insert(v as *const Value, None);
            }
            Item::Value(_) => return Err(LocateError::NotANode { index }),
        }
    }
    walk(root, &mut wanted);
    items
        .iter()
        .enumerate()
        .map(|(index, it)| match it.item {
            Item::Node(v) => wanted
                .get(&(v as *const Value))
                .cloned()
                .flatten()
                .ok_or(LocateError::NotANode { index }),
            Item::Value(_) => Err(LocateError::NotANode { index }),
        })
        .collect()
}

#[derive(Clone, Copy)]
enum StepRef<'a> {
    Key(&'a str),
    Index(usize),
}

/// Fills in the location of every wanted node: depth first, without recursion (a value built
/// in memory may be deeper than any parser allows), stopping once all are found.
fn walk(root: &Value, wanted: &mut HashMap<*const Value, Option<Location>>) {
    let mut remaining = wanted.len();
    let mut path: Vec<StepRef<'_>> = Vec::new();
    let mut stack: Vec<(&Value, usize, Option<StepRef<'_>>)> = vec![(root, 0, None)];
    while remaining > 0 {
        let Some((v, depth, step)) = stack.pop() else {
            break;
        };
        path.truncate(depth.saturating_sub(1));
        path.extend(step);
        if let Some(slot @ None) = wanted.get_mut(&(v as *const Value)) {
            *slot = Some(Location(
                path.iter()
                    .map(|s| match *s {
                        StepRef::Key(k) => Step::Key(k.to_string()),
                        StepRef::Index(i) => Step::Index(i),
                    })
                    .collect(),
            ));
            remaining -= 1;
        }
        match v {
            Value::Object(m) => {
                for (k, c) in m.iter().rev() {
                    stack.push((c, depth + 1, Some(StepRef::Key(k))));
                }
            }
            Value::Array(xs) => {
                for (i, c) in xs.iter().enumerate().rev() {
                    stack.push((c, depth + 1, Some(StepRef::Index(i))));
                }
            }
            _ => {}
        }
    }
}
