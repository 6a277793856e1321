-- A random identity of this database, drawn once when the schema is created or upgraded and
-- never changed: event ids are unique only within one database, so a NATS sink publishes
-- `<instance>:<event id>` as the message id, and JetStream never takes an event of another
-- database (or of a sandbox deleted and recreated) for a duplicate of one it already has.
CREATE TABLE database_identity (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    instance TEXT NOT NULL
);
INSERT INTO database_identity (id, instance) VALUES (1, lower(hex(randomblob(8))));
