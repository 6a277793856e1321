//! An async client for TOP `router/rest` APIs, built on `top-protocol`'s signer and envelope
//! reader: `TopClient::builder(url, app_key, secret)`, then [`TopClient::execute`] with a typed
//! request of [`apis`] or [`TopClient::call`] with any method and parameters. Errors keep TOP's
//! `code`, `msg`, `sub_code`, `sub_msg` and `request_id` apart from transport failures.
//! [`TopClient::batch`] sends several calls in one `/router/batch` request. The URL may be
//! `http://` or `https://` (real TOP endpoints are HTTPS), spoken with rustls trusting the
//! bundled Mozilla root certificates (not the system's store).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let settings = topgate::config::Settings {
//! #     listen: "127.0.0.1:0".into(),
//! #     database_url: Some(format!("sqlite://{}", dir.path().join("doc.db").display())),
//! #     ..Default::default()
//! # };
//! # let server = topgate::Server::bind(settings, true, topgate::clock::Clock::system()).await?;
//! # let url = format!("http://{}/router/rest", server.addr);
//! # tokio::spawn(server.run());
//! use top_sdk::apis::LianbeiOrderNoticeRequest;
//! use top_sdk::TopClient;
//!
//! // `url` is a topgate sandbox, e.g. http://127.0.0.1:8080/router/rest
//! let client = TopClient::builder(url, "test", "test").build()?;
//! let answer = client.execute(&LianbeiOrderNoticeRequest { biz_order_id: 1000 }).await?;
//! assert_eq!(answer.result.alisp_code, 200);
//! assert_eq!(answer.result.alisp_data.unwrap().buyer_nick, "买**称");
//! # Ok(())
//! # }
//! ```
//!
//! A TOP error keeps its parts:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let settings = topgate::config::Settings {
//! #     listen: "127.0.0.1:0".into(),
//! #     database_url: Some(format!("sqlite://{}", dir.path().join("doc.db").display())),
//! #     ..Default::default()
//! # };
//! # let server = topgate::Server::bind(settings, true, topgate::clock::Clock::system()).await?;
//! # let url = format!("http://{}/router/rest", server.addr);
//! # tokio::spawn(server.run());
//! let client = top_sdk::TopClient::builder(url, "test", "wrong-secret").build()?;
//! let err = client.call("taobao.time.get", []).await.unwrap_err();
//! assert_eq!(err.top().map(|e| e.code), Some(25));
//! # Ok(())
//! # }
//! ```

pub mod apis;
mod lenient;

use std::time::Duration;

use reqwest::StatusCode;
use time::OffsetDateTime;
use top_protocol::reader::{self, ReadError};
use top_protocol::{sign, timestamp, Format, ParamSet, SignMethod, TopError};

/// What can go wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gateway answered with an `error_response`.
    #[error("{}", describe_top(.error, .request_id.as_deref()))]
    Top {
        error: TopError,
        request_id: Option<String>,
    },
    /// The request could not be sent or the answer not received; the cause is the error's
    /// source. Its URL is kept without the query string, where a batch carries its session and
    /// signature.
    #[error("transport failure")]
    Transport(#[source] reqwest::Error),
    /// The answer is not a TOP envelope (with the HTTP status when it was not 200): its root is
    /// not one member (XML: element) named `…_response` holding an object or `error_response`;
    /// an `error_response` has no non-zero integer `code`; or an answer without
    /// `error_response` came with a status other than 2xx (with `simplify`, any JSON object is
    /// a success envelope, so the status is what tells a proxy's JSON from one). The message says
    /// which, and shows the start of the body (200 characters, control characters escaped):
    /// `unreadable response: HTTP 502 Bad Gateway: not a TOP envelope: …; the body starts:
    /// {"message":"upstream unavailable"}`. Also a typed answer of [`TopClient::execute`] that
    /// does not decode into its response type.
    #[error("unreadable response: {0}")]
    Malformed(String),
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        let bare = e.url().filter(|u| u.query().is_some()).map(|u| {
            let mut bare = u.clone();
            bare.set_query(None);
            bare
        });
        Error::Transport(match bare {
            Some(url) => e.with_url(url),
            None => e,
        })
    }
}

