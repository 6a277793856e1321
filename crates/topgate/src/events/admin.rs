//! Sinks and deliveries, seen and steered by an operator: the operations (sync over [`Tx`], one
//! code path for the admin HTTP API and `topgate events …`) and their routes under `/admin`.
//!
//! Webhook secrets are write-only: a listing says whether one is set, and only a generated
//! secret is shown, once, in the answer that created it. URLs are shown without credentials.
//!
//! A sink's `event_types` are `*` or types topgate writes ([`super::EVENT_TYPES`]); any other
//! name is refused (400) since its filter would never match. Listings page with `limit` (100 by
//! default, at most [`crate::admin::ops::MAX_LIMIT`]) and `after`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::nats::{NatsConfig, DEFAULT_URL as DEFAULT_NATS_URL};
use crate::admin::ops::{page_limit, AdminError};
use crate::args;
use crate::clock::millis;
use crate::gateway::AppState;
use crate::store::{Row, StoreError, Tx};

/// A sink to register (`POST /admin/sinks`, `topgate events add-webhook|add-nats`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSink {
    /// `webhook` or `nats`.
    pub kind: String,
    /// Webhook: the `http(s)://` endpoint. NATS: the server (default `nats://127.0.0.1:4222`).
    pub url: Option<String>,
    /// Webhook signing secret; generated (and shown once) when absent.
    pub secret: Option<String>,
    /// Event types accepted: `["*"]` (the default) or a list of the types written
    /// ([`super::EVENT_TYPES`]).
    pub event_types: Option<Vec<String>>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// NATS: the JetStream stream (default `TOPGATE_EVENTS`).
    pub stream: Option<String>,
    /// NATS: subjects are `<subject_prefix>.<event type>` (default `topgate.events`).
    pub subject_prefix: Option<String>,
}

fn yes() -> bool {
    true
}

/// What `redeliver` re-queues for one sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redeliver {
    /// One event (queued even if the sink never had it).
    pub event_id: Option<i64>,
    /// Every dead letter of the sink.
    #[serde(default)]
    pub dead: bool,
    /// Every event from this id on that the sink's filter accepts (a replay).
    pub from_event_id: Option<i64>,
}

/// A sink's URL as listings show it ([`redact_url`]); a NATS sink's may be a comma-separated
/// list, each of whose URLs is shown so.
fn redact_sink_url(kind: &str, url: &str) -> String {
    if kind == "nats" {
        url.split(',').map(redact_url).collect::<Vec<_>>().join(",")
    } else {
        redact_url(url)
    }
}

/// A URL as listings show it: without `user:password@`, and with the values of its query
/// string hidden (a receiver's token often rides there): `http://***@host/hook?token=***`. A
/// query item without `=` is hidden whole (`?s3cr3t` → `?***`): it may be a token itself.
pub fn redact_url(url: &str) -> String {
    let (address, query) = match url.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (url, None),
    };
    let mut shown = match address.find("://") {
        Some(scheme) => {
            let rest = &address[scheme + 3..];
            let host_end = rest.find('/').unwrap_or(rest.len());
            match rest[..host_end].rfind('@') {
                Some(at) => format!("{}***@{}", &address[..scheme + 3], &rest[at + 1..]),
                None => address.to_string(),
            }
        }
        None => address.to_string(),
    };
    if let Some(query) = query {
        let names: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) => format!("{name}=***"),
                None => "***".to_string(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&names.join("&"));
    }
    shown
}

fn invalid(msg: impl Into<String>) -> AdminError {
    AdminError::Invalid(msg.into())
}

