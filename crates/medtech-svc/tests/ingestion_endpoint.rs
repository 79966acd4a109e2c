//! An IotConnector's `ingestionEndpointConfiguration` takes effect, mapped as Event Hubs'
//! Kafka endpoint maps it: the event hub is the topic read, the consumer group is the group
//! the offsets are committed in. A restart reads the same; a change moves the pipeline;
//! deleting the instance deletes the group but leaves the user's event hub. And a MedTech
//! service has one FHIR destination, as in Azure: a second one fails to provision.
//!
//! The group and topic are observed as any Kafka client would see them: a member of the
//! group is handed the first message not committed, and a topic still holding its first
//! message has not been deleted. On tansu, topic deletion is off (see
//! `KafkaSettings::delete_topics`), so the topic's survival is shown on the embedded bus,
//! where deletion is real.

mod common;

use std::time::Duration;

use common::*;
use hds_core::bus::Delivery;
use hds_core::events::v1::{OperationState, OperationStatus};
use medtech_svc::identity::{Identifier, SERVICE_SYSTEM};
use serde_json::{json, Value};

const HUB: &str = "devicehub";
const GROUP: &str = "medtechgroup";

/// The worked example's message, measured at `19:mm:ss` on the same day.
fn message_at(time: &str) -> String {
    MESSAGE.replace("19:18:23", time)
}

/// The Observation the message of [`message_at`] becomes.
fn observation_at(time: &str) -> String {
    let at = format!("20231009{}Z", time.replace(':', ""));
    let id = Identifier::new(
        Some(SERVICE_SYSTEM),
        &format!("{PATIENT_ID}.{DEVICE_ID}.bloodpressure.{at}.{at}"),
    )
    .resource_id()
    .to_string();
    format!("/Observation/{id}")
}

fn assert_succeeded(status: &OperationStatus) {
    assert_eq!(
        status.state,
        OperationState::Succeeded as i32,
        "{}: {}",
        status.error_code,
        status.error_message
    );
}

/// The first message a member of `group` is handed from `topic`: the one after the group's
/// last commit, or the topic's first message when the group has no offsets.
async fn first_handed_out(stack: &Stack, topic: &str, group: &str) -> Delivery {
    let mut subscription = stack.bus.subscribe(group, &[topic]).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(60), subscription.next())
        .await
        .unwrap_or_else(|_| panic!("nothing handed out from {topic} in {group} within 60 s"))
        .unwrap();
    // Leaves the group without committing anything.
    subscription.close().await;
    first
}

async fn an_event_hub_and_its_consumer_group_are_read(mut stack: Stack) {
    stack.provision().await;
    let status = stack
        .provision_medtech_with(&json!({"ingestionEndpointConfiguration": {
            "eventHubName": HUB,
            "consumerGroup": GROUP,
            "fullyQualifiedEventHubNamespace": "example.servicebus.windows.net"
        }}))
        .await;
    assert_succeeded(&status);
    stack.configure().await;

    // Messages produced to the event hub become Observations. The second one's window is
    // taken only after the first one's was committed.
    let first = message_at("19:40:01");
    stack.produce_to(HUB, first.as_bytes()).await;
    stack.wait_for_resource(&observation_at("19:40:01")).await;
    stack
        .produce_to(HUB, message_at("19:40:02").as_bytes())
        .await;
    stack.wait_for_resource(&observation_at("19:40:02")).await;

    // The offsets are committed in the group named: with medtech-svc stopped, a member of
    // that group is not handed the first message again.
    stack.medtech.stop().await;
    stack
        .produce_to(HUB, message_at("19:40:03").as_bytes())
        .await;
    let handed = first_handed_out(&stack, HUB, GROUP).await;
    assert_ne!(
        String::from_utf8_lossy(&handed.payload),
        first,
        "the first message was committed in {GROUP}"
    );
    assert!(handed.offset > 0, "offset {}", handed.offset);

    // A restart reads the same event hub in the same group: the stored configuration.
    stack.start_medtech().await;
    stack.wait_for_resource(&observation_at("19:40:03")).await;

    // Deleting the instance deletes the group: a new member starts again at the first
    // message, which is still there, as the event hub is the user's.
    stack.deprovision_medtech().await;
    stack
        .produce_to(HUB, message_at("19:40:04").as_bytes())
        .await;
    let handed = first_handed_out(&stack, HUB, GROUP).await;
    assert_eq!(
        String::from_utf8_lossy(&handed.payload),
        first,
        "{GROUP} has no offsets left, and {HUB} keeps its messages"
    );
    stack.stop().await;
}

