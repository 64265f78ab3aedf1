//! The outbox relay: moves committed events from PostgreSQL to JetStream. It reads on while
//! events flow (unparked, so appends do not notify meanwhile); 5 ms after the last read that
//! found events it parks, and the next append wakes it with a NOTIFY. A timer catches up in
//! case a notification is lost (NOTIFY is only a hint).

mod backlog;
mod batch;
mod fencing;
mod leadership;
mod pacing;
mod pipeline;
mod read;
mod totals;

use std::future::Future;
use std::time::Duration;

use sqlx::postgres::PgListener;

use crate::publish::{Fencing, Publisher};
use crate::store::{Store, StoreError};

use backlog::Backlog;
use batch::Bookkeeping;
pub use batch::StepOutcome;
use fencing::Fences;
use leadership::Leadership;
use pacing::{Cadence, Pacing, Progress};
use pipeline::Pipeline;
use read::{OutboxRow, ReadFrom, Reader};
pub use totals::RelayTotals;

/// The first pause before looking again when the relay cannot park (an appending transaction
/// is open); it doubles up to [`MAX_BUSY_PAUSE`] while looks find nothing. The maximum bounds
/// the delay a commit can see while another appending transaction stays open.
const MIN_BUSY_PAUSE: Duration = Duration::from_millis(1);
const MAX_BUSY_PAUSE: Duration = Duration::from_millis(4);

/// Rows read by a step that has no read in the background to continue.
const FIRST_READ: i64 = 500;

/// How long the relay keeps reading, unparked, after the last read that found events, and
/// how long it pauses between those reads. Parking after each burst made every commit of a
/// lone writer a wake-up: a NOTIFY, unparking, reads, bookkeeping, parking again (0.2–0.4
/// cycles per event). Lingering, commits do not notify and a read carries what a pause
/// gathered; the pause is shorter than tokio's timer can sleep (a millisecond at best), which
/// cost 1.3 ms of latency at 1,000 ev/s when tried (BENCHMARKS.md, issue 16).
const LINGER: Duration = Duration::from_millis(5);
const LINGER_PAUSE: Duration = Duration::from_micros(500);

/// Acknowledged rows are deleted from the outbox once this many are waiting, or once the
/// oldest has waited [`RECORD_AFTER`], and before the relay parks, waits or stops: under
/// live traffic a
/// step carries a few rows, and a transaction per step cost the writers' database a third of
/// a transaction per appended event (BENCHMARKS.md, issue 16). Rows acknowledged but not yet
/// deleted are behind the read position; a relay that dies with them only republishes them,
/// and JetStream drops the duplicates.
const RECORD_ROWS: usize = 1_000;
const RECORD_AFTER: Duration = Duration::from_millis(20);

/// What a running relay is doing, for monitoring (see [`Relay::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayState {
    /// Publishing, or about to look at the outbox.
    Working,
    /// Nothing to publish and parked: the next append notifies it.
    Parked,
    /// Nothing to publish, but an appending transaction is still open, so it cannot park; it
    /// looks again after a short pause (1 ms, doubling to 4 ms while this lasts).
    AwaitingOpenAppends,
}

/// What the run loop does after a step.
enum Next {
    /// Step again at once: more is waiting.
    Now,
    /// Step again after this pause, unparked: events are flowing.
    Pause(Duration),
    /// Wait this long for a NOTIFY (parked) or the timer, then step.
    Wait(Duration),
}

/// How an idle relay's attempt to park ended, in [`RelayState`]'s words.
enum Parking {
    /// Parked: the next append notifies.
    Parked,
    /// An appending transaction is open; look again shortly.
    AwaitingOpenAppends,
    /// What was published could not be recorded: back off, as after a failed step.
    Failed(StoreError),
    /// Rows arrived meanwhile (or leadership changed): work on.
    Working,
}

