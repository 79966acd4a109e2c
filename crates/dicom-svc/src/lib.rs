//! dicom-svc: DICOMweb and Azure's DICOM service additions, one API per instance
//! (`/{workspace}-{service}/v1/...`). Original instances live in the blob store under the
//! instance's prefix; the index lives in the database.
//!
//! A library first: [`start`] wires dependencies from [`Settings`]; [`start_with`] takes them
//! ready-made (`hds up` passes the embedded ones, tests their own).

pub mod error;
pub mod instances;

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use hds_core::auth::AuthSettings;
use hds_core::blob::SharedBlobStore;
use hds_core::bus::SharedBus;
use hds_core::config::{BlobConfig, BusConfig, HttpSettings, TelemetrySettings};
use hds_core::dataplane::{self, Spec};
use hds_core::db::{sqlite_url, Database, DatabaseSettings};
use hds_core::names::ServiceKind;
use hds_core::ops::{connect_db_and_bus, Running, StartError};
use hds_core::CancellationToken;
use serde::{Deserialize, Serialize};

use crate::error::DicomError;

pub const NAME: &str = "dicom-svc";
pub const DEFAULT_PORT: u16 = 8082;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub bus: BusConfig,
    pub blobs: BlobConfig,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
}
hds_core::service_settings!(Settings);

impl Settings {
    /// Everything local: SQLite, the embedded bus and a blob folder under `data_dir`.
    pub fn local_defaults(data_dir: &Path) -> Self {
        Self {
            http: HttpSettings::new(([127, 0, 0, 1], DEFAULT_PORT).into()),
            database: DatabaseSettings::new(sqlite_url(&data_dir.join("dicom.db"))),
            bus: BusConfig::embedded(sqlite_url(&data_dir.join("bus.db"))),
            blobs: BlobConfig::local(data_dir.join("blobs")),
            auth: AuthSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

#[derive(Clone)]
pub struct Deps {
    pub db: Database,
    pub bus: SharedBus,
    pub blobs: SharedBlobStore,
}

impl Deps {
    pub async fn connect(settings: &Settings) -> Result<Self, StartError> {
        let (db, bus) = connect_db_and_bus(&settings.database, &settings.bus).await?;
        let blobs = hds_core::blob::connect(&settings.blobs.resolve()?).await?;
        blobs.check().await?;
        Ok(Self { db, bus, blobs })
    }
}

pub async fn start(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let deps = Deps::connect(&settings).await?;
    start_with(settings, deps, listener, shutdown).await
}

pub async fn start_with(
    settings: Settings,
    deps: Deps,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let spec = Spec {
        name: NAME,
        kind: ServiceKind::Dicom,
        http: &settings.http,
        auth: &settings.auth,
        lifecycle: Arc::new(instances::DicomInstances {
            blobs: deps.blobs.clone(),
        }),
        db: deps.db,
        bus: deps.bus,
        blobs: Some(deps.blobs),
    };
    dataplane::start::<DicomError, _, _>(spec, dataplane::no_routes, listener, shutdown).await
}
