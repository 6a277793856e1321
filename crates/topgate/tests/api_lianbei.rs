//! `alibaba.alisports.lianbei.order.notice` through real HTTP (domain.md §2.2, §3.4, §5): the seed
//! page's example for orders 1000 and 1000000, every `OrderNoticeDto` field, the status code
//! derived from the trade as it moves through the admin lifecycle, 403/404, codes 40/41, masking
//! of nicks and mobiles of every length class, and 200 concurrent reads.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;

/// Replaces every `request_id` value so that bodies can be compared and snapshotted.
async fn event(app: &TestApp, tid: i64, ev: &str) -> (u16, Value) {
    app.admin(Method::POST, &format!("/admin/trades/{tid}/{ev}"), None)
        .await
}

/// A lianbei trade of sandbox store 1 for `buyer`, one line of item 10000.
fn lianbei_trade(tid: i64, buyer: i64, status: &str) -> Value {
    json!({"tid": tid, "kind": "LIANBEI", "seller_id": 2000, "buyer_id": buyer, "status": status,
        "source": "xpos", "out_id": format!("out-{tid}"),
        "lines": [{"oid": tid * 10 + 1, "item_id": 10000, "price": 1, "quantity": 1}],
        "store_sale": {"store_id": 1, "guider_id": "7", "guider_name": "导购", "operator_id": "8", "operator_name": "收银"}})
}

/// The `result` of a lianbei call.
async fn notice(app: &TestApp, req: &Req) -> Value {
    app.ok(req).await["result"].clone()
}

async fn status_of(app: &TestApp, tid: i64) -> Value {
    let r = notice(app, &lianbei(&tid.to_string())).await;
    assert_eq!(r["alisp_code"], 200, "{r}");
    r["alisp_data"].clone()
}

#[tokio::test]
async fn seed_examples_answer_the_documented_order() {
    let app = spawn_app().await;
    for id in ["1000", "1000000"] {
        let whole = app.send_json(&lianbei(id)).await;
        let text = serde_json::to_string_pretty(&redact(&whole)).unwrap();
        insta::assert_snapshot!(format!("seed_example_{id}"), text);
        let r = &whole["alibaba_alisports_lianbei_order_notice_response"]["result"];
        assert_eq!(
            r["alisp_data"],
            json!({
                "biz_order_id": id, "gmt_create": "2018-10-15 00:00:00",
                "pay_time": "2018-10-15 00:00:00", "end_time": "2018-10-15 00:00:00",
                "buyer_nick": "买**称", "auction_id": 10000, "auction_title": "测试商品",
                "auction_pic_url": "http://url", "auction_price": 1, "buy_amount": 1,
                "discount_fee": 0, "tf": 1, "mobile": "138****00", "source": "xpos", "sku_id": 0,
                "sku": "sku", "nego_price": 0, "status": 100, "guider_id": "1",
                "guider_name": "导购员名称", "operator_id": "1", "operator_name": "收营员名称",
                "out_id": "业务订单id"
            })
        );
        assert_eq!(r["alisp_code"], 200);
        assert_eq!(r["alisp_msg"], "success");
    }
}

