//! operations-svc: the control plane. It owns the records of workspaces, their services and
//! every long-running operation, serves them as Azure's `Microsoft.HealthcareApis`
//! management API, and provisions data-plane instances by publishing commands on
//! `hds.operations.commands` and following the reports on `hds.operations.status`.
//!
//! A library first: [`start`] wires dependencies from [`Settings`]; [`start_with`] takes them
//! ready-made (`hds up` passes the embedded ones, tests their own).

pub mod body;
pub mod bootstrap;
pub mod changes;
pub mod error;
pub mod operations;
pub mod paging;
pub mod resource_id;
pub mod resources;
pub mod routes;
pub mod status;

use std::net::TcpListener;
use std::path::Path;

use hds_core::auth::{AuthSettings, Authenticator};
use hds_core::bus::SharedBus;
use hds_core::config::{BusConfig, HttpSettings, TelemetrySettings};
use hds_core::db::{sqlite_url, Database, DatabaseSettings, Migrations};
use hds_core::events::topics;
use hds_core::ops::{connect_db_and_bus, serve, Metrics, Readiness, Running, StartError};
use hds_core::outbox::{self, Relay};
use hds_core::provisioning::TOPIC_PARTITIONS;
use hds_core::CancellationToken;
use serde::{Deserialize, Serialize};

pub use bootstrap::Bootstrap;

pub const NAME: &str = "operations-svc";
pub const DEFAULT_PORT: u16 = 8080;
/// The management API version hds implements.
pub const API_VERSION: &str = "2024-03-31";

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
    /// A workspace (and services) to create at start if missing, so a new installation has
    /// working URLs at once.
    #[serde(default)]
    pub bootstrap: Option<Bootstrap>,
    #[serde(default)]
    pub management: ManagementSettings,
}
hds_core::service_settings!(Settings);

/// How the management API talks to ARM clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ManagementSettings {
    /// `Retry-After` (seconds) on long-running answers and unfinished operation results:
    /// how long clients wait between polls. Provisioning takes well under a second locally.
    #[serde(default = "default_retry_after")]
    #[serde(deserialize_with = "hds_core::config::lenient")]
    pub retry_after_secs: u32,
    /// Items on one page of a list when the client sends no `$top` (1 to 1000); more are
    /// reached through `nextLink`.
    #[serde(default = "default_page_size")]
    #[serde(deserialize_with = "hds_core::config::lenient")]
    pub page_size: usize,
    /// dicom-svc's public base URL (e.g. `https://dicom.example.org`): a DICOM service's
    /// `serviceUrl` is `{dicom_base_url}/{workspace}-{service}`. Without it `serviceUrl` is
    /// left out, as operations-svc cannot know where dicom-svc is reached.
    #[serde(default)]
    pub dicom_base_url: Option<String>,
    /// The Entra ID tenant (id or domain) FHIR services show in their default authority,
    /// `https://login.microsoftonline.com/{tenant_id}`, as Azure does for a service created
    /// without one. Unset: the tenant of `[auth] issuer` when that is an Entra ID issuer;
    /// otherwise no default authority is shown.
    #[serde(default)]
    pub tenant_id: Option<String>,
}

fn default_retry_after() -> u32 {
    1
}

fn default_page_size() -> usize {
    100
}

impl Default for ManagementSettings {
    fn default() -> Self {
        Self {
            retry_after_secs: default_retry_after(),
            page_size: default_page_size(),
            dicom_base_url: None,
            tenant_id: None,
        }
    }
}

impl Settings {
    /// Everything local, with the default workspace bootstrapped.
    pub fn local_defaults(data_dir: &Path) -> Self {
        Self {
            http: HttpSettings::new(([127, 0, 0, 1], DEFAULT_PORT).into()),
            database: DatabaseSettings::new(sqlite_url(&data_dir.join("operations.db"))),
            bus: BusConfig::embedded(sqlite_url(&data_dir.join("bus.db"))),
            auth: AuthSettings::default(),
            telemetry: TelemetrySettings::default(),
            bootstrap: Some(Bootstrap::default()),
            management: ManagementSettings {
                dicom_base_url: Some(format!("http://127.0.0.1:{}", DICOM_DEFAULT_PORT)),
                ..ManagementSettings::default()
            },
        }
    }
}

/// dicom-svc's default port, where `hds up` serves it (for `serviceUrl` in local use).
const DICOM_DEFAULT_PORT: u16 = 8082;

pub fn migrations() -> Migrations {
    Migrations {
        postgres: sqlx::migrate!("./migrations/postgres"),
        sqlite: sqlx::migrate!("./migrations/sqlite"),
    }
}

#[derive(Clone)]
pub struct Deps {
    pub db: Database,
    pub bus: SharedBus,
}

impl Deps {
    pub async fn connect(settings: &Settings) -> Result<Self, StartError> {
        let (db, bus) = connect_db_and_bus(&settings.database, &settings.bus).await?;
        Ok(Self { db, bus })
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
    let auth = Authenticator::new(&settings.auth)?;
    if !(1..=paging::MAX_TOP).contains(&settings.management.page_size) {
        return Err(hds_core::config::ConfigError::Invalid(format!(
            "management.page_size must be from 1 to {}, not {}",
            paging::MAX_TOP,
            settings.management.page_size
        ))
        .into());
    }
    deps.db.migrate(&outbox::migrations()).await?;
    deps.db.migrate(&migrations()).await?;
    for topic in [topics::OPERATIONS_COMMANDS, topics::OPERATIONS_STATUS] {
        deps.bus.ensure_topic(topic, TOPIC_PARTITIONS).await?;
    }
    let relay = Relay::new(deps.db.clone(), deps.bus.clone());
    let waker = relay.waker();
    // Subscribe before bootstrapping, so no report of ours can be missed.
    let statuses = status::StatusConsumer::subscribe(deps.db.clone(), &deps.bus).await?;
    if let Some(b) = &settings.bootstrap {
        bootstrap::apply(&deps.db, b)
            .await
            .map_err(|e| StartError::Other(format!("bootstrap: {e}")))?;
        waker.wake();
    }
    let tasks = vec![
        relay.spawn(shutdown.clone()),
        statuses.spawn(shutdown.clone()),
    ];

    let readiness = Readiness::new()
        .database(deps.db.clone())
        .bus(deps.bus.clone());
    let state = routes::AppState {
        auth,
        db: deps.db.clone(),
        relay: waker,
        retry_after_secs: settings.management.retry_after_secs,
        page_size: settings.management.page_size,
        service_urls: resources::ServiceUrls {
            dicom: settings.management.dicom_base_url.clone(),
            tenant: settings
                .management
                .tenant_id
                .clone()
                .filter(|t| !t.trim().is_empty())
                .or_else(|| {
                    settings
                        .auth
                        .issuer
                        .as_deref()
                        .and_then(resources::entra_tenant)
                }),
        },
    };
    let mut running = serve(
        listener,
        &settings.http,
        readiness,
        Metrics::new(NAME),
        move |cfg| routes::configure(cfg, &state),
        shutdown,
    )?;
    running.tasks.extend(tasks);
    Ok(running)
}
