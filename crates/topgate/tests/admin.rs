//! The admin API's refusals and listings, through HTTP: every refused create answers the exact
//! `{"error": …}` naming the field, with 400 for a bad body and 409 for a taken key, and leaves
//! nothing behind (the trade is not there, or the same key is free for a good body). Runs on
//! SQLite, or on PostgreSQL with `TOPGATE_TEST_DATABASE=postgres`.

mod common;

use common::{create, spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// POSTs `body` to `/admin/{resource}` and asserts the status and the exact error.
async fn refused(app: &TestApp, resource: &str, body: Value, status: u16, error: &str) {
    let (got, answer) = app
        .admin(
            Method::POST,
            &format!("/admin/{resource}"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(
        (got, answer),
        (status, json!({ "error": error })),
        "POST /admin/{resource} {body}"
    );
}

async fn invalid(app: &TestApp, resource: &str, body: Value, message: &str) {
    refused(
        app,
        resource,
        body,
        400,
        &format!("invalid request: {message}"),
    )
    .await;
}

async fn conflict(app: &TestApp, resource: &str, body: Value, message: &str) {
    let error = format!("conflicts with existing data: {message}");
    refused(app, resource, body, 409, &error).await;
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    app.admin(Method::GET, path, None).await
}

/// Asserts that trade `tid` was not stored.
async fn no_trade(app: &TestApp, tid: i64) {
    let (status, answer) = get(app, &format!("/admin/trades/{tid}")).await;
    assert_eq!(
        (status, answer),
        (404, json!({"error": format!("not found: trade {tid}")}))
    );
}

/// Asserts that no app `app_key` was stored.
async fn no_app(app: &TestApp, app_key: &str) {
    let (status, apps) = get(app, "/admin/apps").await;
    assert_eq!(status, 200);
    assert!(
        apps.as_array()
            .unwrap()
            .iter()
            .all(|a| a["app_key"] != app_key),
        "{apps}"
    );
}

/// A valid generic trade of the sandbox seller, buyer and item.
fn trade(tid: i64) -> Value {
    json!({"tid": tid, "kind": "GENERIC", "seller_id": 2000, "buyer_id": 888888,
        "lines": [{"oid": tid + 1, "item_id": 10000, "price": 1, "quantity": 1}]})
}

/// `base` with `patch`'s top-level fields replaced.
fn with(base: Value, patch: Value) -> Value {
    let mut out = base;
    for (k, v) in patch.as_object().unwrap() {
        out[k] = v.clone();
    }
    out
}

#[tokio::test]
async fn references_to_nothing_are_400_naming_the_field_and_value() {
    let app = spawn_app().await;

    let item = json!({"item_id": 50, "seller_id": 42, "title": "t", "price": 1});
    invalid(&app, "items", item.clone(), "seller_id 42 is not a user").await;
    create(&app, "items", with(item, json!({"seller_id": 2000}))).await;

    let store = json!({"store_id": 50, "partner_id": 42, "name": "s"});
    invalid(
        &app,
        "stores",
        store.clone(),
        "partner_id 42 is not a partner",
    )
    .await;
    create(&app, "stores", with(store, json!({"partner_id": 1}))).await;

    let right = json!({"provider_id": 42, "right_code": "r"});
    invalid(
        &app,
        "rights",
        right.clone(),
        "provider_id 42 is not a provider",
    )
    .await;
    create(&app, "rights", with(right, json!({"provider_id": 1}))).await;

    let supplier = json!({"supplier_id": 50, "name": "s", "biz_types": ["30", "99"]});
    invalid(
        &app,
        "suppliers",
        supplier.clone(),
        r#"biz_types "99" is not a biz type"#,
    )
    .await;
    create(
        &app,
        "suppliers",
        with(supplier, json!({"biz_types": ["30"]})),
    )
    .await;

    let tid = 7_000;
    for (patch, message) in [
        (json!({"seller_id": 42}), "seller_id 42 is not a user"),
        (json!({"buyer_id": 43}), "buyer_id 43 is not a user"),
        (
            json!({"lines": [{"oid": 7_001, "item_id": 44, "price": 1, "quantity": 1}]}),
            "line 7001: item_id 44 is not an item",
        ),
        (
            json!({"kind": "CARRIER", "carrier": {"supplier_id": 45, "biz_type": "30"}}),
            "carrier.supplier_id 45 is not a supplier",
        ),
        (
            json!({"kind": "CARRIER", "carrier": {"supplier_id": 1, "biz_type": "99"}}),
            r#"carrier.biz_type "99" is not a biz type"#,
        ),
        (
            json!({"kind": "LIANBEI", "store_sale": {"store_id": 46}}),
            "store_sale.store_id 46 is not a store",
        ),
    ] {
        invalid(&app, "trades", with(trade(tid), patch), message).await;
        no_trade(&app, tid).await;
    }
    create(&app, "trades", trade(tid)).await;

    for (field, message) in [
        ("supplier_id", "supplier_id 42 is not a supplier"),
        ("partner_id", "partner_id 42 is not a partner"),
        ("provider_id", "provider_id 42 is not a provider"),
        ("seller_id", "seller_id 42 is not a user"),
    ] {
        let mut body = json!({"app_key": "bound"});
        body[field] = json!(42);
        invalid(&app, "apps", body, message).await;
        no_app(&app, "bound").await;
    }
    create(&app, "apps", json!({"app_key": "bound", "supplier_id": 1, "partner_id": 1, "provider_id": 1, "seller_id": 2000})).await;

    let session = json!({"app_key": "nobody", "user_id": 2000, "session_key": "s-1"});
    invalid(
        &app,
        "sessions",
        session.clone(),
        r#"app_key "nobody" is not an app"#,
    )
    .await;
    let session = with(session, json!({"app_key": "bound", "user_id": 42}));
    invalid(
        &app,
        "sessions",
        session.clone(),
        "user_id 42 is not a user",
    )
    .await;
    create(&app, "sessions", with(session, json!({"user_id": 2000}))).await;
}

#[tokio::test]
async fn taken_keys_are_409_naming_the_resource_and_key() {
    let app = spawn_app().await;
    let cases = [
        (
            "users",
            json!({"user_id": 888888, "nick": "n"}),
            "user 888888 exists",
        ),
        (
            "users",
            json!({"user_id": 50, "nick": "n", "mobile": "13800000000"}),
            r#"a user with mobile "13800000000" exists"#,
        ),
        (
            "items",
            json!({"item_id": 10000, "seller_id": 2000, "title": "t", "price": 1}),
            "item 10000 exists",
        ),
        (
            "biz-types",
            json!({"code": "30", "name": "n"}),
            r#"biz type "30" exists"#,
        ),
        (
            "suppliers",
            json!({"supplier_id": 1, "name": "n"}),
            "supplier 1 exists",
        ),
        (
            "partners",
            json!({"id": 1, "name": "n"}),
            "partner 1 exists",
        ),
        (
            "stores",
            json!({"store_id": 1, "partner_id": 1, "name": "n"}),
            "store 1 exists",
        ),
        (
            "providers",
            json!({"provider_id": 1, "name": "n"}),
            "provider 1 exists",
        ),
        (
            "rights",
            json!({"provider_id": 1, "right_code": "flowPacket"}),
            r#"right "flowPacket" of provider 1 exists"#,
        ),
        ("trades", trade(8888888), "trade 8888888 exists"),
        ("apps", json!({"app_key": "test"}), r#"app "test" exists"#),
        (
            "sessions",
            json!({"app_key": "other", "user_id": 3000, "session_key": "test-session"}),
            r#"session "test-session" exists"#,
        ),
    ];
    for (resource, body, message) in cases {
        conflict(&app, resource, body, message).await;
    }
    // A line's oid is a key of its own: the new trade is not stored for want of it.
    let mut taken_oid = trade(7_100);
    taken_oid["lines"][0]["oid"] = json!(8888889);
    conflict(&app, "trades", taken_oid, "sub-order 8888889 exists").await;
    no_trade(&app, 7_100).await;
    // The sandbox app and session are as they were.
    let r = app
        .ok(&common::opentrade(&common::opentrade_example()))
        .await;
    assert_eq!(r["result"]["success"], true, "{r}");
}

#[tokio::test]
async fn session_lifetimes_are_bounded_and_never_overflow() {
    let app = spawn_app().await;
    let max = topgate::admin::ops::MAX_TTL_SECS;
    let session = |key: &str, ttl: i64| json!({"app_key": "test", "user_id": 2000, "session_key": key, "ttl_secs": ttl});
    for ttl in [0, -60, max + 1, i64::MAX, i64::MIN] {
        let message = format!("ttl_secs must be 1 to {max} (100 years), not {ttl}");
        invalid(&app, "sessions", session("s-ttl", ttl), &message).await;
    }
    // The key is still free: nothing was stored.
    create(&app, "sessions", session("s-ttl", max)).await;
    create(&app, "sessions", session("s-short", 1)).await;
}

/// A session created without `ttl_secs` lives one day, as one from `topgate session create`
/// without `--ttl-secs` (tests/cli.rs): both take `ops::DEFAULT_TTL_SECS`.
#[tokio::test]
async fn a_session_without_ttl_secs_lives_one_day() {
    let app = spawn_app().await;
    let before = time::OffsetDateTime::now_utc();
    let made = create(
        &app,
        "sessions",
        json!({"app_key": "test", "user_id": 2000, "session_key": "s-default"}),
    )
    .await;
    let after = time::OffsetDateTime::now_utc();
    let expires = top_protocol::timestamp::parse_wall_clock(made["expires_at"].as_str().unwrap())
        .unwrap_or_else(|| panic!("expires_at is a GMT+8 wall clock: {made}"));
    let day = time::Duration::days(1);
    // The wall clock has whole seconds: the expiry may read up to a second before `before + day`.
    assert!(
        expires > before + day - time::Duration::seconds(1) && expires <= after + day,
        "{made}, created between {before} and {after}"
    );
}

#[tokio::test]
async fn trade_amounts_past_64_bits_are_400_naming_the_line() {
    let app = spawn_app().await;
    let line = |oid: i64, price: i64, quantity: i64| json!({"oid": oid, "item_id": 10000, "price": price, "quantity": quantity});
    let product = with(trade(7_200), json!({"lines": [line(7_201, i64::MAX, 2)]}));
    let message = format!("line 7201: price {} × quantity 2 is out of range", i64::MAX);
    invalid(&app, "trades", product, &message).await;
    no_trade(&app, 7_200).await;

    let total = with(
        trade(7_200),
        json!({"lines": [line(7_201, i64::MAX, 1), line(7_202, 1, 1)]}),
    );
    invalid(
        &app,
        "trades",
        total,
        "line 7202: the trade's total_fee is out of range",
    )
    .await;
    no_trade(&app, 7_200).await;

    let mut discounts = trade(7_200);
    discounts["lines"] = json!([line(7_201, 1, 1), line(7_202, 1, 1)]);
    discounts["lines"][0]["discount_fee"] = json!(i64::MAX);
    discounts["lines"][1]["discount_fee"] = json!(1);
    invalid(
        &app,
        "trades",
        discounts,
        "line 7202: the trade's discount_fee is out of range",
    )
    .await;
    no_trade(&app, 7_200).await;

    // The largest amount that fits is stored as given.
    let fits = with(trade(7_200), json!({"lines": [line(7_201, i64::MAX, 1)]}));
    let stored = create(&app, "trades", fits).await;
    assert_eq!(stored["total_fee"], json!(i64::MAX), "{stored}");
}

#[tokio::test]
async fn junk_values_are_400_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (
            "users",
            json!({"user_id": 0, "nick": "n"}),
            "user_id must be positive, not 0",
        ),
        (
            "users",
            json!({"user_id": 60, "nick": "n", "mobil": "1"}),
            "unknown field `mobil`, expected one of `user_id`, `nick`, `mobile`, `is_seller`",
        ),
        // Longer than any key or name of the model, and than PostgreSQL indexes hold.
        (
            "apps",
            json!({"app_key": "k".repeat(2001)}),
            "app_key must be at most 2000 bytes, not 2001",
        ),
        (
            "biz-types",
            json!({"code": "c".repeat(9000), "name": "n"}),
            "code must be at most 2000 bytes, not 9000",
        ),
        (
            "users",
            json!({"user_id": 61, "nick": "n", "mobile": "1".repeat(3000)}),
            "mobile must be at most 2000 bytes, not 3000",
        ),
        // A value of the wrong type: the field is named, the value never shown (it may be a
        // secret given as a number).
        (
            "apps",
            json!({"app_key": "x1", "secret": 12345678901_i64}),
            "secret: invalid type: integer, expected a string",
        ),
        (
            "apps",
            json!({"app_key": "q", "calls_per_second": -1}),
            "calls_per_second: invalid value: integer, expected u32",
        ),
        (
            "sessions",
            json!({"app_key": "test", "user_id": "2000"}),
            "user_id: invalid type: string, expected i64",
        ),
        (
            "trades",
            json!({"tid": 7300, "kind": "GENERIC", "seller_id": 2000, "buyer_id": 888888,
                   "lines": [{"oid": "7301", "item_id": 10000, "price": 1, "quantity": 1}]}),
            "lines[0].oid: invalid type: string, expected i64",
        ),
        (
            "items",
            json!({"item_id": -1, "seller_id": 2000, "title": "t", "price": 1}),
            "item_id must be positive, not -1",
        ),
        (
            "items",
            json!({"item_id": 60, "seller_id": 2000, "title": "", "price": 1}),
            "title must not be empty",
        ),
        (
            "items",
            json!({"item_id": 60, "seller_id": 2000, "title": "t", "price": -1}),
            "price must not be negative, not -1",
        ),
        (
            "biz-types",
            json!({"code": "", "name": "n"}),
            "code must not be empty",
        ),
        (
            "biz-types",
            json!({"code": "60", "name": ""}),
            "name must not be empty",
        ),
        (
            "suppliers",
            json!({"supplier_id": 0, "name": "n"}),
            "supplier_id must be positive, not 0",
        ),
        (
            "suppliers",
            json!({"supplier_id": 60, "name": "n", "biz_types": ["30", "30"]}),
            r#"biz_types lists "30" twice"#,
        ),
        (
            "partners",
            json!({"id": 0, "name": "n"}),
            "id must be positive, not 0",
        ),
        (
            "partners",
            json!({"id": 60, "name": ""}),
            "name must not be empty",
        ),
        (
            "stores",
            json!({"store_id": 60, "partner_id": 1, "name": ""}),
            "name must not be empty",
        ),
        (
            "providers",
            json!({"provider_id": 60, "name": "n", "sources": ["a", ""]}),
            "sources must not hold an empty source",
        ),
        (
            "providers",
            json!({"provider_id": 60, "name": "n", "sources": ["a", "a"]}),
            r#"sources lists "a" twice"#,
        ),
        (
            "rights",
            json!({"provider_id": 1, "right_code": " "}),
            "right_code must not be empty",
        ),
        ("apps", json!({"app_key": ""}), "app_key must not be empty"),
        (
            "apps",
            json!({"app_key": "a60", "secret": ""}),
            "secret must not be empty when given",
        ),
        (
            "apps",
            json!({"app_key": "a60", "methods": ["alibaba.alisports.lianbei.order.notic"]}),
            r#"methods: "alibaba.alisports.lianbei.order.notic" is not a served method"#,
        ),
        (
            "apps",
            json!({"app_key": "a60", "methods": ["taobao.time.get", "taobao.time.get"]}),
            r#"methods lists "taobao.time.get" twice"#,
        ),
        (
            "apps",
            json!({"app_key": "a60", "calls_per_second": 0}),
            "calls_per_second must be at least 1",
        ),
        (
            "sessions",
            json!({"app_key": "test", "user_id": 2000, "session_key": ""}),
            "session_key must not be empty",
        ),
    ];
    for (resource, body, message) in cases {
        invalid(&app, resource, body, message).await;
    }
    no_app(&app, "a60").await;
    no_app(&app, "").await;
    // Each refused key is still free.
    create(
        &app,
        "users",
        json!({"user_id": 60, "nick": "n", "mobile": "60"}),
    )
    .await;
    create(
        &app,
        "items",
        json!({"item_id": 60, "seller_id": 2000, "title": "t", "price": 0}),
    )
    .await;
    create(&app, "biz-types", json!({"code": "60", "name": "n"})).await;
    create(
        &app,
        "suppliers",
        json!({"supplier_id": 60, "name": "n", "biz_types": ["30", "60"]}),
    )
    .await;
    create(&app, "partners", json!({"id": 60, "name": "n"})).await;
    create(
        &app,
        "providers",
        json!({"provider_id": 60, "name": "n", "sources": ["a", "b"]}),
    )
    .await;
    let made = create(
        &app,
        "apps",
        json!({"app_key": "a60", "methods": ["taobao.time.get"], "calls_per_second": 5}),
    )
    .await;
    assert_eq!(made["methods"], json!([["taobao.time.get", 5]]), "{made}");
}

#[tokio::test]
async fn junk_trades_are_400_naming_the_field() {
    let app = spawn_app().await;
    let tid = 7_300;
    let statuses = "WAIT_BUYER_PAY, WAIT_SELLER_SEND_GOODS, WAIT_BUYER_CONFIRM_GOODS, \
                    TRADE_FINISHED, TRADE_CLOSED, TRADE_CLOSED_BY_TAOBAO";
    let line = |patch: Value| {
        let mut l = json!({"oid": 7_301, "item_id": 10000, "price": 1, "quantity": 1});
        for (k, v) in patch.as_object().unwrap() {
            l[k] = v.clone();
        }
        json!({"lines": [l]})
    };
    let cases = [
        (json!({"tid": 0}), "tid must be positive, not 0".to_string()),
        (
            json!({"kind": "OTHER"}),
            r#"kind must be CARRIER, LIANBEI, OPENTRADE or GENERIC, not "OTHER""#.into(),
        ),
        (
            json!({"status": "PAID"}),
            format!(r#"status must be one of {statuses}, not "PAID""#),
        ),
        (
            json!({"kind": "CARRIER"}),
            "a CARRIER trade needs carrier".into(),
        ),
        (
            json!({"kind": "LIANBEI"}),
            "a LIANBEI trade needs store_sale".into(),
        ),
        (
            json!({"store_sale": {"store_id": 1}}),
            "store_sale is for LIANBEI trades, not GENERIC".into(),
        ),
        (
            json!({"kind": "OPENTRADE", "carrier": {"supplier_id": 1, "biz_type": "30"}}),
            "carrier is for CARRIER trades, not OPENTRADE".into(),
        ),
        (
            json!({"open_trade": {}}),
            "open_trade is for OPENTRADE trades, not GENERIC".into(),
        ),
        (
            json!({"lines": []}),
            "a trade needs at least one line".into(),
        ),
        (
            json!({"status": "WAIT_BUYER_PAY", "paid": "2024-01-01 00:00:00"}),
            "paid is given, but a WAIT_BUYER_PAY trade is unpaid".into(),
        ),
        (
            json!({"ended": "2024-01-01 00:00:00"}),
            "ended is given, but a WAIT_SELLER_SEND_GOODS trade has not ended".into(),
        ),
        (
            json!({"created": "yesterday"}),
            r#"created "yesterday" is not yyyy-MM-dd HH:mm:ss"#.into(),
        ),
        // Its derived pay time would be in the year 10000 of GMT+8 (a panic once).
        (
            json!({"created": "9999-12-31 23:59:59"}),
            r#"created "9999-12-31 23:59:59" is past the year 9998"#.into(),
        ),
        (
            json!({"status": "TRADE_FINISHED", "created": "2024-01-01 00:00:00",
                "ended": "9999-01-01 00:00:00"}),
            r#"ended "9999-01-01 00:00:00" is past the year 9998"#.into(),
        ),
        (
            json!({"created": "2024-01-02 00:00:00", "paid": "2024-01-01 00:00:00"}),
            "paid 2024-01-01 00:00:00 is before created 2024-01-02 00:00:00".into(),
        ),
        (
            json!({"status": "TRADE_FINISHED", "created": "2024-01-01 00:00:00",
                "paid": "2024-01-03 00:00:00", "ended": "2024-01-02 00:00:00"}),
            "ended 2024-01-02 00:00:00 is before paid 2024-01-03 00:00:00".into(),
        ),
        (
            json!({"status": "TRADE_CLOSED_BY_TAOBAO", "created": "2024-01-02 00:00:00",
                "ended": "2024-01-01 00:00:00"}),
            "ended 2024-01-01 00:00:00 is before created 2024-01-02 00:00:00".into(),
        ),
        (
            line(json!({"oid": 0})),
            "line 0: oid must be positive, not 0".into(),
        ),
        (
            line(json!({"price": -1})),
            "line 7301: price must not be negative, not -1".into(),
        ),
        (
            line(json!({"quantity": 0})),
            "line 7301: quantity must be at least 1, not 0".into(),
        ),
        (
            line(json!({"discount_fee": -5})),
            "line 7301: discount_fee must not be negative, not -5".into(),
        ),
        (
            json!({"lines": [{"oid": 7_301, "item_id": 10000, "price": 1, "quantity": 1},
                {"oid": 7_301, "item_id": 10000, "price": 1, "quantity": 1}]}),
            "oid 7301 is on two lines".into(),
        ),
        (
            json!({"buyer": 888888}),
            "unknown field `buyer`, expected one of `tid`, `kind`, `seller_id`, `buyer_id`, \
             `status`, `created`, `paid`, `ended`, `lines`, `source`, `out_id`, `carrier`, \
             `store_sale`, `open_trade`"
                .into(),
        ),
    ];
    for (patch, message) in cases {
        invalid(&app, "trades", with(trade(tid), patch), &message).await;
        no_trade(&app, tid).await;
    }
    create(&app, "trades", trade(tid)).await;
}

#[tokio::test]
async fn sinks_refuse_event_types_that_are_never_written() {
    let app = spawn_app().await;
    let sink = |types: Value| {
        json!({"kind": "webhook", "url": "http://127.0.0.1:9/hook",
            "secret": "0123456789abcdef", "event_types": types})
    };
    invalid(
        &app,
        "sinks",
        sink(json!(["trade.status_changed", "trade.created"])),
        r#"unknown event type "trade.created" in event_types; * or trade.status_changed, opentrade.settled, carrier.notified, right_order.created, right_order.status_changed"#,
    )
    .await;
    invalid(
        &app,
        "sinks",
        sink(json!([])),
        "event_types must name at least one type, or * for all",
    )
    .await;
    let mut short_secret = sink(json!(["*"]));
    // 15 characters, 45 bytes: the minimum counts characters.
    short_secret["secret"] = json!("密".repeat(15));
    invalid(
        &app,
        "sinks",
        short_secret,
        "secret must have at least 16 characters",
    )
    .await;
    assert_eq!(get(&app, "/admin/sinks").await, (200, json!([])));
    let (status, listed) = get(&app, "/admin/events?type=trade.created").await;
    assert_eq!(status, 400, "{listed}");
    assert_eq!(
        listed["error"],
        r#"invalid request: unknown event type "trade.created"; one of trade.status_changed, opentrade.settled, carrier.notified, right_order.created, right_order.status_changed"#
    );
    assert_eq!(
        get(&app, "/admin/events?type=trade.status_changed").await.0,
        200
    );
    let made = create(&app, "sinks", sink(json!(["*", "right_order.created"]))).await;
    assert_eq!(made["event_types"], json!(["*", "right_order.created"]));
}

/// Inserts `n` right orders and idempotency records directly (setup only: the listings are
/// what is tested), with ids and keys that do not sort in insertion order.
async fn fill(app: &TestApp, n: i64) {
    app.state
        .store
        .write(move |tx| {
            for k in 0..n {
                let id = 1_000_000 + (k * 7919) % n;
                tx.execute(
                    "INSERT INTO right_orders (order_id, provider_id, app_key, source, outer_order_id, \
                     user_id, open_id, phone, amount, pay_time, status, created_at) \
                     VALUES (?, 1, 'test', 'src', ?, 10001, 'o', 'p', 1, 0, 'PAID', 0)",
                    topgate::args![id, format!("outer-{id}")],
                )?;
                tx.execute(
                    "INSERT INTO idempotency_records (scope, idem_key, request_hash, response_body, created_at) \
                     VALUES (?, ?, 'h', '{}', ?)",
                    topgate::args![format!("scope-{}", id % 3), format!("key-{id}"), n - k],
                )?;
            }
            Ok(())
        })
        .await
        .expect("filled");
}

/// Walks a listing page by page; returns the pages' sizes and every record in order.
async fn walk(
    app: &TestApp,
    first: &str,
    next: impl Fn(&Value) -> String,
) -> (Vec<usize>, Vec<Value>) {
    let (mut sizes, mut all) = (Vec::new(), Vec::new());
    let mut path = first.to_string();
    loop {
        let (status, page) = get(app, &path).await;
        assert_eq!(status, 200, "{path}: {page}");
        let rows = page.as_array().unwrap().clone();
        sizes.push(rows.len());
        let Some(last) = rows.last().cloned() else {
            return (sizes, all);
        };
        all.extend(rows);
        path = next(&last);
    }
}

#[tokio::test]
async fn right_orders_and_idempotency_records_are_listed_a_page_at_a_time() {
    let app = spawn_app().await;
    fill(&app, 1_050).await;

    let (status, page) = get(&app, "/admin/right-orders").await;
    assert_eq!((status, page.as_array().unwrap().len()), (200, 100));
    let (sizes, orders) = walk(&app, "/admin/right-orders?limit=5000", |last| {
        format!(
            "/admin/right-orders?limit=5000&after={}",
            last["order_id"].as_str().unwrap()
        )
    })
    .await;
    assert_eq!(sizes, [1000, 50, 0]);
    let ids: Vec<i64> = orders
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().parse::<i64>().unwrap())
        .collect();
    assert_eq!(ids, (1_000_000..1_001_050).collect::<Vec<_>>());
    let (_, page) = get(&app, "/admin/right-orders?after=1000010&limit=2").await;
    let ids: Vec<&Value> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["order_id"])
        .collect();
    assert_eq!(ids, [&json!("1000011"), &json!("1000012")]);
    for below in ["0", "-3"] {
        let (_, page) = get(&app, &format!("/admin/right-orders?limit={below}")).await;
        assert_eq!(page.as_array().unwrap().len(), 1, "a limit below 1 is 1");
    }

    let (status, page) = get(&app, "/admin/idempotency").await;
    assert_eq!((status, page.as_array().unwrap().len()), (200, 100));
    let (sizes, records) = walk(&app, "/admin/idempotency?limit=400", |last| {
        format!(
            "/admin/idempotency?limit=400&after_scope={}&after_key={}",
            last["scope"].as_str().unwrap(),
            last["idem_key"].as_str().unwrap()
        )
    })
    .await;
    assert_eq!(sizes, [400, 400, 250, 0]);
    let keys: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["scope"].as_str().unwrap().into(),
                r["idem_key"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(keys, sorted, "by scope then key, each once");
    assert_eq!(keys.len(), 1_050);
    let (_, page) = get(&app, "/admin/idempotency?limit=5000").await;
    assert_eq!(page.as_array().unwrap().len(), 1000);

    for (path, error) in [
        (
            "/admin/idempotency?after_scope=scope-1",
            "invalid request: after_scope and after_key go together",
        ),
        (
            "/admin/idempotency?after_key=key-1",
            "invalid request: after_scope and after_key go together",
        ),
        (
            "/admin/idempotency?after=3",
            "Failed to deserialize query string: after: unknown field `after`, expected one of `after_scope`, `after_key`, `limit`",
        ),
        (
            "/admin/right-orders?after=x",
            "Failed to deserialize query string: after: invalid digit found in string",
        ),
    ] {
        assert_eq!(get(&app, path).await, (400, json!({ "error": error })), "{path}");
    }
}

/// Sends a hand-made admin request; answers the status, the `Allow` header and the body.
async fn send_raw(request: reqwest::RequestBuilder) -> (u16, Option<String>, String) {
    let response = request.send().await.expect("admin request");
    let allow = response
        .headers()
        .get("allow")
        .map(|v| v.to_str().expect("ASCII").to_string());
    (
        response.status().as_u16(),
        allow,
        response.text().await.expect("body"),
    )
}

/// Every refusal status the README's admin section names, with the body it says: 401 before
/// anything else, 404 for an unknown record, listing or path,
/// 405 with `Allow`, 413 over `body_limit_bytes`, 415 for a create whose body is not declared
/// JSON (`curl -d` without `-H`), and an empty 404 everywhere when no `admin_token` is set.
#[tokio::test]
async fn each_admin_refusal_answers_the_status_and_body_the_readme_gives() {
    let app = common::spawn_app_with(|s| s.body_limit_bytes = 1024).await;
    let url = |path: &str| format!("{}{path}", app.base);
    let authorized = |method: Method, path: &str| {
        app.http
            .request(method, url(path))
            .bearer_auth(common::ADMIN_TOKEN)
    };
    let error = |text: &str| json!({ "error": text }).to_string();
    let user = r#"{"user_id": 4242, "nick": "n"}"#;

    let unauthorized = error("bad or missing bearer token");
    for request in [
        app.http.get(url("/admin/apps")),
        app.http
            .get(url("/admin/apps"))
            .bearer_auth("not-the-token"),
        app.http
            .get(url("/admin/apps"))
            .basic_auth("admin", Some(common::ADMIN_TOKEN)),
        // A path the API does not have is behind the token too.
        app.http.get(url("/admin/no/such/path")),
        // Before the body is looked at, even one over the limit.
        app.http
            .post(url("/admin/users"))
            .header("content-type", "application/json")
            .body("x".repeat(4096)),
    ] {
        assert_eq!(send_raw(request).await, (401, None, unauthorized.clone()));
    }

    for (path, body) in [
        ("/admin/trades/999", error("not found: trade 999")),
        (
            "/admin/right-orders/999",
            error("not found: right order 999"),
        ),
        ("/admin/sinks/999", error("not found: sink 999")),
        ("/admin/users", error("not found: no listing of users")),
        (
            "/admin/no/such/path",
            error("not found: no admin path /admin/no/such/path"),
        ),
        ("/admin", error("not found: no admin path /admin")),
    ] {
        let got = send_raw(authorized(Method::GET, path)).await;
        assert_eq!(got, (404, None, body), "{path}");
    }

    let (status, allow, body) = send_raw(authorized(Method::DELETE, "/admin/apps")).await;
    assert_eq!((status, body), (405, error("method not allowed")));
    let allow = allow.expect("an Allow header");
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");

    let too_large = authorized(Method::POST, "/admin/users")
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"user_id": 4242, "nick": "{}"}}"#,
            "n".repeat(2000)
        ));
    assert_eq!(
        send_raw(too_large).await,
        (413, None, error("the body is over 1024 bytes"))
    );

    let not_json = error("Expected request with `Content-Type: application/json`");
    for content_type in [None, Some("application/x-www-form-urlencoded")] {
        let mut request = authorized(Method::POST, "/admin/users").body(user);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        assert_eq!(send_raw(request).await, (415, None, not_json.clone()));
    }
    // Nothing was created: the same user is still free.
    let declared = authorized(Method::POST, "/admin/users")
        .header("content-type", "application/json")
        .body(user);
    assert_eq!(send_raw(declared).await.0, 200);

    // Without an admin token the API is off: every admin path is an empty 404, as an unknown
    // path is, whatever the request carries.
    let off = common::spawn_app_with(|s| s.admin_token = None).await;
    for request in [
        off.http
            .get(format!("{}/admin/apps", off.base))
            .bearer_auth(common::ADMIN_TOKEN),
        off.http.get(format!("{}/admin/apps", off.base)),
        off.http
            .post(format!("{}/admin/users", off.base))
            .header("content-type", "application/json")
            .body(user),
    ] {
        assert_eq!(send_raw(request).await, (404, None, String::new()));
    }
}

/// A trade dated ahead of the clock moves at its own latest time rather than back in time: the
/// table's checks (times never decrease) once refused the transition with the database's own
/// text as a 409, different on each backend.
#[tokio::test]
async fn a_trade_dated_ahead_of_the_clock_moves_without_going_back_in_time() {
    let app = spawn_app().await;
    let tid = 7_400;
    let created = "2090-01-01 00:00:00";
    let body = with(
        trade(tid),
        json!({"status": "WAIT_BUYER_PAY", "created": created}),
    );
    let (status, answer) = app.admin(Method::POST, "/admin/trades", Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    for event in ["pay", "consign", "confirm"] {
        let path = format!("/admin/trades/{tid}/{event}");
        let (status, answer) = app.admin(Method::POST, &path, None).await;
        assert_eq!(status, 200, "{event}: {answer}");
    }
    let (_, t) = get(&app, &format!("/admin/trades/{tid}")).await;
    assert_eq!(t["status"], "TRADE_FINISHED", "{t}");
    for time in ["created", "paid", "consigned", "ended"] {
        assert_eq!(t[time], created, "{time}: {t}");
    }
}
