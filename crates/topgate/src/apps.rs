//! Apps (app key, secret, enabled flag, the entities each is bound to, the methods it may call
//! with their optional per-second limits) and user sessions.
//!
//! A secret never leaves this module except to sign or verify: [`AppRecord`]'s `Debug` hides it.

use std::fmt;

use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::args;
use crate::store::{StoreError, Tx};

#[derive(Clone, PartialEq, Eq)]
pub struct AppRecord {
    pub app_key: String,
    pub secret: String,
    pub name: String,
    pub enabled: bool,
    pub sandbox: bool,
    pub supplier_id: Option<i64>,
    pub partner_id: Option<i64>,
    pub provider_id: Option<i64>,
    pub seller_id: Option<i64>,
    /// Granted methods with an optional calls-per-second limit.
    pub methods: Vec<(String, Option<u32>)>,
}

impl fmt::Debug for AppRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppRecord")
            .field("app_key", &self.app_key)
            .field("secret", &"<redacted>")
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .field("sandbox", &self.sandbox)
            .field("methods", &self.methods)
            .finish()
    }
}

impl AppRecord {
    /// `None` when the app may not call `method`; else its per-second limit, if any.
    pub fn grant(&self, method: &str) -> Option<Option<u32>> {
        self.methods
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, limit)| *limit)
    }
}

/// What `app create` and the sandbox seed give.
#[derive(Debug, Clone, Default)]
pub struct NewApp {
    pub app_key: String,
    pub secret: Option<String>,
    pub name: String,
    pub sandbox: bool,
    pub supplier_id: Option<i64>,
    pub partner_id: Option<i64>,
    pub provider_id: Option<i64>,
    pub seller_id: Option<i64>,
    pub methods: Vec<(String, Option<u32>)>,
}

pub fn random_token(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(|c| char::from(c).to_ascii_lowercase())
        .collect()
}

const APP_COLUMNS: &str =
    "app_key, secret, name, enabled, sandbox, supplier_id, partner_id, provider_id, seller_id";

fn app_from_row(tx: &mut dyn Tx, row: &crate::store::Row) -> Result<AppRecord, StoreError> {
    let app_key = row.str(0);
    let methods = tx
        .query(
            "SELECT method, calls_per_second FROM app_methods WHERE app_key = ? ORDER BY method",
            args![app_key.as_str()],
        )?
        .iter()
        .map(|r| (r.str(0), r.opt_i64(1).map(|v| v as u32)))
        .collect();
    Ok(AppRecord {
        app_key,
        secret: row.str(1),
        name: row.str(2),
        enabled: row.bool(3),
        sandbox: row.bool(4),
        supplier_id: row.opt_i64(5),
        partner_id: row.opt_i64(6),
        provider_id: row.opt_i64(7),
        seller_id: row.opt_i64(8),
        methods,
    })
}

pub fn load_app(tx: &mut dyn Tx, app_key: &str) -> Result<Option<AppRecord>, StoreError> {
    match tx.query_opt(
        &format!("SELECT {APP_COLUMNS} FROM apps WHERE app_key = ?"),
        args![app_key],
    )? {
        Some(row) => app_from_row(tx, &row).map(Some),
        None => Ok(None),
    }
}

pub fn list_apps(tx: &mut dyn Tx) -> Result<Vec<AppRecord>, StoreError> {
    let rows = tx.query(
        &format!("SELECT {APP_COLUMNS} FROM apps ORDER BY app_key"),
        &[],
    )?;
    rows.iter().map(|r| app_from_row(tx, r)).collect()
}

