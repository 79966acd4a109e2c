//! The EventBus contract, run against Kafka (a real tansu broker) and the embedded bus.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use common::{take, BusEnv};
use hds_core::bus::{consume, OutgoingMessage};
use hds_core::CancellationToken;
use hds_testkit::unique;

fn msg(key: &str, n: usize) -> OutgoingMessage {
    OutgoingMessage::new(format!("{key}:{n}"))
        .with_key(key)
        .with_header("n", n.to_string())
}

fn parse(payload: &[u8]) -> (String, usize) {
    let s = std::str::from_utf8(payload).unwrap();
    let (k, n) = s.split_once(':').unwrap();
    (k.to_owned(), n.parse().unwrap())
}

async fn keyed_messages_arrive_in_order_with_headers(env: BusEnv) {
    let bus = env.bus();
    let topic = unique("t");
    bus.ensure_topic(&topic, 3).await.unwrap();
    let keys = ["alpha", "beta", "gamma", "delta"];
    for n in 0..15 {
        for k in keys {
            bus.publish(&topic, msg(k, n)).await.unwrap();
        }
    }
    let mut sub = bus.subscribe(&unique("g"), &[&topic]).await.unwrap();
    let got = take(&mut sub, 60).await;
    let mut per_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut partition_of: BTreeMap<String, HashSet<i32>> = BTreeMap::new();
    for d in &got {
        let (k, n) = parse(&d.payload);
        assert_eq!(d.key.as_deref(), Some(k.as_bytes()));
        assert_eq!(d.header_str("n"), Some(n.to_string().as_str()));
        assert_eq!(d.topic, topic);
        per_key.entry(k.clone()).or_default().push(n);
        partition_of.entry(k).or_default().insert(d.partition);
    }
    for k in keys {
        assert_eq!(per_key[k], (0..15).collect::<Vec<_>>(), "order of key {k}");
        assert_eq!(partition_of[k].len(), 1, "key {k} spread over partitions");
    }
    sub.close().await;
}

async fn group_resumes_after_last_commit(env: BusEnv) {
    let bus = env.bus();
    let topic = unique("t");
    let group = unique("g");
    bus.ensure_topic(&topic, 1).await.unwrap();
    for n in 0..10 {
        bus.publish(&topic, msg("k", n)).await.unwrap();
    }
    let mut first = bus.subscribe(&group, &[&topic]).await.unwrap();
    let got = take(&mut first, 4).await;
    first.commit(&got[3]).await.unwrap();
    first.close().await;
    for n in 10..12 {
        bus.publish(&topic, msg("k", n)).await.unwrap();
    }
    let mut second = bus.subscribe(&group, &[&topic]).await.unwrap();
    let got: Vec<usize> = take(&mut second, 8)
        .await
        .iter()
        .map(|d| parse(&d.payload).1)
        .collect();
    assert_eq!(got, (4..12).collect::<Vec<_>>());
    second.close().await;
}

async fn uncommitted_messages_are_delivered_again(env: BusEnv) {
    let bus = env.bus();
    let topic = unique("t");
    let group = unique("g");
    bus.ensure_topic(&topic, 1).await.unwrap();
    for n in 0..3 {
        bus.publish(&topic, msg("k", n)).await.unwrap();
    }
    let mut first = bus.subscribe(&group, &[&topic]).await.unwrap();
    let seen = take(&mut first, 3).await;
    first.close().await;
    let mut second = bus.subscribe(&group, &[&topic]).await.unwrap();
    let again = take(&mut second, 3).await;
    assert_eq!(
        seen.iter().map(|d| d.offset).collect::<Vec<_>>(),
        again.iter().map(|d| d.offset).collect::<Vec<_>>()
    );
    second.close().await;
}

async fn every_group_receives_everything(env: BusEnv) {
    let bus = env.bus();
    let topic = unique("t");
    bus.ensure_topic(&topic, 2).await.unwrap();
    for n in 0..6 {
        bus.publish(&topic, msg(&format!("k{n}"), n)).await.unwrap();
    }
    for _ in 0..2 {
        let mut sub = bus.subscribe(&unique("g"), &[&topic]).await.unwrap();
        let mut got: Vec<usize> = take(&mut sub, 6)
            .await
            .iter()
            .map(|d| parse(&d.payload).1)
            .collect();
        got.sort();
        assert_eq!(got, (0..6).collect::<Vec<_>>());
        sub.close().await;
    }
}

