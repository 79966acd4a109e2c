//! The transactional outbox, on PostgreSQL + Kafka (real servers) and SQLite + embedded bus.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{take, BusEnv};
use hds_core::bus::OutgoingMessage;
use hds_core::db::{Database, Migrations};
use hds_core::events::v1::FhirResourceEvent;
use hds_core::events::{new_event_id, EVENT_ID_HEADER};
use hds_core::outbox::{self, Relay};
use hds_testkit::unique;
use prost::Message;
use sqlx::Row;

fn widgets() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./tests/migrations/postgres"),
        sqlite: sqlx::migrate!("./tests/migrations/sqlite"),
    }
}

struct Env {
    db: Database,
    bus: BusEnv,
    _dir: Option<tempfile::TempDir>,
}

impl Env {
    async fn postgres_kafka() -> Self {
        Self::with(
            hds_testkit::pg_database("ob").await,
            BusEnv::kafka().await,
            None,
        )
        .await
    }
    async fn sqlite_embedded() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = hds_testkit::sqlite_database(dir.path(), "svc").await;
        Self::with(db, BusEnv::embedded().await, Some(dir)).await
    }
    async fn with(db: Database, bus: BusEnv, dir: Option<tempfile::TempDir>) -> Self {
        db.migrate(&widgets()).await.unwrap();
        db.migrate(&outbox::migrations()).await.unwrap();
        Env { db, bus, _dir: dir }
    }

    /// One change and its event in one transaction; returns the event id.
    async fn change(&self, topic: &str, name: &str, commit: bool) -> String {
        let event = FhirResourceEvent {
            event_id: new_event_id(),
            instance: "ws1-fhir".into(),
            resource_type: "Widget".into(),
            resource_id: name.into(),
            ..Default::default()
        };
        let mut tx = self.db.begin().await.unwrap();
        sqlx::query("INSERT INTO widgets (name) VALUES ($1)")
            .bind(name)
            .execute(&mut *tx)
            .await
            .unwrap();
        outbox::enqueue(&mut tx, topic, name, &event).await.unwrap();
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
        event.event_id
    }
}

fn event_id(d: &hds_core::bus::Delivery) -> String {
    let header = d.header_str(EVENT_ID_HEADER).unwrap().to_owned();
    let payload = FhirResourceEvent::decode(d.payload.as_slice()).unwrap();
    assert_eq!(payload.event_id, header);
    header
}

async fn committed_changes_publish_their_events_and_only_those(env: Env) {
    let topic = unique("t");
    let bus = env.bus.bus();
    bus.ensure_topic(&topic, 1).await.unwrap();
    let committed = env.change(&topic, "a", true).await;
    let _rolled_back = env.change(&topic, "b", false).await;
    let widgets: i64 = sqlx::query("SELECT COUNT(*) AS n FROM widgets")
        .fetch_one(env.db.pool())
        .await
        .unwrap()
        .get("n");
    assert_eq!(widgets, 1);
    assert_eq!(outbox::pending(&env.db).await.unwrap(), 1);

    let relay = Relay::new(env.db.clone(), bus.clone());
    assert_eq!(relay.relay_once().await.unwrap(), 1);
    assert_eq!(outbox::pending(&env.db).await.unwrap(), 0);
    assert_eq!(relay.relay_once().await.unwrap(), 0);

    // The sentinel goes after everything the relay could have sent.
    let sentinel = OutgoingMessage::new(b"sentinel".to_vec())
        .with_key("a")
        .with_header(EVENT_ID_HEADER, b"sentinel".to_vec());
    bus.publish(&topic, sentinel).await.unwrap();
    let mut sub = bus.subscribe(&unique("g"), &[&topic]).await.unwrap();
    let got = take(&mut sub, 2).await;
    assert_eq!(event_id(&got[0]), committed);
    assert_eq!(got[1].payload, b"sentinel");
    sub.close().await;
}

macro_rules! outbox_contract {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test]
            async fn committed_changes_publish_their_events_and_only_those() {
                super::committed_changes_publish_their_events_and_only_those(
                    super::Env::$backend().await,
                )
                .await
            }
        }
    };
}

outbox_contract!(postgres_kafka);
outbox_contract!(sqlite_embedded);

/// Stop the broker, commit changes, start it again: every event arrives, none is invented,
/// and deduplicating by event id gives exactly the committed set.
#[tokio::test]
async fn broker_outage_delays_events_but_loses_none() {
    let mut env = Env::postgres_kafka().await;
    let topic = unique("t");
    env.bus.bus().ensure_topic(&topic, 3).await.unwrap();

    let BusEnv::Kafka { tansu, .. } = &mut env.bus else {
        unreachable!()
    };
    tansu.stop().await;

    let mut committed = HashSet::new();
    for n in 0..20 {
        committed.insert(env.change(&topic, &format!("w{n}"), true).await);
    }
    for n in 0..5 {
        env.change(&topic, &format!("rolled-back{n}"), false).await;
    }

    // The relay's publishing bus, with a short timeout so the outage shows quickly.
    let BusEnv::Kafka { tansu, .. } = &mut env.bus else {
        unreachable!()
    };
    let mut settings = tansu.settings();
    settings.message_timeout_ms = 2_000;
    let relay_bus: hds_core::bus::SharedBus =
        std::sync::Arc::new(hds_core::bus::kafka::KafkaBus::new(&settings).unwrap());
    let relay = Relay::new(env.db.clone(), relay_bus.clone());
    assert!(
        relay.relay_once().await.is_err(),
        "published with the broker down"
    );
    assert_eq!(outbox::pending(&env.db).await.unwrap(), 20);

    let shutdown = hds_core::CancellationToken::new();
    let task = relay.clone().spawn(shutdown.clone());
    tansu.restart().await;

    let consumer_bus = hds_core::bus::kafka::KafkaBus::new(&tansu.settings()).unwrap();
    use hds_core::bus::EventBus;
    let mut sub = consumer_bus
        .subscribe(&unique("g"), &[&topic])
        .await
        .unwrap();
    let mut seen = HashSet::new();
    while seen.len() < committed.len() {
        let d = take(&mut sub, 1).await.remove(0);
        let id = event_id(&d);
        assert!(committed.contains(&id), "an event nobody committed: {id}");
        seen.insert(id);
    }
    assert_eq!(seen, committed);
    // Drained: the relay deleted every row it published.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while outbox::pending(&env.db).await.unwrap() > 0 {
        assert!(std::time::Instant::now() < deadline, "outbox not drained");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
    sub.close().await;
}
