//! One instance's consumer: reads `hds.devices.{instance}` in the instance's consumer group,
//! collects a window of messages (until `flush_interval_ms` after its first message, or
//! `flush_messages` messages), has [`flush`](super::flush) write it, and then commits, per
//! partition, the last offset of the window. Nothing is committed before the whole window is
//! in FHIR or the dead-letter topic, so a crash or shutdown reads it again (and writing it
//! again changes nothing: merging the same data is a no-op).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hds_core::bus::{Delivery, Subscription};
use hds_core::events::topics;
use hds_core::names::InstanceName;
use hds_core::provisioning::TOPIC_PARTITIONS;
use hds_core::CancellationToken;
use tokio::sync::watch;
use tokio::time::Instant;

use super::flush::Window;
use super::Context;
use crate::config::LoadedConfig;
use crate::instances::consumer_group;

pub struct Worker {
    pub instance: InstanceName,
    pub ctx: Arc<Context>,
    pub config: watch::Receiver<Arc<LoadedConfig>>,
    pub shutdown: CancellationToken,
}

impl Worker {
    pub async fn run(self) {
        let Some(mut subscription) = self.subscribe().await else {
            return;
        };
        tracing::info!(instance = %self.instance, "device pipeline started");
        let interval = Duration::from_millis(self.ctx.settings.flush_interval_ms.max(1));
        let max = self.ctx.settings.flush_messages.max(1);
        let mut window: Vec<Delivery> = Vec::new();
        let mut deadline: Option<Instant> = None;
        let mut idle_backoff = Duration::from_millis(100);
        loop {
            if window.len() < max {
                // Both bus implementations' `next` may be dropped without losing a message.
                let next = match deadline {
                    None => tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        n = subscription.next() => Some(n),
                    },
                    Some(at) => tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        _ = tokio::time::sleep_until(at) => None,
                        n = subscription.next() => Some(n),
                    },
                };
                match next {
                    Some(Ok(d)) => {
                        idle_backoff = Duration::from_millis(100);
                        deadline.get_or_insert_with(|| Instant::now() + interval);
                        window.push(d);
                        continue;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(instance = %self.instance, error = %e, "reading the device topic failed; retrying");
                        tokio::select! {
                            _ = self.shutdown.cancelled() => break,
                            _ = tokio::time::sleep(idle_backoff) => {}
                        }
                        idle_backoff = (idle_backoff * 2).min(Duration::from_secs(30));
                        if window.is_empty() {
                            continue;
                        }
                    }
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
            commit(subscription.as_mut(), &window).await;
            window.clear();
            deadline = None;
        }
        subscription.close().await;
        tracing::info!(instance = %self.instance, "device pipeline stopped");
    }

    /// Joins the consumer group, waiting for the bus as long as it takes.
    async fn subscribe(&self) -> Option<Box<dyn Subscription>> {
        let topic = topics::devices(&self.instance);
        let group = consumer_group(&self.instance);
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = async {
                self.ctx.bus.ensure_topic(&topic, TOPIC_PARTITIONS).await?;
                self.ctx.bus.subscribe(&group, &[topic.as_str()]).await
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

/// Commits the last delivery of each partition of the window.
async fn commit(subscription: &mut dyn Subscription, window: &[Delivery]) {
    let mut last: BTreeMap<(&str, i32), &Delivery> = BTreeMap::new();
    for d in window {
        let entry = last.entry((d.topic.as_str(), d.partition)).or_insert(d);
        if d.offset > entry.offset {
            *entry = d;
        }
    }
    for d in last.into_values() {
        if let Err(e) = subscription.commit(d).await {
            // The window is written; at worst it is read again after a restart, and writing
            // it again changes nothing.
            tracing::warn!(partition = d.partition, offset = d.offset, error = %e, "commit failed");
        }
    }
}
