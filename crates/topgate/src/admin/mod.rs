//! The admin API: JSON over HTTP under `/admin/`, behind a bearer token (off when no token is
//! configured: every admin path then answers 404). It exposes the operations of [`ops`].
//!
//! One layer (`guard`) fronts every admin route, the event sinks' included: it checks the token
//! before anything of the body is read, then reads the body within the gateway's read timeout
//! and body limit, so that no client can hold a connection (or a graceful stop) by never
//! finishing a body; and it turns axum's plain-text rejections into the API's JSON errors.
//! It also keeps the operators' audit trail in the log: every request that may change
//! something (any method but GET) with its path and status at info, and every refused token
//! at warn; never a body, a header or a query (they may hold secrets).
//!
//! What a create refuses, and why, is in [`ops`]. The listings that grow with traffic page as
//! the events listing does: `GET /admin/right-orders?after=<order_id>&limit=` and
//! `GET /admin/idempotency?after_scope=&after_key=&limit=` (`limit` 100 by default, at most
//! [`ops::MAX_LIMIT`]; the cursor is the previous page's last record).

pub mod ops;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::clock::millis;
use crate::gateway::{read_body, read_timeout, unread_body, AppState, BodyError};
use ops::AdminError;

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match &self {
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Invalid(_) => StatusCode::BAD_REQUEST,
            AdminError::Conflict(_) | AdminError::Constraint(_) => StatusCode::CONFLICT,
            AdminError::Store(e) => {
                tracing::error!(error = %e, "admin store failure");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let message = match &self {
            AdminError::Store(_) => "internal error".to_string(),
            other => other.to_string(),
        };
        (status, Json(json!({"error": message}))).into_response()
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/admin/{resource}", post(create).get(list))
        .route("/admin/right-orders", get(right_orders))
        .route("/admin/idempotency", get(idempotency))
        .route("/admin/trades/{tid}", get(trade))
        .route("/admin/trades/{tid}/{event}", post(trade_event))
        .route("/admin/right-orders/{id}", get(right_order))
        .route("/admin/right-orders/{id}/{event}", post(right_order_event))
        .route("/admin/sessions/revoke", post(revoke_session))
        .merge(crate::events::admin::router())
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), guard))
        .with_state(state)
}

/// A path under `/admin/` that the API does not have: behind the token like the rest, and a
/// named error rather than an empty 404 (the server's fallback hands such paths here).
pub fn no_such_path(
    state: &AppState,
    method: &axum::http::Method,
    headers: &axum::http::HeaderMap,
    path: &str,
) -> Response {
    if let Some(denied) = deny(state, headers) {
        if denied.status() == StatusCode::UNAUTHORIZED {
            let status = denied.status().as_u16();
            tracing::warn!(%method, %path, status, "admin request refused: bad or missing token");
        }
        return denied;
    }
    let error = json!({"error": format!("not found: no admin path {path}")});
    (StatusCode::NOT_FOUND, Json(error)).into_response()
}

/// Lets a request through to an admin route once it carries the token and its whole body.
async fn guard(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = guarded(state, request, next).await;
    let status = response.status().as_u16();
    if status == StatusCode::UNAUTHORIZED {
        tracing::warn!(%method, %path, status, "admin request refused: bad or missing token");
    } else if method != axum::http::Method::GET {
        tracing::info!(%method, %path, status, "admin request");
    }
    response
}

