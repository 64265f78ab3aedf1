//! A process started before its servers comes up on its own: the relay binary, started while
//! neither PostgreSQL nor NATS is up, says that it waits, and relays once both are there. A
//! configuration error still stops it at once. Both servers are the test's own.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::own_servers::{OwnNatsServer, OwnPostgres, free_port};
use edupulse_domain::LearningPulseResponded;
use edupulse_events::store::{ExpectedVersion, Store};
use edupulse_events::{Envelope, Uuid};
use futures::StreamExt;

/// The relay process over `database` and `nats`, its standard error read line by line.
fn relay(database: &str, nats: &str, partitions: u16) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edupulse-relay"))
        .env("DATABASE_URL", database)
        .env("NATS_URL", nats)
        .env("EDUPULSE_PREFIX", "startup")
        .env("EDUPULSE_STREAM", "STARTUP")
        .env("EDUPULSE_PARTITIONS", partitions.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the relay process");
    let lines = read_lines(child.stderr.take().unwrap());
    (child, lines)
}

fn read_lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// The first line containing `text`, within 60 s.
fn line_with(lines: &mpsc::Receiver<String>, text: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the relay never said `{text}`"));
        if line.contains(text) {
            return line;
        }
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_started_before_its_servers_waits_for_them_then_relays() {
    common::ensure_services();
    // The store is migrated first, then its server stopped: the relay finds the schema there
    // once PostgreSQL is back.
    let mut postgres = OwnPostgres::init();
    postgres.start();
    let pool = sqlx::PgPool::connect(&postgres.url()).await.unwrap();
    let store = Store::new(pool.clone(), "startup").with_partitions(2);
    store.migrate().await.unwrap();
    pool.close().await;
    postgres.stop();
    let mut nats = OwnNatsServer::stopped(free_port());

    let (child, lines) = relay(&postgres.url(), &nats.url(), 2);
    line_with(&lines, "waiting for PostgreSQL");
    postgres.start();
    line_with(&lines, "waiting for NATS JetStream");
    nats.restart();
    line_with(&lines, "relaying schema");

    // It relays: an event appended now reaches the stream.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut published = client.subscribe("startup.>").await.unwrap();
    client.flush().await.unwrap();
    let pool = sqlx::PgPool::connect(&postgres.url()).await.unwrap();
    let store = Store::new(pool.clone(), "startup").with_partitions(2);
    let event = Envelope::new(&LearningPulseResponded {
        pulse_id: Uuid::now_v7(),
        student_id: Uuid::now_v7(),
        choice: 1,
        comment: None,
    })
    .unwrap();
    store
        .append_committed(ExpectedVersion::NoStream, &[event])
        .await
        .unwrap();
    let message = tokio::time::timeout(Duration::from_secs(60), published.next())
        .await
        .expect("the relay published the event")
        .unwrap();
    assert!(message.subject.starts_with("startup."));
    pool.close().await;
    stop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_error_stops_the_relay_at_once() {
    common::ensure_services();
    let mut postgres = OwnPostgres::init();
    postgres.start();
    let pool = sqlx::PgPool::connect(&postgres.url()).await.unwrap();
    Store::new(pool.clone(), "startup")
        .with_partitions(2)
        .migrate()
        .await
        .unwrap();
    pool.close().await;
    // Another partition count than the store's: no waiting helps.
    let (mut child, lines) = relay(&postgres.url(), "nats://127.0.0.1:1", 4);
    let line = line_with(&lines, "partitions");
    assert!(line.contains('2') && line.contains('4'), "{line}");
    let status = child.wait().unwrap();
    assert!(!status.success());
}
