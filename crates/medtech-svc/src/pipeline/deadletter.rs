//! The dead-letter topic `hds.medtech.deadletter`: a device message that cannot become an
//! Observation (bad JSON, a mapping that fails on it, data FHIR rejects, an unknown device in
//! Lookup mode) is published there with its original key, bytes and headers and the reason,
//! so that the partition can move on and an operator can see, fix and replay it.
//!
//! The `DeadLetter` event carries the error code and message; the stage, Azure's error type
//! and the template are also sent as headers (`hds-medtech-stage`, `hds-medtech-error-type`,
//! `hds-medtech-template`) so that consumers can filter without decoding.

use hds_core::bus::{BusError, Delivery, SharedBus};
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
    }
}

/// Publishes the dead letter and returns once the bus holds it.
pub async fn publish(
    bus: &SharedBus,
    instance: &InstanceName,
    delivery: &Delivery,
    failure: &Failure,
) -> Result<(), BusError> {
    let event = dead_letter(instance, delivery, failure);
    let mut message = to_message(&event, instance.to_string())
        .with_header(STAGE_HEADER, failure.stage.as_str())
        .with_header(ERROR_TYPE_HEADER, failure.error_type);
    if let Some(t) = &failure.template {
        message = message.with_header(TEMPLATE_HEADER, t.as_bytes().to_vec());
    }
    bus.publish(topics::MEDTECH_DEADLETTER, message).await?;
    Ok(())
}
