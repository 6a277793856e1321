//! The dispatcher: moves queued `deliveries` to their sinks, at least once and in order per
//! entity, across any number of processes sharing the database.
//!
//! Coordination is portable SQL (SQLite has no `FOR UPDATE SKIP LOCKED`): a process works on a
//! sink only while it holds the sink's lease in `sink_state` (claimed with a conditional
//! `UPDATE`, renewed while working, released when idle or stopping). A lease that runs out,
//! because its holder was killed, lets another process take the sink over. A delivery is
//! marked delivered only after the sink acknowledged it, so a crash at any point costs at
//! worst a repeat with the same event id.
//!
//! Order per entity: only the oldest pending delivery of each entity (its "head") is ever
//! attempted, and the next one becomes the head once that result is committed; heads of
//! different entities go out concurrently (up to `max_in_flight`). A dead letter stops
//! blocking its entity.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::nats::{NatsConfig, Publisher};
use super::EventSettings;
use crate::args;
use crate::store::{Store, StoreError, Tx};

/// One outbox event, as sinks receive it.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub id: i64,
    pub event_type: String,
    pub entity: String,
    /// The payload's JSON text.
    pub payload: String,
    pub created_at: i64,
}

/// The result of one delivery attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// `delivered`, `duplicate` (JetStream already had it: also an acknowledgement) or `failed`.
    pub outcome: &'static str,
    pub http_status: Option<i64>,
    pub error: Option<String>,
}

impl Attempt {
    pub fn delivered(http_status: Option<i64>) -> Self {
        Self {
            outcome: "delivered",
            http_status,
            error: None,
        }
    }
    pub fn duplicate() -> Self {
        Self {
            outcome: "duplicate",
            http_status: None,
            error: None,
        }
    }
    pub fn failed(http_status: Option<i64>, error: String) -> Self {
        Self {
            outcome: "failed",
            http_status,
            error: Some(error),
        }
    }
    pub fn acknowledged(&self) -> bool {
        self.outcome != "failed"
    }
}

fn now_ms() -> i64 {
    crate::clock::millis(time::OffsetDateTime::now_utc())
}

/// A running dispatcher; [`DispatcherHandle::shutdown`] stops it gracefully.
pub struct DispatcherHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl DispatcherHandle {
    /// Stops claiming work at once; [`Self::shutdown`] waits for what is in flight.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops claiming work, lets deliveries in flight finish and be recorded, releases leases.
    pub async fn shutdown(self) {
        self.stop();
        let _ = self.task.await;
    }
}

/// Starts a dispatcher on the current runtime.
pub fn spawn(store: Store, settings: EventSettings) -> DispatcherHandle {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(store, settings, stopped));
    DispatcherHandle { stop, task }
}

struct Shared {
    store: Store,
    settings: EventSettings,
    /// This process's lease owner name.
    node: String,
    /// The database's identity: part of every NATS message id, and a webhook header.
    instance: Arc<str>,
    http: reqwest::Client,
}

