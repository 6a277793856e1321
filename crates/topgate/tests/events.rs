//! Events: the transactional outbox and its delivery, seen from outside: the admin API, the
//! `topgate events …` / `topgate dispatch` binary, a webhook receiver started here (axum on
//! 127.0.0.1:0) and a real NATS JetStream server on 127.0.0.1:4222 (the NATS test fails, with
//! a message saying so, when none is running). The Python verifier of docs/events.md runs on
//! `python3` (that test fails likewise without it).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use common::{opentrade, opentrade_example, spawn_app_with, TestApp};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;
use topgate::config::Settings;
use topgate::store::Store;

/// Every wait in this file gives up after this long.
const WAIT: Duration = Duration::from_secs(30);

/// Polls `probe` until it yields a value, or fails the test after [`WAIT`].
async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            start.elapsed() < WAIT,
            "gave up after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Millisecond retry schedule, quick polling, short leases.
fn fast(s: &mut Settings) {
    s.events.poll_interval_ms = 20;
    s.events.retry_schedule_ms = vec![40, 80, 80, 80];
    s.events.retry_jitter = 0.2;
    s.events.lease_ms = 2_000;
    s.events.request_timeout_ms = 1_000;
}

// ---- a webhook receiver ------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Hit {
    id: i64,
    header_id: String,
    instance: String,
    timestamp: String,
    signature: String,
    body: String,
    answered: u16,
}

#[derive(Default)]
struct ReceiverState {
    /// Each event id is refused this many times before it is accepted.
    fail_first: usize,
    always_fail: AtomicBool,
    delay: Duration,
    tries: Mutex<HashMap<i64, usize>>,
    hits: Mutex<Vec<Hit>>,
    in_flight: AtomicUsize,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    async fn start(fail_first: usize, delay: Duration) -> Self {
        let state = Arc::new(ReceiverState {
            fail_first,
            delay,
            ..ReceiverState::default()
        });
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("receiver binds");
        let addr: SocketAddr = listener.local_addr().expect("receiver address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/hook"),
            state,
        }
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Event ids acknowledged (2xx), in the order of their first acknowledgement.
    fn accepted(&self) -> Vec<i64> {
        let mut seen = BTreeSet::new();
        self.hits()
            .into_iter()
            .filter(|h| h.answered == 200 && seen.insert(h.id))
            .map(|h| h.id)
            .collect()
    }

    fn set_always_fail(&self, on: bool) {
        self.state.always_fail.store(on, Ordering::SeqCst);
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    // Counted down on drop too: a request whose client vanished (SIGKILL) is dropped mid-way.
    struct InFlight<'a>(&'a AtomicUsize);
    impl Drop for InFlight<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    state.in_flight.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight(&state.in_flight);
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    let id = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_i64())
        .unwrap_or(-1);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let tries = {
        let mut tries = state.tries.lock().unwrap();
        let n = tries.entry(id).or_insert(0);
        *n += 1;
        *n
    };
    let status = if state.always_fail.load(Ordering::SeqCst) || tries <= state.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    state.hits.lock().unwrap().push(Hit {
        id,
        header_id: header("x-topgate-event-id"),
        instance: header("x-topgate-database-instance"),
        timestamp: header("x-topgate-timestamp"),
        signature: header("x-topgate-signature"),
        body,
        answered: status.as_u16(),
    });
    status
}

/// What a receiver does to check a delivery: HMAC-SHA256(secret, "<timestamp>.<body>").
fn signature_valid(secret: &str, hit: &Hit) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{}.{}", hit.timestamp, hit.body).as_bytes());
    let Ok(given) = hex::decode(&hit.signature) else {
        return false;
    };
    mac.verify_slice(&given).is_ok()
}

// ---- admin helpers -----------------------------------------------------------------------

async fn admin_ok(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, v) = app.admin(method.clone(), path, body).await;
    assert_eq!(status, 200, "{method} {path}: {v}");
    v
}