/// How the relay paces itself.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows read from the outbox per step. Large batches keep many aggregates in flight at
    /// once (each has at most one unacknowledged publish), which is what lets a backlog drain
    /// fast; a small load makes small batches whatever this is. Memory: about 1 KB per row.
    pub batch_size: i64,
    /// The catch-up timer: how long to wait for a NOTIFY before looking anyway.
    pub poll_interval: Duration,
    /// First retry delay after a failed publish; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// The CloudEvents `source` of published events.
    pub source: String,
    /// Whether the relay parks and is woken by appends' NOTIFY (default). Off, it never parks
    /// and reads every `poll_interval` once quiet: for connections that do not carry
    /// notifications (a pooler in transaction mode), at the cost of that much latency after a
    /// quiet period.
    pub notifications: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 10_000,
            poll_interval: Duration::from_millis(500),
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(5),
            source: "/edupulse".to_owned(),
            notifications: true,
        }
    }
}

/// Publishes the outbox of one store to one stream.
pub struct Relay {
    store: Store,
    publisher: Publisher,
    config: RelayConfig,
    leadership: Leadership,
    /// The fences of the led partitions: JetStream refuses this relay's events once another
    /// relay has taken their partition over.
    fences: Fences,
    /// The next batch, read while the current one is being published.
    prefetch: Option<Prefetch>,
    /// The connection reads go through; in the prefetch's task while one runs (a prefetch
    /// aborted takes it along, and the next read connects again).
    reader: Option<Reader>,
    /// Where the next read starts (see `read`).
    read_from: ReadFrom,
    /// Rows being published; they outlive a step while the next batch is read.
    pipeline: Pipeline,
    /// The partitions led at the last step.
    partitions: Vec<i16>,
    /// The bookkeeping being recorded, committing while the next batch is published.
    recording: Option<tokio::task::JoinHandle<Result<(), StoreError>>>,
    /// Bookkeeping not yet recorded, and since when (see [`RECORD_AFTER`]).
    pending: Bookkeeping,
    pending_since: Option<std::time::Instant>,
    /// Where [`Relay::state`] watchers look.
    state: tokio::sync::watch::Sender<RelayState>,
    /// What it published and set aside so far.
    totals: RelayTotals,
}

/// A batch being read in the background (for the partitions in `Relay::partitions`).
struct Prefetch {
    task: tokio::task::JoinHandle<(Reader, Result<Vec<OutboxRow>, StoreError>)>,
}

impl Relay {
    /// A relay for `store`'s outbox, publishing through `publisher`.
    pub fn new(store: Store, publisher: Publisher, config: RelayConfig) -> Self {
        let partitions = store.partitions();
        Relay {
            fences: Fences::new(&publisher),
            store,
            publisher,
            config,
            leadership: Leadership::new(partitions),
            prefetch: None,
            reader: Some(Reader::default()),
            read_from: ReadFrom::default(),
            pipeline: Pipeline::default(),
            partitions: Vec::new(),
            recording: None,
            pending: Bookkeeping::default(),
            pending_since: None,
            state: tokio::sync::watch::Sender::new(RelayState::Working),
            totals: RelayTotals::default(),
        }
    }

    /// Follows what the relay is doing once [`Relay::run`] has it: working, parked, or kept
    /// from parking by an open appending transaction.
    pub fn state(&self) -> tokio::sync::watch::Receiver<RelayState> {
        self.state.subscribe()
    }

    /// Its running totals (published, set aside): a handle that outlives [`Relay::run`].
    pub fn totals(&self) -> RelayTotals {
        self.totals.clone()
    }

    /// The partitions this relay leads right now.
    pub fn led_partitions(&self) -> &[i16] {
        self.leadership.held()
    }

