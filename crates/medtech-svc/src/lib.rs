//! medtech-svc: the MedTech service of Azure Health Data Services. Each instance consumes
//! `hds.devices.{workspace}-{service}` (or the event hub its IotConnector's
//! `ingestionEndpointConfiguration` names, [`config::ingestion`]) and writes Observations to
//! its FHIR service.
//!
//! This crate is a library first: [`start`] wires dependencies from [`Settings`];
//! [`start_with`] takes them ready-made (`hds up` passes the embedded ones, tests their own).
//! The mapping engine is here as pure library code: device mappings ([`template`]) turn a
//! device event ([`envelope`]) into measurements, [`grouping`] and FHIR destination mappings
//! ([`fhir_mapping`]) turn those into Observations ([`observation`]) with iomt-fhir's ids
//! ([`identity`]); [`debug`] runs it all for the mapping debugger.
//!
//! Around the engine: each instance's configuration ([`config`], set through [`api`]), the
//! [`pipeline`] that reads the instance's device topic and writes Observations to its FHIR
//! service (committing only what is written or dead-lettered), HTTP ingestion and the
//! debugger ([`api`]) and the pipeline's [`metrics`].

pub mod api;
pub mod config;
pub mod debug;
pub mod envelope;
pub mod error;
pub mod expression;
pub mod fhir_mapping;
pub mod grouping;
pub mod identity;
pub mod instances;
pub mod jsonpath;
pub mod mapping_doc;
pub mod measurement;
pub mod metrics;
pub mod observation;
pub mod pipeline;
pub mod settings;
pub mod template;
pub mod time;

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use hds_core::auth::AuthSettings;
use hds_core::bus::SharedBus;
use hds_core::config::{BusConfig, HttpSettings, TelemetrySettings};
use hds_core::dataplane::{self, Spec};
use hds_core::db::{sqlite_url, Database, DatabaseSettings};
use hds_core::names::ServiceKind;
use hds_core::ops::{connect_db_and_bus, Running, StartError};
use hds_core::provisioning::TOPIC_PARTITIONS;
use hds_core::CancellationToken;
use serde::{Deserialize, Serialize};

use crate::error::MedtechError;
pub use crate::settings::MedtechSettings;

pub const NAME: &str = "medtech-svc";
pub const DEFAULT_PORT: u16 = 8083;

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
    pub medtech: MedtechSettings,
}
hds_core::service_settings!(Settings);

impl Settings {
    /// Everything local: SQLite and the embedded bus under `data_dir`, loopback, no auth.
    pub fn local_defaults(data_dir: &Path) -> Self {
        Self {
            http: HttpSettings::new(([127, 0, 0, 1], DEFAULT_PORT).into()),
            database: DatabaseSettings::new(sqlite_url(&data_dir.join("medtech.db"))),
            bus: BusConfig::embedded(sqlite_url(&data_dir.join("bus.db"))),
            auth: AuthSettings::default(),
            telemetry: TelemetrySettings::default(),
            medtech: MedtechSettings::default(),
        }
    }
}

#[derive(Clone)]
pub struct Deps {
    pub db: Database,
    pub bus: SharedBus,
}

pub async fn start(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let (db, bus) = connect_db_and_bus(&settings.database, &settings.bus).await?;
    start_with(settings, Deps { db, bus }, listener, shutdown).await
}

pub async fn start_with(
    settings: Settings,
    deps: Deps,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    deps.db.migrate(&config::store::migrations()).await?;
    deps.bus
        .ensure_topic(
            hds_core::events::topics::MEDTECH_DEADLETTER,
            TOPIC_PARTITIONS,
        )
        .await?;
    let metrics = metrics::PipelineMetrics::new();
    let tokens = pipeline::fhir_token::FhirTokens::from_settings(
        &settings.auth,
        settings.medtech.signing_key_dir.as_deref(),
    )
    .map_err(|e| StartError::Other(format!("medtech-svc tokens for fhir-svc: {e}")))?;
    let pipelines = pipeline::Pipelines::new(
        deps.db.clone(),
        pipeline::Context::new(
            deps.bus.clone(),
            metrics.clone(),
            settings.medtech.clone(),
            tokens,
        ),
        shutdown.clone(),
    );
    let spec = Spec {
        name: NAME,
        kind: ServiceKind::Medtech,
        http: &settings.http,
        auth: &settings.auth,
        lifecycle: Arc::new(instances::MedtechInstances {
            bus: deps.bus.clone(),
            pipelines: pipelines.clone(),
        }),
        db: deps.db.clone(),
        bus: deps.bus.clone(),
        blobs: None,
    };
    let db = deps.db.clone();
    let bus = deps.bus.clone();
    let api_pipelines = pipelines.clone();
    let medtech = settings.medtech.clone();
    let routes = move |handles: &dataplane::Handles| {
        if let Err(e) = metrics.register(handles.metrics.registry()) {
            tracing::error!(error = %e, "the pipeline's metrics could not be registered");
        }
        let state = actix_web::web::Data::new(api::ApiState {
            db,
            bus,
            registry: handles.registry.clone(),
            pipelines: api_pipelines,
            settings: medtech,
        });
        move |cfg: &mut actix_web::web::ServiceConfig| {
            cfg.app_data(state.clone());
            api::configure(cfg);
        }
    };
    let mut running =
        dataplane::start::<MedtechError, _, _>(spec, routes, listener, shutdown).await?;
    running.tasks.push(pipelines.spawn());
    Ok(running)
}
