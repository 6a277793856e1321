//! Pruning of the outbox: with `[events] retention_ms` set, dispatchers remove events older
//! than that, with their deliveries and attempts, once no sink still waits for them.
//!
//! An event is kept whatever its age while any of its deliveries is pending (a sink that is
//! failing, disabled or simply behind never loses an event), and removed whole otherwise, so
//! that `GET /admin/events/{id}` never shows an event without its history.
//!
//! Pruning walks the events in id order from where its last pass stopped, a window of a
//! thousand events per transaction (the SQLite writer is shared with every request, so no
//! transaction may hold it long), and stops at the first event too young: ids grow with time,
//! so what follows is younger still. The pass after one that got there starts over from the
//! oldest event, so that an event passed over because it was pending goes once its sink has
//! it; deleted events are not walked again, only those still kept. Several dispatchers may
//! prune at once: they delete the same rows, and an event is only ever removed by a
//! statement that checks its age and its deliveries itself.

use std::time::{Duration, Instant};

use crate::args;
use crate::store::{Store, StoreError};

/// Events one pruning transaction looks at.
const WINDOW: i64 = 1000;
/// Windows one pass goes through at most, before leaving the rest to the next pass.
const WINDOWS_PER_PASS: usize = 100;
/// How often a dispatcher prunes (more often when the retention is shorter).
const EVERY: Duration = Duration::from_secs(60);

/// The events of one window that may go: old enough, in the id range, and with no pending
/// delivery. Its parameters: the range's bounds (exclusive, inclusive) and the age cutoff.
macro_rules! prunable_events {
    () => {
        "SELECT e.id FROM events e WHERE e.id > ? AND e.id <= ? AND e.created_at < ? \
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = 'pending')"
    };
}

/// A dispatcher's pruning: when its next pass is due, and the event id it starts after.
pub struct Pruner {
    retention_ms: u64,
    every: Duration,
    after: i64,
    last_pass: Option<Instant>,
}

impl Pruner {
    /// Prunes nothing when `retention_ms` is 0.
    pub fn new(retention_ms: u64) -> Self {
        Self {
            retention_ms,
            every: EVERY.min(Duration::from_millis(retention_ms)),
            after: 0,
            last_pass: None,
        }
    }

    /// Runs a pass when one is due; a failed pass is logged and tried again when the next is.
    pub async fn prune_if_due(&mut self, store: &Store, now_ms: i64) {
        if self.retention_ms == 0 || self.last_pass.is_some_and(|at| at.elapsed() < self.every) {
            return;
        }
        self.last_pass = Some(Instant::now());
        match prune(store, self.retention_ms, self.after, now_ms).await {
            Ok(after) => self.after = after,
            Err(e) => tracing::warn!(error = %e, "cannot prune old events"),
        }
    }
}

/// One pass: removes events created before `now_ms - retention_ms` that no sink waits for,
/// starting after event id `after`. Answers the id the next pass starts after: where this one
/// stopped when it ran out of windows, else 0 (it reached the events too young to go).
async fn prune(
    store: &Store,
    retention_ms: u64,
    mut after: i64,
    now_ms: i64,
) -> Result<i64, StoreError> {
    let cutoff = now_ms.saturating_sub(i64::try_from(retention_ms).unwrap_or(i64::MAX));
    for _ in 0..WINDOWS_PER_PASS {
        let (last, more) = store
            .write(move |tx| {
                let window = tx.query(
                    "SELECT id, created_at FROM events WHERE id > ? ORDER BY id LIMIT ?",
                    args![after, WINDOW],
                )?;
                let old = window.iter().take_while(|r| r.i64(1) < cutoff).count();
                let Some(last) = old.checked_sub(1).map(|i| window[i].i64(0)) else {
                    return Ok((after, false));
                };
                tx.execute(
                    concat!(
                        "DELETE FROM delivery_attempts WHERE event_id IN (",
                        prunable_events!(),
                        ")"
                    ),
                    args![after, last, cutoff],
                )?;
                tx.execute(
                    concat!(
                        "DELETE FROM deliveries WHERE event_id IN (",
                        prunable_events!(),
                        ")"
                    ),
                    args![after, last, cutoff],
                )?;
                // Left with no delivery at all: never had one, or all were removed above.
                tx.execute(
                    "DELETE FROM events WHERE id > ? AND id <= ? AND created_at < ? \
                     AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
                    args![after, last, cutoff],
                )?;
                // A full window of old events: the next one may hold more.
                Ok((last, old as i64 == WINDOW))
            })
            .await?;
        if !more {
            return Ok(0);
        }
        after = last;
    }
    Ok(after)
}