async fn guarded(state: Arc<AppState>, request: Request, next: Next) -> Response {
    if let Some(denied) = deny(&state, request.headers()) {
        return denied;
    }
    // Query and path text reaches the store (listing cursors, filters): PostgreSQL cannot take
    // U+0000, SQLite could, so both refuse it alike.
    let uri = request.uri();
    let encoded_nul = |text: &str| text.contains("%00");
    if encoded_nul(uri.path()) || uri.query().is_some_and(encoded_nul) {
        let error = json!({"error": "invalid request: the path and query must not contain the character U+0000"});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
    let (parts, body) = request.into_parts();
    let limit = state.settings.body_limit_bytes;
    let body = match read_body(body, limit, read_timeout(&state)).await {
        Ok(bytes) => Body::from(bytes),
        Err(why @ (BodyError::Unfinished | BodyError::Malformed)) => return unread_body(why, None),
        Err(BodyError::TooLarge(_)) => {
            let error = json!({"error": format!("the body is over {limit} bytes")});
            return (StatusCode::PAYLOAD_TOO_LARGE, Json(error)).into_response();
        }
    };
    json_errors(next.run(Request::from_parts(parts, body)).await).await
}

/// axum's extractor rejections (a body that is not JSON, a path or query that does not parse,
/// a missing content type) answer in plain text; the admin API answers every error as
/// `{"error": …}` with the same status.
async fn json_errors(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !response.status().is_client_error() || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    // A rejection without text (405 for a method a path does not take) is named by its status.
    let message = match String::from_utf8_lossy(&text).trim() {
        "" => parts
            .status
            .canonical_reason()
            .unwrap_or("refused")
            .to_lowercase(),
        text => text.to_string(),
    };
    let error = json!({"error": message});
    (parts.status, Json(error)).into_response()
}

/// `Some(denial)` unless the request carries the configured bearer token.
fn deny(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = state
        .settings
        .admin_token
        .as_deref()
        .filter(|t| !t.is_empty())
    else {
        return Some(StatusCode::NOT_FOUND.into_response());
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme name is case-insensitive (RFC 9110 §11.1); the token is not.
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim_start());
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        None
    } else {
        Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "bad or missing bearer token"})),
            )
                .into_response(),
        )
    }
}

async fn run<F>(state: &AppState, mut f: F) -> Response
where
    F: FnMut(&mut dyn crate::store::Tx, i64) -> Result<Value, AdminError> + Send + 'static,
{
    let now_ms = millis(state.clock.now());
    let outcome = state
        .store
        .attempt(ops::as_job(move |tx| f(tx, now_ms)))
        .await;
    match outcome {
        Ok(Ok(value)) => {
            // Apps, secrets or sessions may have changed: the gateway must not serve stale ones.
            state.apps.clear();
            state.sessions.clear();
            Json(value).into_response()
        }
        Ok(Err(e)) => e.into_response(),
        Err(e) => AdminError::from(e).into_response(),
    }
}

async fn create(
    State(state): State<Arc<AppState>>,
    Path(resource): Path<String>,
    body: Json<Value>,
) -> Response {
    let Json(body) = body;
    run(&state, move |tx, now| {
        ops::create(tx, &resource, &body, now)
    })
    .await
}

async fn list(State(state): State<Arc<AppState>>, Path(resource): Path<String>) -> Response {
    run(&state, move |tx, _| match resource.as_str() {
        "apps" => ops::list_apps(tx),
        other => Err(AdminError::NotFound(format!("no listing of {other}"))),
    })
    .await
}

async fn right_orders(
    State(state): State<Arc<AppState>>,
    Query(page): Query<ops::RightOrderPage>,
) -> Response {
    run(&state, move |tx, _| ops::list_right_orders(tx, &page)).await
}

async fn idempotency(
    State(state): State<Arc<AppState>>,
    Query(page): Query<ops::IdempotencyPage>,
) -> Response {
    run(&state, move |tx, _| ops::list_idempotency(tx, &page)).await
}

async fn trade(State(state): State<Arc<AppState>>, Path(tid): Path<i64>) -> Response {
    run(&state, move |tx, _| ops::get_trade(tx, tid)).await
}

async fn trade_event(
    State(state): State<Arc<AppState>>,
    Path((tid, event)): Path<(i64, String)>,
) -> Response {
    run(&state, move |tx, now| {
        ops::trade_event(tx, tid, &event, now)
    })
    .await
}

/// The key comes in the body, not the path: paths are logged (the audit trail, proxies'
/// access logs), and a session key is a credential.
async fn revoke_session(State(state): State<Arc<AppState>>, body: Json<Value>) -> Response {
    run(&state, move |tx, now| ops::revoke_session(tx, &body, now)).await
}

async fn right_order(State(state): State<Arc<AppState>>, Path(id): Path<i64>) -> Response {
    run(&state, move |tx, _| ops::get_right_order(tx, id)).await
}

async fn right_order_event(
    State(state): State<Arc<AppState>>,
    Path((id, event)): Path<(i64, String)>,
) -> Response {
    run(&state, move |tx, now| {
        ops::right_order_event(tx, id, &event, now)
    })
    .await
}
