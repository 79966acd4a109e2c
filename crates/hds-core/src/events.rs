//! The events that cross the bus: protobuf messages generated from `proto/`, and their topics.

/// Generated from `proto/*.proto` by the build script.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/hds.events.v1.rs"));
}

/// Topic names of DESIGN.md's topic table.
pub mod topics {
    pub const FHIR_RESOURCES: &str = "hds.fhir.resources";
    pub const DICOM_INSTANCES: &str = "hds.dicom.instances";
    pub const MEDTECH_DEADLETTER: &str = "hds.medtech.deadletter";
    pub const OPERATIONS_COMMANDS: &str = "hds.operations.commands";
    pub const OPERATIONS_STATUS: &str = "hds.operations.status";

    /// The raw device messages of one MedTech service instance.
    pub fn devices(instance: &crate::names::InstanceName) -> String {
        format!("hds.devices.{instance}")
    }
}

/// Header carrying the event's unique id (also inside every payload as `event_id`), so a
/// consumer can deduplicate without decoding the payload.
pub const EVENT_ID_HEADER: &str = "hds-event-id";
/// Header naming the payload's protobuf message type, e.g. `hds.events.v1.OperationCommand`.
pub const EVENT_TYPE_HEADER: &str = "hds-event-type";

/// A new event id.
pub fn new_event_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn now_unix_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A protobuf event together with its routing: what the outbox stores and the relay publishes.
pub trait Event: prost::Message + Sized + Default {
    /// The fully qualified protobuf name, sent in [`EVENT_TYPE_HEADER`].
    const TYPE_NAME: &'static str;
    fn event_id(&self) -> &str;
}

macro_rules! event {
    ($t:ident) => {
        impl Event for v1::$t {
            const TYPE_NAME: &'static str = concat!("hds.events.v1.", stringify!($t));
            fn event_id(&self) -> &str {
                &self.event_id
            }
        }
    };
}
event!(FhirResourceEvent);
event!(DicomInstanceEvent);
event!(DeadLetter);
event!(OperationCommand);
event!(OperationStatus);

/// Builds the bus message for an event: payload, key and the id/type headers.
pub fn to_message<E: Event>(event: &E, key: impl Into<Vec<u8>>) -> crate::bus::OutgoingMessage {
    crate::bus::OutgoingMessage::new(event.encode_to_vec())
        .with_key(key)
        .with_header(EVENT_ID_HEADER, event.event_id().as_bytes().to_vec())
        .with_header(EVENT_TYPE_HEADER, E::TYPE_NAME.as_bytes().to_vec())
}
