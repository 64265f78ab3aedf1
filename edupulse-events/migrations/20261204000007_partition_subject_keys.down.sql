ALTER TABLE subject_keys RENAME TO subject_keys_partitioned;
CREATE TABLE subject_keys (
    subject_id  UUID        NOT NULL,
    key_version INTEGER     NOT NULL CHECK (key_version >= 1),
    wrapped     BYTEA       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (subject_id, key_version)
);
INSERT INTO subject_keys SELECT * FROM subject_keys_partitioned;
DROP TABLE subject_keys_partitioned;
