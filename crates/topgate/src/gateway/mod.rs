//! The HTTP gateway: `/router/rest` and `/top/router/rest` (GET and POST), the checks of
//! protocol.md §7.6 in their order, dispatch to the registered API handlers, and the envelope;
//! `/router/batch` and `/top/router/batch` ([`batch`]) run several calls through the same checks.
//!
//! Every TOP answer is HTTP 200. A request's parameters are parsed once; the response format is
//! the one asked for when it is valid (XML otherwise, as on TOP). gzip is applied by the
//! compression layer only when the client's `Accept-Encoding` asks for it. Every log line of a
//! call carries its request_id, app_key and method; secrets and signatures are never logged.
//! Those fields are written into the lines themselves rather than kept in a tracing span: the
//! span formatted them for every call, logged or not, which cost about 5 % of a lianbei call.

pub mod batch;
pub mod cache;
pub mod limits;
mod listen;
pub mod metrics;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use time::{Duration, OffsetDateTime};
use top_protocol::envelope::{write_error, write_success};
use top_protocol::params::multipart_boundary;
use top_protocol::registry::{MethodSpec, Registry};
use top_protocol::{sign, timestamp, Format, Object, ParamSet, SignMethod, TopError};
use tower_http::compression::predicate::SizeAbove;
use tower_http::compression::CompressionLayer;

use crate::apps::{self, AppRecord};
use crate::clock::Clock;
use crate::config::Settings;
use crate::store::{Store, StoreError};

/// One authenticated, verified call handed to an API handler.
pub struct Call {
    pub state: Arc<AppState>,
    pub app: Arc<AppRecord>,
    /// The user of a valid `session`, when one was sent.
    pub session_user: Option<i64>,
    pub params: ParamSet,
    pub now: OffsetDateTime,
}

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Object, TopError>> + Send>>;
pub type Handler = fn(Call) -> HandlerFuture;

pub struct AppState {
    pub store: Store,
    pub settings: Settings,
    pub clock: Clock,
    pub registry: Registry<Handler>,
    pub limits: limits::RateLimits,
    pub apps: cache::TtlCache<AppRecord>,
    pub sessions: cache::TtlCache<apps::SessionRecord>,
}

impl AppState {
    pub fn new(store: Store, settings: Settings, clock: Clock) -> Arc<Self> {
        metrics::install();
        Arc::new(Self {
            store,
            clock,
            registry: crate::api::registry(),
            limits: limits::RateLimits::default(),
            apps: cache::TtlCache::new(std::time::Duration::from_millis(settings.auth_cache_ms)),
            sessions: cache::TtlCache::new(std::time::Duration::from_millis(
                settings.auth_cache_ms,
            )),
            settings,
        })
    }
}

/// Who is calling, for the lines logged about a call.
struct CallLog {
    request_id: String,
    app_key: String,
    method: String,
}

tokio::task_local! {
    /// The call `serve_rest` is answering, for lines logged further down (a store failure).
    static CALL_LOG: Arc<CallLog>;
}

/// Maps a store failure to TOP's internal error, logging the detail (never sent to clients)
/// with the call it happened in.
pub fn internal(err: StoreError) -> TopError {
    let logged = CALL_LOG.try_with(|call| {
        tracing::error!(
            request_id = %call.request_id,
            app_key = %call.app_key,
            method = %call.method,
            error = %err,
            "store failure"
        );
    });
    if logged.is_err() {
        tracing::error!(error = %err, "store failure");
    }
    TopError::internal()
}

pub fn router(state: Arc<AppState>) -> Router {
    let rest = || get(serve_rest).post(serve_rest).fallback(refuse_method);
    let batch = || {
        get(batch::refuse_get)
            .post(batch::serve_batch)
            .fallback(refuse_method)
    };
    let api = Router::new()
        .route("/router/rest", rest())
        .route("/top/router/rest", rest())
        .route("/router/batch", batch())
        .route("/top/router/batch", batch())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .with_state(Arc::clone(&state));
    let fallback_state = Arc::clone(&state);
    api.merge(crate::admin::router(state))
        .fallback(move |request: Request| {
            let state = Arc::clone(&fallback_state);
            async move { not_found(&state, &request) }
        })
        // Only the size test of the default predicate: the others exclude content types
        // (images, gRPC, event streams) this server never sends, and cost string comparisons
        // on every answer, asked for gzip or not.
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .compress_when(SizeAbove::new(DEFAULT_MIN_SIZE)),
        )
}

