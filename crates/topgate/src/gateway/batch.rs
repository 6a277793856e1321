//! `/router/batch` (protocol.md §8.1): several API calls in one signed request, answered in
//! one body, in the format of Java's `BatchTaobaoClient`.
//!
//! The system parameters (`app_key`, `v`, `timestamp`, `sign`, `format`, …; no `method`) are
//! in the query string. The body is text: segments joined by the separator (`\r\n-S-\r\n`, or
//! the one the `top-api-separator` header names), an optional first `#PUBLIC#` segment of
//! parameters common to every call, then one form-encoded segment per call (`N` for none).
//!
//! The request as a whole passes the checks a single call passes before its method's (app key,
//! `v`, `format`, `timestamp`, then the signature over the system parameters with the raw body
//! appended): a failure there is one `error_response`, which Java tells apart by the number of
//! answers. Each call then goes through the rest in its own right (method, permission, rate
//! limit, session, business parameters, handler), with its segment's parameters first, then
//! the public ones, then the system ones (the first occurrence of a name wins, as for a single
//! call), except that the batch's `app_key`, `v`, `timestamp`, `sign_method`, `format` and
//! `simplify` hold for every call. Calls run one after the other, in request order, so that a
//! later call sees what an earlier one wrote; each answer is what the single call would have
//! answered, with its own request id, and the answers are joined with the request's separator.
//!
//! Choices the page leaves open: a batch sent by GET is code 9; the joined answer is
//! `text/plain` (it is not one JSON or XML document; clients split it); a body with no call is
//! refused as code 21 (no call names a method), one with more than [`MAX_CALLS`] calls as code
//! 41; a segment that is not valid form encoding is that call's code 47; a `top-api-separator`
//! header that is not visible ASCII is code 41 (rather than falling back to the default
//! separator, which would split the body somewhere the client did not mean), and so is one
//! that could occur in an answer's own envelope (only letters and digits, which a random
//! request id may spell, or text of the error below, such as `,`); an empty one is the
//! default. An answer that holds the separator (its text echoes the call's input or stored
//! data) is replaced by a code 15 `isv.separator-in-answer` error, so that the answers still
//! count one per call; XML answers write every CR as `&#13;`, so the default separator never
//! occurs in one, and JSON escapes CR anyway.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Uri};
use axum::response::Response;
use top_protocol::envelope::write_error;
use top_protocol::{Format, Object, ParamSet, TopError};

use super::{
    action_not_allowed, answer, authenticate, load_app, method_label, metrics, new_request_id,
    permitted, read_body, read_timeout, registered, render, run_call, unread_body, AppState,
    BodyError, CallLog, CALL_LOG, REQUEST_ID_LEN,
};
use crate::apps::AppRecord;

/// What separates segments when the request names no other separator.
pub const DEFAULT_SEPARATOR: &str = "\r\n-S-\r\n";
/// The request header naming another separator.
pub const SEPARATOR_HEADER: &str = "top-api-separator";
/// Marks the first segment as the parameters common to every call.
const PUBLIC_MARK: &str = "#PUBLIC#";
/// The segment of a call without parameters of its own.
const NO_PARAMS: &str = "N";
/// System parameters that hold for every call of a batch, whatever a segment says.
const BATCH_WIDE: &[&str] = &[
    "app_key",
    "v",
    "timestamp",
    "sign_method",
    "format",
    "simplify",
];
/// The most calls one batch carries: they run one after the other, and a client waits for all.
pub const MAX_CALLS: usize = 50;

/// A batch sent by GET has no body for its calls: code 9, `Http action not allowed` (in HTTP
/// 200, as every TOP answer).
pub async fn refuse_get(uri: Uri) -> Response {
    action_not_allowed(
        &uri,
        "a batch is sent by POST, its calls in the body".into(),
    )
}

