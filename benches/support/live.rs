//! Appends with the relay running beside them, against the same appends alone (issue 16): a
//! deployment always has both. The relay runs as a process of its own (`edupulse-relay`), as
//! deployed, so its CPU time is its own; the two sides take turns, each going first equally
//! often, and the outbox is emptied (untimed) before each side.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use edupulse_events::store::ExpectedVersion;
use edupulse_events::{Envelope, Uuid};

use super::TestEnv;
use super::cpu::{CpuTimes, process_seconds};

/// How long each side appends.
const SIDE: Duration = Duration::from_secs(5);

/// What one side measured.
#[derive(Debug, Default, Clone)]
pub struct Side {
    pub events: u64,
    pub seconds: f64,
    /// NOTIFYs the relay's channel carried.
    pub notifies: u64,
    /// Writing transactions (transaction ids drawn) in the database, the relay's included.
    pub transactions: u64,
    /// CPU seconds of the relay process.
    pub relay_cpu: f64,
    /// The outbox's depth, sampled every second.
    pub outbox: Vec<i64>,
    /// CPU seconds of this process (the writers), PostgreSQL and nats-server.
    pub cpu: CpuTimes,
}

impl Side {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

/// A relay process over the test's store and stream.
pub struct RelayProcess {
    child: Child,
}

impl RelayProcess {
    /// Started, and leading every partition.
    pub async fn start(env: &TestEnv) -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_edupulse-relay"))
            .env("DATABASE_URL", super::database_url())
            .env("NATS_URL", super::nats_url())
            .env("EDUPULSE_SCHEMA", &env.schema)
            .env("EDUPULSE_PREFIX", &env.prefix)
            .env("EDUPULSE_STREAM", &env.stream)
            .env("EDUPULSE_PARTITIONS", env.store.partitions().to_string())
            .env("EDUPULSE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start edupulse-relay");
        let stderr = child.stderr.take().unwrap();
        let (leading, led) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut said = false;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !said && line.contains("relay leads partitions") {
                    said = true;
                    let _ = leading.send(());
                }
            }
        });
        tokio::task::spawn_blocking(move || led.recv_timeout(Duration::from_secs(60)))
            .await
            .unwrap()
            .expect("the relay process leads its partitions");
        RelayProcess { child }
    }

    pub fn cpu(&self) -> f64 {
        process_seconds(self.child.id()).unwrap_or(0.0)
    }

    /// SIGTERM, and waits for it to give its partitions back.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The transaction id the database would give next: its difference over a side counts the
/// writing transactions of every session.
async fn next_xid(env: &TestEnv) -> u64 {
    let xid: i64 = sqlx::query_scalar("SELECT txid_current()")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    xid as u64
}

