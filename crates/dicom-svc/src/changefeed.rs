//! Azure's change feed (`docs/concepts/change-feed.md`): `GET {s}/changefeed` and
//! `GET {s}/changefeed/latest`, every create and delete of the instance in sequence order.
//!
//! - v1: `offset` is the sequence to start after and `limit` (1..100, default 10) how far
//!   past it to go: the entries with `offset < sequence <= offset + limit`.
//! - v2: entries with `startTime <= timestamp < endTime`, in sequence order, skipping
//!   `offset` of them and returning at most `limit` (1..200, default 100).
//! - `includemetadata` (default true) adds the instance's DICOM JSON while it is current.
//! - With data partitions on, the feed stays at the base URL and spans every partition; each
//!   entry's `partitionName` says where the instance is (`partitions`).
//!
//! The JSON is what Azure's System.Text.Json settings write for its `ChangeFeedEntry`:
//! camelCase names, camelCase enum strings, null members left out, the timestamp as a
//! `DateTimeOffset` in UTC (`2024-01-15T10:00:00.123+00:00`).
//!
//! Sequences are assigned in commit order (`store::record_changes`), so a reader that pages
//! by sequence never skips an entry that becomes visible later.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use hds_core::auth::Permission;
use hds_core::names::InstanceName;
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::Row;

use crate::domain::ApiVersion;
use crate::error::DicomError;
use crate::http::{DicomCaller, DicomState, Instance, Version};

/// What happened to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Create,
    Delete,
}

/// The instance's state now, as Azure reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    /// The entry's version is the stored one.
    Current,
    /// The instance was stored again after this entry.
    Replaced,
    /// The instance is not stored any more.
    Deleted,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub sequence: i64,
    /// Azure's entries always name their partition (`Microsoft.Default` without partitions).
    pub partition_name: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    pub action: Action,
    pub timestamp: String,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Box<RawValue>>,
}

/// Which entries a request reads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Window {
    /// v1: `after < sequence <= after + span`.
    Sequences { after: i64, span: i64 },
    /// v2: `from <= timestamp < to` (Unix ms), skipping `skip`, at most `limit`.
    Time {
        from: i64,
        to: i64,
        skip: i64,
        limit: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FeedQuery {
    window: Window,
    include_metadata: bool,
}

fn bad(message: impl Into<String>) -> DicomError {
    DicomError::BadRequest(message.into())
}

fn integer(name: &str, value: &str) -> Result<i64, DicomError> {
    value
        .trim()
        .parse()
        .map_err(|_| bad(format!("The value '{value}' is not valid for {name}.")))
}

fn time(name: &str, value: &str) -> Result<i64, DicomError> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            bad(format!(
                "The value '{value}' is not valid for {name}: expected a date and time such as 2024-01-15T10:00:00Z."
            ))
        })
}

fn parse(version: ApiVersion, pairs: &[(String, String)]) -> Result<FeedQuery, DicomError> {
    let v2 = version >= ApiVersion::V2;
    let max_limit = if v2 { 200 } else { 100 };
    let (mut offset, mut limit) = (0_i64, if v2 { 100 } else { 10 });
    let (mut from, mut to) = (i64::MIN, i64::MAX);
    let mut include_metadata = true;
    for (name, value) in pairs {
        // ASP.NET binds query parameters case-insensitively; others are ignored, as there.
        match name.to_ascii_lowercase().as_str() {
            "offset" => offset = integer(name, value)?,
            "limit" => limit = integer(name, value)?,
            "includemetadata" => {
                include_metadata = value
                    .trim()
                    .to_ascii_lowercase()
                    .parse()
                    .map_err(|_| bad(format!("The value '{value}' is not valid for {name}.")))?
            }
            "starttime" if v2 => from = time(name, value)?,
            "endtime" if v2 => to = time(name, value)?,
            _ => {}
        }
    }
    if offset < 0 {
        return Err(bad("The offset cannot be a negative value."));
    }
    if !(1..=max_limit).contains(&limit) {
        return Err(bad(format!("The limit must be between 1 and {max_limit}.")));
    }
    if from >= to {
        return Err(bad(
            "The startTime must be earlier than the endTime.".to_owned()
        ));
    }
    let window = if v2 {
        Window::Time {
            from,
            to,
            skip: offset,
            limit,
        }
    } else {
        Window::Sequences {
            after: offset,
            span: limit,
        }
    };
    Ok(FeedQuery {
        window,
        include_metadata,
    })
}

/// `DateTimeOffset` as System.Text.Json writes it: fraction digits only as needed.
pub(crate) fn timestamp(ms: i64) -> String {
    let t = Utc
        .timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now);
    let s = t.to_rfc3339_opts(SecondsFormat::Millis, true);
    let s = s.trim_end_matches('Z');
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}+00:00")
}

/// The feed spans the instance's partitions: each entry's instance row is looked up under its
/// partition's index key (`partitions::DataPartition::index_key`: the bare instance name for
/// the default partition).
const SELECT: &str = "SELECT c.sequence, c.partition_name, c.study_uid, c.series_uid, \
     c.sop_uid, c.action, c.watermark, c.timestamp_ms, i.watermark AS current_watermark, \
     {metadata} AS metadata \
     FROM dicom_changefeed c LEFT JOIN dicom_instances i ON i.instance = \
     (CASE WHEN c.partition_name = 'Microsoft.Default' THEN c.instance \
     ELSE c.instance || '/' || c.partition_name END) \
     AND i.study_uid = c.study_uid AND i.series_uid = c.series_uid AND i.sop_uid = c.sop_uid \
     WHERE c.instance = $1";

