//! One instance's consumer: reads its device topic in its consumer group (a [`DeviceSource`]:
//! `hds.devices.{instance}` in `medtech-svc.{instance}` unless the connector's
//! `ingestionEndpointConfiguration` names others),
//! collects a window of messages (until `flush_interval_ms` after its first message was read,
//! or `flush_messages` messages), has [`flush`](super::flush) write it, and then commits, per
//! partition, the last offset of the window. Nothing is committed before the whole window is
//! in FHIR or the dead-letter topic, so a crash or shutdown reads it again (and writing it
//! again changes nothing: merging the same data is a no-op).
//!
//! The subscription itself lives in the [`intake`](super::intake) task, which keeps polling
//! (and reading ahead) while a window is written, and commits when the worker asks.

use std::sync::Arc;
use std::time::Duration;

use hds_core::bus::{Delivery, Subscription};
use hds_core::names::InstanceName;
use hds_core::provisioning::TOPIC_PARTITIONS;
use hds_core::CancellationToken;
use tokio::sync::watch;
use tokio::time::Instant;

use super::failure::{error_type, Stage};
use super::flush::Window;
use super::intake::{Intake, Read, ReadAhead};
use super::Context;
use crate::config::{DeviceSource, LoadedConfig};

pub struct Worker {
    pub instance: InstanceName,
    /// Fixed for the worker's life: another topic or group is another worker.
    pub source: DeviceSource,
    pub ctx: Arc<Context>,
    pub config: watch::Receiver<Arc<LoadedConfig>>,
    pub shutdown: CancellationToken,
}

impl Worker {
    pub async fn run(self) {
        let Some(subscription) = self.subscribe().await else {
            return;
        };
        tracing::info!(instance = %self.instance, topic = %self.source.topic, group = %self.source.group, "device pipeline started");
        let settings = &self.ctx.settings;
        let mut intake = Intake::spawn(
            subscription,
            ReadAhead {
                messages: settings.read_ahead_messages,
                keepalive: Duration::from_millis(settings.poll_keepalive_ms.max(1)),
            },
            self.shutdown.clone(),
        );
        let interval = Duration::from_millis(settings.flush_interval_ms.max(1));
        let max = settings.flush_messages.max(1);
        let mut window: Vec<Delivery> = Vec::new();
        let mut deadline: Option<Instant> = None;
        loop {
            if window.len() < max {
                // `Intake::next` is cancel-safe: nothing is lost when the deadline wins.
                let next = match deadline {
                    None => tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        n = intake.next() => n,
                    },
                    // Messages already read come first: a deadline that passed while the
                    // previous window was written still takes everything waiting.
                    Some(at) => tokio::select! {
                        biased;
                        _ = self.shutdown.cancelled() => break,
                        n = intake.next() => match n {
                            None => break,
                            n => n,
                        },
                        _ = tokio::time::sleep_until(at) => None,
                    },
                };
                match next {
                    Some(Read::Delivery(d, read_at)) => {
                        // A window lasts from when its first message was read, not from when
                        // the worker got to it: messages that arrived while the previous
                        // window was written have waited already.
                        deadline.get_or_insert(read_at + interval);
                        window.push(d);
                        continue;
                    }
                    Some(Read::Failed(e)) => {
                        self.count_read_failure();
                        tracing::warn!(instance = %self.instance, error = %e, "reading the device topic failed; retrying");
                        continue;
                    }
                    None if deadline.is_none() => break,
                    None => {}
                }
            }
            let processed = Window {
                instance: &self.instance,
                ctx: &self.ctx,
                config: &self.config,
                shutdown: &self.shutdown,
            }
            .process(&window)
            .await;
            if processed.is_err() {
                break;
            }
            intake.commit(&window).await;
            window.clear();
            deadline = None;
        }
        intake.close().await;
        tracing::info!(instance = %self.instance, "device pipeline stopped");
    }

    /// Azure counts failures to read the event hub as `EventHubError`s.
    fn count_read_failure(&self) {
        self.ctx
            .metrics
            .errors
            .with_label_values(&[
                &self.instance.to_string(),
                Stage::Normalization.as_str(),
                error_type::EVENT_HUB,
                "Critical",
                "ConsumeFailed",
            ])
            .inc();
    }

    /// Joins the consumer group, waiting for the bus as long as it takes.
    async fn subscribe(&self) -> Option<Box<dyn Subscription>> {
        let (topic, group) = (self.source.topic.as_str(), self.source.group.as_str());
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = async {
                self.ctx.bus.ensure_topic(topic, TOPIC_PARTITIONS).await?;
                self.ctx.bus.subscribe(group, &[topic]).await
            };
            match attempt.await {
                Ok(s) => return Some(s),
                Err(e) => {
                    tracing::warn!(instance = %self.instance, error = %e, "cannot subscribe to the device topic; retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}