    /// One step: take the partitions it can, read a batch from them and publish it.
    ///
    /// While a batch is published, the next one (the rows after it) is read in the background,
    /// so PostgreSQL and NATS work overlap; when more is coming, the step returns with the
    /// batch's tail still on its way, to be published beside the next batch. Each read
    /// continues after the last one and also picks up rows that committed late below it (see
    /// `relay::read`), so no aggregate's event is published before an earlier one, and no read
    /// goes back over the outbox's beginning. A step dropped before it completes makes the
    /// next one start over from the beginning of the outbox.
    #[tracing::instrument(name = "edupulse.relay_batch", level = "debug", skip_all)]
    pub async fn step(&mut self) -> Result<StepOutcome, StoreError> {
        if !self.leadership.confirm().await {
            self.fences.clear();
            self.start_over();
        }
        let held = match self.leadership.acquire(self.store.pool()).await {
            Ok(held) => held.to_vec(),
            Err(err) => {
                self.start_over();
                return Err(err);
            }
        };
        if held != self.partitions {
            // Partitions just won may hold rows anywhere in the outbox.
            self.start_over();
            self.partitions.clone_from(&held);
        }
        if held.is_empty() {
            return Ok(StepOutcome::default());
        }
        match self.fences.raise_missing(&self.publisher, &held).await {
            Ok(false) => {}
            Ok(true) => {
                // A fence raised by a relay that lost its lock (frozen since the last check)
                // would stand over the new leader's: the lock must still be held after the
                // raise, and then it was held throughout.
                self.leadership.reconfirm_now();
                if !self.leadership.confirm().await {
                    self.fences.clear();
                    self.start_over();
                    return Ok(StepOutcome::default());
                }
            }
            Err(err) => {
                // Nothing of a partition without its fence is sent; the pacing says it once.
                tracing::debug!(error = %err, "relay could not raise its fences");
                return Ok(StepOutcome {
                    interrupted: true,
                    ..StepOutcome::default()
                });
            }
        }
        let (rows, limit) = match self.prefetch.take() {
            Some(prefetch) => match prefetch.task.await {
                Ok((reader, Ok(rows))) => {
                    self.reader = Some(reader);
                    (rows, self.config.batch_size)
                }
                Ok((reader, Err(err))) => {
                    self.reader = Some(reader);
                    self.start_over();
                    return Err(err);
                }
                Err(_) => self.fresh_load(&held).await?,
            },
            None => self.fresh_load(&held).await?,
        };
        self.read_from = self.read_from.after_batch(&rows);
        if rows.is_empty() && self.pipeline.is_idle() {
            ::metrics::gauge!(crate::metrics::OUTBOX_LAG).set(0.0);
            if self
                .pending_since
                .is_some_and(|since| since.elapsed() >= RECORD_AFTER)
            {
                self.record_pending().await?;
            }
            return Ok(StepOutcome::default());
        }
        let loaded = rows.len();
        let lag = rows.first().map_or(0.0, |row| {
            (chrono::Utc::now() - row.occurred_at)
                .as_seconds_f64()
                .max(0.0)
        });
        ::metrics::gauge!(crate::metrics::OUTBOX_LAG).set(lag);
        ::metrics::histogram!(crate::metrics::RELAY_BATCH_EVENTS).record(loaded as f64);
        let more_coming = i64::try_from(loaded).unwrap_or(i64::MAX) >= limit;
        if more_coming {
            let store = self.store.clone();
            let partitions = held.clone();
            let from = self.read_from.clone();
            let limit = self.config.batch_size;
            let reader = self.reader.take().unwrap_or_default();
            self.prefetch = Some(Prefetch {
                task: tokio::spawn(async move {
                    reader.load_batch(&store, &partitions, &from, limit).await
                }),
            });
        }
        let mut rows = rows;
        for row in &mut rows {
            row.gate = self.fences.gate(row.partition, row.aggregate_id);
        }
        self.pipeline.feed(rows);
        // With the next batch on its way, return once less than a batch is queued: the rest of
        // this one (its aggregates' long runs) goes on beside the next batch's rows.
        let low_water = if more_coming {
            usize::try_from(self.config.batch_size).unwrap_or(1).max(1)
        } else {
            0
        };
        let publishing = std::time::Instant::now();
        self.pipeline
            .run(
                &self.publisher,
                &self.fences,
                &self.config.source,
                low_water,
            )
            .await;
        if self.pipeline.take_fenced() {
            // Another relay raised a fence over one of ours (it holds the partition now and
            // this relay's lock connection must be gone), or ours expired with the stream's
            // max age: check the lock at once, and raise the fences again if still leading.
            tracing::warn!("JetStream refused events behind a newer fence; checking leadership");
            self.fences.clear();
            self.leadership.reconfirm_now();
        }
        ::metrics::histogram!(crate::metrics::RELAY_PUBLISH_SECONDS)
            .record(publishing.elapsed().as_secs_f64());
        let book = self.take_bookkeeping();
        let outcome = StepOutcome {
            loaded,
            published: book.acked.len(),
            dead_lettered: book.dead.len(),
            interrupted: self.pipeline.failed(),
        };
        self.pending.absorb(book);
        let since = *self
            .pending_since
            .get_or_insert_with(std::time::Instant::now);
        if self.pending.rows() >= RECORD_ROWS || since.elapsed() >= RECORD_AFTER {
            // One bookkeeping commit at a time; it runs on while the next batch is published
            // (a relay that dies before it commits only republishes, and JetStream drops
            // duplicates).
            self.finish_recording().await?;
            self.spawn_recording();
        }
        if outcome.interrupted {
            // The rows not acknowledged are behind the next read: start again from the
            // beginning once this batch is recorded.
            self.start_over();
        }
        Ok(outcome)
    }