/// A path nothing serves: `/admin` or under `/admin/` the admin API's named 404 (behind its
/// token), else an empty 404.
fn not_found(state: &AppState, request: &Request) -> Response {
    let path = request.uri().path();
    if path == "/admin" || path.starts_with("/admin/") {
        return crate::admin::no_such_path(state, request.method(), request.headers(), path);
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = axum::http::StatusCode::NOT_FOUND;
    response
}

/// The smallest answer worth compressing: tower-http's default predicate's threshold.
const DEFAULT_MIN_SIZE: u16 = 32;

/// A method the router paths do not take (PUT, DELETE, …): code 9, `Http action not allowed`,
/// in the format the query names and in HTTP 200 like every TOP answer, rather than an empty
/// HTTP 405 that no TOP client can read.
async fn refuse_method(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    action_not_allowed(&uri, format!("{method} is not taken: send POST or GET"))
}

/// Code 9, `Http action not allowed`, saying `why`, in the format the query names.
fn action_not_allowed(uri: &axum::http::Uri, why: String) -> Response {
    let format = error_format(uri.query(), None, &[]);
    let error = TopError::new(9).with_sub_msg(why);
    metrics::record("unknown", error.code, std::time::Duration::ZERO);
    render(write_error(&error, &new_request_id(), format), format)
}

/// Liveness: the process serves HTTP. It touches nothing else, so that it is also the
/// ceiling `topgate bench` measures the APIs against.
async fn healthz() -> &'static str {
    "ok"
}

/// How long `/readyz` waits for the database before it calls it unavailable.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness, for a load balancer: 200 `ready` when a read of the database answers within
/// [`READY_TIMEOUT`], else 503 (a node whose PostgreSQL is gone answers every call with code 15
/// after a wait, and should be taken out of rotation). The cause is logged, not answered.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let read = state
        .store
        .read(|tx| tx.query_opt("SELECT 1", &[]).map(|_| ()));
    let unavailable = match tokio::time::timeout(READY_TIMEOUT, read).await {
        Ok(Ok(())) => return axum::response::IntoResponse::into_response("ready"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {READY_TIMEOUT:?}"),
    };
    tracing::warn!(error = %unavailable, "not ready: the database is unavailable");
    axum::response::IntoResponse::into_response((
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "database unavailable",
    ))
}

/// The length of a request id: letters and digits, drawn at random.
const REQUEST_ID_LEN: usize = 13;

fn new_request_id() -> String {
    apps::random_token(REQUEST_ID_LEN)
}

fn render(body: String, format: Format) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
}

/// Takes the whole request rather than the `Uri` and `HeaderMap` extractors, which clone them.
async fn serve_rest(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (Parts { uri, headers, .. }, body) = request.into_parts();
    let started = Instant::now();
    let request_id = new_request_id();
    let limit = state.settings.body_limit_bytes;
    let bytes = match read_body(body, limit, read_timeout(&state)).await {
        Ok(bytes) => bytes,
        Err(why @ (BodyError::Unfinished | BodyError::Malformed)) => {
            return unread_body(why, Some(&request_id))
        }
        Err(BodyError::TooLarge(prefix)) => {
            let format = error_format(uri.query(), content_type(&headers), &prefix);
            tracing::info!(request_id = %request_id, code = 43, "request body over the limit");
            metrics::record("unknown", 43, started.elapsed());
            return render(
                write_error(&TopError::body_too_large(limit), &request_id, format),
                format,
            );
        }
    };
    let content_type = content_type(&headers);
    let params = match ParamSet::from_request(uri.query(), content_type, &bytes) {
        Ok(params) => params,
        Err(e) => {
            let format = error_format(uri.query(), content_type, &bytes);
            tracing::info!(request_id = %request_id, code = 47, "unreadable parameters");
            metrics::record("unknown", 47, started.elapsed());
            return render(
                write_error(
                    &TopError::invalid_encoding(e.to_string()),
                    &request_id,
                    format,
                ),
                format,
            );
        }
    };
    let format = Format::from_param(params.get("format")).unwrap_or(Format::Xml);
    let simplify = format == Format::Json && params.get("simplify") == Some("true");
    let call_log = Arc::new(CallLog::of(request_id, &params));
    let label = method_label(&state, &params);
    let outcome = CALL_LOG
        .scope(Arc::clone(&call_log), process(state, params))
        .await;
    render(
        answer(&call_log, label, outcome, started, format, simplify),
        format,
    )
}

