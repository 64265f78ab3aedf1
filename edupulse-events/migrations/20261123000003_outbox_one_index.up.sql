-- The relay no longer looks up an aggregate's waiting rows: it tells a late commit from the
-- transaction ids in its read snapshots (see relay/read.rs). The outbox now needs one index,
-- its key, which is also the relay's read order: a relay leading only some partitions filters
-- the others out as it scans. One index instead of three makes every appended event cheaper.
DROP INDEX outbox_partition_position;
DROP INDEX outbox_aggregate_position;
ALTER TABLE outbox DROP COLUMN aggregate_id;
ALTER TABLE outbox DROP COLUMN attempts;