async fn events(app: &TestApp) -> Vec<Value> {
    admin_ok(app, Method::GET, "/admin/events?limit=1000", None)
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn add_webhook(app: &TestApp, url: &str, secret: &str, types: Value) -> i64 {
    let sink = admin_ok(
        app,
        Method::POST,
        "/admin/sinks",
        Some(json!({"kind": "webhook", "url": url, "secret": secret, "event_types": types})),
    )
    .await;
    assert!(
        sink.get("secret").is_none(),
        "a given secret is never echoed: {sink}"
    );
    assert_eq!(sink["secret_set"], true);
    sink["id"].as_i64().expect("sink id")
}

async fn deliveries(app: &TestApp, sink: i64, state: &str) -> Vec<Value> {
    admin_ok(
        app,
        Method::GET,
        &format!("/admin/sinks/{sink}/deliveries?state={state}"),
        None,
    )
    .await
    .as_array()
    .cloned()
    .unwrap_or_default()
}

async fn attempts(app: &TestApp, event: i64) -> Vec<Value> {
    admin_ok(
        app,
        Method::GET,
        &format!("/admin/events/{event}/attempts"),
        None,
    )
    .await
    .as_array()
    .cloned()
    .unwrap_or_default()
}

/// A new trade taken through pay, consign and confirm by the admin API: three events.
async fn trade_lifecycle(app: &TestApp, tid: i64) {
    admin_ok(
        app,
        Method::POST,
        "/admin/trades",
        Some(
            json!({"tid": tid, "kind": "OPENTRADE", "seller_id": 3000, "buyer_id": 10001,
            "status": "WAIT_BUYER_PAY",
            "lines": [{"oid": tid * 10 + 1, "item_id": 30000, "price": 100, "quantity": 1}]}),
        ),
    )
    .await;
    for step in ["pay", "consign", "confirm"] {
        admin_ok(
            app,
            Method::POST,
            &format!("/admin/trades/{tid}/{step}"),
            None,
        )
        .await;
    }
}

fn max_id(events: &[Value]) -> i64 {
    events
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .max()
        .unwrap_or(0)
}

// ---- tests -------------------------------------------------------------------------------

#[tokio::test]
async fn outbox_rows_are_written_with_the_change_and_only_then() {
    let app = spawn_app_with(fast).await;
    let before = max_id(&events(&app).await);

    // A refused call (unknown order) changes nothing, so it writes no event.
    let mut unknown = opentrade_example();
    unknown["order_no"] = json!(99_999_999);
    unknown["req_id"] = json!("events-nf-1");
    let refused = app.send_json(&opentrade(&unknown)).await;
    assert!(refused.to_string().contains("ORDER_NOT_FOUND"), "{refused}");
    assert_eq!(
        max_id(&events(&app).await),
        before,
        "a refusal wrote an event"
    );

    // The seed example succeeds: the trade is consigned, then confirmed.
    let ok = app.send_json(&opentrade(&opentrade_example())).await;
    assert!(ok.to_string().contains("\"success\":true"), "{ok}");
    let new: Vec<Value> = events(&app)
        .await
        .into_iter()
        .filter(|e| e["id"].as_i64() > Some(before))
        .collect();
    let trade_events: Vec<&Value> = new
        .iter()
        .filter(|e| e["type"] == "trade.status_changed")
        .collect();
    assert_eq!(trade_events.len(), 2, "{new:?}");
    for (e, (step, status)) in trade_events.iter().zip([
        ("consign", "WAIT_BUYER_CONFIRM_GOODS"),
        ("confirm", "TRADE_FINISHED"),
    ]) {
        assert_eq!(e["entity"], "trade:12345678");
        assert_eq!(e["payload"]["tid"], 12345678);
        assert_eq!(e["payload"]["event"], step);
        assert_eq!(e["payload"]["status"], status);
        assert!(e["created_at"].as_i64().unwrap() > 0);
        // No sink was registered, so nothing is queued.
        assert_eq!(e["deliveries"], json!([]));
    }
    assert!(trade_events[0]["id"].as_i64() < trade_events[1]["id"].as_i64());

    // A replay of the same callback changes nothing more.
    app.send_json(&opentrade(&opentrade_example())).await;
    assert_eq!(max_id(&events(&app).await), max_id(&new));

    // One event by id.
    let id = trade_events[0]["id"].as_i64().unwrap();
    let one = admin_ok(&app, Method::GET, &format!("/admin/events/{id}"), None).await;
    assert_eq!(one["payload"]["event"], "consign");
    let (status, _) = app.admin(Method::GET, "/admin/events/99999999", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn webhook_gets_every_event_after_retries_signed_and_in_order() {
    let app = spawn_app_with(fast).await;
    let receiver = Receiver::start(2, Duration::ZERO).await;
    let secret = "whsec_test_secret_0123456789";
    let sink = add_webhook(&app, &receiver.url, secret, json!(["*"])).await;
    // A second sink that wants only right-order events gets none of the trade events.
    let other = add_webhook(
        &app,
        &format!("{}-never", receiver.url),
        "another_secret_0123456789",
        json!(["right_order.status_changed"]),
    )
    .await;

    trade_lifecycle(&app, 7101).await;
    trade_lifecycle(&app, 7102).await;
    let ids: Vec<i64> = events(&app)
        .await
        .iter()
        .filter(|e| e["entity"] == "trade:7101" || e["entity"] == "trade:7102")
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 6);

    let accepted = wait_for("every event accepted by the receiver", || async {
        let accepted = receiver.accepted();
        ids.iter()
            .all(|id| accepted.contains(id))
            .then_some(accepted)
    })
    .await;

    let hits = receiver.hits();
    let instance = admin_ok(&app, Method::GET, &format!("/admin/sinks/{sink}"), None).await
        ["database_instance"]
        .as_str()
        .expect("a webhook sink shows the database instance")
        .to_string();
    assert_eq!(instance.len(), 16, "{instance}");
    for id in &ids {
        let mine: Vec<&Hit> = hits.iter().filter(|h| h.id == *id).collect();
        // Two refusals, then the acknowledgement.
        assert_eq!(
            mine.iter().map(|h| h.answered).collect::<Vec<_>>()[..3],
            [500, 500, 200],
            "event {id}"
        );
        for h in &mine {
            assert_eq!(h.header_id, id.to_string());
            assert_eq!(h.instance, instance);
            assert!(signature_valid(secret, h), "bad signature on {h:?}");
            assert!(!signature_valid("some other secret", h));
            let body: Value = serde_json::from_str(&h.body).unwrap();
            assert_eq!(body["id"], *id);
            assert_eq!(body["type"], "trade.status_changed");
            assert!(body["entity"].as_str().unwrap().starts_with("trade:71"));
            assert!(body["payload"]["status"].is_string());
            assert!(body["created_at"].is_i64());
            let ts: i64 = h.timestamp.parse().unwrap();
            assert!((ts - time::OffsetDateTime::now_utc().unix_timestamp()).abs() < 120);
        }
    }

    // In order per entity: an event is first sent only once its predecessor was acknowledged.
    for entity in ["trade:7101", "trade:7102"] {
        let of_entity: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| {
                hits.iter().any(|h| {
                    h.id == *id
                        && serde_json::from_str::<Value>(&h.body).unwrap()["entity"] == entity
                })
            })
            .collect();
        assert_eq!(of_entity.len(), 3);
        let order: Vec<i64> = accepted
            .iter()
            .copied()
            .filter(|id| of_entity.contains(id))
            .collect();
        assert_eq!(order, of_entity, "{entity} acknowledged out of order");
        for pair in of_entity.windows(2) {
            let acked = hits
                .iter()
                .position(|h| h.id == pair[0] && h.answered == 200)
                .unwrap();
            let first_next = hits.iter().position(|h| h.id == pair[1]).unwrap();
            assert!(
                acked < first_next,
                "{} sent before {} was acknowledged",
                pair[1],
                pair[0]
            );
        }
    }

    // Every attempt is on record.
    let delivered = wait_for("the deliveries recorded", || async {
        let d = deliveries(&app, sink, "delivered").await;
        (d.len() >= ids.len()).then_some(d)
    })
    .await;
    for d in delivered
        .iter()
        .filter(|d| ids.contains(&d["event_id"].as_i64().unwrap()))
    {
        assert_eq!(d["attempts"], 3, "{d}");
        assert_eq!(d["last_status"], 200);
    }
    let tries = attempts(&app, ids[0]).await;
    assert_eq!(tries.len(), 3, "{tries:?}");
    for (i, (outcome, status)) in [("failed", 500), ("failed", 500), ("delivered", 200)]
        .iter()
        .enumerate()
    {
        assert_eq!(tries[i]["attempt"], i as i64 + 1);
        assert_eq!(tries[i]["sink_id"], sink);
        assert_eq!(tries[i]["outcome"], *outcome);
        assert_eq!(tries[i]["http_status"], *status);
        assert!(tries[i]["duration_ms"].as_i64().unwrap() >= 0);
        assert!(tries[i]["started_at"].as_i64().unwrap() > 0);
    }
    assert_eq!(tries[0]["error"], "HTTP 500");
    let sinks = admin_ok(&app, Method::GET, "/admin/sinks", None).await;
    let listed = sinks.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        !sinks.to_string().contains(secret),
        "a secret leaked: {sinks}"
    );
    assert_eq!(listed[0]["deliveries"]["pending"], 0);
    assert_eq!(
        listed[1]["deliveries"],
        json!({"pending": 0, "delivered": 0, "dead": 0})
    );
    assert_eq!(
        deliveries(&app, other, "pending").await,
        Vec::<Value>::new()
    );
    let sink_attempts = admin_ok(
        &app,
        Method::GET,
        &format!("/admin/sinks/{sink}/attempts?limit=1000"),
        None,
    )
    .await;
    assert_eq!(sink_attempts.as_array().unwrap().len(), 18);
}

