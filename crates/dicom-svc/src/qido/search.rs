//! A query as SQL over the index: one statement for the page (newest first, LIMIT/OFFSET),
//! then, only when they are asked for, one grouped statement per computed attribute over the
//! page's UIDs (ModalitiesInStudy, NumberOfStudyRelatedSeries/Instances,
//! NumberOfSeriesRelatedInstances), each answered from a primary-key prefix.
//!
//! Strings compare as `lower(column) = lower(value)` (Azure's collation is case-insensitive),
//! which the expression indexes of `1001_search_and_changefeed.sql` serve; person names
//! compare on the folded columns; ModalitiesInStudy matches the study row's list of its series'
//! modalities, so a newest-first page reads the newest studies until it is full.

use std::collections::{BTreeSet, HashMap};

use hds_core::db::Database;
use sqlx::Row;

use super::attributes::{Kind, Level};
use super::query::{escape_like, Matcher, Query};
use crate::error::DicomError;
use crate::partitions::DataPartition;

/// One result row: its UIDs and the stored attributes of each returned level.
#[derive(Debug, Clone)]
pub struct Hit {
    pub study_uid: String,
    pub series_uid: Option<String>,
    pub sop_uid: Option<String>,
    /// DICOM JSON objects as stored, per level of `Target::levels`.
    pub attributes: Vec<(Level, String)>,
}

/// The values of the computed attributes of a page.
#[derive(Debug, Default)]
pub struct Computed {
    pub modalities: HashMap<String, BTreeSet<String>>,
    pub study_series: HashMap<String, i64>,
    pub study_instances: HashMap<String, i64>,
    /// By (study, series).
    pub series_instances: HashMap<(String, String), i64>,
}

/// SQL text with its parameters (`$1` is always the data partition's index key).
struct Sql {
    text: String,
    params: Vec<String>,
}

impl Sql {
    fn bind(&mut self, value: impl Into<String>) -> String {
        self.params.push(value.into());
        format!("${}", self.params.len())
    }
}

fn alias(level: Level) -> &'static str {
    match level {
        Level::Study => "st",
        Level::Series => "se",
        Level::Instance => "i",
    }
}

fn page_sql(partition: &DataPartition, q: &Query) -> Sql {
    let levels = q.target.levels();
    let mut sql = Sql {
        text: String::new(),
        params: vec![partition.index_key()],
    };
    let top = q.target.level;
    let base = alias(top);
    let mut select = match top {
        Level::Study => vec!["st.study_uid AS study_uid"],
        Level::Series => vec!["se.study_uid AS study_uid", "se.series_uid AS series_uid"],
        Level::Instance => vec![
            "i.study_uid AS study_uid",
            "i.series_uid AS series_uid",
            "i.sop_uid AS sop_uid",
        ],
    };
    for level in levels {
        select.push(match level {
            Level::Study => "st.attributes AS study_attributes",
            Level::Series => "se.attributes AS series_attributes",
            Level::Instance => "i.attributes AS instance_attributes",
        });
    }
    let mut from = match top {
        Level::Study => "dicom_studies st".to_owned(),
        Level::Series => "dicom_series se".to_owned(),
        Level::Instance => "dicom_instances i".to_owned(),
    };
    if top == Level::Instance && levels.contains(&Level::Series) {
        from.push_str(
            " JOIN dicom_series se ON se.instance = i.instance AND se.study_uid = i.study_uid \
             AND se.series_uid = i.series_uid",
        );
    }
    if top != Level::Study && levels.contains(&Level::Study) {
        from.push_str(&format!(
            " JOIN dicom_studies st ON st.instance = {base}.instance \
             AND st.study_uid = {base}.study_uid"
        ));
    }
    let mut conditions = vec![format!("{base}.instance = $1")];
    if let Some(study) = &q.target.study {
        let p = sql.bind(study.as_str());
        conditions.push(format!("{base}.study_uid = {p}"));
    }
    if let Some(series) = &q.target.series {
        let p = sql.bind(series.as_str());
        conditions.push(format!("{base}.series_uid = {p}"));
    }
    for f in &q.filters {
        let column = f.attribute.column;
        let condition = match (&f.matcher, f.attribute.kind) {
            (Matcher::Uids(uids), _) => {
                let ps: Vec<String> = uids.iter().map(|u| sql.bind(u.as_str())).collect();
                format!("{column} IN ({})", ps.join(", "))
            }
            (Matcher::Exact(v), Kind::PersonName { folded, .. }) => {
                format!("{folded} = {}", sql.bind(v.as_str()))
            }
            (Matcher::Wildcard(v), Kind::PersonName { folded, .. }) => {
                format!("{folded} LIKE {} ESCAPE '\\'", sql.bind(v.as_str()))
            }
            (Matcher::Exact(v), _) => format!("lower({column}) = lower({})", sql.bind(v.as_str())),
            (Matcher::Wildcard(v), _) => format!(
                "lower({column}) LIKE lower({}) ESCAPE '\\'",
                sql.bind(v.as_str())
            ),
            (Matcher::WordPrefixes(words), Kind::PersonName { words: column, .. }) => words
                .iter()
                .map(|w| {
                    let p = sql.bind(format!("% {}%", escape_like(w)));
                    format!("{column} LIKE {p} ESCAPE '\\'")
                })
                .collect::<Vec<_>>()
                .join(" AND "),
            (Matcher::WordPrefixes(_), _) => unreachable!("fuzzy matching is for names"),
            (Matcher::DateRange { from, to }, _) => {
                let mut parts = Vec::new();
                if let Some(d) = from {
                    parts.push(format!(
                        "{column} >= {}",
                        sql.bind(d.format("%Y%m%d").to_string())
                    ));
                }
                if let Some(d) = to {
                    parts.push(format!(
                        "{column} <= {}",
                        sql.bind(d.format("%Y%m%d").to_string())
                    ));
                }
                parts.join(" AND ")
            }
            (Matcher::Modalities(modalities), _) => {
                // The study row's modalities, `|ct|mr|` (store::study_modalities).
                let any: Vec<String> = modalities
                    .iter()
                    .map(|m| {
                        // Lowercased here: `lower($n)` would be evaluated for every row
                        // once PostgreSQL plans the statement generically.
                        let m = escape_like(&m.to_lowercase());
                        let p = sql.bind(format!("%|{m}|%"));
                        format!("{column} LIKE {p} ESCAPE '\\'")
                    })
                    .collect();
                format!("({})", any.join(" OR "))
            }
        };
        conditions.push(condition);
    }
    let order = match top {
        Level::Study => "st.updated_watermark DESC",
        Level::Series => "se.updated_watermark DESC",
        Level::Instance => "i.watermark DESC",
    };
    sql.text = format!(
        "SELECT {} FROM {from} WHERE {} ORDER BY {order} LIMIT {} OFFSET {}",
        select.join(", "),
        conditions.join(" AND "),
        q.limit,
        q.offset
    );
    sql
}

