//! Grouping normalized measurements as iomt-fhir does before it writes Observations:
//! first by device, type, patient, encounter and correlation id (later measurements at the
//! same instant replacing earlier ones), then each group by the FHIR template's
//! `periodInterval` into observation groups: one per measurement time, UTC hour or UTC day,
//! or one per correlation id.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::fhir_mapping::PeriodInterval;
use crate::identity::TypeName;
use crate::measurement::Measurement;
use crate::time::{format_identifier, TICK};

/// What measurements must share to end up in one Observation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub device_id: String,
    pub type_name: TypeName,
    pub patient_id: Option<String>,
    pub encounter_id: Option<String>,
    pub correlation_id: Option<String>,
}

impl GroupKey {
    pub fn of(m: &Measurement) -> Self {
        Self {
            device_id: m.device_id.clone(),
            type_name: m.type_name.clone(),
            patient_id: m.patient_id.clone(),
            encounter_id: m.encounter_id.clone(),
            correlation_id: m.correlation_id.clone(),
        }
    }
}

/// Measurements of one key, at most one per instant.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasurementGroup {
    pub key: GroupKey,
    pub measurements: Vec<Measurement>,
}

/// Groups `measurements` (in arrival order) by key, in order of each key's first arrival.
/// Of several measurements of a key at the same instant the last to arrive is kept, as
/// iomt-fhir keeps the latest ingested.
pub fn group_measurements(
    measurements: impl IntoIterator<Item = Measurement>,
) -> Vec<MeasurementGroup> {
    group_with_sources(measurements.into_iter().map(|m| (0, m)))
        .into_iter()
        .map(|(g, _)| g)
        .collect()
}

/// As [`group_measurements`], for measurements tagged with where they came from (the
/// pipeline: the message's index in its window); each group comes with the tags of every
/// measurement that went into it, replaced ones included (their message is done only once
/// the group is written).
pub fn group_with_sources(
    measurements: impl IntoIterator<Item = (usize, Measurement)>,
) -> Vec<(MeasurementGroup, BTreeSet<usize>)> {
    // Keys and instants are looked up by hash: a window holds thousands of groups, and a
    // linear search per measurement made grouping cost as much as normalizing.
    let mut index: HashMap<GroupKey, usize> = HashMap::new();
    let mut groups: Vec<Building> = Vec::new();
    for (source, m) in measurements {
        let i = match index.get(&GroupKey::of(&m)) {
            Some(&i) => i,
            None => {
                let key = GroupKey::of(&m);
                index.insert(key.clone(), groups.len());
                groups.push(Building {
                    group: MeasurementGroup {
                        key,
                        measurements: Vec::new(),
                    },
                    sources: BTreeSet::new(),
                    at: HashMap::new(),
                });
                groups.len() - 1
            }
        };
        let b = &mut groups[i];
        b.sources.insert(source);
        match b.at.get(&m.occurrence_time_utc) {
            Some(&j) => b.group.measurements[j] = m,
            None => {
                b.at.insert(m.occurrence_time_utc, b.group.measurements.len());
                b.group.measurements.push(m);
            }
        }
    }
    groups.into_iter().map(|b| (b.group, b.sources)).collect()
}

/// A group while it is being collected.
struct Building {
    group: MeasurementGroup,
    sources: BTreeSet<usize>,
    /// Where each instant's measurement is in `group.measurements`.
    at: HashMap<DateTime<Utc>, usize>,
}

/// The measurements that become one Observation.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservationGroup {
    pub type_name: TypeName,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The identifier's last part: `{start}.{end}` of the window, or the correlation id.
    pub id_segment: String,
    /// Each property's values in time order, one per instant (the first added wins).
    pub values: BTreeMap<String, Vec<(DateTime<Utc>, String)>>,
}

impl ObservationGroup {
    fn new(
        type_name: &TypeName,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        id_segment: String,
    ) -> Self {
        Self {
            type_name: type_name.clone(),
            start,
            end,
            id_segment,
            values: BTreeMap::new(),
        }
    }

    fn add(&mut self, m: &Measurement) {
        for p in &m.properties {
            let series = self.values.entry(p.name.clone()).or_default();
            if let Err(at) = series.binary_search_by(|(t, _)| t.cmp(&m.occurrence_time_utc)) {
                series.insert(at, (m.occurrence_time_utc, p.value.clone()));
            }
        }
    }

    pub fn values_of(&self, name: &str) -> Option<&[(DateTime<Utc>, String)]> {
        self.values.get(name).map(Vec::as_slice)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupingError {
    #[error("the FHIR template of '{0}' groups by correlation id, but the measurement has none")]
    CorrelationIdMissing(TypeName),
    #[error("a measurement time is out of the range of windows")]
    TimeOutOfRange,
}

/// Splits a measurement group into observation groups by `interval`.
pub fn observation_groups(
    group: &MeasurementGroup,
    interval: PeriodInterval,
) -> Result<Vec<ObservationGroup>, GroupingError> {
    let type_name = &group.key.type_name;
    if interval == PeriodInterval::CorrelationId {
        let id = group
            .key
            .correlation_id
            .as_deref()
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| GroupingError::CorrelationIdMissing(type_name.clone()))?;
        let times = group.measurements.iter().map(|m| m.occurrence_time_utc);
        let (Some(start), Some(end)) = (times.clone().min(), times.max()) else {
            return Ok(Vec::new());
        };
        let mut out = ObservationGroup::new(type_name, start, end, id.to_owned());
        group.measurements.iter().for_each(|m| out.add(m));
        return Ok(vec![out]);
    }
    let mut out: Vec<ObservationGroup> = Vec::new();
    for m in &group.measurements {
        let (start, end) = window(m.occurrence_time_utc, interval)?;
        match out.iter_mut().find(|g| g.start == start) {
            Some(g) => g.add(m),
            None => {
                let segment = format!("{}.{}", format_identifier(start), format_identifier(end));
                let mut g = ObservationGroup::new(type_name, start, end, segment);
                g.add(m);
                out.push(g);
            }
        }
    }
    Ok(out)
}

/// The window a time falls in: the instant itself, or its UTC hour or day (the end one tick
/// before the next window).
fn window(
    t: DateTime<Utc>,
    interval: PeriodInterval,
) -> Result<(DateTime<Utc>, DateTime<Utc>), GroupingError> {
    let length = match interval {
        PeriodInterval::Hourly => TimeDelta::hours(1),
        PeriodInterval::Daily => TimeDelta::days(1),
        PeriodInterval::Single | PeriodInterval::CorrelationId => return Ok((t, t)),
    };
    let start = t
        .duration_trunc(length)
        .map_err(|_| GroupingError::TimeOutOfRange)?;
    let end = start
        .checked_add_signed(length - TICK)
        .ok_or(GroupingError::TimeOutOfRange)?;
    Ok((start, end))
}
