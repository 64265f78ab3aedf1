//! A relay frozen past the duplicate window after losing its leadership: the scenario both
//! `test_relay_zombie*.rs` run, on one server and on a cluster.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;

use super::backlog::{EVENTS, fences, fill_outbox, until_outbox_empty, until_published};
use super::{TestEnv, assert_exactly_once_in_order};
use edupulse_events::publish::Publisher;
use edupulse_events::relay::{Relay, RelayConfig};

/// The duplicate window of the zombie test's stream: long enough to cover the standby taking
/// over (it republishes what the frozen relay published but had not recorded), short enough
/// for the frozen relay to sleep through it.
const SHORT_WINDOW: Duration = Duration::from_secs(1);

/// Freezes a relay process publishing to `nats` (one server's URL or a cluster's,
/// comma-separated; the stream with `replicas`) after it has published part of a backlog, lets
/// a standby take over and publish past the duplicate window, wakes it, and checks it sent
/// stale events that the stream refused.
pub async fn frozen_relay_publishes_nothing(nats: &str, replicas: usize) {
    let env = TestEnv::with_nats(nats).await;
    fill_outbox(&env).await;
    let settings = env
        .stream_settings()
        .with_duplicate_window(SHORT_WINDOW)
        .with_replicas(replicas);
    let application_name = format!("zombie-{}", env.prefix);

    let mut zombie = Command::new(env!("CARGO_BIN_EXE_edupulse-relay"))
        .env("DATABASE_URL", {
            let url = super::database_url();
            let separator = if url.contains('?') { '&' } else { '?' };
            format!("{url}{separator}application_name={application_name}")
        })
        .env("NATS_URL", nats)
        .env("EDUPULSE_REPLICAS", replicas.to_string())
        .env("EDUPULSE_SCHEMA", &env.schema)
        .env("EDUPULSE_PREFIX", &env.prefix)
        .env("EDUPULSE_STREAM", &env.stream)
        .env("EDUPULSE_PARTITIONS", env.store.partitions().to_string())
        .env("EDUPULSE_BATCH", "500")
        .env(
            "EDUPULSE_DUPLICATE_WINDOW_SECS",
            SHORT_WINDOW.as_secs().to_string(),
        )
        .env("EDUPULSE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the relay process");
    let log_lines = log_lines(zombie.stderr.take().unwrap());
    until_published(&env.nats, &env.prefix, 2_000).await;
    signal(&zombie, "-STOP");
    // Its sessions end (as when a network partition or a failover cuts them): its advisory
    // locks go with them, and the standby takes its partitions over.
    let terminated: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = $1",
    )
    .bind(&application_name)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert!(terminated > 0, "the frozen relay had no sessions to end");
    assert!(
        env.count("outbox").await > 0,
        "frozen after it had finished: nothing was tested"
    );
    let standby_publisher = Publisher::provision(env.nats.clone(), settings.clone())
        .await
        .unwrap();
    assert!(
        standby_publisher.can_fence(),
        "nats-server {} cannot fence: the fault tests need 2.11 or later (scripts/services)",
        standby_publisher.server_version()
    );
    // Every message published from here on, to tell the woken relay's from the standby's.
    let mut sent = env
        .nats
        .subscribe(format!("{}.>", env.prefix))
        .await
        .unwrap();
    env.nats.flush().await.unwrap();
    let standby = Relay::new(env.store.clone(), standby_publisher, RelayConfig::default());
    let (stop_standby, stopped) = tokio::sync::oneshot::channel::<()>();
    let standby = tokio::spawn(standby.run(async {
        let _ = stopped.await;
    }));
    // The standby starts where the frozen relay's bookkeeping stopped: the rows the frozen
    // relay still holds are among the first it publishes.
    for _ in 0..1_000 {
        tokio::time::timeout(Duration::from_secs(60), sent.next())
            .await
            .expect("the standby took over")
            .unwrap();
    }
    // The freeze itself: outlasting the duplicate window is the fault under test. (Shorter
    // than the client's 5 s acknowledgement timeout, so the relay wakes still publishing.)
    tokio::time::sleep(SHORT_WINDOW + Duration::from_millis(500)).await;
    let standby_fences = fences(&env).await;

    signal(&zombie, "-CONT");
    let noticed = tokio::task::spawn_blocking(move || {
        log_lines
            .iter()
            .find(|line| line.contains("no longer leads its partitions"))
    });
    tokio::time::timeout(Duration::from_secs(60), noticed)
        .await
        .expect("the woken relay never noticed it had lost its partitions")
        .unwrap()
        .expect("the relay process ended before noticing it lost its partitions");
    zombie.kill().unwrap();
    zombie.wait().unwrap();
    until_outbox_empty(&env).await;
    // The standby's messages carry its fences; the woken relay's carry older ones, or none.
    let mut sent_stale = 0;
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(200), sent.next()).await
    {
        let fence = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Expected-Last-Subject-Sequence"))
            .and_then(|v| v.as_str().parse::<u64>().ok());
        if !fence.is_some_and(|f| standby_fences.contains(&f)) {
            sent_stale += 1;
        }
    }
    assert!(
        sent_stale > 0,
        "the woken relay sent nothing: the freeze caught it idle, nothing was tested"
    );

    stop_standby.send(()).unwrap();
    standby.await.unwrap().unwrap();
    assert_eq!(env.count("outbox").await, 0);
    assert_exactly_once_in_order(&env.stream_messages().await, EVENTS);
    env.cleanup().await;
}

/// Sends `signal` (`-STOP`, `-CONT`) to `child`.
fn signal(child: &std::process::Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} failed");
}

/// The lines a child writes to `stderr`, as they come.
fn log_lines(stderr: std::process::ChildStderr) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead as _;
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    received
}