/// Runs until `stop` turns true.
pub async fn run(store: Store, settings: EventSettings, mut stop: watch::Receiver<bool>) {
    let node = format!("{}-{}", std::process::id(), crate::apps::random_token(8));
    let poll = Duration::from_millis(settings.poll_interval_ms.max(10));
    // Read once: it never changes. Every NATS message id needs it, and a database that cannot
    // answer this would fail the dispatcher's other work as well.
    let instance: Arc<str> = loop {
        if *stop.borrow() {
            return;
        }
        match store.read(super::database_instance).await {
            Ok(instance) => break instance.into(),
            Err(e) => tracing::warn!(error = %e, "cannot read the database identity"),
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => {}
        }
    };
    tracing::info!(%node, %instance, "event dispatcher started");
    let http = super::webhook::client(Duration::from_millis(settings.request_timeout_ms.max(1)));
    let shared = Arc::new(Shared {
        store,
        settings,
        node,
        instance,
        http,
    });
    let mut pruner = super::retention::Pruner::new(shared.settings.retention_ms);
    let mut workers: HashMap<i64, JoinHandle<()>> = HashMap::new();
    let mut statistics_checked: Option<Instant> = None;
    while !*stop.borrow() {
        workers.retain(|_, w| !w.is_finished());
        pruner.prune_if_due(&shared.store, now_ms()).await;
        // On SQLite that would be an empty write job every few seconds for the one writer.
        let statistics_due = shared.store.plans_from_statistics()
            && statistics_checked.is_none_or(|at| at.elapsed() >= STATISTICS_EVERY);
        if statistics_due {
            statistics_checked = Some(Instant::now());
            refresh_statistics(&shared.store).await;
        }
        match find_work(&shared).await {
            Ok(sinks) => {
                for sink_id in sinks {
                    if workers.contains_key(&sink_id) {
                        continue;
                    }
                    match claim(&shared, sink_id).await {
                        Ok(Some(until)) => {
                            let worker = work(Arc::clone(&shared), sink_id, until, stop.clone());
                            workers.insert(sink_id, tokio::spawn(worker));
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(sink_id, error = %e, "cannot claim sink"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot look for event deliveries"),
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => {}
        }
    }
    for (_, worker) in workers {
        let _ = worker.await;
    }
    tracing::info!(node = %shared.node, "event dispatcher stopped");
}

/// How often a dispatcher checks whether the planner's statistics of `deliveries` are due.
const STATISTICS_EVERY: Duration = Duration::from_secs(10);

/// Keeps the statistics of `deliveries` current where plans depend on them (PostgreSQL): the
/// anti-join of [`due_heads`] is planned for the table's size, and planned for an empty table
/// it compares every candidate with the sink's whole backlog (60 ms for 16 heads among 2 000
/// pending, growing with the square of the backlog, against 1.5 ms once analyzed).
async fn refresh_statistics(store: &Store) {
    match store
        .write(|tx| tx.refresh_statistics(&["deliveries"]))
        .await
    {
        Ok(tables) if !tables.is_empty() => {
            tracing::debug!(?tables, "planner statistics refreshed");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot refresh planner statistics"),
    }
}

/// Sinks with a deliverable head whose lease is free, expired, or ours.
async fn find_work(shared: &Shared) -> Result<Vec<i64>, StoreError> {
    let node = shared.node.clone();
    shared
        .store
        .read(move |tx| {
            let now = now_ms();
            let rows = tx.query(
                "SELECT s.id, st.lease_owner, st.lease_until FROM sinks s \
                 LEFT JOIN sink_state st ON st.sink_id = s.id \
                 WHERE s.enabled = 1 AND EXISTS (SELECT 1 FROM deliveries d \
                   WHERE d.sink_id = s.id AND d.state = 'pending' AND d.next_at <= ? \
                   AND NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.sink_id = d.sink_id \
                     AND p.state = 'pending' AND p.entity = d.entity AND p.event_id < d.event_id)) \
                 ORDER BY s.id",
                args![now],
            )?;
            Ok(rows
                .into_iter()
                .filter(|r| {
                    r.opt_str(1).is_none_or(|owner| owner == node)
                        || r.opt_i64(2).is_none_or(|until| until < now)
                })
                .map(|r| r.i64(0))
                .collect())
        })
        .await
}

/// Takes the lease of `sink_id`; `Some(lease end)` when this process now holds it.
async fn claim(shared: &Shared, sink_id: i64) -> Result<Option<i64>, StoreError> {
    let node = shared.node.clone();
    let lease = i64::try_from(shared.settings.lease_ms).unwrap_or(i64::MAX / 4);
    shared
        .store
        .write(move |tx| {
            let now = now_ms();
            tx.execute(
                "INSERT INTO sink_state (sink_id) SELECT id FROM sinks WHERE id = ? \
                 ON CONFLICT (sink_id) DO NOTHING",
                args![sink_id],
            )?;
            let claimed = tx.execute(
                "UPDATE sink_state SET lease_owner = ?, lease_until = ? WHERE sink_id = ? \
                 AND (lease_owner IS NULL OR lease_until IS NULL OR lease_until < ? OR lease_owner = ?) \
                 AND EXISTS (SELECT 1 FROM sinks WHERE id = ? AND enabled = 1)",
                args![&node, now + lease, sink_id, now, &node, sink_id],
            )? == 1;
            Ok(claimed.then_some(now + lease))
        })
        .await
}

/// Extends our lease; false when it was lost (taken over after running out) or the sink was
/// disabled.
async fn renew(shared: &Shared, sink_id: i64) -> Result<Option<i64>, StoreError> {
    let node = shared.node.clone();
    let lease = i64::try_from(shared.settings.lease_ms).unwrap_or(i64::MAX / 4);
    shared
        .store
        .write(move |tx| {
            let now = now_ms();
            let renewed = tx.execute(
                "UPDATE sink_state SET lease_until = ? WHERE sink_id = ? AND lease_owner = ? \
                 AND EXISTS (SELECT 1 FROM sinks WHERE id = ? AND enabled = 1)",
                args![now + lease, sink_id, &node, sink_id],
            )? == 1;
            Ok(renewed.then_some(now + lease))
        })
        .await
}

async fn release(shared: &Shared, sink_id: i64) {
    let node = shared.node.clone();
    let released = shared
        .store
        .write(move |tx| {
            tx.execute(
                "UPDATE sink_state SET lease_owner = NULL, lease_until = NULL \
                 WHERE sink_id = ? AND lease_owner = ?",
                args![sink_id, &node],
            )
        })
        .await;
    if let Err(e) = released {
        // Harmless: the lease runs out by itself.
        tracing::warn!(sink_id, error = %e, "cannot release sink lease");
    }
}

/// What a worker needs to know about its sink (re-read every round, so edits apply at once).
enum Target {
    Webhook { url: String, secret: String },
    Nats { url: String, config: NatsConfig },
}

async fn load_target(shared: &Shared, sink_id: i64) -> Result<Option<Target>, StoreError> {
    shared
        .store
        .read(move |tx| {
            let Some(row) = tx.query_opt(
                "SELECT kind, url, secret, config FROM sinks WHERE id = ? AND enabled = 1",
                args![sink_id],
            )?
            else {
                return Ok(None);
            };
            Ok(Some(match row.str(0).as_str() {
                "nats" => Target::Nats {
                    url: row.str(1),
                    config: serde_json::from_str(&row.str(3)).unwrap_or_default(),
                },
                _ => Target::Webhook {
                    url: row.str(1),
                    secret: row.str(2),
                },
            }))
        })
        .await
}

/// Due heads of `sink_id`, oldest first: the oldest pending delivery of each entity, if due.
/// `+d.next_at` keeps SQLite from choosing `deliveries_due` for that bound, so that it walks
/// `deliveries_pending_order` in event order and stops after `limit` heads (the index of
/// SQLite migration 8, PostgreSQL migration 7).
async fn due_heads(
    shared: &Shared,
    sink_id: i64,
    limit: usize,
) -> Result<Vec<(i64, EventRecord)>, StoreError> {
    let limit = i64::try_from(limit.max(1)).unwrap_or(16);
    shared
        .store
        .read(move |tx| {
            let rows = tx.query(
                "SELECT d.id, e.id, e.event_type, e.entity, e.payload, e.created_at \
                 FROM deliveries d JOIN events e ON e.id = d.event_id \
                 WHERE d.sink_id = ? AND d.state = 'pending' AND +d.next_at <= ? \
                 AND NOT EXISTS (SELECT 1 FROM deliveries p WHERE p.sink_id = d.sink_id \
                   AND p.state = 'pending' AND p.entity = d.entity AND p.event_id < d.event_id) \
                 ORDER BY d.event_id LIMIT ?",
                args![sink_id, now_ms(), limit],
            )?;
            Ok(rows
                .into_iter()
                .map(|r| {
                    (
                        r.i64(0),
                        EventRecord {
                            id: r.i64(1),
                            event_type: r.str(2),
                            entity: r.str(3),
                            payload: r.str(4),
                            created_at: r.i64(5),
                        },
                    )
                })
                .collect())
        })
        .await
}

/// Works on one sink while it holds the lease and the sink has due heads.
async fn work(
    shared: Arc<Shared>,
    sink_id: i64,
    mut lease_until: i64,
    stop: watch::Receiver<bool>,
) {
    let lease = i64::try_from(shared.settings.lease_ms).unwrap_or(i64::MAX / 4);
    let timeout = Duration::from_millis(shared.settings.request_timeout_ms.max(1));
    // The NATS connection of this sink, kept across rounds while its URL stays the same.
    let mut publisher: Option<(String, NatsConfig, Publisher)> = None;
    while !*stop.borrow() {
        if lease_until - now_ms() < lease / 2 {
            match renew(&shared, sink_id).await {
                Ok(Some(until)) => lease_until = until,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(sink_id, error = %e, "cannot renew sink lease");
                    break;
                }
            }
        }
        let target = match load_target(&shared, sink_id).await {
            Ok(Some(target)) => target,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(sink_id, error = %e, "cannot load sink");
                break;
            }
        };
        let heads = match due_heads(&shared, sink_id, shared.settings.max_in_flight).await {
            Ok(heads) if !heads.is_empty() => heads,
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(sink_id, error = %e, "cannot read due deliveries");
                break;
            }
        };
        // One connection failure fails the whole round (each head records it).
        let nats = match &target {
            Target::Nats { url, config } => {
                let reuse = matches!(&publisher, Some((u, c, _)) if u == url && c == config);
                if !reuse {
                    let instance = Arc::clone(&shared.instance);
                    publisher = match Publisher::connect(url, config.clone(), instance, timeout)
                        .await
                    {
                        Ok(p) => Some((url.clone(), config.clone(), p)),
                        Err(e) => {
                            let attempt = Attempt::failed(None, e);
                            for (delivery_id, _) in &heads {
                                let started = now_ms();
                                record(&shared, sink_id, *delivery_id, started, 0, attempt.clone())
                                    .await;
                            }
                            continue;
                        }
                    };
                }
                publisher.as_ref().map(|(_, _, p)| p.clone())
            }
            Target::Webhook { .. } => None,
        };
        let mut in_flight = JoinSet::new();
        for (delivery_id, event) in heads {
            let shared = Arc::clone(&shared);
            let nats = nats.clone();
            let (url, secret) = match &target {
                Target::Webhook { url, secret } => (url.clone(), secret.clone()),
                Target::Nats { .. } => (String::new(), String::new()),
            };
            in_flight.spawn(async move {
                let started = now_ms();
                let clock = Instant::now();
                let attempt = match nats {
                    Some(p) => match tokio::time::timeout(timeout, p.publish(&event)).await {
                        Ok(a) => a,
                        Err(_) => Attempt::failed(None, "timeout".into()),
                    },
                    None => {
                        super::webhook::deliver(&shared.http, &url, &secret, &shared.instance, &event)
                            .await
                    }
                };
                let took = i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX);
                if !attempt.acknowledged() {
                    tracing::debug!(sink_id, event_id = event.id, error = ?attempt.error, "delivery failed");
                }
                record(&shared, sink_id, delivery_id, started, took, attempt).await;
            });
        }
        // The round ends when every result is committed: only then may the next event of
        // each entity become a head.
        while in_flight.join_next().await.is_some() {}
    }
    release(&shared, sink_id).await;
}

/// What recording an attempt changed that an operator hears about. Single failed attempts are
/// only logged at debug: a sink that is down fails every head of every round, and its streak
/// (when it starts and ends), its dead letters and its disabling say what matters.
#[derive(Debug, Default)]
struct Recorded {
    /// This failure started the sink's failure streak.
    started_failing: bool,
    /// This success ended the sink's failure streak.
    recovered: bool,
    /// The delivery ran out of retries.
    dead_after: Option<i64>,
    /// The sink was disabled for failing too long.
    disabled: bool,
}

/// Records one attempt and moves the delivery on. A failure to record is logged: the delivery
/// stays pending and is attempted again (at least once).
async fn record(
    shared: &Shared,
    sink_id: i64,
    delivery_id: i64,
    started: i64,
    took: i64,
    attempt: Attempt,
) {
    let settings = shared.settings.clone();
    let node = shared.node.clone();
    // Drawn outside the transaction, which may run more than once.
    let jitter = if settings.retry_jitter > 0.0 {
        let j = settings.retry_jitter.min(1.0);
        rand::thread_rng().gen_range(1.0 - j..=1.0 + j)
    } else {
        1.0
    };
    let error = attempt.error.clone();
    let result = shared
        .store
        .write(move |tx| {
            record_tx(
                tx,
                &settings,
                &node,
                sink_id,
                delivery_id,
                started,
                took,
                &attempt,
                jitter,
            )
        })
        .await;
    let recorded = match result {
        Ok(recorded) => recorded,
        Err(e) => {
            tracing::error!(sink_id, delivery_id, error = %e, "cannot record delivery attempt");
            return;
        }
    };
    let error = error.as_deref().unwrap_or("");
    if recorded.started_failing {
        tracing::warn!(
            sink_id,
            delivery_id,
            error,
            "sink is failing; its deliveries will be retried"
        );
    }
    if recorded.recovered {
        tracing::info!(sink_id, "sink delivers again");
    }
    if let Some(tries) = recorded.dead_after {
        tracing::warn!(
            sink_id,
            delivery_id,
            tries,
            error,
            "delivery is a dead letter: out of retries"
        );
    }
    if recorded.disabled {
        tracing::warn!(sink_id, "sink auto-disabled after failing continuously");
    }
}

#[allow(clippy::too_many_arguments)]
fn record_tx(
    tx: &mut dyn Tx,
    settings: &EventSettings,
    node: &str,
    sink_id: i64,
    delivery_id: i64,
    started: i64,
    took: i64,
    attempt: &Attempt,
    jitter: f64,
) -> Result<Recorded, StoreError> {
    let mut recorded = Recorded::default();
    let Some(row) = tx.query_opt(
        "SELECT event_id, state, tries, attempts FROM deliveries WHERE id = ?",
        args![delivery_id],
    )?
    else {
        return Ok(recorded);
    };
    let (event_id, state, tries, attempts) = (row.i64(0), row.str(1), row.i64(2), row.i64(3));
    tx.execute(
        "INSERT INTO delivery_attempts (delivery_id, sink_id, event_id, attempt, started_at, \
         duration_ms, outcome, http_status, error, node) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        args![
            delivery_id,
            sink_id,
            event_id,
            attempts + 1,
            started,
            took,
            attempt.outcome,
            attempt.http_status,
            attempt.error.clone(),
            node
        ],
    )?;
    let now = now_ms();
    if attempt.acknowledged() {
        tx.execute(
            "UPDATE deliveries SET state = 'delivered', tries = tries + 1, attempts = attempts + 1, \
             delivered_at = ?, last_status = ?, last_error = NULL, updated_at = ? WHERE id = ?",
            args![now, attempt.http_status, now, delivery_id],
        )?;
        // Conditional, so concurrent results of a healthy sink do not all write its row.
        recorded.recovered = tx.execute(
            "UPDATE sink_state SET failing_since = NULL WHERE sink_id = ? AND failing_since IS NOT NULL",
            args![sink_id],
        )? == 1;
        return Ok(recorded);
    }
    // A delivery that is no longer pending (another node finished it after taking the lease
    // over) keeps its state; the attempt is still on record.
    if state == "pending" {
        let tries = tries + 1;
        let schedule = &settings.retry_schedule_ms;
        let (next_state, next_at) =
            match schedule.get(usize::try_from(tries - 1).unwrap_or(usize::MAX)) {
                Some(delay) => {
                    let delay = (*delay as f64 * jitter).round() as i64;
                    ("pending", now + delay.max(0))
                }
                None => {
                    recorded.dead_after = Some(tries);
                    ("dead", now)
                }
            };
        tx.execute(
            "UPDATE deliveries SET state = ?, tries = ?, attempts = attempts + 1, next_at = ?, \
             last_status = ?, last_error = ?, updated_at = ? WHERE id = ?",
            args![
                next_state,
                tries,
                next_at,
                attempt.http_status,
                attempt.error.clone(),
                now,
                delivery_id
            ],
        )?;
    } else {
        tx.execute(
            "UPDATE deliveries SET attempts = attempts + 1 WHERE id = ?",
            args![delivery_id],
        )?;
    }
    recorded.started_failing = tx.execute(
        "UPDATE sink_state SET failing_since = ? WHERE sink_id = ? AND failing_since IS NULL",
        args![started, sink_id],
    )? == 1;
    let failing_since = tx
        .query_opt(
            "SELECT failing_since FROM sink_state WHERE sink_id = ?",
            args![sink_id],
        )?
        .and_then(|r| r.opt_i64(0));
    let limit = i64::try_from(settings.disable_after_ms).unwrap_or(i64::MAX);
    if let Some(since) = failing_since.filter(|since| now - since >= limit) {
        let changed = tx.execute(
            "UPDATE sinks SET enabled = 0, disabled_reason = ?, updated_at = ? WHERE id = ? AND enabled = 1",
            args![
                format!(
                    "auto-disabled: failing continuously for {} s (since {})",
                    (now - since) / 1000,
                    crate::clock::from_millis(since)
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default()
                ),
                now,
                sink_id
            ],
        )?;
        recorded.disabled = changed == 1;
    }
    Ok(recorded)
}

/// Runs a dispatcher until SIGINT or SIGTERM (`topgate dispatch`).
pub async fn run_until_signal(store: Store, settings: EventSettings) {
    let handle = spawn(store, settings);
    crate::gateway::shutdown_signal().await;
    tracing::info!("stopping the dispatcher");
    handle.shutdown().await;
}