/// The Python verifier of docs/events.md, run as written on a real delivery: it accepts the
/// headers whatever the case of their names (as sent, lowercased in a dict, ASGI's lowercase
/// byte pairs) and refuses a changed body, a wrong secret, a missing header and an old
/// timestamp. Needs `python3` on `PATH` (as the conformance suite does).
#[tokio::test]
async fn the_documented_python_verifier_accepts_a_delivery_whatever_the_header_case() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/events.md"),
    )
    .expect("docs/events.md");
    let verifier = doc
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a python block in docs/events.md");
    let app = spawn_app_with(fast).await;
    let receiver = Receiver::start(0, Duration::ZERO).await;
    let secret = "whsec_python_0123456789abcdef";
    add_webhook(&app, &receiver.url, secret, json!(["*"])).await;
    trade_lifecycle(&app, 7501).await;
    let hit = wait_for("a delivery", || async {
        receiver.hits().into_iter().next()
    })
    .await;

    let check = r#"
import json, sys
case = json.load(sys.stdin)
secret, body = case["secret"].encode(), case["body"].encode()
sent = {"X-Topgate-Timestamp": case["timestamp"], "X-Topgate-Signature": case["signature"],
        "Content-Type": "application/json"}
lower = {name.lower(): value for name, value in sent.items()}
asgi = [(name.lower().encode(), value.encode()) for name, value in sent.items()]
old = dict(lower, **{"x-topgate-timestamp": str(int(case["timestamp"]) - 3600)})
print(json.dumps([
    verify(secret, sent, body), verify(secret, lower, body), verify(secret, asgi, body),
    verify(secret, lower, body + b" "), verify(b"another secret", lower, body),
    verify(secret, {"x-topgate-signature": case["signature"]}, body), verify(secret, old, body),
]))
"#;
    let input = json!({"secret": secret, "body": hit.body, "timestamp": hit.timestamp,
        "signature": hit.signature});
    let mut python = Command::new("python3")
        .args(["-c", &format!("{verifier}\n{check}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("this test needs python3 on PATH: {e}"));
    {
        use std::io::Write;
        let mut stdin = python.stdin.take().expect("stdin piped");
        stdin
            .write_all(input.to_string().as_bytes())
            .expect("input written");
    }
    let out = python.wait_with_output().expect("python3 ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")),
        json!([true, true, true, false, false, false, false])
    );
}