/// `TOP error 25: Invalid signature; sub_code …: sub_msg …; request_id …`, each part only when
/// the answer had it.
fn describe_top(error: &TopError, request_id: Option<&str>) -> String {
    let mut text = format!("TOP error {}: {}", error.code, error.msg);
    if let Some(sub_code) = &error.sub_code {
        text.push_str(&format!("; sub_code {sub_code}"));
    }
    if let Some(sub_msg) = &error.sub_msg {
        text.push_str(&format!("; sub_msg {sub_msg}"));
    }
    if let Some(request_id) = request_id {
        text.push_str(&format!("; request_id {request_id}"));
    }
    text
}

impl Error {
    /// The TOP error, when the gateway answered with one.
    pub fn top(&self) -> Option<&TopError> {
        match self {
            Error::Top { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A decoded success: the response object (wrapper removed), its request_id and the raw body.
#[derive(Debug, Clone)]
pub struct Response {
    pub body: serde_json::Value,
    pub request_id: Option<String>,
    pub raw: String,
}

#[derive(Clone)]
pub struct TopClient {
    http: reqwest::Client,
    url: String,
    app_key: String,
    secret: String,
    sign_method: SignMethod,
    format: Format,
    simplify: bool,
    session: Option<String>,
}

impl std::fmt::Debug for TopClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopClient")
            .field("url", &self.url)
            .field("app_key", &self.app_key)
            .field("sign_method", &self.sign_method)
            .field("format", &self.format)
            .field("simplify", &self.simplify)
            .finish_non_exhaustive()
    }
}

pub struct TopClientBuilder {
    url: String,
    app_key: String,
    secret: String,
    sign_method: SignMethod,
    format: Format,
    simplify: bool,
    timeout: Duration,
    session: Option<String>,
}

impl TopClientBuilder {
    pub fn sign_method(mut self, method: SignMethod) -> Self {
        self.sign_method = method;
        self
    }
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }
    pub fn simplify(mut self, simplify: bool) -> Self {
        self.simplify = simplify;
        self
    }
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    pub fn session(mut self, session: impl Into<String>) -> Self {
        self.session = Some(session.into());
        self
    }
    pub fn build(self) -> Result<TopClient, Error> {
        Ok(TopClient {
            http: reqwest::Client::builder()
                .timeout(self.timeout)
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .build()?,
            url: self.url,
            app_key: self.app_key,
            secret: self.secret,
            sign_method: self.sign_method,
            format: self.format,
            simplify: self.simplify,
            session: self.session,
        })
    }
}

/// How long an idle keep-alive connection is kept for reuse: below the 30 s after which
/// topgate (`read_timeout_secs`) closes one, so that a call is not sent on a connection the
/// server is closing at that moment.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

impl TopClient {
    /// Defaults: `hmac-sha256`, JSON, not simplified, 30 s timeout, no session.
    pub fn builder(
        url: impl Into<String>,
        app_key: impl Into<String>,
        secret: impl Into<String>,
    ) -> TopClientBuilder {
        TopClientBuilder {
            url: url.into(),
            app_key: app_key.into(),
            secret: secret.into(),
            sign_method: SignMethod::HmacSha256,
            format: Format::Json,
            simplify: false,
            timeout: Duration::from_secs(30),
            session: None,
        }
    }

    /// The full signed parameter set of a call, as it goes on the wire.
    pub fn signed_params<'a>(
        &self,
        method: &str,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
        now: OffsetDateTime,
    ) -> ParamSet {
        let mut set = ParamSet::new();
        set.set("method", method);
        self.add_system_params(&mut set, now);
        for (name, value) in params {
            set.set(name, value);
        }
        let signature = sign::sign_params(self.sign_method, &self.secret, &set);
        set.set("sign", signature);
        set
    }

