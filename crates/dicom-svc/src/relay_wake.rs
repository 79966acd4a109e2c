//! Wakes the outbox relay after commits, at most once per [`COALESCE`].
//!
//! Waking it after every commit made the relay publish one event per pass at concurrency 1:
//! per event a select, a Kafka produce and a delete, as much work as indexing the instance.
//! Waking it once for the commits of a short window lets one pass take all their events. An
//! event leaves at most `COALESCE` later than it would have; none is lost or reordered (the
//! outbox holds them, and the relay also polls on its own).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hds_core::outbox::RelayWaker;

/// How long the commits that share one wake may be apart.
const COALESCE: Duration = Duration::from_millis(10);

#[derive(Clone)]
pub struct CoalescingWaker {
    relay: RelayWaker,
    /// A wake is scheduled and has not happened yet.
    scheduled: Arc<AtomicBool>,
}

impl CoalescingWaker {
    pub fn new(relay: RelayWaker) -> Self {
        Self {
            relay,
            scheduled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Wakes the relay within `COALESCE`, once for every commit until then. Call it inside
    /// a Tokio runtime.
    pub fn wake(&self) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let (relay, scheduled) = (self.relay.clone(), self.scheduled.clone());
        tokio::spawn(async move {
            tokio::time::sleep(COALESCE).await;
            // Cleared first: a commit from now on schedules the next wake, and this one
            // covers every commit before it.
            scheduled.store(false, Ordering::Release);
            relay.wake();
        });
    }
}
