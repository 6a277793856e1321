//! `alibaba.diantao.tripartite.right.pay.notify`: a rights provider reports a paid benefit and
//! Diantao records a right order, exactly once per idempotent key (domain.md §2.3).
//!
//! Keys, scoped to the provider: `idempotent_id` when given, and always `outer_order_id`. The
//! same payload under a known key replays the first answer; a different one is `10005`
//! (idempotent id) or `10006` (outer order id). Both keys are unique columns of the order row,
//! which also keeps the digests of the request that created it (`request_hash` of the payment
//! with its idempotent id, `payment_hash` of the payment alone): one row per notice, and
//! concurrent duplicates cannot create two orders (a first notice is inserted before its keys
//! are looked up: see `apply`). The one separate record is that of an idempotent id first seen
//! with an existing order's payment, which replays that order: the id stays bound to it
//! (`BoundKey`). `open_id` is a
//! keyed hash of (app, user): stable for one app, different across apps; apps of one provider
//! share its keys and orders, so a replay answers the first `order_id` with the *caller's*
//! `open_id` (byte-identical for the app first answered). Choices: `phone_number` is required
//! (it is the only user key); `amount` defaults to 0 and `pay_time` to the receive time; success
//! omits `msg_code`/`msg_info`; `biz` is free text up to 64 characters, as the page's example
//! shows.

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use top_protocol::registry::{MethodSpec, ParamKind, ParamSpec};
use top_protocol::{Object, TopError};

use super::idempotency::{self, Recorded};
use super::{check_len, is_code, is_token, payload_hash, Fields};
use crate::args;
use crate::clock::millis;
use crate::gateway::{internal, Call, HandlerFuture};
use crate::store::{Row, StoreError, Tx};

pub const METHOD: &str = "alibaba.diantao.tripartite.right.pay.notify";
pub const PARAM: &str = "tripartite_pay_notify_dto";
/// Skew allowed for a `pay_time` in the future, as for request timestamps.
const FUTURE_SKEW_MS: i64 = 10 * 60 * 1000;

pub const SPEC: MethodSpec = MethodSpec {
    name: METHOD,
    params: &[ParamSpec {
        name: PARAM,
        kind: ParamKind::Json,
        required: false,
    }],
    needs_session: false,
};

#[derive(Debug, Clone)]
struct PayNotice {
    source: String,
    outer_order_id: String,
    idempotent_id: Option<String>,
    phone: String,
    amount: i64,
    pay_time: Option<i64>,
    right_code: Option<String>,
    biz: Option<String>,
    biz_scene: Option<String>,
    title: Option<String>,
    channel_id: Option<i64>,
    extend: String,
}

/// The payment a notice reports, normalised: everything but the idempotent id, so that two
/// notices of the same payment agree. Its JSON text is what `payment_hash` digests; the fields
/// are in key order, so it serialises exactly as the `json!` object it replaced.
#[derive(serde::Serialize)]
struct CanonicalPayment<'a> {
    amount: i64,
    biz: Option<&'a str>,
    biz_scene: Option<&'a str>,
    channel_id: Option<i64>,
    extend: &'a str,
    outer_order_id: &'a str,
    pay_time: Option<i64>,
    phone: &'a str,
    right_code: Option<&'a str>,
    source: &'a str,
    title: Option<&'a str>,
}

impl PayNotice {
    fn canonical_payment(&self) -> CanonicalPayment<'_> {
        CanonicalPayment {
            amount: self.amount,
            biz: self.biz.as_deref(),
            biz_scene: self.biz_scene.as_deref(),
            channel_id: self.channel_id,
            extend: &self.extend,
            outer_order_id: &self.outer_order_id,
            pay_time: self.pay_time,
            phone: &self.phone,
            right_code: self.right_code.as_deref(),
            source: &self.source,
            title: self.title.as_deref(),
        }
    }
}

