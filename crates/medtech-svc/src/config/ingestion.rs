//! Where an instance reads its device messages: Azure's IotConnector
//! `properties.ingestionEndpointConfiguration` mapped onto the bus the way Event Hubs' own
//! Kafka endpoint maps an event hub: the event hub IS the Kafka topic, its consumer group IS
//! the Kafka consumer group.
//!
//! | `ingestionEndpointConfiguration` | topic / group read |
//! |---|---|
//! | absent, or `eventHubName` absent or `""` | topic `hds.devices.{instance}` |
//! | `eventHubName: "devicehub"` | topic `devicehub` |
//! | absent, or `consumerGroup` absent, `""` or `"$Default"` | group `medtech-svc.{instance}` |
//! | `consumerGroup: "medtechgroup"` | group `medtechgroup` |
//! | `fullyQualifiedEventHubNamespace` | recorded only: hds has one bus |
//!
//! `$Default` is the group every event hub has and every reader shares unless told
//! otherwise; taken literally, two connectors reading one hub with it would split its
//! messages between them. What a user means by it is "no group of my own", which is the
//! instance's own group.
//!
//! Who owns what: `hds.devices.{instance}` and `medtech-svc.{instance}` are hds's and go with
//! the instance. A named event hub is the user's (as deleting an Azure MedTech service leaves
//! its event hub alone), so it is created if missing but never deleted; a named consumer
//! group holds only this instance's offsets and is deleted with it.

use std::fmt;

use hds_core::events::topics;
use hds_core::names::InstanceName;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Event Hubs' built-in consumer group.
pub const EVENT_HUBS_DEFAULT_GROUP: &str = "$Default";

/// Kafka's longest topic name.
const MAX_TOPIC_LEN: usize = 249;
/// Kafka has no limit on group ids; this keeps them printable and of sane length.
const MAX_GROUP_LEN: usize = 255;

/// `ingestionEndpointConfiguration` as the user wrote it (kept, so that what a restart runs
/// with is derived from the same input, and the defaults stay tied to the instance name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestionEndpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_hub_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fully_qualified_event_hub_namespace: Option<String>,
}

/// A member of `ingestionEndpointConfiguration` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct InvalidIngestion {
    /// The JSON path of the member, from the connector's `properties`.
    pub path: String,
    pub message: String,
}

impl IngestionEndpoint {
    /// Reads `properties.ingestionEndpointConfiguration` (absent: the defaults) and checks
    /// that its names can be used as a Kafka topic and group. Empty strings count as absent.
    pub fn from_properties(
        properties: &Value,
        instance: &InstanceName,
    ) -> Result<Self, InvalidIngestion> {
        const AT: &str = "$.ingestionEndpointConfiguration";
        let Some(config) = properties.get("ingestionEndpointConfiguration") else {
            return Ok(Self::default());
        };
        if config.is_null() {
            return Ok(Self::default());
        }
        let member = |name: &str| -> Result<Option<String>, InvalidIngestion> {
            match config.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(InvalidIngestion {
                    path: format!("{AT}.{name}"),
                    message: "must be a string".into(),
                }),
            }
        };
        let endpoint = Self {
            event_hub_name: member("eventHubName")?,
            consumer_group: member("consumerGroup")?,
            fully_qualified_event_hub_namespace: member("fullyQualifiedEventHubNamespace")?,
        };
        if let Some(name) = &endpoint.event_hub_name {
            check_topic(name, instance).map_err(|message| InvalidIngestion {
                path: format!("{AT}.eventHubName"),
                message,
            })?;
        }
        if let Some(group) = &endpoint.consumer_group {
            check_group(group).map_err(|message| InvalidIngestion {
                path: format!("{AT}.consumerGroup"),
                message,
            })?;
        }
        Ok(endpoint)
    }

    /// The topic and group the instance reads with this configuration.
    pub fn source(&self, instance: &InstanceName) -> DeviceSource {
        let topic = match &self.event_hub_name {
            Some(name) => DeviceTopic(name.clone()),
            None => DeviceTopic::default_for(instance),
        };
        let group = match &self.consumer_group {
            Some(g) if !g.eq_ignore_ascii_case(EVENT_HUBS_DEFAULT_GROUP) => {
                ConsumerGroup(g.clone())
            }
            _ => ConsumerGroup::default_for(instance),
        };
        DeviceSource { topic, group }
    }
}

/// Event Hubs' rule for hub names (letters, digits, `.`, `-`, `_`; a letter or digit first
/// and last), within Kafka's for topics (which it implies, apart from the length). Names
/// under `hds.` belong to hds's own topics (operations, FHIR events, other instances), which a
/// device pipeline must not consume; only the instance's own default topic may be named.
fn check_topic(name: &str, instance: &InstanceName) -> Result<(), String> {
    if name == DeviceTopic::default_for(instance).as_str() {
        return Ok(());
    }
    if name.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "'{name}' is longer than {MAX_TOPIC_LEN} characters"
        ));
    }
    check_chars(name)?;
    let (first, last) = (name.as_bytes()[0], name.as_bytes()[name.len() - 1]);
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err(format!(
            "'{name}' must start and end with a letter or a digit"
        ));
    }
    if name.to_ascii_lowercase().starts_with("hds.") {
        return Err(format!(
            "'{name}': names starting with 'hds.' are reserved for hds's own topics"
        ));
    }
    Ok(())
}

