//! dicom-svc: DICOMweb and Azure's DICOM service additions, one API per instance
//! (`/{workspace}-{service}/v2/...`). Original instances live in the blob store under the
//! instance's prefix; the index lives in the database.
//!
//! A library first: [`start`] wires dependencies from [`Settings`]; [`start_with`] takes them
//! ready-made (`hds up` passes the embedded ones, tests their own). The folder reads like
//! PS3.18: `stow/` stores, `wado/` retrieves, `qido/` searches, `delete` deletes,
//! `changefeed` is Azure's change feed, `partitions` its data partitions, `dicomweb/` holds the wire
//! formats, `store` the index and blobs, `routes` is where URLs meet handlers.

pub mod attributes;
pub mod changefeed;
mod cors_middleware;
pub mod delete;
pub mod dicomweb;
pub mod domain;
pub mod error;
pub mod group_commit;
pub mod http;
pub mod instances;
pub mod partitions;
pub mod person_name;
pub mod qido;
pub mod relay_wake;
pub mod routes;
pub mod store;
pub mod stow;
pub mod wado;

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use actix_web::web;
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
    #[serde(default)]
    pub dicom: DicomSettings,
}
hds_core::service_settings!(Settings);

/// `[dicom]`: limits of the DICOMweb API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DicomSettings {
    /// The largest instance (part) a STOW-RS request may carry. A part is held in memory
    /// while it is read and checked, so this bounds the memory of one request.
    #[serde(
        default = "default_max_part_bytes",
        deserialize_with = "hds_core::config::lenient"
    )]
    pub max_part_bytes: usize,
}

fn default_max_part_bytes() -> usize {
    512 * 1024 * 1024
}

impl Default for DicomSettings {
    fn default() -> Self {
        Self {
            max_part_bytes: default_max_part_bytes(),
        }
    }
}

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
            dicom: DicomSettings::default(),
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
    deps.db.migrate(&store::migrations()).await?;
    deps.bus
        .ensure_topic(
            hds_core::events::topics::DICOM_INSTANCES,
            hds_core::provisioning::TOPIC_PARTITIONS,
        )
        .await?;
    let spec = Spec {
        name: NAME,
        kind: ServiceKind::Dicom,
        http: &settings.http,
        auth: &settings.auth,
        lifecycle: Arc::new(instances::DicomInstances {
            blobs: deps.blobs.clone(),
        }),
        db: deps.db.clone(),
        bus: deps.bus,
        blobs: Some(deps.blobs.clone()),
    };
    let max_part_bytes = settings.dicom.max_part_bytes;
    let public_base_url = settings.http.public_base_url.clone();
    let (db, blobs) = (deps.db, deps.blobs);
    dataplane::start::<DicomError, _, _>(
        spec,
        move |handles| {
            let store = store::Store::new(db, blobs, Some(handles.relay.clone()));
            let state = web::Data::new(http::DicomState {
                index: group_commit::GroupCommit::start(store.clone(), handles.metrics.registry()),
                store,
                max_part_bytes,
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
