//! One relay leader per outbox partition, through session-level advisory locks held on a
//! dedicated connection. When the leader's process or connection dies, PostgreSQL releases its
//! locks and a standby's next attempt takes the partitions over.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, PgPool};

use crate::store::StoreError;

/// The partitions this relay currently leads.
pub struct Leadership {
    /// Detached from the pool: session-level advisory locks live as long as their session, so
    /// a lock connection returned to the pool would keep leading after its relay is gone.
    connection: Option<PgConnection>,
    partitions: u16,
    held: Vec<i16>,
    last_attempt: Option<Instant>,
}

/// How often a relay that leads some partitions tries for the others: a standby takes over a
/// dead leader's partitions within this time.
const RETRY_OTHERS: Duration = Duration::from_millis(500);

// The lock space: (hash of schema and purpose, partition). Scoped by schema so isolated stores
// in one database have independent leaders.
const TRY_LOCK: &str =
    "SELECT pg_try_advisory_lock(hashtext(current_schema() || ':edupulse-relay'), $1)";
const UNLOCK_ALL: &str = "SELECT pg_advisory_unlock_all()";

impl Leadership {
    pub fn new(partitions: u16) -> Self {
        Leadership {
            connection: None,
            partitions,
            held: Vec::new(),
            last_attempt: None,
        }
    }

    /// Tries to take every partition not yet held; returns the partitions held now.
    pub async fn acquire(&mut self, pool: &PgPool) -> Result<&[i16], StoreError> {
        let all_held = self.held.len() == usize::from(self.partitions);
        let recently_tried = self
            .last_attempt
            .is_some_and(|at| at.elapsed() < RETRY_OTHERS);
        if all_held || (recently_tried && !self.held.is_empty()) {
            return Ok(&self.held);
        }
        self.last_attempt = Some(Instant::now());
        if self.connection.is_none() {
            self.connection = Some(pool.acquire().await?.detach());
        }
        let connection = self.connection.as_mut().expect("set just above");
        for partition in 0..self.partitions as i16 {
            if self.held.contains(&partition) {
                continue;
            }
            let won: bool = match sqlx::query_scalar(TRY_LOCK)
                .bind(i32::from(partition))
                .fetch_one(&mut *connection)
                .await
            {
                Ok(won) => won,
                Err(err) => {
                    // The lock connection broke: whatever it held is gone with it.
                    self.lose();
                    return Err(err.into());
                }
            };
            if won {
                self.held.push(partition);
            }
        }
        self.held.sort_unstable();
        Ok(&self.held)
    }

    /// Checks the lock connection is alive; if not, every partition is lost. Checked before
    /// every batch: a relay whose locks died mid-batch may still finish that batch beside the
    /// standby that took over, and JetStream's duplicate window absorbs the overlap.
    pub async fn confirm(&mut self) -> bool {
        let Some(connection) = self.connection.as_mut() else {
            return true;
        };
        if sqlx::query("SELECT 1")
            .execute(&mut *connection)
            .await
            .is_err()
        {
            self.lose();
            return false;
        }
        true
    }

    fn lose(&mut self) {
        // Dropping a detached connection closes it, and the server frees whatever it held.
        self.connection = None;
        self.held.clear();
    }

    /// Gives every partition back, so a standby can take over at once.
    pub async fn release(&mut self) {
        if let Some(mut connection) = self.connection.take() {
            let _ = sqlx::query(UNLOCK_ALL).execute(&mut connection).await;
            let _ = connection.close().await;
        }
        self.held.clear();
    }

    pub fn held(&self) -> &[i16] {
        &self.held
    }
}
