//! Several `topgate serve` processes over one PostgreSQL database behave as one node would:
//! the sandbox is seeded once, duplicates and races spread across nodes resolve to one effect,
//! and a node killed with SIGKILL loses no acknowledged change. Needs the PostgreSQL server
//! of `TOPGATE_TEST_PG_URL` (default 127.0.0.1:5432) and fails clearly without it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::json;
use sqlx::Connection;

/// Both nodes share one fresh PostgreSQL database, whatever `TOPGATE_TEST_DATABASE` says.
async fn fresh_database() -> String {
    fresh_postgres_url().await
}

async fn send(http: &reqwest::Client, url: &str, req: &Req) -> serde_json::Value {
    let text = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(req.form())
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

async fn count(database_url: &str, sql: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(database_url)
        .await
        .expect("connect");
    sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_seed_once_and_resolve_races_to_one_effect() {
    let db = fresh_database().await;
    let a = start_sandbox_process(&db);
    let b = start_sandbox_process(&db);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM apps WHERE app_key IN ('test', 'other')"
        )
        .await,
        2
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM trades").await, 4);

    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..500 {
        let url = if i % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            send(&http, &url, &pay(&pay_example())).await
        }));
    }
    let mut bodies = Vec::new();
    for t in tasks {
        let v = t.await.expect("task");
        bodies.push(v["alibaba_diantao_tripartite_right_pay_notify_response"].clone());
    }
    let first = bodies[0].clone();
    assert_eq!(first["succ"], true, "{first}");
    for body in &bodies {
        assert_eq!(
            body["data"], first["data"],
            "every duplicate answers the same order"
        );
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM right_orders").await, 1);

    // Opposite outcomes for the same order, racing on both nodes: one final state.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let url = if i % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        let http = http.clone();
        let param0 =
            json!({"order_no": 12345678, "success": i % 4 < 2, "req_id": format!("race-{i}")});
        tasks.push(tokio::spawn(async move {
            send(&http, &url, &opentrade(&param0)).await
        }));
    }
    let mut winners = std::collections::BTreeSet::new();
    for t in tasks {
        let v = t.await.expect("task");
        let result = &v["wt_trade_opentrade_resultcallback_response"]["result"];
        if result["success"] == true {
            winners.insert(result["req_id"].as_str().map(|r| {
                let n: u32 = r.trim_start_matches("race-").parse().unwrap();
                n % 4 < 2
            }));
        } else {
            assert_eq!(result["error_code"], "ORDER_ALREADY_FINISHED", "{v}");
        }
    }
    assert_eq!(winners.len(), 1, "only one outcome is ever acknowledged");
    let finished = count(
        &db,
        "SELECT COUNT(*) FROM trades WHERE tid = 12345678 AND status = 'TRADE_FINISHED'",
    )
    .await;
    let closed = count(
        &db,
        "SELECT COUNT(*) FROM trades WHERE tid = 12345678 AND status = 'TRADE_CLOSED'",
    )
    .await;
    assert_eq!(finished + closed, 1);
    let succeeded = winners.into_iter().next().flatten().unwrap();
    assert_eq!(finished == 1, succeeded);
    let refunds = count(&db, "SELECT COUNT(*) FROM refunds WHERE tid = 12345678").await;
    assert_eq!(refunds, if succeeded { 0 } else { 1 });
}

