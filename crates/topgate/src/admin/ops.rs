//! Admin operations on the business data (domain.md §3.8): create what the APIs act on, move
//! trades and right orders through their lifecycles, inspect the results. One code path serves
//! the admin HTTP API, the `topgate admin` CLI and the sandbox seed.
//!
//! # What `create` accepts
//!
//! A refused body changes nothing (each create is one transaction) and its answer names the
//! field: 400 ([`AdminError::Invalid`]) for a bad body, 409 ([`AdminError::Conflict`]) when the
//! key it would create is taken. The checks, in this order:
//!
//! 1. **Shape**: the resource's fields and no others, so that a misspelt optional field is not
//!    dropped silently (`unknown field …`).
//! 2. **Values**, without looking at the database:
//!    - the ids a create makes are positive: `user_id`, `item_id`, `supplier_id`, partner `id`,
//!      `store_id`, `provider_id`, `tid`, each line's `oid` (`user_id must be positive, not 0`);
//!    - identifiers and names are not blank: item `title`, biz type `code` and `name`,
//!      supplier, partner, store and provider `name`, each provider `sources` entry,
//!      `right_code`, `app_key`; app `secret` and `session_key` when given
//!      (`title must not be empty`). A user's `nick` and `mobile` are not keys and may be
//!      empty, which the masking rules (domain.md §5) answer as empty;
//!    - lists hold each value once: supplier `biz_types`, provider `sources`, app `methods`,
//!      trade line `oid`s (`biz_types lists "30" twice`);
//!    - amounts are not negative (`price`, each line's `price`, `nego_price`, `discount_fee`,
//!      `sku_id`), a line's `quantity` is at least 1, and a trade's `price × quantity` and its
//!      totals fit in 64 bits (`line 7: price … × quantity … is out of range`);
//!    - a trade's `kind` and `status` are known, its extension is the one of its kind (`carrier`
//!      for CARRIER, `store_sale` for LIANBEI; `open_trade` optional for OPENTRADE) and no
//!      other, it has a line, `paid` is given only for a paid status and `ended` only for a
//!      final one, and created ≤ paid ≤ ended;
//!    - an app's `methods` are served methods ([`crate::api::all_methods`]) and its
//!      `calls_per_second` is at least 1;
//!    - a session's `ttl_secs` is 1 to [`MAX_TTL_SECS`] (100 years, the sandbox sessions'), and
//!      [`DEFAULT_TTL_SECS`] (1 day) when absent.
//! 3. **Own key** (409): `user 42 exists`, `a user with mobile "138…" exists`, `item …`,
//!    `biz type "30" …`, `supplier …`, `partner …`, `store …`, `provider …`,
//!    `right "flowPacket" of provider 1 …`, `trade …`, `sub-order …` (a line's `oid`),
//!    `app "test" …`, `session "…" exists`. Two admins racing past this check still meet the
//!    database's constraint, answered 409 with the database's text.
//! 4. **References** (400), every one the schema has and the bindings it does not:
//!    `seller_id 42 is not a user`. Item `seller_id`; store `partner_id`; right `provider_id`;
//!    supplier `biz_types`; trade `seller_id`, `buyer_id`, each line's `item_id`, carrier
//!    `supplier_id` and `biz_type`, store sale `store_id`; app `supplier_id`, `partner_id`,
//!    `provider_id`, `seller_id`; session `app_key` and `user_id`.
//!
//! [`grant`] holds a method grant (`topgate app grant`) to the rules of an app's `methods`.

use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde_json::{json, Value as Json};
use top_protocol::timestamp;

use crate::apps::{self, NewApp};
use crate::args;
use crate::clock::{from_millis, millis};
use crate::store::{Row, SqlArg, StoreError, ToSqlArg, Tx};
use crate::trades::{self, TradeEvent};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("conflicts with existing data: {0}")]
    Conflict(String),
    /// A constraint of the database refused the change, in its own words: a 409 like
    /// [`AdminError::Conflict`], once the operation's rerun ([`as_job`]) met it again.
    #[error("conflicts with existing data: {0}")]
    Constraint(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Constraint(c) => AdminError::Constraint(c),
            other => AdminError::Store(other),
        }
    }
}

/// An admin operation as a job of [`crate::store::Store::attempt`]. A constraint violation is
/// handed to the store as such: with several writers (PostgreSQL nodes) it means the operation
/// lost a race, say to another node creating the same key between its check and its insert,
/// and the store reruns it in a fresh transaction, whose checks then answer in the documented
/// words (`user 42 exists`) instead of the database's. A violation that persists stays a 409.
pub fn as_job<F>(
    mut operation: F,
) -> impl FnMut(&mut dyn Tx) -> Result<Result<Json, AdminError>, StoreError> + Send + 'static
where
    F: FnMut(&mut dyn Tx) -> Result<Json, AdminError> + Send + 'static,
{
    move |tx| match operation(tx) {
        Err(AdminError::Constraint(c)) => Err(StoreError::Constraint(c)),
        outcome => Ok(outcome),
    }
}

