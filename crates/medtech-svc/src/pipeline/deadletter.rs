//! The dead-letter topic `hds.medtech.deadletter`: a device message that cannot become an
//! Observation (bad JSON, a mapping that fails on it, data FHIR rejects, an unknown device in
//! Lookup mode) is published there with its original key, bytes and headers and the reason,
//! so that the partition can move on and an operator can see, fix and replay it.
//!
//! The `DeadLetter` event carries the error code and message, and Azure's stage, error type
//! and the template as fields; the same three also travel as headers (`hds-medtech-stage`,
//! `hds-medtech-error-type`, `hds-medtech-template`) so that consumers can filter without
//! decoding. The key is the device message's own key (the instance when it had none), so one
//! device's letters stay in order.
//!
//! A window's letters are collected in a [`DeadLetters`] batch and published together (Kafka
//! sends them at once); the worker commits the window only after the whole batch is
//! acknowledged. A batch retried after a failure keeps its event ids, so a consumer can drop
//! the copies a retry may leave.

use hds_core::bus::{BusError, Delivery, OutgoingMessage, SharedBus};
use hds_core::events::v1::DeadLetter;
use hds_core::events::{new_event_id, now_unix_ms, to_message, topics};
use hds_core::names::InstanceName;

use super::failure::Failure;

pub const STAGE_HEADER: &str = "hds-medtech-stage";
pub const ERROR_TYPE_HEADER: &str = "hds-medtech-error-type";
pub const TEMPLATE_HEADER: &str = "hds-medtech-template";

pub fn dead_letter(instance: &InstanceName, delivery: &Delivery, failure: &Failure) -> DeadLetter {
    DeadLetter {
        event_id: new_event_id(),
        instance: instance.to_string(),
        source_topic: delivery.topic.clone(),
        source_partition: delivery.partition,
        source_offset: delivery.offset,
        original_key: delivery.key.clone().unwrap_or_default(),
        original_payload: delivery.payload.clone(),
        original_headers: delivery.headers.iter().cloned().collect(),
        error_code: failure.code.to_owned(),
        error_message: format!(
            "{} ({}{}): {}",
            failure.stage.as_str(),
            failure.error_type,
            failure
                .template
                .as_deref()
                .map(|t| format!(", template '{t}'"))
                .unwrap_or_default(),
            failure.message
        ),
        occurred_at_unix_ms: now_unix_ms(),
        stage: failure.stage.as_str().to_owned(),
        error_type: failure.error_type.to_owned(),
        template: failure.template.clone().unwrap_or_default(),
    }
}

/// The bus message of one dead letter: the event, keyed by the device's key, with the
/// stage, error type and template as headers.
pub fn message(instance: &InstanceName, delivery: &Delivery, failure: &Failure) -> OutgoingMessage {
    let event = dead_letter(instance, delivery, failure);
    let key = delivery
        .key
        .clone()
        .unwrap_or_else(|| instance.to_string().into_bytes());
    let mut message = to_message(&event, key)
        .with_header(STAGE_HEADER, failure.stage.as_str())
        .with_header(ERROR_TYPE_HEADER, failure.error_type);
    if let Some(t) = &failure.template {
        message = message.with_header(TEMPLATE_HEADER, t.as_bytes().to_vec());
    }
    message
}

/// The dead letters of one window, published together.
#[derive(Default)]
pub struct DeadLetters {
    messages: Vec<OutgoingMessage>,
}

impl DeadLetters {
    pub fn push(&mut self, instance: &InstanceName, delivery: &Delivery, failure: &Failure) {
        self.messages.push(message(instance, delivery, failure));
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Publishes every letter and returns once the bus holds all of them. On failure the
    /// batch is kept whole, to be published again.
    pub async fn publish(&self, bus: &SharedBus) -> Result<(), BusError> {
        if self.messages.is_empty() {
            return Ok(());
        }
        let batch = self
            .messages
            .iter()
            .map(|m| (topics::MEDTECH_DEADLETTER.to_owned(), m.clone()))
            .collect();
        bus.publish_all(batch).await
    }
}
