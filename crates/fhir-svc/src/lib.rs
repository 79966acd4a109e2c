//! fhir-svc: the FHIR R4 REST API of Azure Health Data Services, one API per instance
//! (`/{workspace}-{service}/...`).
//!
//! This crate is a library first: [`start`] wires dependencies from [`Settings`];
//! [`start_with`] takes them ready-made (`hds up` passes the embedded ones, tests their own).

pub mod error;
pub mod instances;
pub mod routes;

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use hds_core::auth::{AuthSettings, Authenticator};
use hds_core::bus::SharedBus;
use hds_core::config::{BusConfig, HttpSettings, TelemetrySettings};
use hds_core::db::{sqlite_url, Database, DatabaseSettings};
use hds_core::names::ServiceKind;
use hds_core::ops::{serve, Metrics, Readiness, Running, ServiceSettings, StartError};
use hds_core::provisioning::DataPlane;
use hds_core::CancellationToken;
use serde::{Deserialize, Serialize};

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
        }
    }
}

impl ServiceSettings for Settings {
    fn http(&self) -> &HttpSettings {
        &self.http
    }
    fn auth(&self) -> &AuthSettings {
        &self.auth
    }
    fn telemetry(&self) -> &TelemetrySettings {
        &self.telemetry
    }
}

/// What the service runs on.
#[derive(Clone)]
pub struct Deps {
    pub db: Database,
    pub bus: SharedBus,
}

impl Deps {
    pub async fn connect(settings: &Settings) -> Result<Self, StartError> {
        let db = Database::connect(&settings.database).await?;
        let bus = hds_core::bus::connect(&settings.bus.resolve()?, None).await?;
        bus.check().await?;
        Ok(Self { db, bus })
    }
}

/// Starts the service on its configured dependencies.
pub async fn start(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let deps = Deps::connect(&settings).await?;
    start_with(settings, deps, listener, shutdown).await
}

/// Starts the service on the given dependencies.
pub async fn start_with(
    settings: Settings,
    deps: Deps,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let auth = Authenticator::new(&settings.auth)?;
    let data_plane = DataPlane::start(
        deps.db.clone(),
        deps.bus.clone(),
        ServiceKind::Fhir,
        NAME,
        Arc::new(instances::FhirInstances),
        shutdown.clone(),
    )
    .await?;
    let readiness = Readiness::new()
        .database(deps.db.clone())
        .bus(deps.bus.clone());
    let state = routes::AppState {
        auth,
        registry: data_plane.registry.clone(),
    };
    let mut running = serve(
        listener,
        &settings.http,
        readiness,
        Metrics::new(NAME),
        move |cfg| routes::configure(cfg, &state),
        shutdown,
    )?;
    running.tasks.extend(data_plane.tasks);
    Ok(running)
}
