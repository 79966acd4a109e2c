//! The pipeline: one [`worker`] per configured instance, reading its device topic and writing
//! Observations to its FHIR service ([`flush`]: normalize, group, [`resolve`], [`upsert`];
//! [`deadletter`] for what cannot be written).
//!
//! [`Pipelines`] keeps the workers in step with the configuration: a worker runs for every
//! provisioned instance whose device mapping, FHIR mapping and destination are all set; a
//! changed configuration reaches its worker at once (through a watch channel, no restart),
//! from this process' API immediately and from other replicas' within `reload_interval_ms`.
//! A change of the topic or consumer group (the connector's `ingestionEndpointConfiguration`)
//! is a new subscription: the worker stops, leaving the old group, and a new one starts.

pub mod deadletter;
pub mod event;
pub mod failure;
pub mod fhir_client;
pub mod fhir_token;
pub mod flush;
pub mod intake;
pub mod resolve;
pub mod upsert;
pub mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hds_core::bus::SharedBus;
use hds_core::db::Database;
use hds_core::names::InstanceName;
use hds_core::CancellationToken;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use crate::config::{store, DeviceSource, LoadedConfig};
use crate::metrics::PipelineMetrics;
use crate::settings::MedtechSettings;

/// What every worker shares.
pub struct Context {
    pub bus: SharedBus,
    pub fhir: fhir_client::FhirClient,
    pub resolver: resolve::Resolver,
    pub metrics: PipelineMetrics,
    pub settings: MedtechSettings,
}

impl Context {
    /// `tokens`: how calls to fhir-svc authenticate (`None`: without a token).
    pub fn new(
        bus: SharedBus,
        metrics: PipelineMetrics,
        settings: MedtechSettings,
        tokens: Option<fhir_token::FhirTokens>,
    ) -> Self {
        let fhir = fhir_client::FhirClient::new(
            Duration::from_millis(settings.fhir_timeout_ms),
            tokens.map(Arc::new),
        );
        Self {
            bus,
            resolver: resolve::Resolver::new(
                fhir.clone(),
                Duration::from_secs(settings.identity_cache_secs),
            ),
            fhir,
            metrics,
            settings,
        }
    }
}

struct RunningWorker {
    /// What the worker subscribed to; fixed for its life.
    source: DeviceSource,
    config: watch::Sender<Arc<LoadedConfig>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

#[derive(Clone)]
pub struct Pipelines {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    workers: Mutex<HashMap<String, RunningWorker>>,
    /// Instances being deleted: not restarted until their row is gone (or a minute passed,
    /// should the deletion have failed).
    stopped: Mutex<HashMap<String, Instant>>,
}

impl Pipelines {
    pub fn new(db: Database, ctx: Context, shutdown: CancellationToken) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                ctx: Arc::new(ctx),
                shutdown,
                workers: Mutex::default(),
                stopped: Mutex::default(),
            }),
        }
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.inner.ctx
    }

    /// Brings one instance's worker in line with its stored configuration.
    pub async fn refresh(&self, instance: &InstanceName) -> Result<(), sqlx::Error> {
        let name = instance.to_string();
        let mut workers = self.inner.workers.lock().await;
        if self.is_stopped(&name).await {
            return Ok(());
        }
        let provisioned = sqlx::query("SELECT name FROM instances WHERE name = $1")
            .bind(&name)
            .fetch_optional(self.inner.db.pool())
            .await?
            .is_some();
        let loaded = if provisioned {
            match store::get(&self.inner.db, &name).await?.load() {
                Ok(c) => Some(c),
                Err(why) => {
                    tracing::debug!(instance = %name, reason = %why, "no pipeline for the instance yet");
                    None
                }
            }
        } else {
            None
        };
        match (loaded, workers.get(&name)) {
            (Some(config), Some(running)) => {
                let source = config.source(instance);
                if running.source != source {
                    tracing::info!(instance = %name, topic = %source.topic, group = %source.group, "device source changed; resubscribing");
                    if let Some(w) = workers.remove(&name) {
                        // Leaves the old group; a window not yet written stays uncommitted there.
                        w.stop.cancel();
                        let _ = w.task.await;
                    }
                    workers.insert(name, self.spawn_worker(instance, config));
                } else if running.config.borrow().revision != config.revision {
                    tracing::info!(instance = %name, revision = config.revision, "configuration changed");
                    running.config.send_replace(Arc::new(config));
                }
            }
            (Some(config), None) => {
                workers.insert(name, self.spawn_worker(instance, config));
            }
            (None, Some(_)) => {
                if let Some(w) = workers.remove(&name) {
                    w.stop.cancel();
                    let _ = w.task.await;
                }
            }
            (None, None) => {}
        }
        Ok(())
    }

    fn spawn_worker(&self, instance: &InstanceName, config: LoadedConfig) -> RunningWorker {
        let source = config.source(instance);
        let (tx, rx) = watch::channel(Arc::new(config));
        let stop = self.inner.shutdown.child_token();
        let worker = worker::Worker {
            instance: instance.clone(),
            source: source.clone(),
            ctx: self.inner.ctx.clone(),
            config: rx,
            shutdown: stop.clone(),
        };
        RunningWorker {
            source,
            config: tx,
            stop,
            task: tokio::spawn(worker.run()),
        }
    }

    async fn is_stopped(&self, name: &str) -> bool {
        let mut stopped = self.inner.stopped.lock().await;
        match stopped.get(name) {
            Some(at) if at.elapsed() < Duration::from_secs(60) => true,
            Some(_) => {
                stopped.remove(name);
                false
            }
            None => false,
        }
    }

    /// Every instance: start, update or stop workers to match the database.
    pub async fn refresh_all(&self) -> Result<(), sqlx::Error> {
        let known = store::revisions(&self.inner.db).await?;
        let names: Vec<String> = known.iter().map(|(n, _)| n.clone()).collect();
        self.inner
            .stopped
            .lock()
            .await
            .retain(|n, _| names.contains(n));
        let mut check: Vec<String> = names;
        check.extend(self.inner.workers.lock().await.keys().cloned());
        check.sort();
        check.dedup();
        for name in check {
            if let Ok(instance) = name.parse::<InstanceName>() {
                self.refresh(&instance).await?;
            }
        }
        Ok(())
    }

    /// Stops an instance's worker for good (its instance is being deleted).
    pub async fn stop(&self, instance: &InstanceName) {
        let name = instance.to_string();
        let mut workers = self.inner.workers.lock().await;
        self.inner
            .stopped
            .lock()
            .await
            .insert(name.clone(), Instant::now());
        if let Some(w) = workers.remove(&name) {
            w.stop.cancel();
            let _ = w.task.await;
        }
    }

    /// Looks for configuration changes every `reload_interval_ms` until shutdown, then waits
    /// for every worker to finish.
    pub fn spawn(&self) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let every = Duration::from_millis(this.inner.ctx.settings.reload_interval_ms.max(100));
            loop {
                if let Err(e) = this.refresh_all().await {
                    tracing::warn!(error = %e, "reading the MedTech configuration failed");
                }
                tokio::select! {
                    _ = this.inner.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
            let workers: Vec<RunningWorker> = this
                .inner
                .workers
                .lock()
                .await
                .drain()
                .map(|(_, w)| w)
                .collect();
            for w in workers {
                w.stop.cancel();
                let _ = w.task.await;
            }
        })
    }
}