    /// What the pipeline has settled (acknowledged or set aside) since last asked, counted in
    /// the metrics and the totals: every settled row passes here once, whether a step or a
    /// flush collected it.
    fn take_bookkeeping(&mut self) -> Bookkeeping {
        let book = self.pipeline.take_bookkeeping();
        ::metrics::counter!(crate::metrics::RELAY_PUBLISHED).increment(book.acked.len() as u64);
        ::metrics::counter!(crate::metrics::RELAY_DEAD_LETTERS).increment(book.dead.len() as u64);
        self.totals.add(book.acked.len(), book.dead.len());
        book
    }

    /// Lets the publishes in flight finish, records them, and drops the rows still queued
    /// (the next read from the beginning finds them again).
    async fn flush_pipeline(&mut self) -> Result<(), StoreError> {
        self.pipeline
            .clear(&self.publisher, &self.fences, &self.config.source)
            .await;
        if self.pipeline.take_fenced() {
            // Refused behind a newer fence while flushing: the same as after a step.
            self.fences.clear();
            self.leadership.reconfirm_now();
        }
        let book = self.take_bookkeeping();
        self.pending.absorb(book);
        self.pending_since
            .get_or_insert_with(std::time::Instant::now);
        self.record_pending().await
    }

    /// Forgets the read position and any read in flight: the next read starts at the
    /// beginning of the outbox.
    fn start_over(&mut self) {
        self.discard_prefetch();
        self.read_from = ReadFrom::default();
    }

    /// Records the bookkeeping not yet recorded, and waits for it: nothing published stays in
    /// the outbox (the relay is about to park).
    async fn record_pending(&mut self) -> Result<(), StoreError> {
        self.finish_recording().await?;
        if self.pending.rows() == 0 {
            // Nothing new (a relay kept from parking by an open append tries every few ms).
            return Ok(());
        }
        self.spawn_recording();
        // In a task of its own, so a caller that stops waiting does not lose it (the next step
        // waits for it); a failure makes the next read start over (`finish_recording`).
        self.finish_recording().await
    }

    /// Starts recording what is pending (after the last recording finished).
    fn spawn_recording(&mut self) {
        let store = self.store.clone();
        let book = std::mem::take(&mut self.pending);
        self.pending_since = None;
        self.recording = Some(tokio::spawn(
            async move { batch::record(&store, book).await },
        ));
    }

    /// Waits for the last batch's bookkeeping to commit.
    async fn finish_recording(&mut self) -> Result<(), StoreError> {
        let Some(task) = self.recording.take() else {
            return Ok(());
        };
        // A task that died (panicked, was aborted) recorded nothing, like one that failed.
        let (recorded, lost) = match task.await {
            Ok(recorded) => {
                let lost = recorded.is_err();
                (recorded, lost)
            }
            Err(_) => (Ok(()), true),
        };
        if lost {
            // Published rows are still in the outbox, behind the read position: read them
            // again (JetStream drops the duplicates) so they are deleted.
            tracing::warn!("relay bookkeeping was lost; reading the outbox from the start");
            self.start_over();
        }
        recorded
    }

    /// A read not continuing a prefetch. A read from the beginning waits for the last
    /// bookkeeping first, or it would publish that batch's rows again.
    async fn fresh_load(&mut self, held: &[i16]) -> Result<(Vec<OutboxRow>, i64), StoreError> {
        if self.read_from.is_from_start() {
            self.flush_pipeline().await?;
        }
        // Small, so that publishing starts soon; if it comes back full, the reads after it,
        // overlapping the publishing, take whole batches.
        let limit = self.config.batch_size.min(FIRST_READ);
        let reader = self.reader.take().unwrap_or_default();
        let (reader, rows) = reader
            .load_batch(&self.store, held, &self.read_from, limit)
            .await;
        self.reader = Some(reader);
        Ok((rows?, limit))
    }

