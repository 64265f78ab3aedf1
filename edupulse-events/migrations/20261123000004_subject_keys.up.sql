-- Data keys for crypto-shredding (see edupulse-events/src/privacy): one per data subject and
-- key version, stored only wrapped by a master key that is not in the database. Kept apart
-- from the events: these rows are what erasure destroys, and they must not travel with the
-- log (deployments may move this table to its own schema with short backup retention).
CREATE TABLE subject_keys (
    subject_id  UUID        NOT NULL,
    key_version INTEGER     NOT NULL CHECK (key_version >= 1),
    wrapped     BYTEA       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (subject_id, key_version)
);

-- Subjects whose keys were destroyed: a new key for them is refused unless explicitly allowed,
-- so an append racing an erasure cannot quietly start readable data again.
CREATE TABLE erased_subjects (
    subject_id     UUID        PRIMARY KEY,
    erased_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    reason         TEXT        NOT NULL,
    -- The newest key version destroyed: a key allowed after erasure takes a higher one, so
    -- data sealed before can never open with it.
    last_key_version INTEGER   NOT NULL DEFAULT 0,
    allow_new_keys BOOLEAN     NOT NULL DEFAULT false
);
