//! `/router/batch` over real HTTP (protocol.md §8.1): the shared vector V8 as sent, the
//! batch-level checks answered with one error body, and calls of the real APIs answered
//! exactly as the single calls would be, in request order.

mod common;

use std::path::PathBuf;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use top_protocol::sign::{sign_string, string_to_sign};
use top_protocol::{ParamSet, SignMethod};
use topgate::gateway::batch::{DEFAULT_SEPARATOR, MAX_CALLS, SEPARATOR_HEADER};

const TIME_GET: &str = "taobao.time.get";
const LIANBEI: &str = "alibaba.alisports.lianbei.order.notice";
const PAY: &str = "alibaba.diantao.tripartite.right.pay.notify";
/// Ten years: the recorded vector's timestamp is stale.
const WIDE_WINDOW_SECS: i64 = 10 * 365 * 24 * 3600;

fn v8() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/signatures.json");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("vectors file")).expect("JSON");
    doc["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .find(|v| v["name"] == "V8-batch")
        .expect("V8")
        .clone()
}

/// The system parameters of a batch of app `test`, signed over them and `body`.
fn signed_query(body: &str, tweak: impl FnOnce(&mut ParamSet)) -> String {
    signed_query_of("test", "test", body, tweak)
}

/// The system parameters of a batch of `app_key` (a single call's but `method`), changed by
/// `tweak`, then signed over them and `body`.
fn signed_query_of(
    app_key: &str,
    secret: &str,
    body: &str,
    tweak: impl FnOnce(&mut ParamSet),
) -> String {
    let mut params = Req::new(TIME_GET)
        .app(app_key, secret)
        .without("method")
        .params;
    tweak(&mut params);
    let canonical = string_to_sign(&params, Some(body));
    params.set("sign", sign_string(SignMethod::Md5, secret, &canonical));
    params.to_form()
}