/// A connector whose event hub changes (a PUT of its properties) moves its pipeline to the
/// new topic, and HTTP ingestion publishes there too.
async fn a_changed_event_hub_moves_the_pipeline(stack: Stack) {
    stack.provision().await;
    stack.configure().await;
    stack.produce(message_at("19:41:01").as_bytes()).await;
    stack.wait_for_resource(&observation_at("19:41:01")).await;

    let status = stack
        .provision_medtech_with(&json!({"ingestionEndpointConfiguration": {
            "eventHubName": "devicehub2", "consumerGroup": "$Default"
        }}))
        .await;
    assert_succeeded(&status);
    stack
        .produce_to("devicehub2", message_at("19:41:02").as_bytes())
        .await;
    stack.wait_for_resource(&observation_at("19:41:02")).await;

    // Only the new topic is read now, so this arrives only if ingestion published there.
    let res = stack
        .http
        .post(stack.medtech_url("/ingest"))
        .header("x-partition-key", "device1")
        .body(message_at("19:41:03"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    stack.wait_for_resource(&observation_at("19:41:03")).await;
    stack.stop().await;
}

/// What operations-svc sends for a connector with these destinations: the first one's
/// members at the top, and every one under `fhirDestinations`.
fn connector_with_destinations(names: &[&str]) -> Value {
    let destination = json!({
        "resourceIdentityResolutionType": "Create",
        "fhirServiceResourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HealthcareApis/workspaces/ws1/fhirservices/fhir",
        "fhirMapping": {"content": serde_json::from_str::<Value>(FHIR_MAPPING).unwrap()}
    });
    let mut properties = destination.clone();
    properties["fhirDestinations"] = names
        .iter()
        .map(|n| (n.to_string(), destination.clone()))
        .collect::<serde_json::Map<_, _>>()
        .into();
    properties
}

/// Azure allows one FHIR destination per MedTech service; a second one fails, naming the
/// quota, and changes nothing.
async fn a_second_fhir_destination_is_refused(stack: Stack) {
    stack.provision().await;
    let status = stack
        .provision_medtech_with(&connector_with_destinations(&["dest1", "dest2"]))
        .await;
    assert_eq!(status.state, OperationState::Failed as i32, "{status:?}");
    assert_eq!(status.error_code, "QuotaExceeded");
    assert!(
        status
            .error_message
            .contains("iotconnectors/fhirdestinations"),
        "{}",
        status.error_message
    );
    assert!(
        status.error_message.contains("dest2"),
        "{}",
        status.error_message
    );
    let destination = |stack: &Stack| {
        let url = stack.medtech_url("/destination");
        let http = stack.http.clone();
        async move { http.get(url).send().await.unwrap().status() }
    };
    assert_eq!(destination(&stack).await, 404, "nothing was applied");

    let status = stack
        .provision_medtech_with(&connector_with_destinations(&["dest1"]))
        .await;
    assert_succeeded(&status);
    assert_eq!(destination(&stack).await, 200);
    stack.stop().await;
}

mod embedded {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn an_event_hub_and_its_consumer_group_are_read() {
        super::an_event_hub_and_its_consumer_group_are_read(Stack::embedded().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_changed_event_hub_moves_the_pipeline() {
        let options = Options {
            // The change arrives as provisioning, which the pipeline notices on its reload.
            medtech: |m| m.reload_interval_ms = 200,
            ..Options::default()
        };
        super::a_changed_event_hub_moves_the_pipeline(Stack::embedded_with(options).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_second_fhir_destination_is_refused() {
        super::a_second_fhir_destination_is_refused(Stack::embedded().await).await;
    }
}

mod kafka {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn an_event_hub_and_its_consumer_group_are_read() {
        super::an_event_hub_and_its_consumer_group_are_read(Stack::kafka().await).await;
    }
}
