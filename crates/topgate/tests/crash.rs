//! Crash safety of the write path: the real `topgate` binary (sandbox, a temp SQLite file) takes
//! a bounded load of distinct `right.pay.notify` calls over several connections, is killed with
//! SIGKILL in the middle, and is restarted on the same file. Every call that got a success
//! answer must then be in the store exactly once, with the order_id it was answered, and
//! sending it again must be an idempotent replay of that order. Ten rounds on one file, so that
//! later rounds also recover from earlier kills.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{start_sandbox_process, SandboxProcess};
use time::OffsetDateTime;
use top_protocol::SignMethod;
use topgate::bench::requests::{self, Api, Plan};

const ROUNDS: usize = 10;
const CONNECTIONS: usize = 8;
/// Requests each connection may send in a round (the kill normally comes first).
const PER_CONNECTION: u64 = 60;
/// Bound of one HTTP call, and of one whole round.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const ROUND_TIMEOUT: Duration = Duration::from_secs(120);

fn start(db: &Path) -> SandboxProcess {
    start_sandbox_process(&format!("sqlite://{}", db.display()))
}

fn plan(tag: String) -> Plan {
    Plan {
        app_key: "test".into(),
        secret: "test".into(),
        session: "test-session".into(),
        sign_method: SignMethod::Md5,
        tag,
        lianbei: (1000, 1),
        carrier: (0, 0),
        opentrade: (0, 0),
    }
}

/// The order_id of a success answer, `None` for anything else.
fn order_id(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let r = v.get("alibaba_diantao_tripartite_right_pay_notify_response")?;
    if r.get("succ")?.as_bool()? {
        r.get("data")?.get("order_id")?.as_str().map(str::to_string)
    } else {
        None
    }
}

/// A client whose calls fail rather than wait forever: the test must end by itself even if a
/// server stops answering without closing its connections.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(CALL_TIMEOUT)
        .build()
        .expect("HTTP client")
}

async fn post(http: &reqwest::Client, url: &str, body: bytes::Bytes) -> Result<String, String> {
    let resp = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    resp.text().await.map_err(|e| e.to_string())
}

/// One round: load, SIGKILL after `kill_after` successes, restart, verify. Returns how many
/// acknowledged calls were checked.
async fn round(db: &Path, n: usize, kill_after: usize) -> usize {
    let server = start(db);
    let plan = Arc::new(plan(format!("r{n}x{}", topgate::apps::random_token(6))));
    // Index → (order_id answered, the exact body sent, for the replay).
    let acked: Arc<Mutex<HashMap<u64, (String, bytes::Bytes)>>> = Arc::default();
    let successes = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS as u64 {
        let (plan, acked, successes, stop, url) = (
            Arc::clone(&plan),
            Arc::clone(&acked),
            Arc::clone(&successes),
            Arc::clone(&stop),
            server.url.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let http = client();
            for k in 0..PER_CONNECTION {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let i = c * PER_CONNECTION + k;
                let body = requests::body(&plan, Api::Pay, i, OffsetDateTime::now_utc());
                match post(&http, &url, body.clone()).await {
                    Ok(text) => {
                        let id = order_id(&text)
                            .unwrap_or_else(|| panic!("not a success before the kill: {text}"));
                        acked.lock().unwrap().insert(i, (id, body));
                        successes.fetch_add(1, Ordering::Relaxed);
                    }
                    // The server is gone: this call may or may not have been committed.
                    Err(_) => return,
                }
            }
        }));
    }
    let mut server = server;
    let deadline = Instant::now() + Duration::from_secs(20);
    while successes.load(Ordering::Relaxed) < kill_after && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Child::kill is SIGKILL on Unix: no shutdown path runs.
    server.child.kill().expect("SIGKILL");
    let _ = server.child.wait();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= kill_after.min(10),
        "round {n}: only {} successes before the kill",
        acked.len()
    );

    let mut server = start(db);
    {
        let conn = rusqlite::Connection::open(db).expect("open the SQLite file");
        let sent = CONNECTIONS as u64 * PER_CONNECTION;
        for i in 0..sent {
            let outer = format!("bench-{}-{i}", plan.tag);
            let rows: Vec<i64> = conn
                .prepare("SELECT order_id FROM right_orders WHERE outer_order_id = ?1")
                .unwrap()
                .query_map([&outer], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(rows.len() <= 1, "round {n}: {outer} stored twice: {rows:?}");
            if let Some((id, _)) = acked.get(&i) {
                assert_eq!(
                    rows.iter().map(i64::to_string).collect::<Vec<_>>(),
                    vec![id.clone()],
                    "round {n}: acknowledged {outer} is not stored once as order {id}"
                );
            }
        }
    }
    // Re-sending an acknowledged call replays its order.
    let http = client();
    for (i, (id, body)) in &acked {
        let text = post(&http, &server.url, body.clone())
            .await
            .expect("replay answered");
        assert_eq!(
            order_id(&text).as_deref(),
            Some(id.as_str()),
            "round {n}: replay of {i}: {text}"
        );
    }
    server.child.kill().expect("stop");
    let _ = server.child.wait();
    acked.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_pay_notifications_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("crash.db");
    let started = Instant::now();
    let mut checked = 0;
    for n in 0..ROUNDS {
        // Kill at a different point each round: early, mid-batch, later.
        let kill_after = 20 + (n * 37) % 150;
        checked += tokio::time::timeout(ROUND_TIMEOUT, round(&db, n, kill_after))
            .await
            .unwrap_or_else(|_| panic!("round {n} did not finish within {ROUND_TIMEOUT:?}"));
    }
    assert!(
        checked >= ROUNDS * 10,
        "{checked} acknowledged calls checked"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