/// Creates an app (a taken key fails on the primary key); returns it as stored.
pub fn create_app(tx: &mut dyn Tx, new: &NewApp, now_ms: i64) -> Result<AppRecord, StoreError> {
    let secret = new.secret.clone().unwrap_or_else(|| random_token(32));
    // No `ON CONFLICT`: an app created by a concurrent transaction first must fail this one
    // (409), not hand it the winner's secret.
    tx.execute(
        "INSERT INTO apps (app_key, secret, name, enabled, sandbox, supplier_id, partner_id, provider_id, seller_id, created_at) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
        args![new.app_key.as_str(), secret, new.name.as_str(), new.sandbox, new.supplier_id, new.partner_id, new.provider_id, new.seller_id, now_ms],
    )?;
    for (method, limit) in &new.methods {
        tx.execute(
            "INSERT INTO app_methods (app_key, method, calls_per_second) VALUES (?, ?, ?)",
            args![new.app_key.as_str(), method.as_str(), *limit],
        )?;
    }
    load_app(tx, &new.app_key)?.ok_or_else(|| StoreError::Aborted("app vanished".into()))
}

pub fn set_enabled(tx: &mut dyn Tx, app_key: &str, enabled: bool) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "UPDATE apps SET enabled = ? WHERE app_key = ?",
        args![enabled, app_key],
    )? == 1)
}

/// Replaces the secret with a new random one; returns it.
pub fn rotate_secret(tx: &mut dyn Tx, app_key: &str) -> Result<Option<String>, StoreError> {
    let secret = random_token(32);
    let n = tx.execute(
        "UPDATE apps SET secret = ? WHERE app_key = ?",
        args![secret.as_str(), app_key],
    )?;
    Ok((n == 1).then_some(secret))
}

/// Grants a method (or changes its limit).
pub fn grant_method(
    tx: &mut dyn Tx,
    app_key: &str,
    method: &str,
    limit: Option<u32>,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO app_methods (app_key, method, calls_per_second) VALUES (?, ?, ?) ON CONFLICT (app_key, method) DO UPDATE SET calls_per_second = excluded.calls_per_second",
        args![app_key, method, limit],
    )?;
    Ok(())
}

/// Withdraws a method; answers whether the app had it.
pub fn revoke_method(tx: &mut dyn Tx, app_key: &str, method: &str) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "DELETE FROM app_methods WHERE app_key = ? AND method = ?",
        args![app_key, method],
    )? == 1)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub session_key: String,
    pub app_key: String,
    pub user_id: i64,
    pub expires_at_ms: i64,
}

/// Creates a session; a key that exists already is a constraint violation (409 in the admin
/// API), never an answer with the existing session of possibly another app or user.
pub fn create_session(
    tx: &mut dyn Tx,
    app_key: &str,
    user_id: i64,
    session_key: Option<&str>,
    expires_at_ms: i64,
) -> Result<SessionRecord, StoreError> {
    let key = session_key.map_or_else(|| format!("6100{}", random_token(48)), str::to_string);
    tx.execute(
        "INSERT INTO sessions (session_key, app_key, user_id, expires_at) VALUES (?, ?, ?, ?)",
        args![key.as_str(), app_key, user_id, expires_at_ms],
    )?;
    load_session(tx, &key)?.ok_or_else(|| StoreError::Aborted("session vanished".into()))
}

/// Ends a session now (its expiry moves to `now_ms` unless it is already past); `None` when no
/// session has that key. The row stays, so that a revoked key is never issued again.
pub fn revoke_session(
    tx: &mut dyn Tx,
    key: &str,
    now_ms: i64,
) -> Result<Option<SessionRecord>, StoreError> {
    tx.execute(
        "UPDATE sessions SET expires_at = CASE WHEN expires_at > ? THEN ? ELSE expires_at END \
         WHERE session_key = ?",
        args![now_ms, now_ms, key],
    )?;
    load_session(tx, key)
}

pub fn load_session(tx: &mut dyn Tx, key: &str) -> Result<Option<SessionRecord>, StoreError> {
    Ok(tx
        .query_opt(
            "SELECT session_key, app_key, user_id, expires_at FROM sessions WHERE session_key = ?",
            args![key],
        )?
        .map(|r| SessionRecord {
            session_key: r.str(0),
            app_key: r.str(1),
            user_id: r.i64(2),
            expires_at_ms: r.i64(3),
        }))
}
