//! Reading the device topic on a task of its own, so that the consumer keeps polling while a
//! window is being written.
//!
//! Kafka drops a consumer from its group when it does not poll for `max.poll.interval.ms`:
//! its partitions go elsewhere and what it wrote but had not committed yet is read again.
//! A window can take longer than that (a FHIR outage keeps it retrying for as long as it
//! lasts), so the worker does not poll itself. The intake task owns the subscription: it
//! reads ahead into a queue the worker takes windows from, and performs the worker's
//! commits, which it receives as commands, between two polls.
//!
//! The queue holds `read_ahead_messages`. When it is full the task still takes one message
//! every `poll_keepalive_ms`, which is what keeps the membership; the queue grows by that one
//! message. It cannot drop it instead: a later commit in the partition would skip it. So a
//! long outage costs one queued message per keep-alive, not the whole backlog.
//!
//! Nothing else may keep the task from polling for long either: a commit to a group
//! coordinator that stalls is waited for at most a keep-alive. (Under `make bench-medtech`
//! tansu's coordinator stopped answering for seconds at a time and the consumer exceeded
//! `max.poll.interval.ms` once; Kafka's synchronous commit can wait up to a minute.)
//!
//! Commits still happen only when the worker asks, after its window is in FHIR or the
//! dead-letter topic; reading ahead commits nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hds_core::bus::{Delivery, Subscription};
use hds_core::CancellationToken;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How the intake reads.
#[derive(Debug, Clone, Copy)]
pub struct ReadAhead {
    /// Messages queued for the worker before the intake slows to keep-alive polls.
    pub messages: usize,
    /// The longest time between two polls while the queue is full.
    pub keepalive: Duration,
}

/// What the intake hands the worker.
pub enum Read {
    /// A message, and when the intake read it.
    Delivery(Delivery, Instant),
    /// Reading failed (the bus is unreachable, or it reported an error); reading goes on.
    Failed(String),
}

enum Command {
    /// Commit these deliveries (the last one of each partition of a window).
    Commit { last: Vec<Delivery> },
}

/// The worker's side of the intake.
pub struct Intake {
    reads: mpsc::UnboundedReceiver<Read>,
    queued: Arc<AtomicUsize>,
    /// Wakes a reader waiting on a full queue.
    room: Arc<Notify>,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

impl Intake {
    /// Starts reading `subscription` on its own task until `shutdown` or [`Intake::close`].
    pub fn spawn(
        subscription: Box<dyn Subscription>,
        read_ahead: ReadAhead,
        shutdown: CancellationToken,
    ) -> Self {
        let (reads_tx, reads) = mpsc::unbounded_channel();
        let (commands, commands_rx) = mpsc::channel(4);
        let queued = Arc::new(AtomicUsize::new(0));
        let room = Arc::new(Notify::new());
        let reader = Reader {
            subscription,
            reads: reads_tx,
            queued: queued.clone(),
            room: room.clone(),
            commands: commands_rx,
            read_ahead,
            shutdown,
        };
        Self {
            reads,
            queued,
            room,
            commands,
            task: tokio::spawn(reader.run()),
        }
    }

    /// The next read; `None` once the intake has stopped. Cancel-safe.
    pub async fn next(&mut self) -> Option<Read> {
        let read = self.reads.recv().await?;
        if matches!(read, Read::Delivery(..)) {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.room.notify_one();
        }
        Some(read)
    }

    /// Has the intake commit, per partition, the last delivery of `window`; returns once the
    /// commit is queued, not done: the intake commits between polls, in order, and the next
    /// window need not wait for the broker (a group coordinator's round trips were a good
    /// part of a window's time under `make bench-medtech`). A failed commit is logged: the
    /// window is written, and at worst it is read again after a restart or rebalance, where
    /// writing it again changes nothing.
    pub async fn commit(&self, window: &[Delivery]) {
        let mut last: BTreeMap<(&str, i32), &Delivery> = BTreeMap::new();
        for d in window {
            let entry = last.entry((d.topic.as_str(), d.partition)).or_insert(d);
            if d.offset > entry.offset {
                *entry = d;
            }
        }
        let command = Command::Commit {
            last: last.into_values().cloned().collect(),
        };
        let _ = self.commands.send(command).await;
    }

    /// Stops reading and leaves the consumer group.
    pub async fn close(self) {
        drop(self.commands);
        drop(self.reads);
        let _ = self.task.await;
    }
}

struct Reader {
    subscription: Box<dyn Subscription>,
    reads: mpsc::UnboundedSender<Read>,
    queued: Arc<AtomicUsize>,
    room: Arc<Notify>,
    commands: mpsc::Receiver<Command>,
    read_ahead: ReadAhead,
    shutdown: CancellationToken,
}

impl Reader {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        // The last poll, for the keep-alive while the queue is full.
        let mut polled = Instant::now();
        loop {
            let full = self.queued.load(Ordering::Acquire) >= self.read_ahead.messages.max(1);
            let keepalive_at = polled + self.read_ahead.keepalive;
            // Both bus implementations' `next` may be dropped without losing a message, so
            // a command, room in the queue or the shutdown may interrupt a poll.
            let next = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                command = self.commands.recv() => match command {
                    Some(Command::Commit { last }) => {
                        self.commit(&last).await;
                        continue;
                    }
                    None => break,
                },
                _ = self.room.notified(), if full => continue,
                next = async {
                    if full {
                        tokio::time::sleep_until(keepalive_at).await;
                    }
                    // Waiting here for a message counts as polling (a quiet topic keeps the
                    // membership: tests/consumer.rs).
                    self.subscription.next().await
                } => next,
            };
            polled = Instant::now();
            let read = match next {
                Ok(d) => {
                    backoff = Duration::from_millis(100);
                    self.queued.fetch_add(1, Ordering::AcqRel);
                    Read::Delivery(d, polled)
                }
                Err(e) => Read::Failed(e.to_string()),
            };
            let failed = matches!(read, Read::Failed(_));
            if self.reads.send(read).is_err() {
                break;
            }
            if failed {
                tokio::select! {
                    _ = self.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        self.subscription.close().await;
    }

    /// Commits the deliveries, waiting at most a keep-alive for all of them together: a
    /// broker whose group coordinator stalls must not stop the polls (Kafka's synchronous
    /// commit can wait a minute). A commit given up on may still land later, in order with the
    /// ones after it; if it never does, the window is read again after a restart or
    /// rebalance, and writing it again changes nothing.
    async fn commit(&mut self, last: &[Delivery]) {
        let subscription = &mut self.subscription;
        let all = async {
            for d in last {
                if let Err(e) = subscription.commit(d).await {
                    tracing::warn!(partition = d.partition, offset = d.offset, error = %e, "commit failed");
                }
            }
        };
        if tokio::time::timeout(self.read_ahead.keepalive, all)
            .await
            .is_err()
        {
            tracing::warn!(
                partitions = last.len(),
                "commits not confirmed in time; polling on"
            );
        }
    }
}
