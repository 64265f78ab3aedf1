-- The immutable event log, the transactional outbox the relay drains, and the dead letters it
-- sets aside. Every object is created in the current schema (search_path), so one database can
-- hold several isolated stores (one per test, one per tenant).

CREATE TABLE events (
    -- Global order of appends. Positions are allocated at insert and can commit out of order;
    -- readers of the whole log filter on tx_id (see read_all) so a late commit is never skipped.
    position        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        UUID        NOT NULL UNIQUE,
    aggregate_type  TEXT        NOT NULL,
    aggregate_id    UUID        NOT NULL,
    sequence        BIGINT      NOT NULL CHECK (sequence >= 1),
    event_type      TEXT        NOT NULL,
    version         INTEGER     NOT NULL CHECK (version >= 1),
    data_subjects   UUID[]      NOT NULL DEFAULT '{}',
    payload         JSONB       NOT NULL,
    metadata        JSONB       NOT NULL DEFAULT '{}',
    occurred_at     TIMESTAMPTZ NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    -- Optimistic concurrency: two writers of one aggregate cannot both take a sequence.
    CONSTRAINT events_aggregate_sequence UNIQUE (aggregate_id, sequence)
);

-- Erasure finds a person's events without scanning the log.
CREATE INDEX events_data_subjects ON events USING GIN (data_subjects);
-- read_all orders by (tx_id, position) below the snapshot xmin: see store::read.
CREATE INDEX events_tx_id_position ON events (tx_id, position);

-- The log is append-only: history is corrected by new events, never rewritten.
CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on events is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_immutable();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable();

-- What the relay still has to publish: one small row per event, written in the appending
-- transaction and deleted once JetStream has acknowledged it.
-- No foreign key to events: the row is written by the same statement as its event, and the
-- check would cost an index probe per appended event.
CREATE TABLE outbox (
    position      BIGINT   PRIMARY KEY,
    aggregate_id  UUID     NOT NULL,
    -- hash(aggregate_id) modulo the partition count: one relay leader per partition keeps
    -- every aggregate's events in order.
    partition     SMALLINT NOT NULL,
    subject       TEXT     NOT NULL,
    attempts      INTEGER  NOT NULL DEFAULT 0
);

CREATE INDEX outbox_partition_position ON outbox (partition, position);
-- The relay's check that no earlier row of the same aggregate is still waiting.
CREATE INDEX outbox_aggregate_position ON outbox (aggregate_id, position);

-- Wake the relay when an appending transaction commits (NOTIFY is delivered at commit).
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('edupulse_outbox_' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_wake_relay AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Events the relay could never publish, with the reason; the relay goes on without them.
CREATE TABLE dead_letters (
    position     BIGINT      PRIMARY KEY REFERENCES events (position),
    event_id     UUID        NOT NULL,
    aggregate_id UUID        NOT NULL,
    subject      TEXT        NOT NULL,
    reason       TEXT        NOT NULL,
    failed_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