fn invalid(message: impl Into<String>) -> AdminError {
    AdminError::Invalid(message.into())
}

fn from_json<T: for<'de> Deserialize<'de>>(body: &Json) -> Result<T, AdminError> {
    serde_path_to_error::deserialize(body).map_err(|e| invalid(describe_field_error(&e)))
}

/// A body's type error naming the field (`user_id: invalid type: string, expected i64`) and
/// never the value found, which may be a secret given with the wrong type: serde's own text
/// names neither the field nor hides the value (``invalid type: integer `12345678901` ``).
/// Its other errors (an unknown or missing field) already name the field and show no value.
pub fn describe_field_error<E: std::fmt::Display>(error: &serde_path_to_error::Error<E>) -> String {
    let message = error.inner().to_string();
    let Some((found, expected)) = message
        .split_once(", expected ")
        .filter(|(found, _)| found.starts_with("invalid "))
    else {
        return message;
    };
    let kind = found.split(['`', '"']).next().unwrap_or(found).trim_end();
    format!("{}: {kind}, expected {expected}", error.path())
}

/// The longest session `create` makes: long enough for the sandbox's never-expiring sessions,
/// short enough that `now + ttl` stays far from overflowing.
pub const MAX_TTL_SECS: i64 = 100 * 365 * 24 * 3600;
/// The lifetime of a session created without `ttl_secs`, by the admin API and by `topgate
/// session create` alike (one constant, so that the two cannot drift apart): a day, what the
/// CLI has always made, and short enough that a forgotten key does not stay valid for long. A
/// longer session is asked for with `ttl_secs`.
pub const DEFAULT_TTL_SECS: i64 = 24 * 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    user_id: i64,
    nick: String,
    mobile: Option<String>,
    #[serde(default)]
    is_seller: bool,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewItem {
    item_id: i64,
    seller_id: i64,
    title: String,
    #[serde(default)]
    pic_url: String,
    price: i64,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBizType {
    code: String,
    name: String,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    auto_finish_on_activation: bool,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSupplier {
    supplier_id: i64,
    name: String,
    #[serde(default)]
    biz_types: Vec<String>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNamed {
    id: i64,
    name: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewStore {
    store_id: i64,
    partner_id: i64,
    name: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProvider {
    provider_id: i64,
    name: String,
    #[serde(default)]
    sources: Vec<String>,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
struct NewSession {
    app_key: String,
    user_id: i64,
    session_key: Option<String>,
    #[serde(default = "default_ttl")]
    ttl_secs: i64,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
struct CarrierExt {
    supplier_id: i64,
    biz_type: String,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
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
    DEFAULT_TTL_SECS
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

fn positive(field: &str, id: i64) -> Result<(), AdminError> {
    if id < 1 {
        return Err(invalid(format!("{field} must be positive, not {id}")));
    }
    Ok(())
}

fn not_negative(field: &str, amount: i64) -> Result<(), AdminError> {
    if amount < 0 {
        return Err(invalid(format!(
            "{field} must not be negative, not {amount}"
        )));
    }
    Ok(())
}

fn not_blank(field: &str, value: &str) -> Result<(), AdminError> {
    if value.trim().is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    Ok(())
}

fn once_each<'a>(field: &str, values: impl IntoIterator<Item = &'a str>) -> Result<(), AdminError> {
    let mut seen = HashSet::new();
    for v in values {
        if !seen.insert(v) {
            return Err(invalid(format!("{field} lists {v:?} twice")));
        }
    }
    Ok(())
}

/// A key as an operator reads it in a message: ids bare, codes quoted.
#[derive(Clone, Copy)]
enum Key<'a> {
    Id(i64),
    Code(&'a str),
}

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Id(id) => write!(f, "{id}"),
            Key::Code(code) => write!(f, "{code:?}"),
        }
    }
}

impl ToSqlArg for Key<'_> {
    fn to_sql_arg(&self) -> SqlArg<'_> {
        match *self {
            Key::Id(id) => SqlArg::Int(id),
            Key::Code(code) => SqlArg::Text(code),
        }
    }
}

/// What an admin field can name: a table and its key column.
#[derive(Clone, Copy)]
enum Entity {
    User,
    Item,
    BizType,
    Supplier,
    Partner,
    Store,
    Provider,
    Trade,
    SubOrder,
    App,
    Session,
}

impl Entity {
    fn table_and_key(self) -> (&'static str, &'static str) {
        match self {
            Entity::User => ("users", "user_id"),
            Entity::Item => ("items", "item_id"),
            Entity::BizType => ("biz_types", "code"),
            Entity::Supplier => ("suppliers", "supplier_id"),
            Entity::Partner => ("partners", "partner_id"),
            Entity::Store => ("stores", "store_id"),
            Entity::Provider => ("rights_providers", "provider_id"),
            Entity::Trade => ("trades", "tid"),
            Entity::SubOrder => ("sub_orders", "oid"),
            Entity::App => ("apps", "app_key"),
            Entity::Session => ("sessions", "session_key"),
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Entity::User => "user",
            Entity::Item => "item",
            Entity::BizType => "biz type",
            Entity::Supplier => "supplier",
            Entity::Partner => "partner",
            Entity::Store => "store",
            Entity::Provider => "provider",
            Entity::Trade => "trade",
            Entity::SubOrder => "sub-order",
            Entity::App => "app",
            Entity::Session => "session",
        }
    }

    fn exists(self, tx: &mut dyn Tx, key: Key<'_>) -> Result<bool, StoreError> {
        let (table, column) = self.table_and_key();
        let sql = format!("SELECT 1 FROM {table} WHERE {column} = ?");
        Ok(tx.query_opt(&sql, args![key])?.is_some())
    }

    /// 409 when `key` is taken: checked before an insert, for a message that names the key.
    fn vacant(self, tx: &mut dyn Tx, key: Key<'_>) -> Result<(), AdminError> {
        if self.exists(tx, key)? {
            return Err(AdminError::Conflict(format!(
                "{} {key} exists",
                self.noun()
            )));
        }
        Ok(())
    }

    /// 400 unless `field`'s value `key` names a row: the foreign key (or binding) it feeds.
    fn referred(self, tx: &mut dyn Tx, field: &str, key: Key<'_>) -> Result<(), AdminError> {
        if !self.exists(tx, key)? {
            let article = match self {
                Entity::Item | Entity::App => "an",
                _ => "a",
            };
            let noun = self.noun();
            return Err(invalid(format!("{field} {key} is not {article} {noun}")));
        }
        Ok(())
    }
}

/// A rate of 0 would refuse every call, which no operator means.
fn check_rate(calls_per_second: Option<u32>) -> Result<(), AdminError> {
    if calls_per_second == Some(0) {
        return Err(invalid("calls_per_second must be at least 1"));
    }
    Ok(())
}

/// A grant of a method topgate does not serve could never be used: most likely a typo.
fn served(method: &str) -> bool {
    crate::api::registry().get(method).is_some()
}

/// Grants `method` to an app (or changes its limit), as `topgate app grant` does.
pub fn grant(
    tx: &mut dyn Tx,
    app_key: &str,
    method: &str,
    calls_per_second: Option<u32>,
) -> Result<Json, AdminError> {
    check_rate(calls_per_second)?;
    if !served(method) {
        return Err(invalid(format!("method {method:?} is not a served method")));
    }
    let Some(app) = apps::load_app(tx, app_key)? else {
        return Err(AdminError::NotFound(format!("app {app_key}")));
    };
    apps::grant_method(tx, app_key, method, calls_per_second)?;
    let mut granted =
        json!({"app_key": app_key, "method": method, "calls_per_second": calls_per_second});
    if app.sandbox && calls_per_second.is_some() {
        // protocol.md: sandbox apps have no call limits; the limit is kept for when it is not.
        granted["note"] =
            json!("a sandbox app is not rate limited: the limit is stored, not applied");
    }
    Ok(granted)
}

/// Every app as `GET /admin/apps` and `topgate app list` show it: no secret, with its role
/// bindings (which supplier, partner, rights provider and seller it acts for) and its methods
/// as `[method, calls_per_second]` pairs.
pub fn list_apps(tx: &mut dyn Tx) -> Result<Json, AdminError> {
    Ok(json!(apps::list_apps(tx)?
        .into_iter()
        .map(|a| json!({
            "app_key": a.app_key,
            "name": a.name,
            "enabled": a.enabled,
            "sandbox": a.sandbox,
            "supplier_id": a.supplier_id,
            "partner_id": a.partner_id,
            "provider_id": a.provider_id,
            "seller_id": a.seller_id,
            "methods": a.methods,
        }))
        .collect::<Vec<_>>()))
}

/// Which session `POST /admin/sessions/revoke` ends.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokedSession {
    session_key: String,
}

/// Revokes a session (`POST /admin/sessions/revoke {"session_key": …}`, `topgate session
/// revoke`): calls with it are refused with code 27 from now on (by other processes within
/// `auth_cache_ms`). The answer names the app and user, not the key.
pub fn revoke_session(tx: &mut dyn Tx, body: &Json, now_ms: i64) -> Result<Json, AdminError> {
    let RevokedSession { session_key } = from_json(body)?;
    let session = apps::revoke_session(tx, &session_key, now_ms)?
        .ok_or_else(|| AdminError::NotFound("no such session".into()))?;
    Ok(json!({
        "revoked": true,
        "app_key": session.app_key,
        "user_id": session.user_id,
        "expires_at": timestamp::format_wall_clock(from_millis(session.expires_at_ms)),
    }))
}

/// Withdraws `method` from `app_key` (`topgate app revoke`); a method it was not granted is
/// a 404, so that a typo does not pass for a revocation.
pub fn revoke(tx: &mut dyn Tx, app_key: &str, method: &str) -> Result<Json, AdminError> {
    if apps::load_app(tx, app_key)?.is_none() {
        return Err(AdminError::NotFound(format!("app {app_key}")));
    }
    if !apps::revoke_method(tx, app_key, method)? {
        return Err(AdminError::NotFound(format!(
            "method {method:?} is not granted to app {app_key}"
        )));
    }
    Ok(json!({"app_key": app_key, "revoked": method}))
}

/// Creates one resource from its JSON description; returns what was stored. See the module
/// documentation for what is refused.
pub fn create(
    tx: &mut dyn Tx,
    resource: &str,
    body: &Json,
    now_ms: i64,
) -> Result<Json, AdminError> {
    if let Some((path, why)) = unstorable_text(body, String::new()) {
        return Err(invalid(format!("{path} {why}")));
    }
    match resource {
        "users" => {
            let u: NewUser = from_json(body)?;
            positive("user_id", u.user_id)?;
            Entity::User.vacant(tx, Key::Id(u.user_id))?;
            if let Some(mobile) = &u.mobile {
                if tx
                    .query_opt("SELECT 1 FROM users WHERE mobile = ?", args![mobile])?
                    .is_some()
                {
                    return Err(AdminError::Conflict(format!(
                        "a user with mobile {mobile:?} exists"
                    )));
                }
            }
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
            positive("item_id", i.item_id)?;
            not_blank("title", &i.title)?;
            not_negative("price", i.price)?;
            Entity::Item.vacant(tx, Key::Id(i.item_id))?;
            Entity::User.referred(tx, "seller_id", Key::Id(i.seller_id))?;
            tx.execute(
                "INSERT INTO items (item_id, seller_id, title, pic_url, price) VALUES (?, ?, ?, ?, ?)",
                args![i.item_id, i.seller_id, i.title.as_str(), i.pic_url.as_str(), i.price],
            )?;
            Ok(json!({"item_id": i.item_id}))
        }
        "biz-types" => {
            let b: NewBizType = from_json(body)?;
            not_blank("code", &b.code)?;
            not_blank("name", &b.name)?;
            Entity::BizType.vacant(tx, Key::Code(&b.code))?;
            tx.execute(
                "INSERT INTO biz_types (code, name, enabled, auto_finish_on_activation) VALUES (?, ?, ?, ?)",
                args![b.code.as_str(), b.name.as_str(), b.enabled, b.auto_finish_on_activation],
            )?;
            Ok(json!({"code": b.code}))
        }
        "suppliers" => {
            let s: NewSupplier = from_json(body)?;
            positive("supplier_id", s.supplier_id)?;
            not_blank("name", &s.name)?;
            once_each("biz_types", s.biz_types.iter().map(String::as_str))?;
            Entity::Supplier.vacant(tx, Key::Id(s.supplier_id))?;
            for code in &s.biz_types {
                Entity::BizType.referred(tx, "biz_types", Key::Code(code))?;
            }
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
            positive("id", p.id)?;
            not_blank("name", &p.name)?;
            Entity::Partner.vacant(tx, Key::Id(p.id))?;
            tx.execute(
                "INSERT INTO partners (partner_id, name) VALUES (?, ?)",
                args![p.id, p.name.as_str()],
            )?;
            Ok(json!({"partner_id": p.id}))
        }
        "stores" => {
            let s: NewStore = from_json(body)?;
            positive("store_id", s.store_id)?;
            not_blank("name", &s.name)?;
            Entity::Store.vacant(tx, Key::Id(s.store_id))?;
            Entity::Partner.referred(tx, "partner_id", Key::Id(s.partner_id))?;
            tx.execute(
                "INSERT INTO stores (store_id, partner_id, name) VALUES (?, ?, ?)",
                args![s.store_id, s.partner_id, s.name.as_str()],
            )?;
            Ok(json!({"store_id": s.store_id}))
        }
        "providers" => {
            let p: NewProvider = from_json(body)?;
            positive("provider_id", p.provider_id)?;
            not_blank("name", &p.name)?;
            if p.sources.iter().any(|s| s.trim().is_empty()) {
                return Err(invalid("sources must not hold an empty source"));
            }
            once_each("sources", p.sources.iter().map(String::as_str))?;
            Entity::Provider.vacant(tx, Key::Id(p.provider_id))?;
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
            not_blank("right_code", &r.right_code)?;
            if tx
                .query_opt(
                    "SELECT 1 FROM rights WHERE provider_id = ? AND right_code = ?",
                    args![r.provider_id, r.right_code.as_str()],
                )?
                .is_some()
            {
                return Err(AdminError::Conflict(format!(
                    "right {:?} of provider {} exists",
                    r.right_code, r.provider_id
                )));
            }
            Entity::Provider.referred(tx, "provider_id", Key::Id(r.provider_id))?;
            tx.execute(
                "INSERT INTO rights (provider_id, right_code, biz, title, enabled) VALUES (?, ?, ?, ?, ?)",
                args![r.provider_id, r.right_code.as_str(), r.biz.as_str(), r.title.as_str(), r.enabled],
            )?;
            Ok(json!({"provider_id": r.provider_id, "right_code": r.right_code}))
        }
        "trades" => create_trade(tx, from_json(body)?, now_ms),
        "apps" => create_app(tx, from_json(body)?, now_ms),
        "sessions" => {
            let s: NewSession = from_json(body)?;
            if let Some(key) = &s.session_key {
                not_blank("session_key", key)?;
            }
            if !(1..=MAX_TTL_SECS).contains(&s.ttl_secs) {
                return Err(invalid(format!(
                    "ttl_secs must be 1 to {MAX_TTL_SECS} (100 years), not {}",
                    s.ttl_secs
                )));
            }
            let expires_at = s
                .ttl_secs
                .checked_mul(1000)
                .and_then(|ttl_ms| now_ms.checked_add(ttl_ms))
                .ok_or_else(|| invalid("ttl_secs from now is past the year 292 million"))?;
            if let Some(key) = &s.session_key {
                Entity::Session.vacant(tx, Key::Code(key))?;
            }
            Entity::App.referred(tx, "app_key", Key::Code(&s.app_key))?;
            Entity::User.referred(tx, "user_id", Key::Id(s.user_id))?;
            let session = apps::create_session(
                tx,
                &s.app_key,
                s.user_id,
                s.session_key.as_deref(),
                expires_at,
            )?;
            Ok(
                json!({"session": session.session_key, "user_id": session.user_id, "expires_at": timestamp::format_wall_clock(from_millis(session.expires_at_ms))}),
            )
        }
        other => Err(invalid(format!(
            "unknown resource {other}; one of {}",
            RESOURCES.join(", ")
        ))),
    }
}

fn create_app(tx: &mut dyn Tx, a: NewAppBody, now_ms: i64) -> Result<Json, AdminError> {
    not_blank("app_key", &a.app_key)?;
    if a.secret.as_deref().is_some_and(|s| s.trim().is_empty()) {
        // Never echo a secret, not even a blank one.
        return Err(invalid("secret must not be empty when given"));
    }
    let methods = a.methods.unwrap_or_else(crate::api::all_methods);
    once_each("methods", methods.iter().map(String::as_str))?;
    if let Some(unknown) = methods.iter().find(|m| !served(m)) {
        return Err(invalid(format!(
            "methods: {unknown:?} is not a served method"
        )));
    }
    check_rate(a.calls_per_second)?;
    Entity::App.vacant(tx, Key::Code(&a.app_key))?;
    let bindings = [
        ("supplier_id", a.supplier_id, Entity::Supplier),
        ("partner_id", a.partner_id, Entity::Partner),
        ("provider_id", a.provider_id, Entity::Provider),
        ("seller_id", a.seller_id, Entity::User),
    ];
    for (field, id, entity) in bindings {
        if let Some(id) = id {
            entity.referred(tx, field, Key::Id(id))?;
        }
    }
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

/// The longest text an admin body may hold, in bytes. PostgreSQL refuses an index entry
/// above about 2700 bytes (an app key, a biz-type code, a mobile number of that size was an
/// HTTP 500 there, while SQLite took it); no key or name of this model comes near.
pub const MAX_TEXT_BYTES: usize = 2000;

/// The path (`lines[0].sku_text`) of the first text in `value` that the databases cannot
/// both store, and why: U+0000, which PostgreSQL cannot store (SQLite could, so both refuse it
/// alike), or more than [`MAX_TEXT_BYTES`].
fn unstorable_text(value: &Json, at: String) -> Option<(String, String)> {
    let join = |key: &str| {
        if at.is_empty() {
            key.to_string()
        } else {
            format!("{at}.{key}")
        }
    };
    let problem = |text: &str| {
        if text.contains('\0') {
            Some("must not contain the character U+0000".to_string())
        } else if text.len() > MAX_TEXT_BYTES {
            Some(format!(
                "must be at most {MAX_TEXT_BYTES} bytes, not {}",
                text.len()
            ))
        } else {
            None
        }
    };
    match value {
        Json::String(s) => problem(s).map(|why| {
            (
                if at.is_empty() {
                    "text".into()
                } else {
                    at.clone()
                },
                why,
            )
        }),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| unstorable_text(item, format!("{at}[{i}]"))),
        Json::Object(fields) => fields.iter().find_map(|(key, field)| match problem(key) {
            Some(why) => {
                let shown: String = key.replace('\0', "\\u0000").chars().take(40).collect();
                Some((join(&shown), format!("(a field name) {why}")))
            }
            None => unstorable_text(field, join(key)),
        }),
        _ => None,
    }
}

/// The last year an operator may give: the times derived from a given one (a pay time a minute
/// after creation, …) must still have a wall clock within year 9999, which is as far as
/// `yyyy-MM-dd HH:mm:ss` goes.
const LAST_YEAR: i32 = 9998;

fn wall_ms(field: &str, value: &Option<String>, default: i64) -> Result<i64, AdminError> {
    let Some(text) = value else {
        return Ok(default);
    };
    let instant = timestamp::parse_wall_clock(text)
        .ok_or_else(|| invalid(format!("{field} {text:?} is not yyyy-MM-dd HH:mm:ss")))?;
    if instant.year() > LAST_YEAR {
        return Err(invalid(format!(
            "{field} {text:?} is past the year {LAST_YEAR}"
        )));
    }
    Ok(millis(instant))
}

/// A trade line's amounts, in fen.
struct Amounts {
    total: i64,
    discount: i64,
    payment: i64,
}

/// The line's payment, adding its amounts to the trade's; amounts in fen come from an operator,
/// so a product or sum past i64 is refused rather than wrapped (release) or panicking (debug).
fn add_line(sum: &mut Amounts, l: &Line) -> Result<i64, AdminError> {
    let field = |name: &str| format!("line {}: {name}", l.oid);
    not_negative(&field("price"), l.price)?;
    not_negative(&field("nego_price"), l.nego_price)?;
    not_negative(&field("discount_fee"), l.discount_fee)?;
    not_negative(&field("sku_id"), l.sku_id)?;
    if l.quantity < 1 {
        return Err(invalid(format!(
            "{} must be at least 1, not {}",
            field("quantity"),
            l.quantity
        )));
    }
    let base = if l.nego_price > 0 {
        l.nego_price
    } else {
        l.price.checked_mul(l.quantity).ok_or_else(|| {
            invalid(format!(
                "line {}: price {} × quantity {} is out of range",
                l.oid, l.price, l.quantity
            ))
        })?
    };
    let pay = (base - l.discount_fee).max(0);
    let add = |to: i64, amount: i64, name: &str| {
        to.checked_add(amount).ok_or_else(|| {
            invalid(format!(
                "line {}: the trade's {name} is out of range",
                l.oid
            ))
        })
    };
    sum.total = add(sum.total, base, "total_fee")?;
    sum.discount = add(sum.discount, l.discount_fee, "discount_fee")?;
    sum.payment = add(sum.payment, pay, "payment")?;
    Ok(pay)
}

fn create_trade(tx: &mut dyn Tx, t: NewTrade, now_ms: i64) -> Result<Json, AdminError> {
    positive("tid", t.tid)?;
    let kind = t.kind.as_str();
    if !matches!(kind, "CARRIER" | "LIANBEI" | "OPENTRADE" | "GENERIC") {
        return Err(invalid(format!(
            "kind must be CARRIER, LIANBEI, OPENTRADE or GENERIC, not {kind:?}"
        )));
    }
    // An extension of another kind would be stored and never read by the API it belongs to.
    let extensions = [
        ("carrier", t.carrier.is_some(), "CARRIER"),
        ("store_sale", t.store_sale.is_some(), "LIANBEI"),
        ("open_trade", t.open_trade.is_some(), "OPENTRADE"),
    ];
    for (field, given, owner) in extensions {
        if given && kind != owner {
            return Err(invalid(format!(
                "{field} is for {owner} trades, not {kind}"
            )));
        }
        if !given && kind == owner && owner != "OPENTRADE" {
            return Err(invalid(format!("a {kind} trade needs {field}")));
        }
    }
    let status = t.status.as_str();
    if !trades::STATUSES.contains(&status) {
        return Err(invalid(format!(
            "status must be one of {}, not {status:?}",
            trades::STATUSES.join(", ")
        )));
    }
    if t.lines.is_empty() {
        return Err(invalid("a trade needs at least one line"));
    }
    let paid = !matches!(status, "WAIT_BUYER_PAY" | "TRADE_CLOSED_BY_TAOBAO");
    let is_final = trades::is_final(status);
    if t.paid.is_some() && !paid {
        return Err(invalid(format!(
            "paid is given, but a {status} trade is unpaid"
        )));
    }
    if t.ended.is_some() && !is_final {
        return Err(invalid(format!(
            "ended is given, but a {status} trade has not ended"
        )));
    }
    let created = wall_ms("created", &t.created, now_ms - 3_600_000)?;
    let pay_time = paid
        .then(|| wall_ms("paid", &t.paid, created + 60_000))
        .transpose()?;
    let consign_time = matches!(status, "WAIT_BUYER_CONFIRM_GOODS" | "TRADE_FINISHED")
        .then(|| pay_time.unwrap_or(created));
    let end_time = is_final
        .then(|| {
            wall_ms(
                "ended",
                &t.ended,
                consign_time.or(pay_time).unwrap_or(created) + 60_000,
            )
        })
        .transpose()?;
    // Invariant 2 (created ≤ paid ≤ consigned ≤ ended); the consign time is the payment time.
    let shown = |ms: i64| timestamp::format_wall_clock(from_millis(ms));
    if let Some(pay) = pay_time.filter(|p| *p < created) {
        return Err(invalid(format!(
            "paid {} is before created {}",
            shown(pay),
            shown(created)
        )));
    }
    if let Some(end) = end_time {
        let (name, start) = pay_time.map_or(("created", created), |p| ("paid", p));
        if end < start {
            return Err(invalid(format!(
                "ended {} is before {name} {}",
                shown(end),
                shown(start)
            )));
        }
    }
    let mut sum = Amounts {
        total: 0,
        discount: 0,
        payment: 0,
    };
    let mut lines = Vec::with_capacity(t.lines.len());
    for l in &t.lines {
        positive(&format!("line {}: oid", l.oid), l.oid)?;
        lines.push((l, add_line(&mut sum, l)?));
    }
    let mut oids = HashSet::new();
    if let Some(l) = t.lines.iter().find(|l| !oids.insert(l.oid)) {
        return Err(invalid(format!("oid {} is on two lines", l.oid)));
    }
    Entity::Trade.vacant(tx, Key::Id(t.tid))?;
    for l in &t.lines {
        Entity::SubOrder.vacant(tx, Key::Id(l.oid))?;
    }
    Entity::User.referred(tx, "seller_id", Key::Id(t.seller_id))?;
    Entity::User.referred(tx, "buyer_id", Key::Id(t.buyer_id))?;
    for l in &t.lines {
        Entity::Item.referred(tx, &format!("line {}: item_id", l.oid), Key::Id(l.item_id))?;
    }
    if let Some(c) = &t.carrier {
        Entity::Supplier.referred(tx, "carrier.supplier_id", Key::Id(c.supplier_id))?;
        Entity::BizType.referred(tx, "carrier.biz_type", Key::Code(&c.biz_type))?;
    }
    if let Some(s) = &t.store_sale {
        Entity::Store.referred(tx, "store_sale.store_id", Key::Id(s.store_id))?;
    }
    tx.execute(
        "INSERT INTO trades (tid, seller_id, buyer_id, biz_kind, status, created_at, pay_time, consign_time, end_time, total_fee, discount_fee, payment, source, out_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        args![t.tid, t.seller_id, t.buyer_id, kind, status, created, pay_time, consign_time, end_time, sum.total, sum.discount, sum.payment, t.source.as_str(), t.out_id.as_str()],
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

/// The rows of `table` whose `key` is `id`, in `order` (PostgreSQL's order is otherwise the
/// plan's, and changes as rows are updated).
fn select(
    tx: &mut dyn Tx,
    table: &str,
    columns: &[&str],
    (key, id): (&str, i64),
    order: &str,
) -> Result<Json, StoreError> {
    let sql = format!(
        "SELECT {} FROM {table} WHERE {key} = ? ORDER BY {order}",
        columns.join(", ")
    );
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
        "lines": select(tx, "sub_orders", &["oid", "item_id", "sku_id", "sku_text", "price", "quantity", "nego_price", "discount_fee", "payment", "status"], ("tid", tid), "oid")?,
        "fulfilment": first(select(tx, "carrier_fulfilments", &["supplier_id", "biz_type", "out_order_no", "supplier_received", "status", "exception", "offer_start", "offer_end", "activated_at"], ("tid", tid), "tid")?),
        "cards": select(tx, "sim_cards", &["iccid", "tag", "activate_deadline", "deadline_passed", "status", "activated_at"], ("tid", tid), "tag, iccid")?,
        "notifications": select(tx, "supplier_notifications", &["id", "notify_type", "natural_key", "payload", "dates_swapped", "received_at"], ("tid", tid), "id")?,
        "store_sale": first(select(tx, "store_sales", &["store_id", "guider_id", "guider_name", "operator_id", "operator_name"], ("tid", tid), "tid")?),
        "open_trade": first(select(tx, "open_trade_infos", &["transfer_id", "product_id", "activity_id", "gift_id", "phone", "handling", "result_code", "result_desc", "first_charge_amount", "first_charge_time", "ext"], ("tid", tid), "tid")?),
        "refunds": select(tx, "refunds", &["refund_id", "oid", "amount", "reason", "created_at"], ("tid", tid), "refund_id")?,
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

/// Right orders as JSON, each `order_id` as a string: ids are about 1.8·10^18, beyond the
/// integers a JSON number keeps exactly in JavaScript and other double-based parsers (2^53).
/// The API's answer and the events carry it as a string too.
fn right_orders_json(rows: &[Row]) -> Json {
    let mut orders = rows_to_json(rows, RIGHT_ORDER_COLUMNS);
    for order in orders.as_array_mut().into_iter().flatten() {
        if let Some(id) = order.get("order_id").and_then(Json::as_i64) {
            order["order_id"] = json!(id.to_string());
        }
    }
    orders
}

pub fn get_right_order(tx: &mut dyn Tx, order_id: i64) -> Result<Json, AdminError> {
    let sql = format!(
        "SELECT {} FROM right_orders WHERE order_id = ?",
        RIGHT_ORDER_COLUMNS.join(", ")
    );
    right_orders_json(&tx.query(&sql, args![order_id])?)
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
        crate::events::RIGHT_ORDER_STATUS_CHANGED,
        &format!("right_order:{order_id}"),
        &json!({"order_id": order_id.to_string(), "status": to}),
        now_ms,
    )?;
    get_right_order(tx, order_id)
}

/// The largest page a listing returns (the events listings' too).
pub const MAX_LIMIT: i64 = 1000;
/// The page a listing returns when no `limit` is given.
pub const DEFAULT_LIMIT: i64 = 100;

/// A listing's page size: `limit` within 1 and [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub fn page_limit(limit: Option<i64>) -> i64 {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// A page of right orders (`GET /admin/right-orders`, `topgate admin right-orders`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RightOrderPage {
    /// Only orders with a larger `order_id`: the last one of the previous page.
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

/// Right orders by `order_id`, a page at a time.
pub fn list_right_orders(tx: &mut dyn Tx, page: &RightOrderPage) -> Result<Json, AdminError> {
    let sql = format!(
        "SELECT {} FROM right_orders WHERE order_id > ? ORDER BY order_id LIMIT ?",
        RIGHT_ORDER_COLUMNS.join(", ")
    );
    let rows = tx.query(
        &sql,
        args![page.after.unwrap_or(i64::MIN), page_limit(page.limit)],
    )?;
    Ok(right_orders_json(&rows))
}

/// A page of idempotency records (`GET /admin/idempotency`, `topgate admin idempotency`). The
/// records' key is two texts, so the cursor is too: both of the previous page's last record.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencyPage {
    pub after_scope: Option<String>,
    pub after_key: Option<String>,
    pub limit: Option<i64>,
}

/// Idempotency records by their key (`scope`, then `idem_key`), a page at a time.
pub fn list_idempotency(tx: &mut dyn Tx, page: &IdempotencyPage) -> Result<Json, AdminError> {
    let cols = [
        "scope",
        "idem_key",
        "request_hash",
        "response_body",
        "created_at",
    ];
    let limit = page_limit(page.limit);
    let rows = match (&page.after_scope, &page.after_key) {
        (None, None) => tx.query(
            "SELECT scope, idem_key, request_hash, response_body, created_at FROM idempotency_records \
             ORDER BY scope, idem_key LIMIT ?",
            args![limit],
        )?,
        (Some(scope), Some(key)) => tx.query(
            "SELECT scope, idem_key, request_hash, response_body, created_at FROM idempotency_records \
             WHERE scope > ? OR (scope = ? AND idem_key > ?) ORDER BY scope, idem_key LIMIT ?",
            args![scope, scope, key, limit],
        )?,
        _ => return Err(invalid("after_scope and after_key go together")),
    };
    Ok(rows_to_json(&rows, &cols))
}
