-- A random identity of this database, drawn once when the schema is created or upgraded and
-- never changed: event ids are unique only within one database, so a NATS sink publishes
-- `<instance>:<event id>` as the message id, and JetStream never takes an event of another
-- database (or of a sandbox deleted and recreated) for a duplicate of one it already has.
-- Drawn with md5 over random() and the clock: gen_random_bytes would need the pgcrypto
-- extension.
CREATE TABLE database_identity (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    instance TEXT NOT NULL
);
INSERT INTO database_identity (id, instance)
VALUES (1, substr(md5(random()::text || clock_timestamp()::text), 1, 16));