/// The page of results of `q`, newest first.
pub async fn page(
    db: &Database,
    partition: &DataPartition,
    q: &Query,
) -> Result<Vec<Hit>, DicomError> {
    let sql = page_sql(partition, q);
    let mut query = sqlx::query(&sql.text);
    for p in &sql.params {
        query = query.bind(p);
    }
    let levels = q.target.levels();
    query
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|row| {
            let mut attributes = Vec::with_capacity(levels.len());
            for level in levels {
                let column = match level {
                    Level::Study => "study_attributes",
                    Level::Series => "series_attributes",
                    Level::Instance => "instance_attributes",
                };
                attributes.push((*level, row.try_get::<String, _>(column)?));
            }
            Ok(Hit {
                study_uid: row.try_get("study_uid")?,
                series_uid: (q.target.level >= Level::Series)
                    .then(|| row.try_get("series_uid"))
                    .transpose()?,
                sop_uid: (q.target.level == Level::Instance)
                    .then(|| row.try_get("sop_uid"))
                    .transpose()?,
                attributes,
            })
        })
        .collect()
}

/// Rows of `sql` over the page's study UIDs (`$2...`).
async fn over_studies(
    db: &Database,
    partition: &DataPartition,
    sql: &str,
    studies: &[&str],
) -> Result<Vec<sqlx::any::AnyRow>, DicomError> {
    let list: Vec<String> = (0..studies.len()).map(|i| format!("${}", i + 2)).collect();
    let text = sql.replace("{studies}", &list.join(", "));
    let mut q = sqlx::query(&text).bind(partition.index_key());
    for s in studies {
        q = q.bind(*s);
    }
    Ok(q.fetch_all(db.pool()).await?)
}

/// The computed attributes `wanted` for the hits of a page.
pub async fn computed(
    db: &Database,
    partition: &DataPartition,
    level: Level,
    hits: &[Hit],
    wanted: &dyn Fn(dicom_core::Tag) -> bool,
) -> Result<Computed, DicomError> {
    use dicom_dictionary_std::tags;
    let mut out = Computed::default();
    let studies: Vec<&str> = hits
        .iter()
        .map(|h| h.study_uid.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if studies.is_empty() {
        return Ok(out);
    }
    if level == Level::Study && wanted(tags::MODALITIES_IN_STUDY) {
        let rows = over_studies(
            db,
            partition,
            "SELECT study_uid, modality FROM dicom_series WHERE instance = $1 \
             AND study_uid IN ({studies}) AND modality IS NOT NULL",
            &studies,
        )
        .await?;
        for row in rows {
            out.modalities
                .entry(row.try_get("study_uid")?)
                .or_default()
                .insert(row.try_get("modality")?);
        }
    }
    if level == Level::Study && wanted(tags::NUMBER_OF_STUDY_RELATED_SERIES) {
        let rows = over_studies(
            db,
            partition,
            "SELECT study_uid, COUNT(*) AS n FROM dicom_series WHERE instance = $1 \
             AND study_uid IN ({studies}) GROUP BY study_uid",
            &studies,
        )
        .await?;
        for row in rows {
            out.study_series
                .insert(row.try_get("study_uid")?, row.try_get("n")?);
        }
    }
    if level == Level::Study && wanted(tags::NUMBER_OF_STUDY_RELATED_INSTANCES) {
        let rows = over_studies(
            db,
            partition,
            "SELECT study_uid, COUNT(*) AS n FROM dicom_instances WHERE instance = $1 \
             AND study_uid IN ({studies}) GROUP BY study_uid",
            &studies,
        )
        .await?;
        for row in rows {
            out.study_instances
                .insert(row.try_get("study_uid")?, row.try_get("n")?);
        }
    }
    if level == Level::Series && wanted(tags::NUMBER_OF_SERIES_RELATED_INSTANCES) {
        let rows = over_studies(
            db,
            partition,
            "SELECT study_uid, series_uid, COUNT(*) AS n FROM dicom_instances \
             WHERE instance = $1 AND study_uid IN ({studies}) GROUP BY study_uid, series_uid",
            &studies,
        )
        .await?;
        for row in rows {
            out.series_instances.insert(
                (row.try_get("study_uid")?, row.try_get("series_uid")?),
                row.try_get("n")?,
            );
        }
    }
    Ok(out)
}
