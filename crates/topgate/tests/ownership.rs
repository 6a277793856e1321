//! Ownership (domain.md decisions, §3.7 invariant 8) through real HTTP: app `other`, which owns
//! nothing, gets the documented refusal on every API for every sandbox entity, and nothing
//! changes (trades, right orders, idempotency records compared before and after). Afterwards the
//! owning app `test` still succeeds with the very same requests: the refusals consumed no key.

mod common;

use common::*;
use serde_json::{json, Value};

const SANDBOX_TRADES: [i64; 4] = [8888888, 1000, 1000000, 12345678];

/// Everything the refusals must leave untouched.
async fn snapshot(app: &TestApp) -> Value {
    let mut trades = Vec::new();
    for tid in SANDBOX_TRADES {
        trades.push(app.trade(tid).await);
    }
    json!({"trades": trades, "right_orders": app.right_orders().await,
        "idempotency": app.idempotency().await})
}

fn as_other(req: Req) -> Req {
    req.app("other", "other")
}

/// The supplier example in each notify type.
fn supplier_models() -> Vec<Value> {
    let shipment = supplier_example();
    let mut receipt = supplier_example();
    receipt["notify_type"] = json!("2");
    receipt["receive_status"] = json!(true);
    let mut activation = supplier_example();
    activation["notify_type"] = json!("0");
    activation["iccid"] = json!("888");
    vec![shipment, receipt, activation]
}

#[tokio::test]
async fn other_app_is_refused_everywhere_and_changes_nothing() {
    let app = spawn_app().await;
    let before = snapshot(&app).await;

    // alibaba.base.order.supplier.notify on 8888888: in-body NO_PERMISSION, whatever the type.
    for model in supplier_models() {
        let r = app.ok(&as_other(supplier(&model))).await;
        let result = &r["result"];
        assert_eq!(result["success"], false, "{r}");
        assert_eq!(result["model"], false, "{r}");
        assert_eq!(result["code"], "NO_PERMISSION", "{r}");
    }

    // alibaba.alisports.lianbei.order.notice: 403 for both lianbei orders, 404 for the others.
    for id in ["1000", "1000000"] {
        let r = app.ok(&as_other(lianbei(id))).await;
        assert_eq!(
            r["result"],
            json!({"alisp_code": 403, "alisp_msg": "no permission"}),
            "{id}"
        );
    }
    for id in ["8888888", "12345678"] {
        let r = app.ok(&as_other(lianbei(id))).await;
        assert_eq!(r["result"]["alisp_code"], 404, "{id}: {r}");
        assert!(r["result"].get("alisp_data").is_none());
    }

    // alibaba.diantao.tripartite.right.pay.notify: 10007 (no source belongs to `other`).
    let mut without_key = pay_example();
    without_key.as_object_mut().unwrap().remove("idempotent_id");
    for dto in [pay_example(), without_key] {
        let r = app.ok(&as_other(pay(&dto))).await;
        assert_eq!(r["succ"], false, "{r}");
        assert_eq!(r["msg_code"], "10007", "{r}");
        assert!(r.get("data").is_none(), "{r}");
    }

    // taobao.wt.trade.opentrade.resultcallback on 12345678.
    let mut failure = opentrade_example();
    failure["success"] = json!(false);
    let mut whole_trade = opentrade_example();
    whole_trade.as_object_mut().unwrap().remove("sub_order_no");
    for param0 in [opentrade_example(), failure, whole_trade] {
        // With its own session: NO_PERMISSION in the body.
        let r = app
            .ok(&as_other(opentrade(&param0)).session("other-session"))
            .await;
        assert_eq!(r["result"]["success"], false, "{r}");
        assert_eq!(r["result"]["error_code"], "NO_PERMISSION", "{r}");
        assert_eq!(r["result"]["req_id"], "channel_1212312");
        // With the seller's session of app `test`: the session is not `other`'s (27).
        let e = app.error(&as_other(opentrade(&param0))).await;
        assert_eq!(e["code"], 27, "{e}");
        // Without a session: 26.
        let e = app
            .error(&as_other(opentrade(&param0)).without("session"))
            .await;
        assert_eq!(e["code"], 26, "{e}");
    }

    assert_eq!(snapshot(&app).await, before, "the refusals changed nothing");

    // The owner still succeeds with the same requests: no key was consumed.
    let r = app.ok(&supplier(&supplier_example())).await;
    assert_eq!(r["result"]["success"], true, "{r}");
    let r = app.ok(&lianbei("1000")).await;
    assert_eq!(r["result"]["alisp_code"], 200, "{r}");
    let r = app.ok(&pay(&pay_example())).await;
    assert_eq!(r["succ"], true, "{r}");
    let r = app.ok(&opentrade(&opentrade_example())).await;
    assert_eq!(r["result"]["success"], true, "{r}");
    assert_eq!(app.trade(12345678).await["status"], "TRADE_FINISHED");
}

#[tokio::test]
async fn other_app_is_refused_after_the_owner_acted_too() {
    let app = spawn_app().await;
    // The owner acts first: the refusals must not replay the owner's stored answers.
    assert_eq!(
        app.ok(&supplier(&supplier_example())).await["result"]["success"],
        true
    );
    assert_eq!(app.ok(&pay(&pay_example())).await["succ"], true);
    assert_eq!(
        app.ok(&opentrade(&opentrade_example())).await["result"]["success"],
        true
    );
    let before = snapshot(&app).await;

    let r = app.ok(&as_other(supplier(&supplier_example()))).await;
    assert_eq!(r["result"]["code"], "NO_PERMISSION", "{r}");
    let r = app.ok(&as_other(pay(&pay_example()))).await;
    assert_eq!(r["msg_code"], "10007", "{r}");
    assert!(r.get("data").is_none(), "the owner's data leaked: {r}");
    let r = app
        .ok(&as_other(opentrade(&opentrade_example())).session("other-session"))
        .await;
    assert_eq!(r["result"]["error_code"], "NO_PERMISSION", "{r}");
    for id in ["1000", "1000000"] {
        let r = app.ok(&as_other(lianbei(id))).await;
        assert_eq!(r["result"]["alisp_code"], 403, "{r}");
    }

    assert_eq!(snapshot(&app).await, before);
}
