//! Admin operations on the business data (domain.md §3.8): create what the APIs act on, move
//! trades and right orders through their lifecycles, inspect the results. One code path serves
//! the admin HTTP API, the `topgate admin` CLI and the sandbox seed.

use serde::Deserialize;
use serde_json::{json, Value as Json};
use top_protocol::timestamp;

use crate::apps::{self, NewApp};
use crate::args;
use crate::clock::{from_millis, millis};
use crate::store::{Row, StoreError, Tx};
use crate::trades::{self, TradeEvent};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("conflicts with existing data: {0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Constraint(c) => AdminError::Conflict(c),
            other => AdminError::Store(other),
        }
    }
}

fn from_json<T: for<'de> Deserialize<'de>>(body: &Json) -> Result<T, AdminError> {
    T::deserialize(body).map_err(|e| AdminError::Invalid(e.to_string()))
}

#[derive(Deserialize)]
struct NewUser {
    user_id: i64,
    nick: String,
    mobile: Option<String>,
    #[serde(default)]
    is_seller: bool,
}
#[derive(Deserialize)]
struct NewItem {
    item_id: i64,
    seller_id: i64,
    title: String,
    #[serde(default)]
    pic_url: String,
    price: i64,
}
#[derive(Deserialize)]
struct NewBizType {
    code: String,
    name: String,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    auto_finish_on_activation: bool,
}
#[derive(Deserialize)]
struct NewSupplier {
    supplier_id: i64,
    name: String,
    #[serde(default)]
    biz_types: Vec<String>,
}
#[derive(Deserialize)]
struct NewNamed {
    id: i64,
    name: String,
}
#[derive(Deserialize)]
struct NewStore {
    store_id: i64,
    partner_id: i64,
    name: String,
}
#[derive(Deserialize)]
struct NewProvider {
    provider_id: i64,
    name: String,
    #[serde(default)]
    sources: Vec<String>,
}
#[derive(Deserialize)]
struct NewRight {
    provider_id: i64,
    right_code: String,
    #[serde(default)]
    biz: String,
    #[serde(default)]
    title: String,
    #[serde(default = "yes")]
    enabled: bool,
}
#[derive(Deserialize)]
struct NewAppBody {
    app_key: String,
    secret: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    sandbox: bool,
    supplier_id: Option<i64>,
    partner_id: Option<i64>,
    provider_id: Option<i64>,
    seller_id: Option<i64>,
    /// Defaults to every method served.
    methods: Option<Vec<String>>,
    calls_per_second: Option<u32>,
}
#[derive(Deserialize)]
struct NewSession {
    app_key: String,
    user_id: i64,
    session_key: Option<String>,
    #[serde(default = "default_ttl")]
    ttl_secs: i64,
}
#[derive(Deserialize)]
struct Line {
    oid: i64,
    item_id: i64,
    #[serde(default)]
    sku_id: i64,
    #[serde(default)]
    sku_text: String,
    price: i64,
    quantity: i64,
    #[serde(default)]
    nego_price: i64,
    #[serde(default)]
    discount_fee: i64,
}
#[derive(Deserialize)]
struct CarrierExt {
    supplier_id: i64,
    biz_type: String,
}
#[derive(Deserialize)]
struct StoreSaleExt {
    store_id: i64,
    #[serde(default)]
    guider_id: String,
    #[serde(default)]
    guider_name: String,
    #[serde(default)]
    operator_id: String,
    #[serde(default)]
    operator_name: String,
}
#[derive(Deserialize, Default)]
struct OpenTradeExt {
    #[serde(default)]
    transfer_id: String,
    #[serde(default)]
    product_id: String,
    #[serde(default)]
    activity_id: String,
    #[serde(default)]
    gift_id: String,
    #[serde(default)]
    phone: String,
}
#[derive(Deserialize)]
struct NewTrade {
    tid: i64,
    kind: String,
    seller_id: i64,
    buyer_id: i64,
    #[serde(default = "default_status")]
    status: String,
    /// Wall-clock GMT+8; defaults: created an hour ago, paid/ended a minute after.
    created: Option<String>,
    paid: Option<String>,
    ended: Option<String>,
    lines: Vec<Line>,
    #[serde(default)]
    source: String,
    #[serde(default)]
    out_id: String,
    carrier: Option<CarrierExt>,
    store_sale: Option<StoreSaleExt>,
    open_trade: Option<OpenTradeExt>,
}

