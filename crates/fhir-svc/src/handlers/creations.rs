//! A transaction's creations (POST with a server-assigned id, PUT of an id that does not
//! exist) made on other threads.
//!
//! Turning a resource into its rows (validation, index extraction, serialisation) is most of
//! the service's work in a large transaction, and it reads nothing from the database. So
//! while the request's thread queues one batch of creations in the transaction and drives
//! the database, the next batches are made on the blocking pool; they come back in order.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hds_core::names::InstanceName;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::domain::{ResourceId, ResourceType};
use crate::error::FhirError;
use crate::search::custom::InstanceParams;
use crate::store::{self, Method, NewResource, WriteTx, Written};

/// Creations made per task: enough to outweigh a task's cost.
const BATCH: usize = 32;
/// Batches being made at once, ahead of the one being queued.
const AHEAD: usize = 2;

/// A creation to make: the entry's index in the bundle, and what to create.
pub struct Creation {
    pub entry: usize,
    pub resource_type: ResourceType,
    pub id: ResourceId,
    /// POST, or PUT of an id that does not exist.
    pub method: Method,
    pub resource: Value,
}

type Made = Vec<(usize, Result<NewResource, FhirError>)>;

pub struct Creations {
    instance: InstanceName,
    /// The instance's custom search parameters, indexed with R4's.
    custom: Arc<InstanceParams>,
    at: DateTime<Utc>,
    batch: Vec<Creation>,
    /// Batches being made, each with the resource types it creates.
    making: VecDeque<(Vec<ResourceType>, JoinHandle<Made>)>,
}

impl Creations {
    pub fn new(instance: &InstanceName, custom: Arc<InstanceParams>) -> Self {
        Self {
            instance: instance.clone(),
            custom,
            at: Utc::now(),
            batch: Vec::with_capacity(BATCH),
            making: VecDeque::new(),
        }
    }

    /// Adds a creation; queues in `tx` those made meanwhile, calling `done` with each entry's
    /// index, what was written and the stored text (the version carries no body). The first failure ends it, with the entry's index.
    pub async fn push(
        &mut self,
        tx: &mut WriteTx,
        c: Creation,
        done: &mut impl FnMut(usize, Written, String),
    ) -> Result<(), (usize, FhirError)> {
        self.batch.push(c);
        if self.batch.len() == BATCH {
            self.start_batch();
        }
        while self.making.len() > AHEAD {
            self.queue_next(tx, done).await?;
        }
        Ok(())
    }

    /// Makes and queues every creation added so far: before anything reads the transaction.
    pub async fn finish(
        &mut self,
        tx: &mut WriteTx,
        done: &mut impl FnMut(usize, Written, String),
    ) -> Result<(), (usize, FhirError)> {
        self.start_batch();
        while !self.making.is_empty() {
            self.queue_next(tx, done).await?;
        }
        Ok(())
    }

    /// Whether a creation added and not yet queued in the transaction is of one of `types`:
    /// only then must a search over them wait for [`Creations::finish`].
    pub fn makes_any(&self, types: &HashSet<String>) -> bool {
        let pending = |rt: &ResourceType| types.contains(rt.as_str());
        self.batch.iter().any(|c| pending(&c.resource_type))
            || self.making.iter().any(|(made, _)| made.iter().any(pending))
    }

    fn start_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        let mut types: Vec<ResourceType> = Vec::new();
        for c in &batch {
            if !types.contains(&c.resource_type) {
                types.push(c.resource_type.clone());
            }
        }
        let (instance, at, custom) = (self.instance.clone(), self.at, self.custom.clone());
        let task = tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .map(|c| {
                    let made = NewResource::prepare(
                        &instance,
                        &c.resource_type,
                        &c.id,
                        c.method,
                        c.resource,
                        at,
                        false,
                        &custom,
                    );
                    (c.entry, made)
                })
                .collect()
        });
        self.making.push_back((types, task));
    }

    async fn queue_next(
        &mut self,
        tx: &mut WriteTx,
        done: &mut impl FnMut(usize, Written, String),
    ) -> Result<(), (usize, FhirError)> {
        let Some((_, task)) = self.making.pop_front() else {
            return Ok(());
        };
        let made = task
            .await
            .map_err(|e| (0, FhirError::Internal(format!("making creations: {e}"))))?;
        for (entry, new) in made {
            let new = new.map_err(|e| (entry, e))?;
            let (written, text) = store::create_in(tx, &self.instance, new)
                .await
                .map_err(|e| (entry, e))?;
            done(entry, written, text);
        }
        Ok(())
    }
}
