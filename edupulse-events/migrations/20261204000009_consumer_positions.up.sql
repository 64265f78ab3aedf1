-- Where each subscriber's catch-up has read the log up to: read_all returns a gap-free prefix
-- in (tx_id, position) order, so every event at or before this place has been through the
-- subscriber's handlers (or its inbox said it already had), and the next catch-up starts
-- after it instead of at the beginning. Ids only, nothing personal.
CREATE TABLE consumer_positions (
    consumer   TEXT        PRIMARY KEY,
    tx_id      BIGINT      NOT NULL,
    position   BIGINT      NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
