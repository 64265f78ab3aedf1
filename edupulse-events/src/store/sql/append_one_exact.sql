-- One event. Binds: $1 aggregate id, $2 aggregate type, $3 event id, $4 event type,
-- $5 version, $6 data subjects, $7 payload, $8 metadata, $9 occurred at, $10 subject,
-- $11 outbox partition, $12 the expected version.
-- Exact: inserts nothing unless the aggregate's version is $12.
WITH inserted AS (
    INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, version,
                        data_subjects, payload, metadata, occurred_at, tx_id)
    SELECT $3, $2, $1, c.version + 1, $4, $5, $6, $7::jsonb, $8::jsonb, $9, c.tx
    FROM (SELECT coalesce(max(sequence), 0) AS version, pg_current_xact_id() AS tx
    FROM events WHERE aggregate_id = $1) c
    WHERE c.version = $12
    RETURNING position, sequence
)
INSERT INTO outbox (position, partition, subject)
    SELECT position, $11, $10 FROM inserted
    -- Wakes the relay only if it is parked: otherwise holds the partition's parking lock
    -- shared until commit (migration `wake_parked_relay`).
    WHERE CASE WHEN pg_try_advisory_xact_lock_shared(
                        hashtext(current_schema() || ':edupulse-parked'), $11::smallint) THEN true
               ELSE pg_notify('edupulse_outbox_' || md5(current_schema()), '') IS NOT NULL END
RETURNING position, $12 + 1