#[tokio::test]
async fn dead_letters_after_the_last_try_and_redeliver_requeues() {
    let app = spawn_app_with(|s| {
        fast(s);
        s.events.retry_schedule_ms = vec![30, 30];
    })
    .await;
    let receiver = Receiver::start(0, Duration::ZERO).await;
    receiver.set_always_fail(true);
    let secret = "whsec_dead_letters_0123456789";
    let sink = add_webhook(&app, &receiver.url, secret, json!(["trade.status_changed"])).await;
    trade_lifecycle(&app, 7201).await;

    // 1 try + 2 retries, then dead; a dead letter stops blocking its entity, so all three die.
    let dead = wait_for("three dead letters", || async {
        let d = deliveries(&app, sink, "dead").await;
        (d.len() == 3).then_some(d)
    })
    .await;
    for d in &dead {
        assert_eq!(d["attempts"], 3, "{d}");
        assert_eq!(d["last_status"], 500);
        let tries = attempts(&app, d["event_id"].as_i64().unwrap()).await;
        assert_eq!(tries.len(), 3);
        assert!(tries.iter().all(|t| t["outcome"] == "failed"));
    }
    let sink_view = admin_ok(&app, Method::GET, &format!("/admin/sinks/{sink}"), None).await;
    assert_eq!(sink_view["deliveries"]["dead"], 3);
    assert_eq!(sink_view["enabled"], true);
    assert!(sink_view["failing_since"].is_i64());

    // The receiver recovers; the dead letters are re-queued and delivered, in order.
    receiver.set_always_fail(false);
    let requeued = admin_ok(
        &app,
        Method::POST,
        &format!("/admin/sinks/{sink}/redeliver"),
        Some(json!({"dead": true})),
    )
    .await;
    assert_eq!(requeued["requeued"], 3);
    let ids: Vec<i64> = dead
        .iter()
        .map(|d| d["event_id"].as_i64().unwrap())
        .collect();
    wait_for("the dead letters delivered", || async {
        let accepted = receiver.accepted();
        ids.iter().all(|id| accepted.contains(id)).then_some(())
    })
    .await;
    assert_eq!(receiver.accepted(), ids, "redelivered out of order");
    let tries = wait_for("the fourth attempt recorded", || async {
        let t = attempts(&app, ids[0]).await;
        (t.len() == 4).then_some(t)
    })
    .await;
    assert_eq!(tries[3]["attempt"], 4);
    assert_eq!(tries[3]["outcome"], "delivered");
    let sink_view = admin_ok(&app, Method::GET, &format!("/admin/sinks/{sink}"), None).await;
    assert!(sink_view["failing_since"].is_null(), "{sink_view}");

    // Redelivering one delivered event sends a duplicate carrying the same event id.
    let before = receiver.hits().len();
    let one = admin_ok(
        &app,
        Method::POST,
        &format!("/admin/sinks/{sink}/redeliver"),
        Some(json!({"event_id": ids[1]})),
    )
    .await;
    assert_eq!(one["requeued"], 1);
    let again = wait_for("the duplicate", || async {
        let hits = receiver.hits();
        (hits.len() > before).then(|| hits[before].clone())
    })
    .await;
    assert_eq!(again.id, ids[1]);
    assert_eq!(again.header_id, ids[1].to_string());
    assert!(signature_valid(secret, &again));

    // Bad requests are refused.
    for body in [json!({}), json!({"dead": true, "event_id": ids[0]})] {
        let (status, _) = app
            .admin(
                Method::POST,
                &format!("/admin/sinks/{sink}/redeliver"),
                Some(body),
            )
            .await;
        assert_eq!(status, 400);
    }
    // A NATS URL is checked when the sink is made, as a webhook's is.
    for url in [
        "bogus",
        "http://127.0.0.1:4222",
        "nats://",
        "nats://127.0.0.1:4222,oops",
    ] {
        let (status, answer) = app
            .admin(
                Method::POST,
                "/admin/sinks",
                Some(json!({"kind": "nats", "url": url})),
            )
            .await;
        assert_eq!(status, 400, "{url}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("url must be a nats://"),
            "{answer}"
        );
    }
    for url in ["tls://nats.example:4222", "nats://a:4222, nats://b:4222"] {
        let made = admin_ok(
            &app,
            Method::POST,
            "/admin/sinks",
            Some(json!({"kind": "nats", "url": url, "enabled": false})),
        )
        .await;
        assert_eq!(made["url"], url);
    }
    // A value of the wrong type is named by its field, never shown (it may be a secret).
    let (status, answer) = app
        .admin(
            Method::POST,
            "/admin/sinks",
            Some(json!({"kind": "webhook", "url": "http://127.0.0.1:9/h", "secret": 1234567890123456789_i64})),
        )
        .await;
    assert_eq!(
        (status, answer),
        (
            400,
            json!({"error": "invalid request: secret: invalid type: integer, expected a string at line 1 column 46"})
        )
    );
    let (status, answer) = app
        .admin(
            Method::POST,
            &format!("/admin/sinks/{sink}/redeliver"),
            Some(json!({"event_id": "7"})),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("event_id: invalid type: string"),
        "{answer}"
    );
    let (status, _) = app
        .admin(
            Method::POST,
            "/admin/sinks/999/redeliver",
            Some(json!({"dead": true})),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_endpoint_failing_for_too_long_is_disabled() {
    let app = spawn_app_with(|s| {
        fast(s);
        s.events.retry_schedule_ms = vec![50; 100];
        s.events.disable_after_ms = 600;
    })
    .await;
    let receiver = Receiver::start(0, Duration::ZERO).await;
    receiver.set_always_fail(true);
    let sink = add_webhook(
        &app,
        &receiver.url,
        "whsec_auto_disable_0123456",
        json!(["*"]),
    )
    .await;
    trade_lifecycle(&app, 7301).await;

    let disabled = wait_for("the sink auto-disabled", || async {
        let s = admin_ok(&app, Method::GET, &format!("/admin/sinks/{sink}"), None).await;
        (s["enabled"] == false).then_some(s)
    })
    .await;
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("auto-disabled"),
        "{disabled}"
    );
    // Nothing more is attempted, and new events are not queued for a disabled sink.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hits = receiver.hits().len();
    trade_lifecycle(&app, 7302).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.hits().len(), hits);
    let later = events(&app).await;
    let of_7302: Vec<&Value> = later
        .iter()
        .filter(|e| e["entity"] == "trade:7302")
        .collect();
    assert_eq!(of_7302.len(), 3);
    assert!(of_7302.iter().all(|e| e["deliveries"] == json!([])));

    // Re-enabled (receiver fixed): the deliveries still pending go out.
    receiver.set_always_fail(false);
    let enabled = admin_ok(
        &app,
        Method::POST,
        &format!("/admin/sinks/{sink}/enable"),
        None,
    )
    .await;
    assert_eq!(enabled["enabled"], true);
    assert!(enabled["disabled_reason"].is_null());
    wait_for("the pending deliveries delivered", || async {
        let s = admin_ok(&app, Method::GET, &format!("/admin/sinks/{sink}"), None).await;
        (s["deliveries"]["pending"] == 0 && s["deliveries"]["delivered"] == 3).then_some(())
    })
    .await;
}

