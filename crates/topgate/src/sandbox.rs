//! The sandbox seed (domain.md decisions and §3.8): apps `test`/`test` (bound to every role, with
//! session `test-session`) and `other`/`other` (owning nothing, with its own `other-session`),
//! and the data that makes every seed page's request example succeed as written. Built through
//! the admin operations, in one transaction; a database that already has app `test` is left as
//! it is, so seeding is idempotent and sandbox state survives restarts, and nodes seeding one
//! database at once take turns ([`Tx::lock_key`]). A database that has apps but no sandbox is
//! refused rather than seeded: it is a real one, named by mistake.

use serde_json::json;

use crate::admin::ops::{self, AdminError};
use crate::apps;
use crate::store::{StoreError, Tx};

pub const APP_KEY: &str = "test";
pub const SECRET: &str = "test";
pub const SESSION: &str = "test-session";
pub const OTHER_APP_KEY: &str = "other";
pub const OTHER_SECRET: &str = "other";
pub const OTHER_SESSION: &str = "other-session";
pub const SELLER_ID: i64 = 2000;

/// How a seeded app stands now, for the start-up banner.
pub enum SeededApp {
    /// As seeded: its secret is the public sandbox one.
    AsSeeded,
    /// Its secret was rotated since the seed; the banner does not show the new one.
    Rotated,
    Disabled,
}

impl SeededApp {
    pub fn of(tx: &mut dyn Tx, app_key: &str, seeded_secret: &str) -> Result<Self, StoreError> {
        Ok(match apps::load_app(tx, app_key)? {
            Some(app) if !app.enabled => Self::Disabled,
            Some(app) if app.secret == seeded_secret => Self::AsSeeded,
            _ => Self::Rotated,
        })
    }

    /// `secret: …` of the banner.
    pub fn describe_secret(&self, seeded_secret: &str) -> String {
        match self {
            Self::AsSeeded => format!("secret: {seeded_secret}"),
            Self::Rotated => "secret: rotated since the seed (not shown)".into(),
            Self::Disabled => format!("secret: {seeded_secret} (the app is disabled)"),
        }
    }
}

