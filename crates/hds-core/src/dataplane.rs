//! What the three data-plane services (FHIR, DICOM, MedTech) share around their own API:
//! start-up (migrations, topics, the outbox relay, the provisioning consumer, the HTTP server
//! with its probes) and the instance routes: `GET /instances`, and a not-found answer for any
//! path no route takes that names the instance when it does not exist.
//!
//! Each service supplies its error type (its wire shape), its [`InstanceLifecycle`] and its
//! API routes.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthError, AuthSettings, Authenticator, Permission};
use crate::blob::SharedBlobStore;
use crate::bus::SharedBus;
use crate::config::HttpSettings;
use crate::db::Database;
use crate::names::{InstanceName, ServiceKind};
use crate::ops::{serve, Caller, Metrics, Readiness, Running, StartError};
use crate::outbox::RelayWaker;
use crate::provisioning::{DataPlane, InstanceLifecycle, InstanceRegistry};

/// A data-plane service's error type: its own wire shape for the shared failures.
pub trait DataPlaneError:
    From<AuthError> + From<sqlx::Error> + ResponseError + Sized + 'static
{
    fn unknown_instance(instance: &InstanceName) -> Self;
    fn not_found(method: &str, path: &str) -> Self;
}

/// One data-plane service, ready to start.
pub struct Spec<'a> {
    pub name: &'static str,
    pub kind: ServiceKind,
    pub http: &'a HttpSettings,
    pub auth: &'a AuthSettings,
    pub db: Database,
    pub bus: SharedBus,
    /// Checked by readiness when the service keeps blobs.
    pub blobs: Option<SharedBlobStore>,
    pub lifecycle: Arc<dyn InstanceLifecycle>,
}

/// What a service's routes may need from the shared machinery.
pub struct Handles {
    pub registry: InstanceRegistry,
    /// Wakes the outbox relay after a commit, so events leave at once.
    pub relay: RelayWaker,
    /// The service's metrics, for its own counters (served at `/metrics`).
    pub metrics: Metrics,
}

/// The routes of a service whose API is still to come: none of its own.
pub fn no_routes(_: &Handles) -> fn(&mut web::ServiceConfig) {
    |_| {}
}

/// Starts the shared background work and the HTTP server with the routes `routes` builds
/// (the service's API) plus the instance routes, until `shutdown`.
pub async fn start<E, B, F>(
    spec: Spec<'_>,
    routes: B,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<Running, StartError>
where
    E: DataPlaneError,
    B: FnOnce(&Handles) -> F,
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let auth = Authenticator::new(spec.auth)?;
    let data_plane = DataPlane::start(
        spec.db.clone(),
        spec.bus.clone(),
        spec.kind,
        spec.name,
        spec.lifecycle,
        shutdown.clone(),
    )
    .await?;
    let mut readiness = Readiness::new().database(spec.db).bus(spec.bus);
    if let Some(blobs) = spec.blobs {
        readiness = readiness.blobs(blobs);
    }
    let registry = data_plane.registry.clone();
    let metrics = Metrics::new(spec.name);
    let routes = routes(&Handles {
        registry: registry.clone(),
        relay: data_plane.relay.clone(),
        metrics: metrics.clone(),
    });
    let mut running = serve(
        listener,
        spec.http,
        readiness,
        metrics,
        move |cfg| {
            cfg.app_data(web::Data::from(auth.clone()))
                .app_data(web::Data::new(registry.clone()))
                .route("/instances", web::get().to(list_instances::<E>))
                .configure(routes.clone())
                .default_service(web::to(unrouted::<E>));
        },
        shutdown,
    )?;
    running.tasks.extend(data_plane.tasks);
    Ok(running)
}

/// `GET /instances`: the instances this service serves.
async fn list_instances<E: DataPlaneError>(
    caller: Caller<E>,
    registry: web::Data<InstanceRegistry>,
) -> Result<HttpResponse, E> {
    caller.require(Permission::Read)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "value": registry.list().await? })))
}

/// Anything no route takes: not found, naming the instance when it does not exist.
async fn unrouted<E: DataPlaneError>(
    req: HttpRequest,
    registry: web::Data<InstanceRegistry>,
) -> Result<HttpResponse, E> {
    let first = req
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    match first.parse::<InstanceName>() {
        Ok(name) if registry.get(&name).await?.is_none() => Err(E::unknown_instance(&name)),
        _ => Err(E::not_found(req.method().as_str(), req.path())),
    }
}
