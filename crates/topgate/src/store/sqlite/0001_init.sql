-- Apps, sessions and the business data of the four seed APIs.
-- Portable SQL: integers for booleans (0/1) and for times (epoch milliseconds, UTC).
CREATE TABLE apps (
    app_key TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    name TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    sandbox INTEGER NOT NULL DEFAULT 0 CHECK (sandbox IN (0, 1)),
    supplier_id INTEGER,
    partner_id INTEGER,
    provider_id INTEGER,
    seller_id INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE app_methods (
    app_key TEXT NOT NULL REFERENCES apps(app_key),
    method TEXT NOT NULL,
    calls_per_second INTEGER CHECK (calls_per_second IS NULL OR calls_per_second > 0),
    PRIMARY KEY (app_key, method)
);
CREATE TABLE sessions (
    session_key TEXT PRIMARY KEY,
    app_key TEXT NOT NULL REFERENCES apps(app_key),
    user_id INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE users (
    user_id INTEGER PRIMARY KEY,
    nick TEXT NOT NULL,
    mobile TEXT,
    is_seller INTEGER NOT NULL DEFAULT 0 CHECK (is_seller IN (0, 1))
);
CREATE UNIQUE INDEX users_mobile ON users(mobile);
CREATE TABLE items (
    item_id INTEGER PRIMARY KEY,
    seller_id INTEGER NOT NULL REFERENCES users(user_id),
    title TEXT NOT NULL,
    pic_url TEXT NOT NULL DEFAULT '',
    price INTEGER NOT NULL CHECK (price >= 0)
);
CREATE TABLE biz_types (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    auto_finish_on_activation INTEGER NOT NULL DEFAULT 0 CHECK (auto_finish_on_activation IN (0, 1))
);
CREATE TABLE suppliers (
    supplier_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE supplier_biz_types (
    supplier_id INTEGER NOT NULL REFERENCES suppliers(supplier_id),
    biz_type TEXT NOT NULL REFERENCES biz_types(code),
    PRIMARY KEY (supplier_id, biz_type)
);
CREATE TABLE partners (
    partner_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE stores (
    store_id INTEGER PRIMARY KEY,
    partner_id INTEGER NOT NULL REFERENCES partners(partner_id),
    name TEXT NOT NULL
);
CREATE TABLE rights_providers (
    provider_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE provider_sources (
    provider_id INTEGER NOT NULL REFERENCES rights_providers(provider_id),
    source TEXT NOT NULL,
    PRIMARY KEY (provider_id, source)
);
CREATE TABLE rights (
    provider_id INTEGER NOT NULL REFERENCES rights_providers(provider_id),
    right_code TEXT NOT NULL,
    biz TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '',
    enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    PRIMARY KEY (provider_id, right_code)
);
CREATE TABLE trades (
    tid INTEGER PRIMARY KEY,
    seller_id INTEGER NOT NULL REFERENCES users(user_id),
    buyer_id INTEGER NOT NULL REFERENCES users(user_id),
    biz_kind TEXT NOT NULL CHECK (biz_kind IN ('CARRIER', 'LIANBEI', 'OPENTRADE', 'GENERIC')),
    status TEXT NOT NULL CHECK (status IN ('WAIT_BUYER_PAY', 'WAIT_SELLER_SEND_GOODS', 'WAIT_BUYER_CONFIRM_GOODS', 'TRADE_FINISHED', 'TRADE_CLOSED', 'TRADE_CLOSED_BY_TAOBAO')),
    created_at INTEGER NOT NULL,
    pay_time INTEGER,
    consign_time INTEGER,
    end_time INTEGER,
    total_fee INTEGER NOT NULL CHECK (total_fee >= 0),
    discount_fee INTEGER NOT NULL DEFAULT 0 CHECK (discount_fee >= 0),
    payment INTEGER NOT NULL CHECK (payment >= 0),
    source TEXT NOT NULL DEFAULT '',
    out_id TEXT NOT NULL DEFAULT '',
    -- Invariant 2: payment time exactly when paid; end time exactly when final; ordered times.
    CHECK ((pay_time IS NOT NULL) = (status NOT IN ('WAIT_BUYER_PAY', 'TRADE_CLOSED_BY_TAOBAO'))),
    CHECK ((end_time IS NOT NULL) = (status IN ('TRADE_FINISHED', 'TRADE_CLOSED', 'TRADE_CLOSED_BY_TAOBAO'))),
    CHECK (consign_time IS NULL OR status IN ('WAIT_BUYER_CONFIRM_GOODS', 'TRADE_FINISHED', 'TRADE_CLOSED')),
    CHECK (pay_time IS NULL OR pay_time >= created_at),
    CHECK (consign_time IS NULL OR consign_time >= pay_time),
    CHECK (end_time IS NULL OR end_time >= created_at)
);
CREATE TABLE sub_orders (
    oid INTEGER PRIMARY KEY,
    tid INTEGER NOT NULL REFERENCES trades(tid),
    item_id INTEGER NOT NULL REFERENCES items(item_id),
    sku_id INTEGER NOT NULL DEFAULT 0,
    sku_text TEXT NOT NULL DEFAULT '',
    price INTEGER NOT NULL CHECK (price >= 0),
    quantity INTEGER NOT NULL CHECK (quantity >= 1),
    nego_price INTEGER NOT NULL DEFAULT 0 CHECK (nego_price >= 0),
    discount_fee INTEGER NOT NULL DEFAULT 0 CHECK (discount_fee >= 0),
    payment INTEGER NOT NULL CHECK (payment >= 0),
    status TEXT NOT NULL
);
CREATE INDEX sub_orders_tid ON sub_orders(tid);
CREATE TABLE carrier_fulfilments (
    tid INTEGER PRIMARY KEY REFERENCES trades(tid),
    supplier_id INTEGER NOT NULL REFERENCES suppliers(supplier_id),
    biz_type TEXT NOT NULL REFERENCES biz_types(code),
    out_order_no TEXT,
    supplier_received INTEGER CHECK (supplier_received IN (0, 1)),
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'ACCEPTED', 'SHIPPED', 'ACTIVATED')),
    exception INTEGER NOT NULL DEFAULT 0 CHECK (exception IN (0, 1)),
    offer_start INTEGER,
    offer_end INTEGER,
    activated_at INTEGER,
    UNIQUE (supplier_id, out_order_no)
);
CREATE TABLE sim_cards (
    iccid TEXT PRIMARY KEY,
    tid INTEGER NOT NULL REFERENCES trades(tid),
    tag INTEGER NOT NULL CHECK (tag >= 1),
    activate_deadline INTEGER,
    deadline_passed INTEGER NOT NULL DEFAULT 0 CHECK (deadline_passed IN (0, 1)),
    status TEXT NOT NULL CHECK (status IN ('SHIPPED', 'ACTIVATED')),
    activated_at INTEGER,
    UNIQUE (tid, tag)
);
CREATE TABLE supplier_notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tid INTEGER NOT NULL REFERENCES trades(tid),
    notify_type TEXT NOT NULL,
    natural_key TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    payload TEXT NOT NULL,
    dates_swapped INTEGER NOT NULL DEFAULT 0,
    received_at INTEGER NOT NULL
);
CREATE INDEX supplier_notifications_tid ON supplier_notifications(tid);
CREATE TABLE store_sales (
    tid INTEGER PRIMARY KEY REFERENCES trades(tid),
    store_id INTEGER NOT NULL REFERENCES stores(store_id),
    guider_id TEXT NOT NULL DEFAULT '',
    guider_name TEXT NOT NULL DEFAULT '',
    operator_id TEXT NOT NULL DEFAULT '',
    operator_name TEXT NOT NULL DEFAULT ''
);
CREATE TABLE open_trade_infos (
    tid INTEGER PRIMARY KEY REFERENCES trades(tid),
    transfer_id TEXT NOT NULL DEFAULT '',
    product_id TEXT NOT NULL DEFAULT '',
    activity_id TEXT NOT NULL DEFAULT '',
    gift_id TEXT NOT NULL DEFAULT '',
    phone TEXT NOT NULL DEFAULT '',
    handling TEXT NOT NULL CHECK (handling IN ('PENDING', 'SUCCEEDED', 'FAILED')),
    result_code TEXT,
    result_desc TEXT,
    first_charge_amount INTEGER,
    first_charge_time INTEGER,
    ext TEXT
);
CREATE TABLE right_orders (
    order_id INTEGER PRIMARY KEY,
    provider_id INTEGER NOT NULL REFERENCES rights_providers(provider_id),
    app_key TEXT NOT NULL,
    source TEXT NOT NULL,
    outer_order_id TEXT NOT NULL,
    idempotent_id TEXT,
    user_id INTEGER NOT NULL REFERENCES users(user_id),
    open_id TEXT NOT NULL,
    phone TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount >= 0),
    pay_time INTEGER NOT NULL,
    right_code TEXT,
    biz TEXT,
    biz_scene TEXT,
    title TEXT,
    channel_id INTEGER,
    extend TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL CHECK (status IN ('PAID', 'FINISHED', 'REFUNDED')),
    created_at INTEGER NOT NULL,
    UNIQUE (provider_id, outer_order_id),
    UNIQUE (provider_id, idempotent_id)
);
CREATE TABLE idempotency_records (
    scope TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response_body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE TABLE refunds (
    refund_id INTEGER PRIMARY KEY AUTOINCREMENT,
    tid INTEGER NOT NULL REFERENCES trades(tid),
    oid INTEGER,
    amount INTEGER NOT NULL CHECK (amount >= 0),
    reason TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