/// Appends for [`SIDE`] from `writers` tasks, `batch` events per transaction (one aggregate
/// per transaction), with `relay` running beside them or not.
pub async fn side(env: &Arc<TestEnv>, writers: usize, batch: usize, relay: bool) -> Side {
    // What the last side left (appended alone), published untimed.
    env.relay_everything().await;
    let process = if relay {
        Some(RelayProcess::start(env).await)
    } else {
        None
    };
    // Counts the notifications the relay would be woken by.
    let channel: String = sqlx::query_scalar("SELECT 'edupulse_outbox_' || md5(current_schema())")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    let mut listener = sqlx::postgres::PgListener::connect_with(&env.pool)
        .await
        .unwrap();
    listener.listen(&channel).await.unwrap();
    let notifies = Arc::new(AtomicU64::new(0));
    let counting = {
        let notifies = notifies.clone();
        tokio::spawn(async move {
            while listener.recv().await.is_ok() {
                notifies.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let xid_before = next_xid(env).await;
    let cpu_before = process.as_ref().map_or(0.0, RelayProcess::cpu);
    let machine_before = CpuTimes::now();
    let done = Arc::new(AtomicBool::new(false));
    let events = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (env, done, events) = (env.clone(), done.clone(), events.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !done.load(Ordering::Relaxed) {
                    let quiz = Uuid::now_v7();
                    let envelopes: Vec<Envelope> =
                        (0..batch).map(|i| super::event(quiz, n + i)).collect();
                    env.store
                        .append_committed(ExpectedVersion::NoStream, &envelopes)
                        .await
                        .unwrap();
                    n += batch;
                    events.fetch_add(batch as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut outbox = Vec::new();
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.tick().await;
    while start.elapsed() < SIDE {
        second.tick().await;
        outbox.push(env.count("outbox").await);
    }
    done.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu = CpuTimes::since(machine_before);
    let events = events.load(Ordering::Relaxed);
    let transactions = next_xid(env).await - xid_before;
    let relay_cpu = process.as_ref().map_or(0.0, RelayProcess::cpu) - cpu_before;
    if let Some(process) = process {
        super::until_outbox_empty(env).await;
        process.stop();
    }
    counting.abort();
    Side {
        events,
        seconds,
        notifies: notifies.load(Ordering::Relaxed),
        transactions,
        relay_cpu,
        outbox,
        cpu,
    }
}

/// Rounds of the two sides for `writers` writers appending `batch` events per transaction:
/// (with the relay, alone) per round.
pub async fn rounds(
    env: &Arc<TestEnv>,
    writers: usize,
    batch: usize,
    rounds: usize,
) -> Vec<(Side, Side)> {
    let mut figures = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let relay_first = round % 2 == 0;
        let first = side(env, writers, batch, relay_first).await;
        let second = side(env, writers, batch, !relay_first).await;
        figures.push(if relay_first {
            (first, second)
        } else {
            (second, first)
        });
    }
    figures
}

/// What the sustained run measured.
pub struct Sustained {
    /// Events appended per second.
    pub rate: f64,
    /// The outbox's depth, sampled every second.
    pub outbox: Vec<i64>,
    /// From the writers stopping to the stream holding every event they appended.
    pub published: Duration,
    /// From the writers stopping to the outbox being empty (the relay's bookkeeping done).
    pub drained: Duration,
    /// Commit → the message on the stream's subjects: p50 and p99.
    pub latency: (Duration, Duration),
}

/// The relay running for `secs` beside 8 writers: the outbox sampled every second, and how
/// long it takes to publish and delete the rest once they stop.
pub async fn sustained(env: &Arc<TestEnv>, secs: u64) -> Sustained {
    env.relay_everything().await;
    let process = RelayProcess::start(env).await;
    // The relay raised its fences on starting: from here on the stream grows by the events.
    let messages_before = stream_messages(env).await;
    // When each message is seen on the stream's subjects, against when its append committed.
    let mut subscription = env
        .nats
        .subscribe(format!("{}.>", env.prefix))
        .await
        .unwrap();
    env.nats.flush().await.unwrap();
    let (stop_seeing, mut seeing_stopped) = tokio::sync::oneshot::channel::<()>();
    let seeing = tokio::spawn(async move {
        use futures::StreamExt as _;
        let mut seen: Vec<(Uuid, Instant)> = Vec::new();
        loop {
            tokio::select! {
                _ = &mut seeing_stopped => break,
                message = subscription.next() => {
                    let Some(message) = message else { break };
                    let at = Instant::now();
                    let id = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Msg-Id"))
                        .and_then(|v| v.as_str().parse().ok())
                        .expect("every relayed message has an id");
                    seen.push((id, at));
                }
            }
        }
        seen
    });
    let done = Arc::new(AtomicBool::new(false));
    let events = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (env, done, events) = (env.clone(), done.clone(), events.clone());
            tokio::spawn(async move {
                let mut committed = Vec::new();
                let mut n = 0;
                while !done.load(Ordering::Relaxed) {
                    let event = super::event(Uuid::now_v7(), n);
                    super::library_append(&env, &event).await;
                    committed.push((event.id, Instant::now()));
                    n += 1;
                    events.fetch_add(1, Ordering::Relaxed);
                }
                committed
            })
        })
        .collect();
    let start = Instant::now();
    let mut outbox = Vec::new();
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.tick().await;
    while start.elapsed() < Duration::from_secs(secs) {
        second.tick().await;
        outbox.push(env.count("outbox").await);
    }
    done.store(true, Ordering::Relaxed);
    let mut committed = std::collections::HashMap::new();
    for task in tasks {
        committed.extend(task.await.unwrap());
    }
    let stopped = Instant::now();
    let events = events.load(Ordering::Relaxed);
    let rate = events as f64 / start.elapsed().as_secs_f64();
    let deadline = stopped + Duration::from_secs(300);
    let mut look = tokio::time::interval(Duration::from_millis(2));
    while stream_messages(env).await < messages_before + events {
        assert!(
            Instant::now() < deadline,
            "the relay did not publish everything"
        );
        look.tick().await;
    }
    let published = stopped.elapsed();
    while !super::outbox_empty(env).await {
        assert!(Instant::now() < deadline, "the outbox was not drained");
        look.tick().await;
    }
    let drained = stopped.elapsed();
    process.stop();
    let _ = stop_seeing.send(());
    let mut latencies: Vec<Duration> = seeing
        .await
        .unwrap()
        .into_iter()
        .filter_map(|(id, at)| committed.get(&id).map(|c| at.saturating_duration_since(*c)))
        .collect();
    latencies.sort_unstable();
    let at = |share: f64| {
        latencies[((latencies.len() as f64 * share) as usize).min(latencies.len() - 1)]
    };
    Sustained {
        rate,
        outbox,
        published,
        drained,
        latency: (at(0.5), at(0.99)),
    }
}

/// Messages in the test's stream.
async fn stream_messages(env: &TestEnv) -> u64 {
    let mut stream = async_nats::jetstream::new(env.nats.clone())
        .get_stream(&env.stream)
        .await
        .unwrap();
    stream.info().await.unwrap().state.messages
}
