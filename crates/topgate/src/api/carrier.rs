//! `alibaba.base.order.supplier.notify`: a carrier (supplier) reports fulfilment progress on a
//! telecom order — `2` receipt, `1` shipment with ICCIDs from `send_good_param`, `0` package
//! activation — per domain.md §2.1 and the fulfilment machine of §3.3:
//!
//! ```text
//! PENDING --2(recv=true)--> ACCEPTED --1--> SHIPPED --0--> ACTIVATED
//! PENDING --1--> SHIPPED        PENDING|ACCEPTED --0 (no cards yet)--> ACTIVATED
//! 2(recv=false) before SHIPPED: exception flag, state unchanged
//! ```
//! Idempotency: the natural key (order, notify_type, iccid or "") with a hash of the normalised
//! payload. The same payload replays success and changes nothing; a different one is
//! `NOTIFY_CONFLICT` for `0`/`1`, while a receipt (`2`) takes the newer value until the order
//! is shipped. Choices where the spec leaves room: an activation that names no ICCID on an order
//! without cards is `ICCID_NOT_MATCH` (no card can be identified); offer dates are stored by
//! activation notices only; replays are not appended to the notification log; with a biz type's
//! `auto_finish_on_activation`, an activation finishes the trade, consigning it first when no
//! shipment was reported; `ext_info` is logged as text, and parsed too when it is a JSON object.
//!
//! The optional `session` must be the supplier's seller account's (§2.1): when the app is bound
//! to a seller, a session of another user of the app is code 27, like an unknown one; an app
//! bound to no seller names no account to compare with, and any valid session of it is taken.

use serde_json::json;
use top_protocol::registry::{MethodSpec, ParamKind, ParamSpec};
use top_protocol::{timestamp, Object, TopError};

use super::send_good_param::{self, IccidMode, SendGoodParam};
use super::{idempotency, is_code, parse_i64, payload_hash, Fields};
use crate::args;
use crate::clock::millis;
use crate::gateway::{internal, Call, HandlerFuture};
use crate::store::{StoreError, Tx};
use crate::trades::{self, TradeEvent};

pub const METHOD: &str = "alibaba.base.order.supplier.notify";
pub const PARAM: &str = "param_flow_suppllier_notify_model";

pub const SPEC: MethodSpec = MethodSpec {
    name: METHOD,
    params: &[ParamSpec {
        name: PARAM,
        kind: ParamKind::Json,
        required: false,
    }],
    needs_session: false,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotifyType {
    Activation,
    Shipment,
    Receipt,
}

impl NotifyType {
    fn wire(self) -> &'static str {
        match self {
            Self::Activation => "0",
            Self::Shipment => "1",
            Self::Receipt => "2",
        }
    }
}

#[derive(Debug, Clone)]
struct Notice {
    biz_type: String,
    notify_type: NotifyType,
    order_no: i64,
    out_order_no: Option<String>,
    receive_status: Option<bool>,
    send_good_param: Option<SendGoodParam>,
    send_good_param_raw: Option<String>,
    iccid: Option<String>,
    user_id: Option<i64>,
    offer_start: Option<i64>,
    offer_end: Option<i64>,
    dates_swapped: bool,
    ext_info: Option<String>,
}

impl Notice {
    fn canonical(&self) -> serde_json::Value {
        json!({
            "biz_type": self.biz_type,
            "notify_type": self.notify_type.wire(),
            "order_no": self.order_no,
            "out_order_no": self.out_order_no,
            "receive_status": self.receive_status,
            "send_good_param": self.send_good_param_raw,
            "iccid": self.iccid,
            "user_id": self.user_id,
            "offer_start": self.offer_start,
            "offer_end": self.offer_end,
            "ext_info": self.ext_info,
        })
    }

    /// The payload logged with an accepted notice: the canonical form, plus `ext_info` parsed
    /// when it is a JSON object (the doc's example `<"key", "value">` is not, and stays text).
    fn logged(&self) -> serde_json::Value {
        let mut payload = self.canonical();
        if let Some(serde_json::Value::Object(ext)) = self
            .ext_info
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok())
        {
            payload["ext_info_json"] = serde_json::Value::Object(ext);
        }
        payload
    }
}