fn select(include_metadata: bool) -> String {
    SELECT.replace(
        "{metadata}",
        if include_metadata {
            "i.metadata"
        } else {
            "NULL"
        },
    )
}

fn entry(row: &sqlx::any::AnyRow) -> Result<Entry, DicomError> {
    let watermark: i64 = row.try_get("watermark")?;
    let current: Option<i64> = row.try_get("current_watermark")?;
    let action: String = row.try_get("action")?;
    let state = match current {
        None => State::Deleted,
        Some(w) if w == watermark => State::Current,
        Some(_) => State::Replaced,
    };
    let metadata: Option<String> = row.try_get("metadata")?;
    Ok(Entry {
        sequence: row.try_get("sequence")?,
        partition_name: row.try_get("partition_name")?,
        study_instance_uid: row.try_get("study_uid")?,
        series_instance_uid: row.try_get("series_uid")?,
        sop_instance_uid: row.try_get("sop_uid")?,
        action: if action == "delete" {
            Action::Delete
        } else {
            Action::Create
        },
        timestamp: timestamp(row.try_get("timestamp_ms")?),
        state,
        // The metadata of the version the entry is about: only while it is the stored one.
        metadata: metadata
            .filter(|_| state == State::Current)
            .map(RawValue::from_string)
            .transpose()
            .map_err(|e| DicomError::Internal(format!("stored metadata is not JSON: {e}")))?,
    })
}

async fn read(
    state: &DicomState,
    instance: &InstanceName,
    q: &FeedQuery,
) -> Result<Vec<Entry>, DicomError> {
    let base = select(q.include_metadata);
    let db = state.store.db();
    let rows = match q.window {
        Window::Sequences { after, span } => {
            sqlx::query(&format!(
                "{base} AND c.sequence > $2 AND c.sequence <= $3 ORDER BY c.sequence"
            ))
            .bind(instance.to_string())
            .bind(after)
            .bind(after.saturating_add(span))
            .fetch_all(db.pool())
            .await?
        }
        Window::Time {
            from,
            to,
            skip,
            limit,
        } => {
            sqlx::query(&format!(
                "{base} AND c.timestamp_ms >= $2 AND c.timestamp_ms < $3 \
                 ORDER BY c.sequence LIMIT {limit} OFFSET {skip}"
            ))
            .bind(instance.to_string())
            .bind(from)
            .bind(to)
            .fetch_all(db.pool())
            .await?
        }
    };
    rows.iter().map(entry).collect()
}

fn pairs(req: &HttpRequest) -> Result<Vec<(String, String)>, DicomError> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|_| bad("The query string included invalid characters."))
}

pub async fn changefeed(
    req: HttpRequest,
    caller: DicomCaller,
    Instance(instance): Instance,
    Version(version): Version,
    state: web::Data<DicomState>,
) -> Result<HttpResponse, DicomError> {
    caller.require(Permission::Read)?;
    let q = parse(version, &pairs(&req)?)?;
    let entries = read(&state, &instance, &q).await?;
    Ok(HttpResponse::Ok().json(entries))
}

/// The newest entry; 204 when the feed is empty (ASP.NET's answer to a null result).
pub async fn latest(
    req: HttpRequest,
    caller: DicomCaller,
    Instance(instance): Instance,
    _version: Version,
    state: web::Data<DicomState>,
) -> Result<HttpResponse, DicomError> {
    caller.require(Permission::Read)?;
    let include_metadata = parse(ApiVersion::V1, &pairs(&req)?)?.include_metadata;
    let row = sqlx::query(&format!(
        "{} ORDER BY c.sequence DESC LIMIT 1",
        select(include_metadata)
    ))
    .bind(instance.to_string())
    .fetch_optional(state.store.db().pool())
    .await?;
    match row {
        Some(row) => Ok(HttpResponse::Ok().json(entry(&row)?)),
        None => Ok(HttpResponse::NoContent().finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(version: ApiVersion, p: &[(&str, &str)]) -> Result<FeedQuery, DicomError> {
        let pairs: Vec<(String, String)> = p
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        parse(version, &pairs)
    }

    #[test]
    fn v1_and_v2_read_offset_and_limit_differently() {
        assert_eq!(
            q(ApiVersion::V1, &[("offset", "5")]).unwrap().window,
            Window::Sequences { after: 5, span: 10 }
        );
        let v2 = q(
            ApiVersion::V2,
            &[
                ("startTime", "2024-01-01T00:00:00Z"),
                ("includeMetadata", "false"),
            ],
        )
        .unwrap();
        assert!(!v2.include_metadata);
        assert!(matches!(
            v2.window,
            Window::Time {
                from: 1_704_067_200_000,
                limit: 100,
                skip: 0,
                ..
            }
        ));
        assert!(q(ApiVersion::V1, &[("limit", "101")]).is_err());
        assert!(q(ApiVersion::V2, &[("limit", "200")]).is_ok());
        assert!(q(ApiVersion::V2, &[("offset", "-1")]).is_err());
        assert!(q(ApiVersion::V2, &[("endTime", "yesterday")]).is_err());
        assert!(q(
            ApiVersion::V2,
            &[
                ("startTime", "2024-01-02T00:00:00Z"),
                ("endTime", "2024-01-01T00:00:00Z")
            ]
        )
        .is_err());
    }

    #[test]
    fn timestamps_are_written_as_datetimeoffset() {
        assert_eq!(timestamp(1_704_067_200_120), "2024-01-01T00:00:00.12+00:00");
        assert_eq!(timestamp(1_704_067_200_000), "2024-01-01T00:00:00+00:00");
    }
}