    /// Calls a typed API and decodes its response object.
    pub async fn execute<R: apis::TopRequest>(&self, request: &R) -> Result<R::Response, Error> {
        let params = request.params();
        let response = self
            .call(R::METHOD, params.iter().map(|(k, v)| (*k, v.as_str())))
            .await?;
        serde_json::from_value(response.body).map_err(|e| Error::Malformed(e.to_string()))
    }

    /// Calls `method` with business `params` (object parameters as JSON strings).
    ///
    /// An `error_response` is [`Error::Top`] whatever the HTTP status; a success needs a 2xx
    /// status; anything else is [`Error::Malformed`].
    ///
    /// A parameter named like one the client sets itself (`format`, `simplify`, `session`, …)
    /// replaces the client's, and the answer is read as the request asked for it: a
    /// `("simplify", "true")` among the parameters of a client that does not simplify gets an
    /// unwrapped answer, read as such.
    pub async fn call<'a>(
        &self,
        method: &str,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Response, Error> {
        let set = self.signed_params(method, params, OffsetDateTime::now_utc());
        let format = Format::from_param(set.get("format")).unwrap_or(self.format);
        let simplify = format == Format::Json && set.get("simplify") == Some("true");
        let answer = self
            .http
            .post(&self.url)
            .header(
                "content-type",
                "application/x-www-form-urlencoded;charset=UTF-8",
            )
            .body(set.to_form())
            .send()
            .await?;
        let status = answer.status();
        let raw = answer.text().await?;
        decode(raw, status, format, simplify)
    }