/// Nodes started at the same moment over a fresh database all come up: they take turns to
/// migrate and seed, and the later ones find the schema (with its one database identity) and
/// the sandbox in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_started_together_seed_the_sandbox_once_and_all_serve() {
    let db = fresh_database().await;
    let starts: Vec<_> = (0..3)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || start_sandbox_process(&db))
        })
        .collect();
    let nodes: Vec<SandboxProcess> = starts
        .into_iter()
        .map(|start| start.join().expect("every node starts and prints its URL"))
        .collect();
    assert_eq!(count(&db, "SELECT COUNT(*) FROM apps").await, 2);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM trades").await, 4);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM database_identity").await,
        1
    );
    let http = reqwest::Client::new();
    for node in &nodes {
        let answer = send(&http, &node.url, &lianbei("1000")).await;
        assert_eq!(
            answer["alibaba_alisports_lianbei_order_notice_response"]["result"]["alisp_code"], 200,
            "{answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_with_sigkill_loses_no_acknowledged_change() {
    let db = fresh_database().await;
    let mut a = start_sandbox_process(&db);
    let b = start_sandbox_process(&db);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let http = http.clone();
        let url = if i % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        let mut dto = pay_example();
        dto["idempotent_id"] = json!(format!("kill-{i}"));
        dto["outer_order_id"] = json!(format!("kill-{i}"));
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i * 3)).await;
            let reply = http
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(pay(&dto).form())
                .send()
                .await;
            let acknowledged = match reply {
                Ok(r) => r.text().await.is_ok_and(|t| t.contains("\"succ\":true")),
                Err(_) => false,
            };
            (i, acknowledged)
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    a.child.kill().expect("SIGKILL node a");
    let mut acknowledged = Vec::new();
    for t in tasks {
        let (i, ok) = t.await.expect("task");
        if ok {
            acknowledged.push(i);
        }
    }
    // Node b alone answers about half of the 300 calls; leave room for a few timeouts on a
    // slow machine.
    assert!(
        acknowledged.len() >= 120,
        "node b kept serving: {}",
        acknowledged.len()
    );
    let mut conn = sqlx::PgConnection::connect(&db).await.unwrap();
    for i in acknowledged {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM right_orders WHERE outer_order_id = $1")
                .bind(format!("kill-{i}"))
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(n, 1, "acknowledged payment kill-{i} is stored exactly once");
    }
    // The survivor still answers replays of what node a acknowledged.
    let replay = send(
        &http,
        &b.url,
        &pay(&{
            let mut dto = pay_example();
            dto["idempotent_id"] = json!("kill-0");
            dto["outer_order_id"] = json!("kill-0");
            dto
        }),
    )
    .await;
    assert!(
        replay
            .get("alibaba_diantao_tripartite_right_pay_notify_response")
            .is_some(),
        "{replay}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_per_method_limit_holds_across_nodes() {
    let db = fresh_database().await;
    let a = start_sandbox_process(&db);
    let b = start_sandbox_process(&db);
    let created = Command::new(env!("CARGO_BIN_EXE_topgate"))
        .args([
            "--database-url",
            &db,
            "app",
            "create",
            "--app-key",
            "limited",
            "--secret",
            "s3",
        ])
        .args(["--method", "taobao.time.get", "--calls-per-second", "3"])
        .output()
        .expect("app create runs");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let http = reqwest::Client::new();
    // 40 calls within well under a second, alternating nodes: the database counts them all.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let url = if i % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let v = send(
                &http,
                &url,
                &Req::new("taobao.time.get").app("limited", "s3"),
            )
            .await;
            (v, started.elapsed())
        }));
    }
    let (mut served, mut limited) = (0, 0);
    for t in tasks {
        let (v, _) = t.await.expect("task");
        if v.get("time_get_response").is_some() {
            served += 1;
        } else {
            assert_eq!(v["error_response"]["code"], 7, "{v}");
            assert!(v["error_response"]["sub_code"]
                .as_str()
                .is_some_and(|s| s.starts_with("accesscontrol.")));
            limited += 1;
        }
    }
    // At most 3 per wall-clock second; the burst may straddle one second boundary.
    assert!((1..=6).contains(&served), "served {served}");
    assert_eq!(served + limited, 40);
}