    fn discard_prefetch(&mut self) {
        if let Some(prefetch) = self.prefetch.take() {
            prefetch.task.abort();
        }
    }

    /// Runs until `shutdown` completes, then finishes the batch in hand and gives its
    /// partitions back so a standby takes over at once.
    ///
    /// With nothing to do the relay parks (see [`RelayState::Parked`]) and sleeps until an
    /// append notifies it or `poll_interval` passes; while an appending transaction is still
    /// open it cannot park, and looks again after a short pause instead.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), StoreError> {
        let channel: String = sqlx::query_scalar(concat!("SELECT ", notify_channel!()))
            .fetch_one(self.store.pool())
            .await?;
        let mut listener = if self.config.notifications {
            Self::listen(&self.store, &channel).await
        } else {
            None
        };
        match self.publisher.fencing() {
            Fencing::On | Fencing::Lanes => {}
            Fencing::OldServer => tracing::warn!(
                server_version = %self.publisher.server_version(),
                "nats-server before 2.11 cannot fence a relay that lost its leadership: a relay \
                 frozen longer than the stream's duplicate window may republish events out of \
                 order when it wakes; upgrade nats-server"
            ),
        }
        tokio::pin!(shutdown);
        let mut pacing = Pacing::new(self.config.min_backoff, self.config.max_backoff);
        // The bookkeeping's own back-off: the steps between failed recordings republish and
        // succeed, which would reset the steps' pacing every time.
        let mut recording = Pacing::new(self.config.min_backoff, self.config.max_backoff);
        let mut cadence = Cadence::new(LINGER, MIN_BUSY_PAUSE, MAX_BUSY_PAUSE);
        let mut backlog = Backlog::default();
        loop {
            let stepped = self.step().await;
            if let Ok(outcome) = &stepped {
                let batch = usize::try_from(self.config.batch_size.min(FIRST_READ)).unwrap_or(0);
                Backlog::say(&backlog.record(outcome.loaded, batch, outcome.published));
            }
            let progress = match &stepped {
                Err(_) => Progress::Failed,
                Ok(outcome) if outcome.interrupted => Progress::Failed,
                Ok(outcome) if outcome.published > 0 || outcome.loaded == 0 => {
                    Progress::Acknowledged
                }
                Ok(_) => Progress::InFlight,
            };
            let error = stepped.as_ref().err().map(|e| e as &dyn std::fmt::Display);
            let now = std::time::Instant::now();
            let next = match (pacing.record(progress, error), stepped) {
                (Some(delay), _) => {
                    self.unpark().await;
                    Next::Wait(delay)
                }
                (None, Err(_)) => unreachable!("a failed step always backs off"),
                (None, Ok(outcome)) if outcome.loaded > 0 || self.prefetch.is_some() => {
                    // Events are coming in: read on, unparked, so appends do not notify
                    // meanwhile (notifying commits take turns): at once while reads come back
                    // full, after a pause that gathers the next few otherwise.
                    cadence.found(now);
                    self.unpark().await;
                    let loaded = i64::try_from(outcome.loaded).unwrap_or(i64::MAX);
                    let full = loaded >= self.config.batch_size.min(FIRST_READ);
                    if full || self.prefetch.is_some() {
                        Next::Now
                    } else {
                        Next::Pause(LINGER_PAUSE)
                    }
                }
                // A standby: nothing to park; try for partitions again on the timer.
                (None, Ok(_)) if self.leadership.held().is_empty() => {
                    Next::Wait(self.config.poll_interval)
                }
                // Still parked since before this step: every commit since has notified.
                (None, Ok(_)) if self.leadership.all_parked() => {
                    Next::Wait(self.config.poll_interval)
                }
                // Events came a moment ago: more are likely; keep reading, unparked.
                (None, Ok(_)) if cadence.lingering(now) => Next::Pause(LINGER_PAUSE),
                // Nothing would wake it: look again on the timer, unparked.
                (None, Ok(_)) if !self.config.notifications => {
                    Next::Wait(self.config.poll_interval)
                }
                (None, Ok(_)) => match self.park().await {
                    Parking::Parked => {
                        recording.record(Progress::Acknowledged, None);
                        cadence.parked();
                        self.state.send_replace(RelayState::Parked);
                        Next::Wait(self.config.poll_interval)
                    }
                    Parking::AwaitingOpenAppends => {
                        self.state.send_replace(RelayState::AwaitingOpenAppends);
                        Next::Wait(cadence.kept_from_parking())
                    }
                    Parking::Working => Next::Now,
                    Parking::Failed(err) => Next::Wait(
                        recording
                            .record(Progress::Failed, Some(&err))
                            .unwrap_or(self.config.min_backoff),
                    ),
                },
            };
            if matches!(next, Next::Wait(_)) && self.pending.rows() > 0 {
                // Not parking (a standby now, relaying without notifications, backing off):
                // what was published is deleted before the wait, not after it.
                if let Err(err) = self.record_pending().await {
                    tracing::warn!(error = %err, "relay bookkeeping failed; reading again");
                }
            }
            match next {
                Next::Now => {
                    if futures::poll!(&mut shutdown).is_ready() {
                        break;
                    }
                }
                Next::Pause(pause) => tokio::select! {
                    () = &mut shutdown => break,
                    () = precise_sleep(pause) => {}
                },
                Next::Wait(wait) => tokio::select! {
                    () = &mut shutdown => break,
                    woken = wait_for_notification(&mut listener, wait) => {
                        if !woken && listener.is_none() && self.config.notifications {
                            listener = Self::listen(&self.store, &channel).await;
                        }
                    }
                },
            }
        }
        self.discard_prefetch();
        let recorded = self.flush_pipeline().await;
        self.leadership.release().await;
        recorded
    }

    /// Ends parking, if parked: appends stop notifying.
    async fn unpark(&mut self) {
        if let Err(err) = self.leadership.unpark().await {
            tracing::warn!(error = %err, "relay lost its lock connection while parked");
        }
        self.state.send_replace(RelayState::Working);
    }

    /// Parks the led partitions so that appends notify, then reads once more: a transaction
    /// that committed after the last read, before parking, did not notify.
    async fn park(&mut self) -> Parking {
        // Parked, it may sleep for the whole poll interval: what it published goes first.
        if let Err(err) = self.record_pending().await {
            return Parking::Failed(err);
        }
        match self.leadership.park().await {
            Ok(true) => {}
            Ok(false) => return Parking::AwaitingOpenAppends,
            Err(err) => {
                tracing::warn!(error = %err, "relay could not park");
                return Parking::AwaitingOpenAppends;
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
            return Parking::Working;
        }
        Parking::Parked
    }

    async fn listen(store: &Store, channel: &str) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(store.pool()).await.ok()?;
        listener.listen(channel).await.ok()?;
        Some(listener)
    }
}