#[tokio::test]
async fn every_dto_field_comes_from_the_trade() {
    let app = spawn_app().await;
    create(
        &app,
        "users",
        json!({"user_id": 50100, "nick": "健身达人小王", "mobile": "13912345678"}),
    )
    .await;
    create(&app, "trades", json!({"tid": 5100, "kind": "LIANBEI", "seller_id": 2000, "buyer_id": 50100,
        "status": "TRADE_FINISHED", "created": "2024-01-02 03:04:05", "paid": "2024-01-02 03:05:00",
        "ended": "2024-01-03 00:00:00", "source": "xpos", "out_id": "GYM-0001",
        "lines": [{"oid": 51001, "item_id": 30000, "price": 500, "quantity": 3, "discount_fee": 200,
                   "sku_id": 77, "sku_text": "卡种:月卡"}],
        "store_sale": {"store_id": 1, "guider_id": "g9", "guider_name": "李导购", "operator_id": "c3", "operator_name": "王收银"}})).await;
    let r = notice(&app, &lianbei("5100")).await;
    assert_eq!(r["alisp_code"], 200);
    assert_eq!(
        r["alisp_data"],
        json!({
            "biz_order_id": "5100", "gmt_create": "2024-01-02 03:04:05",
            "pay_time": "2024-01-02 03:05:00", "end_time": "2024-01-03 00:00:00",
            "buyer_nick": "健**王", "auction_id": 30000, "auction_title": "充值送活动",
            "auction_pic_url": "", "auction_price": 500, "buy_amount": 3, "discount_fee": 200,
            "tf": 1300, "mobile": "139****78", "source": "xpos", "sku_id": 77, "sku": "卡种:月卡",
            "nego_price": 0, "status": 100, "guider_id": "g9", "guider_name": "李导购",
            "operator_id": "c3", "operator_name": "王收银", "out_id": "GYM-0001"
        })
    );
    let raw = app.send(&lianbei("5100")).await;
    assert!(
        !raw.contains("13912345678") && !raw.contains("健身达人小王"),
        "{raw}"
    );

    // A negotiated total below the discount: tf = max(0, nego − discount); an online sale has no
    // guide or cashier.
    create(&app, "trades", json!({"tid": 5101, "kind": "LIANBEI", "seller_id": 2000, "buyer_id": 50100,
        "status": "WAIT_SELLER_SEND_GOODS", "source": "taobao",
        "lines": [{"oid": 51011, "item_id": 10000, "price": 800, "quantity": 2, "nego_price": 1000, "discount_fee": 1200}],
        "store_sale": {"store_id": 1}})).await;
    let d = status_of(&app, 5101).await;
    assert_eq!(d["nego_price"], 1000);
    assert_eq!(d["auction_price"], 800);
    assert_eq!(d["buy_amount"], 2);
    assert_eq!(d["discount_fee"], 1200);
    assert_eq!(d["tf"], 0);
    assert_eq!(d["source"], "taobao");
    for k in [
        "guider_id",
        "guider_name",
        "operator_id",
        "operator_name",
        "out_id",
    ] {
        assert_eq!(d[k], "", "{k}");
    }
    assert_eq!(d["status"], 20);
    assert!(d.get("end_time").is_none(), "{d}");
    assert!(d["pay_time"].is_string());
}

#[tokio::test]
async fn status_is_derived_from_each_trade_status() {
    let app = spawn_app().await;
    let cases = [
        (5201, "WAIT_BUYER_PAY", 10, false, false),
        (5202, "WAIT_SELLER_SEND_GOODS", 20, true, false),
        (5203, "WAIT_BUYER_CONFIRM_GOODS", 20, true, false),
        (5204, "TRADE_FINISHED", 100, true, true),
        (5205, "TRADE_CLOSED_BY_TAOBAO", 200, false, true),
        (5206, "TRADE_CLOSED", 300, true, true),
    ];
    for (tid, status, code, paid, ended) in cases {
        create(&app, "trades", lianbei_trade(tid, 888888, status)).await;
        let d = status_of(&app, tid).await;
        assert_eq!(d["status"], code, "{status}: {d}");
        assert!(d["gmt_create"].is_string(), "{d}");
        assert_eq!(d.get("pay_time").is_some(), paid, "{status}: {d}");
        assert_eq!(d.get("end_time").is_some(), ended, "{status}: {d}");
        // Times never go backwards.
        if let (Some(p), Some(e)) = (d["pay_time"].as_str(), d["end_time"].as_str()) {
            assert!(p <= e && d["gmt_create"].as_str().unwrap() <= p, "{d}");
        }
    }
}

