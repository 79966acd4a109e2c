//! The database seam: one sqlx pool over PostgreSQL (deployed) or SQLite (embedded).
//!
//! Both backends go through sqlx's `Any` driver, so storage code is written once. SQL is kept
//! to the dialect both understand (`$1` placeholders, `ON CONFLICT ... DO UPDATE`,
//! `RETURNING`); where a service needs more, [`Database::backend`] tells which it has.
//! Migrations are embedded per service and per backend and run at start.
//!
//! SQLite is opened in WAL mode with `synchronous=FULL`: a committed transaction survives a
//! crash of the process and of the machine, which the embedded event bus relies on. Its
//! write transactions begin `IMMEDIATE` (see [`Database::begin`]).

mod rows;

pub use rows::{insert_all, Cell, Column, Rows, SqlType};

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, ConnectOptions, Connection, Executor, Transaction};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://user@host:port/db` or `sqlite://path/to/file.db`.
    pub url: String,
    /// PostgreSQL only: the schema this service keeps its tables in (created if missing), so
    /// that several services or test runs can share one database.
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default = "default_max_connections")]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub max_connections: u32,
    #[serde(default = "default_acquire_timeout_secs")]
    #[serde(deserialize_with = "crate::config::lenient")]
    pub acquire_timeout_secs: u64,
}

fn default_max_connections() -> u32 {
    10
}
fn default_acquire_timeout_secs() -> u64 {
    10
}

impl DatabaseSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: None,
            max_connections: default_max_connections(),
            acquire_timeout_secs: default_acquire_timeout_secs(),
        }
    }
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The backend behind a connection (or a transaction, through `&**tx`), for code that has
    /// the connection and not the [`Database`].
    pub fn of(conn: &sqlx::AnyConnection) -> Backend {
        if conn.backend_name() == "PostgreSQL" {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database.url '{0}' is not supported: use postgres://... or sqlite://...")]
    UnsupportedUrl(String),
    #[error("database.schema '{0}' is invalid: use lowercase letters, digits and '_'")]
    BadSchema(String),
    #[error("cannot connect to the database at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    #[error("cannot create the folder for the SQLite file {path}: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The migrations of one component, for each backend.
pub struct Migrations {
    pub postgres: Migrator,
    pub sqlite: Migrator,
}

#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    settings: DatabaseSettings,
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

impl Database {
    /// A new pool on the same database. A PostgreSQL connection belongs to the Tokio runtime
    /// that opened it, so a service started again on other runtimes needs its own pool.
    pub async fn reopen(&self) -> Result<Self, DbError> {
        Self::connect(&self.settings).await
    }

    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let url = settings.url.as_str();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(DbError::UnsupportedUrl(redact_url(url)));
        };
        let connect_err = |source| DbError::Connect {
            url: redact_url(url),
            source,
        };

        let options = AnyConnectOptions::from_str(&sqlite_create_mode(url))
            .map_err(connect_err)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let pool_options = AnyPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs));

        let pool = match backend {
            Backend::Postgres => {
                let schema = settings.schema.clone();
                if let Some(schema) = &schema {
                    if schema.is_empty()
                        || !schema
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    {
                        return Err(DbError::BadSchema(schema.clone()));
                    }
                    let mut conn = options.connect().await.map_err(connect_err)?;
                    conn.execute(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"").as_str())
                        .await?;
                    conn.close().await?;
                }
                pool_options
                    .after_connect(move |conn, _meta| {
                        let schema = schema.clone();
                        Box::pin(async move {
                            if let Some(schema) = schema {
                                conn.execute(format!("SET search_path TO \"{schema}\"").as_str())
                                    .await?;
                            }
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await
                    .map_err(connect_err)?
            }
            Backend::Sqlite => {
                if let Some(path) = sqlite_path(url) {
                    if let Some(parent) = std::path::Path::new(&path).parent() {
                        if !parent.as_os_str().is_empty() {
                            std::fs::create_dir_all(parent).map_err(|source| DbError::Folder {
                                path: path.clone(),
                                source,
                            })?;
                        }
                    }
                }
                pool_options
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                 PRAGMA busy_timeout = 30000; PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await
                    .map_err(connect_err)?
            }
        };
        Ok(Self {
            pool,
            backend,
            settings: settings.clone(),
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs one component's migrations. Components sharing a database keep distinct version
    /// numbers (hds-core uses 1-999, services 1000 and up), so each ignores the others' rows.
    pub async fn migrate(&self, migrations: &Migrations) -> Result<(), DbError> {
        let migrator = match self.backend {
            Backend::Postgres => &migrations.postgres,
            Backend::Sqlite => &migrations.sqlite,
        };
        let mut migrator = Migrator {
            migrations: migrator.migrations.clone(),
            ..Migrator::DEFAULT
        };
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// A transaction for a change. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`): a transaction that reads first and writes later could otherwise fail with
    /// "database is locked" when another writer came in between, which waiting cannot cure.
    pub async fn begin(&self) -> Result<Transaction<'static, Any>, DbError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Readiness: one round trip.
    pub async fn check(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await
    }
}

/// SQLite files are created when missing.
fn sqlite_create_mode(url: &str) -> String {
    if url.starts_with("sqlite:") && !url.contains("mode=") && !url.contains(":memory:") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}mode=rwc")
    } else {
        url.to_owned()
    }
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_owned())
}

/// A SQLite URL for a file.
pub fn sqlite_url(path: &std::path::Path) -> String {
    format!("sqlite://{}", path.display())
}
