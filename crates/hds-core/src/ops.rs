//! The operational surface every service shares: `/health/live`, `/health/ready`,
//! `/metrics`, request spans and metrics, the listening rules, graceful shutdown.
//!
//! These are not API routes (each service owns its API and its error shape); they are how an
//! orchestrator sees a service, and they must behave the same in all four.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpResponse, HttpServer};
use futures::future::BoxFuture;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::AuthSettings;
use crate::config::HttpSettings;

/// Why a service could not start. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Database(#[from] crate::db::DbError),
    #[error(transparent)]
    Bus(#[from] crate::bus::BusError),
    #[error(transparent)]
    Blobs(#[from] crate::blob::BlobError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    #[error("refusing to listen on {0} without authentication: set auth.enabled = true (with auth.issuer, auth.audience and a key), or bind to a loopback address such as 127.0.0.1")]
    UnauthenticatedBind(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// Auth may be off only on loopback.
pub fn check_bind(bind: SocketAddr, auth: &AuthSettings) -> Result<(), StartError> {
    if !auth.enabled && !bind.ip().is_loopback() {
        return Err(StartError::UnauthenticatedBind(bind));
    }
    Ok(())
}

pub fn listen(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).map_err(|source| StartError::Listen { addr, source })
}

/// Cancelled on SIGTERM or Ctrl-C.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        t.cancel();
    });
    token
}

type CheckFn = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The dependencies `/health/ready` checks.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, CheckFn)>,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn check<F, Fut>(mut self, name: &'static str, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push((name, Arc::new(move || Box::pin(f()))));
        self
    }

    pub fn database(self, db: crate::db::Database) -> Self {
        self.check("database", move || {
            let db = db.clone();
            async move { db.check().await.map_err(|e| e.to_string()) }
        })
    }

    pub fn bus(self, bus: crate::bus::SharedBus) -> Self {
        self.check("bus", move || {
            let bus = bus.clone();
            async move { bus.check().await.map_err(|e| e.to_string()) }
        })
    }

    pub fn blobs(self, blobs: crate::blob::SharedBlobStore) -> Self {
        self.check("blobs", move || {
            let blobs = blobs.clone();
            async move { blobs.check().await.map_err(|e| e.to_string()) }
        })
    }

    /// Runs every check (concurrently, each with a timeout): all healthy, and the report.
    pub async fn run(&self) -> (bool, serde_json::Value) {
        let results = futures::future::join_all(self.checks.iter().map(|(name, f)| {
            let f = f.clone();
            async move {
                let r = match tokio::time::timeout(CHECK_TIMEOUT, f()).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
                };
                (*name, r)
            }
        }))
        .await;
        let healthy = results.iter().all(|(_, r)| r.is_ok());
        let checks: serde_json::Map<String, serde_json::Value> = results
            .into_iter()
            .map(|(name, r)| {
                let v = match r {
                    Ok(()) => serde_json::json!({"status": "Healthy"}),
                    Err(e) => serde_json::json!({"status": "Unhealthy", "description": e}),
                };
                (name.to_owned(), v)
            })
            .collect();
        (
            healthy,
            serde_json::json!({
                "status": if healthy { "Healthy" } else { "Unhealthy" },
                "checks": checks,
            }),
        )
    }
}

/// A service's Prometheus registry with the HTTP metrics every service has.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl Metrics {
    pub fn new(service: &str) -> Self {
        let registry = Registry::new_custom(
            None,
            Some([("service".to_owned(), service.to_owned())].into()),
        )
        .expect("static registry labels are valid");
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered"),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from request to response head",
            ),
            &["method", "route"],
        )
        .expect("static metric definition");
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(duration.clone()))
            .expect("registered once");
        Self {
            registry,
            requests,
            duration,
        }
    }

    /// For a service's own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        let _ = encoder.encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "Healthy"}))
}

async fn ready(readiness: web::Data<Readiness>) -> HttpResponse {
    let (healthy, report) = readiness.run().await;
    if healthy {
        HttpResponse::Ok().json(report)
    } else {
        HttpResponse::ServiceUnavailable().json(report)
    }
}

async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.render())
}

