//! Backends for the contract suites: each suite runs once per implementation.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use hds_core::bus::embedded::{EmbeddedBus, EmbeddedBusSettings};
use hds_core::bus::kafka::KafkaBus;
use hds_core::bus::{Delivery, SharedBus, Subscription};
use hds_core::db::{sqlite_url, Database, DatabaseSettings};
use hds_testkit::Tansu;

/// A bus under test, with what it needs to be restarted.
pub enum BusEnv {
    Kafka {
        tansu: Tansu,
        bus: SharedBus,
    },
    Embedded {
        dir: tempfile::TempDir,
        bus: SharedBus,
    },
}

impl BusEnv {
    pub async fn kafka() -> Self {
        let tansu = Tansu::start().await;
        let bus = Arc::new(KafkaBus::new(&tansu.settings()).unwrap());
        BusEnv::Kafka { tansu, bus }
    }

    pub async fn embedded() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bus = open_embedded(dir.path()).await;
        BusEnv::Embedded { dir, bus }
    }

    pub fn bus(&self) -> SharedBus {
        match self {
            BusEnv::Kafka { bus, .. } | BusEnv::Embedded { bus, .. } => bus.clone(),
        }
    }

    /// Stops the bus as a crash would and starts it again on the same storage.
    pub async fn restart(&mut self) {
        match self {
            BusEnv::Kafka { tansu, bus } => {
                tansu.restart().await;
                *bus = Arc::new(KafkaBus::new(&tansu.settings()).unwrap());
            }
            BusEnv::Embedded { dir, bus } => {
                *bus = open_embedded(dir.path()).await;
            }
        }
    }
}

async fn open_embedded(dir: &std::path::Path) -> SharedBus {
    let url = sqlite_url(&dir.join("bus.db"));
    let db = Database::connect(&DatabaseSettings::new(url.clone()))
        .await
        .unwrap();
    let mut settings = EmbeddedBusSettings::new(url);
    settings.default_partitions = 3;
    Arc::new(EmbeddedBus::open(db, settings).await.unwrap())
}

/// Takes `n` deliveries, failing the test if they do not come within 60 s.
pub async fn take(sub: &mut Box<dyn Subscription>, n: usize) -> Vec<Delivery> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(60), sub.next()).await {
            Ok(Ok(d)) => out.push(d),
            Ok(Err(e)) => panic!("consume failed after {} of {n}: {e}", out.len()),
            Err(_) => panic!("only {} of {n} messages arrived within 60 s", out.len()),
        }
    }
    out
}
