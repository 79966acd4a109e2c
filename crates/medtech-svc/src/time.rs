//! Times as iomt-fhir handles them: .NET `DateTime`s in UTC with 100 ns ticks, read from a
//! message's timestamp and written in .NET's round-trip format (`o`).

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeDelta, Utc};

/// One .NET tick, the resolution of every time iomt-fhir computes with.
pub const TICK: TimeDelta = TimeDelta::nanoseconds(100);

/// `t` cut to whole ticks.
pub fn to_ticks(t: DateTime<Utc>) -> DateTime<Utc> {
    let extra = t.timestamp_subsec_nanos() % 100;
    t - TimeDelta::nanoseconds(i64::from(extra))
}

/// A message's timestamp. ISO 8601 with an offset is converted to UTC; without one it is
/// taken as UTC (Azure's hosts run in UTC, where .NET reads a local time as UTC).
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(to_ticks(t.with_timezone(&Utc)));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(to_ticks(t.with_timezone(&Utc)));
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(to_ticks(t.and_utc()));
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// A FHIR `dateTime`/`instant` of an existing Observation; a partial date is its start.
pub fn parse_fhir_date_time(text: &str) -> Option<DateTime<Utc>> {
    parse_timestamp(text).or_else(|| {
        let padded = match text.len() {
            4 => format!("{text}-01-01"),
            7 => format!("{text}-01"),
            _ => return None,
        };
        parse_timestamp(&padded)
    })
}

/// .NET's `ToString("o")` of a UTC `DateTime`: seven fractional digits and `Z`.
pub fn format_round_trip(t: DateTime<Utc>) -> String {
    let t = to_ticks(t);
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

/// The `yyyyMMddHHmmss` + `Z` of an Observation identifier.
pub fn format_identifier(t: DateTime<Utc>) -> String {
    format!("{}Z", t.format("%Y%m%d%H%M%S"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_timestamps_devices_send() {
        let expected = parse_timestamp("2023-10-09T19:18:23Z").unwrap();
        for text in [
            "2023-10-09T19:18:23+00:00",
            "2023-10-09T21:18:23+02:00",
            "2023-10-09T21:18:23+0200",
            "2023-10-09T19:18:23",
            "2023-10-09 19:18:23",
            "2023-10-09T19:18:23.0000000Z",
        ] {
            assert_eq!(parse_timestamp(text), Some(expected), "{text}");
        }
        assert!(parse_timestamp("yesterday").is_none());
        assert!(parse_timestamp("").is_none());
    }

    #[test]
    fn formats_as_dotnet_does() {
        let t = parse_timestamp("2019-02-01T22:46:01.875123456Z").unwrap();
        assert_eq!(format_round_trip(t), "2019-02-01T22:46:01.8751234Z");
        assert_eq!(format_identifier(t), "20190201224601Z");
        assert_eq!(
            parse_fhir_date_time("2019-02")
                .map(format_round_trip)
                .as_deref(),
            Some("2019-02-01T00:00:00.0000000Z")
        );
    }
}
