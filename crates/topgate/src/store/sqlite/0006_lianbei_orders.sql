-- The lianbei answer as one row per store sale, so that `lianbei.order.notice` walks one B-tree
-- instead of joining six tables: at a million orders every walk of a large table reads a page
-- that is rarely cached. `lianbei_order_sources` is its definition (a trade, its store sale,
-- store, buyer, first line and item); `lianbei_orders` its copy, written with the order and
-- kept in step by every trade transition (`trades::apply`, the one place a trade's status and
-- times change). Buyers, items and stores are never updated, so the copy of their fields is
-- the order's snapshot and stays exact.
CREATE VIEW lianbei_order_sources AS
SELECT t.tid, st.partner_id, t.status, t.created_at, t.pay_time, t.consign_time, t.end_time,
       t.payment, t.source, t.out_id, u.nick AS buyer_nick, u.mobile AS buyer_mobile,
       i.item_id, i.title AS item_title, i.pic_url AS item_pic_url, o.price, o.quantity,
       o.discount_fee, o.sku_id, o.sku_text, o.nego_price, s.guider_id, s.guider_name,
       s.operator_id, s.operator_name
FROM trades t
JOIN store_sales s ON s.tid = t.tid
JOIN stores st ON st.store_id = s.store_id
JOIN users u ON u.user_id = t.buyer_id
JOIN sub_orders o ON o.oid = (SELECT min(oid) FROM sub_orders WHERE tid = t.tid)
JOIN items i ON i.item_id = o.item_id
WHERE t.biz_kind = 'LIANBEI';
CREATE TABLE lianbei_orders (
    tid INTEGER PRIMARY KEY REFERENCES trades(tid),
    partner_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    pay_time INTEGER,
    consign_time INTEGER,
    end_time INTEGER,
    payment INTEGER NOT NULL,
    source TEXT NOT NULL,
    out_id TEXT NOT NULL,
    buyer_nick TEXT NOT NULL,
    buyer_mobile TEXT,
    item_id INTEGER NOT NULL,
    item_title TEXT NOT NULL,
    item_pic_url TEXT NOT NULL,
    price INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    discount_fee INTEGER NOT NULL,
    sku_id INTEGER NOT NULL,
    sku_text TEXT NOT NULL,
    nego_price INTEGER NOT NULL,
    guider_id TEXT NOT NULL,
    guider_name TEXT NOT NULL,
    operator_id TEXT NOT NULL,
    operator_name TEXT NOT NULL
);
INSERT INTO lianbei_orders SELECT * FROM lianbei_order_sources;
