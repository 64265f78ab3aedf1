-- The relay's lookup of rows that committed late below its read position (see relay/read.rs):
-- the rows of the transactions its previous read saw running. An index range over tx_id is
-- always the right plan (from the previous read's xmax it holds the transactions that began
-- since), but PostgreSQL cannot place an xid8 in its statistics' histogram: after a bulk load
-- it guessed a sixth of the log for an empty range and scanned all of the log on every read
-- (300-400 ms each over 2 million events).
--
-- Here sequential scans are priced out for these statements alone, and the position bound is
-- written so that it cannot use the position index (with sequential scans priced out, the
-- planner walked that index over the whole log instead): the tx_id index is what is left.
-- PL/pgSQL keeps the plans for the session, so the relay's frequent reads do not plan them
-- each time (a SQL function would). A kept plan is generic, and after bulk appends (a hundred
-- events per transaction id) it expects many rows per id: it launched parallel workers and
-- compiled itself with JIT, 60-150 ms for a lookup that finds one row. Neither is allowed here.
-- STABLE, not VOLATILE: it must see the calling read's snapshot (see relay/read.rs: the late
-- rows and the fresh ones come from one snapshot).
CREATE FUNCTION relay_late_positions(in_doubt BIGINT[], running_from xid8, read_after BIGINT)
RETURNS SETOF BIGINT
LANGUAGE plpgsql STABLE
SET enable_seqscan = off
SET max_parallel_workers_per_gather = 0
SET jit = off
AS $$
BEGIN
    IF cardinality(in_doubt) > 0 THEN
        RETURN QUERY
            SELECT e.position FROM events e
            WHERE e.tx_id = ANY(ARRAY(SELECT x::text::xid8 FROM unnest(in_doubt) AS x))
              AND e.position + 0 <= read_after;
    END IF;
    RETURN QUERY
        SELECT e.position FROM events e
        WHERE e.tx_id >= running_from AND e.position + 0 <= read_after;
END
$$;
