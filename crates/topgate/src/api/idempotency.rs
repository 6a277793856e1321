//! The idempotency records of the supplier and opentrade notices: (scope, key) → hash of the
//! normalised request and the business payload first answered, unique by primary key so that
//! concurrent duplicates, on any number of nodes, resolve to one winner. (Pay notices keep
//! theirs on the right order they created; only an idempotent id bound to an order it did not
//! create is recorded here: see `diantao`.)

use crate::args;
use crate::store::{StoreError, Tx};

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