fn parse_notice(call: &Call) -> Result<Notice, TopError> {
    let f = Fields::parse(&call.params, PARAM)?;
    let biz_type = f.req_str("biz_type")?;
    let notify_type = f.req_str("notify_type")?;
    let order_no = f.req_str("order_no")?;
    if biz_type.trim().is_empty()
        || biz_type.len() > 16
        || !biz_type.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(f.invalid("biz_type", "must be at most 16 digits"));
    }
    let notify_type = match notify_type.as_str() {
        "0" => NotifyType::Activation,
        "1" => NotifyType::Shipment,
        "2" => NotifyType::Receipt,
        _ => return Err(f.invalid("notify_type", "not supported: use 0, 1 or 2")),
    };
    let order_no = parse_i64(&order_no)
        .filter(|n| *n > 0 && !order_no.starts_with('-'))
        .ok_or_else(|| {
            f.invalid(
                "order_no",
                "must be a positive integer of at most 19 digits",
            )
        })?;
    let out_order_no = f.opt_str("out_order_no")?;
    if let Some(o) = &out_order_no {
        if o.len() > 64 || !is_code(o, true) {
            return Err(f.invalid("out_order_no", "must be at most 64 of [A-Za-z0-9_-]"));
        }
    }
    let receive_status = f.opt_bool("receive_status")?;
    if notify_type == NotifyType::Receipt && receive_status.is_none() {
        return Err(f.invalid("receive_status", "is required for notify_type 2"));
    }
    let mode = if call.state.settings.iccid_strict {
        IccidMode::Strict
    } else {
        IccidMode::Lenient
    };
    let send_good_param_raw = f.opt_str("send_good_param")?;
    let send_good_param = match &send_good_param_raw {
        Some(raw) => send_good_param::parse(raw, mode)
            .map_err(|e| f.invalid("send_good_param", &e.to_string()))?,
        None => None,
    };
    if notify_type == NotifyType::Shipment && send_good_param.is_none() {
        return Err(f.invalid("send_good_param", "is required for notify_type 1"));
    }
    let iccid = f.opt_str("iccid")?;
    if let Some(i) = &iccid {
        if !send_good_param::is_valid_iccid(i, mode) {
            return Err(f.invalid("iccid", "is not a valid ICCID"));
        }
    }
    let user_id = match f.opt_str("user_id")? {
        None => None,
        Some(u) => Some(
            parse_i64(&u)
                .filter(|n| *n >= 0 && !u.starts_with('-'))
                .ok_or_else(|| f.invalid("user_id", "must be digits"))?,
        ),
    };
    let mut dates = [None, None];
    for (slot, key) in dates
        .iter_mut()
        .zip(["offer_invalid_date", "offer_valid_date"])
    {
        if let Some(text) = f.opt_str(key)? {
            let at = timestamp::parse_wall_clock(&text)
                .ok_or_else(|| f.invalid(key, "must be a real date as yyyy-MM-dd HH:mm:ss"))?;
            *slot = Some(millis(at));
        }
    }
    // Read by name (valid = start, invalid = end); the doc page describes them the other way
    // round, so a reversed pair is swapped and flagged rather than refused.
    let [end, start] = dates;
    let (offer_start, offer_end, dates_swapped) = match (start, end) {
        (Some(s), Some(e)) if s > e => (Some(e), Some(s), true),
        (s, e) => (s, e, false),
    };
    let ext_info = f.opt_str_max("ext_info", 4000)?;
    Ok(Notice {
        biz_type,
        notify_type,
        order_no,
        out_order_no,
        receive_status,
        send_good_param,
        send_good_param_raw,
        iccid,
        user_id,
        offer_start,
        offer_end,
        dates_swapped,
        ext_info,
    })
}