pub fn create_sink(tx: &mut dyn Tx, new: &NewSink, now: i64) -> Result<Value, AdminError> {
    // PostgreSQL text cannot hold U+0000; SQLite could, so both refuse it alike.
    let texts = [&new.url, &new.secret, &new.stream, &new.subject_prefix];
    if texts
        .into_iter()
        .flatten()
        .chain(new.event_types.iter().flatten())
        .any(|t| t.contains('\0'))
    {
        return Err(invalid("no field may contain the character U+0000"));
    }
    let types = match &new.event_types {
        None => vec!["*".to_string()],
        // A filter of no type would take no event; "everything" is written `*`.
        Some(types) if types.is_empty() => {
            return Err(invalid(
                "event_types must name at least one type, or * for all",
            ))
        }
        Some(types) => types.clone(),
    };
    if let Some(t) = types
        .iter()
        .find(|t| *t != "*" && !super::EVENT_TYPES.contains(&t.as_str()))
    {
        return Err(invalid(format!(
            "unknown event type {t:?} in event_types; * or {}",
            super::EVENT_TYPES.join(", ")
        )));
    }
    let mut generated = None;
    let (url, secret, config) = match new.kind.as_str() {
        "webhook" => {
            if new.stream.is_some() || new.subject_prefix.is_some() {
                return Err(invalid("stream and subject_prefix are for nats sinks"));
            }
            let url = new.url.clone().unwrap_or_default();
            let parsed = reqwest::Url::parse(&url)
                .map_err(|_| invalid("url must be an absolute http(s) URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(invalid("url must be an absolute http(s) URL"));
            }
            let secret = match new.secret.clone() {
                Some(s) if s.chars().count() < 16 => {
                    return Err(invalid("secret must have at least 16 characters"))
                }
                Some(s) => s,
                None => {
                    let s = format!("whsec_{}", crate::apps::random_token(32));
                    generated = Some(s.clone());
                    s
                }
            };
            (url, Some(secret), "{}".to_string())
        }
        "nats" => {
            if new.secret.is_some() {
                return Err(invalid("secret is for webhook sinks"));
            }
            let url = new.url.clone().unwrap_or_else(|| DEFAULT_NATS_URL.into());
            // Checked here, as webhook URLs are: otherwise a typo is accepted and every
            // attempt fails until the deliveries are dead. A list is comma-separated.
            let nats_url = |part: &str| {
                reqwest::Url::parse(part.trim()).is_ok_and(|u| {
                    matches!(u.scheme(), "nats" | "tls" | "ws" | "wss") && u.has_host()
                })
            };
            if !url.split(',').all(nats_url) {
                return Err(invalid(
                    "url must be a nats://, tls://, ws:// or wss:// URL with a host (or a comma-separated list of them)",
                ));
            }
            let config = NatsConfig {
                stream: new
                    .stream
                    .clone()
                    .unwrap_or_else(|| super::nats::DEFAULT_STREAM.into()),
                subject_prefix: new
                    .subject_prefix
                    .clone()
                    .unwrap_or_else(|| super::nats::DEFAULT_SUBJECT_PREFIX.into()),
            };
            config.validate().map_err(invalid)?;
            let config = serde_json::to_string(&config).map_err(|e| invalid(e.to_string()))?;
            (url, None, config)
        }
        other => {
            return Err(invalid(format!(
                "kind must be webhook or nats, not {other:?}"
            )))
        }
    };
    // A disabled sink always says why, whoever disabled it: here the operator who registered it.
    let disabled_reason = (!new.enabled).then_some("created disabled by an operator");
    let id = tx
        .query(
            "INSERT INTO sinks (kind, url, secret, config, enabled, disabled_reason, created_at, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            args![
                new.kind.as_str(),
                url,
                secret,
                config,
                new.enabled,
                disabled_reason,
                now,
                now
            ],
        )?
        .first()
        .map(|r| r.i64(0))
        .ok_or_else(|| {
            AdminError::Store(StoreError::Backend("sink insert returned no id".into()))
        })?;
    let mut seen = std::collections::BTreeSet::new();
    for t in types.iter().filter(|t| seen.insert(t.as_str())) {
        tx.execute(
            "INSERT INTO sink_event_types (sink_id, event_type) VALUES (?, ?)",
            args![id, t.as_str()],
        )?;
    }
    tx.execute("INSERT INTO sink_state (sink_id) VALUES (?)", args![id])?;
    let mut sink = get_sink(tx, id)?;
    if let (Some(secret), Some(obj)) = (generated, sink.as_object_mut()) {
        obj.insert("secret".into(), json!(secret));
    }
    Ok(sink)
}

const SINK_COLUMNS: &str = "s.id, s.kind, s.url, s.secret IS NOT NULL, s.config, s.enabled, \
     s.disabled_reason, s.created_at, s.updated_at, st.lease_owner, st.lease_until, \
     st.failing_since";

