//! The idempotency records shared by the write APIs: (scope, key) → hash of the normalised
//! request and the business payload first answered, unique by primary key so that concurrent
//! duplicates, on any number of nodes, resolve to one winner.

use crate::args;
use crate::store::{SqlValue, StoreError, Tx};

pub enum Recorded {
    /// Nothing yet under this key.
    New,
    /// The same request was answered before: replay this payload.
    Replay(String),
    /// The key was used for a different request.
    Conflict,
}

pub fn lookup(tx: &mut dyn Tx, scope: &str, key: &str, hash: &str) -> Result<Recorded, StoreError> {
    Ok(
        match tx.query_opt(
            "SELECT request_hash, response_body FROM idempotency_records WHERE scope = ? AND idem_key = ?",
            args![scope, key],
        )? {
            None => Recorded::New,
            Some(row) if row.str(0) == hash => Recorded::Replay(row.str(1)),
            Some(_) => Recorded::Conflict,
        },
    )
}

/// Looks up several keys of one scope in a single statement, so that all answers come from one
/// snapshot (under READ COMMITTED two separate lookups could straddle another writer's commit).
/// Answers are in the order of `keys`, each `(key, hash)`.
pub fn lookup_all(
    tx: &mut dyn Tx,
    scope: &str,
    keys: &[(&str, &str)],
) -> Result<Vec<Recorded>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = vec!["?"; keys.len()].join(", ");
    let mut args: Vec<SqlValue> = vec![scope.into()];
    args.extend(keys.iter().map(|(k, _)| SqlValue::from(*k)));
    let rows = tx.query(
        &format!(
            "SELECT idem_key, request_hash, response_body FROM idempotency_records WHERE scope = ? AND idem_key IN ({placeholders})"
        ),
        &args,
    )?;
    Ok(keys
        .iter()
        .map(|(key, hash)| match rows.iter().find(|r| r.str(0) == *key) {
            None => Recorded::New,
            Some(row) if row.str(1) == *hash => Recorded::Replay(row.str(2)),
            Some(_) => Recorded::Conflict,
        })
        .collect())
}

pub fn record(
    tx: &mut dyn Tx,
    scope: &str,
    key: &str,
    hash: &str,
    response: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO idempotency_records (scope, idem_key, request_hash, response_body, created_at) VALUES (?, ?, ?, ?, ?)",
        args![scope, key, hash, response, now_ms],
    )?;
    Ok(())
}

/// Replaces a record (receipt notices accept a newer value under the same key).
pub fn overwrite(
    tx: &mut dyn Tx,
    scope: &str,
    key: &str,
    hash: &str,
    response: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE idempotency_records SET request_hash = ?, response_body = ? WHERE scope = ? AND idem_key = ?",
        args![hash, response, scope, key],
    )?;
    Ok(())
}
