-- What each consumer has already applied: a handler's writes commit in the same transaction as
-- the event's row here, so a redelivered message (JetStream delivers at least once) changes
-- nothing the second time. Only ids: no payload, nothing personal.
CREATE TABLE inbox (
    consumer   TEXT        NOT NULL,
    event_id   UUID        NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Trimming old entries (Inbox::forget_before) goes by time.
CREATE INDEX inbox_applied_at ON inbox (applied_at);

-- Messages a subscriber set aside: undecodable, or still failing after the allowed number of
-- deliveries. The stream keeps the message itself; this row says why it was given up on.
CREATE TABLE consumer_dead_letters (
    consumer        TEXT        NOT NULL,
    stream_sequence BIGINT      NOT NULL,
    event_id        UUID,
    subject         TEXT        NOT NULL,
    deliveries      BIGINT      NOT NULL,
    reason          TEXT        NOT NULL,
    failed_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, stream_sequence)
);