/// `consume` retries a failing handler on the same message, never skips it, and commits only
/// what was handled: a later member of the group starts after the last handled message.
async fn consume_commits_only_after_success(env: BusEnv) {
    let bus = env.bus();
    let topic = unique("t");
    let group = unique("g");
    bus.ensure_topic(&topic, 1).await.unwrap();
    for n in 0..5 {
        bus.publish(&topic, msg("k", n)).await.unwrap();
    }
    let attempts: Arc<Mutex<Vec<usize>>> = Arc::default();
    let shutdown = CancellationToken::new();
    let sub = bus.subscribe(&group, &[&topic]).await.unwrap();
    let task = {
        let attempts = attempts.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(consume(sub, shutdown.clone(), move |d| {
            let attempts = attempts.clone();
            let shutdown = shutdown.clone();
            async move {
                let n = parse(&d.payload).1;
                let tries = {
                    let mut a = attempts.lock().unwrap();
                    a.push(n);
                    a.iter().filter(|x| **x == n).count()
                };
                if n == 2 && tries < 3 {
                    anyhow::bail!("message 2 fails twice");
                }
                if n == 3 {
                    // Handled 0..=2; stop before handling 3, which stays uncommitted.
                    shutdown.cancel();
                    anyhow::bail!("stopping");
                }
                Ok(())
            }
        }))
    };
    task.await.unwrap().unwrap();
    assert_eq!(*attempts.lock().unwrap(), vec![0, 1, 2, 2, 2, 3]);
    let mut next = bus.subscribe(&group, &[&topic]).await.unwrap();
    let rest: Vec<usize> = take(&mut next, 2)
        .await
        .iter()
        .map(|d| parse(&d.payload).1)
        .collect();
    assert_eq!(rest, vec![3, 4]);
    next.close().await;
}

async fn acknowledged_messages_survive_a_restart(mut env: BusEnv) {
    let topic = unique("t");
    let group = unique("g");
    env.bus().ensure_topic(&topic, 2).await.unwrap();
    for n in 0..8 {
        env.bus()
            .publish(&topic, msg(&format!("k{n}"), n))
            .await
            .unwrap();
    }
    let mut sub = env.bus().subscribe(&group, &[&topic]).await.unwrap();
    let first = take(&mut sub, 8).await;
    // Commit everything of one partition only.
    let p = first[0].partition;
    let last_of_p = first.iter().rfind(|d| d.partition == p).unwrap();
    sub.commit(last_of_p).await.unwrap();
    sub.close().await;
    let expected: HashSet<usize> = first
        .iter()
        .filter(|d| d.partition != p)
        .map(|d| parse(&d.payload).1)
        .collect();
    assert!(!expected.is_empty(), "all keys landed in one partition");

    env.restart().await;

    let mut sub = env.bus().subscribe(&group, &[&topic]).await.unwrap();
    let again: HashSet<usize> = take(&mut sub, expected.len())
        .await
        .iter()
        .map(|d| parse(&d.payload).1)
        .collect();
    assert_eq!(again, expected);
    sub.close().await;
}

/// A batch (`publish_all`, what the outbox relay sends) is acknowledged as a whole: after a
/// restart every message of it is there, each key's messages in the batch's order, on both of
/// its topics.
async fn batches_keep_their_order_and_survive_a_restart(mut env: BusEnv) {
    let topics = [unique("t"), unique("t")];
    for t in &topics {
        env.bus().ensure_topic(t, 3).await.unwrap();
    }
    let keys = ["alpha", "beta", "gamma", "delta"];
    let mut batch = Vec::new();
    for n in 0..12 {
        for (i, k) in keys.iter().enumerate() {
            batch.push((topics[i % 2].clone(), msg(k, n)));
        }
    }
    env.bus().publish_all(batch).await.unwrap();
    env.restart().await;
    let mut sub = env
        .bus()
        .subscribe(&unique("g"), &[&topics[0], &topics[1]])
        .await
        .unwrap();
    let mut per_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for d in take(&mut sub, 48).await {
        let (k, n) = parse(&d.payload);
        let i = keys.iter().position(|x| *x == k).unwrap();
        assert_eq!(d.topic, topics[i % 2], "{k} on its topic");
        assert_eq!(d.header_str("n"), Some(n.to_string().as_str()));
        per_key.entry(k).or_default().push(n);
    }
    for k in keys {
        assert_eq!(per_key[k], (0..12).collect::<Vec<_>>(), "order of key {k}");
    }
    sub.close().await;
}

