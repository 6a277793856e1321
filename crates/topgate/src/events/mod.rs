//! Events for downstream systems: the transactional outbox.
//!
//! Every state change calls [`emit`] inside the transaction that makes the change, so an event
//! exists exactly when its change was committed. Ids grow with commit order per entity (the
//! entity's changes are serialised by its row), which is the order delivery keeps.

use serde_json::Value;

use crate::args;
use crate::store::{StoreError, Tx};

/// Records `event_type` about `entity` (e.g. `trade:8888888`) with its JSON payload.
pub fn emit(
    tx: &mut dyn Tx,
    event_type: &str,
    entity: &str,
    payload: &Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO events (event_type, entity, payload, created_at) VALUES (?, ?, ?, ?)",
        args![event_type, entity, payload.to_string(), now_ms],
    )?;
    Ok(())
}
