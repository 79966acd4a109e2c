//! A bus delivery as the event a device mapping sees, in Azure's envelope: `Body` is the
//! value as JSON, `Properties` the headers (hds' own and trace headers left out), and
//! `SystemProperties` what Event Hubs would add: partition key, offset, sequence number and
//! enqueued time (plus IoT Hub's `iothub-*` system headers, when a gateway forwarded them).

use chrono::{TimeZone, Utc};
use serde_json::{Map, Value};

use crate::envelope::{system_property, DeviceEvent, InvalidBody};

/// Headers that are transport, not the device's properties.
fn is_transport(name: &str) -> bool {
    name.starts_with("hds-") || name == "traceparent" || name == "tracestate"
}

/// IoT Hub puts these among the system properties, not the application properties.
fn is_iothub_system(name: &str) -> bool {
    name.starts_with("iothub-") && name != "iothub-creation-time-utc"
}

pub fn device_event(delivery: &hds_core::bus::Delivery) -> Result<DeviceEvent, InvalidBody> {
    let mut properties = Map::new();
    let mut system = Map::new();
    for (name, value) in &delivery.headers {
        if is_transport(name) {
            continue;
        }
        let value = Value::String(String::from_utf8_lossy(value).into_owned());
        if is_iothub_system(name) {
            system.insert(name.clone(), value);
        } else {
            properties.insert(name.clone(), value);
        }
    }
    if let Some(key) = &delivery.key {
        system.insert(
            system_property::PARTITION_KEY.into(),
            Value::String(String::from_utf8_lossy(key).into_owned()),
        );
    }
    system.insert(
        system_property::OFFSET.into(),
        Value::String(delivery.offset.to_string()),
    );
    system.insert(
        system_property::SEQUENCE_NUMBER.into(),
        Value::from(delivery.offset),
    );
    if let Some(t) = delivery
        .timestamp_ms
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
    {
        let text = Value::String(crate::time::format_round_trip(t));
        system.insert(system_property::ENQUEUED_TIME.into(), text.clone());
        system
            .entry("iothub-enqueuedtime".to_owned())
            .or_insert(text);
    }
    DeviceEvent::new(&delivery.payload, properties, system)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hds_core::bus::Delivery;

    #[test]
    fn the_envelope_has_body_properties_and_system_properties() {
        let d = Delivery {
            topic: "t".into(),
            partition: 1,
            offset: 7,
            key: Some(b"device1".to_vec()),
            payload: br#"{"hr": 60}"#.to_vec(),
            headers: vec![
                ("unit".into(), b"bpm".to_vec()),
                ("traceparent".into(), b"00-x".to_vec()),
                ("iothub-connection-device-id".into(), b"dev".to_vec()),
            ],
            timestamp_ms: Some(1_696_879_103_000),
        };
        let e = device_event(&d).unwrap();
        let v = e.as_json();
        assert_eq!(v["Body"]["hr"], 60);
        assert_eq!(v["Properties"], serde_json::json!({"unit": "bpm"}));
        assert_eq!(v["SystemProperties"]["x-opt-partition-key"], "device1");
        assert_eq!(v["SystemProperties"]["x-opt-offset"], "7");
        assert_eq!(v["SystemProperties"]["iothub-connection-device-id"], "dev");
        assert_eq!(
            v["SystemProperties"]["x-opt-enqueued-time"],
            "2023-10-09T19:18:23.0000000Z"
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_refused() {
        let d = Delivery {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            key: None,
            payload: b"not json".to_vec(),
            headers: vec![],
            timestamp_ms: None,
        };
        assert!(device_event(&d).is_err());
    }
}
