-- An erasure may scrub: overwrite a subject's sealed values in the log with the erased marker,
-- for deployments that want the ciphertext gone too, not only the key. The log stays
-- append-only for everything else: inside a transaction that set `edupulse.scrub`, an UPDATE
-- may only replace top-level values sealed for one of the event's own data subjects
-- (`{"$pii": "1.<subject>.<key version>.<...>"}`) with `{"$pii": "erased"}`. Nothing can be
-- written in clear this way, and no other column or value can change.
CREATE OR REPLACE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('edupulse.scrub', true) = 'on'
       AND jsonb_typeof(OLD.payload) = 'object' AND jsonb_typeof(NEW.payload) = 'object'
       AND (NEW.position, NEW.event_id, NEW.aggregate_type, NEW.aggregate_id, NEW.sequence,
            NEW.event_type, NEW.version, NEW.data_subjects, NEW.metadata, NEW.occurred_at,
            NEW.recorded_at, NEW.tx_id)
           IS NOT DISTINCT FROM
           (OLD.position, OLD.event_id, OLD.aggregate_type, OLD.aggregate_id, OLD.sequence,
            OLD.event_type, OLD.version, OLD.data_subjects, OLD.metadata, OLD.occurred_at,
            OLD.recorded_at, OLD.tx_id)
       AND NOT EXISTS (
           SELECT 1
           FROM jsonb_each(OLD.payload) AS o(key, value)
                FULL JOIN jsonb_each(NEW.payload) AS n(key, value) USING (key)
           WHERE o.value IS DISTINCT FROM n.value
             -- IS NOT TRUE, not NOT: a removed key, or a value that is not sealed, makes the
             -- test NULL, and that must count as a forbidden change too.
             AND (n.value = '{"$pii": "erased"}'::jsonb
                  AND jsonb_typeof(o.value -> '$pii') = 'string'
                  AND split_part(o.value ->> '$pii', '.', 2) = ANY (OLD.data_subjects::text[]))
                 IS NOT TRUE)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the event log is append-only: % on events is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;
