//! A QIDO-RS request read into domain types (PS3.18 8.3.4, with Azure's rules and wording):
//! what is searched (`Target`), the attribute matches (`Filter`), `includefield`, `limit`,
//! `offset` and `fuzzymatching`. Values arrive percent-decoded. Every malformed parameter is a
//! 400 with a message that names it.

use chrono::NaiveDate;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::Tag;
use dicom_dictionary_std::StandardDataDictionary;

use super::attributes::{searchable, Kind, Level, Searchable};
use crate::domain::{SeriesUid, StudyUid, Uid};
use crate::error::DicomError;
use crate::person_name;

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 200;

/// What a search addresses: one of the six QIDO-RS paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The level of the results.
    pub level: Level,
    pub study: Option<StudyUid>,
    pub series: Option<SeriesUid>,
}

impl Target {
    /// The levels whose attributes the search may match on and returns (Azure's table:
    /// a study's series know nothing of other studies, so study attributes are not theirs).
    pub fn levels(&self) -> &'static [Level] {
        match (self.level, &self.study, &self.series) {
            (Level::Study, _, _) => &[Level::Study],
            (Level::Series, None, _) => &[Level::Study, Level::Series],
            (Level::Series, Some(_), _) => &[Level::Series],
            (Level::Instance, None, _) => &[Level::Study, Level::Series, Level::Instance],
            (Level::Instance, Some(_), None) => &[Level::Series, Level::Instance],
            (Level::Instance, Some(_), Some(_)) => &[Level::Instance],
        }
    }
}

/// How an attribute's values are matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// One UID or a list (`a,b` or `a\b`, PS3.18 8.3.4.1).
    Uids(Vec<Uid>),
    /// Equal, ignoring case (person names: also accents).
    Exact(String),
    /// A LIKE pattern made from `*` and `?` (escaped with `\`).
    Wildcard(String),
    /// Inclusive; at least one end present.
    DateRange {
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    },
    /// Fuzzy person-name matching: each folded word starts a word of the name.
    WordPrefixes(Vec<String>),
    /// ModalitiesInStudy: any of these modalities.
    Modalities(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub attribute: &'static Searchable,
    pub matcher: Matcher,
}

/// The attributes to return beyond the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncludeFields {
    pub all: bool,
    pub tags: Vec<Tag>,
}

impl IncludeFields {
    pub fn includes(&self, tag: Tag) -> bool {
        self.all || self.tags.contains(&tag)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub target: Target,
    pub filters: Vec<Filter>,
    pub include: IncludeFields,
    pub limit: u32,
    pub offset: u64,
}

fn invalid(message: String) -> DicomError {
    DicomError::BadRequest(message)
}

/// A tag as PS3.18 writes it in a query: eight hex digits or a keyword (case-sensitive).
pub fn parse_tag(raw: &str) -> Option<Tag> {
    if raw.len() == 8 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        let n = u32::from_str_radix(raw, 16).ok()?;
        return Some(Tag((n >> 16) as u16, (n & 0xFFFF) as u16));
    }
    StandardDataDictionary
        .by_name(raw)
        .map(|e| e.tag())
        .filter(|_| !raw.is_empty())
}

impl Query {
    /// Reads the query string `pairs` (already percent-decoded) of a search at `target`.
    pub fn parse(target: Target, pairs: &[(String, String)]) -> Result<Self, DicomError> {
        let mut fuzzy = false;
        let mut limit = DEFAULT_LIMIT;
        let mut offset = 0_u64;
        let mut include = IncludeFields::default();
        let mut raw_filters: Vec<(&str, &'static Searchable, &str)> = Vec::new();
        for (name, value) in pairs {
            match name.to_ascii_lowercase().as_str() {
                "fuzzymatching" => {
                    fuzzy = value.trim().parse::<bool>().map_err(|_| {
                        invalid(format!(
                            "Invalid query: specified fuzzymatch value '{value}' is not a valid boolean"
                        ))
                    })?
                }
                "limit" => {
                    let n: i64 = value.trim().parse().map_err(|_| {
                        invalid(format!(
                            "Invalid query: specified limit value '{value}' is not a valid integer."
                        ))
                    })?;
                    if !(1..=i64::from(MAX_LIMIT)).contains(&n) {
                        return Err(invalid(format!(
                            "Invalid query: specified limit value {n} is outside the allowed range of 1..{MAX_LIMIT}."
                        )));
                    }
                    limit = n as u32;
                }
                "offset" => {
                    let n: i64 = value.trim().parse().map_err(|_| {
                        invalid(format!(
                            "Invalid query: specified offset value '{value}' is not a valid integer."
                        ))
                    })?;
                    offset = u64::try_from(n).map_err(|_| {
                        invalid(format!("Specified offset value {n} cannot be negative."))
                    })?;
                }
                "includefield" => {
                    for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                        if field.eq_ignore_ascii_case("all") {
                            include.all = true;
                        } else {
                            let tag = parse_tag(field).ok_or_else(|| {
                                invalid(format!(
                                    "Invalid query: IncludeField has unknown attribute '{field}'."
                                ))
                            })?;
                            include.tags.push(tag);
                        }
                    }
                }
                _ => {
                    let attribute = attribute(&target, name)?;
                    if value.trim_end_matches(['\0', ' ']).is_empty() {
                        return Err(invalid(format!(
                            "Invalid query: AttributeId '{name}' has empty string value that is not supported."
                        )));
                    }
                    if raw_filters.iter().any(|(_, a, _)| a.tag == attribute.tag) {
                        return Err(invalid(format!(
                            "Invalid query: attribute '{name}' has been specified more than once using different ID formats. Each attribute is only allowed to be specified once."
                        )));
                    }
                    raw_filters.push((name, attribute, value));
                }
            }
        }
        let filters = raw_filters
            .into_iter()
            .map(|(name, attribute, value)| {
                Ok(Filter {
                    attribute,
                    matcher: matcher(attribute, name, value, fuzzy)?,
                })
            })
            .collect::<Result<_, DicomError>>()?;
        Ok(Query {
            target,
            filters,
            include,
            limit,
            offset,
        })
    }
}

