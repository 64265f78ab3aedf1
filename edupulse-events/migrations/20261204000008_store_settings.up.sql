-- Settings every process of one store must share. The outbox partition count decides which
-- relay owns an aggregate's events: a writer and a relay that disagree on it strand events in
-- partitions nobody leads. The first process records its count; every other one compares.
CREATE TABLE store_settings (
    only_row          BOOLEAN  PRIMARY KEY DEFAULT true CHECK (only_row),
    outbox_partitions SMALLINT CHECK (outbox_partitions >= 1)
);