fn sink_json(tx: &mut dyn Tx, r: &Row) -> Result<Value, StoreError> {
    let id = r.i64(0);
    let types: Vec<String> = tx
        .query(
            "SELECT event_type FROM sink_event_types WHERE sink_id = ? ORDER BY event_type",
            args![id],
        )?
        .iter()
        .map(|t| t.str(0))
        .collect();
    let counts: HashMap<String, i64> = tx
        .query(
            "SELECT state, COUNT(*) FROM deliveries WHERE sink_id = ? GROUP BY state",
            args![id],
        )?
        .iter()
        .map(|c| (c.str(0), c.i64(1)))
        .collect();
    let mut sink = json!({
        "id": id,
        "kind": r.str(1),
        "url": redact_sink_url(&r.str(1), &r.str(2)),
        "event_types": types,
        "enabled": r.bool(5),
        "disabled_reason": r.opt_str(6),
        "created_at": r.i64(7),
        "updated_at": r.i64(8),
        "lease_owner": r.opt_str(9),
        "lease_until": r.opt_i64(10),
        "failing_since": r.opt_i64(11),
        "deliveries": {
            "pending": counts.get("pending").copied().unwrap_or(0),
            "delivered": counts.get("delivered").copied().unwrap_or(0),
            "dead": counts.get("dead").copied().unwrap_or(0),
        },
    });
    if let Some(obj) = sink.as_object_mut() {
        if r.str(1) == "webhook" {
            obj.insert("secret_set".into(), json!(r.bool(3)));
        } else {
            let config: NatsConfig = serde_json::from_str(&r.str(4)).unwrap_or_default();
            obj.insert("stream".into(), json!(config.stream));
            obj.insert("subject_prefix".into(), json!(config.subject_prefix));
        }
        // What tells this database's events from those of another one delivering to the same
        // receiver or stream: the first part of each NATS message id, a webhook header.
        obj.insert(
            "database_instance".into(),
            json!(super::database_instance(tx)?),
        );
    }
    Ok(sink)
}

pub fn get_sink(tx: &mut dyn Tx, id: i64) -> Result<Value, AdminError> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT {SINK_COLUMNS} FROM sinks s LEFT JOIN sink_state st ON st.sink_id = s.id WHERE s.id = ?"
            ),
            args![id],
        )?
        .ok_or_else(|| AdminError::NotFound(format!("sink {id}")))?;
    Ok(sink_json(tx, &row)?)
}

pub fn list_sinks(tx: &mut dyn Tx) -> Result<Value, AdminError> {
    let rows = tx.query(
        &format!("SELECT {SINK_COLUMNS} FROM sinks s LEFT JOIN sink_state st ON st.sink_id = s.id ORDER BY s.id"),
        &[],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(sink_json(tx, r)?);
    }
    Ok(Value::Array(out))
}

/// Enables or disables a sink. Enabling forgets the failure streak (a fresh start before the
/// next auto-disable), and the deliveries queued while it was enabled are due at once: an
/// operator enables a sink once its receiver is fixed, and should not wait out the hours of
/// backoff its failures had scheduled. Their tries are kept, so a new failure goes on with the
/// schedule where it was.
pub fn set_sink_enabled(
    tx: &mut dyn Tx,
    id: i64,
    enabled: bool,
    now: i64,
) -> Result<Value, AdminError> {
    let reason = (!enabled).then_some("disabled by an operator");
    if tx.execute(
        "UPDATE sinks SET enabled = ?, disabled_reason = ?, updated_at = ? WHERE id = ?",
        args![enabled, reason, now, id],
    )? != 1
    {
        return Err(AdminError::NotFound(format!("sink {id}")));
    }
    if enabled {
        tx.execute(
            "UPDATE sink_state SET failing_since = NULL WHERE sink_id = ?",
            args![id],
        )?;
        tx.execute(
            "UPDATE deliveries SET next_at = ? WHERE sink_id = ? AND state = 'pending' AND next_at > ?",
            args![now, id, now],
        )?;
    }
    get_sink(tx, id)
}

fn require_sink(tx: &mut dyn Tx, id: i64) -> Result<(), AdminError> {
    tx.query_opt("SELECT id FROM sinks WHERE id = ?", args![id])?
        .map(|_| ())
        .ok_or_else(|| AdminError::NotFound(format!("sink {id}")))
}

