//! `alibaba.base.order.supplier.notify` through real HTTP (domain.md §2.1, §3.3, §3.7, §4).
//!
//! Covers: the seed page example (as written it is refused for its placeholder dates, with real
//! dates it succeeds); every row of the §2.1 error table, shape errors as `error_response` and
//! business refusals in the body; every edge-case row of the §4 `send_good_param` table sent as a
//! shipment on a fresh order; every allowed and refused transition of the fulfilment machine;
//! idempotent replays, conflicting repeats and the notification log; ownership for app `other`;
//! and 200 concurrent identical or conflicting notices. Every refusal is checked to leave the
//! store as it was (the trades involved and the idempotency records).

mod common;

use std::sync::Arc;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use top_protocol::timestamp;

const SANDBOX_ORDER: i64 = 8888888;
const MODEL: &str = "param_flow_suppllier_notify_model";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The bare notice for order `tid`: biz type 30 and the given notify type.
fn model(tid: i64, notify_type: &str) -> Value {
    json!({"biz_type": "30", "notify_type": notify_type, "order_no": tid.to_string()})
}

/// `base` with the fields of `extra` set (a `null` removes the field).
fn with(mut base: Value, extra: Value) -> Value {
    let map = base.as_object_mut().expect("object");
    for (k, v) in extra.as_object().expect("object") {
        if v.is_null() {
            map.remove(k);
        } else {
            map.insert(k.clone(), v.clone());
        }
    }
    base
}

fn ship(tid: i64, send_good_param: &str) -> Value {
    with(model(tid, "1"), json!({"send_good_param": send_good_param}))
}

fn activate(tid: i64, iccid: &str) -> Value {
    with(model(tid, "0"), json!({"iccid": iccid}))
}

fn receipt(tid: i64, received: bool) -> Value {
    with(model(tid, "2"), json!({"receive_status": received}))
}

fn success() -> Value {
    json!({"code": "SUCCESS", "desc": "成功", "model": true, "success": true})
}

/// Milliseconds of a GMT+8 wall-clock time, as the store keeps them.
fn gmt8_ms(wall: &str) -> i64 {
    let at = timestamp::parse_wall_clock(wall).expect("wall-clock time");
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).expect("fits")
}

fn carrier_trade(tid: i64, quantity: i64, status: &str, supplier_id: i64, biz_type: &str) -> Value {
    json!({"tid": tid, "kind": "CARRIER", "seller_id": 2000, "buyer_id": 888888, "status": status,
        "lines": [{"oid": tid + 90_000_000, "item_id": 20000, "price": 5000, "quantity": quantity}],
        "carrier": {"supplier_id": supplier_id, "biz_type": biz_type}})
}

async fn admin_ok(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, v) = app.admin(Method::POST, path, Some(body)).await;
    assert_eq!(status, 200, "admin {path}: {v}");
    v
}

/// A fresh carrier order of supplier 1, biz type 30, waiting for shipment.
async fn new_order(app: &TestApp, tid: i64, quantity: i64) {
    new_order_in(app, tid, quantity, "WAIT_SELLER_SEND_GOODS").await;
}

async fn new_order_in(app: &TestApp, tid: i64, quantity: i64, status: &str) {
    admin_ok(
        app,
        "/admin/trades",
        carrier_trade(tid, quantity, status, 1, "30"),
    )
    .await;
}

/// Moves a trade along an admin edge (pay, cancel, consign, confirm, refund).
async fn trade_event(app: &TestApp, tid: i64, event: &str) {
    admin_ok(app, &format!("/admin/trades/{tid}/{event}"), json!({})).await;
}

/// A second supplier with its own app (`key`/`key`), for biz types supplier 1 does not have.
async fn new_supplier(app: &TestApp, supplier_id: i64, biz_types: Value, key: &str) {
    admin_ok(
        app,
        "/admin/suppliers",
        json!({"supplier_id": supplier_id, "name": format!("运营商{supplier_id}"), "biz_types": biz_types}),
    )
    .await;
    admin_ok(
        app,
        "/admin/apps",
        json!({"app_key": key, "secret": key, "name": key, "supplier_id": supplier_id}),
    )
    .await;
}

/// The trades named plus the idempotency records: what a refusal must leave untouched.
async fn snapshot(app: &TestApp, tids: &[i64]) -> Value {
    let mut trades = Vec::new();
    for tid in tids {
        trades.push(app.trade(*tid).await);
    }
    json!({"trades": trades, "idempotency": app.idempotency().await})
}

/// Sends `req` and expects the success `CommonResult`.
async fn accept(app: &TestApp, req: &Req) {
    let r = app.ok(req).await;
    assert_eq!(r["result"], success(), "{r}");
}

/// Sends `req`, expects an in-body refusal with `code`, and checks that nothing changed.
async fn refused(app: &TestApp, req: &Req, tids: &[i64], code: &str) {
    let before = snapshot(app, tids).await;
    let r = app.ok(req).await;
    let result = &r["result"];
    assert_eq!(result["code"], code, "{r}");
    assert_eq!(result["success"], false, "{r}");
    assert_eq!(result["model"], false, "{r}");
    assert!(
        result["desc"].as_str().is_some_and(|d| !d.is_empty()),
        "{r}"
    );
    assert_eq!(
        snapshot(app, tids).await,
        before,
        "refusal {code} changed the store"
    );
}

/// Sends `req`, expects a code-50 `error_response` with `sub_code` whose sub_msg names `field`,
/// and checks that nothing changed.
async fn shape_error(app: &TestApp, req: &Req, tids: &[i64], sub_code: &str, field: &str) {
    let before = snapshot(app, tids).await;
    let e = app.error(req).await;
    assert_eq!(e["code"], 50, "{e}");
    assert_eq!(e["sub_code"], sub_code, "{e}");
    let sub_msg = e["sub_msg"].as_str().unwrap_or_default();
    assert!(sub_msg.starts_with("非法参数"), "{e}");
    assert!(sub_msg.contains(field), "sub_msg should name {field}: {e}");
    assert_eq!(
        snapshot(app, tids).await,
        before,
        "error {sub_code} changed the store"
    );
}

fn fulfilment(trade: &Value) -> &Value {
    &trade["fulfilment"]
}

/// The cards of a trade, sorted by tag.
fn cards(trade: &Value) -> Vec<Value> {
    let mut cards = trade["cards"].as_array().cloned().unwrap_or_default();
    cards.sort_by_key(|c| c["tag"].as_i64());
    cards
}

