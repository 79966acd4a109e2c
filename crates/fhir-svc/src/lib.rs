//! fhir-svc: the FHIR R4 REST API of Azure Health Data Services, one API per instance
//! (`/{workspace}-{service}/...`).
//!
//! This crate is a library first: [`start`] wires dependencies from [`Settings`];
//! [`start_with`] takes them ready-made (`hds up` passes the embedded ones, tests their own).
//! The folder reads like the spec: `handlers/` holds one module per interaction, `store`
//! keeps every version, `routes` is where URLs meet handlers.

pub mod caller;
pub mod domain;
pub mod error;
pub mod export;
mod group_commit;
pub mod handlers;
pub mod http;
pub mod instance_config;
mod instance_middleware;
pub mod instances;
mod jobs;
pub mod reindex;
pub mod routes;
pub mod search;
pub mod store;
pub mod validation;
pub mod versioning;

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use actix_web::web;
use hds_core::auth::AuthSettings;
use hds_core::bus::SharedBus;
use hds_core::config::{BlobConfig, BusConfig, HttpSettings, TelemetrySettings};
use hds_core::dataplane::{self, Spec};
use hds_core::db::{sqlite_url, Database, DatabaseSettings};
use hds_core::names::ServiceKind;
use hds_core::ops::{connect_db_and_bus, Running, StartError};
use hds_core::CancellationToken;
use serde::{Deserialize, Serialize};

use crate::error::FhirError;

pub const NAME: &str = "fhir-svc";
pub const DEFAULT_PORT: u16 = 8081;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub bus: BusConfig,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    #[serde(default)]
    pub fhir: FhirSettings,
    /// `[exports]`: the store `$export` writes to (a folder or an S3 bucket); without it the
    /// service refuses `$export`.
    #[serde(default)]
    pub exports: Option<BlobConfig>,
}
hds_core::service_settings!(Settings);

/// `[fhir]`: limits of the FHIR API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FhirSettings {
    /// Entries a batch or transaction bundle may have.
    #[serde(
        default = "default_bundle_entries",
        deserialize_with = "hds_core::config::lenient"
    )]
    pub max_bundle_entries: usize,
    /// The largest `_count` a search may ask for.
    #[serde(
        default = "default_max_search_count",
        deserialize_with = "hds_core::config::lenient"
    )]
    pub max_search_count: usize,
}

fn default_bundle_entries() -> usize {
    500
}

fn default_max_search_count() -> usize {
    1000
}

impl Default for FhirSettings {
    fn default() -> Self {
        Self {
            max_bundle_entries: default_bundle_entries(),
            max_search_count: default_max_search_count(),
        }
    }
}

impl Settings {
    /// Everything local: SQLite and the embedded bus under `data_dir`, loopback, no auth.
    pub fn local_defaults(data_dir: &Path) -> Self {
        Self {
            http: HttpSettings::new(([127, 0, 0, 1], DEFAULT_PORT).into()),
            database: DatabaseSettings::new(sqlite_url(&data_dir.join("fhir.db"))),
            bus: BusConfig::embedded(sqlite_url(&data_dir.join("bus.db"))),
            auth: AuthSettings::default(),
            telemetry: TelemetrySettings::default(),
            fhir: FhirSettings::default(),
            exports: Some(BlobConfig::local(data_dir.join("exports"))),
        }
    }
}

/// What the service runs on.
#[derive(Clone)]
pub struct Deps {
    pub db: Database,
    pub bus: SharedBus,
}

/// Starts the service on its configured dependencies.
pub async fn start(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let (db, bus) = connect_db_and_bus(&settings.database, &settings.bus).await?;
    start_with(settings, Deps { db, bus }, listener, shutdown).await
}

/// Starts the service on the given dependencies.
pub async fn start_with(
    settings: Settings,
    deps: Deps,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    deps.db.migrate(&store::migrations()).await?;
    let backfilled = store::backfill_index(&deps.db).await?;
    if backfilled > 0 {
        tracing::info!(
            resources = backfilled,
            "search index rebuilt for resources stored before it was keyed"
        );
    }
    deps.bus
        .ensure_topic(
            hds_core::events::topics::FHIR_RESOURCES,
            hds_core::provisioning::TOPIC_PARTITIONS,
        )
        .await?;
    let spec = Spec {
        name: NAME,
        kind: ServiceKind::Fhir,
        http: &settings.http,
        auth: &settings.auth,
        db: deps.db.clone(),
        bus: deps.bus,
        blobs: None,
        lifecycle: Arc::new(instances::FhirInstances),
    };
    let max_body_bytes = settings.http.max_body_bytes;
    let max_bundle_entries = settings.fhir.max_bundle_entries;
    let max_search_count = settings.fhir.max_search_count;
    let public_base_url = settings.http.public_base_url.clone();
    let db = deps.db;
    // One copy of the instances' custom search parameters for the writers and the reindexer.
    let custom = std::sync::Arc::<search::custom::CustomParams>::default();
    // The jobs' reports to the control plane leave through the outbox relay, which starts
    // with the data plane below.
    let reports = jobs::Reports::default();
    let reindexer = reindex::Reindexer::new(db.clone(), custom.clone(), reports.clone());
    tokio::spawn(reindexer.clone().run(shutdown.clone()));
    let export_store = match &settings.exports {
        Some(c) => {
            let store = hds_core::blob::connect(&c.resolve()?).await?;
            store.check().await?;
            Some(store)
        }
        None => None,
    };
    let exporter = export::Exporter::new(db.clone(), export_store, reports.clone());
    tokio::spawn(exporter.clone().run(shutdown.clone()));
    dataplane::start::<FhirError, _, _>(
        spec,
        move |handles| {
            reports.attach(handles.relay.clone());
            let state = web::Data::new(http::FhirState {
                store: store::Store::with_group_commit(
                    db,
                    Some(handles.relay.clone()),
                    handles.metrics.registry(),
                    custom,
                ),
                reindexer: reindexer.clone(),
                exporter: exporter.clone(),
                max_body_bytes,
                max_bundle_entries,
                max_search_count,
                public_base_url,
            });
            move |cfg: &mut web::ServiceConfig| {
                cfg.app_data(state.clone());
                routes::configure(cfg);
            }
        },
        listener,
        shutdown,
    )
    .await
}
