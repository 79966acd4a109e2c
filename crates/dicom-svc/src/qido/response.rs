//! The DICOM JSON of search results (Azure's "Search Response"): per result, the default
//! attributes of each returned level, the `includefield` ones (`all`: every stored one), the
//! matched ones, the UIDs of the path, and the computed attributes asked for.

use std::borrow::Cow;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::attributes::{computed, defaults, stored, Level};
use super::query::Query;
use super::search::{Computed, Hit};
use crate::dicomweb::json::tag_key;

/// Whether a computed attribute of the result level is asked for.
pub fn wants_computed(q: &Query, tag: Tag) -> bool {
    computed(q.target.level).contains(&tag) && q.include.includes(tag)
}

fn returned(q: &Query, level: Level, tag: Tag) -> bool {
    defaults(level).contains(&tag)
        || q.include.includes(tag)
        || q.filters.iter().any(|f| f.attribute.tag == tag)
}

fn uid(v: &str) -> Value {
    json!({ "vr": "UI", "Value": [v] })
}

fn count(n: Option<&i64>) -> Value {
    json!({ "vr": "IS", "Value": [n.copied().unwrap_or(0)] })
}

/// What the results of a query hold, worked out once for its page: per returned level, the
/// keys of the stored attributes to copy (sorted, for binary search), and the keys of the path
/// UIDs and computed attributes written after them.
struct Plan {
    stored: Vec<(Level, Vec<String>)>,
    study_uid: Option<String>,
    series_uid: Option<String>,
    modalities: Option<String>,
    study_series: Option<String>,
    study_instances: Option<String>,
    series_instances: Option<String>,
}

impl Plan {
    fn of(q: &Query) -> Self {
        let stored = q
            .target
            .levels()
            .iter()
            .map(|level| {
                let mut keys: Vec<String> = stored(*level)
                    .iter()
                    .filter(|tag| returned(q, *level, **tag))
                    .map(|tag| tag_key(*tag))
                    .collect();
                keys.sort_unstable();
                (*level, keys)
            })
            .collect();
        let computed = |tag| wants_computed(q, tag).then(|| tag_key(tag));
        Plan {
            stored,
            study_uid: q
                .target
                .study
                .is_some()
                .then(|| tag_key(tags::STUDY_INSTANCE_UID)),
            series_uid: q
                .target
                .series
                .is_some()
                .then(|| tag_key(tags::SERIES_INSTANCE_UID)),
            modalities: computed(tags::MODALITIES_IN_STUDY),
            study_series: computed(tags::NUMBER_OF_STUDY_RELATED_SERIES),
            study_instances: computed(tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
            series_instances: computed(tags::NUMBER_OF_SERIES_RELATED_INSTANCES),
        }
    }
}

/// Reads the members of a stored JSON object into `out` as (key, JSON text), in their order,
/// without copying or parsing the values.
struct Members<'a, 'b>(&'b mut Vec<(&'a str, &'a RawValue)>);

impl<'de, 'b> DeserializeSeed<'de> for Members<'de, 'b> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'b> Visitor<'de> for Members<'de, 'b> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a DICOM JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some((key, value)) = map.next_entry::<&'de str, &'de RawValue>()? {
            self.0.push((key, value));
        }
        Ok(())
    }
}

/// One result data set into `out`, as (key, JSON text) in tag order: stored attributes are
/// copied as the text they are stored as (compact, as `serde_json` wrote them), never rebuilt
/// as values. A key given twice keeps its last value (a later level's, then the path's UIDs).
fn result<'a>(
    plan: &'a Plan,
    hit: &'a Hit,
    computed: &Computed,
    members: &mut Vec<(&'a str, &'a RawValue)>,
    out: &mut Vec<(&'a str, Cow<'a, str>)>,
) {
    out.clear();
    for ((_, text), (_, keys)) in hit.attributes.iter().zip(&plan.stored) {
        members.clear();
        let mut de = serde_json::Deserializer::from_str(text);
        if Members(members).deserialize(&mut de).is_err() || de.end().is_err() {
            continue;
        }
        for (key, value) in members.iter() {
            if keys.binary_search_by(|k| k.as_str().cmp(key)).is_ok() {
                out.push((key, Cow::Borrowed(value.get())));
            }
        }
    }
    if let Some(key) = &plan.study_uid {
        out.push((key, text(uid(&hit.study_uid))));
    }
    if let (Some(key), Some(series)) = (&plan.series_uid, &hit.series_uid) {
        out.push((key, text(uid(series))));
    }
    let study = &hit.study_uid;
    if let Some(key) = &plan.modalities {
        if let Some(modalities) = computed.modalities.get(study).filter(|m| !m.is_empty()) {
            out.push((key, text(json!({ "vr": "CS", "Value": modalities }))));
        }
    }
    if let Some(key) = &plan.study_series {
        out.push((key, text(count(computed.study_series.get(study)))));
    }
    if let Some(key) = &plan.study_instances {
        out.push((key, text(count(computed.study_instances.get(study)))));
    }
    if let (Some(key), Some(series)) = (&plan.series_instances, &hit.series_uid) {
        out.push((
            key,
            text(count(
                computed
                    .series_instances
                    .get(&(study.clone(), series.clone())),
            )),
        ));
    }
    // Keys in tag order, as DICOM JSON is conventionally written; of equal keys the last.
    out.sort_by(|a, b| a.0.cmp(b.0));
    let mut i = 0;
    while i + 1 < out.len() {
        if out[i].0 == out[i + 1].0 {
            out.remove(i);
        } else {
            i += 1;
        }
    }
}

fn text(v: Value) -> Cow<'static, str> {
    Cow::Owned(v.to_string())
}

/// The response body: a JSON array of result data sets, written as text (the stored
/// attributes are JSON text already; parsing them into values and writing those again was
/// most of a search's CPU).
pub fn write(q: &Query, hits: &[Hit], computed: &Computed) -> String {
    let plan = Plan::of(q);
    let mut body = String::with_capacity(
        2 + hits
            .iter()
            .map(|h| h.attributes.iter().map(|(_, t)| t.len()).sum::<usize>() + 64)
            .sum::<usize>(),
    );
    let mut members = Vec::new();
    let mut entries = Vec::new();
    body.push('[');
    for (i, hit) in hits.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push('{');
        result(&plan, hit, computed, &mut members, &mut entries);
        for (j, (key, value)) in entries.iter().enumerate() {
            if j > 0 {
                body.push(',');
            }
            // Keys are eight hex digits: nothing to escape.
            body.push('"');
            body.push_str(key);
            body.push_str("\":");
            body.push_str(value);
        }
        body.push('}');
    }
    body.push(']');
    body
}
