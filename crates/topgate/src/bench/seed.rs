//! The data of `topgate bench`: `topgate bench seed` writes stored orders directly through the
//! [`Store`] (large transactions, for the million-order case, with the server stopped), and a
//! bench run prepares the orders its requests consume through the admin API.
//!
//! Seeded orders are lianbei trades (what `lianbei.order.notice` reads) and right orders with
//! their idempotency keys and digests (what `right.pay.notify` looks up and inserts next to), so that both
//! the read and the write path run against tables of the stated size. Ids live in fixed ranges
//! far from the sandbox's, and seeding again skips what exists.

use serde_json::{json, Value};

use crate::args;
use crate::store::{Store, StoreError, Tx};

/// First tid of the seeded lianbei orders.
pub const LIANBEI_BASE: i64 = 2_000_000_000;
/// First order_id of the seeded right orders.
const RIGHT_ORDER_BASE: i64 = 3_000_000_000;
/// Orders per transaction: big enough that fsyncs do not dominate, small enough to bound the
/// WAL and the writer's memory.
const CHUNK: u64 = 20_000;

/// Seeds the sandbox (idempotent) then `orders` lianbei trades and `orders` right orders.
pub async fn seed(store: &Store, orders: u64, progress: bool) -> anyhow::Result<()> {
    let now_ms = crate::clock::millis(crate::clock::Clock::system().now());
    store
        .attempt(move |tx| Ok(crate::sandbox::seed(tx, now_ms)))
        .await?
        .map_err(|e| anyhow::anyhow!("sandbox seed failed: {e}"))?;
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(orders);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("seed [{bar:40}] {pos}/{len} {per_sec} {eta}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let mut start = 0;
    while start < orders {
        let end = (start + CHUNK).min(orders);
        store
            .write(move |tx| seed_range(tx, start, end, now_ms))
            .await?;
        if let Some(bar) = &bar {
            bar.set_position(end);
        }
        start = end;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(())
}

fn seed_range(tx: &mut dyn Tx, start: u64, end: u64, now_ms: i64) -> Result<(), StoreError> {
    let created = now_ms - 86_400_000;
    for i in start..end {
        let tid = LIANBEI_BASE + i as i64;
        let inserted = tx.execute(
            "INSERT INTO trades (tid, seller_id, buyer_id, biz_kind, status, created_at, pay_time, consign_time, end_time, total_fee, discount_fee, payment, source, out_id) \
             VALUES (?, 2000, 888888, 'LIANBEI', 'TRADE_FINISHED', ?, ?, ?, ?, 1, 0, 1, 'xpos', ?) ON CONFLICT DO NOTHING",
            args![tid, created, created + 60_000, created + 60_000, created + 120_000, format!("bench-{i}")],
        )?;
        if inserted == 1 {
            tx.execute(
                "INSERT INTO sub_orders (oid, tid, item_id, sku_id, sku_text, price, quantity, nego_price, discount_fee, payment, status) \
                 VALUES (?, ?, 10000, 0, 'sku', 1, 1, 0, 0, 1, 'TRADE_FINISHED')",
                args![tid, tid],
            )?;
            tx.execute(
                "INSERT INTO store_sales (tid, store_id, guider_id, guider_name, operator_id, operator_name) VALUES (?, 1, '1', '导购员名称', '1', '收营员名称')",
                args![tid],
            )?;
        }
        let order_id = RIGHT_ORDER_BASE + i as i64;
        let outer = format!("seed-{i}");
        tx.execute(
            "INSERT INTO right_orders (order_id, provider_id, app_key, source, outer_order_id, idempotent_id, user_id, open_id, phone, amount, pay_time, right_code, biz, biz_scene, title, channel_id, extend, status, created_at, request_hash, payment_hash) \
             VALUES (?, 1, 'test', '中国移动', ?, ?, 10001, '000000000000000000000', '18072887365', 100, ?, 'flowPacket', 'seed', 'seed', '流量包', 1234, '{}', 'PAID', ?, 'seed', 'seed') ON CONFLICT DO NOTHING",
            args![order_id, outer.as_str(), outer.as_str(), created, created],
        )?;
    }
    crate::api::lianbei::record_orders(
        tx,
        LIANBEI_BASE + start as i64,
        LIANBEI_BASE + end as i64 - 1,
    )
}

/// The admin-API bodies of `n` carrier orders from `base` (pending, supplier 1, biz type 30).
pub fn carrier_trades(base: i64, n: u64) -> Vec<Value> {
    (0..n as i64)
        .map(|k| {
            let tid = base + k;
            json!({"tid": tid, "kind": "CARRIER", "seller_id": crate::sandbox::SELLER_ID, "buyer_id": 888888,
                "lines": [{"oid": tid, "item_id": 20000, "price": 5000, "quantity": 1}],
                "carrier": {"supplier_id": 1, "biz_type": "30"}})
        })
        .collect()
}

/// The admin-API bodies of `n` opentrade orders from `base` (paid, awaiting the callback).
pub fn opentrade_trades(base: i64, n: u64) -> Vec<Value> {
    (0..n as i64)
        .map(|k| {
            let tid = base + k;
            json!({"tid": tid, "kind": "OPENTRADE", "seller_id": crate::sandbox::SELLER_ID, "buyer_id": 10001,
                "lines": [{"oid": tid, "item_id": 30000, "price": 10000, "quantity": 1}],
                "open_trade": {"transfer_id": format!("bench_{tid}"), "product_id": "p1", "activity_id": "a1",
                    "gift_id": "g1", "phone": "18072887365"}})
        })
        .collect()
}

/// The admin-API bodies of `n` lianbei orders from `base` (finished store sales of store 1).
pub fn lianbei_trades(base: i64, n: u64) -> Vec<Value> {
    (0..n as i64)
        .map(|k| {
            let tid = base + k;
            json!({"tid": tid, "kind": "LIANBEI", "seller_id": crate::sandbox::SELLER_ID, "buyer_id": 888888,
                "status": "TRADE_FINISHED", "source": "xpos", "out_id": format!("bench-{tid}"),
                "lines": [{"oid": tid, "item_id": 10000, "sku_id": 0, "sku_text": "sku", "price": 1, "quantity": 1}],
                "store_sale": {"store_id": 1, "guider_id": "1", "guider_name": "导购员名称",
                    "operator_id": "1", "operator_name": "收营员名称"}})
        })
        .collect()
}
