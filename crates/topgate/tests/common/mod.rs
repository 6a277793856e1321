//! The integration harness: `spawn_app()` starts a real topgate on 127.0.0.1:0 over a fresh
//! SQLite file seeded with the sandbox, and returns helpers to sign and send requests and to
//! inspect the store through the admin operations.
#![allow(dead_code)]

use std::sync::Arc;

use serde_json::Value;
use time::OffsetDateTime;
use top_protocol::sign::sign_params;
use top_protocol::{timestamp, ParamSet, SignMethod};
use topgate::admin::ops;
use topgate::clock::Clock;
use topgate::config::Settings;
use topgate::gateway::AppState;
use topgate::Server;

pub const ADMIN_TOKEN: &str = "test-admin-token";

pub struct TestApp {
    pub url: String,
    pub base: String,
    pub state: Arc<AppState>,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The database of a test: a fresh SQLite file, or, when `TOPGATE_TEST_DATABASE=postgres`, a
/// fresh database on the PostgreSQL server of `TOPGATE_TEST_PG_URL` (default: the local one).
pub async fn test_database_url(dir: &std::path::Path) -> String {
    match std::env::var("TOPGATE_TEST_DATABASE").as_deref() {
        Ok("postgres") => fresh_postgres_url().await,
        _ => format!("sqlite://{}", dir.join("test.db").display()),
    }
}

/// A new, empty database on the PostgreSQL server of `TOPGATE_TEST_PG_URL` (default: the local
/// one); fails the test, clearly, when no server answers.
pub async fn fresh_postgres_url() -> String {
    use sqlx::Connection;
    let admin = std::env::var("TOPGATE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("this test needs PostgreSQL, but none answers at {admin}: {e}"));
    let name = format!("topgate_test_{}", topgate::apps::random_token(16));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}

/// A `topgate serve --sandbox` process on a free port of 127.0.0.1; killed when dropped, so a
/// failed assertion never leaves a server running.
pub struct SandboxProcess {
    pub child: std::process::Child,
    pub url: String,
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the `topgate` binary over `database_url` and waits (at most 30 s) for its URL line.
pub fn start_sandbox_process(database_url: &str) -> SandboxProcess {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_topgate"))
        .env_remove("TOPGATE_DATABASE_URL")
        .env("TOPGATE_LOG", "warn")
        .args(["--sandbox", "--database-url", database_url])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("topgate starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    // Keeps draining stdout so that the server never writes into a closed pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("topgate sandbox listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the server prints its URL within 30 s");
    SandboxProcess { child, url }
}

/// Starts a sandbox server; `tweak` may change the settings first.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings {
        listen: "127.0.0.1:0".into(),
        database_url: Some(test_database_url(dir.path()).await),
        admin_token: Some(ADMIN_TOKEN.into()),
        ..Settings::default()
    };
    tweak(&mut settings);
    let server = Server::bind(settings, true, Clock::system())
        .await
        .expect("server binds");
    let base = format!("http://{}", server.addr);
    let state = Arc::clone(&server.state);
    tokio::spawn(server.run());
    TestApp {
        url: format!("{base}/router/rest"),
        base,
        state,
        http: reqwest::Client::builder()
            .no_gzip()
            .build()
            .expect("client"),
        _dir: dir,
    }
}

/// A request under construction: system parameters of the sandbox app, signed on `send`.
#[derive(Clone)]
pub struct Req {
    pub params: ParamSet,
    pub secret: String,
    pub sign_method: SignMethod,
    /// Sign automatically (false to send a hand-made or missing `sign`).
    pub auto_sign: bool,
}

impl Req {
    /// `method` called by app `test` in JSON with md5, timestamp now.
    pub fn new(method: &str) -> Self {
        let mut params = ParamSet::new();
        params.set("method", method);
        params.set("app_key", "test");
        params.set(
            "timestamp",
            timestamp::format_wall_clock(OffsetDateTime::now_utc()),
        );
        params.set("v", "2.0");
        params.set("sign_method", "md5");
        params.set("format", "json");
        Self {
            params,
            secret: "test".into(),
            sign_method: SignMethod::Md5,
            auto_sign: true,
        }
    }

    pub fn app(mut self, app_key: &str, secret: &str) -> Self {
        self.params.set("app_key", app_key);
        self.secret = secret.into();
        self
    }

    pub fn param(mut self, name: &str, value: impl Into<String>) -> Self {
        self.params.set(name, value.into());
        self
    }

    pub fn without(mut self, name: &str) -> Self {
        self.params.remove(name);
        self
    }

    pub fn sign_with(mut self, method: SignMethod) -> Self {
        self.params.set("sign_method", method.as_wire());
        self.sign_method = method;
        self
    }

    pub fn session(self, key: &str) -> Self {
        self.param("session", key)
    }

    pub fn signed(&self) -> ParamSet {
        let mut p = self.params.clone();
        if self.auto_sign {
            p.remove("sign");
            let sig = sign_params(self.sign_method, &self.secret, &p);
            p.set("sign", sig);
        }
        p
    }

    pub fn form(&self) -> String {
        self.signed().to_form()
    }
}

impl TestApp {
    /// POSTs the form body; returns the raw text (asserting HTTP 200).
    pub async fn send(&self, req: &Req) -> String {
        let resp = self
            .http
            .post(&self.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(req.form())
            .send()
            .await
            .expect("request sent");
        assert_eq!(resp.status(), 200);
        resp.text().await.expect("body")
    }

    /// Sends a JSON-format request and parses the answer.
    pub async fn send_json(&self, req: &Req) -> Value {
        let text = self.send(req).await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// The `error_response` of an answer, panicking if it is a success.
    pub async fn error(&self, req: &Req) -> Value {
        let v = self.send_json(req).await;
        v.get("error_response")
            .cloned()
            .unwrap_or_else(|| panic!("expected an error_response, got {v}"))
    }

    /// The object inside the success wrapper of `method`'s response.
    pub async fn ok(&self, req: &Req) -> Value {
        let v = self.send_json(req).await;
        let method = req.params.get("method").unwrap_or_default().to_string();
        v.get(top_protocol::response_name(&method))
            .cloned()
            .unwrap_or_else(|| panic!("expected a success, got {v}"))
    }

    /// A trade with everything attached (admin inspection).
    pub async fn trade(&self, tid: i64) -> Value {
        self.state
            .store
            .attempt(move |tx| Ok(ops::get_trade(tx, tid)))
            .await
            .expect("store")
            .expect("trade exists")
    }

    /// Every right order, all pages of the listing.
    pub async fn right_orders(&self) -> Value {
        self.all_pages(|tx, last| {
            let after = last.and_then(|o| o["order_id"].as_str()?.parse().ok());
            ops::list_right_orders(
                tx,
                &ops::RightOrderPage {
                    after,
                    limit: Some(ops::MAX_LIMIT),
                },
            )
        })
        .await
    }

    /// Every idempotency record, all pages of the listing.
    pub async fn idempotency(&self) -> Value {
        self.all_pages(|tx, last| {
            let text = |k: &str| last.and_then(|r| r[k].as_str().map(String::from));
            ops::list_idempotency(
                tx,
                &ops::IdempotencyPage {
                    after_scope: text("scope"),
                    after_key: text("idem_key"),
                    limit: Some(ops::MAX_LIMIT),
                },
            )
        })
        .await
    }

    /// Every row of a paged admin listing: `page` lists the page after the row it is given
    /// (the first page for none).
    async fn all_pages(
        &self,
        page: impl Fn(&mut dyn topgate::store::Tx, Option<&Value>) -> Result<Value, ops::AdminError>
            + Send
            + 'static,
    ) -> Value {
        self.state
            .store
            .attempt(move |tx| {
                let mut all: Vec<Value> = Vec::new();
                loop {
                    let rows = match page(tx, all.last()) {
                        Ok(Value::Array(rows)) => rows,
                        other => return Ok(other),
                    };
                    let last = rows.len() < ops::MAX_LIMIT as usize;
                    all.extend(rows);
                    if last {
                        return Ok(Ok(Value::Array(all)));
                    }
                }
            })
            .await
            .expect("store")
            .expect("listing")
    }

    /// Calls the admin HTTP API.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// The seed page's supplier example with real dates.
pub fn supplier_example() -> Value {
    serde_json::json!({
        "biz_type": "30", "ext_info": "<\"key\", \"value\">", "notify_type": "1",
        "offer_invalid_date": "2019-09-09 12:33:00", "offer_valid_date": "2018-09-09 12:33:00",
        "order_no": "8888888", "out_order_no": "88888888", "receive_status": false,
        "send_good_param": "iccid=888|TB1,999|TB2;invalidDate=20180909$12:33|TB1,20180909$12:33|TB2",
        "iccid": "888888888", "user_id": "888888"
    })
}

pub fn supplier(model: &Value) -> Req {
    Req::new("alibaba.base.order.supplier.notify")
        .param("param_flow_suppllier_notify_model", model.to_string())
}

pub fn pay_example() -> Value {
    serde_json::json!({
        "extend": "{}", "biz": "业务标识", "amount": 100, "phone_number": "18072887365",
        "pay_time": 1661766890994i64, "right_code": "flowPacket",
        "idempotent_id": "18072887365_11434434554", "biz_scene": "xx", "title": "流量包",
        "channel_id": 1234, "source": "中国移动", "outer_order_id": "1057706761588580000"
    })
}

pub fn pay(dto: &Value) -> Req {
    Req::new("alibaba.diantao.tripartite.right.pay.notify")
        .param("tripartite_pay_notify_dto", dto.to_string())
}

pub fn opentrade_example() -> Value {
    serde_json::json!({
        "sub_order_no": 212312, "order_no": 12345678, "success": true, "result_code": "0000",
        "result_desc": "订购成功", "req_id": "channel_1212312",
        "ext": "{\"firstChargeAmount\":\"100\",\"firstChargeTime\":\"1704038400000\"}"
    })
}

pub fn opentrade(param0: &Value) -> Req {
    Req::new("taobao.wt.trade.opentrade.resultcallback")
        .session("test-session")
        .param("param0", param0.to_string())
}

pub fn lianbei(biz_order_id: &str) -> Req {
    Req::new("alibaba.alisports.lianbei.order.notice").param("biz_order_id", biz_order_id)
}

/// Replaces every `request_id` value, for snapshots of exact bodies.
pub fn redact(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    if k == "request_id" {
                        (k.clone(), serde_json::json!("[request_id]"))
                    } else {
                        (k.clone(), redact(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// Creates an admin resource, asserting HTTP 200.
pub async fn create(app: &TestApp, resource: &str, body: Value) -> Value {
    let (status, v) = app
        .admin(
            reqwest::Method::POST,
            &format!("/admin/{resource}"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 200, "creating {resource} {body}: {v}");
    v
}
