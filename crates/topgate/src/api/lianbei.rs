//! `alibaba.alisports.lianbei.order.notice`: a fitness partner reads one of its store orders
//! (domain.md §2.2). Read-only, so it runs on a reader connection and never waits for writes.
//! It reads one row of the lianbei read model (`lianbei_orders`, migration 0006), which every
//! path creating a lianbei order fills through [`record_orders`] and every trade transition
//! updates; a trade of several lines answers with its first line (lowest `oid`).
//!
//! The answer is the Ali Sports `AlispResult`: 200 with the order (nick and mobile masked, status
//! derived from the trade, §3.4), 403 for an order of another partner's store (diagnosable
//! binding mistakes matter more here than hiding existence), 404 for a missing or non-lianbei order.

use top_protocol::registry::{MethodSpec, ParamKind, ParamSpec};
use top_protocol::{timestamp, Object, TopError};

use super::masking::{mask_mobile, mask_nick};
use crate::args;
use crate::clock::from_millis;
use crate::gateway::{internal, Call, HandlerFuture};
use crate::store::{StoreError, Tx};

pub const METHOD: &str = "alibaba.alisports.lianbei.order.notice";

pub const SPEC: MethodSpec = MethodSpec {
    name: METHOD,
    params: &[ParamSpec {
        name: "biz_order_id",
        kind: ParamKind::Number,
        required: true,
    }],
    needs_session: false,
};

/// The store-sale status code of a trade status (derived, never stored).
pub fn status_code(trade_status: &str) -> i64 {
    match trade_status {
        "WAIT_BUYER_PAY" => 10,
        "WAIT_SELLER_SEND_GOODS" | "WAIT_BUYER_CONFIRM_GOODS" => 20,
        "TRADE_FINISHED" => 100,
        "TRADE_CLOSED_BY_TAOBAO" => 200,
        _ => 300,
    }
}

enum Lookup {
    Found(Box<Object>),
    NotFound,
    Forbidden,
}

fn wall(ms: Option<i64>) -> Option<String> {
    ms.map(|m| timestamp::format_wall_clock(from_millis(m)))
}

/// Copies the lianbei orders among trades `first_tid..=last_tid` into the read model
/// (`lianbei_orders`, migration 0006) once their trade, store sale and lines are written; ones
/// already copied are left alone.
pub fn record_orders(tx: &mut dyn Tx, first_tid: i64, last_tid: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO lianbei_orders SELECT * FROM lianbei_order_sources WHERE tid BETWEEN ? AND ? \
         ON CONFLICT DO NOTHING",
        args![first_tid, last_tid],
    )?;
    Ok(())
}

fn lookup(tx: &mut dyn Tx, tid: i64, partner_id: Option<i64>) -> Result<Lookup, StoreError> {
    let row = tx.query_opt(
        "SELECT tid, created_at, pay_time, end_time, status, payment, source, out_id, buyer_nick, \
                buyer_mobile, item_id, item_title, item_pic_url, price, quantity, discount_fee, \
                sku_id, sku_text, nego_price, guider_id, guider_name, operator_id, operator_name, \
                partner_id \
         FROM lianbei_orders WHERE tid = ?",
        args![tid],
    )?;
    let Some(mut r) = row else {
        return Ok(Lookup::NotFound);
    };
    if partner_id != Some(r.i64(23)) {
        return Ok(Lookup::Forbidden);
    }
    let dto = Object::new()
        .field("biz_order_id", r.i64(0).to_string())
        .opt_field("gmt_create", wall(Some(r.i64(1))))
        .opt_field("pay_time", wall(r.opt_i64(2)))
        .opt_field("end_time", wall(r.opt_i64(3)))
        .field("buyer_nick", mask_nick(&r.take_str(8)))
        .field("auction_id", r.i64(10))
        .field("auction_title", r.take_str(11))
        .field("auction_pic_url", r.take_str(12))
        .field("auction_price", r.i64(13))
        .field("buy_amount", r.i64(14))
        .field("discount_fee", r.i64(15))
        .field("tf", r.i64(5))
        .field("mobile", mask_mobile(&r.take_str(9)))
        .field("source", r.take_str(6))
        .field("sku_id", r.i64(16))
        .field("sku", r.take_str(17))
        .field("nego_price", r.i64(18))
        .field("status", status_code(&r.take_str(4)))
        .field("guider_id", r.take_str(19))
        .field("guider_name", r.take_str(20))
        .field("operator_id", r.take_str(21))
        .field("operator_name", r.take_str(22))
        .field("out_id", r.take_str(7));
    Ok(Lookup::Found(Box::new(dto)))
}

pub fn handle(call: Call) -> HandlerFuture {
    Box::pin(async move {
        let raw = call
            .params
            .get_non_empty("biz_order_id")
            .unwrap_or_default();
        let tid: i64 = raw
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| TopError::invalid_argument("biz_order_id"))?;
        let partner_id = call.app.partner_id;
        let found = call
            .state
            .store
            .lookup_now(move |tx| lookup(tx, tid, partner_id))
            .await
            .map_err(internal)?;
        let result = match found {
            Lookup::Found(dto) => Object::new()
                .field("alisp_code", 200i64)
                .field("alisp_data", *dto)
                .field("alisp_msg", "success"),
            Lookup::NotFound => Object::new()
                .field("alisp_code", 404i64)
                .field("alisp_msg", "order not found"),
            Lookup::Forbidden => Object::new()
                .field("alisp_code", 403i64)
                .field("alisp_msg", "no permission"),
        };
        Ok(Object::new().field("result", result))
    })
}
