-- Aggregate snapshots: the latest state of an aggregate at a version, so a command reads the
-- snapshot and the events after it instead of the whole history. One row per aggregate
-- (overwritten by a later one). `state_version` is the state type's schema version: a
-- snapshot of another version is ignored, never misread. `data_subjects` are the people whose
-- events the state was folded from: an erasure deletes their snapshots in its transaction.
CREATE TABLE snapshots (
    aggregate_id   uuid        NOT NULL,
    aggregate_type text        NOT NULL,
    state_version  integer     NOT NULL CHECK (state_version >= 1),
    version        bigint      NOT NULL CHECK (version >= 1),
    state          jsonb       NOT NULL,
    data_subjects  uuid[]      NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_id, aggregate_type)
);

CREATE INDEX snapshots_data_subjects ON snapshots USING gin (data_subjects);
