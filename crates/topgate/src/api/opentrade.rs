//! `taobao.wt.trade.opentrade.resultcallback`: a seller (with its session) reports the result of
//! a recharge-gift order (domain.md §2.4, §3.5). Success ships the virtual goods and confirms
//! receipt in one step (trade finished); failure closes the trade with a refund record.
//!
//! With `sub_order_no` only that sub-order is settled; the trade becomes final once every
//! sub-order is (closed if all failed, finished otherwise). `req_id` is the idempotency key,
//! scoped to the seller: the same payload replays the first answer, a different one is
//! `REQ_ID_CONFLICT`. A new `req_id` on an already settled order succeeds when it reports the
//! same outcome (`error_msg` says so) and is `ORDER_ALREADY_FINISHED` otherwise; when the trade
//! was settled without a callback (by the admin API), that first agreeing callback settles the
//! open-trade handling and records its result. A trade already consigned (by the admin API) is
//! still settled by a callback: success then only confirms receipt.

use serde_json::json;
use top_protocol::registry::{MethodSpec, ParamKind, ParamSpec};
use top_protocol::{Object, TopError};

use super::{check_len, idempotency, is_token, parse_i64, payload_hash, Fields};
use crate::args;
use crate::clock::millis;
use crate::gateway::{internal, Call, HandlerFuture};
use crate::store::{StoreError, Tx};
use crate::trades::{self, TradeEvent};

pub const METHOD: &str = "taobao.wt.trade.opentrade.resultcallback";
pub const PARAM: &str = "param0";
const FUTURE_SKEW_MS: i64 = 10 * 60 * 1000;
const OK_MSG: &str = "消息处理成功";
const ALREADY_MSG: &str = "消息处理成功：订单已处理，结果一致";

pub const SPEC: MethodSpec = MethodSpec {
    name: METHOD,
    params: &[ParamSpec {
        name: PARAM,
        kind: ParamKind::Json,
        required: false,
    }],
    needs_session: true,
};

#[derive(Debug, Clone)]
struct Callback {
    order_no: i64,
    sub_order_no: Option<i64>,
    success: bool,
    req_id: String,
    result_code: Option<String>,
    result_desc: Option<String>,
    ext: Option<String>,
    first_charge_amount: Option<i64>,
    first_charge_time: Option<i64>,
}

impl Callback {
    fn canonical(&self) -> serde_json::Value {
        json!({
            "order_no": self.order_no, "sub_order_no": self.sub_order_no, "success": self.success,
            "req_id": self.req_id, "result_code": self.result_code, "result_desc": self.result_desc,
            "ext": self.ext,
        })
    }
}

fn ext_integer(
    ext: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<i64>, ()> {
    match ext.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => parse_i64(s).map(Some).ok_or(()),
        Some(serde_json::Value::Number(n)) => n.as_i64().map(Some).ok_or(()),
        Some(_) => Err(()),
    }
}

fn parse(call: &Call) -> Result<Callback, TopError> {
    let f = Fields::parse(&call.params, PARAM)?;
    let order_no = f.req_i64("order_no")?;
    let success = f.req_bool("success")?;
    let req_id = f.req_str("req_id")?;
    if order_no <= 0 {
        return Err(f.invalid("order_no", "must be a positive integer"));
    }
    if req_id.chars().count() > 64 || !is_token(&req_id) {
        return Err(f.invalid(
            "req_id",
            "must be at most 64 printable characters without spaces",
        ));
    }
    let sub_order_no = f.opt_i64("sub_order_no")?;
    if sub_order_no.is_some_and(|s| s <= 0) {
        return Err(f.invalid("sub_order_no", "must be a positive integer"));
    }
    let result_code = f.opt_str_max("result_code", 32)?;
    let result_desc = f.opt_str_max("result_desc", 256)?;
    let ext = f.opt_str("ext")?;
    let (mut first_charge_amount, mut first_charge_time) = (None, None);
    if let Some(text) = &ext {
        check_len(&f, "ext", text, 2048)?;
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text)
        else {
            return Err(f.invalid("ext", "must be a JSON object"));
        };
        first_charge_amount = ext_integer(&map, "firstChargeAmount")
            .ok()
            .filter(|v| v.is_none_or(|a| a >= 0))
            .ok_or_else(|| {
                f.invalid(
                    "ext.firstChargeAmount",
                    "must be a non-negative integer (fen)",
                )
            })?;
        let now_ms = millis(call.now);
        first_charge_time = ext_integer(&map, "firstChargeTime")
            .ok()
            .filter(|v| v.is_none_or(|t| t > 0 && t <= now_ms + FUTURE_SKEW_MS))
            .ok_or_else(|| {
                f.invalid(
                    "ext.firstChargeTime",
                    "must be epoch milliseconds, not in the future",
                )
            })?;
    }
    Ok(Callback {
        order_no,
        sub_order_no,
        success,
        req_id,
        result_code,
        result_desc,
        ext,
        first_charge_amount,
        first_charge_time,
    })
}