/// Members of one group share the partitions: once both are in, each message goes to exactly
/// one of them and both get some.
async fn group_members_share_the_partitions(env: BusEnv) {
    let bus = env.bus();
    let topic = unique("t");
    let group = unique("g");
    bus.ensure_topic(&topic, 4).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, String)>();
    let stop = CancellationToken::new();
    let mut members = Vec::new();
    for member in 0..2 {
        let mut sub = bus.subscribe(&group, &[&topic]).await.unwrap();
        let (tx, stop) = (tx.clone(), stop.clone());
        members.push(tokio::spawn(async move {
            loop {
                let d = tokio::select! {
                    _ = stop.cancelled() => break,
                    d = sub.next() => d.unwrap(),
                };
                // A commit can fail while a rebalance moves the partition; the message then
                // goes to the other member, which the warm-up below absorbs.
                let _ = sub.commit(&d).await;
                let _ = tx.send((member, String::from_utf8(d.payload).unwrap()));
            }
            sub.close().await;
        }));
    }
    // Warm up until both members have received something: both are then in the group.
    let mut warmed = [false, false];
    let mut n = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !(warmed[0] && warmed[1]) {
        assert!(
            std::time::Instant::now() < deadline,
            "a member never got a partition"
        );
        bus.publish(&topic, msg(&format!("warm{n}"), n))
            .await
            .unwrap();
        n += 1;
        if let Ok(Some((m, _))) =
            tokio::time::timeout(std::time::Duration::from_millis(200), rx.recv()).await
        {
            warmed[m] = true;
        }
        while let Ok((m, _)) = rx.try_recv() {
            warmed[m] = true;
        }
    }
    // Let the warm-up traffic drain, then send the real messages.
    let marker = format!("real:{}", unique("m"));
    let keys: Vec<String> = (0..40).map(|i| format!("key{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        bus.publish(
            &topic,
            OutgoingMessage::new(format!("{marker}:{i}")).with_key(k.as_str()),
        )
        .await
        .unwrap();
    }
    let mut got: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    while got.len() < keys.len() {
        let (m, payload) = tokio::time::timeout(std::time::Duration::from_secs(60), rx.recv())
            .await
            .expect("the real messages arrived")
            .unwrap();
        if payload.starts_with(&marker) {
            got.entry(payload).or_default().push(m);
        }
    }
    stop.cancel();
    for m in members {
        m.await.unwrap();
    }
    while let Ok((m, payload)) = rx.try_recv() {
        if payload.starts_with(&marker) {
            got.entry(payload).or_default().push(m);
        }
    }
    let per_member = |member: usize| got.values().filter(|ms| ms.contains(&member)).count();
    assert!(
        got.values().all(|ms| ms.len() == 1),
        "delivered to both: {got:?}"
    );
    assert!(
        per_member(0) > 0 && per_member(1) > 0,
        "not shared: {got:?}"
    );
}

/// W3C trace context of the publishing span travels in the message headers.
async fn trace_context_travels_in_headers(env: BusEnv) {
    static TELEMETRY: std::sync::OnceLock<hds_core::telemetry::TelemetryGuard> =
        std::sync::OnceLock::new();
    TELEMETRY
        .get_or_init(|| hds_core::telemetry::init("bus-contract", &Default::default()).unwrap());
    use tracing::Instrument;
    let bus = env.bus();
    let topic = unique("t");
    bus.ensure_topic(&topic, 1).await.unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let span = tracing::info_span!("incoming request");
    hds_core::telemetry::set_parent_from_headers(
        &span,
        &vec![(
            "traceparent".to_owned(),
            format!("00-{trace_id}-00f067aa0ba902b7-01").into_bytes(),
        )],
    );
    bus.publish(&topic, msg("k", 0))
        .instrument(span)
        .await
        .unwrap();
    let mut sub = bus.subscribe(&unique("g"), &[&topic]).await.unwrap();
    let got = take(&mut sub, 1).await;
    let traceparent = got[0]
        .header_str("traceparent")
        .expect("a traceparent header");
    assert!(
        traceparent.starts_with(&format!("00-{trace_id}-")),
        "{traceparent}"
    );
    assert!(
        !traceparent.contains("00f067aa0ba902b7"),
        "the publisher's own span is the parent"
    );
    sub.close().await;
}