fn yes() -> bool {
    true
}
fn default_ttl() -> i64 {
    365 * 24 * 3600
}
fn default_status() -> String {
    "WAIT_SELLER_SEND_GOODS".into()
}

/// The resources `create` knows, for help texts.
pub const RESOURCES: &[&str] = &[
    "users",
    "items",
    "biz-types",
    "suppliers",
    "partners",
    "stores",
    "providers",
    "rights",
    "trades",
    "apps",
    "sessions",
];

/// Creates one resource from its JSON description; returns what was stored.
pub fn create(
    tx: &mut dyn Tx,
    resource: &str,
    body: &Json,
    now_ms: i64,
) -> Result<Json, AdminError> {
    match resource {
        "users" => {
            let u: NewUser = from_json(body)?;
            tx.execute(
                "INSERT INTO users (user_id, nick, mobile, is_seller) VALUES (?, ?, ?, ?)",
                args![u.user_id, u.nick.as_str(), u.mobile.clone(), u.is_seller],
            )?;
            Ok(
                json!({"user_id": u.user_id, "nick": u.nick, "mobile": u.mobile, "is_seller": u.is_seller}),
            )
        }
        "items" => {
            let i: NewItem = from_json(body)?;
            tx.execute(
                "INSERT INTO items (item_id, seller_id, title, pic_url, price) VALUES (?, ?, ?, ?, ?)",
                args![i.item_id, i.seller_id, i.title.as_str(), i.pic_url.as_str(), i.price],
            )?;
            Ok(json!({"item_id": i.item_id}))
        }
        "biz-types" => {
            let b: NewBizType = from_json(body)?;
            tx.execute(
                "INSERT INTO biz_types (code, name, enabled, auto_finish_on_activation) VALUES (?, ?, ?, ?)",
                args![b.code.as_str(), b.name.as_str(), b.enabled, b.auto_finish_on_activation],
            )?;
            Ok(json!({"code": b.code}))
        }
        "suppliers" => {
            let s: NewSupplier = from_json(body)?;
            tx.execute(
                "INSERT INTO suppliers (supplier_id, name) VALUES (?, ?)",
                args![s.supplier_id, s.name.as_str()],
            )?;
            for code in &s.biz_types {
                tx.execute(
                    "INSERT INTO supplier_biz_types (supplier_id, biz_type) VALUES (?, ?)",
                    args![s.supplier_id, code.as_str()],
                )?;
            }
            Ok(json!({"supplier_id": s.supplier_id, "biz_types": s.biz_types}))
        }
        "partners" => {
            let p: NewNamed = from_json(body)?;
            tx.execute(
                "INSERT INTO partners (partner_id, name) VALUES (?, ?)",
                args![p.id, p.name.as_str()],
            )?;
            Ok(json!({"partner_id": p.id}))
        }
        "stores" => {
            let s: NewStore = from_json(body)?;
            tx.execute(
                "INSERT INTO stores (store_id, partner_id, name) VALUES (?, ?, ?)",
                args![s.store_id, s.partner_id, s.name.as_str()],
            )?;
            Ok(json!({"store_id": s.store_id}))
        }
        "providers" => {
            let p: NewProvider = from_json(body)?;
            tx.execute(
                "INSERT INTO rights_providers (provider_id, name) VALUES (?, ?)",
                args![p.provider_id, p.name.as_str()],
            )?;
            for source in &p.sources {
                tx.execute(
                    "INSERT INTO provider_sources (provider_id, source) VALUES (?, ?)",
                    args![p.provider_id, source.as_str()],
                )?;
            }
            Ok(json!({"provider_id": p.provider_id, "sources": p.sources}))
        }
        "rights" => {
            let r: NewRight = from_json(body)?;
            tx.execute(
                "INSERT INTO rights (provider_id, right_code, biz, title, enabled) VALUES (?, ?, ?, ?, ?)",
                args![r.provider_id, r.right_code.as_str(), r.biz.as_str(), r.title.as_str(), r.enabled],
            )?;
            Ok(json!({"provider_id": r.provider_id, "right_code": r.right_code}))
        }
        "trades" => create_trade(tx, from_json(body)?, now_ms),
        "apps" => {
            let a: NewAppBody = from_json(body)?;
            if apps::load_app(tx, &a.app_key)?.is_some() {
                return Err(AdminError::Conflict(format!("app {} exists", a.app_key)));
            }
            let methods = a.methods.unwrap_or_else(crate::api::all_methods);
            let new = NewApp {
                app_key: a.app_key,
                secret: a.secret,
                name: a.name,
                sandbox: a.sandbox,
                supplier_id: a.supplier_id,
                partner_id: a.partner_id,
                provider_id: a.provider_id,
                seller_id: a.seller_id,
                methods: methods
                    .into_iter()
                    .map(|m| (m, a.calls_per_second))
                    .collect(),
            };
            let app = apps::create_app(tx, &new, now_ms)?;
            Ok(json!({"app_key": app.app_key, "secret": app.secret, "methods": app.methods}))
        }
        "sessions" => {
            let s: NewSession = from_json(body)?;
            if apps::load_app(tx, &s.app_key)?.is_none() {
                return Err(AdminError::NotFound(format!("app {}", s.app_key)));
            }
            let session = apps::create_session(
                tx,
                &s.app_key,
                s.user_id,
                s.session_key.as_deref(),
                now_ms + s.ttl_secs * 1000,
            )?;
            Ok(
                json!({"session": session.session_key, "user_id": session.user_id, "expires_at": timestamp::format_wall_clock(from_millis(session.expires_at_ms))}),
            )
        }
        other => Err(AdminError::Invalid(format!(
            "unknown resource {other}; one of {}",
            RESOURCES.join(", ")
        ))),
    }
}

