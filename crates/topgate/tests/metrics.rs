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