macro_rules! bus_contract {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn keyed_messages_arrive_in_order_with_headers() {
                super::keyed_messages_arrive_in_order_with_headers(BusEnv::$backend().await).await
            }
            #[tokio::test]
            async fn group_resumes_after_last_commit() {
                super::group_resumes_after_last_commit(BusEnv::$backend().await).await
            }
            #[tokio::test]
            async fn uncommitted_messages_are_delivered_again() {
                super::uncommitted_messages_are_delivered_again(BusEnv::$backend().await).await
            }
            #[tokio::test]
            async fn every_group_receives_everything() {
                super::every_group_receives_everything(BusEnv::$backend().await).await
            }
            #[tokio::test]
            async fn consume_commits_only_after_success() {
                super::consume_commits_only_after_success(BusEnv::$backend().await).await
            }
            #[tokio::test]
            async fn group_members_share_the_partitions() {
                super::group_members_share_the_partitions(BusEnv::$backend().await).await
            }
            #[tokio::test]
            async fn trace_context_travels_in_headers() {
                super::trace_context_travels_in_headers(BusEnv::$backend().await).await
            }
            #[tokio::test]
            async fn batches_keep_their_order_and_survive_a_restart() {
                super::batches_keep_their_order_and_survive_a_restart(BusEnv::$backend().await)
                    .await
            }
            #[tokio::test]
            async fn acknowledged_messages_survive_a_restart() {
                super::acknowledged_messages_survive_a_restart(BusEnv::$backend().await).await
            }
        }
    };
}

bus_contract!(kafka);
bus_contract!(embedded);

/// A `next()` dropped while it waits (a consumer's own timeout) loses no message, even when
/// it is dropped in the middle of taking a new assignment after the group changed. (Kafka's
/// client is cancel-safe by its own contract; this is about the embedded bus.)
#[tokio::test]
async fn embedded_dropped_next_loses_nothing_across_a_group_change() {
    use futures::FutureExt;
    let env = BusEnv::embedded().await;
    let bus = env.bus();
    let topic = unique("t");
    let group = unique("g");
    bus.ensure_topic(&topic, 4).await.unwrap();
    let mut a = bus.subscribe(&group, &[&topic]).await.unwrap();
    let expected: HashSet<String> = (0..20).map(|i| format!("m{i}")).collect();
    for (i, m) in expected.iter().enumerate() {
        bus.publish(
            &topic,
            OutgoingMessage::new(m.clone()).with_key(format!("k{i}")),
        )
        .await
        .unwrap();
    }
    let mut got = HashSet::new();
    let mut keep = |d: Option<Result<hds_core::bus::Delivery, hds_core::bus::BusError>>| {
        if let Some(Ok(d)) = d {
            got.insert(String::from_utf8(d.payload).unwrap());
        }
    };
    // A second member joins and leaves: each change makes `a` take a new assignment, and
    // each poll below is dropped at its first wait.
    let b = bus.subscribe(&group, &[&topic]).await.unwrap();
    for _ in 0..20 {
        keep(a.next().now_or_never());
    }
    b.close().await;
    for _ in 0..20 {
        keep(a.next().now_or_never());
    }
    while got.len() < expected.len() {
        let d = tokio::time::timeout(std::time::Duration::from_secs(20), a.next())
            .await
            .expect("every message arrives")
            .unwrap();
        got.insert(String::from_utf8(d.payload).unwrap());
    }
    assert_eq!(got, expected);
}

/// The embedded bus deletes messages older than its retention, as Kafka does; offsets are not
/// reused, and a group whose next message is gone goes on from the oldest one kept.
#[tokio::test]
async fn embedded_retention_deletes_old_messages_and_keeps_offsets() {
    use hds_core::bus::embedded::{EmbeddedBus, EmbeddedBusSettings};
    use hds_core::bus::EventBus;
    use hds_core::db::{sqlite_url, Database, DatabaseSettings};

    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir.path().join("bus.db"));
    let db = Database::connect(&DatabaseSettings::new(url.clone()))
        .await
        .unwrap();
    let settings = EmbeddedBusSettings::new(url);
    assert_eq!(settings.retention_hours, 168);
    let bus = EmbeddedBus::open(db, settings).await.unwrap();
    let topic = unique("t");
    let group = unique("g");
    bus.ensure_topic(&topic, 1).await.unwrap();
    for n in 0..3 {
        bus.publish(&topic, msg("k", n)).await.unwrap();
    }
    let mut first = bus.subscribe(&group, &[&topic]).await.unwrap();
    let got = take(&mut first, 1).await;
    first.commit(&got[0]).await.unwrap();
    first.close().await;

    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(
        bus.apply_retention(now).await.unwrap(),
        0,
        "nothing is old yet"
    );
    let week_later = now + 169 * 3_600_000;
    assert_eq!(bus.apply_retention(week_later).await.unwrap(), 3);

    bus.publish(&topic, msg("k", 3)).await.unwrap();
    let mut second = bus.subscribe(&group, &[&topic]).await.unwrap();
    let got = take(&mut second, 1).await;
    assert_eq!(parse(&got[0].payload), ("k".to_owned(), 3));
    assert_eq!(got[0].offset, 3, "offsets are not reused");
    second.close().await;
}