pub async fn serve_batch(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (Parts { uri, headers, .. }, body) = request.into_parts();
    let started = Instant::now();
    let request_id = new_request_id();
    let mut system = ParamSet::new();
    let query_read = system.extend_form(uri.query().unwrap_or("").as_bytes());
    let format = Format::from_param(system.get("format")).unwrap_or(Format::Xml);
    let refuse = |error: TopError| {
        tracing::info!(request_id = %request_id, code = error.code, "batch refused");
        metrics::record("unknown", error.code, started.elapsed());
        render(write_error(&error, &request_id, format), format)
    };
    if let Err(e) = query_read {
        return refuse(TopError::invalid_encoding(e.to_string()));
    }
    let limit = state.settings.body_limit_bytes;
    let bytes = match read_body(body, limit, read_timeout(&state)).await {
        Ok(bytes) => bytes,
        Err(why @ (BodyError::Unfinished | BodyError::Malformed)) => {
            return unread_body(why, Some(&request_id))
        }
        Err(BodyError::TooLarge(_)) => return refuse(TopError::body_too_large(limit)),
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return refuse(TopError::invalid_encoding("the batch body is not UTF-8"));
    };
    let separator = match headers.get(SEPARATOR_HEADER).map(|v| v.to_str()) {
        None | Some(Ok("")) => DEFAULT_SEPARATOR,
        Some(Ok(named)) if separator_fits(named, format) => named,
        Some(Ok(_)) => {
            return refuse(TopError::invalid_argument(SEPARATOR_HEADER).with_sub_msg(
                "the separator could occur in the answers' own envelope (it is only letters and \
                 digits, or text of an error answer): choose a longer one, e.g. the default \
                 CR LF -S- CR LF",
            ))
        }
        Some(Err(_)) => {
            return refuse(
                TopError::invalid_argument(SEPARATOR_HEADER)
                    .with_sub_msg("the top-api-separator header must be visible ASCII text"),
            )
        }
    };
    let (app, now) = match admit(&state, &system, text).await {
        Ok(admitted) => admitted,
        Err(error) => return refuse(error),
    };
    let (public, calls) = match split(text, separator) {
        Ok(split) => split,
        Err(error) => return refuse(error),
    };
    let simplify = format == Format::Json && system.get("simplify") == Some("true");
    let mut answers = Vec::with_capacity(calls.len());
    for segment in calls {
        let started = Instant::now();
        let params = call_params(segment, &public, &system);
        let call_log = Arc::new(CallLog::of(
            new_request_id(),
            params.as_ref().unwrap_or(&system),
        ));
        let (label, outcome) = match params {
            Ok(params) => {
                let label = method_label(&state, &params);
                let call = run(Arc::clone(&state), Arc::clone(&app), params, now);
                (label, CALL_LOG.scope(Arc::clone(&call_log), call).await)
            }
            Err(error) => ("unknown", Err(error)),
        };
        let text = answer(&call_log, label, outcome, started, format, simplify);
        answers.push(if text.contains(separator) {
            separator_in_answer(&call_log.request_id, format)
        } else {
            text
        });
    }
    let mut response = Response::new(Body::from(answers.join(separator)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
    response
}

/// Whether answers can be told apart by `separator`: it must not occur in the answer that
/// stands in for one holding it ([`separator_in_answer`], here with a request id of the same
/// length), and it must not be only letters and digits, which a random request id may spell.
fn separator_fits(separator: &str, format: Format) -> bool {
    !separator.bytes().all(|b| b.is_ascii_alphanumeric())
        && !separator_in_answer(&"0".repeat(REQUEST_ID_LEN), format).contains(separator)
}

/// Stands in for an answer that holds the batch's separator (text it echoes or stored data),
/// which would make the client count one answer too many and take the whole batch for
/// refused. The call did run: a write it made is kept, and sending it again replays it.
fn separator_in_answer(request_id: &str, format: Format) -> String {
    let error = TopError::new(15).with_sub(
        "isv.separator-in-answer",
        "this call's answer contains the batch separator; send the call alone or choose another \
         separator (a change it made is kept, and sending it again replays it)",
    );
    write_error(&error, request_id, format)
}

/// The checks of the batch as a whole: its app, then `v`, `format`, `timestamp` and the
/// signature over the system parameters and the raw body.
async fn admit(
    state: &Arc<AppState>,
    system: &ParamSet,
    body: &str,
) -> Result<(Arc<AppRecord>, time::OffsetDateTime), TopError> {
    let app_key = system
        .get_non_empty("app_key")
        .ok_or_else(TopError::missing_app_key)?;
    let app = load_app(state, app_key).await?;
    let now = authenticate(state, &app, system, Some(body))?;
    Ok((app, now))
}

/// The public parameters and the calls' segments of a body.
fn split<'a>(body: &'a str, separator: &str) -> Result<(ParamSet, Vec<&'a str>), TopError> {
    let mut segments = body.split(separator).peekable();
    let mut public = ParamSet::new();
    if let Some(common) = segments
        .peek()
        .and_then(|first| first.strip_prefix(PUBLIC_MARK))
    {
        public
            .extend_form(common.as_bytes())
            .map_err(|e| TopError::invalid_encoding(e.to_string()))?;
        segments.next();
    }
    let calls: Vec<&str> = segments.collect();
    if calls.is_empty() || calls == [""] {
        return Err(TopError::missing_method());
    }
    if calls.len() > MAX_CALLS {
        return Err(TopError::invalid_argument("body")
            .with_sub_msg(format!("a batch carries at most {MAX_CALLS} calls")));
    }
    Ok((public, calls))
}

/// One call's parameters: the batch's own ones (which the checks of the whole batch used),
/// then its segment's, then the public ones, then the other system ones (`session`, …) but
/// the batch's signature.
fn call_params(segment: &str, public: &ParamSet, system: &ParamSet) -> Result<ParamSet, TopError> {
    let mut params = ParamSet::new();
    for name in BATCH_WIDE {
        if let Some(value) = system.get(name) {
            params.insert(*name, value);
        }
    }
    if segment != NO_PARAMS {
        params
            .extend_form(segment.as_bytes())
            .map_err(|e| TopError::invalid_encoding(e.to_string()))?;
    }
    for (name, value) in public.iter().chain(system.iter()) {
        if name != "sign" {
            params.insert(name, value);
        }
    }
    Ok(params)
}

/// The checks of one call of an admitted batch, from its method on, then its handler.
async fn run(
    state: Arc<AppState>,
    app: Arc<AppRecord>,
    params: ParamSet,
    now: time::OffsetDateTime,
) -> Result<(&'static str, Object), TopError> {
    let method = params
        .get_non_empty("method")
        .ok_or_else(TopError::missing_method)?;
    let registered = registered(&state, method)?;
    let limit = permitted(&app, &registered.0)?;
    run_call(state, app, registered, limit, params, now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_segment_is_shared_and_a_call_segment_wins_over_it() {
        let body = "#PUBLIC#method=a.b&x=1\r\n-S-\r\nx=2&app_key=other\r\n-S-\r\nN";
        let (public, calls) = split(body, DEFAULT_SEPARATOR).expect("two calls");
        assert_eq!(calls, ["x=2&app_key=other", "N"]);
        let mut system = ParamSet::new();
        system.insert("app_key", "k");
        system.insert("sign", "S");
        let first = call_params(calls[0], &public, &system).expect("valid");
        assert_eq!(first.get("x"), Some("2"));
        assert_eq!(first.get("method"), Some("a.b"));
        assert_eq!(first.get("app_key"), Some("k"));
        assert_eq!(first.get("sign"), None);
        let second = call_params(calls[1], &public, &system).expect("valid");
        assert_eq!(second.get("x"), Some("1"));
    }

    #[test]
    fn a_body_without_calls_or_with_too_many_is_refused_whole() {
        assert_eq!(split("", DEFAULT_SEPARATOR).unwrap_err().code, 21);
        assert_eq!(
            split("#PUBLIC#method=a.b", DEFAULT_SEPARATOR)
                .unwrap_err()
                .code,
            21
        );
        let many = vec!["N"; MAX_CALLS + 1].join(DEFAULT_SEPARATOR);
        assert_eq!(split(&many, DEFAULT_SEPARATOR).unwrap_err().code, 41);
        let most = vec!["N"; MAX_CALLS].join(DEFAULT_SEPARATOR);
        assert_eq!(split(&most, DEFAULT_SEPARATOR).unwrap().1.len(), MAX_CALLS);
    }

    #[test]
    fn another_separator_splits_the_body() {
        let (_, calls) = split("method=a.b|||method=c.d", "|||").expect("two calls");
        assert_eq!(calls, ["method=a.b", "method=c.d"]);
    }
}