impl Drop for Relay {
    /// What a relay stepped by hand ([`Relay::step`]) published but had not recorded yet is
    /// recorded in the background, when there is a runtime to run it; otherwise it stays in
    /// the outbox and the next leader republishes it (JetStream drops the duplicates).
    fn drop(&mut self) {
        if self.pending.rows() == 0 {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let _inside = runtime.enter();
            self.spawn_recording();
        }
    }
}

/// Sleeps for `pause` on a blocking thread: the operating system sleeps to within tens of
/// microseconds, where tokio's timer rounds up to whole milliseconds.
async fn precise_sleep(pause: Duration) {
    let _ = tokio::task::spawn_blocking(move || std::thread::sleep(pause)).await;
}

/// Waits for a NOTIFY or the timer; `true` if a notification arrived. A broken listener makes
/// it wait out the timer: the catch-up query covers what was missed.
async fn wait_for_notification(listener: &mut Option<PgListener>, timeout: Duration) -> bool {
    if let Some(l) = listener {
        match tokio::time::timeout(timeout, l.recv()).await {
            Ok(Ok(_)) => true,
            Ok(Err(_)) => {
                *listener = None;
                false
            }
            Err(_) => false,
        }
    } else {
        tokio::time::sleep(timeout).await;
        false
    }
}