/// Two nodes creating the same key at once: one wins, and every other answer is the documented
/// 409 naming the key. A node that lost the race between its check and its insert reruns the
/// operation, whose check then sees the winner (it answered PostgreSQL's own words before:
/// `duplicate key value violates unique constraint "users_pkey"`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_racing_to_create_one_key_answer_the_documented_conflict() {
    let db = fresh_database().await;
    let on_db = |db: String| move |s: &mut topgate::config::Settings| s.database_url = Some(db);
    let a = spawn_app_with(on_db(db.clone())).await;
    let b = spawn_app_with(on_db(db.clone())).await;
    for round in 0..5 {
        let user_id = 770_000 + round;
        let mut tasks = Vec::new();
        for i in 0..12 {
            let node = if i % 2 == 0 { &a } else { &b };
            let (http, base) = (node.http.clone(), node.base.clone());
            tasks.push(tokio::spawn(async move {
                let response = http
                    .post(format!("{base}/admin/users"))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&json!({"user_id": user_id, "nick": "racer"}))
                    .send()
                    .await
                    .expect("sent");
                let status = response.status().as_u16();
                (
                    status,
                    response.json::<serde_json::Value>().await.expect("JSON"),
                )
            }));
        }
        let mut created = 0;
        for task in tasks {
            match task.await.expect("task") {
                (200, _) => created += 1,
                (409, body) => assert_eq!(
                    body,
                    json!({"error": format!("conflicts with existing data: user {user_id} exists")})
                ),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(created, 1, "round {round}");
    }
}

/// A migration that fails stops the command with its cause, not with the aborted transaction's
/// "current transaction is aborted" that the lock's release met afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_migration_names_its_cause() {
    let db = fresh_database().await;
    let mut conn = sqlx::PgConnection::connect(&db).await.expect("connect");
    sqlx::query("CREATE TABLE users (id INT)")
        .execute(&mut conn)
        .await
        .expect("a table in the way");
    let out = Command::new(env!("CARGO_BIN_EXE_topgate"))
        .env_remove("TOPGATE_DATABASE_URL")
        .env("TOPGATE_LOG", "warn")
        .args(["--database-url", &db, "app", "list"])
        .output()
        .expect("topgate runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(r#"relation "users" already exists"#),
        "{stderr}"
    );
}

/// A database migrated by a newer topgate is not opened by an older one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_from_a_newer_topgate_is_not_opened() {
    let db = fresh_database().await;
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_topgate"))
            .env_remove("TOPGATE_DATABASE_URL")
            .env("TOPGATE_LOG", "warn")
            .args(["--database-url", &db, "app", "list"])
            .output()
            .expect("topgate runs")
    };
    assert!(run().status.success());
    let mut conn = sqlx::PgConnection::connect(&db).await.expect("connect");
    sqlx::query("INSERT INTO schema_migrations VALUES (999, 0)")
        .execute(&mut conn)
        .await
        .expect("a newer migration");
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("schema is at version 999, from a newer topgate"),
        "{stderr}"
    );
}

/// `/readyz` tells a load balancer whether the node's database answers: 200 while it does,
/// 503 once it is gone, while `/healthz` (liveness) still answers `ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_is_503_once_the_database_is_gone() {
    let db = fresh_database().await;
    let node = spawn_app_with({
        let db = db.clone();
        move |s: &mut topgate::config::Settings| s.database_url = Some(db)
    })
    .await;
    let get = |path: &'static str| {
        let (http, base) = (node.http.clone(), node.base.clone());
        async move {
            let response = http
                .get(format!("{base}{path}"))
                .send()
                .await
                .expect("sent");
            (
                response.status().as_u16(),
                response.text().await.expect("body"),
            )
        }
    };
    assert_eq!(get("/readyz").await, (200, "ready".to_string()));
    let name = db.rsplit('/').next().unwrap().to_string();
    let admin = std::env::var("TOPGATE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect");
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .expect("drop the node's database");
    assert_eq!(
        get("/readyz").await,
        (503, "database unavailable".to_string())
    );
    assert_eq!(get("/healthz").await, (200, "ok".to_string()));
}
