-- Pay notices keep their idempotency digests on the order they created (the order's unique
-- keys already are the idempotency keys): one insert per notice instead of three.
ALTER TABLE right_orders ADD COLUMN request_hash TEXT;
ALTER TABLE right_orders ADD COLUMN payment_hash TEXT;
UPDATE right_orders SET
    request_hash = (SELECT r.request_hash FROM idempotency_records r
        WHERE r.scope = 'alibaba.diantao.tripartite.right.pay.notify:' || right_orders.provider_id::TEXT
          AND r.idem_key = 'idempotent:' || right_orders.idempotent_id),
    payment_hash = (SELECT r.request_hash FROM idempotency_records r
        WHERE r.scope = 'alibaba.diantao.tripartite.right.pay.notify:' || right_orders.provider_id::TEXT
          AND r.idem_key = 'outer:' || right_orders.outer_order_id);
DELETE FROM idempotency_records WHERE scope LIKE 'alibaba.diantao.tripartite.right.pay.notify:%';
