//! The outbox relay: moves committed events from PostgreSQL to JetStream, woken by NOTIFY at
//! commit, catching up by query on start, on reconnect and on a timer (NOTIFY is only a hint).

mod batch;
mod leadership;

use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;

use crate::publish::Publisher;
use crate::store::{Store, StoreError};

pub use batch::StepOutcome;
use leadership::Leadership;

/// How the relay paces itself.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows read from the outbox per step.
    pub batch_size: i64,
    /// The catch-up timer: how long to wait for a NOTIFY before looking anyway.
    pub poll_interval: Duration,
    /// First retry delay after a failed publish; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// The CloudEvents `source` of published events.
    pub source: String,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 2000,
            poll_interval: Duration::from_millis(500),
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(5),
            source: "/edupulse".to_owned(),
        }
    }
}

/// Publishes the outbox of one store to one stream.
pub struct Relay {
    store: Store,
    publisher: Publisher,
    config: RelayConfig,
    leadership: Leadership,
    /// The next batch, read while the current one is being published.
    prefetch: Option<Prefetch>,
    /// Where the last fresh read found its first row. Reads start there rather than at the
    /// beginning: after a large drain, the outbox index is full of deleted entries until
    /// vacuum, and scanning them on every wake-up costs milliseconds.
    floor: i64,
    /// The partitions led at the last step.
    partitions: Vec<i16>,
    /// When a read last started at the beginning of the outbox. Under constant load the floor
    /// read never comes back empty, so a late commit below it is also looked for on this
    /// clock, at most `poll_interval` apart.
    last_full_scan: Instant,
}

/// A batch being read in the background (for the partitions in `Relay::partitions`).
struct Prefetch {
    task: tokio::task::JoinHandle<Result<Vec<batch::OutboxRow>, StoreError>>,
}

impl Relay {
    /// A relay for `store`'s outbox, publishing through `publisher`.
    pub fn new(store: Store, publisher: Publisher, config: RelayConfig) -> Self {
        let partitions = store.partitions();
        Relay {
            store,
            publisher,
            config,
            leadership: Leadership::new(partitions),
            prefetch: None,
            floor: 0,
            partitions: Vec::new(),
            last_full_scan: Instant::now(),
        }
    }

    /// The partitions this relay leads right now.
    pub fn led_partitions(&self) -> &[i16] {
        self.leadership.held()
    }

    /// One step: take the partitions it can, publish one batch from them.
    ///
    /// While a batch is published, the next one (the rows after it) is read in the background,
    /// so PostgreSQL and NATS work overlap. Reads that start above the outbox's beginning (the
    /// prefetch, the floor) skip every aggregate that still has a row below their start: such
    /// a row belongs to a transaction that committed late, and publishing the aggregate's later
    /// rows first would invert its order. A full read from the beginning, at least every
    /// `poll_interval` and whenever a read finds nothing, publishes those rows.
    pub async fn step(&mut self) -> Result<StepOutcome, StoreError> {
        if !self.leadership.confirm().await {
            self.discard_prefetch();
        }
        let held = match self.leadership.acquire(self.store.pool()).await {
            Ok(held) => held.to_vec(),
            Err(err) => {
                self.discard_prefetch();
                return Err(err);
            }
        };
        if held != self.partitions {
            // Partitions just won may hold rows far below this relay's floor.
            self.discard_prefetch();
            self.floor = 0;
            self.partitions = held.clone();
        }
        if held.is_empty() {
            return Ok(StepOutcome::default());
        }
        let full_scan_due = self.last_full_scan.elapsed() >= self.config.poll_interval;
        let rows = match self.prefetch.take() {
            Some(prefetch) if !full_scan_due => match prefetch.task.await {
                Ok(Ok(rows)) if !rows.is_empty() => rows,
                Ok(Err(err)) => return Err(err),
                _ => self.fresh_load(&held).await?,
            },
            Some(stale) => {
                stale.task.abort();
                self.fresh_load(&held).await?
            }
            None => self.fresh_load(&held).await?,
        };
        if rows.is_empty() {
            return Ok(StepOutcome::default());
        }
        if rows.len() as i64 >= self.config.batch_size {
            let store = self.store.clone();
            let partitions = held.clone();
            let after = rows.last().map_or(0, |r| r.position);
            let limit = self.config.batch_size;
            self.prefetch = Some(Prefetch {
                task: tokio::spawn(async move {
                    batch::load_batch(&store, &partitions, after, limit).await
                }),
            });
        }
        let outcome =
            batch::publish_batch(&self.store, &self.publisher, &self.config.source, rows).await;
        match outcome {
            // Rows after a failure must not be published before it is retried.
            Ok(outcome) if !outcome.interrupted => Ok(outcome),
            other => {
                self.discard_prefetch();
                other
            }
        }
    }