/// POSTs a batch; answers the content type and the body.
async fn post_batch(
    app: &TestApp,
    query: &str,
    body: &str,
    separator: Option<&str>,
) -> (String, String) {
    let mut request = app
        .http
        .post(format!("{}/router/batch?{query}", app.base))
        .header("content-type", "text/plain;charset=UTF-8")
        .body(body.to_string());
    if let Some(separator) = separator {
        request = request.header(SEPARATOR_HEADER, separator);
    }
    let response = request.send().await.expect("sent");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_string();
    (content_type, response.text().await.expect("body"))
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The answers of a batch, parsed.
fn answers(text: &str, separator: &str) -> Vec<Value> {
    text.split(separator).map(json_of).collect()
}

#[tokio::test]
async fn vector_v8_as_sent_gets_two_answers_and_a_changed_body_one_error() {
    let app = spawn_app_with(|s| s.timestamp_window_secs = WIDE_WINDOW_SECS).await;
    let (status, answer) = app
        .admin(
            Method::POST,
            "/admin/apps",
            Some(
                json!({"app_key": "12345678", "secret": "test_secret_123", "methods": [TIME_GET]}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let v = v8();
    let mut params = ParamSet::new();
    for (name, value) in v["params"].as_object().expect("params") {
        params.set(name.as_str(), value.as_str().expect("text"));
    }
    params.set("sign", v["sign"].as_str().expect("sign"));
    let body = v["body"].as_str().expect("body");

    let (content_type, text) = post_batch(&app, &params.to_form(), body, None).await;
    assert_eq!(content_type, "text/plain;charset=UTF-8");
    let answers = answers(&text, DEFAULT_SEPARATOR);
    assert_eq!(answers.len(), 2, "{text}");
    for answer in &answers {
        assert!(answer["time_get_response"]["time"].is_string(), "{answer}");
    }
    assert_ne!(
        answers[0]["time_get_response"]["request_id"],
        answers[1]["time_get_response"]["request_id"],
        "each call has its own request id"
    );

    // The signature covers the body: one call fewer is one error for the whole batch.
    let (content_type, text) =
        post_batch(&app, &params.to_form(), "method=taobao.time.get", None).await;
    assert_eq!(content_type, "application/json;charset=UTF-8");
    assert_eq!(json_of(&text)["error_response"]["code"], 25, "{text}");
}

#[tokio::test]
async fn calls_run_in_order_and_answer_exactly_as_single_calls() {
    let app = spawn_app().await;
    let dto = pay_example().to_string();
    let pay_form = form(&[("method", PAY), ("tripartite_pay_notify_dto", &dto)]);
    let body = [
        form(&[("method", LIANBEI), ("biz_order_id", "1000")]),
        pay_form.clone(),
        pay_form,
        form(&[("method", "no.such.method")]),
        "N".to_string(),
    ]
    .join(DEFAULT_SEPARATOR);
    let (_, text) = post_batch(&app, &signed_query(&body, |_| {}), &body, None).await;
    let got = answers(&text, DEFAULT_SEPARATOR);
    assert_eq!(got.len(), 5, "{text}");

    let single_lianbei = app.send_json(&lianbei("1000")).await;
    assert_eq!(redact(&got[0]), redact(&single_lianbei));
    // The second notice of the same payment replays the first: one order, one answer.
    let paid = &got[1]["alibaba_diantao_tripartite_right_pay_notify_response"];
    assert_eq!(paid["succ"], true, "{text}");
    assert_eq!(redact(&got[1]), redact(&got[2]));
    assert_eq!(
        redact(&got[1]),
        redact(&app.send_json(&pay(&pay_example())).await)
    );
    assert_eq!(app.right_orders().await.as_array().map(Vec::len), Some(1));
    assert_eq!(got[3]["error_response"]["code"], 22, "{text}");
    assert_eq!(got[4]["error_response"]["code"], 21, "{text}");
}

#[tokio::test]
async fn public_parameters_another_separator_and_xml() {
    let app = spawn_app().await;
    let separator = "|next|";
    let body = [
        format!("#PUBLIC#{}", form(&[("method", LIANBEI)])),
        form(&[("biz_order_id", "1000")]),
        form(&[("biz_order_id", "1000"), ("method", TIME_GET)]),
    ]
    .join(separator);
    let query = signed_query(&body, |p| p.set("format", "xml"));
    let (content_type, text) = post_batch(&app, &query, &body, Some(separator)).await;
    assert_eq!(content_type, "text/plain;charset=UTF-8");
    let parts: Vec<&str> = text.split(separator).collect();
    assert_eq!(parts.len(), 2, "{text}");
    assert!(parts[0].starts_with("<?xml"), "{text}");
    assert!(
        parts[0].contains("<alibaba_alisports_lianbei_order_notice_response>"),
        "{text}"
    );
    assert!(parts[1].contains("<time_get_response>"), "{text}");
}

#[tokio::test]
async fn each_call_passes_its_own_permission_and_parameter_checks() {
    let app = spawn_app().await;
    let (status, answer) = app
        .admin(
            Method::POST,
            "/admin/apps",
            Some(json!({"app_key": "narrow", "secret": "narrow-secret", "methods": [TIME_GET]})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let body = [
        form(&[("method", TIME_GET)]),
        form(&[("method", LIANBEI), ("biz_order_id", "1000")]),
    ]
    .join(DEFAULT_SEPARATOR);
    let query = signed_query_of("narrow", "narrow-secret", &body, |_| {});
    let (_, text) = post_batch(&app, &query, &body, None).await;
    let got = answers(&text, DEFAULT_SEPARATOR);
    assert!(got[0]["time_get_response"]["time"].is_string(), "{text}");
    assert_eq!(got[1]["error_response"]["code"], 11, "{text}");

    // A missing business parameter is that call's error, not the batch's.
    let body =
        [form(&[("method", LIANBEI)]), form(&[("method", TIME_GET)])].join(DEFAULT_SEPARATOR);
    let (_, text) = post_batch(&app, &signed_query(&body, |_| {}), &body, None).await;
    let got = answers(&text, DEFAULT_SEPARATOR);
    assert_eq!(got.len(), 2, "{text}");
    assert!(
        got[0]["error_response"]["code"].as_u64().is_some(),
        "{text}"
    );
    assert!(got[1]["time_get_response"]["time"].is_string(), "{text}");
}

#[tokio::test]
async fn batch_level_failures_are_one_error_body_and_change_nothing() {
    let app = spawn_app().await;
    let dto = pay_example().to_string();
    let body = form(&[("method", PAY), ("tripartite_pay_notify_dto", &dto)]);
    let cases: Vec<(&str, String, u64)> = vec![
        (
            "no app_key",
            signed_query(&body, |p| p.remove("app_key")),
            28,
        ),
        (
            "unknown app",
            signed_query(&body, |p| p.set("app_key", "nobody")),
            29,
        ),
        ("no v", signed_query(&body, |p| p.remove("v")), 32),
        (
            "no timestamp",
            signed_query(&body, |p| p.remove("timestamp")),
            30,
        ),
        (
            "stale timestamp",
            signed_query(&body, |p| p.set("timestamp", "2001-01-01 00:00:00")),
            31,
        ),
        ("bad sign", signed_query("another body", |_| {}), 25),
        ("no call", signed_query("", |_| {}), 21),
    ];
    for (case, query, code) in cases {
        let sent = if case == "no call" { "" } else { body.as_str() };
        let (_, text) = post_batch(&app, &query, sent, None).await;
        assert_eq!(text.split(DEFAULT_SEPARATOR).count(), 1, "{case}: {text}");
        assert_eq!(
            json_of(&text)["error_response"]["code"],
            code,
            "{case}: {text}"
        );
    }
    let by_get = app
        .http
        .get(format!("{}/top/router/batch?format=json", app.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(by_get.status(), 200);
    let text = by_get.text().await.expect("body");
    assert_eq!(json_of(&text)["error_response"]["code"], 9, "{text}");
    let many = vec![form(&[("method", TIME_GET)]); MAX_CALLS + 1].join(DEFAULT_SEPARATOR);
    let (_, text) = post_batch(&app, &signed_query(&many, |_| {}), &many, None).await;
    assert_eq!(json_of(&text)["error_response"]["code"], 41, "{text}");
    assert_eq!(app.right_orders().await.as_array().map(Vec::len), Some(0));
}

/// A batch refused as a whole is one `error_response` in the format the query string names,
/// with that format's content type (docs/wire.md): JSON for `json`; XML for `xml`, for none and
/// for one that is neither; never the `text/plain` of a batch's answers.
#[tokio::test]
async fn a_refused_batch_answers_in_the_query_strings_format_and_its_content_type() {
    let app = spawn_app().await;
    let body = form(&[("method", TIME_GET)]);
    let json_type = "application/json;charset=UTF-8";
    let xml_type = "text/xml;charset=UTF-8";
    let cases: [(Option<&str>, &str, u64); 5] = [
        (Some("json"), json_type, 25),
        (Some("xml"), xml_type, 25),
        (None, xml_type, 25),
        // Refused for the format itself, before the signature is looked at.
        (Some("yaml"), xml_type, 23),
        (Some("json"), json_type, 21),
    ];
    for (format, content_type, code) in cases {
        // Code 21: a correctly signed batch without a call; else a signature over another body.
        let (signed_body, sent) = if code == 21 {
            ("", "")
        } else {
            ("another body", body.as_str())
        };
        let query = signed_query(signed_body, |p| match format {
            Some(f) => p.set("format", f),
            None => p.remove("format"),
        });
        let (got_type, text) = post_batch(&app, &query, sent, None).await;
        assert_eq!(got_type, content_type, "{format:?}: {text}");
        let error = if content_type == json_type {
            json_of(&text)["error_response"]["code"].as_u64()
        } else {
            assert!(text.starts_with("<?xml"), "{format:?}: {text}");
            match top_protocol::reader::read(&text, top_protocol::Format::Xml, false) {
                Err(top_protocol::reader::ReadError::Top { error, .. }) => {
                    Some(u64::from(error.code))
                }
                _ => None,
            }
        };
        assert_eq!(error, Some(code), "{format:?}: {text}");
    }
    for (query, content_type) in [("format=json", json_type), ("", xml_type)] {
        let by_get = app
            .http
            .get(format!("{}/router/batch?{query}", app.base))
            .send()
            .await
            .expect("sent");
        assert_eq!(by_get.status(), 200);
        assert_eq!(by_get.headers()["content-type"], content_type, "{query}");
        assert!(by_get.text().await.unwrap().contains("error_response"));
    }
}

/// A form-encoded segment.
fn form(pairs: &[(&str, &str)]) -> String {
    let mut params = ParamSet::new();
    for (name, value) in pairs {
        params.set(*name, *value);
    }
    params.to_form()
}

/// Answers that would hold the separator (here an unknown method name echoed back) must not
/// make the client count one answer too many: XML writes CR as a reference, so the default
/// separator never occurs; an answer holding another separator is replaced by an error that
/// says so. Either way there is one answer per call.
#[tokio::test]
async fn an_answer_never_holds_the_separator() {
    let app = spawn_app().await;
    let echoed = format!("a{DEFAULT_SEPARATOR}b");
    let body = [
        form(&[("method", echoed.as_str())]),
        form(&[("method", TIME_GET)]),
    ]
    .join(DEFAULT_SEPARATOR);
    let query = signed_query(&body, |p| p.set("format", "xml"));
    let (_, text) = post_batch(&app, &query, &body, None).await;
    let parts: Vec<&str> = text.split(DEFAULT_SEPARATOR).collect();
    assert_eq!(parts.len(), 2, "{text}");
    assert!(parts[0].contains("<code>22</code>"), "{text}");
    assert!(parts[0].contains("a&#13;\n-S-&#13;\nb"), "{text}");
    assert!(parts[1].contains("<time_get_response>"), "{text}");

    let separator = "|||";
    let body = [
        form(&[("method", TIME_GET)]),
        form(&[("method", "x|||y")]),
        form(&[("method", TIME_GET)]),
    ]
    .join(separator);
    let query = signed_query(&body, |p| p.set("format", "json"));
    let (_, text) = post_batch(&app, &query, &body, Some(separator)).await;
    let parts = answers(&text, separator);
    assert_eq!(parts.len(), 3, "{text}");
    let error = &parts[1]["error_response"];
    assert_eq!(error["code"], 15);
    assert_eq!(error["sub_code"], "isv.separator-in-answer");
    assert!(parts[0].get("time_get_response").is_some(), "{text}");
    assert!(parts[2].get("time_get_response").is_some(), "{text}");
}

#[tokio::test]
async fn a_separator_header_that_is_not_visible_ascii_refuses_the_batch() {
    let app = spawn_app().await;
    let body = [form(&[("method", TIME_GET)]), form(&[("method", TIME_GET)])].join("§");
    let query = signed_query(&body, |p| p.set("format", "json"));
    let response = app
        .http
        .post(format!("{}/router/batch?{query}", app.base))
        .header(
            SEPARATOR_HEADER,
            reqwest::header::HeaderValue::from_bytes("§".as_bytes()).unwrap(),
        )
        .body(body)
        .send()
        .await
        .expect("sent");
    let error = json_of(&response.text().await.unwrap())["error_response"].clone();
    assert_eq!(error["code"], 41, "{error}");
    assert_eq!(
        error["sub_msg"],
        "the top-api-separator header must be visible ASCII text"
    );
}

/// A separator that could occur in an answer's own envelope is refused before any call runs:
/// one only of letters and digits (a request id may spell it) or text of an error answer
/// (`,` in JSON). An empty header is the default separator.
#[tokio::test]
async fn a_separator_that_could_occur_in_an_envelope_is_refused_and_an_empty_one_is_the_default() {
    let app = spawn_app().await;
    for separator in [",", "ab12", "error_response"] {
        let body = [form(&[("method", TIME_GET)]), form(&[("method", TIME_GET)])].join(separator);
        let query = signed_query(&body, |p| p.set("format", "json"));
        let (_, text) = post_batch(&app, &query, &body, Some(separator)).await;
        let error = json_of(&text)["error_response"].clone();
        assert_eq!(error["code"], 41, "{separator}: {text}");
    }
    let body =
        [form(&[("method", TIME_GET)]), form(&[("method", TIME_GET)])].join(DEFAULT_SEPARATOR);
    let query = signed_query(&body, |p| p.set("format", "json"));
    let (_, text) = post_batch(&app, &query, &body, Some("")).await;
    assert_eq!(answers(&text, DEFAULT_SEPARATOR).len(), 2, "{text}");
}