#[tokio::test]
async fn status_follows_the_admin_lifecycle() {
    let app = spawn_app().await;
    // pay → consign → confirm: 10 → 20 → 20 → 100
    create(
        &app,
        "trades",
        lianbei_trade(5301, 888888, "WAIT_BUYER_PAY"),
    )
    .await;
    assert_eq!(status_of(&app, 5301).await["status"], 10);
    for (ev, code) in [("pay", 20), ("consign", 20), ("confirm", 100)] {
        let (s, v) = event(&app, 5301, ev).await;
        assert_eq!(s, 200, "{ev}: {v}");
        let d = status_of(&app, 5301).await;
        assert_eq!(d["status"], code, "after {ev}: {d}");
    }
    let d = status_of(&app, 5301).await;
    assert!(
        d["pay_time"].is_string() && d["end_time"].is_string(),
        "{d}"
    );

    // cancel before payment: 10 → 200
    create(
        &app,
        "trades",
        lianbei_trade(5302, 888888, "WAIT_BUYER_PAY"),
    )
    .await;
    let (s, _) = event(&app, 5302, "cancel").await;
    assert_eq!(s, 200);
    let d = status_of(&app, 5302).await;
    assert_eq!(d["status"], 200);
    assert!(
        d.get("pay_time").is_none() && d["end_time"].is_string(),
        "{d}"
    );

    // refund after payment (before and after shipment): 20 → 300
    create(
        &app,
        "trades",
        lianbei_trade(5303, 888888, "WAIT_SELLER_SEND_GOODS"),
    )
    .await;
    create(
        &app,
        "trades",
        lianbei_trade(5304, 888888, "WAIT_BUYER_CONFIRM_GOODS"),
    )
    .await;
    for tid in [5303, 5304] {
        let (s, v) = event(&app, tid, "refund").await;
        assert_eq!(s, 200, "{v}");
        let d = status_of(&app, tid).await;
        assert_eq!(d["status"], 300, "{d}");
        assert!(
            d["pay_time"].is_string() && d["end_time"].is_string(),
            "{d}"
        );
    }

    // Disallowed edges are refused (409) and change neither the trade nor the answer.
    let disallowed = [
        (5301, "refund"),
        (5301, "cancel"),
        (5302, "pay"),
        (5303, "confirm"),
        (5303, "pay"),
    ];
    for (tid, ev) in disallowed {
        let before_trade = app.trade(tid).await;
        let before = status_of(&app, tid).await;
        let (s, v) = event(&app, tid, ev).await;
        assert_eq!(s, 409, "{ev} on {tid}: {v}");
        assert_eq!(app.trade(tid).await, before_trade, "{ev} on {tid}");
        assert_eq!(status_of(&app, tid).await, before, "{ev} on {tid}");
    }
    create(
        &app,
        "trades",
        lianbei_trade(5305, 888888, "WAIT_BUYER_PAY"),
    )
    .await;
    for ev in ["consign", "confirm", "refund"] {
        let before = app.trade(5305).await;
        let (s, _) = event(&app, 5305, ev).await;
        assert_eq!(s, 409, "{ev}");
        assert_eq!(app.trade(5305).await, before);
        assert_eq!(status_of(&app, 5305).await["status"], 10);
    }
}

#[tokio::test]
async fn missing_and_non_lianbei_orders_are_404() {
    let app = spawn_app().await;
    create(
        &app,
        "trades",
        json!({"tid": 5401, "kind": "GENERIC", "seller_id": 2000, "buyer_id": 888888,
        "lines": [{"oid": 54011, "item_id": 10000, "price": 1, "quantity": 1}]}),
    )
    .await;
    for id in [
        "424242",
        "12345678",
        "8888888",
        "5401",
        "9223372036854775807",
    ] {
        let r = notice(&app, &lianbei(id)).await;
        assert_eq!(
            r,
            json!({"alisp_code": 404, "alisp_msg": "order not found"}),
            "{id}"
        );
    }
}

