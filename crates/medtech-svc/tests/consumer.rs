//! The consumer on real Kafka (tansu): a window whose writing takes longer than the
//! consumer's `max.poll.interval.ms` (fhir-svc down meanwhile) does not cost the group
//! membership. Were the member dropped, librdkafka would report it on the next read (counted
//! as an `EventHubError`) and the group would hand the uncommitted window out again, so its
//! messages would be counted twice; neither may happen, and nothing may be lost. The same
//! holds when the topic is then quiet for as long.

mod common;

use std::time::Duration;

use common::*;
use medtech_svc::identity::{Identifier, SERVICE_SYSTEM};

/// librdkafka wants `max.poll.interval.ms` >= `session.timeout.ms`; tansu accepts 6 s.
const MAX_POLL_INTERVAL_MS: u64 = 6_000;

fn observation_id(at: &str) -> String {
    Identifier::new(
        Some(SERVICE_SYSTEM),
        &format!("{PATIENT_ID}.{DEVICE_ID}.bloodpressure.{at}.{at}"),
    )
    .resource_id()
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_window_longer_than_max_poll_interval_keeps_the_group() {
    let options = Options {
        // Windows of one message and a read-ahead of one: during the outage one message is
        // being written, the queue is full with the next, and only the keep-alive polls
        // keep the membership.
        medtech: |m| {
            m.flush_messages = 1;
            m.read_ahead_messages = 1;
            m.poll_keepalive_ms = 1_000;
        },
        ..Options::default()
    };
    let mut stack = Stack::kafka_with(
        |k| {
            k.session_timeout_ms = MAX_POLL_INTERVAL_MS;
            k.max_poll_interval_ms = MAX_POLL_INTERVAL_MS;
        },
        options,
    )
    .await;
    stack.provision().await;
    stack.configure().await;
    // The worker owns the partition and has written one window.
    stack.produce(MESSAGE.as_bytes()).await;
    stack
        .wait_for_resource(&format!("/Observation/{OBSERVATION_ID}"))
        .await;

    stack.fhir.stop().await;
    let errors = ["error_type=\"FHIRServiceError\""];
    let before = stack.metric("medtech_errors_total", &errors).await;
    let times = ["19:50:01", "19:50:02", "19:50:03", "19:50:04"];
    for t in times {
        stack
            .produce(MESSAGE.replace("19:18:23", t).as_bytes())
            .await;
    }
    // A window is being written and failing.
    stack
        .wait_for_metric("medtech_errors_total", &errors, before + 1.0)
        .await;
    // The outage itself: it must outlast max.poll.interval.ms, twice over.
    tokio::time::sleep(Duration::from_millis(2 * MAX_POLL_INTERVAL_MS + 1_000)).await;
    stack.start_fhir().await;

    for t in times {
        let at = format!("20231009{}Z", t.replace(':', ""));
        let o = stack
            .wait_for_resource(&format!("/Observation/{}", observation_id(&at)))
            .await;
        assert_eq!(o["meta"]["versionId"], "1", "{o}");
    }
    // The partition goes on behind them.
    stack
        .produce(MESSAGE.replace("19:18:23", "19:50:05").as_bytes())
        .await;
    stack
        .wait_for_resource(&format!(
            "/Observation/{}",
            observation_id("20231009195005Z")
        ))
        .await;

    // A quiet topic, as long again: waiting for a message must not count as not polling.
    tokio::time::sleep(Duration::from_millis(2 * MAX_POLL_INTERVAL_MS + 1_000)).await;
    stack
        .produce(MESSAGE.replace("19:18:23", "19:50:06").as_bytes())
        .await;
    stack
        .wait_for_resource(&format!(
            "/Observation/{}",
            observation_id("20231009195006Z")
        ))
        .await;

    assert_eq!(
        stack
            .metric("medtech_errors_total", &["error_type=\"EventHubError\""])
            .await,
        0.0,
        "the consumer reported no read failure (such as max.poll.interval exceeded)"
    );
    assert_eq!(
        stack.metric("medtech_device_event_total", &[]).await,
        (times.len() + 3) as f64,
        "every message was read once: no window was handed out again"
    );
    stack.stop().await;
}
