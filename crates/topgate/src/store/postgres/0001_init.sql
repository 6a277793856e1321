-- Apps, sessions and the business data of the four seed APIs.
-- The PostgreSQL twin of the SQLite schema: BIGINT for every integer (booleans are 0/1, times
-- are epoch milliseconds, UTC) so that the same SQL runs on both.
CREATE TABLE apps (
    app_key TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    name TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    sandbox BIGINT NOT NULL DEFAULT 0 CHECK (sandbox IN (0, 1)),
    supplier_id BIGINT,
    partner_id BIGINT,
    provider_id BIGINT,
    seller_id BIGINT,
    created_at BIGINT NOT NULL
);
CREATE TABLE app_methods (
    app_key TEXT NOT NULL REFERENCES apps(app_key),
    method TEXT NOT NULL,
    calls_per_second BIGINT CHECK (calls_per_second IS NULL OR calls_per_second > 0),
    PRIMARY KEY (app_key, method)
);
CREATE TABLE sessions (
    session_key TEXT PRIMARY KEY,
    app_key TEXT NOT NULL REFERENCES apps(app_key),
    user_id BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE users (
    user_id BIGINT PRIMARY KEY,
    nick TEXT NOT NULL,
    mobile TEXT,
    is_seller BIGINT NOT NULL DEFAULT 0 CHECK (is_seller IN (0, 1))
);
CREATE UNIQUE INDEX users_mobile ON users(mobile);
CREATE TABLE items (
    item_id BIGINT PRIMARY KEY,
    seller_id BIGINT NOT NULL REFERENCES users(user_id),
    title TEXT NOT NULL,
    pic_url TEXT NOT NULL DEFAULT '',
    price BIGINT NOT NULL CHECK (price >= 0)
);
CREATE TABLE biz_types (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    auto_finish_on_activation BIGINT NOT NULL DEFAULT 0 CHECK (auto_finish_on_activation IN (0, 1))
);
CREATE TABLE suppliers (
    supplier_id BIGINT PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE supplier_biz_types (
    supplier_id BIGINT NOT NULL REFERENCES suppliers(supplier_id),
    biz_type TEXT NOT NULL REFERENCES biz_types(code),
    PRIMARY KEY (supplier_id, biz_type)
);
CREATE TABLE partners (
    partner_id BIGINT PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE stores (
    store_id BIGINT PRIMARY KEY,
    partner_id BIGINT NOT NULL REFERENCES partners(partner_id),
    name TEXT NOT NULL
);
CREATE TABLE rights_providers (
    provider_id BIGINT PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE provider_sources (
    provider_id BIGINT NOT NULL REFERENCES rights_providers(provider_id),
    source TEXT NOT NULL,
    PRIMARY KEY (provider_id, source)
);
CREATE TABLE rights (
    provider_id BIGINT NOT NULL REFERENCES rights_providers(provider_id),
    right_code TEXT NOT NULL,
    biz TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '',
    enabled BIGINT NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    PRIMARY KEY (provider_id, right_code)
);
CREATE TABLE trades (
    tid BIGINT PRIMARY KEY,
    seller_id BIGINT NOT NULL REFERENCES users(user_id),
    buyer_id BIGINT NOT NULL REFERENCES users(user_id),
    biz_kind TEXT NOT NULL CHECK (biz_kind IN ('CARRIER', 'LIANBEI', 'OPENTRADE', 'GENERIC')),
    status TEXT NOT NULL CHECK (status IN ('WAIT_BUYER_PAY', 'WAIT_SELLER_SEND_GOODS', 'WAIT_BUYER_CONFIRM_GOODS', 'TRADE_FINISHED', 'TRADE_CLOSED', 'TRADE_CLOSED_BY_TAOBAO')),
    created_at BIGINT NOT NULL,
    pay_time BIGINT,
    consign_time BIGINT,
    end_time BIGINT,
    total_fee BIGINT NOT NULL CHECK (total_fee >= 0),
    discount_fee BIGINT NOT NULL DEFAULT 0 CHECK (discount_fee >= 0),
    payment BIGINT NOT NULL CHECK (payment >= 0),
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
    oid BIGINT PRIMARY KEY,
    tid BIGINT NOT NULL REFERENCES trades(tid),
    item_id BIGINT NOT NULL REFERENCES items(item_id),
    sku_id BIGINT NOT NULL DEFAULT 0,
    sku_text TEXT NOT NULL DEFAULT '',
    price BIGINT NOT NULL CHECK (price >= 0),
    quantity BIGINT NOT NULL CHECK (quantity >= 1),
    nego_price BIGINT NOT NULL DEFAULT 0 CHECK (nego_price >= 0),
    discount_fee BIGINT NOT NULL DEFAULT 0 CHECK (discount_fee >= 0),
    payment BIGINT NOT NULL CHECK (payment >= 0),
    status TEXT NOT NULL
);
CREATE INDEX sub_orders_tid ON sub_orders(tid);
CREATE TABLE carrier_fulfilments (
    tid BIGINT PRIMARY KEY REFERENCES trades(tid),
    supplier_id BIGINT NOT NULL REFERENCES suppliers(supplier_id),
    biz_type TEXT NOT NULL REFERENCES biz_types(code),
    out_order_no TEXT,
    supplier_received BIGINT CHECK (supplier_received IN (0, 1)),
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'ACCEPTED', 'SHIPPED', 'ACTIVATED')),
    exception BIGINT NOT NULL DEFAULT 0 CHECK (exception IN (0, 1)),
    offer_start BIGINT,
    offer_end BIGINT,
    activated_at BIGINT,
    UNIQUE (supplier_id, out_order_no)
);
CREATE TABLE sim_cards (
    iccid TEXT PRIMARY KEY,
    tid BIGINT NOT NULL REFERENCES trades(tid),
    tag BIGINT NOT NULL CHECK (tag >= 1),
    activate_deadline BIGINT,
    deadline_passed BIGINT NOT NULL DEFAULT 0 CHECK (deadline_passed IN (0, 1)),
    status TEXT NOT NULL CHECK (status IN ('SHIPPED', 'ACTIVATED')),
    activated_at BIGINT,
    UNIQUE (tid, tag)
);
CREATE TABLE supplier_notifications (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tid BIGINT NOT NULL REFERENCES trades(tid),
    notify_type TEXT NOT NULL,
    natural_key TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    payload TEXT NOT NULL,
    dates_swapped BIGINT NOT NULL DEFAULT 0,
    received_at BIGINT NOT NULL
);
CREATE INDEX supplier_notifications_tid ON supplier_notifications(tid);
CREATE TABLE store_sales (
    tid BIGINT PRIMARY KEY REFERENCES trades(tid),
    store_id BIGINT NOT NULL REFERENCES stores(store_id),
    guider_id TEXT NOT NULL DEFAULT '',
    guider_name TEXT NOT NULL DEFAULT '',
    operator_id TEXT NOT NULL DEFAULT '',
    operator_name TEXT NOT NULL DEFAULT ''
);
CREATE TABLE open_trade_infos (
    tid BIGINT PRIMARY KEY REFERENCES trades(tid),
    transfer_id TEXT NOT NULL DEFAULT '',
    product_id TEXT NOT NULL DEFAULT '',
    activity_id TEXT NOT NULL DEFAULT '',
    gift_id TEXT NOT NULL DEFAULT '',
    phone TEXT NOT NULL DEFAULT '',
    handling TEXT NOT NULL CHECK (handling IN ('PENDING', 'SUCCEEDED', 'FAILED')),
    result_code TEXT,
    result_desc TEXT,
    first_charge_amount BIGINT,
    first_charge_time BIGINT,
    ext TEXT
);
CREATE TABLE right_orders (
    order_id BIGINT PRIMARY KEY,
    provider_id BIGINT NOT NULL REFERENCES rights_providers(provider_id),
    app_key TEXT NOT NULL,
    source TEXT NOT NULL,
    outer_order_id TEXT NOT NULL,
    idempotent_id TEXT,
    user_id BIGINT NOT NULL REFERENCES users(user_id),
    open_id TEXT NOT NULL,
    phone TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount >= 0),
    pay_time BIGINT NOT NULL,
    right_code TEXT,
    biz TEXT,
    biz_scene TEXT,
    title TEXT,
    channel_id BIGINT,
    extend TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL CHECK (status IN ('PAID', 'FINISHED', 'REFUNDED')),
    created_at BIGINT NOT NULL,
    UNIQUE (provider_id, outer_order_id),
    UNIQUE (provider_id, idempotent_id)
);
CREATE TABLE idempotency_records (
    scope TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response_body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE TABLE refunds (
    refund_id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tid BIGINT NOT NULL REFERENCES trades(tid),
    oid BIGINT,
    amount BIGINT NOT NULL CHECK (amount >= 0),
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