/// Re-queues deliveries of one sink (see [`Redeliver`]); answers how many.
pub fn redeliver(
    tx: &mut dyn Tx,
    sink_id: i64,
    what: &Redeliver,
    now: i64,
) -> Result<Value, AdminError> {
    require_sink(tx, sink_id)?;
    let chosen = [
        what.event_id.is_some(),
        what.dead,
        what.from_event_id.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if chosen != 1 {
        return Err(invalid(
            "give exactly one of event_id, dead: true, from_event_id",
        ));
    }
    // Re-queued deliveries restart the retry schedule (`tries` 0) but keep numbering attempts.
    const UPSERT: &str = "ON CONFLICT (sink_id, event_id) DO UPDATE SET state = 'pending', \
         tries = 0, next_at = 0, updated_at = excluded.updated_at";
    let requeued = if let Some(event_id) = what.event_id {
        if tx
            .query_opt("SELECT id FROM events WHERE id = ?", args![event_id])?
            .is_none()
        {
            return Err(AdminError::NotFound(format!("event {event_id}")));
        }
        tx.execute(
            &format!(
                "INSERT INTO deliveries (sink_id, event_id, entity, state, tries, attempts, next_at, updated_at) \
                 SELECT CAST(? AS BIGINT), e.id, e.entity, 'pending', 0, 0, 0, CAST(? AS BIGINT) \
                 FROM events e WHERE e.id = ? {UPSERT}"
            ),
            args![sink_id, now, event_id],
        )?
    } else if let Some(from) = what.from_event_id {
        tx.execute(
            &format!(
                "INSERT INTO deliveries (sink_id, event_id, entity, state, tries, attempts, next_at, updated_at) \
                 SELECT CAST(? AS BIGINT), e.id, e.entity, 'pending', 0, 0, 0, CAST(? AS BIGINT) \
                 FROM events e WHERE e.id >= ? AND EXISTS (SELECT 1 FROM sink_event_types t \
                   WHERE t.sink_id = ? AND (t.event_type = '*' OR t.event_type = e.event_type)) {UPSERT}"
            ),
            args![sink_id, now, from, sink_id],
        )?
    } else {
        tx.execute(
            "UPDATE deliveries SET state = 'pending', tries = 0, next_at = 0, updated_at = ? \
             WHERE sink_id = ? AND state = 'dead'",
            args![now, sink_id],
        )?
    };
    Ok(json!({"sink_id": sink_id, "requeued": requeued}))
}

/// Filters of the events listing.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct EventQuery {
    /// Only events with a larger id (paging).
    pub after: Option<i64>,
    pub limit: Option<i64>,
    pub entity: Option<String>,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
}

fn event_json(tx: &mut dyn Tx, r: &Row) -> Result<Value, StoreError> {
    let id = r.i64(0);
    let deliveries: Vec<Value> = tx
        .query(
            "SELECT sink_id, state, attempts, next_at, last_status, last_error, delivered_at \
             FROM deliveries WHERE event_id = ? ORDER BY sink_id",
            args![id],
        )?
        .iter()
        .map(|d| {
            json!({"sink_id": d.i64(0), "state": d.str(1), "attempts": d.i64(2),
                "next_at": d.i64(3), "last_status": d.opt_i64(4), "last_error": d.opt_str(5),
                "delivered_at": d.opt_i64(6)})
        })
        .collect();
    let payload: Value = serde_json::from_str(&r.str(3)).unwrap_or_else(|_| json!(r.str(3)));
    Ok(json!({
        "id": id, "type": r.str(1), "entity": r.str(2), "payload": payload,
        "created_at": r.i64(4), "deliveries": deliveries,
    }))
}

pub fn list_events(tx: &mut dyn Tx, q: &EventQuery) -> Result<Value, AdminError> {
    // A misspelt type would list nothing, as if there were no such events.
    if let Some(t) = q
        .event_type
        .as_deref()
        .filter(|t| !super::EVENT_TYPES.contains(t))
    {
        return Err(invalid(format!(
            "unknown event type {t:?}; one of {}",
            super::EVENT_TYPES.join(", ")
        )));
    }
    let rows = tx.query(
        "SELECT id, event_type, entity, payload, created_at FROM events WHERE id > ? \
         AND (CAST(? AS TEXT) IS NULL OR entity = ?) AND (CAST(? AS TEXT) IS NULL OR event_type = ?) \
         ORDER BY id LIMIT ?",
        args![
            q.after.unwrap_or(0),
            q.entity.clone(),
            q.entity.clone(),
            q.event_type.clone(),
            q.event_type.clone(),
            page_limit(q.limit)
        ],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(event_json(tx, r)?);
    }
    Ok(Value::Array(out))
}