/// A span per request, child of the caller's `traceparent`, and the HTTP metrics.
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!("http", %method, %route, path = %req.path(), status = tracing::field::Empty);
    crate::telemetry::set_parent_from_http(&span, req.headers());
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let res = next.call(req).instrument(span.clone()).await?;
    let status = res.status().as_u16();
    span.record("status", status);
    if let Some(m) = metrics {
        m.requests
            .with_label_values(&[method.as_str(), route.as_str(), &status.to_string()])
            .inc();
        m.duration
            .with_label_values(&[method.as_str(), route.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(res)
}

/// A running service: its HTTP server and its background tasks (consumers, relay).
pub struct Running {
    pub addr: SocketAddr,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Waits until the server stopped and every background task finished (after shutdown).
    pub async fn wait(self) {
        match self.server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
            Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Serves `routes` plus the operational endpoints on `listener` until `shutdown`, then stops
/// accepting and lets in-flight requests finish (up to `http.shutdown_timeout_secs`).
pub fn serve<F>(
    listener: TcpListener,
    http: &HttpSettings,
    readiness: Readiness,
    metrics: Metrics,
    routes: F,
    shutdown: CancellationToken,
) -> Result<Running, StartError>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: http.bind,
        source,
    })?;
    // A streamed response goes out as a head and then its body in separate writes; with
    // Nagle's algorithm on, the body waits for the client's delayed ACK of the head (40 ms on
    // Linux) on every response of a reused connection. Accepted sockets inherit TCP_NODELAY
    // from the listener (Linux, BSD); where they do not, nothing changes.
    if let Err(e) = socket2::SockRef::from(&listener).set_tcp_nodelay(true) {
        tracing::warn!(error = %e, "cannot set TCP_NODELAY on the listener");
    }
    let readiness = web::Data::new(readiness);
    let metrics = web::Data::new(metrics);
    let max_body = http.max_body_bytes;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(readiness.clone())
            .app_data(metrics.clone())
            .app_data(web::PayloadConfig::new(max_body))
            .app_data(web::JsonConfig::default().limit(max_body))
            .wrap(from_fn(observe))
            .route("/health/live", web::get().to(live))
            .route("/health/ready", web::get().to(ready))
            .route("/metrics", web::get().to(self::metrics))
            .configure(routes.clone())
    })
    .disable_signals()
    .keep_alive(Duration::from_secs(http.keep_alive_secs))
    .client_request_timeout(Duration::from_secs(http.request_timeout_secs))
    .shutdown_timeout(http.shutdown_timeout_secs)
    .listen(listener)
    .map_err(|source| StartError::Listen { addr, source })?
    .run();
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        handle.stop(true).await;
    });
    Ok(Running {
        addr,
        server: tokio::spawn(server),
        tasks: Vec::new(),
    })
}

/// The caller of an HTTP request, per the service's authenticator.
pub async fn principal(
    req: &actix_web::HttpRequest,
    auth: &crate::auth::Authenticator,
) -> Result<crate::auth::Principal, crate::auth::AuthError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    auth.authenticate(header).await
}

/// Implements [`ServiceSettings`] for a settings struct with `http`, `auth` and `telemetry`
/// fields.
#[macro_export]
macro_rules! service_settings {
    ($t:ty) => {
        impl $crate::ops::ServiceSettings for $t {
            fn http(&self) -> &$crate::config::HttpSettings {
                &self.http
            }
            fn auth(&self) -> &$crate::auth::AuthSettings {
                &self.auth
            }
            fn telemetry(&self) -> &$crate::config::TelemetrySettings {
                &self.telemetry
            }
        }
    };
}

/// Connects the database and the bus a service's settings name, and checks the bus answers.
pub async fn connect_db_and_bus(
    database: &crate::db::DatabaseSettings,
    bus: &crate::config::BusConfig,
) -> Result<(crate::db::Database, crate::bus::SharedBus), StartError> {
    let db = crate::db::Database::connect(database).await?;
    let bus_settings = bus.resolve()?;
    if let crate::config::BusSettings::Embedded(e) = &bus_settings {
        tracing::warn!(
            database = %crate::db::redact_url(&e.database_url),
            "using the embedded event bus: its consumer groups live in this process, so services in other processes cannot share it; set bus.kind = \"kafka\" to run services apart"
        );
    }
    let bus = crate::bus::connect(&bus_settings, None).await?;
    bus.check().await?;
    Ok((db, bus))
}

