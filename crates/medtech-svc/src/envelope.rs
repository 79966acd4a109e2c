//! The event a device mapping sees: Azure's envelope around the device's message,
//! `{"Body": <the message as JSON>, "Properties": {headers}, "SystemProperties": {...}}`.

use serde_json::{Map, Value};

/// A device event in Azure's envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEvent {
    envelope: Value,
}

/// The message body is not JSON.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the device message cannot be parsed into a JSON object: {0}")]
pub struct InvalidBody(pub String);

/// Names of the system properties, as Event Hubs names them.
pub mod system_property {
    pub const PARTITION_KEY: &str = "x-opt-partition-key";
    pub const OFFSET: &str = "x-opt-offset";
    pub const SEQUENCE_NUMBER: &str = "x-opt-sequence-number";
    pub const ENQUEUED_TIME: &str = "x-opt-enqueued-time";
}

impl DeviceEvent {
    /// Wraps a raw message. An empty body is `null`, as in Azure.
    pub fn new(
        body: &[u8],
        properties: Map<String, Value>,
        system_properties: Map<String, Value>,
    ) -> Result<Self, InvalidBody> {
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body).map_err(|e| InvalidBody(e.to_string()))?
        };
        Ok(Self::from_body(body, properties, system_properties))
    }

    pub fn from_body(
        body: Value,
        properties: Map<String, Value>,
        system_properties: Map<String, Value>,
    ) -> Self {
        let mut envelope = Map::new();
        envelope.insert("Body".into(), body);
        envelope.insert("Properties".into(), Value::Object(properties));
        envelope.insert("SystemProperties".into(), Value::Object(system_properties));
        Self {
            envelope: Value::Object(envelope),
        }
    }

    /// The whole envelope, as expressions see it.
    pub fn as_json(&self) -> &Value {
        &self.envelope
    }
}