pub fn get_event(tx: &mut dyn Tx, id: i64) -> Result<Value, AdminError> {
    let row = tx
        .query_opt(
            "SELECT id, event_type, entity, payload, created_at FROM events WHERE id = ?",
            args![id],
        )?
        .ok_or_else(|| AdminError::NotFound(format!("event {id}")))?;
    Ok(event_json(tx, &row)?)
}

const ATTEMPT_COLUMNS: &str = "id, sink_id, event_id, attempt, started_at, duration_ms, outcome, \
     http_status, error, node";

fn attempts_json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                json!({"id": r.i64(0), "sink_id": r.i64(1), "event_id": r.i64(2),
                    "attempt": r.i64(3), "started_at": r.i64(4), "duration_ms": r.i64(5),
                    "outcome": r.str(6), "http_status": r.opt_i64(7), "error": r.opt_str(8),
                    "node": r.str(9)})
            })
            .collect(),
    )
}

/// Every attempt at delivering one event, to any sink, oldest first.
pub fn event_attempts(tx: &mut dyn Tx, event_id: i64) -> Result<Value, AdminError> {
    if tx
        .query_opt("SELECT id FROM events WHERE id = ?", args![event_id])?
        .is_none()
    {
        return Err(AdminError::NotFound(format!("event {event_id}")));
    }
    let rows = tx.query(
        &format!("SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE event_id = ? ORDER BY id"),
        args![event_id],
    )?;
    Ok(attempts_json(&rows))
}

/// The latest attempts of one sink, newest first.
pub fn sink_attempts(tx: &mut dyn Tx, sink_id: i64, max: Option<i64>) -> Result<Value, AdminError> {
    require_sink(tx, sink_id)?;
    let rows = tx.query(
        &format!(
            "SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE sink_id = ? ORDER BY id DESC LIMIT ?"
        ),
        args![sink_id, page_limit(max)],
    )?;
    Ok(attempts_json(&rows))
}

/// Deliveries of one sink, optionally in one state (`pending`, `delivered`, `dead`), by event.
pub fn sink_deliveries(
    tx: &mut dyn Tx,
    sink_id: i64,
    state: Option<&str>,
    after: Option<i64>,
    max: Option<i64>,
) -> Result<Value, AdminError> {
    require_sink(tx, sink_id)?;
    if let Some(s) = state.filter(|s| !matches!(*s, "pending" | "delivered" | "dead")) {
        return Err(invalid(format!(
            "state must be pending, delivered or dead, not {s:?}"
        )));
    }
    let rows = tx.query(
        "SELECT d.event_id, e.event_type, d.entity, d.state, d.tries, d.attempts, d.next_at, \
         d.last_status, d.last_error, d.delivered_at, d.updated_at \
         FROM deliveries d JOIN events e ON e.id = d.event_id \
         WHERE d.sink_id = ? AND (CAST(? AS TEXT) IS NULL OR d.state = ?) AND d.event_id > ? \
         ORDER BY d.event_id LIMIT ?",
        args![sink_id, state, state, after.unwrap_or(0), page_limit(max)],
    )?;
    Ok(Value::Array(
        rows.iter()
            .map(|r| {
                json!({"event_id": r.i64(0), "type": r.str(1), "entity": r.str(2),
                    "state": r.str(3), "tries": r.i64(4), "attempts": r.i64(5),
                    "next_at": r.i64(6), "last_status": r.opt_i64(7), "last_error": r.opt_str(8),
                    "delivered_at": r.opt_i64(9), "updated_at": r.i64(10)})
            })
            .collect(),
    ))
}

// ---- HTTP ----------------------------------------------------------------------------------

/// The routes, merged into the admin router (same bearer token).
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/events", get(http_list_events))
        .route("/admin/events/{id}", get(http_get_event))
        .route("/admin/events/{id}/attempts", get(http_event_attempts))
        .route("/admin/sinks", get(http_list_sinks).post(http_create_sink))
        .route("/admin/sinks/{id}", get(http_get_sink))
        .route("/admin/sinks/{id}/deliveries", get(http_sink_deliveries))
        .route("/admin/sinks/{id}/attempts", get(http_sink_attempts))
        .route("/admin/sinks/{id}/enable", post(http_enable))
        .route("/admin/sinks/{id}/disable", post(http_disable))
        .route("/admin/sinks/{id}/redeliver", post(http_redeliver))
}