#[tokio::test]
async fn cli_registers_sinks_and_shows_events_and_attempts() {
    let app = spawn_app_with(|s| {
        fast(s);
        s.dispatcher = false;
    })
    .await;
    let url = app
        .state
        .settings
        .database_url
        .clone()
        .expect("database url");
    let cli = |args: &[&str]| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_topgate"))
            .arg("--database-url")
            .arg(&url)
            .args(args)
            .env("TOPGATE_LOG", "warn")
            .output()
            .expect("topgate runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "topgate {args:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    };
    let hook = cli(&["events", "add-webhook", "--url", "http://127.0.0.1:9/hook"]);
    let secret = hook["secret"]
        .as_str()
        .expect("a generated secret is shown once");
    assert!(secret.len() >= 32);
    let nats = cli(&["events", "add-nats", "--event-type", "trade.status_changed"]);
    assert_eq!(nats["url"], "nats://127.0.0.1:4222");
    assert_eq!(nats["stream"], "TOPGATE_EVENTS");
    assert_eq!(nats["subject_prefix"], "topgate.events");
    assert_eq!(nats["event_types"], json!(["trade.status_changed"]));
    // The CLI and the server, each opening the database, see one identity.
    let served = admin_ok(&app, Method::GET, "/admin/sinks/2", None).await;
    assert_eq!(nats["database_instance"], served["database_instance"]);
    assert!(nats["database_instance"].is_string(), "{nats}");
    let sinks = cli(&["events", "sinks"]);
    assert_eq!(sinks.as_array().unwrap().len(), 2);
    assert!(!sinks.to_string().contains(secret));

    trade_lifecycle(&app, 7401).await;
    let listed = cli(&["events", "list", "--entity", "trade:7401"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3);
    // Both sinks have each event queued (no dispatcher runs here).
    for e in listed {
        assert_eq!(e["deliveries"].as_array().unwrap().len(), 2, "{e}");
        assert!(e["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["state"] == "pending"));
    }
    let id = listed[0]["id"].as_i64().unwrap().to_string();
    assert_eq!(cli(&["events", "attempts", "--event", &id]), json!([]));
    let pending = cli(&["events", "deliveries", "1", "--state", "pending"]);
    assert_eq!(pending.as_array().unwrap().len(), 3);
    // Over HTTP a limit outside 1 to 1000 is cut to the nearest bound (docs/events.md); the
    // CLI refuses one below 1 (tests/cli.rs).
    let all = events(&app).await.len();
    for (limit, events_listed, deliveries_listed) in [("0", 1, 1), ("-3", 1, 1), ("5000", all, 3)] {
        for (path, listed) in [
            (format!("/admin/events?limit={limit}"), events_listed),
            (
                format!("/admin/sinks/1/deliveries?limit={limit}"),
                deliveries_listed,
            ),
        ] {
            let page = admin_ok(&app, Method::GET, &path, None).await;
            assert_eq!(page.as_array().unwrap().len(), listed, "{path}");
        }
    }
    let disabled = cli(&["events", "disable", "2"]);
    assert_eq!(disabled["enabled"], false);
    assert_eq!(disabled["disabled_reason"], "disabled by an operator");
    let re = cli(&["events", "redeliver", "1", "--event", &id]);
    assert_eq!(re["requeued"], 1);

    // A sink registered disabled says why too, from the CLI as from the admin API; enabling
    // it clears the reason.
    let from_cli = cli(&[
        "events",
        "add-webhook",
        "--url",
        "http://127.0.0.1:9/off",
        "--disabled",
    ]);
    let from_http = admin_ok(
        &app,
        Method::POST,
        "/admin/sinks",
        Some(json!({"kind": "nats", "enabled": false})),
    )
    .await;
    for made in [&from_cli, &from_http] {
        assert_eq!(made["enabled"], false, "{made}");
        assert_eq!(
            made["disabled_reason"], "created disabled by an operator",
            "{made}"
        );
        let path = format!("/admin/sinks/{}", made["id"]);
        let listed = admin_ok(&app, Method::GET, &path, None).await;
        assert_eq!(listed["disabled_reason"], made["disabled_reason"]);
    }
    let enabled = cli(&["events", "enable", &from_cli["id"].to_string()]);
    assert_eq!(enabled["enabled"], true);
    assert!(enabled["disabled_reason"].is_null(), "{enabled}");
}

// ---- NATS JetStream ----------------------------------------------------------------------

/// A client of the NATS server on 127.0.0.1:4222, and a stream name and subject prefix no other
/// test uses.
async fn jetstream() -> (async_nats::Client, String, String) {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect("nats://127.0.0.1:4222")
        .await
        .unwrap_or_else(|e| {
            panic!(
                "this test needs a NATS server with JetStream on 127.0.0.1:4222 \
                 (e.g. `nats-server -js -a 127.0.0.1 -p 4222`): {e}"
            )
        });
    let tag = topgate::apps::random_token(10);
    let stream = format!("TOPGATE_TEST_{}", tag.to_uppercase());
    let prefix = format!("topgate_test_{tag}.events");
    (client, stream, prefix)
}

/// Registers a NATS sink publishing into `stream`; its id and the database identity it shows.
async fn add_nats(app: &TestApp, stream: &str, prefix: &str) -> (i64, String) {
    let sink = admin_ok(
        app,
        Method::POST,
        "/admin/sinks",
        Some(
            json!({"kind": "nats", "url": "nats://127.0.0.1:4222", "stream": stream,
            "subject_prefix": prefix}),
        ),
    )
    .await;
    let instance = sink["database_instance"]
        .as_str()
        .unwrap_or_else(|| panic!("a NATS sink shows the database identity: {sink}"))
        .to_string();
    assert!(
        instance.len() == 16
            && instance
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "16 lowercase hex digits: {instance:?}"
    );
    (sink["id"].as_i64().expect("sink id"), instance)
}

fn msg_id(msg: &async_nats::Message) -> String {
    msg.headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// A pull consumer reading `stream` from its first message.
async fn read_stream(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> async_nats::jetstream::consumer::pull::Stream {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    js.get_stream(stream)
        .await
        .expect("the dispatcher created the stream")
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("consumer")
        .messages()
        .await
        .expect("message stream")
}

async fn stored_messages(js: &async_nats::jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream)
        .await
        .expect("stream")
        .info()
        .await
        .expect("stream info")
        .state
        .messages
}

#[tokio::test]
async fn jetstream_consumer_gets_each_event_with_database_and_event_id_as_message_id() {
    use futures_util::StreamExt;

    let (client, stream, prefix) = jetstream().await;
    let js = async_nats::jetstream::new(client.clone());
    // Every message published on the subjects, duplicates included (JetStream stores one).
    let mut wire = client
        .subscribe(format!("{prefix}.>"))
        .await
        .expect("core subscription");

    let app = spawn_app_with(fast).await;
    let (sink_id, instance) = add_nats(&app, &stream, &prefix).await;
    trade_lifecycle(&app, 7501).await;
    let ids = entity_events(&app, "trade:7501").await;
    assert_eq!(ids.len(), 3);
    wait_for("the events published to JetStream", || async {
        let d = deliveries(&app, sink_id, "delivered").await;
        (d.len() == 3).then_some(())
    })
    .await;

    // A JetStream consumer reads each event once, in order, with `<database>:<event id>` as
    // the message id and the bare event id in the body.
    let mut messages = read_stream(&js, &stream).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let msg = tokio::time::timeout(WAIT, messages.next())
            .await
            .expect("a JetStream message in time")
            .expect("message stream open")
            .expect("message");
        assert_eq!(
            msg.subject.as_str(),
            format!("{prefix}.trade.status_changed")
        );
        let body: Value = serde_json::from_slice(&msg.payload).unwrap();
        let id = body["id"].as_i64().expect("the event id in the body");
        assert_eq!(msg_id(&msg), format!("{instance}:{id}"));
        assert_eq!(body["entity"], "trade:7501");
        msg.ack().await.expect("ack");
        got.push(id);
    }
    assert_eq!(got, ids);

    // A redelivery carries the same message id: JetStream reports it as a duplicate and keeps
    // one copy.
    admin_ok(
        &app,
        Method::POST,
        &format!("/admin/sinks/{sink_id}/redeliver"),
        Some(json!({"event_id": ids[0]})),
    )
    .await;
    let tries = wait_for("the redelivery recorded", || async {
        let t = attempts(&app, ids[0]).await;
        (t.len() == 2).then_some(t)
    })
    .await;
    assert_eq!(tries[0]["outcome"], "delivered");
    assert_eq!(tries[1]["outcome"], "duplicate");
    let mut wire_ids = Vec::new();
    for _ in 0..4 {
        let msg = tokio::time::timeout(WAIT, wire.next())
            .await
            .expect("the published copies on the wire")
            .expect("subscription open");
        wire_ids.push(msg_id(&msg));
    }
    let first = format!("{instance}:{}", ids[0]);
    assert_eq!(
        wire_ids.iter().filter(|id| **id == first).count(),
        2,
        "{wire_ids:?}"
    );
    assert_eq!(
        stored_messages(&js, &stream).await,
        3,
        "JetStream kept the duplicate"
    );
    let _ = js.delete_stream(&stream).await;
}

/// Event ids are unique only within a database: two fresh databases number their events
/// alike, and publishing into one stream each must still have every event stored.
#[tokio::test]
async fn two_databases_publishing_the_same_event_ids_into_one_stream_are_both_stored() {
    use futures_util::StreamExt;

    let (client, stream, prefix) = jetstream().await;
    let js = async_nats::jetstream::new(client);
    let apps = [spawn_app_with(fast).await, spawn_app_with(fast).await];
    let mut published = Vec::new();
    for app in &apps {
        let (sink_id, instance) = add_nats(app, &stream, &prefix).await;
        trade_lifecycle(app, 7601).await;
        let ids = entity_events(app, "trade:7601").await;
        assert_eq!(ids.len(), 3);
        published.push((sink_id, instance, ids));
    }
    let [(_, first, first_ids), (_, second, second_ids)] = &published[..] else {
        unreachable!("two apps")
    };
    assert_ne!(first, second, "each database has an identity of its own");
    assert_eq!(
        first_ids, second_ids,
        "both databases gave their events the same ids"
    );

    for (app, (sink_id, _, ids)) in apps.iter().zip(&published) {
        wait_for("the events published to JetStream", || async {
            let d = deliveries(app, *sink_id, "delivered").await;
            (d.len() == 3).then_some(())
        })
        .await;
        for id in ids {
            let tries = attempts(app, *id).await;
            assert_eq!(tries.len(), 1, "{tries:?}");
            assert_eq!(
                tries[0]["outcome"], "delivered",
                "not taken for a duplicate of the other database's event {id}"
            );
        }
    }
    assert_eq!(stored_messages(&js, &stream).await, 6);
    let mut messages = read_stream(&js, &stream).await;
    let mut stored = BTreeSet::new();
    for _ in 0..6 {
        let msg = tokio::time::timeout(WAIT, messages.next())
            .await
            .expect("a JetStream message in time")
            .expect("message stream open")
            .expect("message");
        stored.insert(msg_id(&msg));
    }
    let expected: BTreeSet<String> = published
        .iter()
        .flat_map(|(_, instance, ids)| ids.iter().map(move |id| format!("{instance}:{id}")))
        .collect();
    assert_eq!(stored, expected);
    let _ = js.delete_stream(&stream).await;
}

/// A second sink naming an existing stream with a prefix of its own: the stream is not made
/// again, nothing stores its messages, and each failed attempt says what to change.
#[tokio::test]
async fn a_sink_whose_stream_exists_with_other_subjects_says_what_to_change() {
    let (client, stream, prefix) = jetstream().await;
    let js = async_nats::jetstream::new(client);
    let app = spawn_app_with(fast).await;
    let (first, _) = add_nats(&app, &stream, &prefix).await;
    trade_lifecycle(&app, 7601).await;
    wait_for("the first sink's events stored", || async {
        (deliveries(&app, first, "delivered").await.len() == 3).then_some(())
    })
    .await;
    let other_prefix = format!("{prefix}_other");
    let (second, _) = add_nats(&app, &stream, &other_prefix).await;
    trade_lifecycle(&app, 7602).await;
    let failed = wait_for("a failed attempt of the second sink", || async {
        deliveries(&app, second, "pending")
            .await
            .into_iter()
            .find(|d| d["last_error"].is_string())
    })
    .await;
    let error = failed["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!("no JetStream stream takes {other_prefix}.>"))
            && error.contains(&stream),
        "{error}"
    );
    let _ = js.delete_stream(&stream).await;
}

/// A NATS sink's URL may be a comma-separated list of servers (one of them down here): the
/// events are published through one that answers.
#[tokio::test]
async fn a_nats_sink_with_a_list_of_servers_delivers() {
    let (client, stream, prefix) = jetstream().await;
    let js = async_nats::jetstream::new(client);
    let app = spawn_app_with(fast).await;
    let sink = admin_ok(
        &app,
        Method::POST,
        "/admin/sinks",
        Some(
            json!({"kind": "nats", "url": "nats://127.0.0.1:9, nats://127.0.0.1:4222",
                    "stream": stream, "subject_prefix": prefix}),
        ),
    )
    .await;
    let sink = sink["id"].as_i64().unwrap();
    trade_lifecycle(&app, 7701).await;
    wait_for("the events published through the live server", || async {
        (deliveries(&app, sink, "delivered").await.len() == 3).then_some(())
    })
    .await;
    assert_eq!(stored_messages(&js, &stream).await, 3);
    let _ = js.delete_stream(&stream).await;
}

// ---- SIGKILL of `topgate dispatch` -------------------------------------------------------

struct Dispatcher(Child);

impl Dispatcher {
    fn start(config: &std::path::Path, url: &str, log: &std::path::Path) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_topgate"))
            .arg("--config")
            .arg(config)
            .arg("--database-url")
            .arg(url)
            .arg("dispatch")
            .env("TOPGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("topgate dispatch starts");
        Self(child)
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sigkill_of_the_dispatcher_loses_no_event() {
    let dir = tempfile::tempdir().unwrap();
    // A SQLite file (or, with TOPGATE_TEST_DATABASE=postgres, a fresh PostgreSQL database).
    let url = common::test_database_url(dir.path()).await;
    let store = Store::open(&url).expect("store");
    // Slow enough that the kill lands in the middle.
    let receiver = Receiver::start(0, Duration::from_millis(25)).await;
    let new = topgate::events::admin::NewSink {
        kind: "webhook".into(),
        url: Some(receiver.url.clone()),
        secret: Some("whsec_sigkill_0123456789".into()),
        event_types: None,
        enabled: true,
        stream: None,
        subject_prefix: None,
    };
    let new = Arc::new(new);
    store
        .attempt(move |tx| Ok(topgate::events::admin::create_sink(tx, &new, 1)))
        .await
        .unwrap()
        .expect("sink created");
    // 200 events: 40 entities with 5 changes each, interleaved.
    let emitted: Vec<(i64, String)> = store
        .write(|tx| {
            let mut out = Vec::new();
            for round in 0..5 {
                for entity in 0..40 {
                    let entity = format!("test:{entity}");
                    topgate::events::emit(
                        tx,
                        "test.changed",
                        &entity,
                        &json!({"round": round}),
                        1_700_000_000_000,
                    )?;
                    let id = tx
                        .query_opt("SELECT MAX(id) FROM events", &[])?
                        .map(|r| r.i64(0))
                        .unwrap();
                    out.push((id, entity));
                }
            }
            Ok(out)
        })
        .await
        .unwrap();
    assert_eq!(emitted.len(), 200);

    let config = dir.path().join("topgate.toml");
    std::fs::write(
        &config,
        "[events]\npoll_interval_ms = 20\nlease_ms = 1000\nrequest_timeout_ms = 800\n\
         retry_schedule_ms = [50, 50, 50, 50, 50, 50, 50, 50]\nmax_in_flight = 4\n",
    )
    .unwrap();
    let log = dir.path().join("dispatch.log");

    let mut first = Dispatcher::start(&config, &url, &log);
    let at_kill = wait_for("a first part delivered", || async {
        let n = receiver.accepted().len();
        (n >= 40).then_some(n)
    })
    .await;
    first.0.kill().expect("SIGKILL"); // Child::kill is SIGKILL on Unix
    let status = first.0.wait().unwrap();
    assert!(!status.success());
    let delivered_at_kill = receiver.accepted().len();
    assert!(
        delivered_at_kill < 200,
        "the kill came too late to test anything ({at_kill} then {delivered_at_kill})"
    );

    // New dispatchers (two, racing for the lease) take the sink over once the dead one's lease
    // has run out.
    let second = Dispatcher::start(&config, &url, &log);
    let third = Dispatcher::start(&config, &url, &log);
    let accepted = wait_for("every event delivered after the restart", || async {
        let a = receiver.accepted();
        (a.len() >= 200).then_some(a)
    })
    .await;
    let expected: BTreeSet<i64> = emitted.iter().map(|(id, _)| *id).collect();
    let got: BTreeSet<i64> = accepted.iter().copied().collect();
    assert_eq!(got, expected, "an event was lost");
    // In order per entity, by first acknowledgement.
    let entity_of: HashMap<i64, &str> = emitted.iter().map(|(id, e)| (*id, e.as_str())).collect();
    let mut per_entity: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for id in &accepted {
        per_entity.entry(entity_of[id]).or_default().push(*id);
    }
    for (entity, ids) in &per_entity {
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{entity}: {ids:?}");
    }
    // The database agrees: everything delivered, nothing pending or dead.
    let states = wait_for("every delivery recorded", || async {
        let rows = store
            .read(|tx| {
                tx.query(
                    "SELECT state, COUNT(*) FROM deliveries GROUP BY state ORDER BY state",
                    &[],
                )
            })
            .await
            .unwrap();
        let states: Vec<(String, i64)> = rows.iter().map(|r| (r.str(0), r.i64(1))).collect();
        (states == vec![("delivered".to_string(), 200)]).then_some(states)
    })
    .await;
    assert_eq!(states.len(), 1);
    // Duplicates (sent before the kill, not yet recorded) carry the same event id.
    let hits = receiver.hits();
    assert!(hits.iter().all(|h| h.header_id == h.id.to_string()));

    // SIGTERM stops the dispatchers gracefully.
    for mut dispatcher in [second, third] {
        let pid = dispatcher.0.id().to_string();
        let term = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(term.success());
        let start = Instant::now();
        let code = loop {
            if let Some(code) = dispatcher.0.try_wait().unwrap() {
                break code;
            }
            assert!(start.elapsed() < WAIT, "dispatch ignored SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(code.success(), "dispatch exited with {code}");
    }
    assert_eq!(receiver.state.in_flight.load(Ordering::SeqCst), 0);
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log.contains("ERROR"), "{log}");
}

#[tokio::test]
async fn retention_removes_old_delivered_events_whole_and_keeps_any_a_sink_waits_for() {
    let app = spawn_app_with(|s| {
        fast(s);
        // One immediate try, then a retry long after the test: a failing sink stays pending.
        s.events.retry_schedule_ms = vec![600_000];
        s.events.retention_ms = 300;
    })
    .await;
    let healthy = Receiver::start(0, Duration::ZERO).await;
    let failing = Receiver::start(0, Duration::ZERO).await;
    failing.set_always_fail(true);
    let first_sink = add_webhook(
        &app,
        &healthy.url,
        "whsec_retention_0123456789",
        json!(["*"]),
    )
    .await;

    trade_lifecycle(&app, 7401).await;
    let old: Vec<i64> = entity_events(&app, "trade:7401").await;
    assert_eq!(old.len(), 3);
    // Attempts are kept until their event goes: seen here once, before pruning.
    wait_for("the first trade's events delivered", || async {
        let accepted = healthy.accepted();
        old.iter().all(|id| accepted.contains(id)).then_some(())
    })
    .await;
    assert_eq!(attempts(&app, old[0]).await.len(), 1);

    let waiting_sink = add_webhook(
        &app,
        &failing.url,
        "whsec_retention_abcdefghij",
        json!(["*"]),
    )
    .await;
    trade_lifecycle(&app, 7402).await;
    let kept: Vec<i64> = entity_events(&app, "trade:7402").await;
    assert_eq!(kept.len(), 3);
    wait_for(
        "the second trade's events delivered to the healthy sink",
        || async {
            let accepted = healthy.accepted();
            kept.iter().all(|id| accepted.contains(id)).then_some(())
        },
    )
    .await;

    wait_for("the first trade's events pruned", || async {
        entity_events(&app, "trade:7401")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    for id in &old {
        let (status, _) = app
            .admin(Method::GET, &format!("/admin/events/{id}"), None)
            .await;
        assert_eq!(status, 404, "event {id} is gone");
    }
    assert!(deliveries(&app, first_sink, "delivered")
        .await
        .iter()
        .all(|d| !old.contains(&d["event_id"].as_i64().unwrap_or(0))));

    // Older than the retention too, but the failing sink still waits for each: kept whole.
    assert_eq!(entity_events(&app, "trade:7402").await, kept);
    assert_eq!(deliveries(&app, waiting_sink, "pending").await.len(), 3);
    for id in &kept {
        assert!(
            !attempts(&app, *id).await.is_empty(),
            "event {id} keeps its attempts"
        );
    }

    // Once the waiting sink has them, a later pass of the same process removes them too.
    failing.set_always_fail(false);
    for id in &kept {
        let (status, body) = app
            .admin(
                Method::POST,
                &format!("/admin/sinks/{waiting_sink}/redeliver"),
                Some(json!({ "event_id": id })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    wait_for(
        "the second trade's events pruned once delivered",
        || async {
            entity_events(&app, "trade:7402")
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let accepted = failing.accepted();
    assert!(kept.iter().all(|id| accepted.contains(id)), "{accepted:?}");
}

/// The ids of an entity's events, in order.
async fn entity_events(app: &TestApp, entity: &str) -> Vec<i64> {
    events(app)
        .await
        .iter()
        .filter(|e| e["entity"] == entity)
        .filter_map(|e| e["id"].as_i64())
        .collect()
}

/// The dispatcher's head query is planned from the statistics of `deliveries`; on PostgreSQL
/// they are gathered anew once the table changed by autovacuum's measure (autovacuum may be
/// off), and only then. SQLite has nothing to gather.
#[tokio::test]
async fn planner_statistics_of_deliveries_are_gathered_once_the_table_grew() {
    let app = spawn_app_with(fast).await;
    let store = app.state.store.clone();
    let refresh = |store: Store| async move {
        store
            .write(|tx| tx.refresh_statistics(&["deliveries"]))
            .await
            .expect("refresh statistics")
    };
    // Dead deliveries of a disabled sink: nothing the dispatcher would touch.
    store
        .write(|tx| {
            let sink = tx.insert_returning_id(
                "INSERT INTO sinks (kind, url, enabled, created_at, updated_at) \
                 VALUES ('webhook', 'http://127.0.0.1:9/', 0, 0, 0)",
                &[],
            )?;
            for n in 0..200 {
                let entity = format!("test:{n}");
                let event = tx.insert_returning_id(
                    "INSERT INTO events (event_type, entity, payload, created_at) \
                     VALUES ('test', ?, '{}', 0)",
                    topgate::args![entity.as_str()],
                )?;
                tx.execute(
                    "INSERT INTO deliveries (sink_id, event_id, entity, state, next_at, updated_at) \
                     VALUES (?, ?, ?, 'dead', 0, 0)",
                    topgate::args![sink, event, entity.as_str()],
                )?;
            }
            Ok(())
        })
        .await
        .expect("deliveries written");
    if !store.is_shared() {
        assert!(refresh(store.clone()).await.is_empty());
        return;
    }
    // PostgreSQL publishes a connection's row counts within a second or so; the dispatcher
    // may also have gathered them first.
    wait_for("deliveries to be analyzed", || {
        let store = store.clone();
        async move {
            let ours = refresh(store.clone()).await == ["deliveries"];
            let analyzed = store
                .read(|tx| {
                    tx.query_opt(
                        "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables \
                         WHERE relname = 'deliveries'",
                        &[],
                    )
                })
                .await
                .expect("statistics view")
                .is_some_and(|r| r.i64(0) == 1);
            (ours || analyzed).then_some(())
        }
    })
    .await;
    assert!(
        refresh(store.clone()).await.is_empty(),
        "nothing changed since: the statistics are current"
    );
}

/// Enabling a sink makes its pending deliveries due at once, rather than after the backoff
/// their failures scheduled (10 minutes here): the operator enables it once the receiver works.
#[tokio::test]
async fn enabling_a_sink_sends_its_pending_deliveries_at_once() {
    let app = spawn_app_with(|s| {
        fast(s);
        s.events.retry_schedule_ms = vec![0, 600_000];
    })
    .await;
    let receiver = Receiver::start(0, Duration::ZERO).await;
    receiver.set_always_fail(true);
    let sink = add_webhook(&app, &receiver.url, "whsec_enable_0123456789", json!(["*"])).await;
    trade_lifecycle(&app, 7501).await;
    // The entity's first event fails; the others wait behind it, in order.
    wait_for("the first, failed try", || async {
        (!receiver.hits().is_empty()).then_some(())
    })
    .await;
    admin_ok(
        &app,
        Method::POST,
        &format!("/admin/sinks/{sink}/disable"),
        None,
    )
    .await;
    receiver.set_always_fail(false);
    let before = receiver.hits().len();
    admin_ok(
        &app,
        Method::POST,
        &format!("/admin/sinks/{sink}/enable"),
        None,
    )
    .await;
    wait_for("every event delivered after enable", || async {
        let delivered = admin_ok(&app, Method::GET, &format!("/admin/sinks/{sink}"), None).await
            ["deliveries"]["delivered"]
            .as_i64()
            .unwrap();
        (delivered == 3).then_some(())
    })
    .await;
    assert!(receiver.hits().len() > before);
}