impl CallLog {
    /// `app_key` and `method` are the client's text, logged before anything is verified: see
    /// [`loggable`].
    fn of(request_id: String, params: &ParamSet) -> Self {
        Self {
            request_id,
            app_key: loggable(params.get("app_key").unwrap_or("")),
            method: loggable(params.get("method").unwrap_or("")),
        }
    }
}

/// The longest client text a log line carries; the rest is cut.
const LOGGED_TEXT_MAX: usize = 128;

/// Client text as a log field. Text that could pass for more than one field value is quoted
/// and escaped like a Rust string (`"test request_id=FAKE"`, `"x\n…"`): control characters
/// would end the line of the text log and forge the next one, a space or `=` would forge
/// fields within it. It is cut after [`LOGGED_TEXT_MAX`] characters, so that a megabyte-long
/// method name is not logged whole.
fn loggable(text: &str) -> String {
    let plain = |b: u8| b > b' ' && b != b'=' && b != b'"' && b != 0x7f && b != 0xc2;
    // Every call passes here: usual text takes one byte scan (0xC2 leads the C1 controls,
    // U+0080 to U+009F, and some harmless characters, which take the long way).
    if text.len() <= LOGGED_TEXT_MAX && !text.is_empty() && text.bytes().all(plain) {
        return text.to_string();
    }
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(LOGGED_TEXT_MAX).collect();
    let cut = if chars.next().is_some() { "…" } else { "" };
    let quote = head.is_empty()
        || head
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '=' || c == '"');
    if quote {
        format!("\"{}{cut}\"", head.escape_debug())
    } else {
        format!("{head}{cut}")
    }
}

/// The metrics label of a call's method: its registered name, or `unknown`.
fn method_label(state: &AppState, params: &ParamSet) -> &'static str {
    params
        .get("method")
        .and_then(|m| state.registry.get(m))
        .map_or("unknown", |(spec, _)| spec.name)
}

/// Records a finished call (its metrics and log line) and writes its answer.
fn answer(
    call_log: &CallLog,
    label: &'static str,
    outcome: Result<(&'static str, Object), TopError>,
    started: Instant,
    format: Format,
    simplify: bool,
) -> String {
    let elapsed = started.elapsed();
    let elapsed_us = elapsed.as_micros() as u64;
    metrics::record(
        label,
        outcome.as_ref().map_or_else(|e| e.code, |_| 0),
        elapsed,
    );
    let CallLog {
        request_id,
        app_key,
        method,
    } = call_log;
    match outcome {
        Ok((method, body)) => {
            // Debug, not info: formatting and writing one line per success to stderr cost more
            // than a lianbei lookup under load. Refusals stay at info.
            tracing::debug!(
                request_id = %request_id,
                app_key = %app_key,
                method = %method,
                code = 0,
                elapsed_us,
                "served"
            );
            write_success(method, &body, request_id, format, simplify)
        }
        Err(error) => {
            tracing::info!(
                request_id = %request_id,
                app_key = %app_key,
                method = %method,
                code = error.code,
                sub_code = error.sub_code.as_deref().unwrap_or(""),
                elapsed_us,
                "refused"
            );
            write_error(&error, request_id, format)
        }
    }
}

/// Why a request's body was not read whole.
pub(crate) enum BodyError {
    /// Past the limit: what was read (whole form pairs before the cut still tell the client's
    /// `format`).
    TooLarge(Vec<u8>),
    /// The client stopped sending it, broke it off, or sent it slower than the read timeout.
    Unfinished,
    /// Its framing is broken (a chunk size that is no hexadecimal number, …): HTTP 400.
    Malformed,
}

pub(crate) fn read_timeout(state: &AppState) -> std::time::Duration {
    std::time::Duration::from_secs(state.settings.read_timeout_secs)
}

/// Reads the body, up to `limit` bytes and within `timeout` of the head.
pub(crate) async fn read_body(
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<axum::body::Bytes, BodyError> {
    tokio::time::timeout(timeout, read_body_within(body, limit))
        .await
        .unwrap_or(Err(BodyError::Unfinished))
}

async fn read_body_within(body: Body, limit: usize) -> Result<axum::body::Bytes, BodyError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) if is_malformed(&e) => return Err(BodyError::Malformed),
            Err(_) => return Err(BodyError::Unfinished),
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                buf.extend_from_slice(&data[..limit.saturating_sub(buf.len())]);
                if let Some(cut) = buf.iter().rposition(|b| *b == b'&') {
                    buf.truncate(cut);
                }
                return Err(BodyError::TooLarge(buf));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.into())
}