/// Runs `f` in a write transaction (a refusal changes nothing). The admin router's guard has
/// checked the token.
async fn write<F>(state: &AppState, mut f: F) -> Response
where
    F: FnMut(&mut dyn Tx, i64) -> Result<Value, AdminError> + Send + 'static,
{
    let now = millis(state.clock.now());
    match state
        .store
        .attempt(crate::admin::ops::as_job(move |tx| f(tx, now)))
        .await
    {
        Ok(Ok(value)) => Json(value).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => AdminError::from(e).into_response(),
    }
}

/// Runs `f` on a read snapshot.
async fn read<F>(state: &AppState, f: F) -> Response
where
    F: FnOnce(&mut dyn Tx) -> Result<Value, AdminError> + Send + 'static,
{
    match state.store.read(move |tx| Ok::<_, StoreError>(f(tx))).await {
        Ok(Ok(value)) => Json(value).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => AdminError::from(e).into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
struct Page {
    state: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

async fn http_list_events(
    State(state): State<Arc<AppState>>,
    Query(q): Query<EventQuery>,
) -> Response {
    read(&state, move |tx| list_events(tx, &q)).await
}

async fn http_get_event(State(state): State<Arc<AppState>>, Path(id): Path<i64>) -> Response {
    read(&state, move |tx| get_event(tx, id)).await
}

async fn http_event_attempts(State(state): State<Arc<AppState>>, Path(id): Path<i64>) -> Response {
    read(&state, move |tx| event_attempts(tx, id)).await
}

async fn http_list_sinks(State(state): State<Arc<AppState>>) -> Response {
    read(&state, list_sinks).await
}

/// A JSON body, or the reason for a 400 naming the field that does not fit (never its value).
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let mut json = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        if e.inner().is_syntax() || e.inner().is_eof() {
            e.inner().to_string()
        } else {
            crate::admin::ops::describe_field_error(&e)
        }
    })
}

async fn http_create_sink(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let new: NewSink = match parse_body(&body) {
        Ok(new) => new,
        Err(reason) => return invalid(reason).into_response(),
    };
    write(&state, move |tx, now| create_sink(tx, &new, now)).await
}

async fn http_get_sink(State(state): State<Arc<AppState>>, Path(id): Path<i64>) -> Response {
    read(&state, move |tx| get_sink(tx, id)).await
}

async fn http_sink_deliveries(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
    Query(p): Query<Page>,
) -> Response {
    read(&state, move |tx| {
        sink_deliveries(tx, id, p.state.as_deref(), p.after, p.limit)
    })
    .await
}

async fn http_sink_attempts(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
    Query(p): Query<Page>,
) -> Response {
    read(&state, move |tx| sink_attempts(tx, id, p.limit)).await
}

async fn http_enable(State(state): State<Arc<AppState>>, Path(id): Path<i64>) -> Response {
    write(&state, move |tx, now| set_sink_enabled(tx, id, true, now)).await
}

async fn http_disable(State(state): State<Arc<AppState>>, Path(id): Path<i64>) -> Response {
    write(&state, move |tx, now| set_sink_enabled(tx, id, false, now)).await
}

async fn http_redeliver(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    let what: Redeliver = match parse_body(&body) {
        Ok(w) => w,
        Err(reason) => return invalid(reason).into_response(),
    };
    write(&state, move |tx, now| redeliver(tx, id, &what, now)).await
}

#[cfg(test)]
mod tests {
    use super::{redact_sink_url, redact_url};

    #[test]
    fn listed_urls_hide_credentials_and_query_values() {
        assert_eq!(
            redact_url("http://user:pw@127.0.0.1:9/hook?token=abc&v=1"),
            "http://***@127.0.0.1:9/hook?token=***&v=***"
        );
        assert_eq!(redact_url("https://h/p"), "https://h/p");
        assert_eq!(redact_url("nats://u:p@h:4222"), "nats://***@h:4222");
        assert_eq!(redact_url("http://h/p?s3cr3t"), "http://h/p?***");
        // Every URL of a NATS list; a webhook's comma is no list separator.
        assert_eq!(
            redact_sink_url(
                "nats",
                "nats://a:4222,nats://bob:pw@b:4222, tls://tok@c:4222"
            ),
            "nats://a:4222,nats://***@b:4222, tls://***@c:4222"
        );
        assert_eq!(
            redact_sink_url("webhook", "http://h/p?a=1,b=2"),
            "http://h/p?a=***"
        );
    }
}
