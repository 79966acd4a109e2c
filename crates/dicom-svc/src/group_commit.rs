//! Group commit of STOW-RS index work: the instances of concurrent store requests are indexed
//! together, in one transaction, with one multi-row statement per table and one commit.
//!
//! Why: a request's index work is a handful of small statements and a commit, and per
//! statement PostgreSQL's fixed costs (parse, plan, executor start, a round trip) dominate; 8
//! concurrent single-instance requests cost 8 x 8 statements and 8 commits apart, 8 statements
//! and 1 commit together. A committer task takes every request waiting when it is free (none
//! is held back to wait for company, so a lone request is not slowed down) and indexes them in
//! one transaction. Each request keeps its guarantees: its rows, change-feed rows and events
//! commit together or not at all. If a statement of a group fails, the transaction is rolled
//! back and each request is indexed again alone, so one request's failure is its own; if the
//! commit itself fails, whether it took effect is unknown, and every request of the group gets
//! the error (as a lone request would).

use prometheus::{IntCounter, IntGauge, Registry};
use tokio::sync::{mpsc, oneshot};

use crate::error::DicomError;
use crate::partitions::DataPartition;
use crate::store::{IndexFailure, NewInstance, Store};

/// Most instances one group takes (a request is never split: a larger one goes alone).
const MAX_GROUP_ROWS: usize = 512;
/// Requests that may wait for the committer before submitters wait for room.
const QUEUE: usize = 1024;

/// What a request gets back: its records, and per record its watermark (`None`: an instance
/// with its UIDs was already stored) or why the request could not be indexed.
pub type Indexed = (Vec<NewInstance>, Result<Vec<Option<i64>>, DicomError>);

struct Job {
    partition: DataPartition,
    records: Vec<NewInstance>,
    reply: oneshot::Sender<Indexed>,
}

#[derive(Clone)]
struct Counters {
    commits: IntCounter,
    requests: IntCounter,
    waiting: IntGauge,
    committing: IntGauge,
}

impl Counters {
    fn new(registry: &Registry) -> Self {
        let counter =
            |name: &str, help: &str| IntCounter::new(name, help).expect("static metric definition");
        let gauge =
            |name: &str, help: &str| IntGauge::new(name, help).expect("static metric definition");
        let c = Self {
            commits: counter(
                "dicom_group_commits_total",
                "Transactions that indexed STOW-RS requests",
            ),
            requests: counter(
                "dicom_group_requests_total",
                "STOW-RS requests indexed in group transactions",
            ),
            waiting: gauge(
                "dicom_group_requests_waiting",
                "STOW-RS requests waiting for the committer",
            ),
            committing: gauge(
                "dicom_group_requests_committing",
                "STOW-RS requests in the group being indexed",
            ),
        };
        for m in [
            Box::new(c.commits.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(c.requests.clone()),
            Box::new(c.waiting.clone()),
            Box::new(c.committing.clone()),
        ] {
            // Each service has its own registry; a second registration cannot happen here.
            let _ = registry.register(m);
        }
        c
    }
}

/// The handle requests submit to; the committer task ends when the last handle is dropped.
#[derive(Clone)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
    counters: Counters,
}

impl GroupCommit {
    pub fn start(store: Store, registry: &Registry) -> Self {
        let (jobs, rx) = mpsc::channel(QUEUE);
        let counters = Counters::new(registry);
        tokio::spawn(committer(store, rx, counters.clone()));
        Self { jobs, counters }
    }

    /// Indexes one request's instances in the next group; answers once it is committed.
    pub async fn index(&self, partition: DataPartition, records: Vec<NewInstance>) -> Indexed {
        if records.is_empty() {
            return (records, Ok(Vec::new()));
        }
        let (reply, answer) = oneshot::channel();
        self.counters.waiting.inc();
        let job = Job {
            partition,
            records,
            reply,
        };
        if let Err(mpsc::error::SendError(job)) = self.jobs.send(job).await {
            self.counters.waiting.dec();
            return (job.records, Err(stopping()));
        }
        match answer.await {
            Ok(indexed) => indexed,
            // The committer is gone (the service is stopping); the records went with it, and
            // the caller still has the blob keys it wrote.
            Err(_) => (Vec::new(), Err(stopping())),
        }
    }
}

fn stopping() -> DicomError {
    DicomError::Unavailable("the service is stopping".into())
}

async fn committer(store: Store, mut rx: mpsc::Receiver<Job>, counters: Counters) {
    while let Some(first) = rx.recv().await {
        let mut rows = first.records.len();
        let mut group = vec![first];
        while rows < MAX_GROUP_ROWS {
            match rx.try_recv() {
                Ok(job) => {
                    rows += job.records.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        counters.waiting.sub(group.len() as i64);
        counters.committing.set(group.len() as i64);
        commit_group(&store, group, &counters).await;
        counters.committing.set(0);
    }
}

/// Indexes `jobs` in one transaction and answers each.
async fn commit_group(store: &Store, jobs: Vec<Job>, counters: &Counters) {
    let result = {
        let rows: Vec<(&DataPartition, &NewInstance)> = jobs
            .iter()
            .flat_map(|j| j.records.iter().map(move |r| (&j.partition, r)))
            .collect();
        store.index_group(&rows).await
    };
    match result {
        Ok(watermarks) => {
            counters.commits.inc();
            counters.requests.inc_by(jobs.len() as u64);
            // Split the group's answer back into the requests', in order.
            let mut rest = watermarks.into_iter();
            for job in jobs {
                let mine: Vec<Option<i64>> = rest.by_ref().take(job.records.len()).collect();
                let _ = job.reply.send((job.records, Ok(mine)));
            }
        }
        Err(IndexFailure::Statement(e)) if jobs.len() > 1 => {
            // Rolled back: nothing of the group is stored. Each request again, alone.
            tracing::warn!(error = %e, requests = jobs.len(), "a grouped index transaction failed; indexing its requests one by one");
            for job in jobs {
                let rows: Vec<(&DataPartition, &NewInstance)> =
                    job.records.iter().map(|r| (&job.partition, r)).collect();
                let alone = store.index_group(&rows).await;
                drop(rows);
                if alone.is_ok() {
                    counters.commits.inc();
                    counters.requests.inc();
                }
                let _ = job
                    .reply
                    .send((job.records, alone.map_err(IndexFailure::into_error)));
            }
        }
        Err(failure) => {
            let e = failure.into_error();
            let mut jobs = jobs.into_iter();
            // The first request gets the error itself (its status and log line); the others
            // the same answer, as a message.
            let others = DicomError::Unavailable(e.to_string());
            if let Some(first) = jobs.next() {
                let _ = first.reply.send((first.records, Err(e)));
            }
            for job in jobs {
                let again = DicomError::Unavailable(others.to_string());
                let _ = job.reply.send((job.records, Err(again)));
            }
        }
    }
}
