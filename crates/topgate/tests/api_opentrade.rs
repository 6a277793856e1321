//! `taobao.wt.trade.opentrade.resultcallback` through real HTTP (domain.md §2.4, §3.2, §3.5):
//! the seed page's example, success (trade finished) and failure (trade closed with a refund),
//! every error row of §2.4, `req_id` replays and conflicts, settlement by sub-order, and 200
//! concurrent identical / conflicting callbacks. Every refusal is checked to leave the trade and
//! the idempotency records as they were.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;

const RESPONSE: &str = "wt_trade_opentrade_resultcallback_response";

/// An opentrade trade of seller 2000 with one line per `(oid, price)`.
async fn open_trade(app: &TestApp, tid: i64, lines: &[(i64, i64)], status: &str) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(oid, price)| json!({"oid": oid, "item_id": 30000, "price": price, "quantity": 1}))
        .collect();
    create(
        app,
        "trades",
        json!({"tid": tid, "kind": "OPENTRADE", "seller_id": 2000, "buyer_id": 10001,
            "status": status, "lines": lines, "open_trade": {"transfer_id": format!("t{tid}"), "phone": "18072887365"}}),
    )
    .await
}

fn callback(order_no: i64, sub: Option<i64>, success: bool, req_id: &str) -> Value {
    let mut v = json!({"order_no": order_no, "success": success, "req_id": req_id,
        "result_code": if success { "0000" } else { "E001" },
        "result_desc": if success { "订购成功" } else { "办理失败" }});
    if let Some(s) = sub {
        v["sub_order_no"] = json!(s);
    }
    v
}

/// The `result` of a callback.
async fn result(app: &TestApp, req: &Req) -> Value {
    app.ok(req).await["result"].clone()
}