/// Whether hyper gave up on a body because the client framed it wrongly, rather than because
/// it ended early: hyper reports both as a body error whose cause is an I/O error, of kind
/// `InvalidData`/`InvalidInput` for bad framing and `UnexpectedEof` for an early end.
fn is_malformed(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
            );
        }
        cause = e.source();
    }
    false
}

/// The answer to a request whose body was not read whole: no TOP answer, as no call was read,
/// but HTTP 408 when it did not come in time or broke off, and 400 when its framing is broken;
/// then the connection is closed (its unread rest cannot be skipped).
pub(crate) fn unread_body(why: BodyError, request_id: Option<&str>) -> Response {
    let (status, what) = if matches!(why, BodyError::Malformed) {
        (axum::http::StatusCode::BAD_REQUEST, "malformed")
    } else {
        (
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "not received in time or broken off",
        )
    };
    tracing::info!(request_id = request_id.unwrap_or(""), "request body {what}");
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The format of an answer given before the parameters could be parsed: the one the query
/// names, else the one the (possibly cut) body names (Node and Go send everything there, and
/// Python's multipart body holds the system parameters too), else XML. Query first, as for
/// every parameter; worked out only on these error paths.
fn error_format(query: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Format {
    // Multipart exactly when the parser takes the body for multipart.
    let multipart = content_type.and_then(multipart_boundary).is_some();
    query
        .and_then(|q| form_format(q.as_bytes()))
        .or_else(|| {
            if multipart {
                multipart_format(body)
            } else {
                form_format(body)
            }
        })
        .unwrap_or(Format::Xml)
}

/// The `format` part of a multipart body that may not parse as a whole: the value between the
/// blank line after `name="format"` and the next line break.
fn multipart_format(body: &[u8]) -> Option<Format> {
    let named = memchr::memmem::find(body, b"name=\"format\"")?;
    let rest = &body[named..];
    let start = memchr::memmem::find(rest, b"\r\n\r\n")? + 4;
    let value = &rest[start..];
    let end = memchr::memmem::find(value, b"\r\n").unwrap_or(value.len());
    let value = std::str::from_utf8(&value[..end]).ok()?;
    Format::from_param(Some(value))
}

fn content_type(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

/// The `format` of a form string, when it names a valid one: errors raised before the full
/// parse still answer in the client's format.
fn form_format(form: &[u8]) -> Option<Format> {
    let mut set = ParamSet::new();
    let _ = set.extend_form(form);
    set.get("format").and_then(|f| Format::from_param(Some(f)))
}

/// The checks of protocol.md §7.6, in order, then the handler.
async fn process(
    state: Arc<AppState>,
    params: ParamSet,
) -> Result<(&'static str, Object), TopError> {
    let method = params
        .get_non_empty("method")
        .ok_or_else(TopError::missing_method)?;
    let app_key = params
        .get_non_empty("app_key")
        .ok_or_else(TopError::missing_app_key)?;
    let registered = registered(&state, method)?;
    let app = load_app(&state, app_key).await?;
    let limit = permitted(&app, &registered.0)?;
    let now = authenticate(&state, &app, &params, None)?;
    run_call(state, app, registered, limit, params, now).await
}

/// The registered method `name` and its handler (code 22 otherwise).
fn registered(state: &AppState, name: &str) -> Result<(MethodSpec, Handler), TopError> {
    state
        .registry
        .get(name)
        .map(|(spec, handler)| (*spec, *handler))
        .ok_or_else(|| TopError::invalid_method(name))
}

/// The calls per second `app` may make to `spec` when it may call it at all (code 11 otherwise).
fn permitted(app: &AppRecord, spec: &MethodSpec) -> Result<Option<u32>, TopError> {
    app.grant(spec.name)
        .ok_or_else(|| TopError::insufficient_isv_permissions(spec.name))
}

/// The enabled app of `app_key` (code 29 otherwise), from the cache or the store.
async fn load_app(state: &Arc<AppState>, app_key: &str) -> Result<Arc<AppRecord>, TopError> {
    // No app key holds U+0000, and PostgreSQL refuses it in a query's text as an error.
    if app_key.contains('\0') {
        return Err(TopError::invalid_app_key());
    }
    match state.apps.get(app_key) {
        Some(cached) => cached,
        None => {
            let key = app_key.to_string();
            let loaded = state
                .store
                .read_now(move |tx| apps::load_app(tx, &key))
                .await
                .map_err(internal)?
                .map(Arc::new);
            state.apps.put(app_key, loaded.clone());
            loaded
        }
    }
    .filter(|app| app.enabled)
    .ok_or_else(TopError::invalid_app_key)
}

/// The request-level checks after the app's: `v`, `format`, `timestamp`, then the signature
/// over `params` (and a batch's raw `body`). Answers the time the request is taken at.
fn authenticate(
    state: &AppState,
    app: &AppRecord,
    params: &ParamSet,
    body: Option<&str>,
) -> Result<OffsetDateTime, TopError> {
    match params.get_non_empty("v") {
        None => return Err(TopError::missing_version()),
        Some("2.0") => {}
        Some("1.0") => return Err(TopError::unsupported_version()),
        Some(_) => return Err(TopError::invalid_version()),
    }
    if let Some(f) = params.get_non_empty("format") {
        Format::from_param(Some(f)).ok_or_else(|| TopError::invalid_format(f))?;
    }
    let now = state.clock.now();
    let ts = params
        .get_non_empty("timestamp")
        .ok_or_else(TopError::missing_timestamp)?;
    let instant = timestamp::parse(ts).ok_or_else(|| {
        TopError::invalid_timestamp(
            "timestamp must be yyyy-MM-dd HH:mm:ss (GMT+8) or epoch milliseconds",
        )
    })?;
    let window = Duration::seconds(state.settings.timestamp_window_secs);
    let on_time = timestamp::within_window(instant, now, window)
        || (state.settings.timestamp_any_zone
            && ts.contains(' ')
            && timestamp::within_window_in_some_zone(instant, now, window));
    if !on_time {
        return Err(TopError::invalid_timestamp(format!(
            "timestamp is more than {} seconds away from server time {}",
            window.whole_seconds(),
            timestamp::format_wall_clock(now)
        )));
    }
    let received_sign = params
        .get_non_empty("sign")
        .ok_or_else(TopError::missing_signature)?;
    // Modern SDKs always send sign_method; an absent one is taken as md5, their default.
    let sign_method = match params.get_non_empty("sign_method") {
        None => SignMethod::Md5,
        Some(name) => {
            SignMethod::from_wire(name).ok_or_else(|| TopError::unknown_sign_method(name))?
        }
    };
    if !sign::verify(sign_method, &app.secret, params, body, received_sign) {
        return Err(TopError::invalid_signature());
    }
    Ok(now)
}

/// The checks of an authenticated call to a method its app may call (rate limit, session,
/// business parameters), then its handler.
async fn run_call(
    state: Arc<AppState>,
    app: Arc<AppRecord>,
    (spec, handler): (MethodSpec, Handler),
    limit: Option<u32>,
    params: ParamSet,
    now: OffsetDateTime,
) -> Result<(&'static str, Object), TopError> {
    if let Some(per_second) = limit.filter(|_| !app.sandbox) {
        let verdict = if state.store.is_shared() {
            limits::check_shared(
                &state.store,
                &app.app_key,
                spec.name,
                per_second,
                crate::clock::millis(now),
            )
            .await
            .map_err(internal)?
        } else {
            state.limits.check(
                &app.app_key,
                spec.name,
                per_second,
                crate::clock::millis(now),
            )
        };
        verdict.map_err(TopError::app_call_limited)?;
    }
    let session_key = params
        .get_non_empty("session")
        .or_else(|| params.get_non_empty("access_token"));
    let session_user = match session_key {
        None if spec.needs_session => return Err(TopError::missing_session()),
        None => None,
        // As for app keys: no session key holds U+0000.
        Some(key) if key.contains('\0') => return Err(TopError::invalid_session()),
        Some(key) => {
            let session = match state.sessions.get(key) {
                Some(cached) => cached,
                None => {
                    let owned = key.to_string();
                    let loaded = state
                        .store
                        .lookup_now(move |tx| apps::load_session(tx, &owned))
                        .await
                        .map_err(internal)?
                        .map(Arc::new);
                    state.sessions.put(key, loaded.clone());
                    loaded
                }
            }
            .filter(|s| s.app_key == app.app_key && s.expires_at_ms > crate::clock::millis(now))
            .ok_or_else(TopError::invalid_session)?;
            Some(session.user_id)
        }
    };
    spec.check_params(&params)?;
    let call = Call {
        state: Arc::clone(&state),
        app,
        session_user,
        params,
        now,
    };
    let body = handler(call).await?;
    Ok((spec.name, body))
}

/// Serves until `stop` resolves, then lets in-flight calls finish.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let read_timeout = read_timeout(&state);
    listen::serve_until(listener, router(state), read_timeout, stop).await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;

    use super::*;

    /// A log destination the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn client_text_in_a_log_line_cannot_start_another_line() {
        let forged = "x\n2026-12-01T04:30:00Z  INFO topgate::gateway: served request_id=FAKE";
        let call = CallLog::of(
            "rid".into(),
            &ParamSet::from_request(
                Some(&format!(
                    "method={}&app_key=%1B%5B2J",
                    forged.replace('\n', "%0A").replace(' ', "%20")
                )),
                None,
                b"",
            )
            .expect("params"),
        );
        assert_eq!(call.method, format!("\"{}\"", forged.replace('\n', "\\n")));
        assert_eq!(call.app_key, "\"\\u{1b}[2J\"");
        assert_eq!(loggable("plain.method"), "plain.method");
        assert_eq!(
            loggable("test request_id=FAKE"),
            "\"test request_id=FAKE\"",
            "no field can be forged within the line"
        );
        assert_eq!(loggable(""), "\"\"");
        assert_eq!(
            loggable("\u{9b}"),
            "\"\\u{9b}\"",
            "C1 controls are escaped too"
        );
        assert_eq!(loggable("é"), "é");
        let long = "m".repeat(LOGGED_TEXT_MAX + 10);
        assert_eq!(
            loggable(&long),
            format!("{}…", &long[..LOGGED_TEXT_MAX]),
            "cut after {LOGGED_TEXT_MAX} characters"
        );
    }

    #[test]
    fn a_store_failure_is_logged_with_the_call_it_happened_in() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let call = Arc::new(CallLog {
            request_id: "rid42".into(),
            app_key: "k1".into(),
            method: "a.b.c".into(),
        });
        let error = tracing::subscriber::with_default(subscriber, || {
            CALL_LOG.sync_scope(call, || {
                internal(StoreError::Backend("disk unavailable".into()))
            })
        });
        assert_eq!(error, TopError::internal());
        let text = String::from_utf8_lossy(&captured.0.lock().expect("log")).into_owned();
        for field in [
            "ERROR",
            "store failure",
            "request_id=rid42",
            "app_key=k1",
            "method=a.b.c",
            "disk unavailable",
        ] {
            assert!(text.contains(field), "{field} missing from {text}");
        }
    }
}
