ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN aggregate_id UUID;
UPDATE outbox o SET aggregate_id = e.aggregate_id FROM events e WHERE e.position = o.position;
ALTER TABLE outbox ALTER COLUMN aggregate_id SET NOT NULL;
CREATE INDEX outbox_partition_position ON outbox (partition, position);
CREATE INDEX outbox_aggregate_position ON outbox (aggregate_id, position);
