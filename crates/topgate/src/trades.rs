//! The shared trade state machine (domain.md §3.2) and trade reads.
//!
//! ```text
//! WAIT_BUYER_PAY --pay--> WAIT_SELLER_SEND_GOODS --consign--> WAIT_BUYER_CONFIRM_GOODS --confirm--> TRADE_FINISHED
//!       |                          |                                   |
//!       +--cancel--> TRADE_CLOSED_BY_TAOBAO     +--refund--> TRADE_CLOSED <--+
//! ```
//! Every transition is one guarded `UPDATE … WHERE status = <from>`, so a lost race changes
//! nothing and is reported as not allowed; the table's CHECK constraints hold the timestamps to
//! the status (invariant 2). A transition is dated now, or at the trade's latest time if that is
//! later (an operator may date a trade ahead of the clock): times never go backwards
//! (invariant 2), so a transition is never refused by the table's checks.

use crate::args;
use crate::store::{SqlArg, StoreError, Tx};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeEvent {
    Pay,
    Cancel,
    Consign,
    Confirm,
    Refund,
}

impl TradeEvent {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "pay" => Self::Pay,
            "cancel" => Self::Cancel,
            "consign" => Self::Consign,
            "confirm" => Self::Confirm,
            "refund" => Self::Refund,
            _ => return None,
        })
    }

    /// The statuses this event may leave from, the status it reaches, and the time column set.
    fn edge(self) -> (&'static [&'static str], &'static str, &'static str) {
        match self {
            Self::Pay => (&["WAIT_BUYER_PAY"], "WAIT_SELLER_SEND_GOODS", "pay_time"),
            Self::Cancel => (&["WAIT_BUYER_PAY"], "TRADE_CLOSED_BY_TAOBAO", "end_time"),
            Self::Consign => (
                &["WAIT_SELLER_SEND_GOODS"],
                "WAIT_BUYER_CONFIRM_GOODS",
                "consign_time",
            ),
            Self::Confirm => (&["WAIT_BUYER_CONFIRM_GOODS"], "TRADE_FINISHED", "end_time"),
            Self::Refund => (
                &["WAIT_SELLER_SEND_GOODS", "WAIT_BUYER_CONFIRM_GOODS"],
                "TRADE_CLOSED",
                "end_time",
            ),
        }
    }
}

/// Every status a trade may have (the `trades.status` CHECK).
pub const STATUSES: [&str; 6] = [
    "WAIT_BUYER_PAY",
    "WAIT_SELLER_SEND_GOODS",
    "WAIT_BUYER_CONFIRM_GOODS",
    "TRADE_FINISHED",
    "TRADE_CLOSED",
    "TRADE_CLOSED_BY_TAOBAO",
];

pub const FINAL_STATUSES: [&str; 3] = ["TRADE_FINISHED", "TRADE_CLOSED", "TRADE_CLOSED_BY_TAOBAO"];

pub fn is_final(status: &str) -> bool {
    FINAL_STATUSES.contains(&status)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    pub tid: i64,
    pub seller_id: i64,
    pub buyer_id: i64,
    pub biz_kind: String,
    pub status: String,
    pub created_at: i64,
    pub pay_time: Option<i64>,
    pub consign_time: Option<i64>,
    pub end_time: Option<i64>,
    pub total_fee: i64,
    pub discount_fee: i64,
    pub payment: i64,
    pub source: String,
    pub out_id: String,
}

pub fn load(tx: &mut dyn Tx, tid: i64) -> Result<Option<Trade>, StoreError> {
    Ok(tx
        .query_opt(
            "SELECT tid, seller_id, buyer_id, biz_kind, status, created_at, pay_time, consign_time, end_time, total_fee, discount_fee, payment, source, out_id FROM trades WHERE tid = ?",
            args![tid],
        )?
        .map(|r| Trade {
            tid: r.i64(0),
            seller_id: r.i64(1),
            buyer_id: r.i64(2),
            biz_kind: r.str(3),
            status: r.str(4),
            created_at: r.i64(5),
            pay_time: r.opt_i64(6),
            consign_time: r.opt_i64(7),
            end_time: r.opt_i64(8),
            total_fee: r.i64(9),
            discount_fee: r.i64(10),
            payment: r.i64(11),
            source: r.str(12),
            out_id: r.str(13),
        }))
}

/// The latest time an unfinished trade has: the CHECKs keep created ≤ pay ≤ consign, and only
/// a final trade has an end time.
const LATEST_TIME: &str = "COALESCE(consign_time, pay_time, created_at)";

/// Applies `event` to trade `tid`; `Ok(false)` when its current status does not allow it.
pub fn apply(
    tx: &mut dyn Tx,
    tid: i64,
    event: TradeEvent,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let (from, to, time_column) = event.edge();
    let placeholders = vec!["?"; from.len()].join(", ");
    let sql = format!(
        "UPDATE trades SET status = ?, {time_column} = CASE WHEN {LATEST_TIME} > ? THEN {LATEST_TIME} ELSE ? END \
         WHERE tid = ? AND status IN ({placeholders})"
    );
    let mut values = vec![
        SqlArg::Text(to),
        SqlArg::Int(now_ms),
        SqlArg::Int(now_ms),
        SqlArg::Int(tid),
    ];
    values.extend(from.iter().map(|s| SqlArg::Text(s)));
    let changed = tx.execute(&sql, &values)? == 1;
    if changed {
        crate::events::emit(
            tx,
            crate::events::TRADE_STATUS_CHANGED,
            &format!("trade:{tid}"),
            &serde_json::json!({"tid": tid, "event": format!("{event:?}").to_lowercase(), "status": to}),
            now_ms,
        )?;
        tx.execute(
            "UPDATE sub_orders SET status = ? WHERE tid = ? AND status NOT IN ('TRADE_FINISHED', 'TRADE_CLOSED', 'TRADE_CLOSED_BY_TAOBAO')",
            args![to, tid],
        )?;
        // The lianbei read model copies the trade's status and times (none for other trades).
        tx.execute(
            &format!(
                "UPDATE lianbei_orders SET status = ?, \
                 {time_column} = (SELECT {time_column} FROM trades WHERE tid = ?) WHERE tid = ?"
            ),
            args![to, tid, tid],
        )?;
    }
    Ok(changed)
}