/// The settings every service binary has.
pub trait ServiceSettings: serde::Serialize + serde::de::DeserializeOwned {
    fn http(&self) -> &HttpSettings;
    fn auth(&self) -> &AuthSettings;
    fn telemetry(&self) -> &crate::config::TelemetrySettings;
}

/// The flags every service binary takes; they override the file and the environment.
#[derive(clap::Parser, Debug, Clone, Default)]
pub struct ServiceArgs {
    /// TOML configuration file.
    #[arg(long, env = "HDS_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Address to listen on (http.bind).
    #[arg(long)]
    pub bind: Option<String>,
    /// postgres://... or sqlite://... (database.url).
    #[arg(long)]
    pub database_url: Option<String>,
    /// text or json (telemetry.log_format).
    #[arg(long)]
    pub log_format: Option<String>,
}

impl ServiceArgs {
    pub fn flags(&self) -> Vec<(&'static str, figment::value::Value)> {
        let mut flags = Vec::new();
        if let Some(v) = &self.bind {
            flags.push(("http.bind", v.clone().into()));
        }
        if let Some(v) = &self.database_url {
            flags.push(("database.url", v.clone().into()));
        }
        if let Some(v) = &self.log_format {
            flags.push(("telemetry.log_format", v.clone().into()));
        }
        flags
    }
}

/// The `main` of a service binary: flags, settings, telemetry, the listening rules, then
/// `start` until SIGTERM. Every failure to start is one line naming what to fix, exit code 2
/// for bad configuration and 1 for anything else; never a panic.
pub fn run_service<S, F, Fut>(
    name: &'static str,
    about: &'static str,
    defaults: S,
    start: F,
) -> std::process::ExitCode
where
    S: ServiceSettings,
    F: FnOnce(S, TcpListener, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<Running, StartError>>,
{
    use clap::{CommandFactory, FromArgMatches};
    let matches = ServiceArgs::command().name(name).about(about).get_matches();
    let args = match ServiceArgs::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    let settings = match crate::config::load(&defaults, args.config.as_deref(), args.flags()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let _telemetry = match crate::telemetry::init(name, settings.telemetry()) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("{name}: {e}");
                return std::process::ExitCode::from(2);
            }
        };
        if let Err(e) = check_bind(settings.http().bind, settings.auth()) {
            eprintln!("{name}: {e}");
            return std::process::ExitCode::from(2);
        }
        if !settings.auth().enabled {
            tracing::warn!(
                "authentication is OFF: every caller may do everything (allowed on loopback only)"
            );
        }
        let listener = match listen(settings.http().bind) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{name}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let shutdown = shutdown_on_signals();
        match start(settings, listener, shutdown).await {
            Ok(running) => {
                tracing::info!(addr = %running.addr, "{name} listening");
                running.wait().await;
                tracing::info!("{name} stopped");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{name}: cannot start: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

/// The authenticated caller of a request, as an extractor. `E` is the service's error type,
/// so a missing or bad token answers 401/403 in the service's own error shape. Needs the
/// service's [`crate::auth::Authenticator`] as `web::Data`.
pub struct Caller<E> {
    pub principal: crate::auth::Principal,
    _error: std::marker::PhantomData<E>,
}

impl<E> Caller<E>
where
    E: From<crate::auth::AuthError>,
{
    pub fn require(&self, permission: crate::auth::Permission) -> Result<(), E> {
        self.principal.require(permission).map_err(E::from)
    }
}

impl<E> actix_web::FromRequest for Caller<E>
where
    E: From<crate::auth::AuthError> + actix_web::ResponseError + 'static,
{
    type Error = E;
    type Future = futures::future::LocalBoxFuture<'static, Result<Self, E>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let auth = req
                .app_data::<web::Data<crate::auth::Authenticator>>()
                .cloned()
                .ok_or_else(|| {
                    E::from(crate::auth::AuthError::Config(
                        "no authenticator registered".into(),
                    ))
                })?;
            let principal = principal(&req, &auth).await.map_err(E::from)?;
            Ok(Caller {
                principal,
                _error: std::marker::PhantomData,
            })
        })
    }
}