type Refusal = (&'static str, String);

fn body(success: bool, req_id: &str, code: &str, msg: &str) -> Object {
    Object::new().field(
        "result",
        Object::new()
            .field("success", success)
            .field("req_id", req_id)
            .field("error_code", code)
            .field("error_msg", msg),
    )
}

pub fn handle(call: Call) -> HandlerFuture {
    Box::pin(async move {
        let cb = parse(&call)?;
        let seller = call.session_user.ok_or_else(TopError::missing_session)?;
        let app_seller = call.app.seller_id;
        let now_ms = millis(call.now);
        let req_id = cb.req_id.clone();
        let outcome = call
            .state
            .store
            .attempt(move |tx| apply(tx, seller, app_seller, &cb, now_ms))
            .await
            .map_err(internal)?;
        Ok(match outcome {
            Ok(msg) => body(true, &req_id, "0000", &msg),
            Err((code, msg)) => body(false, &req_id, code, &msg),
        })
    })
}

fn refuse(
    code: &'static str,
    msg: impl Into<String>,
) -> Result<Result<String, Refusal>, StoreError> {
    Ok(Err((code, msg.into())))
}

struct Sub {
    oid: i64,
    payment: i64,
    status: String,
}

fn apply(
    tx: &mut dyn Tx,
    seller: i64,
    app_seller: Option<i64>,
    cb: &Callback,
    now_ms: i64,
) -> Result<Result<String, Refusal>, StoreError> {
    tx.lock_row("trades", "tid", cb.order_no)?;
    let Some(trade) = trades::load(tx, cb.order_no)? else {
        return refuse("ORDER_NOT_FOUND", format!("订单{}不存在", cb.order_no));
    };
    if trade.seller_id != seller || app_seller != Some(seller) {
        return refuse("NO_PERMISSION", "订单不属于当前卖家");
    }
    if trade.biz_kind != "OPENTRADE" {
        return refuse("ORDER_TYPE_NOT_SUPPORTED", "不是充值送订单");
    }
    let scope = format!("{METHOD}:{seller}");
    let hash = payload_hash(&cb.canonical());
    match idempotency::lookup(tx, &scope, &cb.req_id, &hash)? {
        idempotency::Recorded::Replay(msg) => return Ok(Ok(msg)),
        idempotency::Recorded::Conflict => {
            return refuse("REQ_ID_CONFLICT", "req_id已用于不同的请求")
        }
        idempotency::Recorded::New => {}
    }
    let subs: Vec<Sub> = tx
        .query(
            "SELECT oid, payment, status FROM sub_orders WHERE tid = ? ORDER BY oid",
            args![trade.tid],
        )?
        .iter()
        .map(|r| Sub {
            oid: r.i64(0),
            payment: r.i64(1),
            status: r.str(2),
        })
        .collect();
    let target: Vec<&Sub> = match cb.sub_order_no {
        Some(oid) => match subs.iter().find(|s| s.oid == oid) {
            Some(sub) => vec![sub],
            None => {
                return refuse(
                    "SUB_ORDER_NOT_FOUND",
                    format!("子订单{oid}不属于订单{}", trade.tid),
                )
            }
        },
        None => subs.iter().collect(),
    };
    if trade.status == "WAIT_BUYER_PAY" {
        return refuse("ORDER_NOT_PAID", "订单未付款");
    }
    let wanted = if cb.success {
        "TRADE_FINISHED"
    } else {
        "TRADE_CLOSED"
    };
    let settled: Vec<&&Sub> = target
        .iter()
        .filter(|s| trades::is_final(&s.status))
        .collect();
    let msg = if trades::is_final(&trade.status) || settled.len() == target.len() {
        // Already settled: the same outcome is acknowledged, the opposite one refused.
        let same = if trades::is_final(&trade.status) && cb.sub_order_no.is_none() {
            trade.status == wanted
        } else {
            target.iter().all(|s| s.status == wanted)
        };
        if !same {
            // Name what was settled the other way: the trade, or the sub-order(s) while the
            // trade itself is still open.
            let msg = if trades::is_final(&trade.status) {
                format!("订单已处理，状态为{}", trade.status)
            } else {
                let statuses: Vec<&str> = target.iter().map(|s| s.status.as_str()).collect();
                format!("子订单已处理，状态为{}", statuses.join(","))
            };
            return refuse("ORDER_ALREADY_FINISHED", msg);
        }
        // Only a callback agreeing with the trade's own outcome: one naming a sub-order agrees
        // with that sub-order, which an admin refund or confirm may since have contradicted.
        if trade.status == wanted {
            record_result_of_settled_trade(tx, &trade, cb, now_ms)?;
        }
        ALREADY_MSG
    } else {
        if !settled.is_empty() {
            return refuse("ORDER_ALREADY_FINISHED", "部分子订单已处理");
        }
        settle(tx, &trade, &subs, &target, cb, now_ms)?;
        emit_settled(tx, trade.tid, cb, now_ms)?;
        OK_MSG
    };
    idempotency::record(tx, &scope, &cb.req_id, &hash, msg, now_ms)?;
    Ok(Ok(msg.to_string()))
}

/// A trade settled without a callback (an admin refund or confirm) leaves its open-trade
/// handling `PENDING`; the first callback that reports the same outcome settles the handling
/// and records its result, as a callback that settled the trade itself would have.
fn record_result_of_settled_trade(
    tx: &mut dyn Tx,
    trade: &trades::Trade,
    cb: &Callback,
    now_ms: i64,
) -> Result<(), StoreError> {
    let handling = if trade.status == "TRADE_FINISHED" {
        "SUCCEEDED"
    } else {
        "FAILED"
    };
    let updated = tx.execute(
        "UPDATE open_trade_infos SET handling = ? WHERE tid = ? AND handling = 'PENDING'",
        args![handling, trade.tid],
    )?;
    if updated > 0 {
        record_result(tx, trade.tid, cb)?;
        emit_settled(tx, trade.tid, cb, now_ms)?;
    }
    Ok(())
}

/// Stores a callback's result code, description and first-top-up data on the open-trade record.
fn record_result(tx: &mut dyn Tx, tid: i64, cb: &Callback) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE open_trade_infos SET result_code = ?, result_desc = ?, first_charge_amount = COALESCE(?, first_charge_amount), first_charge_time = COALESCE(?, first_charge_time), ext = COALESCE(?, ext) WHERE tid = ?",
        args![cb.result_code.clone(), cb.result_desc.clone(), cb.first_charge_amount, cb.first_charge_time, cb.ext.clone(), tid],
    )?;
    Ok(())
}

