//! `alibaba.diantao.tripartite.right.pay.notify` through real HTTP (domain.md §2.3, §3.6, §3.7):
//! the seed page's example, every row of the `msg_code` catalogue, every validation rule of the
//! field table as an `error_response` code 50, replays and the outer-order rule, `open_id`
//! scoping, and 200 concurrent identical / conflicting notifications. After every refusal the
//! store (right orders, idempotency records) is checked to be unchanged.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;

const RESPONSE: &str = "alibaba_diantao_tripartite_right_pay_notify_response";

/// The example with its two keys replaced, so that each call is a new payment.
fn example_with(idempotent_id: &str, outer: &str) -> Value {
    let mut dto = pay_example();
    dto["idempotent_id"] = json!(idempotent_id);
    dto["outer_order_id"] = json!(outer);
    dto
}

/// The answer without its `request_id`.
async fn answer(app: &TestApp, req: &Req) -> Value {
    let mut v = app.ok(req).await;
    v.as_object_mut().unwrap().remove("request_id");
    v
}

/// Right orders and idempotency records: what a refusal must leave as it was.
async fn store_state(app: &TestApp) -> (Value, Value) {
    (app.right_orders().await, app.idempotency().await)
}

fn orders(list: &Value) -> &Vec<Value> {
    list.as_array().expect("a listing")
}