fn wall_ms(value: &Option<String>, default: i64) -> Result<i64, AdminError> {
    match value {
        None => Ok(default),
        Some(text) => timestamp::parse_wall_clock(text)
            .map(millis)
            .ok_or_else(|| AdminError::Invalid(format!("{text} is not yyyy-MM-dd HH:mm:ss"))),
    }
}

fn create_trade(tx: &mut dyn Tx, t: NewTrade, now_ms: i64) -> Result<Json, AdminError> {
    let ext_ok = match t.kind.as_str() {
        "CARRIER" => t.carrier.is_some(),
        "LIANBEI" => t.store_sale.is_some(),
        "OPENTRADE" | "GENERIC" => true,
        other => return Err(AdminError::Invalid(format!("unknown kind {other}"))),
    };
    if !ext_ok {
        return Err(AdminError::Invalid(format!(
            "a {} trade needs its extension",
            t.kind
        )));
    }
    if t.lines.is_empty() {
        return Err(AdminError::Invalid(
            "a trade needs at least one line".into(),
        ));
    }
    let status = t.status.as_str();
    let paid = !matches!(status, "WAIT_BUYER_PAY" | "TRADE_CLOSED_BY_TAOBAO");
    let created = wall_ms(&t.created, now_ms - 3_600_000)?;
    let pay_time = paid
        .then(|| wall_ms(&t.paid, created + 60_000))
        .transpose()?;
    let consign_time = matches!(status, "WAIT_BUYER_CONFIRM_GOODS" | "TRADE_FINISHED")
        .then(|| pay_time.unwrap_or(created));
    let end_time = trades::is_final(status)
        .then(|| {
            wall_ms(
                &t.ended,
                consign_time.or(pay_time).unwrap_or(created) + 60_000,
            )
        })
        .transpose()?;
    let mut total = 0;
    let mut discount = 0;
    let mut payment = 0;
    let mut lines = Vec::new();
    for l in &t.lines {
        if l.price < 0 || l.quantity < 1 || l.nego_price < 0 || l.discount_fee < 0 {
            return Err(AdminError::Invalid(format!(
                "line {} has a negative amount or no quantity",
                l.oid
            )));
        }
        let base = if l.nego_price > 0 {
            l.nego_price
        } else {
            l.price * l.quantity
        };
        let pay = (base - l.discount_fee).max(0);
        total += base;
        discount += l.discount_fee;
        payment += pay;
        lines.push((l, pay));
    }
    tx.execute(
        "INSERT INTO trades (tid, seller_id, buyer_id, biz_kind, status, created_at, pay_time, consign_time, end_time, total_fee, discount_fee, payment, source, out_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        args![t.tid, t.seller_id, t.buyer_id, t.kind.as_str(), status, created, pay_time, consign_time, end_time, total, discount, payment, t.source.as_str(), t.out_id.as_str()],
    )?;
    for (l, pay) in lines {
        tx.execute(
            "INSERT INTO sub_orders (oid, tid, item_id, sku_id, sku_text, price, quantity, nego_price, discount_fee, payment, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            args![l.oid, t.tid, l.item_id, l.sku_id, l.sku_text.as_str(), l.price, l.quantity, l.nego_price, l.discount_fee, pay, status],
        )?;
    }
    if let Some(c) = &t.carrier {
        tx.execute(
            "INSERT INTO carrier_fulfilments (tid, supplier_id, biz_type, status) VALUES (?, ?, ?, 'PENDING')",
            args![t.tid, c.supplier_id, c.biz_type.as_str()],
        )?;
    }
    if let Some(s) = &t.store_sale {
        tx.execute(
            "INSERT INTO store_sales (tid, store_id, guider_id, guider_name, operator_id, operator_name) VALUES (?, ?, ?, ?, ?, ?)",
            args![t.tid, s.store_id, s.guider_id.as_str(), s.guider_name.as_str(), s.operator_id.as_str(), s.operator_name.as_str()],
        )?;
    }
    if t.kind == "LIANBEI" {
        crate::api::lianbei::record_orders(tx, t.tid, t.tid)?;
    }
    if t.kind == "OPENTRADE" {
        let o = t.open_trade.unwrap_or_default();
        tx.execute(
            "INSERT INTO open_trade_infos (tid, transfer_id, product_id, activity_id, gift_id, phone, handling) VALUES (?, ?, ?, ?, ?, ?, 'PENDING')",
            args![t.tid, o.transfer_id.as_str(), o.product_id.as_str(), o.activity_id.as_str(), o.gift_id.as_str(), o.phone.as_str()],
        )?;
    }
    get_trade(tx, t.tid)
}

