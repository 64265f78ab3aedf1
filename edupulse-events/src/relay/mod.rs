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

/// The first pause before looking again when the relay cannot park (an appending transaction
/// is open); it doubles up to [`MAX_BUSY_PAUSE`] while that lasts.
const MIN_BUSY_PAUSE: Duration = Duration::from_millis(1);
const MAX_BUSY_PAUSE: Duration = Duration::from_millis(16);

/// What a running relay is doing, for monitoring (see [`Relay::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayState {
    /// Publishing, or about to look at the outbox.
    Working,
    /// Nothing to publish and parked: the next append notifies it.
    Parked,
    /// Nothing to publish, but an appending transaction is still open, so it cannot park; it
    /// looks again after a short pause (1 ms, doubling to 16 ms while this lasts).
    AwaitingOpenAppends,
}

/// What an idle relay found when it tried to park.
enum Idle {
    /// Parked: the next append notifies.
    Parked,
    /// An appending transaction is open; look again shortly.
    Busy,
    /// Rows arrived meanwhile (or leadership changed): work on.
    Work,
}

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
    /// The bookkeeping of the last batch, committing while the next one is published.
    recording: Option<tokio::task::JoinHandle<Result<(), StoreError>>>,
    /// Where [`Relay::state`] watchers look.
    state: tokio::sync::watch::Sender<RelayState>,
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
            recording: None,
            state: tokio::sync::watch::Sender::new(RelayState::Working),
            last_full_scan: Instant::now(),
        }
    }

    /// Follows what the relay is doing once [`Relay::run`] has it: working, parked, or kept
    /// from parking by an open appending transaction.
    pub fn state(&self) -> tokio::sync::watch::Receiver<RelayState> {
        self.state.subscribe()
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
        let (outcome, book) =
            batch::publish_batch(&self.publisher, &self.config.source, rows).await;
        // One bookkeeping commit at a time; it runs on while the next batch is published (a
        // relay that dies before it commits only republishes, and JetStream drops duplicates).
        self.finish_recording().await?;
        let store = self.store.clone();
        self.recording = Some(tokio::spawn(
            async move { batch::record(&store, book).await },
        ));
        if outcome.interrupted {
            // Rows after a failure must not be published before it is retried.
            self.discard_prefetch();
        }
        Ok(outcome)
    }

    /// Waits for the last batch's bookkeeping to commit.
    async fn finish_recording(&mut self) -> Result<(), StoreError> {
        match self.recording.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }

    /// A read not continuing a prefetch. It starts at the floor; only when nothing is found
    /// there does it look below, where a transaction that committed late may have left rows.
    /// So no row is ever missed, and the full scan happens only when the relay is idle.
    async fn fresh_load(&mut self, held: &[i16]) -> Result<Vec<batch::OutboxRow>, StoreError> {
        self.finish_recording().await?;
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
    ///
    /// With nothing to do the relay parks (see [`Relay::park`]) and sleeps until an append
    /// notifies it or `poll_interval` passes; while an appending transaction is still open it
    /// cannot park, and looks again after a short pause instead.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), StoreError> {
        let channel: String = sqlx::query_scalar("SELECT 'edupulse_outbox_' || current_schema()")
            .fetch_one(self.store.pool())
            .await?;
        let mut listener = self.listen(&channel).await;
        tokio::pin!(shutdown);
        let mut backoff = self.config.min_backoff;
        let mut busy_pause = MIN_BUSY_PAUSE;
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
                    match self.park().await {
                        Idle::Parked => {
                            busy_pause = MIN_BUSY_PAUSE;
                            self.state.send_replace(RelayState::Parked);
                            Some(self.config.poll_interval)
                        }
                        Idle::Busy => {
                            self.state.send_replace(RelayState::AwaitingOpenAppends);
                            let pause = busy_pause;
                            busy_pause = (busy_pause * 2).min(MAX_BUSY_PAUSE);
                            Some(pause)
                        }
                        Idle::Work => None,
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "relay step failed; retrying");
                    let delay = backoff;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    Some(delay)
                }
            };
            let Some(wait) = wait else {
                // A full batch, or rows found on parking: more is probably waiting.
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
            if let Err(err) = self.leadership.unpark().await {
                tracing::warn!(error = %err, "relay lost its lock connection while parked");
            }
            self.state.send_replace(RelayState::Working);
        }
        self.discard_prefetch();
        let recorded = self.finish_recording().await;
        self.leadership.release().await;
        recorded
    }

    /// Parks the led partitions so that appends notify, then reads once more: a transaction
    /// that committed after the last read, before parking, did not notify.
    async fn park(&mut self) -> Idle {
        match self.leadership.park().await {
            Ok(true) => {}
            Ok(false) => return Idle::Busy,
            Err(err) => {
                tracing::warn!(error = %err, "relay could not park");
                return Idle::Busy;
            }
        }
        let found = match self.step().await {
            Ok(outcome) => outcome.loaded > 0,
            Err(err) => {
                tracing::warn!(error = %err, "relay step failed; retrying");
                true
            }
        };
        // Partitions won by that step are not parked: appends to them would not notify.
        if found || !self.leadership.all_parked() {
            if let Err(err) = self.leadership.unpark().await {
                tracing::warn!(error = %err, "relay lost its lock connection while parked");
            }
            return Idle::Work;
        }
        Idle::Parked
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