fn parse(call: &Call) -> Result<PayNotice, TopError> {
    let f = Fields::parse(&call.params, PARAM)?;
    let source = f.req_str("source")?;
    let outer_order_id = f.req_str("outer_order_id")?;
    if source.trim().is_empty() {
        return Err(f.missing("source"));
    }
    check_len(&f, "source", &source, 64)?;
    if outer_order_id.len() > 64 || !is_code(&outer_order_id, true) {
        return Err(f.invalid("outer_order_id", "must be at most 64 of [A-Za-z0-9_-]"));
    }
    let idempotent_id = f.opt_str("idempotent_id")?;
    if let Some(id) = &idempotent_id {
        if id.chars().count() > 128 || !is_token(id) {
            return Err(f.invalid(
                "idempotent_id",
                "must be at most 128 printable characters without spaces",
            ));
        }
    }
    let phone = f.req_str("phone_number")?;
    let phone_ok = phone.len() == 11
        && phone.starts_with('1')
        && matches!(phone.as_bytes()[1], b'3'..=b'9')
        && phone.bytes().all(|b| b.is_ascii_digit());
    if !phone_ok {
        return Err(f.invalid("phone_number", "must be a mainland mobile number"));
    }
    let amount = f.opt_i64("amount")?.unwrap_or(0);
    if amount < 0 {
        return Err(f.invalid("amount", "must be a non-negative integer (fen)"));
    }
    let now_ms = millis(call.now);
    let pay_time = f.opt_i64("pay_time")?;
    if let Some(t) = pay_time {
        if t <= 0 || t > now_ms + FUTURE_SKEW_MS {
            return Err(f.invalid("pay_time", "must be epoch milliseconds, not in the future"));
        }
    }
    let right_code = f.opt_str("right_code")?;
    if let Some(rc) = &right_code {
        if rc.len() > 64 || !is_code(rc, false) {
            return Err(f.invalid("right_code", "must be at most 64 of [A-Za-z0-9_]"));
        }
    }
    let biz = f.opt_str_max("biz", 64)?;
    let biz_scene = f.opt_str_max("biz_scene", 64)?;
    let title = f.opt_str_max("title", 128)?;
    let channel_id = f.opt_i64("channel_id")?;
    if channel_id.is_some_and(|c| c <= 0) {
        return Err(f.invalid("channel_id", "must be a positive integer"));
    }
    let extend = f.opt_str("extend")?.unwrap_or_else(|| "{}".into());
    check_len(&f, "extend", &extend, 2048)?;
    match serde_json::from_str::<serde_json::Value>(&extend) {
        Ok(serde_json::Value::Object(_)) => {}
        _ => return Err(f.invalid("extend", "must be a JSON object")),
    }
    Ok(PayNotice {
        source,
        outer_order_id,
        idempotent_id,
        phone,
        amount,
        pay_time,
        right_code,
        biz,
        biz_scene,
        title,
        channel_id,
        extend,
    })
}

/// `open_id`: 21 decimal digits of HMAC-SHA256(key, app_key ":" user_id).
pub fn open_id(key: &str, app_key: &str, user_id: i64) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(format!("{app_key}:{user_id}").as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut n: u128 = 0;
    for b in &digest[..12] {
        n = (n << 8) | u128::from(*b);
    }
    format!("{:021}", n % 10u128.pow(21))
}

type Refusal = (&'static str, &'static str);

/// The order a notice created, or the one it replays, with the caller's `open_id`.
struct Accepted {
    open_id: String,
    order_id: i64,
}

fn success(accepted: &Accepted) -> Object {
    Object::new().field("succ", true).field(
        "data",
        Object::new()
            .field("open_id", accepted.open_id.as_str())
            .field("order_id", accepted.order_id.to_string()),
    )
}

fn failure((code, info): Refusal) -> Object {
    Object::new()
        .field("msg_info", info)
        .field("msg_code", code)
        .field("succ", false)
}

pub fn handle(call: Call) -> HandlerFuture {
    Box::pin(async move {
        let notice = parse(&call)?;
        let provider_id = call.app.provider_id;
        let app_key = call.app.app_key.clone();
        let open_id_key = call.state.settings.open_id_key.clone();
        let now_ms = millis(call.now);
        // Hashed here, on the request's own thread, rather than inside the job: the single
        // writer thread is the bottleneck of every write, so it should only do SQL.
        let hashes = Hashes::of(&notice);
        let outcome = call
            .state
            .store
            .attempt(move |tx| {
                apply(
                    tx,
                    provider_id,
                    &app_key,
                    &open_id_key,
                    &notice,
                    &hashes,
                    now_ms,
                )
            })
            .await
            .map_err(internal)?;
        Ok(match outcome {
            Ok(accepted) => success(&accepted),
            Err(refusal) => failure(refusal),
        })
    })
}

/// The idempotency digests of a notice: of the payment, and of the payment with its id.
struct Hashes {
    payment: String,
    full: String,
}

impl Hashes {
    fn of(n: &PayNotice) -> Self {
        let payment = payload_hash(&n.canonical_payment());
        let full = payload_hash(&(n.idempotent_id.as_deref(), payment.as_str()));
        Self { payment, full }
    }
}