fn wall(ms: Option<i64>) -> Json {
    ms.map_or(Json::Null, |m| {
        json!(timestamp::format_wall_clock(from_millis(m)))
    })
}

fn rows_to_json(rows: &[Row], columns: &[&str]) -> Json {
    Json::Array(
        rows.iter()
            .map(|r| {
                let mut map = serde_json::Map::new();
                for (i, c) in columns.iter().enumerate() {
                    let v = match r.0.get(i) {
                        Some(crate::store::SqlValue::Int(n)) => json!(n),
                        Some(crate::store::SqlValue::Text(t)) => json!(t),
                        _ => Json::Null,
                    };
                    map.insert((*c).to_string(), v);
                }
                Json::Object(map)
            })
            .collect(),
    )
}

fn select(
    tx: &mut dyn Tx,
    table: &str,
    columns: &[&str],
    key: &str,
    id: i64,
) -> Result<Json, StoreError> {
    let sql = format!("SELECT {} FROM {table} WHERE {key} = ?", columns.join(", "));
    Ok(rows_to_json(&tx.query(&sql, args![id])?, columns))
}

/// A trade with its lines, extension, cards, notifications and refunds.
pub fn get_trade(tx: &mut dyn Tx, tid: i64) -> Result<Json, AdminError> {
    let t = trades::load(tx, tid)?.ok_or_else(|| AdminError::NotFound(format!("trade {tid}")))?;
    let first = |v: Json| {
        v.as_array()
            .and_then(|a| a.first().cloned())
            .unwrap_or(Json::Null)
    };
    Ok(json!({
        "tid": t.tid, "seller_id": t.seller_id, "buyer_id": t.buyer_id, "kind": t.biz_kind,
        "status": t.status, "created": wall(Some(t.created_at)), "paid": wall(t.pay_time),
        "consigned": wall(t.consign_time), "ended": wall(t.end_time), "total_fee": t.total_fee,
        "discount_fee": t.discount_fee, "payment": t.payment, "source": t.source, "out_id": t.out_id,
        "lines": select(tx, "sub_orders", &["oid", "item_id", "sku_id", "sku_text", "price", "quantity", "nego_price", "discount_fee", "payment", "status"], "tid", tid)?,
        "fulfilment": first(select(tx, "carrier_fulfilments", &["supplier_id", "biz_type", "out_order_no", "supplier_received", "status", "exception", "offer_start", "offer_end", "activated_at"], "tid", tid)?),
        "cards": select(tx, "sim_cards", &["iccid", "tag", "activate_deadline", "deadline_passed", "status", "activated_at"], "tid", tid)?,
        "notifications": select(tx, "supplier_notifications", &["id", "notify_type", "natural_key", "payload", "dates_swapped", "received_at"], "tid", tid)?,
        "store_sale": first(select(tx, "store_sales", &["store_id", "guider_id", "guider_name", "operator_id", "operator_name"], "tid", tid)?),
        "open_trade": first(select(tx, "open_trade_infos", &["transfer_id", "product_id", "activity_id", "gift_id", "phone", "handling", "result_code", "result_desc", "first_charge_amount", "first_charge_time", "ext"], "tid", tid)?),
        "refunds": select(tx, "refunds", &["refund_id", "oid", "amount", "reason", "created_at"], "tid", tid)?,
    }))
}