/// The searchable attribute a parameter names, if the target lets it be searched.
fn attribute(target: &Target, name: &str) -> Result<&'static Searchable, DicomError> {
    let tag = parse_tag(name).ok_or_else(|| {
        invalid(format!(
            "Invalid query: unknown query parameter '{name}'. If the parameter is an attribute keyword, check the casing as they are case-sensitive. The conformance statement has a list of supported query parameters, attributes and the levels."
        ))
    })?;
    // The UIDs of the path are fixed: Azure names them when they are asked for again.
    if target.study.is_some() && tag == dicom_dictionary_std::tags::STUDY_INSTANCE_UID {
        return Err(invalid(
            "Invalid query: cannot specify attribute 'StudyInstanceUID' for the given resource."
                .into(),
        ));
    }
    if target.series.is_some() && tag == dicom_dictionary_std::tags::SERIES_INSTANCE_UID {
        return Err(invalid(
            "Invalid query: cannot specify attribute 'SeriesInstanceUID' for the given resource."
                .into(),
        ));
    }
    searchable(tag)
        .filter(|a| target.levels().contains(&a.level))
        .ok_or_else(|| {
            invalid(format!(
                "Invalid query: AttributeId {name} is not queryable.  If the parameter is an attribute keyword, check the casing as they are case-sensitive. The conformance statement has a list of supported query parameters, attributes and the levels."
            ))
        })
}