#[tokio::test]
async fn another_partners_order_is_403() {
    let app = spawn_app().await;
    create(&app, "partners", json!({"id": 2, "name": "另一家健身房"})).await;
    create(
        &app,
        "stores",
        json!({"store_id": 2, "partner_id": 2, "name": "二号店"}),
    )
    .await;
    let mut t = lianbei_trade(5501, 888888, "TRADE_FINISHED");
    t["store_sale"]["store_id"] = json!(2);
    create(&app, "trades", t).await;
    create(
        &app,
        "apps",
        json!({"app_key": "partner2", "secret": "partner2-secret", "partner_id": 2}),
    )
    .await;
    let forbidden = json!({"alisp_code": 403, "alisp_msg": "no permission"});

    assert_eq!(notice(&app, &lianbei("5501")).await, forbidden);
    let p2 = |id: &str| lianbei(id).app("partner2", "partner2-secret");
    let r = notice(&app, &p2("5501")).await;
    assert_eq!(r["alisp_code"], 200, "{r}");
    assert_eq!(r["alisp_data"]["biz_order_id"], "5501");
    assert_eq!(notice(&app, &p2("1000")).await, forbidden);
    assert_eq!(
        notice(&app, &p2("424242")).await,
        json!({"alisp_code": 404, "alisp_msg": "order not found"})
    );
    for id in ["1000", "1000000", "5501"] {
        let other = lianbei(id).app("other", "other");
        assert_eq!(notice(&app, &other).await, forbidden, "{id}");
    }
}

#[tokio::test]
async fn biz_order_id_missing_is_40_and_malformed_is_41() {
    let app = spawn_app().await;
    for req in [
        Req::new("alibaba.alisports.lianbei.order.notice"),
        lianbei(""),
    ] {
        let e = app.error(&req).await;
        assert_eq!(e["code"], 40, "{e}");
        assert_eq!(e["msg"], "Missing required arguments:biz_order_id");
    }
    for bad in [
        "abc",
        "12a",
        "1.5",
        "0",
        "-1",
        "99999999999999999999",
        " 1000",
    ] {
        let e = app.error(&lianbei(bad)).await;
        assert_eq!(e["code"], 41, "{bad}: {e}");
        assert_eq!(e["msg"], "Invalid arguments:biz_order_id", "{bad}");
    }
}

#[tokio::test]
async fn nick_and_mobile_are_masked_per_section_5() {
    let app = spawn_app().await;
    let cases: [(&str, Option<&str>, &str, &str); 10] = [
        ("张", Some("13912345678"), "*", "139****78"),
        ("张三", Some("123456"), "张*", "123****56"),
        ("tb12345", Some("1234567890"), "t**5", "123****90"),
        ("abc", Some("12345"), "a**c", "****"),
        ("😀😁😂", Some("1"), "😀**😂", "****"),
        ("a🎉", Some(""), "a*", ""),
        ("🐼", None, "*", ""),
        ("🐼🐻", Some("1234567"), "🐼*", "123****67"),
        (
            "é中文🎉",
            Some("１３８００００００００"),
            "é**🎉",
            "１３８****００",
        ),
        ("", Some("12345678901234"), "", "123****34"),
    ];
    for (i, (nick, mobile, masked_nick, masked_mobile)) in cases.iter().enumerate() {
        let uid = 50200 + i as i64;
        let tid = 5600 + i as i64;
        create(
            &app,
            "users",
            json!({"user_id": uid, "nick": nick, "mobile": mobile}),
        )
        .await;
        create(&app, "trades", lianbei_trade(tid, uid, "TRADE_FINISHED")).await;
        let d = status_of(&app, tid).await;
        assert_eq!(d["buyer_nick"], *masked_nick, "nick {nick:?}");
        assert_eq!(d["mobile"], *masked_mobile, "mobile {mobile:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reads_answer_identically() {
    let app = Arc::new(spawn_app().await);
    let before = app.trade(1000).await;
    let mut handles = Vec::new();
    for _ in 0..200 {
        let app = Arc::clone(&app);
        handles.push(tokio::spawn(async move {
            let v = app.send_json(&lianbei("1000")).await;
            redact(&v)
        }));
    }
    let mut bodies = Vec::new();
    for h in handles {
        bodies.push(h.await.expect("task"));
    }
    assert_eq!(bodies.len(), 200);
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{}", bodies[0]);
    assert_eq!(
        bodies[0]["alibaba_alisports_lianbei_order_notice_response"]["result"]["alisp_code"],
        200
    );
    assert_eq!(app.trade(1000).await, before, "a read changes nothing");
}