fn emit_settled(tx: &mut dyn Tx, tid: i64, cb: &Callback, now_ms: i64) -> Result<(), StoreError> {
    crate::events::emit(
        tx,
        crate::events::OPENTRADE_SETTLED,
        &format!("trade:{tid}"),
        &json!({"tid": tid, "sub_order_no": cb.sub_order_no, "success": cb.success,
            "req_id": cb.req_id, "result_code": cb.result_code}),
        now_ms,
    )
}

fn settle(
    tx: &mut dyn Tx,
    trade: &trades::Trade,
    subs: &[Sub],
    target: &[&Sub],
    cb: &Callback,
    now_ms: i64,
) -> Result<(), StoreError> {
    let wanted = if cb.success {
        "TRADE_FINISHED"
    } else {
        "TRADE_CLOSED"
    };
    for sub in target {
        tx.execute(
            "UPDATE sub_orders SET status = ? WHERE oid = ?",
            args![wanted, sub.oid],
        )?;
        if !cb.success {
            tx.execute(
                "INSERT INTO refunds (tid, oid, amount, reason, created_at) VALUES (?, ?, ?, ?, ?)",
                args![
                    trade.tid,
                    sub.oid,
                    sub.payment,
                    cb.result_desc
                        .clone()
                        .unwrap_or_else(|| "充值送业务办理失败".into()),
                    now_ms
                ],
            )?;
        }
    }
    let statuses: Vec<&str> = subs
        .iter()
        .map(|s| {
            if target.iter().any(|t| t.oid == s.oid) {
                wanted
            } else {
                s.status.as_str()
            }
        })
        .collect();
    let all_final = statuses.iter().all(|s| trades::is_final(s));
    if all_final {
        let any_success = statuses.contains(&"TRADE_FINISHED");
        let handling = if any_success { "SUCCEEDED" } else { "FAILED" };
        if any_success {
            if trade.status == "WAIT_SELLER_SEND_GOODS" {
                trades::apply(tx, trade.tid, TradeEvent::Consign, now_ms)?;
            }
            trades::apply(tx, trade.tid, TradeEvent::Confirm, now_ms)?;
        } else {
            trades::apply(tx, trade.tid, TradeEvent::Refund, now_ms)?;
        }
        tx.execute(
            "UPDATE open_trade_infos SET handling = ? WHERE tid = ?",
            args![handling, trade.tid],
        )?;
    }
    record_result(tx, trade.tid, cb)
}
