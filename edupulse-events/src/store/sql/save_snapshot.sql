-- A snapshot of a state folded from the first event. Binds: $1 aggregate id, $2 key,
-- $3 state version, $4 version, $5 state, $6 every data subject of its events, $7 base (0).
-- Saved unless one of them was erased; never over a newer snapshot.
INSERT INTO snapshots (aggregate_id, aggregate_type, state_version, version, state, data_subjects)
SELECT $1, $2, $3, $4, $5, $6
WHERE $7 = 0 AND NOT EXISTS (SELECT 1 FROM erased_subjects WHERE subject_id = ANY($6))
ON CONFLICT (aggregate_id, aggregate_type) DO UPDATE SET
    state_version = EXCLUDED.state_version, version = EXCLUDED.version,
    state = EXCLUDED.state, data_subjects = EXCLUDED.data_subjects, taken_at = now()
WHERE snapshots.version <= EXCLUDED.version