fn notifications(trade: &Value) -> Vec<Value> {
    trade["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A strict-mode ICCID: `prefix` plus its Luhn check digit.
fn luhn_complete(prefix: &str) -> String {
    let sum: u32 = prefix
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    format!("{prefix}{}", (10 - sum % 10) % 10)
}

// ---------------------------------------------------------------------------------------------
// 1. The seed page example
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn seed_example_as_written_is_refused_for_its_placeholder_dates() {
    let app = spawn_app().await;
    let as_written = with(
        supplier_example(),
        json!({"offer_invalid_date": "yyyy-MM-dd HH:mm:ss", "offer_valid_date": "yyyy-MM-dd HH:mm:ss"}),
    );
    let before = snapshot(&app, &[SANDBOX_ORDER]).await;
    let e = app.error(&supplier(&as_written)).await;
    assert_eq!(e["code"], 50, "{e}");
    assert_eq!(e["msg"], "Remote service error", "{e}");
    assert_eq!(e["sub_code"], "isv.invalid-parameter", "{e}");
    let sub_msg = e["sub_msg"].as_str().unwrap_or_default();
    assert!(sub_msg.starts_with("非法参数"), "{e}");
    assert!(
        sub_msg.contains("offer_invalid_date") || sub_msg.contains("offer_valid_date"),
        "{e}"
    );
    assert!(e["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(snapshot(&app, &[SANDBOX_ORDER]).await, before);

    // Only one of the two placeholders: the error names that one.
    for field in ["offer_invalid_date", "offer_valid_date"] {
        let one = with(supplier_example(), json!({ field: "yyyy-MM-dd HH:mm:ss" }));
        shape_error(
            &app,
            &supplier(&one),
            &[SANDBOX_ORDER],
            "isv.invalid-parameter",
            &format!("{MODEL}.{field}"),
        )
        .await;
    }
}

#[tokio::test]
async fn seed_example_with_real_dates_succeeds_and_ships_both_cards() {
    let app = spawn_app().await;
    let v = app.send_json(&supplier(&supplier_example())).await;
    let body = &v["alibaba_base_order_supplier_notify_response"];
    assert_eq!(body["result"], success(), "{v}");

    let t = app.trade(SANDBOX_ORDER).await;
    assert_eq!(t["status"], "WAIT_BUYER_CONFIRM_GOODS", "{t}");
    assert!(t["consigned"].is_string(), "consign time set: {t}");
    let f = fulfilment(&t);
    assert_eq!(f["status"], "SHIPPED", "{t}");
    assert_eq!(f["out_order_no"], "88888888", "{t}");
    assert_eq!(f["exception"], 0, "{t}");
    let deadline = gmt8_ms("2018-09-09 12:33:00");
    let cards = cards(&t);
    assert_eq!(cards.len(), 2, "{t}");
    for (card, (iccid, tag)) in cards.iter().zip([("888", 1), ("999", 2)]) {
        assert_eq!(card["iccid"], iccid, "{t}");
        assert_eq!(card["tag"], tag, "{t}");
        assert_eq!(card["activate_deadline"], deadline, "{t}");
        // 2018 is in the past: accepted, flagged.
        assert_eq!(card["deadline_passed"], 1, "{t}");
        assert_eq!(card["status"], "SHIPPED", "{t}");
    }
    // The top-level iccid of a shipment is stored as given, not cross-checked (Decisions).
    let log = notifications(&t);
    assert_eq!(log.len(), 1, "{t}");
    assert_eq!(log[0]["notify_type"], "1");
    let payload: Value = serde_json::from_str(log[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["iccid"], "888888888", "{payload}");
    assert_eq!(payload["ext_info"], "<\"key\", \"value\">", "{payload}");
    assert!(!cards.iter().any(|c| c["iccid"] == "888888888"));

    // Sent again: an idempotent replay.
    accept(&app, &supplier(&supplier_example())).await;
    assert_eq!(app.trade(SANDBOX_ORDER).await, t);
}

// ---------------------------------------------------------------------------------------------
// 2. The §2.1 error table: shape errors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn missing_parameters_are_isv_missing_parameter() {
    let app = spawn_app().await;
    let t = &[SANDBOX_ORDER];
    // The outer object parameter: absent, or empty.
    let absent = supplier(&supplier_example()).without(MODEL);
    shape_error(&app, &absent, t, "isv.missing-parameter", MODEL).await;
    let empty = supplier(&supplier_example()).param(MODEL, "");
    shape_error(&app, &empty, t, "isv.missing-parameter", MODEL).await;
    // Each required inner field: absent, null or empty.
    for field in ["biz_type", "notify_type", "order_no"] {
        for missing in [Value::Null, json!("")] {
            let mut m = supplier_example();
            if missing.is_null() {
                m.as_object_mut().unwrap().remove(field);
            } else {
                m[field] = missing;
            }
            shape_error(
                &app,
                &supplier(&m),
                t,
                "isv.missing-parameter",
                &format!("{MODEL}.{field}"),
            )
            .await;
        }
    }
}

#[tokio::test]
async fn malformed_fields_are_isv_invalid_parameter() {
    let app = spawn_app().await;
    let t = &[SANDBOX_ORDER];
    let base = supplier_example;
    let cases: Vec<(&str, Value)> = vec![
        // The outer parameter is not a JSON object.
        (MODEL, Value::Null),
        // Non-numeric / out-of-range order_no.
        ("order_no", with(base(), json!({"order_no": "88888a8"}))),
        ("order_no", with(base(), json!({"order_no": "-8888888"}))),
        ("order_no", with(base(), json!({"order_no": "0"}))),
        ("order_no", with(base(), json!({"order_no": "+8888888"}))),
        (
            "order_no",
            with(base(), json!({"order_no": "88888888888888888888"})),
        ),
        (
            "order_no",
            with(base(), json!({"order_no": "9999999999999999999"})),
        ),
        // Unknown notify_type.
        ("notify_type", with(base(), json!({"notify_type": "3"}))),
        ("notify_type", with(base(), json!({"notify_type": "01"}))),
        (
            "notify_type",
            with(base(), json!({"notify_type": "activation"})),
        ),
        // biz_type not digits.
        ("biz_type", with(base(), json!({"biz_type": "abc"}))),
        (
            "biz_type",
            with(base(), json!({"biz_type": "12345678901234567"})),
        ),
        // Bad dates.
        (
            "offer_valid_date",
            with(base(), json!({"offer_valid_date": "2018-02-30 00:00:00"})),
        ),
        (
            "offer_valid_date",
            with(base(), json!({"offer_valid_date": "2018-09-09"})),
        ),
        (
            "offer_invalid_date",
            with(base(), json!({"offer_invalid_date": "2019-09-09T12:33:00"})),
        ),
        (
            "offer_invalid_date",
            with(base(), json!({"offer_invalid_date": "2019-09-09 24:00:00"})),
        ),
        // Bad top-level ICCID (lenient mode: 1-20 ASCII digits).
        ("iccid", with(base(), json!({"iccid": "88888888a"}))),
        (
            "iccid",
            with(base(), json!({"iccid": "123456789012345678901"})),
        ),
        ("iccid", with(base(), json!({"iccid": "８８８"}))),
        // Bad send_good_param.
        (
            "send_good_param",
            with(
                base(),
                json!({"send_good_param": "iccid=888|TB1;invalidDate"}),
            ),
        ),
        // Type 1 without send_good_param (absent, empty, whitespace only).
        (
            "send_good_param",
            with(base(), json!({"send_good_param": null})),
        ),
        (
            "send_good_param",
            with(base(), json!({"send_good_param": ""})),
        ),
        (
            "send_good_param",
            with(base(), json!({"send_good_param": "   "})),
        ),
        // Type 2 without (or with a non-boolean) receive_status.
        ("receive_status", with(model(SANDBOX_ORDER, "2"), json!({}))),
        (
            "receive_status",
            with(
                model(SANDBOX_ORDER, "2"),
                json!({"receive_status": "maybe"}),
            ),
        ),
        (
            "receive_status",
            with(model(SANDBOX_ORDER, "2"), json!({"receive_status": 1})),
        ),
        // Other malformed optional fields.
        ("user_id", with(base(), json!({"user_id": "88x888"}))),
        (
            "out_order_no",
            with(base(), json!({"out_order_no": "8888 8888"})),
        ),
        (
            "out_order_no",
            with(base(), json!({"out_order_no": "x".repeat(65)})),
        ),
        (
            "ext_info",
            with(base(), json!({"ext_info": "x".repeat(4001)})),
        ),
    ];
    for (field, m) in cases {
        let req = if m.is_null() {
            supplier(&base()).param(MODEL, "[1, 2]")
        } else {
            supplier(&m)
        };
        let path = if field == MODEL {
            MODEL.to_string()
        } else {
            format!("{MODEL}.{field}")
        };
        shape_error(&app, &req, t, "isv.invalid-parameter", &path).await;
    }
    // The unknown notify_type says so.
    let e = app
        .error(&supplier(&with(base(), json!({"notify_type": "9"}))))
        .await;
    assert!(
        e["sub_msg"]
            .as_str()
            .is_some_and(|m| m.contains("notify_type not supported")),
        "{e}"
    );
    // A send_good_param over its limit is named once, by its path.
    let e = app
        .error(&supplier(&with(
            base(),
            json!({"send_good_param": "x".repeat(4001)}),
        )))
        .await;
    let sub_msg = e["sub_msg"].as_str().unwrap_or_default();
    assert!(
        sub_msg.ends_with(&format!(
            "{MODEL}.send_good_param too long: 4001 chars, max 4000"
        )),
        "{e}"
    );
    assert_eq!(sub_msg.matches("send_good_param").count(), 1, "{e}");
    // A document that is no JSON at all says why, rather than that it is not an object: here
    // a number too large for any JSON reader.
    let huge = format!(r#"{{"order_no":1{},"notify_type":"0"}}"#, "0".repeat(400));
    for (raw, reason) in [
        (huge.as_str(), "is not valid JSON: number out of range"),
        ("{\"order_no\":", "is not valid JSON: EOF while parsing"),
        ("[1, 2]", "is not a JSON object"),
    ] {
        let e = app.error(&supplier(&base()).param(MODEL, raw)).await;
        let sub_msg = e["sub_msg"].as_str().unwrap_or_default();
        assert!(sub_msg.contains(&format!("{MODEL} {reason}")), "{e}");
    }
}

#[tokio::test]
async fn strict_iccid_mode_checks_length_prefix_and_luhn() {
    let app = spawn_app_with(|s| s.iccid_strict = true).await;
    new_order(&app, 700_001, 1).await;
    let good = luhn_complete("898600123456789012");
    assert_eq!(good.len(), 19);
    let mut bad_luhn = good.clone();
    let last = bad_luhn.pop().unwrap();
    bad_luhn.push(if last == '0' { '1' } else { '0' });
    for bad in ["888", &bad_luhn, &luhn_complete("123456789012345678")] {
        let sgp = format!("iccid={bad}|TB1");
        shape_error(
            &app,
            &supplier(&ship(700_001, &sgp)),
            &[700_001],
            "isv.invalid-parameter",
            "send_good_param",
        )
        .await;
        shape_error(
            &app,
            &supplier(&activate(700_001, bad)),
            &[700_001],
            "isv.invalid-parameter",
            &format!("{MODEL}.iccid"),
        )
        .await;
    }
    accept(&app, &supplier(&ship(700_001, &format!("iccid={good}")))).await;
    accept(&app, &supplier(&activate(700_001, &good))).await;
    let t = app.trade(700_001).await;
    assert_eq!(cards(&t)[0]["iccid"], good.as_str());
    assert_eq!(cards(&t)[0]["status"], "ACTIVATED");
}

// ---------------------------------------------------------------------------------------------
// 2. The §2.1 error table: business refusals in the body
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn order_not_found() {
    let app = spawn_app().await;
    for nt in ["0", "1", "2"] {
        let m = with(
            model(424_242, nt),
            json!({"iccid": "111", "send_good_param": "iccid=111", "receive_status": true}),
        );
        refused(&app, &supplier(&m), &[SANDBOX_ORDER], "ORDER_NOT_FOUND").await;
        // A trade that exists but is not a carrier order (the lianbei sandbox trade).
        let m = with(m, json!({"order_no": "1000"}));
        refused(&app, &supplier(&m), &[1000], "ORDER_NOT_FOUND").await;
    }
}

#[tokio::test]
async fn no_permission_for_an_order_of_another_supplier() {
    let app = spawn_app().await;
    new_supplier(&app, 2, json!(["30"]), "sup2").await;
    admin_ok(
        &app,
        "/admin/trades",
        carrier_trade(700_010, 1, "WAIT_SELLER_SEND_GOODS", 2, "30"),
    )
    .await;
    // App `test` (supplier 1) on supplier 2's order.
    let m = ship(700_010, "iccid=111");
    refused(&app, &supplier(&m), &[700_010], "NO_PERMISSION").await;
    // Supplier 2 on its own order: fine; on the sandbox order: refused.
    accept(&app, &supplier(&m).app("sup2", "sup2")).await;
    refused(
        &app,
        &supplier(&supplier_example()).app("sup2", "sup2"),
        &[SANDBOX_ORDER],
        "NO_PERMISSION",
    )
    .await;
}

#[tokio::test]
async fn biz_type_not_supported() {
    let app = spawn_app().await;
    // A biz type of the registry that supplier 1 does not have, an unknown one, and one that
    // supplier 1 has but that is disabled.
    admin_ok(
        &app,
        "/admin/biz-types",
        json!({"code": "41", "name": "停用业务", "enabled": false}),
    )
    .await;
    new_supplier(&app, 3, json!(["30", "41"]), "sup3").await;
    admin_ok(
        &app,
        "/admin/trades",
        carrier_trade(700_020, 1, "WAIT_SELLER_SEND_GOODS", 3, "41"),
    )
    .await;
    for nt in ["0", "1", "2"] {
        for code in ["7", "99"] {
            let m = with(
                supplier_example(),
                json!({"biz_type": code, "notify_type": nt, "iccid": "888"}),
            );
            refused(
                &app,
                &supplier(&m),
                &[SANDBOX_ORDER],
                "BIZ_TYPE_NOT_SUPPORTED",
            )
            .await;
        }
        let m = with(
            model(700_020, nt),
            json!({"biz_type": "41", "iccid": "111", "send_good_param": "iccid=111", "receive_status": true}),
        );
        refused(
            &app,
            &supplier(&m).app("sup3", "sup3"),
            &[700_020],
            "BIZ_TYPE_NOT_SUPPORTED",
        )
        .await;
    }
}

#[tokio::test]
async fn biz_type_mismatch() {
    let app = spawn_app().await;
    new_supplier(&app, 4, json!(["30", "7"]), "sup4").await;
    admin_ok(
        &app,
        "/admin/trades",
        carrier_trade(700_030, 1, "WAIT_SELLER_SEND_GOODS", 4, "7"),
    )
    .await;
    for nt in ["0", "1", "2"] {
        let m = with(
            model(700_030, nt),
            json!({"iccid": "111", "send_good_param": "iccid=111", "receive_status": true}),
        );
        refused(
            &app,
            &supplier(&m).app("sup4", "sup4"),
            &[700_030],
            "BIZ_TYPE_MISMATCH",
        )
        .await;
    }
    // With the order's own biz type it goes through.
    accept(
        &app,
        &supplier(&with(ship(700_030, "iccid=111"), json!({"biz_type": "7"}))).app("sup4", "sup4"),
    )
    .await;
    assert_eq!(fulfilment(&app.trade(700_030).await)["status"], "SHIPPED");
}

#[tokio::test]
async fn order_status_invalid_for_unpaid_and_closed_trades() {
    let app = spawn_app().await;
    // Unpaid, closed by Taobao (cancelled before payment), closed (refunded after payment).
    new_order_in(&app, 700_040, 2, "WAIT_BUYER_PAY").await;
    new_order_in(&app, 700_041, 2, "WAIT_BUYER_PAY").await;
    trade_event(&app, 700_041, "cancel").await;
    new_order(&app, 700_042, 2).await;
    trade_event(&app, 700_042, "refund").await;
    new_order_in(&app, 700_043, 2, "TRADE_CLOSED").await;
    for tid in [700_040, 700_041, 700_042, 700_043] {
        refused(
            &app,
            &supplier(&receipt(tid, true)),
            &[tid],
            "ORDER_STATUS_INVALID",
        )
        .await;
        refused(
            &app,
            &supplier(&receipt(tid, false)),
            &[tid],
            "ORDER_STATUS_INVALID",
        )
        .await;
        refused(
            &app,
            &supplier(&ship(tid, "iccid=111|TB1,222|TB2")),
            &[tid],
            "ORDER_STATUS_INVALID",
        )
        .await;
        refused(
            &app,
            &supplier(&activate(tid, "111")),
            &[tid],
            "ORDER_STATUS_INVALID",
        )
        .await;
    }
    // A shipped trade refunded afterwards: activation is refused.
    new_order(&app, 700_044, 1).await;
    accept(&app, &supplier(&ship(700_044, "iccid=444"))).await;
    trade_event(&app, 700_044, "refund").await;
    refused(
        &app,
        &supplier(&activate(700_044, "444")),
        &[700_044],
        "ORDER_STATUS_INVALID",
    )
    .await;
    // Shipment after activation.
    new_order(&app, 700_045, 1).await;
    accept(&app, &supplier(&activate(700_045, "455"))).await;
    refused(
        &app,
        &supplier(&ship(700_045, "iccid=456")),
        &[700_045],
        "ORDER_STATUS_INVALID",
    )
    .await;
}

#[tokio::test]
async fn user_mismatch() {
    let app = spawn_app().await;
    for nt in ["0", "1", "2"] {
        let m = with(
            supplier_example(),
            json!({"notify_type": nt, "user_id": "999999", "iccid": "888"}),
        );
        refused(&app, &supplier(&m), &[SANDBOX_ORDER], "USER_MISMATCH").await;
    }
    // The buyer's id, as a string or a number, is accepted.
    let m = with(supplier_example(), json!({"user_id": 888888}));
    accept(&app, &supplier(&m)).await;
}

#[tokio::test]
async fn out_order_no_mismatch_and_duplicate() {
    let app = spawn_app().await;
    new_order(&app, 700_050, 1).await;
    new_order(&app, 700_051, 1).await;
    let bind = with(receipt(700_050, true), json!({"out_order_no": "OUT-A"}));
    accept(&app, &supplier(&bind)).await;
    assert_eq!(
        fulfilment(&app.trade(700_050).await)["out_order_no"],
        "OUT-A"
    );
    // The bound order with another value.
    for m in [
        with(ship(700_050, "iccid=501"), json!({"out_order_no": "OUT-B"})),
        with(receipt(700_050, false), json!({"out_order_no": "OUT-B"})),
    ] {
        refused(&app, &supplier(&m), &[700_050], "OUT_ORDER_NO_MISMATCH").await;
    }
    // Another order of the same supplier with the bound value.
    for m in [
        with(ship(700_051, "iccid=511"), json!({"out_order_no": "OUT-A"})),
        with(receipt(700_051, true), json!({"out_order_no": "OUT-A"})),
        with(activate(700_051, "511"), json!({"out_order_no": "OUT-A"})),
    ] {
        refused(
            &app,
            &supplier(&m),
            &[700_050, 700_051],
            "OUT_ORDER_NO_DUPLICATE",
        )
        .await;
    }
    // The same value again on the bound order, and an absent one, are fine.
    accept(
        &app,
        &supplier(&with(
            ship(700_050, "iccid=501"),
            json!({"out_order_no": "OUT-A"}),
        )),
    )
    .await;
    // Unique per supplier only: supplier 2 may use OUT-A.
    new_supplier(&app, 2, json!(["30"]), "sup2").await;
    admin_ok(
        &app,
        "/admin/trades",
        carrier_trade(700_052, 1, "WAIT_SELLER_SEND_GOODS", 2, "30"),
    )
    .await;
    let m = with(receipt(700_052, true), json!({"out_order_no": "OUT-A"}));
    accept(&app, &supplier(&m).app("sup2", "sup2")).await;
    assert_eq!(
        fulfilment(&app.trade(700_052).await)["out_order_no"],
        "OUT-A"
    );
}

#[tokio::test]
async fn iccid_not_match_and_already_used() {
    let app = spawn_app().await;
    new_order(&app, 700_060, 2).await;
    new_order(&app, 700_061, 2).await;
    new_order(&app, 700_062, 1).await;
    accept(&app, &supplier(&ship(700_060, "iccid=601|TB1,602|TB2"))).await;
    accept(&app, &supplier(&ship(700_061, "iccid=611|TB1,612|TB2"))).await;
    let all = &[700_060, 700_061, 700_062];
    // Activation of an ICCID that is not on the order (unknown, or another order's card).
    refused(
        &app,
        &supplier(&activate(700_060, "699")),
        all,
        "ICCID_NOT_MATCH",
    )
    .await;
    refused(
        &app,
        &supplier(&activate(700_060, "611")),
        all,
        "ICCID_NOT_MATCH",
    )
    .await;
    // Without ICCID on an order with two cards, or with none: no card can be identified.
    let no_iccid = model(700_060, "0");
    refused(&app, &supplier(&no_iccid), all, "ICCID_NOT_MATCH").await;
    refused(
        &app,
        &supplier(&model(700_062, "0")),
        all,
        "ICCID_NOT_MATCH",
    )
    .await;
    // Shipping or implicitly creating a card whose ICCID belongs to another order.
    refused(
        &app,
        &supplier(&ship(700_062, "iccid=601")),
        all,
        "ICCID_ALREADY_USED",
    )
    .await;
    refused(
        &app,
        &supplier(&activate(700_062, "612")),
        all,
        "ICCID_ALREADY_USED",
    )
    .await;
    // One used ICCID among fresh ones refuses the whole shipment.
    new_order(&app, 700_063, 2).await;
    refused(
        &app,
        &supplier(&ship(700_063, "iccid=631|TB1,602|TB2")),
        &[700_060, 700_063],
        "ICCID_ALREADY_USED",
    )
    .await;
}

#[tokio::test]
async fn card_count_exceeded() {
    let app = spawn_app().await;
    new_order(&app, 700_070, 2).await;
    new_order(&app, 700_071, 1).await;
    let t = &[700_070, 700_071];
    refused(
        &app,
        &supplier(&ship(700_070, "iccid=701|TB1,702|TB2,703|TB3")),
        t,
        "CARD_COUNT_EXCEEDED",
    )
    .await;
    // A single card whose tag number is above the quantity.
    refused(
        &app,
        &supplier(&ship(700_070, "iccid=701|TB3")),
        t,
        "CARD_COUNT_EXCEEDED",
    )
    .await;
    refused(
        &app,
        &supplier(&ship(700_071, "iccid=711|TB2")),
        t,
        "CARD_COUNT_EXCEEDED",
    )
    .await;
    refused(
        &app,
        &supplier(&ship(700_071, "iccid=711|TB1,712|TB2")),
        t,
        "CARD_COUNT_EXCEEDED",
    )
    .await;
    // Exactly the quantity is fine.
    accept(&app, &supplier(&ship(700_070, "iccid=701|TB1,702|TB2"))).await;
    accept(&app, &supplier(&ship(700_071, "iccid=711|TB1"))).await;
}

#[tokio::test]
async fn notify_conflict_for_a_different_shipment_or_activation() {
    let app = spawn_app().await;
    new_order(&app, 700_080, 2).await;
    accept(&app, &supplier(&ship(700_080, "iccid=801|TB1,802|TB2"))).await;
    for sgp in [
        "iccid=801|TB1",
        "iccid=803|TB1,804|TB2",
        "iccid=801|TB1,802|TB2;x=1",
    ] {
        refused(
            &app,
            &supplier(&ship(700_080, sgp)),
            &[700_080],
            "NOTIFY_CONFLICT",
        )
        .await;
    }
    let first = with(
        activate(700_080, "801"),
        json!({"offer_valid_date": "2030-01-01 00:00:00", "offer_invalid_date": "2031-01-01 00:00:00"}),
    );
    accept(&app, &supplier(&first)).await;
    for change in [
        json!({"offer_valid_date": "2030-02-01 00:00:00"}),
        json!({"offer_invalid_date": null}),
        json!({"ext_info": "again"}),
        json!({"out_order_no": "X1"}),
    ] {
        refused(
            &app,
            &supplier(&with(first.clone(), change)),
            &[700_080],
            "NOTIFY_CONFLICT",
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. The §4 send_good_param edge cases, each as a shipment on a fresh order
// ---------------------------------------------------------------------------------------------

/// Ships `sgp` on a fresh order of `quantity` and returns the created cards as
/// `(iccid, tag, deadline ms or null, deadline_passed)`.
async fn shipped_cards(app: &TestApp, tid: i64, quantity: i64, sgp: &str) -> Vec<Value> {
    new_order(app, tid, quantity).await;
    accept(app, &supplier(&ship(tid, sgp))).await;
    let t = app.trade(tid).await;
    assert_eq!(fulfilment(&t)["status"], "SHIPPED", "{sgp}: {t}");
    assert_eq!(t["status"], "WAIT_BUYER_CONFIRM_GOODS", "{sgp}: {t}");
    cards(&t)
        .iter()
        .map(|c| {
            json!([
                c["iccid"],
                c["tag"],
                c["activate_deadline"],
                c["deadline_passed"]
            ])
        })
        .collect()
}

#[tokio::test]
async fn send_good_param_accepted_edge_cases_create_the_right_cards() {
    let app = spawn_app().await;
    let future = gmt8_ms("2030-01-01 10:00:00");
    let end_of_day = gmt8_ms("2030-01-01 23:59:59");
    let with_secs = gmt8_ms("2030-01-01 10:00:30");
    let cases: Vec<(&str, i64, Vec<Value>)> = vec![
        // Leading/trailing spaces around tokens.
        (
            " iccid = 111 | TB1 , 112 | TB2 ; invalidDate = 20300101$10:00 | TB1 ",
            2,
            vec![json!(["111", 1, future, 0]), json!(["112", 2, null, 0])],
        ),
        // Trailing `;` and `,`, empty sections.
        (
            ";;iccid=121|TB1,122|TB2,;;invalidDate=20300101$10:00|TB2,;",
            2,
            vec![json!(["121", 1, null, 0]), json!(["122", 2, future, 0])],
        ),
        // Unknown keys kept verbatim, not validated.
        (
            "iccid=131|TB1;carrier=中国移动|x,y=z;note=",
            1,
            vec![json!(["131", 1, null, 0])],
        ),
        // A single untagged entry is TB1 (in both sections).
        (
            "iccid=141;invalidDate=20300101$10:00",
            1,
            vec![json!(["141", 1, future, 0])],
        ),
        // A tag in iccid without invalidDate: deadline unknown.
        (
            "iccid=151|TB1,152|TB2;invalidDate=20300101$10:00|TB2",
            2,
            vec![json!(["151", 1, null, 0]), json!(["152", 2, future, 0])],
        ),
        // invalidDate without `$time`: end of that day.
        (
            "iccid=161|TB1;invalidDate=20300101|TB1",
            1,
            vec![json!(["161", 1, end_of_day, 0])],
        ),
        // Seconds are optional but accepted.
        (
            "iccid=171;invalidDate=20300101$10:00:30",
            1,
            vec![json!(["171", 1, with_secs, 0])],
        ),
        // A deadline already past: accepted, flagged.
        (
            "iccid=181|TB1,182|TB2;invalidDate=20180909$12:33|TB1,20300101|TB2",
            2,
            vec![
                json!(["181", 1, gmt8_ms("2018-09-09 12:33:00"), 1]),
                json!(["182", 2, end_of_day, 0]),
            ],
        ),
        // Tags need not start at 1 nor be listed in order; 20-digit ICCIDs are fine.
        (
            "iccid=19999999999999999999|TB2",
            2,
            vec![json!(["19999999999999999999", 2, null, 0])],
        ),
    ];
    for (i, (sgp, quantity, expected)) in cases.into_iter().enumerate() {
        let tid = 710_000 + i64::try_from(i).unwrap();
        let got = shipped_cards(&app, tid, quantity, sgp).await;
        assert_eq!(got, expected, "send_good_param {sgp:?}");
        // The raw string is kept in the notification log.
        let log = notifications(&app.trade(tid).await);
        let payload: Value = serde_json::from_str(log[0]["payload"].as_str().unwrap()).unwrap();
        assert_eq!(payload["send_good_param"], sgp);
    }
}

#[tokio::test]
async fn send_good_param_passes_through_form_encoding_once() {
    let app = spawn_app().await;
    // The form layer decodes `|` `$` `;` `=` (sent percent-encoded by the client): the seed
    // example above already relies on it. A value encoded twice reaches the parser with `%7C`.
    new_order(&app, 711_000, 1).await;
    shape_error(
        &app,
        &supplier(&ship(711_000, "iccid=111%7CTB1")),
        &[711_000],
        "isv.invalid-parameter",
        "send_good_param",
    )
    .await;
    accept(
        &app,
        &supplier(&ship(711_000, "iccid=111|TB1;invalidDate=20300101$10:00")),
    )
    .await;
    assert_eq!(
        cards(&app.trade(711_000).await)[0]["activate_deadline"],
        gmt8_ms("2030-01-01 10:00:00")
    );
}

#[tokio::test]
async fn send_good_param_rejected_edge_cases_name_the_field() {
    let app = spawn_app().await;
    new_order(&app, 712_000, 2).await;
    let long = format!("iccid=111|TB1;note={}", "x".repeat(4000));
    let rejected: Vec<&str> = vec![
        // Section without `=`.
        "iccid=111|TB1;invalidDate",
        "iccid",
        // Duplicate key.
        "iccid=111|TB1;iccid=112|TB2",
        "iccid=111|TB1;invalidDate=20300101|TB1;invalidDate=20300102|TB1",
        // Untagged entry among several.
        "iccid=111,112",
        "iccid=111|TB1,112",
        "iccid=111|TB1;invalidDate=20300101,20300102|TB1",
        // Duplicate tag within a key.
        "iccid=111|TB1,112|TB1",
        "iccid=111|TB1,112|TB2;invalidDate=20300101|TB1,20300102|TB1",
        // Same ICCID under two tags.
        "iccid=111|TB1,111|TB2",
        // Orphan deadline.
        "iccid=111|TB1;invalidDate=20300101|TB2",
        // Tag number 0 / non-numeric / malformed.
        "iccid=111|TB0",
        "iccid=111|TBx",
        "iccid=111|TB",
        "iccid=111|tb1",
        "iccid=111|XY1",
        "iccid=111|TB01",
        // More than one `|`.
        "iccid=111|TB1|TB2",
        // Bad time or impossible date.
        "iccid=111;invalidDate=20180909$24:00",
        "iccid=111;invalidDate=20180909$12:60",
        "iccid=111;invalidDate=20180230",
        "iccid=111;invalidDate=20180230$12:00",
        "iccid=111;invalidDate=2018-09-09",
        "iccid=111;invalidDate=20180909 12:33",
        "iccid=111;invalidDate=20180909$1:33",
        // Full-width separators.
        "iccid=111|TB1；invalidDate=20300101|TB1",
        "iccid=111|TB1，112|TB2",
        "iccid=111｜TB1",
        // No iccid section.
        "invalidDate=20300101|TB1",
        "note=1",
        // Bad ICCIDs inside.
        "iccid=11a|TB1",
        "iccid=123456789012345678901|TB1",
        "iccid=|TB1",
        // Too long.
        long.as_str(),
    ];
    for sgp in rejected {
        shape_error(
            &app,
            &supplier(&ship(712_000, sgp)),
            &[712_000],
            "isv.invalid-parameter",
            &format!("{MODEL}.send_good_param"),
        )
        .await;
    }
    // Empty / whitespace only: treated as absent, so invalid for a shipment.
    for sgp in ["", " ", " \t "] {
        shape_error(
            &app,
            &supplier(&ship(712_000, sgp)),
            &[712_000],
            "isv.invalid-parameter",
            "send_good_param",
        )
        .await;
    }
    // Tag number above the quantity is an in-body refusal (it needs the order).
    refused(
        &app,
        &supplier(&ship(712_000, "iccid=111|TB3")),
        &[712_000],
        "CARD_COUNT_EXCEEDED",
    )
    .await;
    // Exactly 4000 characters is still accepted.
    let fill = 4000 - "iccid=111|TB1;note=".len();
    let max = format!("iccid=111|TB1;note={}", "x".repeat(fill));
    assert_eq!(max.chars().count(), 4000);
    accept(&app, &supplier(&ship(712_000, &max))).await;
}

#[tokio::test]
async fn top_level_iccid_of_a_shipment_is_not_cross_checked() {
    // domain.md §4 says it must equal a parsed ICCID; the Decisions section (which wins) says it
    // is stored as given, so that the seed example (iccid 888888888, cards 888/999) succeeds.
    let app = spawn_app().await;
    new_order(&app, 713_000, 1).await;
    let m = with(ship(713_000, "iccid=131"), json!({"iccid": "777"}));
    accept(&app, &supplier(&m)).await;
    let t = app.trade(713_000).await;
    assert_eq!(cards(&t).len(), 1);
    assert_eq!(cards(&t)[0]["iccid"], "131");
    let payload: Value =
        serde_json::from_str(notifications(&t)[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["iccid"], "777");
}

// ---------------------------------------------------------------------------------------------
// 4. The fulfilment state machine (§3.3)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn pending_accepted_shipped_activated() {
    let app = spawn_app().await;
    new_order(&app, 720_000, 2).await;
    let t0 = app.trade(720_000).await;
    assert_eq!(fulfilment(&t0)["status"], "PENDING");
    assert_eq!(fulfilment(&t0)["supplier_received"], Value::Null);

    // PENDING → ACCEPTED via 2/true; the trade does not move.
    accept(&app, &supplier(&receipt(720_000, true))).await;
    let t1 = app.trade(720_000).await;
    assert_eq!(fulfilment(&t1)["status"], "ACCEPTED", "{t1}");
    assert_eq!(fulfilment(&t1)["supplier_received"], 1);
    assert_eq!(fulfilment(&t1)["exception"], 0);
    assert_eq!(t1["status"], "WAIT_SELLER_SEND_GOODS");
    assert_eq!(t1["consigned"], Value::Null);

    // ACCEPTED → SHIPPED via 1; trade WAIT_SELLER_SEND_GOODS → WAIT_BUYER_CONFIRM_GOODS.
    accept(&app, &supplier(&ship(720_000, "iccid=2001|TB1,2002|TB2"))).await;
    let t2 = app.trade(720_000).await;
    assert_eq!(fulfilment(&t2)["status"], "SHIPPED", "{t2}");
    assert_eq!(t2["status"], "WAIT_BUYER_CONFIRM_GOODS");
    assert!(t2["consigned"].is_string());
    assert_eq!(t2["lines"][0]["status"], "WAIT_BUYER_CONFIRM_GOODS", "{t2}");
    assert_eq!(cards(&t2).len(), 2);
    assert!(cards(&t2).iter().all(|c| c["status"] == "SHIPPED"));

    // SHIPPED → ACTIVATED via 0, with the offer window; the trade does not move.
    let act = with(
        activate(720_000, "2001"),
        json!({"offer_valid_date": "2030-01-01 00:00:00", "offer_invalid_date": "2030-12-31 23:59:59"}),
    );
    accept(&app, &supplier(&act)).await;
    let t3 = app.trade(720_000).await;
    let f = fulfilment(&t3);
    assert_eq!(f["status"], "ACTIVATED", "{t3}");
    assert!(f["activated_at"].is_i64());
    assert_eq!(f["offer_start"], gmt8_ms("2030-01-01 00:00:00"));
    assert_eq!(f["offer_end"], gmt8_ms("2030-12-31 23:59:59"));
    assert_eq!(t3["status"], "WAIT_BUYER_CONFIRM_GOODS");
    assert_eq!(t3["consigned"], t2["consigned"]);
    let c = cards(&t3);
    assert_eq!(c[0]["status"], "ACTIVATED");
    assert!(c[0]["activated_at"].is_i64());
    assert_eq!(c[1]["status"], "SHIPPED");

    // Second card of a quantity-2 order.
    accept(&app, &supplier(&activate(720_000, "2002"))).await;
    let t4 = app.trade(720_000).await;
    assert!(
        cards(&t4).iter().all(|c| c["status"] == "ACTIVATED"),
        "{t4}"
    );
    assert_eq!(fulfilment(&t4)["status"], "ACTIVATED");
    assert_eq!(
        fulfilment(&t4)["activated_at"],
        fulfilment(&t3)["activated_at"],
        "first activation time kept"
    );
    // One log row per accepted notice, in order.
    let types: Vec<Value> = notifications(&t4)
        .iter()
        .map(|n| n["notify_type"].clone())
        .collect();
    assert_eq!(types, vec![json!("2"), json!("1"), json!("0"), json!("0")]);

    // Activation is also allowed once the trade is finished.
    new_order(&app, 720_001, 1).await;
    accept(&app, &supplier(&ship(720_001, "iccid=2011"))).await;
    trade_event(&app, 720_001, "confirm").await;
    accept(&app, &supplier(&model(720_001, "0"))).await;
    let t = app.trade(720_001).await;
    assert_eq!(t["status"], "TRADE_FINISHED");
    assert_eq!(fulfilment(&t)["status"], "ACTIVATED");
}

#[tokio::test]
async fn pending_straight_to_shipped() {
    let app = spawn_app().await;
    new_order(&app, 721_000, 1).await;
    accept(&app, &supplier(&ship(721_000, "iccid=2101"))).await;
    let t = app.trade(721_000).await;
    assert_eq!(fulfilment(&t)["status"], "SHIPPED");
    assert_eq!(fulfilment(&t)["supplier_received"], Value::Null);
    assert_eq!(t["status"], "WAIT_BUYER_CONFIRM_GOODS");
    assert!(t["consigned"].is_string());

    // A trade already consigned by other means: the fulfilment ships, the trade stays.
    new_order_in(&app, 721_001, 1, "WAIT_BUYER_CONFIRM_GOODS").await;
    let before = app.trade(721_001).await;
    accept(&app, &supplier(&ship(721_001, "iccid=2111"))).await;
    let after = app.trade(721_001).await;
    assert_eq!(fulfilment(&after)["status"], "SHIPPED");
    assert_eq!(after["status"], "WAIT_BUYER_CONFIRM_GOODS");
    assert_eq!(after["consigned"], before["consigned"]);

    // An implied ICCID: the only card of the order.
    accept(&app, &supplier(&model(721_000, "0"))).await;
    let t = app.trade(721_000).await;
    assert_eq!(cards(&t)[0]["status"], "ACTIVATED");
    assert_eq!(fulfilment(&t)["status"], "ACTIVATED");
}

#[tokio::test]
async fn activation_without_shipment_creates_the_card() {
    let app = spawn_app().await;
    // PENDING → ACTIVATED.
    new_order(&app, 722_000, 2).await;
    accept(&app, &supplier(&activate(722_000, "2201"))).await;
    let t = app.trade(722_000).await;
    assert_eq!(fulfilment(&t)["status"], "ACTIVATED", "{t}");
    let c = cards(&t);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["iccid"], "2201");
    assert_eq!(c[0]["tag"], 1);
    assert_eq!(c[0]["status"], "ACTIVATED");
    assert_eq!(c[0]["activate_deadline"], Value::Null);
    // The trade is not changed by an activation (§2.1, auto-finish off).
    assert_eq!(t["status"], "WAIT_SELLER_SEND_GOODS");

    // ACCEPTED → ACTIVATED.
    new_order(&app, 722_001, 1).await;
    accept(&app, &supplier(&receipt(722_001, true))).await;
    accept(&app, &supplier(&activate(722_001, "2211"))).await;
    let t = app.trade(722_001).await;
    assert_eq!(fulfilment(&t)["status"], "ACTIVATED");
    assert_eq!(fulfilment(&t)["supplier_received"], 1);
    assert_eq!(cards(&t)[0]["iccid"], "2211");
    assert_eq!(cards(&t)[0]["status"], "ACTIVATED");
}

#[tokio::test]
async fn receipt_false_sets_the_exception_and_keeps_the_state() {
    let app = spawn_app().await;
    new_order(&app, 723_000, 1).await;
    accept(&app, &supplier(&receipt(723_000, false))).await;
    let t = app.trade(723_000).await;
    let f = fulfilment(&t);
    assert_eq!(f["status"], "PENDING", "{t}");
    assert_eq!(f["exception"], 1);
    assert_eq!(f["supplier_received"], 0);
    assert_eq!(t["status"], "WAIT_SELLER_SEND_GOODS");
    assert_eq!(notifications(&t).len(), 1);
    // The order can still be shipped.
    accept(&app, &supplier(&ship(723_000, "iccid=2301"))).await;
    assert_eq!(fulfilment(&app.trade(723_000).await)["status"], "SHIPPED");
}

#[tokio::test]
async fn disallowed_transitions_change_nothing() {
    let app = spawn_app().await;
    // Shipment after SHIPPED: the same key with other content is a conflict; a notice under
    // another key (a different top-level iccid) reaches the state check.
    new_order(&app, 724_000, 2).await;
    accept(&app, &supplier(&ship(724_000, "iccid=2401|TB1"))).await;
    refused(
        &app,
        &supplier(&ship(724_000, "iccid=2402|TB2")),
        &[724_000],
        "NOTIFY_CONFLICT",
    )
    .await;
    let other_key = with(ship(724_000, "iccid=2402|TB2"), json!({"iccid": "2402"}));
    refused(
        &app,
        &supplier(&other_key),
        &[724_000],
        "ORDER_STATUS_INVALID",
    )
    .await;
    // Receipt after SHIPPED (no receipt before: a new key).
    refused(
        &app,
        &supplier(&receipt(724_000, true)),
        &[724_000],
        "ORDER_STATUS_INVALID",
    )
    .await;
    refused(
        &app,
        &supplier(&receipt(724_000, false)),
        &[724_000],
        "ORDER_STATUS_INVALID",
    )
    .await;

    // Shipment and receipt after ACTIVATED.
    accept(&app, &supplier(&activate(724_000, "2401"))).await;
    refused(
        &app,
        &supplier(&other_key),
        &[724_000],
        "ORDER_STATUS_INVALID",
    )
    .await;
    refused(
        &app,
        &supplier(&receipt(724_000, true)),
        &[724_000],
        "ORDER_STATUS_INVALID",
    )
    .await;
    // Activation of the already activated card: other content under the same key conflicts;
    // the same card named implicitly (a different key) is refused by state.
    let again = with(activate(724_000, "2401"), json!({"ext_info": "second"}));
    refused(&app, &supplier(&again), &[724_000], "NOTIFY_CONFLICT").await;
    new_order(&app, 724_001, 1).await;
    accept(&app, &supplier(&activate(724_001, "2411"))).await;
    refused(
        &app,
        &supplier(&model(724_001, "0")),
        &[724_001],
        "ORDER_STATUS_INVALID",
    )
    .await;
    let other_dates = with(
        activate(724_001, "2411"),
        json!({"offer_valid_date": "2030-01-01 00:00:00"}),
    );
    refused(&app, &supplier(&other_dates), &[724_001], "NOTIFY_CONFLICT").await;
    // Shipment after an activation without shipment.
    refused(
        &app,
        &supplier(&ship(724_001, "iccid=2412")),
        &[724_001],
        "ORDER_STATUS_INVALID",
    )
    .await;

    // Activation on an unpaid or closed trade.
    new_order_in(&app, 724_002, 1, "WAIT_BUYER_PAY").await;
    refused(
        &app,
        &supplier(&activate(724_002, "2421")),
        &[724_002],
        "ORDER_STATUS_INVALID",
    )
    .await;
    new_order(&app, 724_003, 1).await;
    accept(&app, &supplier(&ship(724_003, "iccid=2431"))).await;
    trade_event(&app, 724_003, "refund").await;
    refused(
        &app,
        &supplier(&activate(724_003, "2431")),
        &[724_003],
        "ORDER_STATUS_INVALID",
    )
    .await;
    refused(
        &app,
        &supplier(&model(724_003, "0")),
        &[724_003],
        "ORDER_STATUS_INVALID",
    )
    .await;
}

#[tokio::test]
async fn offer_dates_are_read_by_name_and_swapped_when_reversed() {
    let app = spawn_app().await;
    new_order(&app, 725_000, 1).await;
    accept(&app, &supplier(&ship(725_000, "iccid=2501"))).await;
    // The page's reading (invalid = start, valid = end): swapped and flagged.
    let m = with(
        activate(725_000, "2501"),
        json!({"offer_invalid_date": "2030-01-01 00:00:00", "offer_valid_date": "2031-01-01 00:00:00"}),
    );
    accept(&app, &supplier(&m)).await;
    let t = app.trade(725_000).await;
    assert_eq!(
        fulfilment(&t)["offer_start"],
        gmt8_ms("2030-01-01 00:00:00")
    );
    assert_eq!(fulfilment(&t)["offer_end"], gmt8_ms("2031-01-01 00:00:00"));
    let log = notifications(&t);
    assert_eq!(log[0]["dates_swapped"], 0);
    assert_eq!(log[1]["dates_swapped"], 1, "{t}");

    // Only one date: taken by name.
    new_order(&app, 725_001, 1).await;
    let m = with(
        activate(725_001, "2511"),
        json!({"offer_invalid_date": "2030-06-30 12:00:00"}),
    );
    accept(&app, &supplier(&m)).await;
    let t = app.trade(725_001).await;
    assert_eq!(fulfilment(&t)["offer_start"], Value::Null);
    assert_eq!(fulfilment(&t)["offer_end"], gmt8_ms("2030-06-30 12:00:00"));
}

// ---------------------------------------------------------------------------------------------
// 5. Idempotency and the notification log
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn identical_repeats_replay_without_a_second_effect() {
    let app = spawn_app().await;
    new_order(&app, 730_000, 2).await;
    let notices = [
        receipt(730_000, true),
        with(
            ship(730_000, "iccid=3001|TB1,3002|TB2;invalidDate=20300101|TB1"),
            json!({"out_order_no": "OUT-730", "user_id": "888888"}),
        ),
        with(
            activate(730_000, "3001"),
            json!({"offer_valid_date": "2030-01-01 00:00:00"}),
        ),
    ];
    for (i, m) in notices.iter().enumerate() {
        accept(&app, &supplier(m)).await;
        let after_first = snapshot(&app, &[730_000]).await;
        assert_eq!(notifications(&after_first["trades"][0]).len(), i + 1);
        // The same notice again, twice: same business payload, nothing changes.
        for _ in 0..2 {
            let r = app.ok(&supplier(m)).await;
            assert_eq!(r["result"], success());
            assert_eq!(snapshot(&app, &[730_000]).await, after_first);
        }
    }
    // The JSON spelling does not matter: numbers for numeric strings are the same notice.
    let as_numbers = with(
        notices[1].clone(),
        json!({"order_no": 730_000, "user_id": 888888}),
    );
    let before = snapshot(&app, &[730_000]).await;
    accept(&app, &supplier(&as_numbers)).await;
    assert_eq!(snapshot(&app, &[730_000]).await, before);
    // A replay is answered even once the trade has moved on (here: refunded).
    trade_event(&app, 730_000, "refund").await;
    let before = snapshot(&app, &[730_000]).await;
    accept(&app, &supplier(&notices[1])).await;
    assert_eq!(snapshot(&app, &[730_000]).await, before);
}

#[tokio::test]
async fn receipt_repeats_take_the_newer_value_until_shipped() {
    let app = spawn_app().await;
    new_order(&app, 731_000, 1).await;
    // false → true → false → true: each newer value is applied and logged.
    accept(&app, &supplier(&receipt(731_000, false))).await;
    let f = fulfilment(&app.trade(731_000).await).clone();
    assert_eq!(
        (f["status"].clone(), f["exception"].clone()),
        (json!("PENDING"), json!(1))
    );
    accept(&app, &supplier(&receipt(731_000, true))).await;
    let f = fulfilment(&app.trade(731_000).await).clone();
    assert_eq!(f["status"], "ACCEPTED");
    assert_eq!(f["exception"], 0);
    assert_eq!(f["supplier_received"], 1);
    accept(&app, &supplier(&receipt(731_000, false))).await;
    let f = fulfilment(&app.trade(731_000).await).clone();
    assert_eq!(f["status"], "ACCEPTED", "state kept");
    assert_eq!(f["exception"], 1);
    assert_eq!(f["supplier_received"], 0);
    accept(&app, &supplier(&receipt(731_000, true))).await;
    let t = app.trade(731_000).await;
    assert_eq!(fulfilment(&t)["exception"], 0);
    assert_eq!(notifications(&t).len(), 4);
    // A replay of the current value: no new row.
    accept(&app, &supplier(&receipt(731_000, true))).await;
    assert_eq!(app.trade(731_000).await, t);

    // Once shipped, a different receipt is refused; a replay of the last one still succeeds.
    accept(&app, &supplier(&ship(731_000, "iccid=3101"))).await;
    refused(
        &app,
        &supplier(&receipt(731_000, false)),
        &[731_000],
        "NOTIFY_CONFLICT",
    )
    .await;
    let before = snapshot(&app, &[731_000]).await;
    accept(&app, &supplier(&receipt(731_000, true))).await;
    assert_eq!(snapshot(&app, &[731_000]).await, before);
    assert_eq!(notifications(&before["trades"][0]).len(), 5);
}

#[tokio::test]
async fn auto_finish_on_activation_finishes_the_trade() {
    let app = spawn_app().await;
    admin_ok(
        &app,
        "/admin/biz-types",
        json!({"code": "88", "name": "激活即完成", "auto_finish_on_activation": true}),
    )
    .await;
    new_supplier(&app, 5, json!(["88"]), "autofin").await;
    admin_ok(
        &app,
        "/admin/trades",
        carrier_trade(732_000, 1, "WAIT_SELLER_SEND_GOODS", 5, "88"),
    )
    .await;
    let m = |v: Value| with(v, json!({"biz_type": "88"}));
    let signed = |v: Value| supplier(&m(v)).app("autofin", "autofin");
    accept(&app, &signed(ship(732_000, "iccid=3201"))).await;
    assert_eq!(
        app.trade(732_000).await["status"],
        "WAIT_BUYER_CONFIRM_GOODS"
    );
    accept(&app, &signed(activate(732_000, "3201"))).await;
    let t = app.trade(732_000).await;
    assert_eq!(t["status"], "TRADE_FINISHED", "{t}");
    assert!(t["ended"].is_string());
    assert_eq!(t["lines"][0]["status"], "TRADE_FINISHED");
    assert_eq!(fulfilment(&t)["status"], "ACTIVATED");
    // A replay changes nothing, even though the trade is now final.
    accept(&app, &signed(activate(732_000, "3201"))).await;
    assert_eq!(app.trade(732_000).await, t);

    // Without the flag (biz type 30) activation leaves the trade waiting for the buyer.
    new_order(&app, 732_001, 1).await;
    accept(&app, &supplier(&ship(732_001, "iccid=3211"))).await;
    accept(&app, &supplier(&activate(732_001, "3211"))).await;
    assert_eq!(
        app.trade(732_001).await["status"],
        "WAIT_BUYER_CONFIRM_GOODS"
    );
}

#[tokio::test]
async fn auto_finish_consigns_and_confirms_an_activation_without_shipment() {
    let app = spawn_app().await;
    admin_ok(
        &app,
        "/admin/biz-types",
        json!({"code": "89", "name": "激活即完成", "auto_finish_on_activation": true}),
    )
    .await;
    new_supplier(&app, 6, json!(["89"]), "autofin2").await;
    admin_ok(
        &app,
        "/admin/trades",
        carrier_trade(733_000, 1, "WAIT_SELLER_SEND_GOODS", 6, "89"),
    )
    .await;
    let req = supplier(&with(activate(733_000, "3301"), json!({"biz_type": "89"})))
        .app("autofin2", "autofin2");
    accept(&app, &req).await;
    let t = app.trade(733_000).await;
    assert_eq!(t["status"], "TRADE_FINISHED", "{t}");
    assert!(t["consigned"].is_string() && t["ended"].is_string());
    assert_eq!(fulfilment(&t)["status"], "ACTIVATED");
    assert_eq!(cards(&t).len(), 1);
}

#[tokio::test]
async fn ext_info_is_logged_as_text_and_parsed_when_it_is_a_json_object() {
    let app = spawn_app().await;
    new_order(&app, 734_000, 1).await;
    let ext = r#"{"channel":"c1","n":2}"#;
    accept(
        &app,
        &supplier(&with(receipt(734_000, true), json!({"ext_info": ext}))),
    )
    .await;
    let logged = &notifications(&app.trade(734_000).await)[0];
    let payload: Value = serde_json::from_str(logged["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["ext_info"], ext);
    assert_eq!(payload["ext_info_json"], json!({"channel": "c1", "n": 2}));

    new_order(&app, 734_001, 1).await;
    let text = "<\"key\", \"value\">";
    accept(
        &app,
        &supplier(&with(receipt(734_001, true), json!({"ext_info": text}))),
    )
    .await;
    let logged = &notifications(&app.trade(734_001).await)[0];
    let payload: Value = serde_json::from_str(logged["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["ext_info"], text);
    assert!(payload.get("ext_info_json").is_none());
}

// ---------------------------------------------------------------------------------------------
// 6. Ownership
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn app_other_gets_no_permission_for_every_notify_type() {
    let app = spawn_app().await;
    let as_other = |m: &Value| supplier(m).app("other", "other");
    let notices = [
        supplier_example(),
        with(
            supplier_example(),
            json!({"notify_type": "0", "iccid": "888"}),
        ),
        with(model(SANDBOX_ORDER, "0"), json!({"iccid": "888"})),
        with(model(SANDBOX_ORDER, "2"), json!({"receive_status": true})),
        with(model(SANDBOX_ORDER, "2"), json!({"receive_status": false})),
        ship(SANDBOX_ORDER, "iccid=1|TB1"),
    ];
    for m in &notices {
        refused(&app, &as_other(m), &[SANDBOX_ORDER], "NO_PERMISSION").await;
    }
    // Still refused after `test` shipped and activated, even for an exact replay of its notice.
    accept(&app, &supplier(&supplier_example())).await;
    let act = with(model(SANDBOX_ORDER, "0"), json!({"iccid": "888"}));
    accept(&app, &supplier(&act)).await;
    for m in notices.iter().chain([&act]) {
        refused(&app, &as_other(m), &[SANDBOX_ORDER], "NO_PERMISSION").await;
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Concurrency
// ---------------------------------------------------------------------------------------------

const CONCURRENT: usize = 200;

/// Sends all requests at once; returns the `result` objects in request order.
async fn concurrently(app: &Arc<TestApp>, reqs: Vec<Req>) -> Vec<Value> {
    let handles: Vec<_> = reqs
        .into_iter()
        .map(|req| {
            let app = Arc::clone(app);
            tokio::spawn(async move { app.ok(&req).await["result"].clone() })
        })
        .collect();
    let mut results = Vec::with_capacity(handles.len());
    for h in handles {
        results.push(h.await.expect("task"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_identical_shipments_have_one_effect() {
    let app = Arc::new(spawn_app().await);
    new_order(&app, 740_000, 2).await;
    let m = with(
        ship(740_000, "iccid=4001|TB1,4002|TB2;invalidDate=20300101|TB1"),
        json!({"out_order_no": "OUT-740"}),
    );
    let results = concurrently(&app, vec![supplier(&m); CONCURRENT]).await;
    assert_eq!(results.len(), CONCURRENT);
    assert!(results.iter().all(|r| *r == success()), "{results:?}");
    let t = app.trade(740_000).await;
    assert_eq!(cards(&t).len(), 2, "{t}");
    assert_eq!(notifications(&t).len(), 1, "{t}");
    assert_eq!(fulfilment(&t)["status"], "SHIPPED");
    assert_eq!(fulfilment(&t)["out_order_no"], "OUT-740");
    assert_eq!(t["status"], "WAIT_BUYER_CONFIRM_GOODS");
    let records = app.idempotency().await;
    let ours = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["idem_key"].as_str().unwrap_or("").starts_with("740000:"))
        .count();
    assert_eq!(ours, 1, "{records}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conflicting_activations_have_one_winner() {
    let app = Arc::new(spawn_app().await);
    new_order(&app, 741_000, 1).await;
    accept(&app, &supplier(&ship(741_000, "iccid=4101"))).await;
    let dates: Vec<String> = (0..CONCURRENT)
        .map(|i| format!("2030-01-01 00:{:02}:{:02}", i / 60, i % 60))
        .collect();
    let reqs = dates
        .iter()
        .map(|d| {
            supplier(&with(
                activate(741_000, "4101"),
                json!({ "offer_valid_date": d }),
            ))
        })
        .collect();
    let results = concurrently(&app, reqs).await;
    let winners: Vec<usize> = (0..CONCURRENT)
        .filter(|i| results[*i] == success())
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    // Same key, different payload: every loser is a clean NOTIFY_CONFLICT.
    for (i, r) in results.iter().enumerate() {
        if i != winners[0] {
            assert_eq!(r["code"], "NOTIFY_CONFLICT", "{r}");
            assert_eq!(r["success"], false);
            assert_eq!(r["model"], false);
        }
    }
    let t = app.trade(741_000).await;
    assert_eq!(fulfilment(&t)["status"], "ACTIVATED");
    assert_eq!(fulfilment(&t)["offer_start"], gmt8_ms(&dates[winners[0]]));
    assert_eq!(cards(&t)[0]["status"], "ACTIVATED");
    assert_eq!(notifications(&t).len(), 2, "{t}");
    // The winner's notice replays; the others still conflict.
    let again = supplier(&with(
        activate(741_000, "4101"),
        json!({ "offer_valid_date": dates[winners[0]] }),
    ));
    accept(&app, &again).await;
    let loser = (winners[0] + 1) % CONCURRENT;
    let lost = supplier(&with(
        activate(741_000, "4101"),
        json!({ "offer_valid_date": dates[loser] }),
    ));
    refused(&app, &lost, &[741_000], "NOTIFY_CONFLICT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conflicting_shipments_have_one_winner() {
    let app = Arc::new(spawn_app().await);
    new_order(&app, 742_000, 1).await;
    let reqs = (0..CONCURRENT)
        .map(|i| supplier(&ship(742_000, &format!("iccid={}", 420_000 + i))))
        .collect();
    let results = concurrently(&app, reqs).await;
    let winners: Vec<usize> = (0..CONCURRENT)
        .filter(|i| results[*i] == success())
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(results
        .iter()
        .enumerate()
        .all(|(i, r)| i == winners[0] || r["code"] == "NOTIFY_CONFLICT"));
    let t = app.trade(742_000).await;
    let c = cards(&t);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["iccid"], (420_000 + winners[0]).to_string());
    assert_eq!(notifications(&t).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_on_one_database_still_have_one_effect() {
    // Two servers over the same SQLite file stand for two nodes: the idempotency record's
    // primary key, not a check in one process's memory, decides.
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    let a = Arc::new(spawn_app_with(|s| s.database_url = Some(url.clone())).await);
    let b = Arc::new(spawn_app_with(|s| s.database_url = Some(url.clone())).await);
    new_order(&a, 743_000, 2).await;
    let m = ship(743_000, "iccid=4301|TB1,4302|TB2");
    let (ra, rb) = tokio::join!(
        concurrently(&a, vec![supplier(&m); CONCURRENT / 2]),
        concurrently(&b, vec![supplier(&m); CONCURRENT / 2]),
    );
    assert!(
        ra.iter().chain(&rb).all(|r| *r == success()),
        "{ra:?} {rb:?}"
    );
    let t = b.trade(743_000).await;
    assert_eq!(cards(&t).len(), 2, "{t}");
    assert_eq!(notifications(&t).len(), 1, "{t}");

    let reqs = |node: usize| -> Vec<Req> {
        (0..CONCURRENT / 2)
            .map(|i| {
                let d = format!("2030-01-01 0{node}:{:02}:{:02}", i / 60, i % 60);
                supplier(&with(
                    activate(743_000, "4301"),
                    json!({ "offer_valid_date": d }),
                ))
            })
            .collect()
    };
    let (ra, rb) = tokio::join!(concurrently(&a, reqs(0)), concurrently(&b, reqs(1)));
    let all: Vec<&Value> = ra.iter().chain(&rb).collect();
    assert_eq!(
        all.iter().filter(|r| ***r == success()).count(),
        1,
        "{all:?}"
    );
    assert_eq!(
        all.iter()
            .filter(|r| r["code"] == "NOTIFY_CONFLICT")
            .count(),
        CONCURRENT - 1,
        "{all:?}"
    );
    let t = a.trade(743_000).await;
    assert_eq!(notifications(&t).len(), 2, "{t}");
    assert_eq!(cards(&t)[0]["status"], "ACTIVATED");
    assert_eq!(cards(&t)[1]["status"], "SHIPPED");
}

#[tokio::test]
async fn ids_beyond_two_to_the_53_are_exact() {
    let app = spawn_app().await;
    let tid: i64 = 9_007_199_254_740_993; // 2^53 + 1: not representable as f64
    admin_ok(
        &app,
        "/admin/trades",
        json!({"tid": tid, "kind": "CARRIER", "seller_id": 2000, "buyer_id": 888888,
            "lines": [{"oid": 77_001, "item_id": 20000, "price": 5000, "quantity": 1}],
            "carrier": {"supplier_id": 1, "biz_type": "30"}}),
    )
    .await;
    // Its f64 neighbour does not exist.
    let near = with(
        ship(tid, "iccid=7701"),
        json!({"order_no": "9007199254740992"}),
    );
    refused(&app, &supplier(&near), &[tid], "ORDER_NOT_FOUND").await;
    // As a string and as a JSON number.
    accept(&app, &supplier(&ship(tid, "iccid=7701"))).await;
    let as_number = with(ship(tid, "iccid=7701"), json!({ "order_no": tid }));
    let before = snapshot(&app, &[tid]).await;
    accept(&app, &supplier(&as_number)).await;
    assert_eq!(snapshot(&app, &[tid]).await, before);
    assert_eq!(fulfilment(&before["trades"][0])["status"], "SHIPPED");
    // The largest i64 parses (not found), one more does not (invalid).
    let max = with(
        ship(tid, "iccid=7702"),
        json!({"order_no": i64::MAX.to_string()}),
    );
    refused(&app, &supplier(&max), &[tid], "ORDER_NOT_FOUND").await;
    let over = with(
        ship(tid, "iccid=7702"),
        json!({"order_no": "9223372036854775808"}),
    );
    shape_error(
        &app,
        &supplier(&over),
        &[tid],
        "isv.invalid-parameter",
        &format!("{MODEL}.order_no"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_shipments_of_one_iccid_on_different_orders_have_one_winner() {
    let app = Arc::new(spawn_app().await);
    let tids: Vec<i64> = (0..20).map(|i| 744_000 + i).collect();
    for tid in &tids {
        new_order(&app, *tid, 1).await;
    }
    let reqs = tids
        .iter()
        .map(|tid| supplier(&ship(*tid, "iccid=4444")))
        .collect();
    let results = concurrently(&app, reqs).await;
    assert_eq!(results.iter().filter(|r| **r == success()).count(), 1);
    assert_eq!(
        results
            .iter()
            .filter(|r| r["code"] == "ICCID_ALREADY_USED")
            .count(),
        tids.len() - 1,
        "{results:?}"
    );
    let mut owners = 0;
    for tid in &tids {
        let t = app.trade(*tid).await;
        let shipped = fulfilment(&t)["status"] == "SHIPPED";
        assert_eq!(cards(&t).len(), usize::from(shipped), "{t}");
        assert_eq!(notifications(&t).len(), usize::from(shipped), "{t}");
        owners += usize::from(shipped);
    }
    assert_eq!(owners, 1);
}

#[tokio::test]
async fn a_session_is_optional_but_must_be_the_apps_own_and_its_sellers() {
    let app = spawn_app().await;
    let before = snapshot(&app, &[SANDBOX_ORDER]).await;
    // `other-session` belongs to app `other`.
    let e = app
        .error(&supplier(&supplier_example()).session("other-session"))
        .await;
    assert_eq!(e["code"], 27, "{e}");
    let e = app
        .error(&supplier(&supplier_example()).session("no-such-session"))
        .await;
    assert_eq!(e["code"], 27, "{e}");
    // A session of app `test` for another user than the seller the app is bound to (§2.1: it
    // must be the supplier's seller account's), refused before the parameters are read.
    let (status, created) = app
        .admin(
            Method::POST,
            "/admin/sessions",
            Some(json!({"app_key": "test", "user_id": 3000, "session_key": "test-3000"})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    for body in [supplier_example(), json!({"order_no": "x"})] {
        let e = app.error(&supplier(&body).session("test-3000")).await;
        assert_eq!(e["code"], 27, "{e}");
        assert_eq!(e["sub_code"], "invalid-sessionkey", "{e}");
    }
    assert_eq!(snapshot(&app, &[SANDBOX_ORDER]).await, before);
    accept(&app, &supplier(&supplier_example()).session("test-session")).await;
}
