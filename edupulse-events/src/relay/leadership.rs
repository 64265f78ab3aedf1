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
    last_confirmed: Option<Instant>,
    last_attempt: Option<Instant>,
}

/// How often a relay that leads some partitions tries for the others: a standby takes over a
/// dead leader's partitions within this time.
const RETRY_OTHERS: Duration = Duration::from_millis(500);

/// How often the lock connection is checked before a batch. A relay whose connection died
/// since may still send what it holds beside the standby that took over; the standby's fence
/// makes JetStream refuse it (see `publish::fence`; on a nats-server without fencing, only
/// the duplicate window covers it).
const CONFIRM_EVERY: Duration = Duration::from_millis(100);

// The lock space: (hash of schema and purpose, partition). Scoped by schema so isolated stores
// in one database have independent leaders.
const TRY_LOCK: &str =
    "SELECT pg_try_advisory_lock(hashtext(current_schema() || ':edupulse-relay'), $1)";
const UNLOCK_ALL: &str = "SELECT pg_advisory_unlock_all()";
// The parking locks, the other side of `wake_parked_relay!` in store/append.rs.
const PARK: &str = concat!(
    "SELECT coalesce(array_agg(p) FILTER (WHERE pg_try_advisory_lock(",
    parked_lock_class!(),
    ", p)), '{}') FROM unnest($1::int[]) AS p"
);
const UNPARK: &str = concat!(
    "SELECT count(*) FILTER (WHERE pg_advisory_unlock(",
    parked_lock_class!(),
    ", p)) FROM unnest($1::int[]) AS p"
);

impl Leadership {
    pub fn new(partitions: u16) -> Self {
        Leadership {
            connection: None,
            partitions,
            held: Vec::new(),
            parked: Vec::new(),
            last_confirmed: None,
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
        let mut won_now = Vec::new();
        // Clamped to i16 by `Store::with_partitions`.
        for partition in 0..i16::try_from(self.partitions).unwrap_or(i16::MAX) {
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
                won_now.push(partition);
            }
        }
        if !won_now.is_empty() {
            tracing::info!(partitions = ?won_now, "relay leads partitions");
        }
        self.held.sort_unstable();
        Ok(&self.held)
    }

    /// Checks the lock connection is alive (at most every [`CONFIRM_EVERY`]); if not, every
    /// partition is lost.
    pub async fn confirm(&mut self) -> bool {
        let Some(connection) = self.connection.as_mut() else {
            return true;
        };
        if self
            .last_confirmed
            .is_some_and(|at| at.elapsed() < CONFIRM_EVERY)
        {
            return true;
        }
        self.last_confirmed = Some(Instant::now());
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

    /// Makes the next [`Leadership::confirm`] check the connection, however recent the last
    /// check.
    pub fn reconfirm_now(&mut self) {
        self.last_confirmed = None;
    }

    fn lose(&mut self) {
        if !self.held.is_empty() {
            tracing::warn!(
                partitions = ?self.held,
                "relay lost its lock connection: it no longer leads its partitions"
            );
        }
        // Dropping a detached connection closes it, and the server frees whatever it held.
        self.connection = None;
        self.held.clear();
        self.parked.clear();
    }

    /// Parks every held partition: from now on an append to one of them notifies, until
    /// [`Leadership::unpark`]. Fails (returns `false`, parking nothing) while an appending
    /// transaction is open on one of them (its commit would not notify), and the relay has to
    /// keep looking until it can park.
    ///
    /// It does not wait for that transaction: while a lock request waits, PostgreSQL refuses
    /// the appends' shared try-locks behind it, so every append in the meantime notified, and
    /// notifying commits take turns. Under 8 writers that was 0.18 NOTIFYs per append and
    /// 0.63 of the appends' rate; without the wait, 0.008 and 0.69 (BENCHMARKS.md, issue 16):
    /// while writers keep a transaction open, the relay just keeps looking.
    pub async fn park(&mut self) -> Result<bool, StoreError> {
        if self.all_parked() {
            return Ok(true);
        }
        // Partitions won since parking are not parked yet: park all of them afresh.
        self.unpark().await?;
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
            self.parked.clone_from(&self.held);
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
