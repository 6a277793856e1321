//! Events for downstream systems: the transactional outbox and its delivery.
//!
//! Every state change calls [`emit`] inside the transaction that makes the change, so an event
//! exists exactly when its change was committed. Ids grow with commit order per entity (the
//! entity's changes are serialised by its row), which is the order delivery keeps.
//!
//! The same transaction queues one `deliveries` row per enabled sink whose filter accepts the
//! event, so fan-out needs no cursor over `events` (a cursor would skip ids that PostgreSQL
//! handed out before, but committed after, a later one). [`dispatch`] then moves those rows;
//! [`admin`] shows and steers them (admin API and `topgate events …`); [`webhook`] and [`nats`]
//! are the two kinds of sink. `docs/events.md` states the guarantees.
//!
//! Event ids are unique within one database only; [`database_instance`] is the database's own
//! random identity, which qualifies them where they meet those of other databases (the NATS
//! message id).

pub mod admin;
pub mod dispatch;
pub mod nats;
pub mod retention;
pub mod webhook;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::args;
use crate::store::{StoreError, Tx};

pub const TRADE_STATUS_CHANGED: &str = "trade.status_changed";
pub const OPENTRADE_SETTLED: &str = "opentrade.settled";
pub const CARRIER_NOTIFIED: &str = "carrier.notified";
pub const RIGHT_ORDER_CREATED: &str = "right_order.created";
pub const RIGHT_ORDER_STATUS_CHANGED: &str = "right_order.status_changed";

/// Every event type written (docs/events.md), the only ones a sink may filter on besides `*`:
/// a filter naming anything else would never match, silently.
pub const EVENT_TYPES: [&str; 5] = [
    TRADE_STATUS_CHANGED,
    OPENTRADE_SETTLED,
    CARRIER_NOTIFIED,
    RIGHT_ORDER_CREATED,
    RIGHT_ORDER_STATUS_CHANGED,
];

/// Records `event_type` about `entity` (e.g. `trade:8888888`) with its JSON payload, and queues
/// it for every enabled sink that wants it.
pub fn emit(
    tx: &mut dyn Tx,
    event_type: &str,
    entity: &str,
    payload: &Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    emit_serialized(tx, event_type, entity, &payload.to_string(), now_ms)
}

/// [`emit`] with the payload already serialised, so that a caller can do that work outside
/// the writer's job.
pub fn emit_serialized(
    tx: &mut dyn Tx,
    event_type: &str,
    entity: &str,
    payload: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let id = tx.insert_returning_id(
        "INSERT INTO events (event_type, entity, payload, created_at) VALUES (?, ?, ?, ?)",
        args![event_type, entity, payload, now_ms],
    )?;
    // Due at once (`next_at` 0): the business clock may be a fixed test instant, while the
    // dispatcher schedules on the system clock.
    tx.execute(
        "INSERT INTO deliveries (sink_id, event_id, entity, state, tries, attempts, next_at, updated_at) \
         SELECT s.id, CAST(? AS BIGINT), CAST(? AS TEXT), 'pending', 0, 0, 0, CAST(? AS BIGINT) FROM sinks s \
         WHERE s.enabled = 1 AND EXISTS (SELECT 1 FROM sink_event_types t \
           WHERE t.sink_id = s.id AND (t.event_type = '*' OR t.event_type = ?))",
        args![id, entity, now_ms, event_type],
    )?;
    Ok(())
}

/// The random identity this database was given by its migration (SQLite 9, PostgreSQL 8) and
/// keeps for ever: a recreated database gets another, so its event ids, which start over, are
/// never mistaken for those of its predecessor.
pub fn database_instance(tx: &mut dyn Tx) -> Result<String, StoreError> {
    tx.query_opt("SELECT instance FROM database_identity WHERE id = 1", &[])?
        .map(|row| row.str(0))
        .ok_or_else(|| StoreError::Backend("the database_identity table is empty".into()))
}

/// `[events]` settings: polling, retries, leases (see `docs/events.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EventSettings {
    /// How often an idle dispatcher looks for new work.
    pub poll_interval_ms: u64,
    /// Delays before each retry of a failed delivery; one first try plus one retry per entry,
    /// then the delivery is dead-lettered.
    pub retry_schedule_ms: Vec<u64>,
    /// Each delay is scaled by a random factor in `1 ± retry_jitter`, so that sinks recovering
    /// from an outage are not hit by every retry at once.
    pub retry_jitter: f64,
    /// A sink failing without a single success for this long is disabled.
    pub disable_after_ms: u64,
    /// How long a dispatcher owns a sink before it must renew; another node takes the sink
    /// over when a lease runs out (its holder died). Keep well above `request_timeout_ms`.
    pub lease_ms: u64,
    /// Timeout of one delivery (HTTP request, or JetStream publish and its ack).
    pub request_timeout_ms: u64,
    /// Deliveries of one sink in flight at once (all of different entities).
    pub max_in_flight: usize,
    /// Events older than this, with their deliveries and attempts, are removed once no sink
    /// waits for them (see [`retention`]); 0 keeps everything.
    pub retention_ms: u64,
}

/// 8 tries over about a day: now, then after 1m, 5m, 30m, 1h, 3h, 6h, 13h.
pub const DEFAULT_RETRY_SCHEDULE_MS: [u64; 7] = [
    60_000,
    5 * 60_000,
    30 * 60_000,
    3_600_000,
    3 * 3_600_000,
    6 * 3_600_000,
    13 * 3_600_000,
];

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: 200,
            retry_schedule_ms: DEFAULT_RETRY_SCHEDULE_MS.to_vec(),
            retry_jitter: 0.2,
            disable_after_ms: 3 * 24 * 3_600_000,
            lease_ms: 30_000,
            request_timeout_ms: 10_000,
            max_in_flight: 16,
            retention_ms: 0,
        }
    }
}