/// Seeds the sandbox; returns whether anything was written.
pub fn seed(tx: &mut dyn Tx, now_ms: i64) -> Result<bool, AdminError> {
    // Nodes started together over a fresh PostgreSQL database seed one after the other: the
    // later ones wait here, then find app `test` and leave the data as it is.
    tx.lock_key("topgate sandbox seed")?;
    if apps::load_app(tx, APP_KEY)?.is_some() {
        return Ok(false);
    }
    // A database that already serves apps of its own is someone's real one (named by mistake):
    // the seed's well-known secrets and every-role app have no place there.
    let own_apps = tx
        .query_opt("SELECT COUNT(*) FROM apps WHERE sandbox = 0", &[])?
        .map_or(0, |row| row.i64(0));
    if own_apps > 0 {
        return Err(AdminError::Conflict(format!(
            "this database holds {own_apps} app(s) and no sandbox: the sandbox is only seeded \
             into a database of its own (serve this one without --sandbox, or name another \
             database for the sandbox)"
        )));
    }
    let lianbei_line = |oid: i64| json!([{"oid": oid, "item_id": 10000, "sku_id": 0, "sku_text": "sku", "price": 1, "quantity": 1}]);
    let store_sale = json!({"store_id": 1, "guider_id": "1", "guider_name": "导购员名称", "operator_id": "1", "operator_name": "收营员名称"});
    let steps = [
        (
            "users",
            json!({"user_id": 888888, "nick": "买家昵称", "mobile": "13800000000"}),
        ),
        (
            "users",
            json!({"user_id": 10001, "nick": "点淘用户", "mobile": "18072887365"}),
        ),
        (
            "users",
            json!({"user_id": SELLER_ID, "nick": "沙箱卖家", "is_seller": true}),
        ),
        (
            "users",
            json!({"user_id": 3000, "nick": "其他卖家", "is_seller": true}),
        ),
        (
            "items",
            json!({"item_id": 10000, "seller_id": SELLER_ID, "title": "测试商品", "pic_url": "http://url", "price": 1}),
        ),
        (
            "items",
            json!({"item_id": 20000, "seller_id": SELLER_ID, "title": "流量卡", "price": 5000}),
        ),
        (
            "items",
            json!({"item_id": 30000, "seller_id": SELLER_ID, "title": "充值送活动", "price": 10000}),
        ),
        ("biz-types", json!({"code": "30", "name": "阿里通信流量卡"})),
        ("biz-types", json!({"code": "7", "name": "合约机号卡分销"})),
        ("biz-types", json!({"code": "15", "name": "积分兑换"})),
        (
            "suppliers",
            json!({"supplier_id": 1, "name": "沙箱运营商", "biz_types": ["30"]}),
        ),
        ("partners", json!({"id": 1, "name": "沙箱健身合作方"})),
        (
            "stores",
            json!({"store_id": 1, "partner_id": 1, "name": "沙箱门店"}),
        ),
        (
            "providers",
            json!({"provider_id": 1, "name": "沙箱权益方", "sources": ["中国移动"]}),
        ),
        (
            "rights",
            json!({"provider_id": 1, "right_code": "flowPacket", "biz": "flowPacket", "title": "流量包"}),
        ),
        (
            "trades",
            json!({"tid": 8888888, "kind": "CARRIER", "seller_id": SELLER_ID, "buyer_id": 888888,
            "lines": [{"oid": 8888889, "item_id": 20000, "price": 5000, "quantity": 2}],
            "carrier": {"supplier_id": 1, "biz_type": "30"}}),
        ),
        (
            "trades",
            json!({"tid": 1000, "kind": "LIANBEI", "seller_id": SELLER_ID, "buyer_id": 888888,
            "status": "TRADE_FINISHED", "created": "2018-10-15 00:00:00", "paid": "2018-10-15 00:00:00",
            "ended": "2018-10-15 00:00:00", "source": "xpos", "out_id": "业务订单id",
            "lines": lianbei_line(1001), "store_sale": store_sale}),
        ),
        (
            "trades",
            json!({"tid": 1000000, "kind": "LIANBEI", "seller_id": SELLER_ID, "buyer_id": 888888,
            "status": "TRADE_FINISHED", "created": "2018-10-15 00:00:00", "paid": "2018-10-15 00:00:00",
            "ended": "2018-10-15 00:00:00", "source": "xpos", "out_id": "业务订单id",
            "lines": lianbei_line(1000001), "store_sale": store_sale}),
        ),
        (
            "trades",
            json!({"tid": 12345678, "kind": "OPENTRADE", "seller_id": SELLER_ID, "buyer_id": 10001,
            "lines": [{"oid": 212312, "item_id": 30000, "price": 10000, "quantity": 1}],
            "open_trade": {"transfer_id": "hfb_0001", "product_id": "p1", "activity_id": "a1", "gift_id": "g1", "phone": "18072887365"}}),
        ),
        (
            "apps",
            json!({"app_key": APP_KEY, "secret": SECRET, "name": "sandbox", "sandbox": true,
            "supplier_id": 1, "partner_id": 1, "provider_id": 1, "seller_id": SELLER_ID}),
        ),
        (
            "apps",
            json!({"app_key": OTHER_APP_KEY, "secret": OTHER_SECRET, "name": "sandbox (owns nothing)", "sandbox": true}),
        ),
        (
            "sessions",
            json!({"app_key": APP_KEY, "user_id": SELLER_ID, "session_key": SESSION, "ttl_secs": 100 * 365 * 24 * 3600_i64}),
        ),
        (
            "sessions",
            json!({"app_key": OTHER_APP_KEY, "user_id": 3000, "session_key": OTHER_SESSION, "ttl_secs": 100 * 365 * 24 * 3600_i64}),
        ),
    ];
    for (resource, body) in steps {
        ops::create(tx, resource, &body, now_ms)?;
    }
    Ok(true)
}