fn line(trade: &Value, oid: i64) -> &Value {
    trade["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["oid"] == oid)
        .expect("line exists")
}

/// Sends `req`, expects in-body `code`, and checks trade `tid` and the records did not change.
async fn refused(app: &TestApp, req: &Req, tid: i64, code: &str) -> Value {
    let before = (app.trade(tid).await, app.idempotency().await);
    let r = result(app, req).await;
    assert_eq!(r["success"], false, "{r}");
    assert_eq!(r["error_code"], code, "{r}");
    assert!(
        r["error_msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{r}"
    );
    let sent: Value = serde_json::from_str(req.params.get("param0").unwrap()).unwrap();
    assert_eq!(r["req_id"], sent["req_id"], "{r}");
    assert_eq!(
        (app.trade(tid).await, app.idempotency().await),
        before,
        "{code}"
    );
    r
}

/// Sends `param0`, expects code 50 with `sub_code` naming `param0.<field>`; nothing changes.
async fn shape_error(app: &TestApp, param0: &Value, sub_code: &str, field: &str) {
    let before = (app.trade(12345678).await, app.idempotency().await);
    let e = app.error(&opentrade(param0)).await;
    assert_eq!(e["code"], 50, "{param0}: {e}");
    assert_eq!(e["sub_code"], sub_code, "{param0}: {e}");
    let sub_msg = e["sub_msg"].as_str().unwrap_or_default();
    assert!(sub_msg.starts_with("非法参数"), "{e}");
    assert!(sub_msg.contains(&format!("param0.{field}")), "{field}: {e}");
    assert_eq!((app.trade(12345678).await, app.idempotency().await), before);
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[tokio::test]
async fn seed_example_finishes_the_trade() {
    let app = spawn_app().await;
    let before = app.trade(12345678).await;
    assert_eq!(before["status"], "WAIT_SELLER_SEND_GOODS");
    assert_eq!(before["open_trade"]["handling"], "PENDING");

    let whole = app.send_json(&opentrade(&opentrade_example())).await;
    let text = serde_json::to_string_pretty(&redact(&whole)).unwrap();
    insta::assert_snapshot!("seed_example", text);
    assert_eq!(
        whole[RESPONSE]["result"],
        json!({"success": true, "req_id": "channel_1212312", "error_code": "0000", "error_msg": "消息处理成功"})
    );

    let t = app.trade(12345678).await;
    assert_eq!(t["status"], "TRADE_FINISHED");
    assert!(t["consigned"].is_string() && t["ended"].is_string(), "{t}");
    assert_eq!(t["paid"], before["paid"]);
    assert!(t["paid"].as_str() <= t["consigned"].as_str());
    assert!(t["consigned"].as_str() <= t["ended"].as_str());
    assert_eq!(line(&t, 212312)["status"], "TRADE_FINISHED");
    let o = &t["open_trade"];
    assert_eq!(o["handling"], "SUCCEEDED");
    assert_eq!(o["result_code"], "0000");
    assert_eq!(o["result_desc"], "订购成功");
    assert_eq!(o["first_charge_amount"], 100);
    assert_eq!(o["first_charge_time"], 1704038400000i64);
    assert_eq!(
        o["ext"],
        "{\"firstChargeAmount\":\"100\",\"firstChargeTime\":\"1704038400000\"}"
    );
    assert_eq!(t["refunds"], json!([]));
}

#[tokio::test]
async fn replays_repeats_and_conflicts_on_a_finished_trade() {
    let app = spawn_app().await;
    let first = app.send_json(&opentrade(&opentrade_example())).await;
    let after = (app.trade(12345678).await, app.idempotency().await);

    // The same req_id and payload: the identical body, nothing changes.
    for _ in 0..3 {
        let again = app.send_json(&opentrade(&opentrade_example())).await;
        assert_eq!(redact(&again), redact(&first));
    }
    assert_eq!((app.trade(12345678).await, app.idempotency().await), after);

    // The same outcome under a new req_id: success, noting it was already processed.
    let mut same = opentrade_example();
    same["req_id"] = json!("channel_again");
    let r = result(&app, &opentrade(&same)).await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["error_code"], "0000");
    assert_eq!(r["req_id"], "channel_again");
    assert!(r["error_msg"].as_str().unwrap().contains("已处理"), "{r}");
    assert_eq!(app.trade(12345678).await, after.0);
    // …and that answer replays identically too.
    assert_eq!(result(&app, &opentrade(&same)).await, r);

    // The opposite outcome under a new req_id.
    let mut opposite = opentrade_example();
    opposite["req_id"] = json!("channel_fail");
    opposite["success"] = json!(false);
    refused(
        &app,
        &opentrade(&opposite),
        12345678,
        "ORDER_ALREADY_FINISHED",
    )
    .await;
    // The first req_id with a different payload.
    let mut conflict = opentrade_example();
    conflict["result_desc"] = json!("另一个描述");
    refused(&app, &opentrade(&conflict), 12345678, "REQ_ID_CONFLICT").await;
    conflict = opentrade_example();
    conflict["success"] = json!(false);
    refused(&app, &opentrade(&conflict), 12345678, "REQ_ID_CONFLICT").await;
    // Without sub_order_no it is another payload as well.
    conflict = opentrade_example();
    conflict.as_object_mut().unwrap().remove("sub_order_no");
    refused(&app, &opentrade(&conflict), 12345678, "REQ_ID_CONFLICT").await;
}

#[tokio::test]
async fn failure_closes_the_trade_with_a_full_refund() {
    let app = spawn_app().await;
    open_trade(&app, 6100, &[(61001, 10000)], "WAIT_SELLER_SEND_GOODS").await;
    let r = result(&app, &opentrade(&callback(6100, None, false, "f-1"))).await;
    assert_eq!(
        r,
        json!({"success": true, "req_id": "f-1", "error_code": "0000", "error_msg": "消息处理成功"})
    );
    let t = app.trade(6100).await;
    assert_eq!(t["status"], "TRADE_CLOSED");
    assert_eq!(t["consigned"], Value::Null);
    assert!(t["ended"].is_string());
    assert_eq!(line(&t, 61001)["status"], "TRADE_CLOSED");
    assert_eq!(t["open_trade"]["handling"], "FAILED");
    assert_eq!(t["open_trade"]["result_code"], "E001");
    assert_eq!(t["open_trade"]["result_desc"], "办理失败");
    let refunds = t["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1, "{t}");
    assert_eq!(refunds[0]["amount"], 10000);
    assert_eq!(refunds[0]["oid"], 61001);
    assert_eq!(refunds[0]["reason"], "办理失败");

    // Same outcome, new req_id: acknowledged, no second refund. Opposite: refused.
    let r = result(&app, &opentrade(&callback(6100, None, false, "f-2"))).await;
    assert_eq!(r["success"], true);
    assert!(r["error_msg"].as_str().unwrap().contains("已处理"));
    assert_eq!(app.trade(6100).await, t);
    let r = refused(
        &app,
        &opentrade(&callback(6100, None, true, "f-3")),
        6100,
        "ORDER_ALREADY_FINISHED",
    )
    .await;
    assert_eq!(r["error_msg"], "订单已处理，状态为TRADE_CLOSED", "{r}");
}

#[tokio::test]
async fn a_consigned_trade_can_still_be_settled() {
    let app = spawn_app().await;
    open_trade(&app, 6110, &[(61101, 500)], "WAIT_BUYER_CONFIRM_GOODS").await;
    open_trade(&app, 6111, &[(61111, 700)], "WAIT_BUYER_CONFIRM_GOODS").await;
    let consigned = app.trade(6110).await["consigned"].clone();
    let r = result(&app, &opentrade(&callback(6110, None, true, "c-1"))).await;
    assert_eq!(r["success"], true, "{r}");
    let t = app.trade(6110).await;
    assert_eq!(t["status"], "TRADE_FINISHED");
    assert_eq!(t["consigned"], consigned, "consign time kept");
    let r = result(&app, &opentrade(&callback(6111, None, false, "c-2"))).await;
    assert_eq!(r["success"], true, "{r}");
    let t = app.trade(6111).await;
    assert_eq!(t["status"], "TRADE_CLOSED");
    assert_eq!(t["refunds"][0]["amount"], 700);
}

/// A trade the admin API settled (refund, or consign and confirm) leaves the open-trade handling
/// `PENDING`; the first callback agreeing with it is acknowledged and settles the handling with
/// its result, and a later agreeing one changes nothing more.
#[tokio::test]
async fn a_callback_agreeing_with_an_admin_settlement_settles_the_handling() {
    let app = spawn_app().await;
    open_trade(&app, 6120, &[(61201, 500)], "WAIT_SELLER_SEND_GOODS").await;
    open_trade(&app, 6121, &[(61211, 700)], "WAIT_SELLER_SEND_GOODS").await;
    for (path, status) in [
        ("/admin/trades/6120/refund", 200),
        ("/admin/trades/6121/consign", 200),
        ("/admin/trades/6121/confirm", 200),
    ] {
        assert_eq!(
            app.admin(Method::POST, path, None).await.0,
            status,
            "{path}"
        );
    }
    for (tid, success, handling, code) in [
        (6120, false, "FAILED", "E001"),
        (6121, true, "SUCCEEDED", "0000"),
    ] {
        assert_eq!(app.trade(tid).await["open_trade"]["handling"], "PENDING");
        let r = result(
            &app,
            &opentrade(&callback(tid, None, success, &format!("a-{tid}"))),
        )
        .await;
        assert_eq!(r["success"], true, "{r}");
        assert_eq!(r["error_msg"], "消息处理成功：订单已处理，结果一致", "{r}");
        let settled = app.trade(tid).await;
        assert_eq!(settled["open_trade"]["handling"], handling, "{settled}");
        assert_eq!(settled["open_trade"]["result_code"], code, "{settled}");
        let mut again = callback(tid, None, success, &format!("b-{tid}"));
        again["result_code"] = json!("LATER");
        let r = result(&app, &opentrade(&again)).await;
        assert_eq!(r["success"], true, "{r}");
        assert_eq!(app.trade(tid).await, settled, "the first result stays");
        refused(
            &app,
            &opentrade(&callback(tid, None, !success, &format!("c-{tid}"))),
            tid,
            "ORDER_ALREADY_FINISHED",
        )
        .await;
    }

    // A callback naming a sub-order agrees with that sub-order, not with the trade the admin
    // then refunded: it is acknowledged but settles nothing; a whole-trade failure does.
    open_trade(
        &app,
        6122,
        &[(61221, 300), (61222, 400)],
        "WAIT_SELLER_SEND_GOODS",
    )
    .await;
    let r = result(&app, &opentrade(&callback(6122, Some(61221), true, "s-1"))).await;
    assert_eq!(r["success"], true, "{r}");
    let (s, _) = app
        .admin(Method::POST, "/admin/trades/6122/refund", None)
        .await;
    assert_eq!(s, 200);
    let r = result(&app, &opentrade(&callback(6122, Some(61221), true, "s-2"))).await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(app.trade(6122).await["open_trade"]["handling"], "PENDING");
    let r = result(&app, &opentrade(&callback(6122, None, false, "s-3"))).await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(app.trade(6122).await["open_trade"]["handling"], "FAILED");
}

#[tokio::test]
async fn missing_fields_are_missing_parameter() {
    let app = spawn_app().await;
    for field in ["order_no", "success", "req_id"] {
        let mut p = opentrade_example();
        p.as_object_mut().unwrap().remove(field);
        shape_error(&app, &p, "isv.missing-parameter", field).await;
        p[field] = json!("");
        shape_error(&app, &p, "isv.missing-parameter", field).await;
        p[field] = Value::Null;
        shape_error(&app, &p, "isv.missing-parameter", field).await;
    }
    let method = "taobao.wt.trade.opentrade.resultcallback";
    for req in [
        Req::new(method).session("test-session"),
        Req::new(method)
            .session("test-session")
            .param("param0", "  "),
    ] {
        let e = app.error(&req).await;
        assert_eq!(e["code"], 50, "{e}");
        assert_eq!(e["sub_code"], "isv.missing-parameter");
        assert!(e["sub_msg"].as_str().unwrap().contains("param0"), "{e}");
    }
    for raw in ["[]", "nope", "1"] {
        let req = Req::new(method)
            .session("test-session")
            .param("param0", raw);
        let e = app.error(&req).await;
        assert_eq!(e["code"], 50, "{e}");
        assert_eq!(e["sub_code"], "isv.invalid-parameter", "{raw}");
    }
    assert_eq!(
        app.trade(12345678).await["status"],
        "WAIT_SELLER_SEND_GOODS"
    );
}

#[tokio::test]
async fn bad_types_and_bad_ext_are_invalid_parameter() {
    let app = spawn_app().await;
    let future = now_ms() + 24 * 3600 * 1000;
    let cases: Vec<(&str, &str, Value)> = vec![
        ("order_no", "order_no", json!("abc")),
        ("order_no", "order_no", json!(1.5)),
        ("order_no", "order_no", json!(0)),
        ("order_no", "order_no", json!(-12345678)),
        ("order_no", "order_no", json!("99999999999999999999")),
        ("order_no", "order_no", json!([12345678])),
        ("success", "success", json!("yes")),
        ("success", "success", json!(1)),
        ("req_id", "req_id", json!("has space")),
        ("req_id", "req_id", json!("r".repeat(65))),
        ("req_id", "req_id", json!({"id": 1})),
        ("sub_order_no", "sub_order_no", json!(0)),
        ("sub_order_no", "sub_order_no", json!("x")),
        ("result_code", "result_code", json!("c".repeat(33))),
        ("result_desc", "result_desc", json!("述".repeat(257))),
        ("ext", "ext", json!("not json")),
        ("ext", "ext", json!("[1]")),
        ("ext", "ext", json!({"firstChargeAmount": "100"})),
        (
            "ext",
            "ext",
            json!(format!("{{\"k\":\"{}\"}}", "x".repeat(2048))),
        ),
        (
            "ext",
            "ext.firstChargeAmount",
            json!("{\"firstChargeAmount\":\"-1\"}"),
        ),
        (
            "ext",
            "ext.firstChargeAmount",
            json!("{\"firstChargeAmount\":-1}"),
        ),
        (
            "ext",
            "ext.firstChargeAmount",
            json!("{\"firstChargeAmount\":\"1.5\"}"),
        ),
        (
            "ext",
            "ext.firstChargeAmount",
            json!("{\"firstChargeAmount\":true}"),
        ),
        (
            "ext",
            "ext.firstChargeTime",
            json!(format!("{{\"firstChargeTime\":\"{future}\"}}")),
        ),
        (
            "ext",
            "ext.firstChargeTime",
            json!("{\"firstChargeTime\":0}"),
        ),
        (
            "ext",
            "ext.firstChargeTime",
            json!("{\"firstChargeTime\":\"yesterday\"}"),
        ),
    ];
    for (key, path, value) in cases {
        let mut p = opentrade_example();
        p[key] = value;
        shape_error(&app, &p, "isv.invalid-parameter", path).await;
    }
    // Accepted variants: strings for numbers and booleans, numbers in ext, unknown ext keys.
    let p = json!({"order_no": "12345678", "sub_order_no": "212312", "success": "true",
        "req_id": "variants", "ext": "{\"firstChargeAmount\":0,\"firstChargeTime\":1704038400000,\"gift\":\"g1\"}"});
    let r = result(&app, &opentrade(&p)).await;
    assert_eq!(r["success"], true, "{r}");
    let t = app.trade(12345678).await;
    assert_eq!(t["open_trade"]["first_charge_amount"], 0);
    assert_eq!(t["status"], "TRADE_FINISHED");
}

#[tokio::test]
async fn session_is_required_and_must_be_valid() {
    let app = spawn_app().await;
    let before = app.trade(12345678).await;
    let e = app
        .error(&opentrade(&opentrade_example()).without("session"))
        .await;
    assert_eq!(e["code"], 26, "{e}");
    for bad in ["no-such-session", "other-session"] {
        let e = app
            .error(&opentrade(&opentrade_example()).session(bad))
            .await;
        assert_eq!(e["code"], 27, "{bad}: {e}");
    }
    // The session check comes before the shape check.
    let e = app.error(&opentrade(&json!({})).without("session")).await;
    assert_eq!(e["code"], 26, "{e}");
    assert_eq!(app.trade(12345678).await, before);
    assert_eq!(app.idempotency().await, json!([]));
}

#[tokio::test]
async fn business_refusals_leave_everything_unchanged() {
    let app = spawn_app().await;
    // ORDER_NOT_FOUND
    let before = app.idempotency().await;
    let r = result(&app, &opentrade(&callback(99999999, None, true, "nf-1"))).await;
    assert_eq!(r["success"], false);
    assert_eq!(r["error_code"], "ORDER_NOT_FOUND");
    assert_eq!(app.idempotency().await, before);

    // NO_PERMISSION: app `other` with its own session, and a trade of another seller.
    refused(
        &app,
        &opentrade(&opentrade_example())
            .app("other", "other")
            .session("other-session"),
        12345678,
        "NO_PERMISSION",
    )
    .await;
    create(
        &app,
        "trades",
        json!({"tid": 6200, "kind": "OPENTRADE", "seller_id": 3000, "buyer_id": 10001,
            "lines": [{"oid": 62001, "item_id": 30000, "price": 100, "quantity": 1}]}),
    )
    .await;
    refused(
        &app,
        &opentrade(&callback(6200, None, true, "np-1")),
        6200,
        "NO_PERMISSION",
    )
    .await;
    refused(
        &app,
        &opentrade(&callback(6200, None, true, "np-2"))
            .app("other", "other")
            .session("other-session"),
        6200,
        "NO_PERMISSION",
    )
    .await;

    // ORDER_TYPE_NOT_SUPPORTED: a generic trade, a lianbei and a carrier trade of seller 2000.
    create(
        &app,
        "trades",
        json!({"tid": 6201, "kind": "GENERIC", "seller_id": 2000, "buyer_id": 10001,
            "lines": [{"oid": 62011, "item_id": 30000, "price": 100, "quantity": 1}]}),
    )
    .await;
    for tid in [6201, 1000, 8888888] {
        refused(
            &app,
            &opentrade(&callback(tid, None, true, &format!("ty-{tid}"))),
            tid,
            "ORDER_TYPE_NOT_SUPPORTED",
        )
        .await;
    }

    // ORDER_NOT_PAID
    open_trade(&app, 6202, &[(62021, 100)], "WAIT_BUYER_PAY").await;
    for success in [true, false] {
        refused(
            &app,
            &opentrade(&callback(6202, None, success, &format!("unpaid-{success}"))),
            6202,
            "ORDER_NOT_PAID",
        )
        .await;
    }

    // ORDER_ALREADY_FINISHED: cancelled before payment, or closed by an admin refund.
    open_trade(&app, 6203, &[(62031, 100)], "WAIT_BUYER_PAY").await;
    let (s, _) = app
        .admin(Method::POST, "/admin/trades/6203/cancel", None)
        .await;
    assert_eq!(s, 200);
    for success in [true, false] {
        refused(
            &app,
            &opentrade(&callback(6203, None, success, &format!("cx-{success}"))),
            6203,
            "ORDER_ALREADY_FINISHED",
        )
        .await;
    }
    open_trade(&app, 6204, &[(62041, 100)], "WAIT_SELLER_SEND_GOODS").await;
    let (s, _) = app
        .admin(Method::POST, "/admin/trades/6204/refund", None)
        .await;
    assert_eq!(s, 200);
    refused(
        &app,
        &opentrade(&callback(6204, None, true, "rf-1")),
        6204,
        "ORDER_ALREADY_FINISHED",
    )
    .await;

    // SUB_ORDER_NOT_FOUND: an unknown oid, and the oid of another trade.
    for sub in [999, 1001, 62011] {
        refused(
            &app,
            &opentrade(&callback(12345678, Some(sub), true, &format!("sub-{sub}"))),
            12345678,
            "SUB_ORDER_NOT_FOUND",
        )
        .await;
    }

    // None of the refusals consumed a req_id: the seed example still succeeds.
    let r = result(&app, &opentrade(&opentrade_example())).await;
    assert_eq!(r["success"], true, "{r}");
}

#[tokio::test]
async fn sub_orders_settle_one_by_one() {
    let app = spawn_app().await;
    // All succeed: the trade stays open until the last one.
    open_trade(
        &app,
        6300,
        &[(63001, 1000), (63002, 2000)],
        "WAIT_SELLER_SEND_GOODS",
    )
    .await;
    let r = result(&app, &opentrade(&callback(6300, Some(63001), true, "s-1"))).await;
    assert_eq!(r["success"], true, "{r}");
    let t = app.trade(6300).await;
    assert_eq!(t["status"], "WAIT_SELLER_SEND_GOODS");
    assert_eq!(t["ended"], Value::Null);
    assert_eq!(t["open_trade"]["handling"], "PENDING");
    assert_eq!(line(&t, 63001)["status"], "TRADE_FINISHED");
    assert_eq!(line(&t, 63002)["status"], "WAIT_SELLER_SEND_GOODS");
    // A settled sub-order: the same outcome is acknowledged, the opposite refused.
    let r = result(&app, &opentrade(&callback(6300, Some(63001), true, "s-1b"))).await;
    assert!(r["error_msg"].as_str().unwrap().contains("已处理"), "{r}");
    assert_eq!(app.trade(6300).await, t);
    let r = refused(
        &app,
        &opentrade(&callback(6300, Some(63001), false, "s-1c")),
        6300,
        "ORDER_ALREADY_FINISHED",
    )
    .await;
    // It names the sub-order's status, not that of the trade, which is still open.
    assert_eq!(r["error_msg"], "子订单已处理，状态为TRADE_FINISHED", "{r}");
    let r = result(&app, &opentrade(&callback(6300, Some(63002), true, "s-2"))).await;
    assert_eq!(r["success"], true, "{r}");
    let t = app.trade(6300).await;
    assert_eq!(t["status"], "TRADE_FINISHED");
    assert!(t["consigned"].is_string() && t["ended"].is_string());
    assert_eq!(t["open_trade"]["handling"], "SUCCEEDED");
    assert_eq!(line(&t, 63001)["status"], "TRADE_FINISHED");
    assert_eq!(line(&t, 63002)["status"], "TRADE_FINISHED");
    assert_eq!(t["refunds"], json!([]));

    // All fail: the trade closes, each sub-order refunded.
    open_trade(
        &app,
        6301,
        &[(63011, 1000), (63012, 2000)],
        "WAIT_SELLER_SEND_GOODS",
    )
    .await;
    result(&app, &opentrade(&callback(6301, Some(63011), false, "x-1"))).await;
    let t = app.trade(6301).await;
    assert_eq!(t["status"], "WAIT_SELLER_SEND_GOODS");
    assert_eq!(t["refunds"].as_array().unwrap().len(), 1);
    result(&app, &opentrade(&callback(6301, Some(63012), false, "x-2"))).await;
    let t = app.trade(6301).await;
    assert_eq!(t["status"], "TRADE_CLOSED");
    assert_eq!(t["consigned"], Value::Null);
    assert_eq!(t["open_trade"]["handling"], "FAILED");
    let mut refunds: Vec<(i64, i64)> = t["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["oid"].as_i64().unwrap(), r["amount"].as_i64().unwrap()))
        .collect();
    refunds.sort();
    assert_eq!(refunds, vec![(63011, 1000), (63012, 2000)]);

    // Mixed: one failed and refunded, the other succeeded: the trade finishes.
    open_trade(
        &app,
        6302,
        &[(63021, 1000), (63022, 2000)],
        "WAIT_SELLER_SEND_GOODS",
    )
    .await;
    result(&app, &opentrade(&callback(6302, Some(63021), false, "m-1"))).await;
    result(&app, &opentrade(&callback(6302, Some(63022), true, "m-2"))).await;
    let t = app.trade(6302).await;
    assert_eq!(t["status"], "TRADE_FINISHED");
    assert_eq!(t["open_trade"]["handling"], "SUCCEEDED");
    assert_eq!(line(&t, 63021)["status"], "TRADE_CLOSED");
    assert_eq!(line(&t, 63022)["status"], "TRADE_FINISHED");
    let refunds = t["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0]["oid"], 63021);
    assert_eq!(refunds[0]["amount"], 1000);
}

/// A sub-order reported successful must stay final when the admin consigns the rest of the
/// trade; otherwise a later opposite report would settle (and refund) it a second time.
#[tokio::test]
async fn a_settled_sub_order_survives_an_admin_consign() {
    let app = spawn_app().await;
    open_trade(
        &app,
        6303,
        &[(63031, 1000), (63032, 2000)],
        "WAIT_SELLER_SEND_GOODS",
    )
    .await;
    result(&app, &opentrade(&callback(6303, Some(63031), true, "k-1"))).await;
    let (s, v) = app
        .admin(Method::POST, "/admin/trades/6303/consign", None)
        .await;
    assert_eq!(s, 200, "{v}");
    let t = app.trade(6303).await;
    assert_eq!(
        line(&t, 63031)["status"],
        "TRADE_FINISHED",
        "a final sub-order was moved back by the consign: {t}"
    );
    refused(
        &app,
        &opentrade(&callback(6303, Some(63031), false, "k-2")),
        6303,
        "ORDER_ALREADY_FINISHED",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_identical_callbacks_have_one_effect() {
    let app = Arc::new(spawn_app().await);
    let mut handles = Vec::new();
    for _ in 0..200 {
        let app = Arc::clone(&app);
        handles.push(tokio::spawn(async move {
            redact(&app.send_json(&opentrade(&opentrade_example())).await)
        }));
    }
    let mut bodies = Vec::new();
    for h in handles {
        bodies.push(h.await.expect("task"));
    }
    assert_eq!(bodies.len(), 200);
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    assert_eq!(
        bodies[0][RESPONSE]["result"],
        json!({"success": true, "req_id": "channel_1212312", "error_code": "0000", "error_msg": "消息处理成功"})
    );
    let t = app.trade(12345678).await;
    assert_eq!(t["status"], "TRADE_FINISHED");
    assert_eq!(t["refunds"], json!([]));
    let records = app.idempotency().await;
    let ours: Vec<&Value> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["scope"]
                .as_str()
                .unwrap()
                .starts_with("taobao.wt.trade.opentrade.resultcallback")
        })
        .collect();
    assert_eq!(ours.len(), 1, "{records}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conflicting_callbacks_have_one_winner() {
    let app = Arc::new(spawn_app().await);
    let mut handles = Vec::new();
    for i in 0..200 {
        let app = Arc::clone(&app);
        handles.push(tokio::spawn(async move {
            let mut p = opentrade_example();
            p["result_desc"] = json!(format!("结果{i}"));
            (i, app.ok(&opentrade(&p)).await["result"].clone())
        }));
    }
    let mut winners = Vec::new();
    let mut conflicts = 0;
    for h in handles {
        let (i, r) = h.await.expect("task");
        assert_eq!(r["req_id"], "channel_1212312");
        if r["success"] == true {
            assert_eq!(r["error_code"], "0000");
            winners.push(i);
        } else {
            assert_eq!(r["error_code"], "REQ_ID_CONFLICT", "{r}");
            conflicts += 1;
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(conflicts, 199);
    let t = app.trade(12345678).await;
    assert_eq!(t["status"], "TRADE_FINISHED");
    assert_eq!(
        t["open_trade"]["result_desc"],
        format!("结果{}", winners[0])
    );
}

/// Refunds never exceed what the buyer paid: after one sub-order failed (and was refunded), an
/// admin refund of the trade may only refund the rest.
#[tokio::test]
async fn refunds_never_exceed_the_payment() {
    let app = spawn_app().await;
    open_trade(
        &app,
        6304,
        &[(63041, 1000), (63042, 2000)],
        "WAIT_SELLER_SEND_GOODS",
    )
    .await;
    result(&app, &opentrade(&callback(6304, Some(63041), false, "r-1"))).await;
    let (s, v) = app
        .admin(Method::POST, "/admin/trades/6304/refund", None)
        .await;
    assert_eq!(s, 200, "{v}");
    let t = app.trade(6304).await;
    assert_eq!(t["status"], "TRADE_CLOSED");
    let refunded: i64 = t["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["amount"].as_i64().unwrap())
        .sum();
    assert!(
        refunded <= t["payment"].as_i64().unwrap(),
        "refunded {refunded} of a payment of {}: {t}",
        t["payment"]
    );
}
