//! Writing one window of deliveries: normalize each message, group the measurements by
//! device, type and window, resolve Patient/Device, and save the window's Observations
//! together ([`upsert::save_all`]: searches and batch bundles, not a call each). A window is
//! done when everything each of its messages produced is in FHIR or the message is in the
//! dead-letter topic; only then does the worker commit it.
//!
//! Permanent failures dead-letter the messages concerned (each at most once per window) and
//! the rest goes on; transient ones (FHIR unreachable, 5xx, 429) leave their groups pending,
//! retried with backoff, with the configuration as it is at each attempt, until they succeed
//! or the service shuts down (then nothing is committed, and the window is read again).
//!
//! The window's dead letters are collected as it goes and published as one batch at its end,
//! before the window counts as done: one round trip per window instead of one per letter.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::stream::{self, StreamExt};
use hds_core::bus::Delivery;
use hds_core::names::InstanceName;
use hds_core::CancellationToken;
use tokio::sync::watch;

use super::deadletter::DeadLetters;
use super::failure::{error_type, Failure, Stage};
use super::fhir_client::Endpoint;
use super::upsert;
use super::{event, Context};
use crate::config::LoadedConfig;
use crate::fhir_mapping::CodeValueTemplate;
use crate::grouping::{group_with_sources, observation_groups, MeasurementGroup, ObservationGroup};
use crate::identity::ResolvedIds;
use crate::measurement::Measurement;

/// The window could not be finished before shutdown: commit nothing.
#[derive(Debug)]
pub struct Interrupted;

/// A group ready to be written.
struct Prepared<'c> {
    template: &'c CodeValueTemplate,
    windows: Vec<ObservationGroup>,
    ids: ResolvedIds,
}

struct Pending {
    group: MeasurementGroup,
    /// The deliveries (indices in the window) that contributed measurements.
    sources: BTreeSet<usize>,
}

pub struct Window<'a> {
    pub instance: &'a InstanceName,
    pub ctx: &'a Arc<Context>,
    pub config: &'a watch::Receiver<Arc<LoadedConfig>>,
    pub shutdown: &'a CancellationToken,
}

