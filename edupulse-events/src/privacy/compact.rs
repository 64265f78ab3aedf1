//! Taking destroyed keys' bytes out of the key table's files. Deleting a row leaves its bytes
//! in the page until the page is rewritten, and a plain `VACUUM` frees the space without
//! overwriting it; `VACUUM (FULL)` writes the table anew without the row. It keeps the row,
//! though, while anything in the database may still see it: a transaction older than the
//! deletion, an older snapshot, a replication slot or a prepared transaction holding the
//! horizon back. So the erasure's compaction first waits for those, and says when it could
//! not, rather than claiming bytes are gone that are not.

use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::keystore::{Destroyed, KeyStore, KeyStoreError};

/// Whether anything visible to this session still holds the horizon at or before transaction
/// `$1`: an older running transaction or snapshot of this database (or of a walsender, whose
/// `hot_standby_feedback` counts for every database; not an autovacuum worker's plain
/// vacuum, which PostgreSQL itself leaves out), a replication slot, a prepared transaction;
/// or a session of this database this role may not look into (then nobody can say, so the
/// answer is yes).
const HORIZON_HELD: &str = "\
SELECT EXISTS (
    SELECT 1 FROM pg_stat_activity
    WHERE (datname = current_database() OR datname IS NULL) AND pid <> pg_backend_pid()
      -- A plain vacuum does not hold the horizon back for others (PostgreSQL skips it).
      AND NOT (backend_type = 'autovacuum worker' AND query LIKE 'autovacuum: VACUUM %'
               AND query NOT LIKE '%ANALYZE%')
      AND (age(backend_xmin) >= age($1::xid) OR age(backend_xid) > age($1::xid)
           OR (backend_type = 'client backend' AND query = '<insufficient privilege>'))
) OR EXISTS (
    SELECT 1 FROM pg_replication_slots
    WHERE (database = current_database() OR database IS NULL) AND age(xmin) >= age($1::xid)
) OR EXISTS (
    SELECT 1 FROM pg_prepared_xacts
    WHERE database = current_database() AND age(transaction) > age($1::xid)
)";

/// How long to wait before trying a locked partition again.
const LOCK_RETRY: Duration = Duration::from_millis(20);

impl KeyStore {
    /// Rewrites the whole key table (`VACUUM (FULL)` of every partition) so that destroyed
    /// keys and replaced wrapped forms leave its files; tries to take each partition's lock
    /// until `wait` has passed. `Ok(false)` when a partition stayed locked.
    ///
    /// It does not wait for older transactions: a row one of them can still see stays in the
    /// new files (the compaction after an erasure waits for them).
    pub async fn compact(&self, pool: &PgPool, wait: Duration) -> Result<bool, KeyStoreError> {
        let partitions: Vec<String> = sqlx::query_scalar(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE i.inhparent = 'subject_keys'::regclass",
        )
        .fetch_all(pool)
        .await?;
        vacuum_full(pool, &partitions, Instant::now() + wait).await
    }

    /// [`compact`](Self::compact) of only the partitions that held what `destroyed` names:
    /// what an erasure runs after its commit. `Ok(true)` when nothing needed it.
    ///
    /// First waits, at most `wait` in all, until nothing in the database can still see the
    /// deleted rows (see the module's documentation); `Ok(false)` when something still could
    /// (or a partition stayed locked): the rows' bytes may still be in the files.
    pub(crate) async fn compact_after(
        &self,
        pool: &PgPool,
        destroyed: &Destroyed,
        wait: Duration,
    ) -> Result<bool, KeyStoreError> {
        if destroyed.relations.is_empty() {
            return Ok(true);
        }
        let deadline = Instant::now() + wait;
        if let Some(xid) = &destroyed.xid
            && !horizon_passed(pool, xid, deadline).await?
        {
            // The rewrite would keep the rows: leave them to a later compaction.
            return Ok(false);
        }
        vacuum_full(pool, &destroyed.relations, deadline).await
    }
}

impl KeyStore {
    /// [`compact`](Self::compact), once nothing in the database can still see what
    /// transaction `xid` replaced or deleted; `Ok(false)` when something still could after
    /// `wait` (or a partition stayed locked).
    pub(super) async fn compact_after_xid(
        &self,
        pool: &PgPool,
        xid: &str,
        wait: Duration,
    ) -> Result<bool, KeyStoreError> {
        let deadline = Instant::now() + wait;
        if !horizon_passed(pool, xid, deadline).await? {
            return Ok(false);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        self.compact(pool, left).await
    }
}

/// Waits until nothing holds the horizon at or before transaction `xid`, checking every
/// 10 ms until `deadline`; `false` when something still did.
async fn horizon_passed(
    pool: &PgPool,
    xid: &str,
    deadline: Instant,
) -> Result<bool, KeyStoreError> {
    loop {
        let held: bool = sqlx::query_scalar(HORIZON_HELD)
            .bind(xid)
            .fetch_one(pool)
            .await?;
        if !held {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `VACUUM (FULL, SKIP_LOCKED)` of each of `tables` (quoted `schema.table` names from the
/// catalog) until it is rewritten or `deadline` passes; `Ok(false)` when a table stayed locked.
/// `SKIP_LOCKED` never waits in the lock queue, so appends and reads do not queue behind it,
/// and it changes no setting of the pooled connection; whether a table was rewritten is told
/// by its file node, which a rewrite always changes.
async fn vacuum_full(
    pool: &PgPool,
    tables: &[String],
    deadline: Instant,
) -> Result<bool, KeyStoreError> {
    let mut conn = pool.acquire().await?;
    for table in tables {
        let file_node = "SELECT pg_relation_filenode($1::regclass)::bigint";
        // Built at run time: the name comes from PostgreSQL's own `format('%I.%I')`.
        let statement = format!("VACUUM (FULL, SKIP_LOCKED) {table}");
        loop {
            let before: Option<i64> = sqlx::query_scalar(file_node)
                .bind(table)
                .fetch_one(&mut *conn)
                .await?;
            sqlx::query(&statement).execute(&mut *conn).await?;
            let after: Option<i64> = sqlx::query_scalar(file_node)
                .bind(table)
                .fetch_one(&mut *conn)
                .await?;
            if after != before {
                break;
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(LOCK_RETRY).await;
        }
    }
    Ok(true)
}