fn matcher(
    attribute: &Searchable,
    name: &str,
    raw: &str,
    fuzzy: bool,
) -> Result<Matcher, DicomError> {
    // Values may be searched with or without the NUL padding they were stored with.
    let value = raw.trim_end_matches(['\0', ' ']);
    match attribute.kind {
        Kind::Uid => value
            .split([',', '\\'])
            .map(|v| {
                Uid::parse(v.trim()).ok_or_else(|| {
                    invalid(format!(
                        "The query parameter '{name}' is invalid. '{v}' is not a valid DICOM UID."
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Matcher::Uids),
        Kind::Date => date_matcher(name, value),
        Kind::ModalitiesInStudy => Ok(Matcher::Modalities(
            value
                .split([',', '\\'])
                .map(|m| m.trim().to_owned())
                .filter(|m| !m.is_empty())
                .collect(),
        )),
        Kind::PersonName { .. } if fuzzy => {
            let folded = person_name::fold(value);
            let words: Vec<String> = person_name::split_words(&folded)
                .map(str::to_owned)
                .collect();
            if words.is_empty() {
                return Err(invalid(format!(
                    "Invalid query: AttributeId '{name}' has empty string value that is not supported."
                )));
            }
            Ok(Matcher::WordPrefixes(words))
        }
        Kind::PersonName { .. } => Ok(text_matcher(&person_name::fold(value))),
        Kind::Text => Ok(text_matcher(value)),
    }
}

/// Exact, or a LIKE pattern when the value has `*` or `?` (PS3.4 C.2.2.2.4).
fn text_matcher(value: &str) -> Matcher {
    if !value.contains(['*', '?']) {
        return Matcher::Exact(value.to_owned());
    }
    let mut pattern = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        match c {
            '*' => pattern.push('%'),
            '?' => pattern.push('_'),
            '%' | '_' | '\\' => {
                pattern.push('\\');
                pattern.push(c);
            }
            c => pattern.push(c),
        }
    }
    Matcher::Wildcard(pattern)
}

/// `like` with LIKE's special characters escaped (with `\`).
pub fn escape_like(like: &str) -> String {
    let mut out = String::with_capacity(like.len());
    for c in like.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn date_matcher(name: &str, value: &str) -> Result<Matcher, DicomError> {
    let date = |d: &str| -> Result<Option<NaiveDate>, DicomError> {
        if d.is_empty() {
            return Ok(None);
        }
        let valid = d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit());
        valid
            .then(|| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
            .flatten()
            .map(Some)
            .ok_or_else(|| {
                invalid(format!(
                    "Invalid query: specified Date value '{d}' is invalid for attribute '{name}'. Date should be valid and formatted as yyyyMMdd."
                ))
            })
    };
    let Some((a, b)) = value.split_once('-') else {
        let d = date(value)?;
        return Ok(Matcher::DateRange { from: d, to: d });
    };
    let (from, to) = (date(a.trim())?, date(b.trim())?);
    match (from, to) {
        (None, None) => Err(invalid(
            "Invalid query: specified range is invalid. Both parts in the range cannot be empty. For details on valid range queries, please refer to Search Matching section in Conformance Statement (https://github.com/microsoft/dicom-server/blob/main/docs/resources/conformance-statement.md#search-matching).".into(),
        )),
        (Some(f), Some(t)) if f > t => Err(invalid(format!(
            "Invalid query: specified date range '{value}' is invalid. The first part date {a} should be lesser than or equal to the second part date {b}."
        ))),
        _ => Ok(Matcher::DateRange { from, to }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_dictionary_std::tags;

    fn target(level: Level) -> Target {
        Target {
            level,
            study: None,
            series: None,
        }
    }

    fn parse(level: Level, q: &[(&str, &str)]) -> Result<Query, DicomError> {
        let pairs: Vec<(String, String)> = q
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Query::parse(target(level), &pairs)
    }

    fn message(r: Result<Query, DicomError>) -> String {
        match r {
            Err(DicomError::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn tags_are_hex_or_case_sensitive_keywords() {
        assert_eq!(parse_tag("0020000d"), Some(tags::STUDY_INSTANCE_UID));
        assert_eq!(parse_tag("PatientID"), Some(tags::PATIENT_ID));
        assert_eq!(parse_tag("patientid"), None);
        assert_eq!(parse_tag(""), None);
    }

    #[test]
    fn values_become_matchers() {
        let q = parse(
            Level::Instance,
            &[
                ("StudyDate", "20200101-"),
                ("PatientID", "AB*?_"),
                ("SOPInstanceUID", "1.2.3,1.2.4"),
                ("PatientName", "jo dö"),
                ("fuzzymatching", "true"),
                ("includefield", "00280010,Rows,all"),
                ("limit", "200"),
                ("offset", "5"),
            ],
        )
        .unwrap();
        let m: Vec<&Matcher> = q.filters.iter().map(|f| &f.matcher).collect();
        assert_eq!(
            m[0],
            &Matcher::DateRange {
                from: NaiveDate::from_ymd_opt(2020, 1, 1),
                to: None
            }
        );
        assert_eq!(m[1], &Matcher::Wildcard("AB%_\\_".into()));
        assert!(matches!(m[2], Matcher::Uids(u) if u.len() == 2));
        assert_eq!(m[3], &Matcher::WordPrefixes(vec!["jo".into(), "do".into()]));
        assert!(q.include.all && q.include.tags == vec![tags::ROWS, tags::ROWS]);
        assert_eq!((q.limit, q.offset), (200, 5));
    }

    #[test]
    fn malformed_parameters_are_named() {
        type Case<'a> = (Level, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                Level::Study,
                &[("limit", "0")],
                "outside the allowed range of 1..200",
            ),
            (
                Level::Study,
                &[("limit", "x")],
                "limit value 'x' is not a valid integer",
            ),
            (Level::Study, &[("offset", "-1")], "cannot be negative"),
            (
                Level::Study,
                &[("fuzzymatching", "yes")],
                "not a valid boolean",
            ),
            (
                Level::Study,
                &[("includefield", "Nope")],
                "unknown attribute 'Nope'",
            ),
            (
                Level::Study,
                &[("patientid", "1")],
                "unknown query parameter 'patientid'",
            ),
            (
                Level::Study,
                &[("Modality", "CT")],
                "AttributeId Modality is not queryable",
            ),
            (
                Level::Study,
                &[("StudyDate", "2020")],
                "Date value '2020' is invalid",
            ),
            (
                Level::Study,
                &[("StudyDate", "-")],
                "Both parts in the range cannot be empty",
            ),
            (
                Level::Study,
                &[("StudyDate", "20201231-20200101")],
                "should be lesser than",
            ),
            (Level::Study, &[("PatientID", "")], "has empty string value"),
            (
                Level::Study,
                &[("StudyInstanceUID", "1.2.a")],
                "not a valid DICOM UID",
            ),
            (
                Level::Study,
                &[("PatientID", "a"), ("00100020", "b")],
                "specified more than once",
            ),
        ];
        for (level, q, want) in cases {
            let got = message(parse(*level, q));
            assert!(got.contains(want), "{q:?}: {got}");
        }
        let in_study = Target {
            level: Level::Series,
            study: Some(StudyUid(Uid::parse("1.2").unwrap())),
            series: None,
        };
        let pairs = vec![("StudyInstanceUID".to_owned(), "1.2".to_owned())];
        assert!(message(Query::parse(in_study, &pairs)).contains("cannot specify attribute"));
    }
}
