-- Delivery of outbox events to sinks (webhooks, NATS JetStream).
-- `sinks` is read by every business transaction that emits an event (to fan it out), so what
-- changes often (leases, failure streaks) lives in `sink_state` and never conflicts with it.
CREATE TABLE sinks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('webhook', 'nats')),
    url TEXT NOT NULL,
    secret TEXT,
    config TEXT NOT NULL DEFAULT '{}',
    enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    disabled_reason TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
-- One row per accepted event type, or '*' for all.
CREATE TABLE sink_event_types (
    sink_id INTEGER NOT NULL REFERENCES sinks(id),
    event_type TEXT NOT NULL,
    PRIMARY KEY (sink_id, event_type)
);
CREATE TABLE sink_state (
    sink_id INTEGER PRIMARY KEY REFERENCES sinks(id),
    lease_owner TEXT,
    lease_until INTEGER,
    -- Start of the current failure streak (no success since); NULL while healthy.
    failing_since INTEGER
);
-- One row per (sink, event): written with the event, then moved by the dispatcher.
-- `tries` counts attempts since the last (re)queue and drives the retry schedule;
-- `attempts` counts every attempt ever and numbers them.
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink_id INTEGER NOT NULL REFERENCES sinks(id),
    event_id INTEGER NOT NULL REFERENCES events(id),
    entity TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    tries INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    delivered_at INTEGER,
    updated_at INTEGER NOT NULL,
    UNIQUE (sink_id, event_id)
);
CREATE INDEX deliveries_due ON deliveries(sink_id, next_at) WHERE state = 'pending';
CREATE INDEX deliveries_pending_entity ON deliveries(sink_id, entity, event_id) WHERE state = 'pending';
CREATE INDEX deliveries_event ON deliveries(event_id);
CREATE TABLE delivery_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
    sink_id INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('delivered', 'duplicate', 'failed')),
    http_status INTEGER,
    error TEXT,
    node TEXT NOT NULL
);
CREATE INDEX delivery_attempts_event ON delivery_attempts(event_id, id);
CREATE INDEX delivery_attempts_sink ON delivery_attempts(sink_id, id);