/// Moves a trade along an admin edge (pay, cancel, consign, confirm, refund).
pub fn trade_event(
    tx: &mut dyn Tx,
    tid: i64,
    event: &str,
    now_ms: i64,
) -> Result<Json, AdminError> {
    let ev = TradeEvent::parse(event).ok_or_else(|| {
        AdminError::Invalid(format!(
            "unknown event {event}; pay, cancel, consign, confirm or refund"
        ))
    })?;
    tx.lock_row("trades", "tid", tid)?;
    let t = trades::load(tx, tid)?.ok_or_else(|| AdminError::NotFound(format!("trade {tid}")))?;
    if !trades::apply(tx, tid, ev, now_ms)? {
        return Err(AdminError::Conflict(format!(
            "{event} is not allowed from {}",
            t.status
        )));
    }
    if ev == TradeEvent::Refund {
        // Sub-orders refunded one by one (a failed opentrade sub-order) are not refunded twice.
        let refunded = tx
            .query_opt(
                "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds WHERE tid = ?",
                args![tid],
            )?
            .map_or(0, |r| r.i64(0));
        tx.execute(
            "INSERT INTO refunds (tid, amount, reason, created_at) VALUES (?, ?, 'admin refund', ?)",
            args![tid, (t.payment - refunded).max(0), now_ms],
        )?;
    }
    get_trade(tx, tid)
}

const RIGHT_ORDER_COLUMNS: &[&str] = &[
    "order_id",
    "provider_id",
    "app_key",
    "source",
    "outer_order_id",
    "idempotent_id",
    "user_id",
    "open_id",
    "phone",
    "amount",
    "pay_time",
    "right_code",
    "biz",
    "biz_scene",
    "title",
    "channel_id",
    "extend",
    "status",
    "created_at",
];

pub fn get_right_order(tx: &mut dyn Tx, order_id: i64) -> Result<Json, AdminError> {
    select(
        tx,
        "right_orders",
        RIGHT_ORDER_COLUMNS,
        "order_id",
        order_id,
    )?
    .as_array()
    .and_then(|a| a.first().cloned())
    .ok_or_else(|| AdminError::NotFound(format!("right order {order_id}")))
}

/// `finish` (PAID → FINISHED) or `refund` (PAID → REFUNDED).
pub fn right_order_event(
    tx: &mut dyn Tx,
    order_id: i64,
    event: &str,
    now_ms: i64,
) -> Result<Json, AdminError> {
    let to = match event {
        "finish" => "FINISHED",
        "refund" => "REFUNDED",
        _ => {
            return Err(AdminError::Invalid(format!(
                "unknown event {event}; finish or refund"
            )))
        }
    };
    get_right_order(tx, order_id)?;
    if tx.execute(
        "UPDATE right_orders SET status = ? WHERE order_id = ? AND status = 'PAID'",
        args![to, order_id],
    )? != 1
    {
        return Err(AdminError::Conflict(format!(
            "right order {order_id} is not PAID"
        )));
    }
    crate::events::emit(
        tx,
        "right_order.status_changed",
        &format!("right_order:{order_id}"),
        &json!({"order_id": order_id.to_string(), "status": to}),
        now_ms,
    )?;
    get_right_order(tx, order_id)
}

pub fn list_right_orders(tx: &mut dyn Tx) -> Result<Json, AdminError> {
    let sql = format!(
        "SELECT {} FROM right_orders ORDER BY order_id",
        RIGHT_ORDER_COLUMNS.join(", ")
    );
    Ok(rows_to_json(&tx.query(&sql, &[])?, RIGHT_ORDER_COLUMNS))
}

pub fn list_idempotency(tx: &mut dyn Tx) -> Result<Json, AdminError> {
    let cols = [
        "scope",
        "idem_key",
        "request_hash",
        "response_body",
        "created_at",
    ];
    let rows = tx.query(
        "SELECT scope, idem_key, request_hash, response_body, created_at FROM idempotency_records ORDER BY created_at, scope, idem_key",
        &[],
    )?;
    Ok(rows_to_json(&rows, &cols))
}