/// A new order id: milliseconds since the epoch times 10^6 plus a process-wide counter (which
/// starts at a random point). Ids grow with time, so new rows land on the last page of the
/// table instead of a random one: with random ids every insert dirtied a page of its own, and
/// both the WAL traffic and the cache misses grew with the table. Two nodes would have to draw
/// the same counter value in the same millisecond to collide; the primary key then refuses the
/// second and its job is rerun with the next id.
fn next_order_id() -> i64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static COUNTER: OnceLock<AtomicU64> = OnceLock::new();
    let counter =
        COUNTER.get_or_init(|| AtomicU64::new(rand::thread_rng().gen_range(0..1_000_000)));
    let n = counter.fetch_add(1, Ordering::Relaxed) % 1_000_000;
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    // Stays within the documented range [10^14, 9·10^18) until the year 2255.
    (ms * 1_000_000 + n as i64).clamp(100_000_000_000_000, 8_999_999_999_999_999_999)
}

/// The payload of the `right_order.created` event (docs/events.md). Fields in key order, so
/// the text is the one the `json!` object it replaced gave; the writer thread serialises it.
#[derive(serde::Serialize)]
struct CreatedEvent<'a> {
    amount: i64,
    open_id: &'a str,
    order_id: String,
    outer_order_id: &'a str,
    provider_id: i64,
    source: &'a str,
    status: &'static str,
}

fn created_event(order_id: i64, provider_id: i64, n: &PayNotice, open_id: &str) -> String {
    serde_json::to_string(&CreatedEvent {
        amount: n.amount,
        open_id,
        order_id: order_id.to_string(),
        outer_order_id: &n.outer_order_id,
        provider_id,
        source: &n.source,
        status: "PAID",
    })
    .expect("an event payload serialises")
}

/// The insert of a new notice's order row, followed by `$on_conflict`: nothing, or an
/// `ON CONFLICT DO NOTHING` that lets a known key (or a taken order id) insert nothing instead
/// of failing.
macro_rules! insert_order_sql {
    ($on_conflict:literal) => {
        concat!(
            "INSERT INTO right_orders (order_id, provider_id, app_key, source, outer_order_id, idempotent_id, user_id, open_id, phone, amount, pay_time, right_code, biz, biz_scene, title, channel_id, extend, status, created_at, request_hash, payment_hash) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'PAID', ?, ?, ?)",
            $on_conflict
        )
    };
}

