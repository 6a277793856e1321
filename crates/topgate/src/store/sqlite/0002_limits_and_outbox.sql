-- Per-method call counters shared by every node (fixed one-second windows), and the
-- transactional outbox: every state change writes its event in the same transaction.
CREATE TABLE rate_counters (
    app_key TEXT NOT NULL,
    method TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    PRIMARY KEY (app_key, method, window_start)
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type TEXT NOT NULL,
    entity TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX events_entity ON events(entity, id);
