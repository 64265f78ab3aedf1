-- An erasure may scrub: overwrite a subject's sealed values in the log with the erased marker,
-- for deployments that want the ciphertext gone too, not only the key. The log stays
-- append-only for everything else: only the payload may change, and only inside a transaction
-- that set `edupulse.scrub` (privacy::erasure does, for its own statement).
CREATE OR REPLACE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('edupulse.scrub', true) = 'on'
       AND (NEW.position, NEW.event_id, NEW.aggregate_type, NEW.aggregate_id, NEW.sequence,
            NEW.event_type, NEW.version, NEW.data_subjects, NEW.metadata, NEW.occurred_at,
            NEW.recorded_at, NEW.tx_id)
           IS NOT DISTINCT FROM
           (OLD.position, OLD.event_id, OLD.aggregate_type, OLD.aggregate_id, OLD.sequence,
            OLD.event_type, OLD.version, OLD.data_subjects, OLD.metadata, OLD.occurred_at,
            OLD.recorded_at, OLD.tx_id)
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the event log is append-only: % on events is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;