/// Decides a notice in the writer's transaction, in the order of §2.3, and creates its order
/// when it is new.
///
/// A notice that passes the reference verdicts (source, payer, right) is first inserted with
/// `ON CONFLICT DO NOTHING`, before its keys are looked up: nearly every notice is a first one,
/// and the unique constraints on both keys already tell whether it is. Only when that insert
/// changes nothing are the keys looked up, for a replay or `10005`/`10006`; the single writer
/// thus runs one query and one insert (plus the event's two) for a first notice.
fn apply(
    tx: &mut dyn Tx,
    provider_id: Option<i64>,
    app_key: &str,
    open_id_key: &str,
    n: &PayNotice,
    hashes: &Hashes,
    now_ms: i64,
) -> Result<Result<Accepted, Refusal>, StoreError> {
    let Some(provider_id) = provider_id else {
        return Ok(Err(("10007", "来源不属于当前应用")));
    };
    let bound_key = n
        .idempotent_id
        .as_ref()
        .map(|id| BoundKey::new(provider_id, id));
    if let Some(bound) = &bound_key {
        tx.lock_key(&bound.lock)?;
    }
    // The reference data every verdict needs, in one statement (the writer runs one job at a
    // time, so each statement saved is throughput); the verdicts keep the order of §2.3.
    let refs = tx
        .query_opt(
            "SELECT (SELECT COUNT(*) FROM provider_sources WHERE provider_id = ? AND source = ?), \
                    (SELECT user_id FROM users WHERE mobile = ?), \
                    (SELECT COUNT(*) FROM rights WHERE provider_id = ?), \
                    (SELECT COUNT(*) FROM rights WHERE provider_id = ? AND right_code = ? AND enabled = 1), \
                    (SELECT COUNT(*) FROM idempotency_records WHERE scope = ? AND idem_key = ?)",
            args![
                provider_id,
                n.source,
                n.phone,
                provider_id,
                provider_id,
                n.right_code,
                bound_key.as_ref().map(|b| b.scope.as_str()),
                bound_key.as_ref().map(|b| b.key.as_str())
            ],
        )?
        .ok_or_else(|| StoreError::Backend("reference query returned no row".into()))?;
    if refs.i64(0) == 0 {
        return Ok(Err(("10007", "来源不属于当前应用")));
    }
    // Inserts the order (with `sql`, one of `insert_order_sql!`) and records its event; `None`
    // when the insert changed nothing.
    let insert_order =
        |tx: &mut dyn Tx, sql: &str, user_id: i64| -> Result<Option<Accepted>, StoreError> {
            let open_id = open_id(open_id_key, app_key, user_id);
            // Not MAX + 1, so that concurrent writers never contend for the next id.
            let order_id = next_order_id();
            let inserted = tx.execute(
                sql,
                args![
                    order_id,
                    provider_id,
                    app_key,
                    n.source,
                    n.outer_order_id,
                    n.idempotent_id,
                    user_id,
                    open_id,
                    n.phone,
                    n.amount,
                    n.pay_time.unwrap_or(now_ms),
                    n.right_code,
                    n.biz,
                    n.biz_scene,
                    n.title,
                    n.channel_id,
                    n.extend,
                    now_ms,
                    n.idempotent_id.as_ref().map(|_| hashes.full.as_str()),
                    hashes.payment
                ],
            )?;
            if inserted == 0 {
                return Ok(None);
            }
            crate::events::emit_serialized(
                tx,
                crate::events::RIGHT_ORDER_CREATED,
                &format!("right_order:{order_id}"),
                &created_event(order_id, provider_id, n, &open_id),
                now_ms,
            )?;
            Ok(Some(Accepted { open_id, order_id }))
        };
    // An empty catalogue accepts any right code; otherwise it must name an enabled right.
    let right_refused = n.right_code.is_some() && refs.i64(2) > 0 && refs.i64(3) == 0;
    let user_id = refs.opt_i64(1);
    let key_bound_to_other_order = refs.i64(4) > 0;
    if let (Some(user_id), false, false) = (user_id, right_refused, key_bound_to_other_order) {
        let created = insert_order(tx, insert_order_sql!(" ON CONFLICT DO NOTHING"), user_id)?;
        if let Some(created) = created {
            return Ok(Ok(created));
        }
    }
    // Both keys in one statement: one snapshot, so a concurrent winner is seen under both or
    // neither (the idempotent id's verdict takes precedence).
    let known = tx.query(
        "SELECT order_id, user_id, idempotent_id, outer_order_id, request_hash, payment_hash FROM right_orders \
         WHERE provider_id = ? AND (idempotent_id = ? OR outer_order_id = ?)",
        args![provider_id, n.idempotent_id, n.outer_order_id],
    )?;
    if let Some(id) = &n.idempotent_id {
        if let Some(row) = known.iter().find(|r| r.opt_str(2).as_ref() == Some(id)) {
            if row.opt_str(4).as_deref() != Some(hashes.full.as_str()) {
                return Ok(Err(("10005", "幂等ID已被其他请求使用")));
            }
            return Ok(Ok(replay(row, app_key, open_id_key)));
        }
    }
    if let Some(bound) = bound_key.as_ref().filter(|_| key_bound_to_other_order) {
        return match idempotency::lookup(tx, &bound.scope, &bound.key, &hashes.full)? {
            Recorded::Replay(order_id) => replay_bound(tx, &order_id, app_key, open_id_key),
            Recorded::Conflict => Ok(Err(("10005", "幂等ID已被其他请求使用"))),
            Recorded::New => Err(StoreError::Backend(
                "an idempotent id's record vanished within its transaction".into(),
            )),
        };
    }
    if let Some(row) = known.iter().find(|r| r.str(3) == n.outer_order_id) {
        if row.opt_str(5).as_deref() != Some(hashes.payment.as_str()) {
            return Ok(Err(("10006", "外部订单号已被其他请求使用")));
        }
        if let Some(bound) = &bound_key {
            idempotency::record(
                tx,
                &bound.scope,
                &bound.key,
                &hashes.full,
                &row.i64(0).to_string(),
                now_ms,
            )?;
        }
        return Ok(Ok(replay(row, app_key, open_id_key)));
    }
    let Some(user_id) = user_id else {
        return Ok(Err(("10003", "手机号未绑定用户")));
    };
    if right_refused {
        return Ok(Err(("10004", "权益不存在或已停用")));
    }
    // New after all: the first insert met a taken order id. This one fails outright on a
    // conflict, and the job is rerun.
    insert_order(tx, insert_order_sql!(""), user_id)?
        .map(Ok)
        .ok_or_else(|| StoreError::Backend("an order insert changed nothing".into()))
}

