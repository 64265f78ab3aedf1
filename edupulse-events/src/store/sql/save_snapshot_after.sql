-- A snapshot of a state read from the snapshot at version $7 and folded on. Binds: $1
-- aggregate id, $2 key, $3 state version, $4 version, $5 state, $6 the data subjects of the
-- events after $7, $7 base.
-- Builds on the row it was read from (or a later one, never a newer than $4): the subjects
-- already there were checked when saved, and merged with the new ones. No row, no snapshot:
-- an erasure deleted it, and who it named is known only from the events.
UPDATE snapshots SET
    state_version = $3, version = $4, state = $5, taken_at = now(),
    data_subjects = ARRAY(SELECT DISTINCT s FROM unnest(data_subjects || $6::uuid[]) AS s)
WHERE aggregate_id = $1 AND aggregate_type = $2 AND version >= $7 AND version <= $4
  AND NOT EXISTS (SELECT 1 FROM erased_subjects WHERE subject_id = ANY($6))