    /// A read not continuing a prefetch. It starts at the floor; only when nothing is found
    /// there does it look below, where a transaction that committed late may have left rows.
    /// So no row is ever missed, and the full scan happens only when the relay is idle.
    async fn fresh_load(&mut self, held: &[i16]) -> Result<Vec<batch::OutboxRow>, StoreError> {
        let limit = self.config.batch_size;
        let start = if self.last_full_scan.elapsed() >= self.config.poll_interval {
            0
        } else {
            self.floor
        };
        let mut rows = batch::load_batch(&self.store, held, start, limit).await?;
        if rows.is_empty() && start > 0 {
            rows = batch::load_batch(&self.store, held, 0, limit).await?;
        }
        if start == 0 || rows.is_empty() {
            self.last_full_scan = Instant::now();
        }
        if let Some(first) = rows.first() {
            self.floor = first.position - 1;
        }
        Ok(rows)
    }

    fn discard_prefetch(&mut self) {
        if let Some(prefetch) = self.prefetch.take() {
            prefetch.task.abort();
        }
    }

    /// Runs until `shutdown` completes, then finishes the batch in hand and gives its
    /// partitions back so a standby takes over at once.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), StoreError> {
        let channel: String = sqlx::query_scalar("SELECT 'edupulse_outbox_' || current_schema()")
            .fetch_one(self.store.pool())
            .await?;
        let mut listener = self.listen(&channel).await;
        tokio::pin!(shutdown);
        let mut backoff = self.config.min_backoff;
        loop {
            let wait = match self.step().await {
                Ok(outcome) if outcome.interrupted => {
                    let delay = backoff;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    Some(delay)
                }
                Ok(outcome) if outcome.loaded as i64 >= self.config.batch_size => {
                    backoff = self.config.min_backoff;
                    None
                }
                Ok(_) => {
                    backoff = self.config.min_backoff;
                    Some(self.config.poll_interval)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "relay step failed; retrying");
                    let delay = backoff;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    Some(delay)
                }
            };
            let Some(wait) = wait else {
                // A full batch: more is probably waiting.
                if futures::poll!(&mut shutdown).is_ready() {
                    break;
                }
                continue;
            };
            tokio::select! {
                () = &mut shutdown => break,
                woken = wait_for_notification(&mut listener, wait) => {
                    if !woken && listener.is_none() {
                        listener = self.listen(&channel).await;
                    }
                }
            }
        }
        self.discard_prefetch();
        self.leadership.release().await;
        Ok(())
    }

    async fn listen(&self, channel: &str) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(self.store.pool()).await.ok()?;
        listener.listen(channel).await.ok()?;
        Some(listener)
    }
}

/// Waits for a NOTIFY or the timer; `true` if a notification arrived. A broken listener makes
/// it wait out the timer: the catch-up query covers what was missed.
async fn wait_for_notification(listener: &mut Option<PgListener>, timeout: Duration) -> bool {
    match listener {
        Some(l) => match tokio::time::timeout(timeout, l.recv()).await {
            Ok(Ok(_)) => true,
            Ok(Err(_)) => {
                *listener = None;
                false
            }
            Err(_) => false,
        },
        None => {
            tokio::time::sleep(timeout).await;
            false
        }
    }
}