    /// Sends several calls in one request to `/router/batch` (this client's URL with
    /// `/router/rest` replaced, as Java's `BatchTaobaoClient` does): the system parameters in the
    /// query string, signed with the body appended; the calls' parameters in the body,
    /// separated by [`BATCH_SEPARATOR`]. Answers one result per call, in order; a failure of the
    /// batch as a whole (app, timestamp, signature) is the outer `Err`.
    ///
    /// A batch of one call cannot be told from its call by the number of answers (Java's
    /// client cannot either): there, an error only a whole batch gets (a code of the app key,
    /// version, format, timestamp, signature or body size: 23 to 25, 28 to 34 and 43) is the
    /// outer `Err`, and any other (a session's 26 and 27 included) is the call's.
    ///
    /// An answer with a status other than 2xx, or a lone answer that is no TOP envelope, is the
    /// outer `Err` too: its `error_response`, or [`Error::Malformed`] with the start of the body.
    pub async fn batch(
        &self,
        calls: &[BatchCall<'_>],
    ) -> Result<Vec<Result<Response, Error>>, Error> {
        let body = calls
            .iter()
            .map(BatchCall::segment)
            .collect::<Vec<_>>()
            .join(BATCH_SEPARATOR);
        let mut system = ParamSet::new();
        self.add_system_params(&mut system, OffsetDateTime::now_utc());
        let canonical = sign::string_to_sign(&system, Some(&body));
        system.set(
            "sign",
            sign::sign_string(self.sign_method, &self.secret, &canonical),
        );
        let url = format!(
            "{}?{}",
            self.url.replacen("/router/rest", "/router/batch", 1),
            system.to_form()
        );
        let answer = self
            .http
            .post(url)
            .header("content-type", "text/plain;charset=UTF-8")
            .body(body)
            .send()
            .await?;
        let status = answer.status();
        let raw = answer.text().await?;
        let answers: Vec<&str> = raw.split(BATCH_SEPARATOR).collect();
        if !status.is_success() || answers.len() != calls.len() {
            // One answer for the batch as a whole: its refusal, or no TOP answer at all (a
            // failure status never comes with a success, see `decode`).
            return Err(
                match decode(raw.clone(), status, self.format, self.simplify) {
                    Err(error) => error,
                    Ok(_) => Error::Malformed(format!(
                        "{} answers to {} calls",
                        answers.len(),
                        calls.len()
                    )),
                },
            );
        }
        let mut results: Vec<Result<Response, Error>> = answers
            .into_iter()
            .map(|answer| decode(answer.to_string(), status, self.format, self.simplify))
            .collect();
        // A lone answer may be the refusal of the batch as a whole (see above), or no TOP answer.
        if results.len() == 1 && results[0].as_ref().is_err_and(refused_whole) {
            if let Some(Err(error)) = results.pop() {
                return Err(error);
            }
        }
        Ok(results)
    }

    /// The system parameters of this client's calls but `method` and `sign`.
    fn add_system_params(&self, set: &mut ParamSet, now: OffsetDateTime) {
        set.set("app_key", self.app_key.as_str());
        set.set("timestamp", timestamp::format_wall_clock(now));
        set.set("v", "2.0");
        set.set("sign_method", self.sign_method.as_wire());
        set.set("format", self.format.as_wire());
        if self.simplify {
            set.set("simplify", "true");
        }
        if let Some(session) = &self.session {
            set.set("session", session.as_str());
        }
    }
}

/// A call's answer in `format` (`simplify`: unwrapped), which came with HTTP `status`: its
/// response object, or its TOP error.
///
/// An `error_response` is the call's TOP error whatever the status. A success counts only with
/// a 2xx status (TOP always answers 200): a simplified success is any JSON object (§5.2), so the
/// status is all that tells it from a proxy's or a load balancer's JSON.
fn decode(
    raw: String,
    status: StatusCode,
    format: Format,
    simplify: bool,
) -> Result<Response, Error> {
    match reader::read(&raw, format, simplify) {
        Ok(resp) if status.is_success() => Ok(Response {
            body: resp.body,
            request_id: resp.request_id,
            raw,
        }),
        Ok(_) => Err(malformed(
            status,
            "not a TOP envelope: no error_response, and not a 2xx status",
            &raw,
        )),
        Err(ReadError::Top { error, request_id }) => Err(Error::Top { error, request_id }),
        Err(ReadError::Malformed(why)) => Err(malformed(status, &why, &raw)),
    }
}

/// Whether `error` of a lone answer is the batch's as a whole: a code only a batch gets (the app
/// key, version, format, timestamp, signature or body size; a session's 26 and 27 are checked
/// per call), or an answer that is no TOP envelope.
fn refused_whole(error: &Error) -> bool {
    match error {
        Error::Top { error, .. } => matches!(error.code, 23..=25 | 28..=34 | 43),
        // No TOP envelope: nothing says the batch was answered at all.
        Error::Malformed(_) => true,
        Error::Transport(_) => false,
    }
}

/// How many characters of a body that is no TOP answer its error shows.
const BODY_START_CHARS: usize = 200;

/// A body that is no TOP answer (a proxy's error page, a server failing outside TOP's
/// envelope): why, the HTTP status it came with when that was not 200, and the start of the
/// body, which usually says what answered. Control characters in it are escaped, so that a
/// page's line breaks or a hostile server's terminal escapes cannot garble where it is shown.
fn malformed(status: StatusCode, why: &str, body: &str) -> Error {
    let mut start = String::new();
    for c in body.chars().take(BODY_START_CHARS) {
        if c.is_control() {
            start.extend(c.escape_debug());
        } else {
            start.push(c);
        }
    }
    if body.chars().nth(BODY_START_CHARS).is_some() {
        start.push('…');
    }
    let status = if status == StatusCode::OK {
        String::new()
    } else {
        format!("HTTP {status}: ")
    };
    if body.is_empty() {
        Error::Malformed(format!("{status}{why}; the body is empty"))
    } else {
        Error::Malformed(format!("{status}{why}; the body starts: {start}"))
    }
}

/// What separates the calls of a batch, in the request and in the answer.
pub const BATCH_SEPARATOR: &str = "\r\n-S-\r\n";

/// One call of [`TopClient::batch`]: a method and its business parameters.
#[derive(Debug, Clone)]
pub struct BatchCall<'a> {
    pub method: &'a str,
    pub params: Vec<(&'a str, &'a str)>,
}

impl BatchCall<'_> {
    /// The call's segment of the batch body: its form-encoded parameters.
    fn segment(&self) -> String {
        let mut set = ParamSet::new();
        set.set("method", self.method);
        for (name, value) in &self.params {
            set.set(*name, *value);
        }
        set.to_form()
    }
}