/// An idempotent id that first came with the outer order id of an existing order (which has
/// its own idempotent id, or none) and was answered with that order: the id is bound to it in
/// the idempotency records, under the scope and key the pay notices used before migration
/// 0004, so that it replays that order again and refuses another payment with `10005`
/// (§2.3: a key answered once keeps its meaning). An order's own idempotent id needs no
/// record: it is the order row's unique column.
struct BoundKey {
    scope: String,
    key: String,
    /// What [`Tx::lock_key`] serialises on: a notice creating an order under the id and one
    /// binding the id to an existing order exclude each other through it, as no row or unique
    /// constraint is common to both.
    lock: String,
}

impl BoundKey {
    fn new(provider_id: i64, idempotent_id: &str) -> Self {
        let scope = format!("{METHOD}:{provider_id}");
        Self {
            lock: format!("{scope}:{idempotent_id}"),
            key: format!("idempotent:{idempotent_id}"),
            scope,
        }
    }
}

/// The replay of an idempotent id bound to the order `order_id` (see [`BoundKey`]).
fn replay_bound(
    tx: &mut dyn Tx,
    order_id: &str,
    app_key: &str,
    open_id_key: &str,
) -> Result<Result<Accepted, Refusal>, StoreError> {
    let order_id: i64 = order_id
        .parse()
        .map_err(|_| StoreError::Backend(format!("bound order id {order_id:?} is not a number")))?;
    let row = tx
        .query_opt(
            "SELECT order_id, user_id FROM right_orders WHERE order_id = ?",
            args![order_id],
        )?
        .ok_or_else(|| StoreError::Backend(format!("bound order {order_id} is missing")))?;
    Ok(Ok(replay(&row, app_key, open_id_key)))
}

/// The first answer for a known notice, for the calling app: the same order, with the caller's
/// own `open_id` (another app of the same provider must never see the first app's id for the
/// user). `row` is the order as selected in [`apply`].
fn replay(row: &Row, app_key: &str, open_id_key: &str) -> Accepted {
    Accepted {
        open_id: open_id(open_id_key, app_key, row.i64(1)),
        order_id: row.i64(0),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn notice(outer: &str, right_code: Option<&str>) -> PayNotice {
        PayNotice {
            source: "中国移动".into(),
            outer_order_id: outer.into(),
            idempotent_id: Some(format!("idem-{outer}")),
            phone: "18072887365".into(),
            amount: 100,
            pay_time: None,
            right_code: right_code.map(str::to_string),
            biz: None,
            biz_scene: None,
            title: None,
            channel_id: None,
            extend: "{}".into(),
        }
    }

    /// Stored digests were made from `json!` values; the typed forms must give the same text.
    #[test]
    fn the_canonical_payment_serialises_as_the_json_object_it_replaced() {
        let mut full = notice("o-1", Some("flowPacket"));
        full.biz = Some("b \"quoted\" \u{1}".into());
        full.biz_scene = Some("场景".into());
        full.title = Some("流量包\n".into());
        full.channel_id = Some(7);
        full.pay_time = Some(1_700_000_000_123);
        full.extend = "{\"k\":[1,2]}".into();
        for n in [notice("o-2", None), full] {
            let by_value = json!({
                "source": n.source, "outer_order_id": n.outer_order_id, "phone": n.phone,
                "amount": n.amount, "pay_time": n.pay_time, "right_code": n.right_code,
                "biz": n.biz, "biz_scene": n.biz_scene, "title": n.title,
                "channel_id": n.channel_id, "extend": n.extend,
            });
            assert_eq!(
                serde_json::to_string(&n.canonical_payment()).unwrap(),
                by_value.to_string()
            );
            assert_eq!(
                payload_hash(&n.canonical_payment()),
                payload_hash(&by_value)
            );
            let event = json!({"order_id": "123", "provider_id": 1, "source": n.source,
                "outer_order_id": n.outer_order_id, "open_id": "9", "amount": n.amount,
                "status": "PAID"});
            assert_eq!(created_event(123, 1, &n, "9"), event.to_string());
            let hashes = Hashes::of(&n);
            assert_eq!(
                hashes.full,
                payload_hash(&json!([n.idempotent_id, hashes.payment]))
            );
        }
        assert_eq!(
            payload_hash(&json!({"a": 1})),
            "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
        );
    }
}
