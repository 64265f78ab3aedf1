//! The embedded store's tables: the same log, outbox and key tables as PostgreSQL's
//! migrations, in SQLite's dialect. Created on open; `IF NOT EXISTS` makes reopening a no-op.

pub(super) const SCHEMA: &str = "
PRAGMA foreign_keys = ON;

CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT    NOT NULL UNIQUE,
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    sequence       INTEGER NOT NULL CHECK (sequence >= 1),
    event_type     TEXT    NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1),
    data_subjects  TEXT    NOT NULL,
    payload        TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    occurred_at    TEXT    NOT NULL,
    recorded_at    TEXT    NOT NULL,
    -- Optimistic concurrency: two writers of one aggregate cannot both take a sequence.
    UNIQUE (aggregate_id, sequence)
);

-- The log is append-only: history is corrected by new events, never rewritten. The one
-- exception is an erasure's scrub, which overwrites a subject's sealed values in the payload
-- while its permit is in `scrub_permits` (inside the erasing transaction).
-- (`events_no_update`, which refused every update, is what files made before scrubbing had.)
DROP TRIGGER IF EXISTS events_no_update;
CREATE TRIGGER IF NOT EXISTS events_append_only
BEFORE UPDATE OF position, event_id, aggregate_type, aggregate_id, sequence, event_type,
                 version, data_subjects, metadata, occurred_at, recorded_at ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

-- Erasure's scrub finds a person's events without scanning the log.
CREATE TABLE IF NOT EXISTS event_subjects (
    subject_id TEXT    NOT NULL,
    position   INTEGER NOT NULL REFERENCES events (position),
    PRIMARY KEY (subject_id, position)
);

CREATE TABLE IF NOT EXISTS scrub_permits (
    subject_id TEXT PRIMARY KEY
);
CREATE TRIGGER IF NOT EXISTS events_scrub_only BEFORE UPDATE OF payload ON events
WHEN NOT EXISTS (SELECT 1 FROM scrub_permits p JOIN event_subjects s USING (subject_id)
                 WHERE s.position = OLD.position)
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

CREATE TABLE IF NOT EXISTS outbox (
    position INTEGER PRIMARY KEY REFERENCES events (position),
    subject  TEXT    NOT NULL
);

CREATE TABLE IF NOT EXISTS subject_keys (
    subject_id  TEXT    NOT NULL,
    key_version INTEGER NOT NULL,
    wrapped     BLOB    NOT NULL,
    PRIMARY KEY (subject_id, key_version)
);

-- A subscriber's record of the events it applied, written in its handlers' transaction.
CREATE TABLE IF NOT EXISTS inbox (
    consumer   TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- What a subscriber gave up on, with why: the only trace left of it.
CREATE TABLE IF NOT EXISTS consumer_dead_letters (
    consumer   TEXT    NOT NULL,
    event_id   TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    deliveries INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    failed_at  TEXT    NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- The latest snapshot of each aggregate (see the PostgreSQL migration `snapshots`); the
-- subjects as a JSON array of ids, for the erasure's delete.
CREATE TABLE IF NOT EXISTS snapshots (
    aggregate_id   TEXT    NOT NULL,
    aggregate_type TEXT    NOT NULL,
    state_version  INTEGER NOT NULL CHECK (state_version >= 1),
    version        INTEGER NOT NULL CHECK (version >= 1),
    state          TEXT    NOT NULL,
    data_subjects  TEXT    NOT NULL,
    taken_at       TEXT    NOT NULL,
    PRIMARY KEY (aggregate_id, aggregate_type)
);

CREATE TABLE IF NOT EXISTS erased_subjects (
    subject_id       TEXT    PRIMARY KEY,
    erased_at        TEXT    NOT NULL,
    reason           TEXT    NOT NULL,
    last_key_version INTEGER NOT NULL,
    -- Whether the subject may have personal data again, under keys above last_key_version.
    allow_new_keys   INTEGER NOT NULL DEFAULT 0
);
";

/// Columns added since a table was first created, each with the statement that adds it to a
/// file created before: `(table, column, ALTER TABLE ...)`.
pub(super) const ADDED_COLUMNS: &[(&str, &str, &str)] = &[(
    "erased_subjects",
    "allow_new_keys",
    "ALTER TABLE erased_subjects ADD COLUMN allow_new_keys INTEGER NOT NULL DEFAULT 0",
)];
