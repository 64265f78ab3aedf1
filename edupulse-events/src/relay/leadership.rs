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
    /// The partitions parked (see [`Leadership::park`]); empty while the relay works.
    parked: Vec<i16>,
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
// The parking locks, the other side of `outbox_wake` (migration `wake_parked_relay`).
const PARK: &str = "SELECT coalesce(array_agg(p) FILTER (WHERE pg_try_advisory_lock( \
         hashtext(current_schema() || ':edupulse-parked'), p)), '{}') \
     FROM unnest($1::int[]) AS p";
const UNPARK: &str = "SELECT count(*) FILTER (WHERE pg_advisory_unlock( \
         hashtext(current_schema() || ':edupulse-parked'), p)) \
     FROM unnest($1::int[]) AS p";

impl Leadership {
    pub fn new(partitions: u16) -> Self {
        Leadership {
            connection: None,
            partitions,
            held: Vec::new(),
            parked: Vec::new(),
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
        self.parked.clear();
    }

    /// Parks every held partition: from now on an append to one of them notifies, until
    /// [`Leadership::unpark`]. Fails (returns `false`, parking nothing) while any appending
    /// transaction on them is still open: its commit would not notify, so the relay has to keep
    /// looking until it can park.
    pub async fn park(&mut self) -> Result<bool, StoreError> {
        if !self.parked.is_empty() {
            return Ok(true);
        }
        let Some(connection) = self.connection.as_mut() else {
            return Ok(false);
        };
        let wanted: Vec<i32> = self.held.iter().map(|&p| i32::from(p)).collect();
        let taken: Vec<i32> = match sqlx::query_scalar(PARK)
            .bind(&wanted)
            .fetch_one(&mut *connection)
            .await
        {
            Ok(taken) => taken,
            Err(err) => {
                self.lose();
                return Err(err.into());
            }
        };
        if taken.len() == wanted.len() {
            self.parked = self.held.clone();
            return Ok(true);
        }
        if let Err(err) = sqlx::query(UNPARK)
            .bind(&taken)
            .execute(&mut *connection)
            .await
        {
            self.lose();
            return Err(err.into());
        }
        Ok(false)
    }

    /// Ends parking: appends stop notifying.
    pub async fn unpark(&mut self) -> Result<(), StoreError> {
        if self.parked.is_empty() {
            return Ok(());
        }
        let Some(connection) = self.connection.as_mut() else {
            self.parked.clear();
            return Ok(());
        };
        let parked: Vec<i32> = self.parked.iter().map(|&p| i32::from(p)).collect();
        if let Err(err) = sqlx::query(UNPARK)
            .bind(&parked)
            .execute(&mut *connection)
            .await
        {
            self.lose();
            return Err(err.into());
        }
        self.parked.clear();
        Ok(())
    }

    /// Whether exactly the held partitions are parked.
    pub fn all_parked(&self) -> bool {
        !self.parked.is_empty() && self.parked == self.held
    }

    /// Gives every partition back, so a standby can take over at once.
    pub async fn release(&mut self) {
        if let Some(mut connection) = self.connection.take() {
            let _ = sqlx::query(UNLOCK_ALL).execute(&mut connection).await;
            let _ = connection.close().await;
        }
        self.held.clear();
        self.parked.clear();
    }

    pub fn held(&self) -> &[i16] {
        &self.held
    }
}