/// The in-body answer of the API: `CommonResult`.
pub fn result(outcome: Result<(), (&'static str, String)>) -> Object {
    let result = match outcome {
        Ok(()) => Object::new()
            .field("code", "SUCCESS")
            .field("desc", "成功")
            .field("model", true)
            .field("success", true),
        Err((code, desc)) => Object::new()
            .field("code", code)
            .field("desc", desc)
            .field("model", false)
            .field("success", false),
    };
    Object::new().field("result", result)
}

type Refusal = (&'static str, String);

fn refuse(code: &'static str, desc: impl Into<String>) -> Result<Result<(), Refusal>, StoreError> {
    Ok(Err((code, desc.into())))
}

pub fn handle(call: Call) -> HandlerFuture {
    Box::pin(async move {
        // An invalid session is refused before the parameters are read, as the gateway refuses
        // one it does not know.
        if call
            .session_user
            .is_some_and(|user| call.app.seller_id.is_some_and(|seller| seller != user))
        {
            return Err(TopError::invalid_session());
        }
        let notice = parse_notice(&call)?;
        let supplier_id = call.app.supplier_id;
        let now_ms = millis(call.now);
        let outcome = call
            .state
            .store
            .attempt(move |tx| apply(tx, supplier_id, &notice, now_ms))
            .await
            .map_err(internal)?;
        Ok(result(outcome))
    })
}

struct Fulfilment {
    supplier_id: i64,
    biz_type: String,
    out_order_no: Option<String>,
    status: String,
}

struct Card {
    iccid: String,
    status: String,
}

fn apply(
    tx: &mut dyn Tx,
    supplier_id: Option<i64>,
    n: &Notice,
    now_ms: i64,
) -> Result<Result<(), Refusal>, StoreError> {
    tx.lock_row("trades", "tid", n.order_no)?;
    let Some(trade) = trades::load(tx, n.order_no)?.filter(|t| t.biz_kind == "CARRIER") else {
        return refuse("ORDER_NOT_FOUND", format!("order {} not found", n.order_no));
    };
    let Some(ful) = tx
        .query_opt(
            "SELECT supplier_id, biz_type, out_order_no, status FROM carrier_fulfilments WHERE tid = ?",
            args![trade.tid],
        )?
        .map(|r| Fulfilment {
            supplier_id: r.i64(0),
            biz_type: r.str(1),
            out_order_no: r.opt_str(2),
            status: r.str(3),
        })
    else {
        return refuse("ORDER_NOT_FOUND", format!("order {} not found", n.order_no));
    };
    if supplier_id != Some(ful.supplier_id) {
        return refuse("NO_PERMISSION", "order is assigned to another supplier");
    }
    let biz_ok = tx
        .query_opt(
            "SELECT 1 FROM biz_types b JOIN supplier_biz_types s ON s.biz_type = b.code WHERE b.code = ? AND b.enabled = 1 AND s.supplier_id = ?",
            args![n.biz_type.as_str(), ful.supplier_id],
        )?
        .is_some();
    if !biz_ok {
        return refuse(
            "BIZ_TYPE_NOT_SUPPORTED",
            format!("biz_type {} is not enabled for this supplier", n.biz_type),
        );
    }
    if n.biz_type != ful.biz_type {
        return refuse(
            "BIZ_TYPE_MISMATCH",
            format!("order {} has biz_type {}", trade.tid, ful.biz_type),
        );
    }
    if n.user_id.is_some_and(|u| u != trade.buyer_id) {
        return refuse("USER_MISMATCH", "user_id is not the order's buyer");
    }
    let scope = format!("{METHOD}:{}", ful.supplier_id);
    let key = format!(
        "{}:{}:{}",
        trade.tid,
        n.notify_type.wire(),
        n.iccid.as_deref().unwrap_or("")
    );
    let hash = payload_hash(&n.canonical());
    let mut overwrite = false;
    match idempotency::lookup(tx, &scope, &key, &hash)? {
        idempotency::Recorded::Replay(_) => return Ok(Ok(())),
        idempotency::Recorded::Conflict
            if n.notify_type == NotifyType::Receipt
                && matches!(ful.status.as_str(), "PENDING" | "ACCEPTED") =>
        {
            overwrite = true;
        }
        idempotency::Recorded::Conflict => {
            return refuse(
                "NOTIFY_CONFLICT",
                "a different notice was already accepted for this order",
            );
        }
        idempotency::Recorded::New => {}
    }
    let status_ok = match n.notify_type {
        NotifyType::Activation => matches!(
            trade.status.as_str(),
            "WAIT_SELLER_SEND_GOODS" | "WAIT_BUYER_CONFIRM_GOODS" | "TRADE_FINISHED"
        ),
        _ => matches!(
            trade.status.as_str(),
            "WAIT_SELLER_SEND_GOODS" | "WAIT_BUYER_CONFIRM_GOODS"
        ),
    };
    if !status_ok {
        return refuse(
            "ORDER_STATUS_INVALID",
            format!("trade status is {}", trade.status),
        );
    }
    if let Some(out) = &n.out_order_no {
        match &ful.out_order_no {
            Some(bound) if bound != out => {
                return refuse(
                    "OUT_ORDER_NO_MISMATCH",
                    format!("order is bound to out_order_no {bound}"),
                );
            }
            Some(_) => {}
            None => {
                let taken = tx
                    .query_opt(
                        "SELECT tid FROM carrier_fulfilments WHERE supplier_id = ? AND out_order_no = ?",
                        args![ful.supplier_id, out.as_str()],
                    )?
                    .is_some();
                if taken {
                    return refuse(
                        "OUT_ORDER_NO_DUPLICATE",
                        "out_order_no is bound to another order",
                    );
                }
                tx.execute(
                    "UPDATE carrier_fulfilments SET out_order_no = ? WHERE tid = ?",
                    args![out.as_str(), trade.tid],
                )?;
            }
        }
    }
    let cards: Vec<Card> = tx
        .query(
            "SELECT iccid, status FROM sim_cards WHERE tid = ? ORDER BY tag",
            args![trade.tid],
        )?
        .iter()
        .map(|r| Card {
            iccid: r.str(0),
            status: r.str(1),
        })
        .collect();
    let step = match n.notify_type {
        NotifyType::Receipt => receipt(tx, trade.tid, &ful, n)?,
        NotifyType::Shipment => shipment(tx, &trade, &ful, &cards, n, now_ms)?,
        NotifyType::Activation => activation(tx, &trade, &ful, &cards, n, now_ms)?,
    };
    if step.is_err() {
        return Ok(step);
    }
    tx.execute(
        "INSERT INTO supplier_notifications (tid, notify_type, natural_key, payload_hash, payload, dates_swapped, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        args![trade.tid, n.notify_type.wire(), key.as_str(), hash.as_str(), n.logged().to_string(), n.dates_swapped, now_ms],
    )?;
    crate::events::emit(
        tx,
        crate::events::CARRIER_NOTIFIED,
        &format!("trade:{}", trade.tid),
        &json!({"tid": trade.tid, "notify_type": n.notify_type.wire(), "notice": n.canonical()}),
        now_ms,
    )?;
    if overwrite {
        idempotency::overwrite(tx, &scope, &key, &hash, "{}")?;
    } else {
        idempotency::record(tx, &scope, &key, &hash, "{}", now_ms)?;
    }
    Ok(Ok(()))
}

fn receipt(
    tx: &mut dyn Tx,
    tid: i64,
    ful: &Fulfilment,
    n: &Notice,
) -> Result<Result<(), Refusal>, StoreError> {
    if !matches!(ful.status.as_str(), "PENDING" | "ACCEPTED") {
        return refuse(
            "ORDER_STATUS_INVALID",
            format!("fulfilment is already {}", ful.status),
        );
    }
    if n.receive_status == Some(true) {
        tx.execute(
            "UPDATE carrier_fulfilments SET status = 'ACCEPTED', supplier_received = 1, exception = 0 WHERE tid = ?",
            args![tid],
        )?;
    } else {
        tx.execute(
            "UPDATE carrier_fulfilments SET supplier_received = 0, exception = 1 WHERE tid = ?",
            args![tid],
        )?;
    }
    Ok(Ok(()))
}

fn quantity(tx: &mut dyn Tx, tid: i64) -> Result<i64, StoreError> {
    Ok(tx
        .query_opt(
            "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM sub_orders WHERE tid = ?",
            args![tid],
        )?
        .map_or(0, |r| r.i64(0)))
}

fn iccid_owner(tx: &mut dyn Tx, iccid: &str) -> Result<Option<i64>, StoreError> {
    Ok(tx
        .query_opt("SELECT tid FROM sim_cards WHERE iccid = ?", args![iccid])?
        .map(|r| r.i64(0)))
}

fn shipment(
    tx: &mut dyn Tx,
    trade: &trades::Trade,
    ful: &Fulfilment,
    cards: &[Card],
    n: &Notice,
    now_ms: i64,
) -> Result<Result<(), Refusal>, StoreError> {
    if !matches!(ful.status.as_str(), "PENDING" | "ACCEPTED") {
        return refuse(
            "ORDER_STATUS_INVALID",
            format!("fulfilment is already {}", ful.status),
        );
    }
    let Some(sgp) = &n.send_good_param else {
        return refuse("ORDER_STATUS_INVALID", "no cards in send_good_param");
    };
    let quantity = quantity(tx, trade.tid)?;
    let max_tag = sgp
        .cards
        .iter()
        .map(|c| i64::from(c.tag))
        .max()
        .unwrap_or(0);
    if sgp.cards.len() as i64 + cards.len() as i64 > quantity || max_tag > quantity {
        return refuse(
            "CARD_COUNT_EXCEEDED",
            format!("the order has quantity {quantity}"),
        );
    }
    for card in &sgp.cards {
        if let Some(owner) = iccid_owner(tx, &card.iccid)? {
            return refuse(
                "ICCID_ALREADY_USED",
                if owner == trade.tid {
                    format!("ICCID {} is already on this order", card.iccid)
                } else {
                    format!("ICCID {} belongs to another order", card.iccid)
                },
            );
        }
    }
    for card in &sgp.cards {
        let deadline = card
            .activate_deadline
            .map(|d| millis(d.assume_offset(timestamp::GMT8)));
        let passed = deadline.is_some_and(|d| d < now_ms);
        tx.execute(
            "INSERT INTO sim_cards (iccid, tid, tag, activate_deadline, deadline_passed, status) VALUES (?, ?, ?, ?, ?, 'SHIPPED')",
            args![card.iccid.as_str(), trade.tid, card.tag, deadline, passed],
        )?;
    }
    tx.execute(
        "UPDATE carrier_fulfilments SET status = 'SHIPPED' WHERE tid = ?",
        args![trade.tid],
    )?;
    if trade.status == "WAIT_SELLER_SEND_GOODS" {
        trades::apply(tx, trade.tid, TradeEvent::Consign, now_ms)?;
    }
    Ok(Ok(()))
}

fn activation(
    tx: &mut dyn Tx,
    trade: &trades::Trade,
    ful: &Fulfilment,
    cards: &[Card],
    n: &Notice,
    now_ms: i64,
) -> Result<Result<(), Refusal>, StoreError> {
    let iccid = match (&n.iccid, cards) {
        (Some(i), _) => i.clone(),
        (None, [only]) => only.iccid.clone(),
        (None, _) => {
            return refuse(
                "ICCID_NOT_MATCH",
                format!("iccid is required: the order has {} cards", cards.len()),
            )
        }
    };
    if cards.is_empty() {
        if ful.status == "ACTIVATED" {
            return refuse("ORDER_STATUS_INVALID", "fulfilment is already ACTIVATED");
        }
        if let Some(owner) = iccid_owner(tx, &iccid)? {
            let _ = owner;
            return refuse(
                "ICCID_ALREADY_USED",
                format!("ICCID {iccid} belongs to another order"),
            );
        }
        tx.execute(
            "INSERT INTO sim_cards (iccid, tid, tag, status, activated_at) VALUES (?, ?, 1, 'ACTIVATED', ?)",
            args![iccid.as_str(), trade.tid, now_ms],
        )?;
    } else {
        let Some(card) = cards.iter().find(|c| c.iccid == iccid) else {
            return refuse(
                "ICCID_NOT_MATCH",
                format!("ICCID {iccid} is not on this order"),
            );
        };
        if card.status == "ACTIVATED" {
            return refuse(
                "ORDER_STATUS_INVALID",
                format!("card {iccid} is already activated"),
            );
        }
        tx.execute(
            "UPDATE sim_cards SET status = 'ACTIVATED', activated_at = ? WHERE iccid = ?",
            args![now_ms, iccid.as_str()],
        )?;
    }
    tx.execute(
        "UPDATE carrier_fulfilments SET status = 'ACTIVATED', activated_at = COALESCE(activated_at, ?), offer_start = COALESCE(?, offer_start), offer_end = COALESCE(?, offer_end) WHERE tid = ?",
        args![now_ms, n.offer_start, n.offer_end, trade.tid],
    )?;
    let auto_finish = tx
        .query_opt(
            "SELECT auto_finish_on_activation FROM biz_types WHERE code = ?",
            args![ful.biz_type.as_str()],
        )?
        .is_some_and(|r| r.bool(0));
    // An activated card proves delivery: with auto-finish, a trade not yet consigned (activation
    // reported without a shipment notice) is consigned and confirmed in one step, as API 4 does.
    if auto_finish {
        if trade.status == "WAIT_SELLER_SEND_GOODS" {
            trades::apply(tx, trade.tid, TradeEvent::Consign, now_ms)?;
        }
        if matches!(
            trade.status.as_str(),
            "WAIT_SELLER_SEND_GOODS" | "WAIT_BUYER_CONFIRM_GOODS"
        ) {
            trades::apply(tx, trade.tid, TradeEvent::Confirm, now_ms)?;
        }
    }
    Ok(Ok(()))
}
