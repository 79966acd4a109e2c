//! The DICOM JSON of search results (Azure's "Search Response"): per result, the default
//! attributes of each returned level, the `includefield` ones (`all`: every stored one), the
//! matched ones, the UIDs of the path, and the computed attributes asked for.

use std::collections::BTreeMap;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use serde_json::{json, Map, Value};

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

/// One result data set.
fn result(q: &Query, hit: &Hit, computed: &Computed) -> Map<String, Value> {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for (level, text) in &hit.attributes {
        let Ok(Value::Object(stored_json)) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        for tag in stored(*level) {
            if returned(q, *level, *tag) {
                let key = tag_key(*tag);
                if let Some(v) = stored_json.get(&key) {
                    out.insert(key, v.clone());
                }
            }
        }
    }
    if q.target.study.is_some() {
        out.insert(tag_key(tags::STUDY_INSTANCE_UID), uid(&hit.study_uid));
    }
    if let (Some(_), Some(series)) = (&q.target.series, &hit.series_uid) {
        out.insert(tag_key(tags::SERIES_INSTANCE_UID), uid(series));
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
                json!({ "vr": "CS", "Value": modalities }),
            );
        }
    }
    if wants_computed(q, tags::NUMBER_OF_STUDY_RELATED_SERIES) {
        out.insert(
            tag_key(tags::NUMBER_OF_STUDY_RELATED_SERIES),
            count(computed.study_series.get(study)),
        );
    }
    if wants_computed(q, tags::NUMBER_OF_STUDY_RELATED_INSTANCES) {
        out.insert(
            tag_key(tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
            count(computed.study_instances.get(study)),
        );
    }
    if wants_computed(q, tags::NUMBER_OF_SERIES_RELATED_INSTANCES) {
        if let Some(series) = &hit.series_uid {
            out.insert(
                tag_key(tags::NUMBER_OF_SERIES_RELATED_INSTANCES),
                count(
                    computed
                        .series_instances
                        .get(&(study.clone(), series.clone())),
                ),
            );
        }
    }
    // Keys in tag order, as DICOM JSON is conventionally written.
    out.into_iter().collect()
}

/// The response body: a JSON array of result data sets.
pub fn write(q: &Query, hits: &[Hit], computed: &Computed) -> String {
    Value::Array(
        hits.iter()
            .map(|h| Value::Object(result(q, h, computed)))
            .collect(),
    )
    .to_string()
}