fn check_group(group: &str) -> Result<(), String> {
    if group.eq_ignore_ascii_case(EVENT_HUBS_DEFAULT_GROUP) {
        return Ok(());
    }
    if group.len() > MAX_GROUP_LEN {
        return Err(format!(
            "'{group}' is longer than {MAX_GROUP_LEN} characters"
        ));
    }
    check_chars(group)
}

fn check_chars(name: &str) -> Result<(), String> {
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        Some(c) => Err(format!(
            "'{name}' may hold letters, digits, '.', '-' and '_' only, not '{c}'"
        )),
        None => Ok(()),
    }
}

/// A topic device messages are read from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceTopic(String);

impl DeviceTopic {
    /// `hds.devices.{instance}`: the topic hds creates for an instance and deletes with it.
    pub fn default_for(instance: &InstanceName) -> Self {
        Self(topics::devices(instance))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The consumer group an instance's pipeline reads in, where its offsets are committed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsumerGroup(String);

impl ConsumerGroup {
    /// `medtech-svc.{instance}`.
    pub fn default_for(instance: &InstanceName) -> Self {
        Self(format!("{}.{instance}", crate::NAME))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConsumerGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a pipeline subscribes to. A change of either part moves the pipeline (a new
/// subscription), which is why it is compared as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceSource {
    pub topic: DeviceTopic,
    pub group: ConsumerGroup,
}

impl DeviceSource {
    /// Today's defaults: `hds.devices.{instance}` in `medtech-svc.{instance}`.
    pub fn default_for(instance: &InstanceName) -> Self {
        IngestionEndpoint::default().source(instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn instance() -> InstanceName {
        "ws1-iot".parse().unwrap()
    }

    fn source_of(properties: Value) -> (String, String) {
        let s = IngestionEndpoint::from_properties(&properties, &instance())
            .unwrap()
            .source(&instance());
        (s.topic.to_string(), s.group.to_string())
    }

    #[test]
    fn the_event_hub_is_the_topic_and_its_consumer_group_the_group() {
        assert_eq!(
            source_of(json!({"ingestionEndpointConfiguration": {
                "eventHubName": "devicehub",
                "consumerGroup": "medtechgroup",
                "fullyQualifiedEventHubNamespace": "ns.servicebus.windows.net"
            }})),
            ("devicehub".into(), "medtechgroup".into())
        );
    }

    #[test]
    fn absent_or_empty_members_keep_the_defaults() {
        let defaults = (
            "hds.devices.ws1-iot".to_owned(),
            "medtech-svc.ws1-iot".to_owned(),
        );
        for properties in [
            json!({}),
            json!({"ingestionEndpointConfiguration": null}),
            json!({"ingestionEndpointConfiguration": {}}),
            json!({"ingestionEndpointConfiguration": {"eventHubName": "", "consumerGroup": " "}}),
        ] {
            assert_eq!(source_of(properties.clone()), defaults, "{properties}");
        }
        // Each member on its own.
        assert_eq!(
            source_of(json!({"ingestionEndpointConfiguration": {"eventHubName": "hub"}})),
            ("hub".into(), defaults.1.clone())
        );
        assert_eq!(
            source_of(json!({"ingestionEndpointConfiguration": {"consumerGroup": "g1"}})),
            (defaults.0.clone(), "g1".into())
        );
    }

    #[test]
    fn event_hubs_default_group_is_the_instances_own_group() {
        for group in ["$Default", "$default"] {
            assert_eq!(
                source_of(json!({"ingestionEndpointConfiguration": {
                    "eventHubName": "hub", "consumerGroup": group
                }})),
                ("hub".into(), "medtech-svc.ws1-iot".into())
            );
        }
    }

    #[test]
    fn names_kafka_or_event_hubs_would_refuse_or_hds_reserves_are_rejected() {
        let rejected = |config: Value| {
            IngestionEndpoint::from_properties(
                &json!({ "ingestionEndpointConfiguration": config }),
                &instance(),
            )
            .unwrap_err()
            .path
        };
        let hub = "$.ingestionEndpointConfiguration.eventHubName";
        let group = "$.ingestionEndpointConfiguration.consumerGroup";
        assert_eq!(rejected(json!({"eventHubName": "a b"})), hub);
        assert_eq!(rejected(json!({"eventHubName": "-hub"})), hub);
        assert_eq!(rejected(json!({"eventHubName": "x".repeat(250)})), hub);
        assert_eq!(
            rejected(json!({"eventHubName": "hds.operations.commands"})),
            hub
        );
        assert_eq!(
            rejected(json!({"eventHubName": "hds.devices.ws1-other"})),
            hub
        );
        assert_eq!(rejected(json!({"eventHubName": 3})), hub);
        assert_eq!(rejected(json!({"consumerGroup": "a/b"})), group);
        // The instance's own default topic may be named.
        assert_eq!(
            source_of(
                json!({"ingestionEndpointConfiguration": {"eventHubName": "hds.devices.ws1-iot"}})
            )
            .0,
            "hds.devices.ws1-iot"
        );
    }

    #[test]
    fn the_stored_form_reads_back_the_same() {
        let endpoint = IngestionEndpoint::from_properties(
            &json!({"ingestionEndpointConfiguration": {"eventHubName": "hub", "consumerGroup": "$Default"}}),
            &instance(),
        )
        .unwrap();
        let stored = serde_json::to_string(&endpoint).unwrap();
        assert_eq!(
            stored,
            r#"{"eventHubName":"hub","consumerGroup":"$Default"}"#
        );
        assert_eq!(
            serde_json::from_str::<IngestionEndpoint>(&stored).unwrap(),
            endpoint
        );
    }
}
