-- Several events of one aggregate, one array per column. Binds: $1 aggregate id, $2 aggregate
-- type, $3 event ids, $4 event types, $5 versions, $6 data subjects (comma-joined per event),
-- $7 payloads, $8 metadata, $9 occurred at, $10 subjects, $11 outbox partition, $12 the expected version.
-- Exact: inserts nothing unless the aggregate's version is $12.
WITH current AS (
    SELECT coalesce(max(sequence), 0) AS version, pg_current_xact_id() AS tx
    FROM events WHERE aggregate_id = $1
), input AS (
    SELECT * FROM unnest($3::uuid[], $4::text[], $5::int[], $6::text[], $7::text[], $8::text[],
                         $9::timestamptz[])
        WITH ORDINALITY AS t(event_id, event_type, version, data_subjects, payload, metadata,
                             occurred_at, ord)
), inserted AS (
    INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, event_type, version,
                        data_subjects, payload, metadata, occurred_at, tx_id)
    SELECT i.event_id, $2, $1, c.version + i.ord, i.event_type, i.version,
           coalesce(string_to_array(nullif(i.data_subjects, ''), ',')::uuid[], '{}'),
           i.payload::jsonb, i.metadata::jsonb, i.occurred_at, c.tx
    FROM input i CROSS JOIN current c
    WHERE c.version = $12
    ORDER BY i.ord
    RETURNING position, sequence
), outboxed AS (
    INSERT INTO outbox (position, partition, subject)
    SELECT ins.position, $11, ($10::text[])[ins.sequence - c.version]
    FROM inserted ins CROSS JOIN current c
    -- Wakes the relay only if it is parked, from the first row only: otherwise holds the
    -- partition's parking lock shared until commit (migration `wake_parked_relay`).
    WHERE CASE WHEN ins.sequence - c.version > 1 THEN true
               WHEN pg_try_advisory_xact_lock_shared(
                        hashtext(current_schema() || ':edupulse-parked'), $11::smallint) THEN true
               ELSE pg_notify('edupulse_outbox_' || md5(current_schema()), '') IS NOT NULL END
)
SELECT position, sequence FROM inserted