impl Window<'_> {
    fn label(&self) -> String {
        self.instance.to_string()
    }

    fn count_error(&self, f: &Failure) {
        self.ctx
            .metrics
            .errors
            .with_label_values(&[
                &self.label(),
                f.stage.as_str(),
                f.error_type,
                f.severity(),
                f.code,
            ])
            .inc();
    }

    /// Processes `deliveries` until everything is saved or dead-lettered.
    pub async fn process(&self, deliveries: &[Delivery]) -> Result<(), Interrupted> {
        let label = self.label();
        let m = &self.ctx.metrics;
        m.device_events
            .with_label_values(&[&label])
            .inc_by(deliveries.len() as u64);
        let started = std::time::Instant::now();
        let config = self.config.borrow().clone();
        let mut dead: BTreeSet<usize> = BTreeSet::new();
        let mut letters = DeadLetters::default();
        let mut measurements: Vec<(usize, Measurement)> = Vec::new();
        let now_ms = Utc::now().timestamp_millis();
        for (i, d) in deliveries.iter().enumerate() {
            if let Some(ts) = d.timestamp_ms {
                m.processing_latency
                    .with_label_values(&[&label])
                    .observe((now_ms - ts).max(0) as f64 / 1000.0);
            }
            match normalize(&config, d) {
                Ok(made) if made.is_empty() => {
                    m.dropped_events.with_label_values(&[&label]).inc();
                }
                Ok(made) => {
                    m.normalized_events
                        .with_label_values(&[&label])
                        .inc_by(made.len() as u64);
                    measurements.extend(made.into_iter().map(|x| (i, x)));
                }
                Err(failure) => {
                    self.dead_letter(&mut letters, d, &failure);
                    dead.insert(i);
                }
            }
        }

        m.measurements
            .with_label_values(&[&label])
            .inc_by(measurements.len() as u64);
        let mut pending: Vec<Pending> = group_with_sources(measurements)
            .into_iter()
            .map(|(group, sources)| Pending { group, sources })
            .collect();
        m.measurement_groups
            .with_label_values(&[&label])
            .inc_by(pending.len() as u64);
        m.normalization_seconds
            .with_label_values(&[&label])
            .inc_by(started.elapsed().as_secs_f64());

        let mut backoff = Duration::from_millis(100);
        loop {
            // The configuration as it is now: a destination fixed meanwhile is used at once.
            let config = self.config.borrow().clone();
            let results = self.write_groups(&config, &pending, deliveries).await;
            let mut retry = Vec::new();
            for (p, result) in pending.into_iter().zip(results) {
                match result {
                    Ok(()) => {}
                    Err(f) if f.transient => {
                        self.count_error(&f);
                        tracing::warn!(instance = %self.instance, device = %p.group.key.device_id, error = %f, "FHIR write failed; will retry");
                        retry.push(p);
                    }
                    Err(f) => {
                        for i in &p.sources {
                            if dead.insert(*i) {
                                self.dead_letter(&mut letters, &deliveries[*i], &f);
                            }
                        }
                    }
                }
            }
            pending = retry;
            if pending.is_empty() {
                return self.publish(&letters).await;
            }
            self.pause(backoff).await?;
            backoff = (backoff * 2).min(Duration::from_millis(
                self.ctx.settings.max_retry_ms.max(100),
            ));
        }
    }

    /// Writes the Observations of every group, all in one [`upsert::save_all`]; a group's
    /// outcome in the order of `pending`: done when all its Observations are saved, otherwise
    /// its permanent failure if it has one (waiting cannot cure it), else its transient one.
    async fn write_groups(
        &self,
        config: &LoadedConfig,
        pending: &[Pending],
        deliveries: &[Delivery],
    ) -> Vec<Result<(), Failure>> {
        let fhir = config
            .destination
            .endpoint(&self.ctx.settings.fhir_base_url);
        // Template, observation groups and resolved ids of each group; resolving may call
        // FHIR for devices not yet cached, a few at a time.
        // (Futures made first: see `upsert::save_all`.)
        let preparing: Vec<_> = pending
            .iter()
            .map(|p| self.prepare(config, &fhir, &p.group))
            .collect();
        let prepared: Vec<Result<Prepared, Failure>> = stream::iter(preparing)
            .buffered(self.ctx.settings.concurrent_writes.max(1))
            .collect()
            .await;
        let mut items = Vec::new();
        let mut owner = Vec::new();
        for (g, p) in prepared.iter().enumerate() {
            if let Ok(p) = p {
                for og in &p.windows {
                    items.push(upsert::Item {
                        template: p.template,
                        group: og,
                        ids: &p.ids,
                    });
                    owner.push(g);
                }
            }
        }
        let saved = upsert::save_all(
            &self.ctx.fhir,
            &fhir,
            &items,
            self.ctx.settings.concurrent_writes,
        )
        .await;

        let label = self.label();
        let mut results: Vec<Result<(), Failure>> =
            prepared.into_iter().map(|p| p.map(|_| ())).collect();
        for (g, outcome) in owner.into_iter().zip(saved) {
            match outcome {
                Ok(s) => {
                    self.ctx
                        .metrics
                        .resources_saved
                        .with_label_values(&[&label, "Observation", s.as_str()])
                        .inc();
                }
                Err(f) => {
                    let replace = match &results[g] {
                        Ok(()) => true,
                        Err(kept) => kept.transient && !f.transient,
                    };
                    if replace {
                        results[g] = Err(f);
                    }
                }
            }
        }
        let now_ms = Utc::now().timestamp_millis();
        for (p, result) in pending.iter().zip(&results) {
            if result.is_err() {
                continue;
            }
            for i in &p.sources {
                if let Some(ts) = deliveries[*i].timestamp_ms {
                    self.ctx
                        .metrics
                        .ingestion_latency
                        .with_label_values(&[&label])
                        .observe((now_ms - ts).max(0) as f64 / 1000.0);
                }
            }
        }
        results
    }

    /// A group's FHIR template, its observation groups by the template's `periodInterval`,
    /// and the Patient/Device (and Encounter) its Observations point at.
    async fn prepare<'c>(
        &self,
        config: &'c LoadedConfig,
        fhir: &Endpoint,
        group: &MeasurementGroup,
    ) -> Result<Prepared<'c>, Failure> {
        let type_name = group.key.type_name.to_string();
        let template = config
            .fhir
            .template_for(&group.key.type_name)
            .ok_or_else(|| {
                Failure::permanent(
                    Stage::FhirConversion,
                    error_type::FHIR_TEMPLATE,
                    "FhirTemplateNotFound",
                    format!(
                        "the FHIR destination mapping has no template for the type '{type_name}'"
                    ),
                )
                .with_template(type_name.clone())
            })?;
        let windows = observation_groups(group, template.period_interval).map_err(|e| {
            Failure::permanent(
                Stage::Grouping,
                error_type::FHIR_TEMPLATE,
                "GroupingFailed",
                e.to_string(),
            )
            .with_template(type_name.clone())
        })?;
        let ids = self
            .ctx
            .resolver
            .resolve(&config.destination, fhir, &group.key)
            .await
            .map_err(|f| f.with_template(type_name))?;
        Ok(Prepared {
            template,
            windows,
            ids,
        })
    }

    /// Adds a message to the window's dead letters (published by [`Self::publish`]).
    fn dead_letter(&self, letters: &mut DeadLetters, delivery: &Delivery, failure: &Failure) {
        self.count_error(failure);
        tracing::warn!(instance = %self.instance, partition = delivery.partition, offset = delivery.offset, error = %failure, "device message dead-lettered");
        letters.push(self.instance, delivery, failure);
    }

    /// Publishes the window's dead letters, retrying while the bus is unreachable.
    async fn publish(&self, letters: &DeadLetters) -> Result<(), Interrupted> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match letters.publish(&self.ctx.bus).await {
                Ok(()) => {
                    self.ctx
                        .metrics
                        .dead_letters
                        .with_label_values(&[&self.label()])
                        .inc_by(letters.len() as u64);
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(error = %e, letters = letters.len(), "publishing dead letters failed; retrying");
                    self.pause(backoff).await?;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    async fn pause(&self, d: Duration) -> Result<(), Interrupted> {
        tokio::select! {
            _ = self.shutdown.cancelled() => Err(Interrupted),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }
}

/// A message's measurements; a message that is not JSON or that a template fails on is
/// a permanent failure (the whole message, as Azure treats it).
fn normalize(config: &LoadedConfig, delivery: &Delivery) -> Result<Vec<Measurement>, Failure> {
    let event = event::device_event(delivery).map_err(|e| {
        Failure::permanent(
            Stage::Normalization,
            error_type::DEVICE_MESSAGE,
            "InvalidDeviceMessage",
            e.to_string(),
        )
    })?;
    let normalized = config.device.normalize(&event);
    if let Some(e) = normalized.errors.first() {
        return Err(Failure::permanent(
            Stage::Normalization,
            error_type::DEVICE_TEMPLATE,
            "NormalizationFailed",
            e.to_string(),
        )
        .with_template(e.type_name.clone()));
    }
    Ok(normalized.measurements)
}
