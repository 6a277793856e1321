//! `/metrics`: Prometheus counters of calls by method and TOP code, and latency histograms;
//! unknown method names never become labels.

mod common;
use common::*;

#[tokio::test]
async fn metrics_count_calls_by_method_and_code() {
    let app = spawn_app().await;
    assert!(app.ok(&lianbei("1000")).await["result"].is_object());
    let mut bad = lianbei("1000").param("sign", "00");
    bad.auto_sign = false;
    assert_eq!(app.error(&bad).await["code"], 25);
    let unknown = Req::new("no.such.method.x1y2");
    assert_eq!(app.error(&unknown).await["code"], 22);
    let no_app_key = lianbei("1000").param("app_key", "");
    assert_eq!(app.error(&no_app_key).await["code"], 28);

    let resp = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let lianbei = "method=\"alibaba.alisports.lianbei.order.notice\"";
    let has = |needle: &[&str]| {
        text.lines()
            .any(|l| needle.iter().all(|n| l.contains(n)) && !l.starts_with('#'))
    };
    assert!(
        has(&["topgate_calls_total{", lianbei, "code=\"0\""]),
        "{text}"
    );
    assert!(
        has(&["topgate_calls_total{", lianbei, "code=\"25\""]),
        "{text}"
    );
    assert!(
        has(&["topgate_calls_total{", "method=\"unknown\"", "code=\"22\""]),
        "{text}"
    );
    assert!(
        has(&["topgate_calls_total{", lianbei, "code=\"28\""]),
        "{text}"
    );
    assert!(!text.contains("code=\"other\""), "{text}");
    assert!(
        has(&[
            "topgate_call_duration_seconds_bucket{",
            lianbei,
            "le=\"0.01\""
        ]),
        "{text}"
    );
    assert!(
        !text.contains("no.such.method"),
        "client text must not become a label"
    );
}

/// Requests refused before a method is known (a body over the limit, one that is not form
/// encoding, a batch refused whole or sent by GET) are counted under `unknown` with their code.
#[tokio::test]
async fn refusals_before_any_method_are_counted_too() {
    let app = spawn_app_with(|s| s.body_limit_bytes = 1024).await;
    let post = |path: &str, body: String| {
        app.http
            .post(format!("{}{path}", app.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let code = |text: String| -> i64 {
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        v["error_response"]["code"].as_i64().expect("a code")
    };
    let over = post("/router/rest?format=json", "x".repeat(4096))
        .await
        .unwrap();
    assert_eq!(code(over.text().await.unwrap()), 43);
    let unreadable = post("/router/rest?format=json", "x=%FF".into())
        .await
        .unwrap();
    assert_eq!(code(unreadable.text().await.unwrap()), 47);
    let batch = post(
        "/router/batch?format=json&app_key=test&v=2.0&timestamp=1&sign=00",
        "method=taobao.time.get".into(),
    )
    .await
    .unwrap();
    assert_eq!(code(batch.text().await.unwrap()), 31);
    let get = app
        .http
        .get(format!("{}/router/batch?format=json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(code(get.text().await.unwrap()), 9);

    let text = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for code in ["43", "47", "31", "9"] {
        let label = format!("code=\"{code}\"");
        assert!(
            text.lines().any(|l| l.starts_with("topgate_calls_total{")
                && l.contains("method=\"unknown\"")
                && l.contains(&label)),
            "no count for code {code}: {text}"
        );
    }
}