/// Sends `req`, expects an in-body refusal `code`, and checks that nothing was stored.
async fn refused(app: &TestApp, req: &Req, code: &str) -> Value {
    let before = store_state(app).await;
    let r = answer(app, req).await;
    assert_eq!(r["succ"], false, "{r}");
    assert_eq!(r["msg_code"], code, "{r}");
    assert!(r["msg_info"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
    assert!(r.get("data").is_none(), "{r}");
    assert_eq!(store_state(app).await, before, "a refusal changes nothing");
    r
}

/// Sends `dto`, expects code 50 with `sub_code` naming `field`, and checks nothing was stored.
async fn shape_error(app: &TestApp, dto: &Value, sub_code: &str, field: &str) {
    let before = store_state(app).await;
    let e = app.error(&pay(dto)).await;
    assert_eq!(e["code"], 50, "{dto}: {e}");
    assert_eq!(e["msg"], "Remote service error", "{e}");
    assert_eq!(e["sub_code"], sub_code, "{dto}: {e}");
    let sub_msg = e["sub_msg"].as_str().unwrap_or_default();
    assert!(sub_msg.starts_with("非法参数"), "{e}");
    assert!(
        sub_msg.contains(&format!("tripartite_pay_notify_dto.{field}")),
        "{field}: {e}"
    );
    assert_eq!(store_state(app).await, before, "{dto}");
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[tokio::test]
async fn seed_example_creates_one_right_order() {
    let app = spawn_app().await;
    let whole = app.send_json(&pay(&pay_example())).await;
    let r = &whole[RESPONSE];
    assert_eq!(r["succ"], true, "{whole}");
    assert!(
        r.get("msg_code").is_none() && r.get("msg_info").is_none(),
        "{r}"
    );
    let open_id = r["data"]["open_id"].as_str().unwrap().to_string();
    let order_id = r["data"]["order_id"].as_str().unwrap().to_string();
    assert_eq!(open_id.len(), 21, "{open_id}");
    assert!(open_id.bytes().all(|b| b.is_ascii_digit()));
    assert!(order_id.parse::<i64>().is_ok_and(|n| n > 0), "{order_id}");
    assert_eq!(
        redact(&whole),
        json!({RESPONSE: {"succ": true, "data": {"open_id": open_id, "order_id": order_id},
            "request_id": "[request_id]"}})
    );

    let list = app.right_orders().await;
    let list = orders(&list);
    assert_eq!(list.len(), 1);
    let o = &list[0];
    let expected = json!({
        "order_id": order_id, "provider_id": 1, "app_key": "test",
        "source": "中国移动", "outer_order_id": "1057706761588580000",
        "idempotent_id": "18072887365_11434434554", "user_id": 10001, "open_id": open_id,
        "phone": "18072887365", "amount": 100, "pay_time": 1661766890994i64,
        "right_code": "flowPacket", "biz": "业务标识", "biz_scene": "xx", "title": "流量包",
        "channel_id": 1234, "extend": "{}", "status": "PAID", "created_at": o["created_at"]
    });
    assert_eq!(*o, expected);
    assert!(o["created_at"].as_i64().is_some_and(|t| t > 0));

    // The admin reads the same order.
    let (s, one) = app
        .admin(
            Method::GET,
            &format!("/admin/right-orders/{order_id}"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(one, expected);
}

#[tokio::test]
async fn replay_returns_the_same_data_and_creates_nothing() {
    let app = spawn_app().await;
    let first = answer(&app, &pay(&pay_example())).await;
    let state = store_state(&app).await;
    for _ in 0..3 {
        assert_eq!(answer(&app, &pay(&pay_example())).await, first);
    }
    // Numbers sent as numeric strings are the same payload.
    let mut as_strings = pay_example();
    as_strings["amount"] = json!("100");
    as_strings["pay_time"] = json!("1661766890994");
    as_strings["channel_id"] = json!("1234");
    assert_eq!(answer(&app, &pay(&as_strings)).await, first);
    assert_eq!(store_state(&app).await, state);

    // After the admin finishes the order, a replay still answers the original data.
    let order_id = first["data"]["order_id"].as_str().unwrap().to_string();
    let (s, v) = app
        .admin(
            Method::POST,
            &format!("/admin/right-orders/{order_id}/finish"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "FINISHED");
    assert_eq!(answer(&app, &pay(&pay_example())).await, first);
    assert_eq!(orders(&app.right_orders().await).len(), 1);
}

#[tokio::test]
async fn new_idempotent_id_same_outer_order_returns_the_existing_order() {
    let app = spawn_app().await;
    let first = answer(&app, &pay(&pay_example())).await;
    let (orders_before, records_before) = store_state(&app).await;
    assert_eq!(records_before, json!([]));
    // Another idempotent id, the same payment otherwise: the existing order.
    let again = example_with("18072887365_other", "1057706761588580000");
    assert_eq!(answer(&app, &pay(&again)).await, first);
    // Without an idempotent id, keyed by the outer order id alone: the same.
    let mut no_key = pay_example();
    no_key.as_object_mut().unwrap().remove("idempotent_id");
    assert_eq!(answer(&app, &pay(&no_key)).await, first);
    // No order was made; the new idempotent id is now bound to the order it was answered with.
    let (orders_after, records_after) = store_state(&app).await;
    assert_eq!(orders_after, orders_before);
    let records = records_after.as_array().unwrap();
    assert_eq!(records.len(), 1, "{records_after}");
    assert_eq!(
        records[0]["scope"],
        "alibaba.diantao.tripartite.right.pay.notify:1"
    );
    assert_eq!(records[0]["idem_key"], "idempotent:18072887365_other");
    assert_eq!(
        records[0]["response_body"],
        first["data"]["order_id"].as_str().unwrap()
    );
}

/// An idempotent id answered once with an existing order keeps that meaning (§2.3: same key,
/// different payload is `10005`), instead of being free for a new order the next time.
#[tokio::test]
async fn an_idempotent_id_answered_with_an_existing_order_stays_bound_to_it() {
    let app = spawn_app().await;
    let first = answer(&app, &pay(&pay_example())).await;
    let bound = example_with("bound-key", "1057706761588580000");
    assert_eq!(answer(&app, &pay(&bound)).await, first);

    // The bound id with another payment: a new outer order id, or another amount.
    refused(
        &app,
        &pay(&example_with("bound-key", "o-elsewhere")),
        "10005",
    )
    .await;
    let mut other_amount = bound.clone();
    other_amount["amount"] = json!(999);
    refused(&app, &pay(&other_amount), "10005").await;

    // The bound id with its own payment again: the same order, byte for byte.
    assert_eq!(answer(&app, &pay(&bound)).await, first);
    assert_eq!(orders(&app.right_orders().await).len(), 1);

    // A sibling app of the provider replaying through the bound id gets the same order with
    // its own open_id.
    create(
        &app,
        "apps",
        json!({"app_key": "sibling", "secret": "sibling-secret", "provider_id": 1}),
    )
    .await;
    let sibling = app.ok(&pay(&bound).app("sibling", "sibling-secret")).await;
    assert_eq!(sibling["data"]["order_id"], first["data"]["order_id"]);
    assert_ne!(sibling["data"]["open_id"], first["data"]["open_id"]);

    // Unbound ids are as free as before.
    let fresh = answer(&app, &pay(&example_with("fresh-key", "o-fresh"))).await;
    assert_eq!(fresh["succ"], true, "{fresh}");
    assert_ne!(fresh["data"]["order_id"], first["data"]["order_id"]);
    assert_eq!(orders(&app.right_orders().await).len(), 2);
}

#[tokio::test]
async fn idempotent_id_reused_with_different_content_is_10005() {
    let app = spawn_app().await;
    answer(&app, &pay(&pay_example())).await;
    for (field, value) in [
        ("amount", json!(200)),
        ("outer_order_id", json!("999")),
        ("title", json!("另一个流量包")),
        ("extend", json!("{\"a\":1}")),
        ("pay_time", json!(1661766890995i64)),
    ] {
        let mut dto = pay_example();
        dto[field] = value;
        refused(&app, &pay(&dto), "10005").await;
    }
    assert_eq!(orders(&app.right_orders().await).len(), 1);
}

#[tokio::test]
async fn outer_order_id_reused_with_different_content_is_10006() {
    let app = spawn_app().await;
    answer(&app, &pay(&pay_example())).await;
    let mut dto = example_with("another-key", "1057706761588580000");
    dto["amount"] = json!(300);
    refused(&app, &pay(&dto), "10006").await;
    dto.as_object_mut().unwrap().remove("idempotent_id");
    refused(&app, &pay(&dto), "10006").await;
    assert_eq!(orders(&app.right_orders().await).len(), 1);
}

#[tokio::test]
async fn unbound_phone_is_10003() {
    let app = spawn_app().await;
    let mut dto = pay_example();
    dto["phone_number"] = json!("13900000000");
    refused(&app, &pay(&dto), "10003").await;
    assert!(orders(&app.right_orders().await).is_empty());
    // The refusal did not burn the keys: the right phone then succeeds.
    assert_eq!(answer(&app, &pay(&pay_example())).await["succ"], true);
}

#[tokio::test]
async fn unknown_or_disabled_right_is_10004_when_a_catalog_exists() {
    let app = spawn_app().await;
    create(
        &app,
        "rights",
        json!({"provider_id": 1, "right_code": "oldPack", "title": "旧包", "enabled": false}),
    )
    .await;
    for code in ["noSuchRight", "oldPack", "flowpacket"] {
        let mut dto = example_with(&format!("k-{code}"), &format!("o-{code}"));
        dto["right_code"] = json!(code);
        refused(&app, &pay(&dto), "10004").await;
    }
    assert!(orders(&app.right_orders().await).is_empty());
    // No right_code at all is not checked against the catalog.
    let mut dto = example_with("k-none", "o-none");
    dto.as_object_mut().unwrap().remove("right_code");
    assert_eq!(answer(&app, &pay(&dto)).await["succ"], true);

    // A provider without a catalog accepts any well-formed right code.
    create(
        &app,
        "providers",
        json!({"provider_id": 2, "name": "无目录权益方", "sources": ["中国联通"]}),
    )
    .await;
    create(
        &app,
        "apps",
        json!({"app_key": "prov2", "secret": "prov2-secret", "provider_id": 2}),
    )
    .await;
    let mut dto = example_with("k-p2", "o-p2");
    dto["source"] = json!("中国联通");
    dto["right_code"] = json!("anything_goes");
    let r = answer(&app, &pay(&dto).app("prov2", "prov2-secret")).await;
    assert_eq!(r["succ"], true, "{r}");
    assert_eq!(orders(&app.right_orders().await).len(), 2);
}

#[tokio::test]
async fn source_not_allowed_is_10007() {
    let app = spawn_app().await;
    let mut dto = pay_example();
    dto["source"] = json!("中国联通");
    refused(&app, &pay(&dto), "10007").await;
    // An app bound to no provider: every source is refused.
    refused(&app, &pay(&pay_example()).app("other", "other"), "10007").await;
    assert!(orders(&app.right_orders().await).is_empty());
}

#[tokio::test]
async fn missing_fields_are_missing_parameter() {
    let app = spawn_app().await;
    for field in ["source", "outer_order_id", "phone_number"] {
        let mut dto = pay_example();
        dto.as_object_mut().unwrap().remove(field);
        shape_error(&app, &dto, "isv.missing-parameter", field).await;
        dto[field] = json!("");
        shape_error(&app, &dto, "isv.missing-parameter", field).await;
        dto[field] = Value::Null;
        shape_error(&app, &dto, "isv.missing-parameter", field).await;
    }
    let mut dto = pay_example();
    dto["source"] = json!("   ");
    shape_error(&app, &dto, "isv.missing-parameter", "source").await;

    // The DTO itself missing or empty.
    for req in [
        Req::new("alibaba.diantao.tripartite.right.pay.notify"),
        Req::new("alibaba.diantao.tripartite.right.pay.notify")
            .param("tripartite_pay_notify_dto", ""),
    ] {
        let e = app.error(&req).await;
        assert_eq!(e["code"], 50, "{e}");
        assert_eq!(e["sub_code"], "isv.missing-parameter");
        let sub_msg = e["sub_msg"].as_str().unwrap();
        assert!(
            sub_msg.starts_with("非法参数") && sub_msg.contains("tripartite_pay_notify_dto"),
            "{e}"
        );
    }
    // Not a JSON object.
    for raw in ["[]", "not json", "42", "\"text\""] {
        let req = Req::new("alibaba.diantao.tripartite.right.pay.notify")
            .param("tripartite_pay_notify_dto", raw);
        let e = app.error(&req).await;
        assert_eq!(e["code"], 50, "{raw}: {e}");
        assert_eq!(e["sub_code"], "isv.invalid-parameter", "{raw}");
    }
    assert!(orders(&app.right_orders().await).is_empty());
    assert_eq!(app.idempotency().await, json!([]));
}

#[tokio::test]
async fn every_field_rule_is_invalid_parameter() {
    let app = spawn_app().await;
    let long = |n: usize| "a".repeat(n);
    let cases: Vec<(&str, Value)> = vec![
        ("phone_number", json!("12345")),
        ("phone_number", json!("12072887365")),
        ("phone_number", json!("1807288736a")),
        ("phone_number", json!("180728873650")),
        ("phone_number", json!("+8618072887365")),
        ("phone_number", json!(" 18072887365")),
        ("amount", json!(-1)),
        ("amount", json!("-1")),
        ("amount", json!(1.5)),
        ("amount", json!("1.5")),
        ("amount", json!("abc")),
        ("amount", json!(true)),
        ("pay_time", json!(now_ms() + 24 * 3600 * 1000)),
        ("pay_time", json!(0)),
        ("pay_time", json!(-5)),
        ("pay_time", json!("soon")),
        ("right_code", json!("flow-Packet")),
        ("right_code", json!("流量包")),
        ("right_code", json!("flow Packet")),
        ("right_code", json!(long(65))),
        ("extend", json!("[]")),
        ("extend", json!("not json")),
        ("extend", json!("1")),
        ("extend", json!({"a": 1})),
        ("extend", json!(format!("{{\"k\":\"{}\"}}", long(2050)))),
        ("channel_id", json!(0)),
        ("channel_id", json!(-1)),
        ("channel_id", json!("x")),
        ("source", json!("中".repeat(65))),
        ("outer_order_id", json!(long(65))),
        ("outer_order_id", json!("abc def")),
        ("outer_order_id", json!("订单1")),
        ("idempotent_id", json!(long(129))),
        ("idempotent_id", json!("has space")),
        ("biz", json!("业".repeat(65))),
        ("biz_scene", json!(long(65))),
        ("title", json!("流".repeat(129))),
        ("source", json!(["中国移动"])),
    ];
    for (field, value) in cases {
        let mut dto = pay_example();
        dto[field] = value;
        shape_error(&app, &dto, "isv.invalid-parameter", field).await;
    }
    assert!(orders(&app.right_orders().await).is_empty());

    // The limits themselves are accepted.
    let mut dto = example_with(&"i".repeat(128), &"o".repeat(64));
    dto["source"] = json!("中国移动");
    dto["biz_scene"] = json!(long(64));
    dto["title"] = json!("流".repeat(128));
    dto["amount"] = json!(0);
    dto["pay_time"] = json!(now_ms());
    let r = answer(&app, &pay(&dto)).await;
    assert_eq!(r["succ"], true, "{r}");
}

#[tokio::test]
async fn defaults_for_optional_fields() {
    let app = spawn_app().await;
    let dto =
        json!({"source": "中国移动", "outer_order_id": "minimal-1", "phone_number": "18072887365"});
    let before = now_ms();
    let r = answer(&app, &pay(&dto)).await;
    assert_eq!(r["succ"], true, "{r}");
    let list = app.right_orders().await;
    let o = &orders(&list)[0];
    assert_eq!(o["amount"], 0);
    assert_eq!(o["extend"], "{}");
    assert_eq!(o["idempotent_id"], Value::Null);
    assert_eq!(o["right_code"], Value::Null);
    let pay_time = o["pay_time"].as_i64().unwrap();
    assert!(
        pay_time >= before - 1000 && pay_time <= now_ms() + 1000,
        "{o}"
    );
    // A replay without pay_time is still the same payment.
    assert_eq!(answer(&app, &pay(&dto)).await, r);
    assert_eq!(orders(&app.right_orders().await).len(), 1);
}

#[tokio::test]
async fn open_id_is_stable_per_app_and_differs_across_apps() {
    let app = spawn_app().await;
    create(
        &app,
        "apps",
        json!({"app_key": "prov1b", "secret": "prov1b-secret", "provider_id": 1}),
    )
    .await;
    let a1 = answer(&app, &pay(&example_with("a-1", "a-1"))).await;
    let a2 = answer(&app, &pay(&example_with("a-2", "a-2"))).await;
    let b1 = answer(
        &app,
        &pay(&example_with("b-1", "b-1")).app("prov1b", "prov1b-secret"),
    )
    .await;
    let b2 = answer(
        &app,
        &pay(&example_with("b-2", "b-2")).app("prov1b", "prov1b-secret"),
    )
    .await;
    for r in [&a1, &a2, &b1, &b2] {
        assert_eq!(r["succ"], true, "{r}");
    }
    assert_eq!(a1["data"]["open_id"], a2["data"]["open_id"]);
    assert_eq!(b1["data"]["open_id"], b2["data"]["open_id"]);
    assert_ne!(a1["data"]["open_id"], b1["data"]["open_id"]);
    let ids: Vec<&Value> = [&a1, &a2, &b1, &b2]
        .iter()
        .map(|r| &r["data"]["order_id"])
        .collect();
    for i in 0..ids.len() {
        for j in i + 1..ids.len() {
            assert_ne!(ids[i], ids[j], "order ids are distinct");
        }
    }
    // Another user gets another open_id under the same app.
    create(
        &app,
        "users",
        json!({"user_id": 10002, "nick": "另一个用户", "mobile": "13912345678"}),
    )
    .await;
    let mut dto = example_with("c-1", "c-1");
    dto["phone_number"] = json!("13912345678");
    let c1 = answer(&app, &pay(&dto)).await;
    assert_ne!(c1["data"]["open_id"], a1["data"]["open_id"]);
    let list = app.right_orders().await;
    let by_app: Vec<(&Value, &Value)> = orders(&list)
        .iter()
        .map(|o| (&o["app_key"], &o["open_id"]))
        .collect();
    assert_eq!(by_app.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_identical_notifications_make_one_order() {
    let app = Arc::new(spawn_app().await);
    let mut handles = Vec::new();
    for _ in 0..200 {
        let app = Arc::clone(&app);
        handles.push(tokio::spawn(async move {
            let mut v = app.ok(&pay(&pay_example())).await;
            v.as_object_mut().unwrap().remove("request_id");
            v
        }));
    }
    let mut answers = Vec::new();
    for h in handles {
        answers.push(h.await.expect("task"));
    }
    assert_eq!(answers.len(), 200);
    assert_eq!(answers[0]["succ"], true, "{}", answers[0]);
    assert!(answers.iter().all(|a| *a == answers[0]));
    let list = app.right_orders().await;
    assert_eq!(orders(&list).len(), 1);
    assert_eq!(
        orders(&list)[0]["order_id"].as_str().unwrap(),
        answers[0]["data"]["order_id"].as_str().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conflicting_notifications_have_one_winner() {
    let app = Arc::new(spawn_app().await);
    let mut handles = Vec::new();
    for i in 0..200i64 {
        let app = Arc::clone(&app);
        handles.push(tokio::spawn(async move {
            let mut dto = pay_example();
            dto["amount"] = json!(100 + i);
            let mut v = app.ok(&pay(&dto)).await;
            v.as_object_mut().unwrap().remove("request_id");
            (i, v)
        }));
    }
    let mut winners = Vec::new();
    let mut refusals = 0;
    for h in handles {
        let (i, v) = h.await.expect("task");
        if v["succ"] == true {
            winners.push((i, v));
        } else {
            assert_eq!(v["msg_code"], "10005", "{v}");
            assert!(v.get("data").is_none());
            refusals += 1;
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(refusals, 199);
    let list = app.right_orders().await;
    assert_eq!(orders(&list).len(), 1);
    let (i, v) = &winners[0];
    assert_eq!(orders(&list)[0]["amount"], 100 + i);
    assert_eq!(
        orders(&list)[0]["order_id"].as_str().unwrap(),
        v["data"]["order_id"].as_str().unwrap()
    );
}

/// Two apps of one provider share its orders (the keys are scoped to the provider), but each app
/// only ever sees its own `open_id`: a replay of another app's notification answers the same
/// order with the caller's open_id.
#[tokio::test]
async fn a_replay_from_a_sibling_app_gets_its_own_open_id() {
    let app = spawn_app().await;
    create(
        &app,
        "apps",
        json!({"app_key": "prov1b", "secret": "prov1b-secret", "provider_id": 1}),
    )
    .await;
    let sibling = |dto: &Value| pay(dto).app("prov1b", "prov1b-secret");
    let own = answer(&app, &sibling(&example_with("own-1", "own-1"))).await;
    let first = answer(&app, &pay(&pay_example())).await;
    let state = store_state(&app).await;
    let replay = answer(&app, &sibling(&pay_example())).await;
    assert_eq!(replay["succ"], true, "{replay}");
    assert_eq!(replay["data"]["order_id"], first["data"]["order_id"]);
    assert_eq!(
        replay["data"]["open_id"], own["data"]["open_id"],
        "the sibling app was given another app's open_id"
    );
    assert_eq!(store_state(&app).await, state);
    // Each app's own replays stay identical.
    assert_eq!(answer(&app, &pay(&pay_example())).await, first);
    assert_eq!(answer(&app, &sibling(&pay_example())).await, replay);
}
