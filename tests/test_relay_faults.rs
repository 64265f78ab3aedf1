//! The relay under failure, against real servers: a nats-server killed with SIGKILL in the
//! middle of relaying 20,000 events and restarted, and a relay process killed mid-batch with a
//! second relay taking over. Afterwards the stream must hold every event exactly once, each
//! aggregate in order, and the outbox must be empty. And a broker outage with a backlog: the
//! relay backs off instead of reading the outbox and warning in a loop. And a fence that
//! vanished (max age, a purge) is raised again. (The frozen relay: `test_relay_zombie.rs`.)

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::backlog::{EVENTS, fences, fill_outbox, until_outbox_empty, until_published};
use common::own_servers::OwnNatsServer;
use common::{TestEnv, assert_exactly_once_in_order};
use edupulse_domain::LearningPulseResponded;
use edupulse_events::Uuid;
use edupulse_events::relay::{Relay, RelayConfig};

/// A relay in this process, batches of 500, back-off from 20 ms up to `max_backoff`, until
/// [`RunningRelay::stop`].
struct RunningRelay {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), edupulse_events::store::StoreError>>,
}

async fn start_relay(env: &TestEnv, max_backoff: Duration) -> RunningRelay {
    let config = RelayConfig {
        batch_size: 500,
        min_backoff: Duration::from_millis(20),
        max_backoff,
        ..RelayConfig::default()
    };
    let relay = Relay::new(env.store.clone(), env.publisher().await, config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(relay.run(async {
        let _ = stopped.await;
    }));
    RunningRelay { stop, task }
}

impl RunningRelay {
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_mid_relay_and_restarted_loses_and_duplicates_nothing() {
    // Installs nats-server on a fresh machine, before this test starts one of its own.
    common::ensure_services();
    let mut server = OwnNatsServer::start();
    let env = TestEnv::with_nats(&server.url()).await;
    fill_outbox(&env).await;
    let relay = start_relay(&env, Duration::from_millis(500)).await;

    until_published(&env.nats, &env.prefix, 3_000).await;
    server.kill();
    let unpublished = env.count("outbox").await;
    assert!(
        unpublished > 0,
        "killed after the relay had finished: nothing was tested"
    );
    server.restart();
    until_outbox_empty(&env).await;
    relay.stop().await;

    assert_exactly_once_in_order(&env.stream_messages().await, EVENTS);
    assert_eq!(env.count("dead_letters").await, 0);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_process_killed_mid_batch_is_taken_over_by_another() {
    let env = TestEnv::new().await;
    fill_outbox(&env).await;
    let publisher = env.publisher().await;

    let mut child = Command::new(env!("CARGO_BIN_EXE_edupulse-relay"))
        .env("DATABASE_URL", common::database_url())
        .env("NATS_URL", common::nats_url())
        .env("EDUPULSE_SCHEMA", &env.schema)
        .env("EDUPULSE_PREFIX", &env.prefix)
        .env("EDUPULSE_STREAM", &env.stream)
        .env("EDUPULSE_PARTITIONS", env.store.partitions().to_string())
        .env("EDUPULSE_BATCH", "500")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the relay process");
    until_published(&env.nats, &env.prefix, 3_000).await;
    child.kill().unwrap(); // SIGKILL, mid-batch
    child.wait().unwrap();
    assert!(
        env.count("outbox").await > 0,
        "killed after it had finished: nothing was tested"
    );

    // The standby: it gets the partitions as soon as PostgreSQL has dropped the dead
    // process's session (and with it, its advisory locks).
    let mut standby = Relay::new(env.store.clone(), publisher, RelayConfig::default());
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.count("outbox").await > 0 {
        assert!(Instant::now() < deadline, "the standby did not take over");
        standby.step().await.unwrap();
    }
    assert_eq!(
        standby.led_partitions().len(),
        env.store.partitions() as usize
    );
    assert_exactly_once_in_order(&env.stream_messages().await, EVENTS);
    env.cleanup().await;
}

/// Counts the warnings the library logs (not the NATS client's own).
struct LibraryWarnings(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LibraryWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() == tracing::Level::WARN && meta.target().starts_with("edupulse_events") {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// What was recorded since the last snapshot (a snapshot drains the recorder): for each of
/// `names`, its histogram's samples or its counter's increments.
fn recorded<const N: usize>(
    snapshotter: &metrics_util::debugging::Snapshotter,
    names: [&str; N],
) -> [u64; N] {
    use metrics_util::debugging::DebugValue;
    let mut totals = [0; N];
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if let Some(at) = names.iter().position(|n| *n == key.key().name()) {
            totals[at] += match value {
                DebugValue::Counter(n) => n,
                DebugValue::Histogram(samples) => samples.len() as u64,
                DebugValue::Gauge(_) => 0,
            };
        }
    }
    totals
}

/// How long the broker stays down in the outage test.
const OUTAGE: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "current_thread")]
async fn a_broker_outage_with_a_backlog_backs_off_and_warns_once() {
    use tracing_subscriber::layer::SubscriberExt as _;

    common::ensure_services();
    // One thread: the relay task logs and records where these see it.
    let warnings = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let _logging = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(LibraryWarnings(warnings.clone())),
    );
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);

    let mut server = OwnNatsServer::start();
    let env = TestEnv::with_nats(&server.url()).await;
    fill_outbox(&env).await;
    let relay = start_relay(&env, Duration::from_secs(2)).await;
    until_published(&env.nats, &env.prefix, 2_000).await;
    server.kill();
    // A snapshot drains what was recorded so far: the next one holds only the outage.
    snapshotter.snapshot();
    let warned_before = warnings.load(std::sync::atomic::Ordering::Relaxed);
    // The outage itself: how long the broker is down is what is under test.
    tokio::time::sleep(OUTAGE).await;
    let [reads, failed] = recorded(
        &snapshotter,
        [
            "edupulse_relay_batch_events",
            "edupulse_relay_failed_steps_total",
        ],
    );
    let warned = warnings.load(std::sync::atomic::Ordering::Relaxed) - warned_before;
    // Doubling from 20 ms to 2 s: about ten failed steps in six seconds, each after at most
    // two reads (the pipelined one before the failure is known).
    assert!(
        failed >= 1,
        "the outage was never noticed ({reads} reads, {warned} warnings)"
    );
    assert!(failed <= 15, "{failed} failed steps in {OUTAGE:?}");
    assert!(
        reads <= 2 * failed + 4,
        "{reads} outbox reads for {failed} failed steps"
    );
    assert!(warned <= 2, "{warned} warnings in {OUTAGE:?}");

    server.restart();
    until_outbox_empty(&env).await;
    relay.stop().await;
    assert_exactly_once_in_order(&env.stream_messages().await, EVENTS);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_that_vanished_is_raised_again_and_nothing_is_lost() {
    let nats = OwnNatsServer::start();
    let env = TestEnv::with_nats(&nats.url()).await;
    let pulse = Uuid::now_v7();
    let publisher = env.publisher().await;
    assert!(
        publisher.can_fence(),
        "the fault tests need nats-server 2.11 or later"
    );
    let mut relay = Relay::new(env.store.clone(), publisher, RelayConfig::default());
    append_pulse(&env, pulse, 0).await;
    env.drain(&mut relay).await;

    // The stream's max age, or an operator's purge, removes the fences: the relay's next
    // publishes are refused; it must find it still leads, raise its fences again and go on.
    let stream = async_nats::jetstream::new(env.nats.clone())
        .get_stream(&env.stream)
        .await
        .unwrap();
    stream
        .purge()
        .filter(format!("_edupulse_fence.{}.>", env.prefix))
        .await
        .unwrap();
    let purged_at = stream.clone().info().await.unwrap().state.last_sequence;
    append_pulse(&env, pulse, 50).await;
    env.drain(&mut relay).await;
    let raised = fences(&env).await;
    assert!(
        raised.len() == env.store.partitions() as usize && raised.iter().all(|&f| f > purged_at),
        "fences raised again after the purge (at {purged_at}): {raised:?}"
    );
    assert_exactly_once_in_order(&env.stream_messages().await, 100);
    env.cleanup().await;
}

/// 50 responses to `pulse`, numbered from `from`.
async fn append_pulse(env: &TestEnv, pulse: Uuid, from: u32) {
    let events: Vec<LearningPulseResponded> = (from..from + 50)
        .map(|choice| LearningPulseResponded {
            pulse_id: pulse,
            student_id: Uuid::now_v7(),
            choice,
            comment: None,
        })
        .collect();
    env.append(&events).await;
}
