-- The key table in 16 hash partitions by subject. An erasure rewrites the partition that held
-- the destroyed key (VACUUM FULL: a plain VACUUM frees the row but can leave its bytes in the
-- page's free space), so the rewrite, and the lock appends wait behind, is a sixteenth of the
-- table instead of all of it.
ALTER TABLE subject_keys RENAME TO subject_keys_unpartitioned;
ALTER TABLE subject_keys_unpartitioned
    RENAME CONSTRAINT subject_keys_pkey TO subject_keys_unpartitioned_pkey;

CREATE TABLE subject_keys (
    subject_id  UUID        NOT NULL,
    key_version INTEGER     NOT NULL CHECK (key_version >= 1),
    wrapped     BYTEA       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (subject_id, key_version)
) PARTITION BY HASH (subject_id);

DO $$
BEGIN
    FOR remainder IN 0..15 LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF subject_keys FOR VALUES WITH (MODULUS 16, REMAINDER %s)',
            'subject_keys_p' || remainder, remainder);
    END LOOP;
END $$;

INSERT INTO subject_keys SELECT * FROM subject_keys_unpartitioned;
DROP TABLE subject_keys_unpartitioned;
