DROP FUNCTION relay_late_positions(BIGINT[], xid8, BIGINT);
