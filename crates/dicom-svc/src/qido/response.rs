//! The DICOM JSON of search results (Azure's "Search Response"): per result, the default
//! attributes of each returned level, the `includefield` ones (`all`: every stored one), the
//! matched ones, the UIDs of the path, and the computed attributes asked for.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use dicom_core::Tag;
use dicom_dictionary_std::tags;
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

/// One result data set, as (key, JSON text) in tag order: stored attributes are copied as the
/// text they are stored as (compact, as `serde_json` wrote them), never rebuilt as values.
fn result<'a>(q: &Query, hit: &'a Hit, computed: &Computed) -> BTreeMap<String, Cow<'a, str>> {
    let mut out: BTreeMap<String, Cow<'a, str>> = BTreeMap::new();
    for (level, text) in &hit.attributes {
        let Ok(stored_json) = serde_json::from_str::<HashMap<&str, &RawValue>>(text) else {
            continue;
        };
        for tag in stored(*level) {
            if returned(q, *level, *tag) {
                let key = tag_key(*tag);
                if let Some(v) = stored_json.get(key.as_str()) {
                    out.insert(key, Cow::Borrowed(v.get()));
                }
            }
        }
    }
    if q.target.study.is_some() {
        out.insert(tag_key(tags::STUDY_INSTANCE_UID), text(uid(&hit.study_uid)));
    }
    if let (Some(_), Some(series)) = (&q.target.series, &hit.series_uid) {
        out.insert(tag_key(tags::SERIES_INSTANCE_UID), text(uid(series)));
    }
    let study = &hit.study_uid;
    if wants_computed(q, tags::MODALITIES_IN_STUDY) {
        let modalities: Vec<&String> = computed
            .modalities
            .get(study)
            .map(|m| m.iter().collect())
            .unwrap_or_default();
        if !modalities.is_empty() {
            out.insert(
                tag_key(tags::MODALITIES_IN_STUDY),
                text(json!({ "vr": "CS", "Value": modalities })),
            );
        }
    }
    if wants_computed(q, tags::NUMBER_OF_STUDY_RELATED_SERIES) {
        out.insert(
            tag_key(tags::NUMBER_OF_STUDY_RELATED_SERIES),
            text(count(computed.study_series.get(study))),
        );
    }
    if wants_computed(q, tags::NUMBER_OF_STUDY_RELATED_INSTANCES) {
        out.insert(
            tag_key(tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
            text(count(computed.study_instances.get(study))),
        );
    }
    if wants_computed(q, tags::NUMBER_OF_SERIES_RELATED_INSTANCES) {
        if let Some(series) = &hit.series_uid {
            out.insert(
                tag_key(tags::NUMBER_OF_SERIES_RELATED_INSTANCES),
                text(count(
                    computed
                        .series_instances
                        .get(&(study.clone(), series.clone())),
                )),
            );
        }
    }
    // Keys in tag order, as DICOM JSON is conventionally written.
    out
}

fn text(v: Value) -> Cow<'static, str> {
    Cow::Owned(v.to_string())
}

/// The response body: a JSON array of result data sets, written as text (the stored
/// attributes are JSON text already; parsing them into values and writing those again was
/// most of a search's CPU).
pub fn write(q: &Query, hits: &[Hit], computed: &Computed) -> String {
    let mut body = String::with_capacity(
        2 + hits
            .iter()
            .map(|h| h.attributes.iter().map(|(_, t)| t.len()).sum::<usize>() + 64)
            .sum::<usize>(),
    );
    body.push('[');
    for (i, hit) in hits.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push('{');
        for (j, (key, value)) in result(q, hit, computed).iter().enumerate() {
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
