//! Group commit: concurrent single-resource writes share one database transaction, and so
//! one commit and one fsync.
//!
//! Used on SQLite, where writers take turns at one write lock and each commit syncs the WAL:
//! without it, durable writes per second are capped by the disk's syncs per second. A
//! committer task takes every write waiting at the moment it is free (none is held back to
//! wait for company, so a lone write is not slowed down), runs each under its own savepoint
//! (one that fails is undone alone and answered with its own error) and commits them
//! together. PostgreSQL does not need it: concurrent transactions commit in parallel and
//! its WAL writer flushes the commit records of all of them in one sync.

use std::sync::Arc;

use hds_core::names::InstanceName;
use hds_core::outbox::RelayWaker;
use prometheus::{IntCounter, IntGauge, Registry};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::domain::{ResourceId, ResourceType};
use crate::error::FhirError;
use crate::search::custom::CustomParams;
use crate::store::{self, History, Method, Version, Written};

/// Most writes one commit takes.
const MAX_GROUP: usize = 256;
/// Writes that may wait for the committer before submitters wait for room.
const QUEUE: usize = 4096;

/// One single-resource write.
pub(crate) enum Work {
    Write {
        instance: InstanceName,
        rt: ResourceType,
        id: ResourceId,
        resource: Value,
        method: Method,
        expected: Option<i64>,
        history: History,
    },
    Delete {
        instance: InstanceName,
        rt: ResourceType,
        id: ResourceId,
        hard: bool,
        history: History,
    },
}

pub(crate) enum Done {
    Written(Written),
    Deleted(Option<Version>),
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Done, FhirError>>,
}

#[derive(Clone)]
struct Counters {
    commits: IntCounter,
    writes: IntCounter,
    waiting: IntGauge,
    committing: IntGauge,
}

impl Counters {
    fn new(registry: &Registry) -> Self {
        let commits = IntCounter::new(
            "fhir_group_commits_total",
            "Commits of grouped single-resource writes",
        )
        .expect("static metric definition");
        let writes = IntCounter::new(
            "fhir_group_writes_total",
            "Single-resource writes committed in groups",
        )
        .expect("static metric definition");
        let waiting = IntGauge::new(
            "fhir_group_writes_waiting",
            "Writes waiting for the committer",
        )
        .expect("static metric definition");
        let committing = IntGauge::new(
            "fhir_group_writes_committing",
            "Writes in the group being committed",
        )
        .expect("static metric definition");
        for m in [
            Box::new(commits.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(writes.clone()),
            Box::new(waiting.clone()),
            Box::new(committing.clone()),
        ] {
            // A second service in one process (tests) brings its own registry; never twice here.
            let _ = registry.register(m);
        }
        Self {
            commits,
            writes,
            waiting,
            committing,
        }
    }
}

/// The handle writers submit to; the committer task ends when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    jobs: mpsc::Sender<Job>,
    counters: Counters,
}

impl GroupCommit {
    pub(crate) fn start(
        db: hds_core::db::Database,
        relay: Option<RelayWaker>,
        registry: &Registry,
        custom: Arc<CustomParams>,
    ) -> Self {
        let (jobs, rx) = mpsc::channel(QUEUE);
        let counters = Counters::new(registry);
        tokio::spawn(committer(db, rx, relay, counters.clone(), custom));
        Self { jobs, counters }
    }

    /// Runs `work` in the next group and answers once that group is committed.
    pub(crate) async fn submit(&self, work: Work) -> Result<Done, FhirError> {
        let (reply, answer) = oneshot::channel();
        self.counters.waiting.inc();
        if self.jobs.send(Job { work, reply }).await.is_err() {
            self.counters.waiting.dec();
            return Err(FhirError::Unavailable("the service is stopping".into()));
        }
        answer
            .await
            .map_err(|_| FhirError::Unavailable("the service is stopping".into()))?
    }
}

async fn committer(
    db: hds_core::db::Database,
    mut rx: mpsc::Receiver<Job>,
    relay: Option<RelayWaker>,
    counters: Counters,
    custom: Arc<CustomParams>,
) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        counters.waiting.sub(group.len() as i64);
        counters.committing.set(group.len() as i64);
        let size = group.len() as u64;
        let committed = commit_group(&db, group, &custom).await;
        counters.committing.set(0);
        if committed {
            counters.commits.inc();
            counters.writes.inc_by(size);
            if let Some(r) = &relay {
                r.wake();
            }
        }
    }
}

/// Runs and commits one group; says whether it committed.
async fn commit_group(
    db: &hds_core::db::Database,
    group: Vec<Job>,
    custom: &Arc<CustomParams>,
) -> bool {
    let mut tx = match store::WriteTx::begin(db, custom.clone()).await {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(error = %e, "group commit: cannot begin");
            for job in group {
                let _ = job.reply.send(Err(unavailable()));
            }
            return false;
        }
    };
    let mut answers = Vec::with_capacity(group.len());
    for Job { work, reply } in group {
        let result = tx.isolated(async move |tx| run(tx, work).await).await;
        answers.push((reply, result));
    }
    let committed = match tx.commit().await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "group commit failed");
            false
        }
    };
    for (reply, result) in answers {
        let result = match result {
            Ok(_) if !committed => Err(unavailable()),
            other => other,
        };
        let _ = reply.send(result);
    }
    committed
}

fn unavailable() -> FhirError {
    FhirError::Unavailable("the write could not be committed; retry".into())
}

async fn run(tx: &mut store::WriteTx, work: Work) -> Result<Done, FhirError> {
    match work {
        Work::Write {
            instance,
            rt,
            id,
            resource,
            method,
            expected,
            history,
        } => store::write_in(tx, &instance, &rt, &id, resource, method, expected, history)
            .await
            .map(Done::Written),
        Work::Delete {
            instance,
            rt,
            id,
            hard,
            history,
        } => store::delete_in(tx, &instance, &rt, &id, hard, history)
            .await
            .map(Done::Deleted),
    }
}
