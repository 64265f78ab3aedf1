//! The outbox relay against real PostgreSQL and nats-server: every event reaches the stream
//! exactly once and in per-aggregate order; a poison event is set aside while the rest flows;
//! a running relay is woken by commits; an incompatible stream is refused with a clear error.

mod common;

use common::{TestEnv, assert_exactly_once_in_order, header};
use edupulse_domain::{LearningPulseResponded, QuizSubmitted};
use edupulse_events::publish::{PublishError, Publisher, StreamSettings};
use edupulse_events::relay::{Relay, RelayConfig, RelayState};
use edupulse_events::{DomainEvent, Uuid};

fn response(pulse_id: Uuid, choice: u32, comment: Option<String>) -> LearningPulseResponded {
    LearningPulseResponded {
        pulse_id,
        student_id: Uuid::now_v7(),
        choice,
        comment: comment.map(Into::into),
    }
}

#[tokio::test]
async fn relay_delivers_every_event_once_in_per_aggregate_order() {
    let env = TestEnv::new().await;
    let pulses: Vec<Uuid> = (0..7).map(|_| Uuid::now_v7()).collect();
    for round in 0..30 {
        for pulse in &pulses {
            env.append(&[
                response(*pulse, round, None),
                response(*pulse, round + 1, None),
            ])
            .await;
        }
    }
    let publisher = env.publisher().await;
    let config = RelayConfig {
        batch_size: 64,
        ..Default::default()
    };
    let mut relay = Relay::new(env.store.clone(), publisher.clone(), config);
    env.drain(&mut relay).await;
    let messages = env.stream_messages().await;
    assert_exactly_once_in_order(&messages, 7 * 60);

    let first = &messages[0];
    assert_eq!(header(first, "ce-type"), "learning_pulse.responded.v1");
    assert_eq!(header(first, "ce-specversion"), "1.0");
    assert_eq!(
        first.subject.as_str(),
        LearningPulseResponded::subject(&env.prefix)
    );
    let body: serde_json::Value = serde_json::from_slice(&first.payload).unwrap();
    assert!(body.get("choice").is_some());
    env.cleanup().await;
}

#[tokio::test]
async fn republishing_after_lost_bookkeeping_adds_no_duplicate() {
    let env = TestEnv::new().await;
    let pulse = Uuid::now_v7();
    env.append(
        &(0..20)
            .map(|n| response(pulse, n, None))
            .collect::<Vec<_>>(),
    )
    .await;
    let outbox_before: Vec<(i64, i16, String)> =
        sqlx::query_as("SELECT position, partition, subject FROM outbox ORDER BY position")
            .fetch_all(&env.pool)
            .await
            .unwrap();
    let publisher = env.publisher().await;
    let mut relay = Relay::new(env.store.clone(), publisher.clone(), RelayConfig::default());
    env.drain(&mut relay).await;
    // Simulate a crash after the acks but before the outbox rows were deleted: the rows come
    // back, and a relay starts afresh.
    drop(relay);
    for (position, partition, subject) in &outbox_before {
        sqlx::query("INSERT INTO outbox (position, partition, subject) VALUES ($1, $2, $3)")
            .bind(position)
            .bind(partition)
            .bind(subject)
            .execute(&env.pool)
            .await
            .unwrap();
    }
    let mut relay = Relay::new(env.store.clone(), publisher, RelayConfig::default());
    env.drain(&mut relay).await;
    assert_exactly_once_in_order(&env.stream_messages().await, 20);
    env.cleanup().await;
}

#[tokio::test]
async fn a_poison_event_is_dead_lettered_and_the_rest_flows() {
    let env = TestEnv::new().await;
    let max_payload = env.nats.server_info().max_payload;
    assert!(max_payload > 0, "the server's limits are known");
    let pulse = Uuid::now_v7();
    let other = Uuid::now_v7();
    env.append(&[response(pulse, 1, None)]).await;
    let poison = env
        .append(&[response(pulse, 2, Some("x".repeat(max_payload + 1)))])
        .await[0];
    env.append(&[response(pulse, 3, None), response(pulse, 4, None)])
        .await;
    env.append(&[response(other, 1, None)]).await;

    let mut relay = Relay::new(
        env.store.clone(),
        env.publisher().await,
        RelayConfig::default(),
    );
    let totals = relay.totals();
    env.drain(&mut relay).await;
    drop(relay);
    // What the operator's `relay` command reports when it stops.
    assert_eq!((totals.published(), totals.dead_lettered()), (4, 1));

    let (position, reason): (i64, String) =
        sqlx::query_as("SELECT position, reason FROM dead_letters")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(position, poison);
    assert!(reason.contains("max_payload"), "{reason}");
    let messages = env.stream_messages().await;
    assert_eq!(messages.len(), 4);
    let choices: Vec<u64> = messages
        .iter()
        .filter(|m| header(m, "ce-aggregateid") == pulse.to_string())
        .map(|m| {
            serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["choice"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        choices,
        [1, 3, 4],
        "the events after the poison one are published in order"
    );
    env.cleanup().await;
}

/// A quiz submission by a new student, numbered `n` in their name.
fn submitted(quiz_id: Uuid, n: u32) -> QuizSubmitted {
    QuizSubmitted {
        quiz_id,
        student_id: Uuid::now_v7(),
        student_name: format!("s{n}").into(),
        score: 1.0,
        answers: vec![],
    }
}

/// A subscription to the quiz events the relay publishes, in place before anything is
/// appended (flushed, so the server has it).
async fn quiz_messages(env: &TestEnv) -> async_nats::Subscriber {
    let subscription = env
        .nats
        .subscribe(QuizSubmitted::subject(&env.prefix))
        .await
        .unwrap();
    env.nats.flush().await.unwrap();
    subscription
}

/// A relay running in the background until [`RunningRelay::stop`].
struct RunningRelay {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), edupulse_events::store::StoreError>>,
}

impl RunningRelay {
    /// Stops it and checks that it stopped cleanly.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// Starts a relay over `env` with `config`; returns what it is doing and its handle.
async fn run_relay(
    env: &TestEnv,
    config: RelayConfig,
) -> (tokio::sync::watch::Receiver<RelayState>, RunningRelay) {
    let relay = Relay::new(env.store.clone(), env.publisher().await, config);
    let state = relay.state();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(relay.run(async {
        let _ = stopped.await;
    }));
    (state, RunningRelay { stop, task })
}

/// How many outbox partitions the running relay has parked (it holds their parking locks).
async fn parked_partitions(env: &TestEnv) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND mode = 'ExclusiveLock' AND objsubid = 2 \
         AND classid = hashtext(current_schema() || ':edupulse-parked')::oid",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_open_append_keeps_the_relay_looking_and_a_parked_relay_is_woken() {
    use edupulse_events::store::ExpectedVersion;
    use futures::StreamExt;
    let env = TestEnv::new().await;
    let quiz = Uuid::now_v7();
    // An append whose transaction is still open when the relay starts: the relay cannot park
    // (parked, it would rely on a NOTIFY this commit will not send).
    let mut open = env.pool.begin().await.unwrap();
    let first = edupulse_events::Envelope::new(&submitted(quiz, 1)).unwrap();
    env.store
        .append(
            &mut open,
            ExpectedVersion::NoStream,
            std::slice::from_ref(&first),
        )
        .await
        .unwrap();
    let mut subscription = quiz_messages(&env).await;
    let config = RelayConfig {
        // Far longer than the test may take: the timer must not be what delivers.
        poll_interval: std::time::Duration::from_secs(3600),
        ..Default::default()
    };
    let (mut state, relay) = run_relay(&env, config).await;
    let within = std::time::Duration::from_secs(30);
    tokio::time::timeout(
        within,
        state.wait_for(|s| *s == RelayState::AwaitingOpenAppends),
    )
    .await
    .expect("the relay notices the open append")
    .unwrap();
    // Each attempt to park takes the partitions it can and gives them back when one is held
    // by an open append, so a look may catch it holding some for a moment; never all of them.
    assert!(parked_partitions(&env).await < i64::from(env.store.partitions()));
    open.commit().await.unwrap();
    let message = tokio::time::timeout(within, subscription.next())
        .await
        .expect("a commit made while the relay could not park is published without the timer")
        .unwrap();
    assert_eq!(
        message.headers.unwrap().get("ce-id").unwrap().as_str(),
        first.id.to_string()
    );

    // With nothing open the relay parks every partition; an append then wakes it.
    tokio::time::timeout(within, state.wait_for(|s| *s == RelayState::Parked))
        .await
        .expect("an idle relay parks")
        .unwrap();
    assert_eq!(
        parked_partitions(&env).await,
        i64::from(env.store.partitions())
    );
    env.append(&[submitted(quiz, 2)]).await;
    tokio::time::timeout(within, subscription.next())
        .await
        .expect("a parked relay is woken by the commit")
        .unwrap();
    relay.stop().await;
    assert_eq!(
        parked_partitions(&env).await,
        0,
        "stopping releases the parking locks"
    );
    assert_eq!(env.count("outbox").await, 0);
    env.cleanup().await;
}

#[tokio::test]
async fn a_running_relay_is_woken_by_commits() {
    let env = TestEnv::new().await;
    let publisher = env.publisher().await;
    let config = RelayConfig {
        // Far longer than the test may take: only NOTIFY can deliver in time.
        poll_interval: std::time::Duration::from_secs(3600),
        ..Default::default()
    };
    let relay = Relay::new(env.store.clone(), publisher, config);
    let mut state = relay.state();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(relay.run(async {
        let _ = stopped.await;
    }));
    // Subscribe before appending, then wait for the messages themselves.
    let quiz = Uuid::now_v7();
    let mut subscription = quiz_messages(&env).await;
    // Parked before the commit: its first reads cannot be what finds the events.
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        state.wait_for(|s| *s == RelayState::Parked),
    )
    .await
    .expect("the relay parks within 30 s on an empty outbox")
    .unwrap();
    let events: Vec<QuizSubmitted> = (0..5).map(|n| submitted(quiz, n)).collect();
    env.append(&events).await;
    use futures::StreamExt;
    let received = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        let mut n = 0;
        while n < 5 {
            subscription.next().await.unwrap();
            n += 1;
        }
        n
    })
    .await
    .expect("the relay published within 30 s of the commit without polling");
    assert_eq!(received, 5);
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(env.count("outbox").await, 0);
    env.cleanup().await;
}

#[tokio::test]
async fn an_incompatible_existing_stream_is_refused_with_a_clear_error() {
    let env = TestEnv::new().await;
    let js = async_nats::jetstream::new(env.nats.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: env.stream.clone(),
        subjects: vec![format!("{}.other.>", env.prefix)],
        ..Default::default()
    })
    .await
    .unwrap();
    let err = Publisher::provision(
        env.nats.clone(),
        StreamSettings::new(&env.stream, &env.prefix),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            PublishError::IncompatibleStream {
                setting: "subjects",
                ..
            }
        ),
        "{err}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_dropped_relay_hands_its_partitions_to_the_next() {
    let env = TestEnv::new().await;
    let publisher = env.publisher().await;
    let all = env.store.partitions() as usize;
    let mut first = Relay::new(env.store.clone(), publisher.clone(), RelayConfig::default());
    first.step().await.unwrap();
    assert_eq!(first.led_partitions().len(), all);
    let mut rival = Relay::new(env.store.clone(), publisher.clone(), RelayConfig::default());
    rival.step().await.unwrap();
    assert!(
        rival.led_partitions().is_empty(),
        "one leader per partition"
    );
    drop(rival);
    drop(first);
    // The locks must die with the relay, not linger on a pooled connection: the server frees
    // them once it sees the session close, so the next relay takes over within moments.
    let mut next = Relay::new(env.store.clone(), publisher, RelayConfig::default());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while next.led_partitions().len() < all {
        assert!(
            std::time::Instant::now() < deadline,
            "partitions never handed over"
        );
        next.step().await.unwrap();
    }
    drop(next);
    env.cleanup().await;
}

#[tokio::test]
async fn a_late_commit_below_published_rows_is_still_relayed() {
    let env = TestEnv::new().await;
    let mut relay = Relay::new(
        env.store.clone(),
        env.publisher().await,
        RelayConfig::default(),
    );
    // The slow transaction takes the lower position but commits after the relay has already
    // published a higher one.
    let mut slow = env.pool.begin().await.unwrap();
    let late = edupulse_events::Envelope::new(&response(Uuid::now_v7(), 1, None)).unwrap();
    env.store
        .append(
            &mut slow,
            edupulse_events::store::ExpectedVersion::Any,
            std::slice::from_ref(&late),
        )
        .await
        .unwrap();
    env.append(&[response(Uuid::now_v7(), 2, None)]).await;
    assert_eq!(relay.step().await.unwrap().published, 1);
    slow.commit().await.unwrap();
    env.drain(&mut relay).await;
    let messages = env.stream_messages().await;
    assert_eq!(messages.len(), 2);
    assert_eq!(header(&messages[1], "ce-id"), late.id.to_string());
    env.cleanup().await;
}

#[tokio::test]
async fn a_late_commit_holds_back_its_aggregates_later_events() {
    use edupulse_events::store::ExpectedVersion;
    let env = TestEnv::new().await;
    let mut relay = Relay::new(
        env.store.clone(),
        env.publisher().await,
        RelayConfig::default(),
    );
    let late_aggregate = Uuid::now_v7();
    let mut slow = env.pool.begin().await.unwrap();
    let first = edupulse_events::Envelope::new(&response(late_aggregate, 1, None)).unwrap();
    env.store
        .append(
            &mut slow,
            ExpectedVersion::NoStream,
            std::slice::from_ref(&first),
        )
        .await
        .unwrap();
    // The relay reads past the uncommitted row's position.
    env.append(&[response(Uuid::now_v7(), 1, None)]).await;
    assert_eq!(relay.step().await.unwrap().published, 1);
    slow.commit().await.unwrap();
    // The aggregate's next event, and another aggregate's, both above the relay's last read.
    let second = edupulse_events::Envelope::new(&response(late_aggregate, 2, None)).unwrap();
    let mut tx = env.pool.begin().await.unwrap();
    env.store
        .append(
            &mut tx,
            ExpectedVersion::Exact(1),
            std::slice::from_ref(&second),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    env.append(&[response(Uuid::now_v7(), 1, None)]).await;
    env.drain(&mut relay).await;
    assert_exactly_once_in_order(&env.stream_messages().await, 4);
    env.cleanup().await;
}

#[tokio::test]
async fn a_late_commit_whose_transaction_began_after_the_last_finished_one_is_relayed_in_order() {
    use edupulse_events::store::ExpectedVersion;
    let env = TestEnv::new().await;
    let mut relay = Relay::new(
        env.store.clone(),
        env.publisher().await,
        RelayConfig::default(),
    );
    // The fast transaction takes its id first (say it wrote business rows before appending);
    // the slow one takes a higher id and the lower position.
    let mut fast = env.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *fast)
        .await
        .unwrap();
    let mut slow = env.pool.begin().await.unwrap();
    let late_aggregate = Uuid::now_v7();
    let first = edupulse_events::Envelope::new(&response(late_aggregate, 1, None)).unwrap();
    env.store
        .append(
            &mut slow,
            ExpectedVersion::NoStream,
            std::slice::from_ref(&first),
        )
        .await
        .unwrap();
    let other = edupulse_events::Envelope::new(&response(Uuid::now_v7(), 1, None)).unwrap();
    env.store
        .append(
            &mut fast,
            ExpectedVersion::NoStream,
            std::slice::from_ref(&other),
        )
        .await
        .unwrap();
    fast.commit().await.unwrap();
    // The relay reads past the slow position. Its snapshot's xmax is the fast id + 1, so the
    // slow transaction, still running, is not in the snapshot's list of running ones.
    assert_eq!(relay.step().await.unwrap().published, 1);
    slow.commit().await.unwrap();
    let second = edupulse_events::Envelope::new(&response(late_aggregate, 2, None)).unwrap();
    env.store
        .append_committed(ExpectedVersion::Exact(1), std::slice::from_ref(&second))
        .await
        .unwrap();
    env.drain(&mut relay).await;
    let messages = env.stream_messages().await;
    assert_exactly_once_in_order(&messages, 3);
    env.cleanup().await;
}

#[tokio::test]
async fn without_notifications_the_relay_never_parks_and_relays_on_its_timer() {
    use futures::StreamExt;
    let env = TestEnv::new().await;
    let poll_interval = std::time::Duration::from_millis(300);
    let config = RelayConfig {
        notifications: false,
        poll_interval,
        ..Default::default()
    };
    let (_, relay) = run_relay(&env, config).await;
    let mut subscription = quiz_messages(&env).await;
    let quiz = Uuid::now_v7();
    for n in 0..3 {
        // Quiet in between: every append is picked up by the timer, none by a NOTIFY.
        let appended = std::time::Instant::now();
        env.append(&[submitted(quiz, n)]).await;
        tokio::time::timeout(std::time::Duration::from_secs(10), subscription.next())
            .await
            .expect("relayed within the fallback interval")
            .unwrap();
        assert!(
            appended.elapsed() < poll_interval * 10,
            "relayed after {:?}",
            appended.elapsed()
        );
        assert_eq!(parked_partitions(&env).await, 0, "appends never notify");
    }
    relay.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_parked_relay_woken_by_a_commit_reads_on_unparked_and_parks_on_an_empty_read() {
    use futures::StreamExt;
    let env = TestEnv::new().await;
    let config = RelayConfig {
        poll_interval: std::time::Duration::from_secs(3600),
        ..Default::default()
    };
    let (mut state, relay) = run_relay(&env, config).await;
    let within = std::time::Duration::from_secs(30);
    tokio::time::timeout(within, state.wait_for(|s| *s == RelayState::Parked))
        .await
        .expect("an idle relay parks")
        .unwrap();
    let mut subscription = quiz_messages(&env).await;
    state.mark_unchanged();
    env.append(&[submitted(Uuid::now_v7(), 0)]).await;
    // Woken, it unparks (appends stop notifying: under load, the next commits find it reading
    // and do not make each other wait), reads on, and parks again once a read finds nothing.
    tokio::time::timeout(within, state.wait_for(|s| *s == RelayState::Working))
        .await
        .expect("the woken relay unparks while it reads")
        .unwrap();
    tokio::time::timeout(within, subscription.next())
        .await
        .expect("relayed")
        .unwrap();
    tokio::time::timeout(within, state.wait_for(|s| *s == RelayState::Parked))
        .await
        .expect("parks again on an empty read")
        .unwrap();
    relay.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_commit_whose_wake_up_is_lost_is_relayed_by_the_fallback_timer() {
    use futures::StreamExt;
    let env = TestEnv::new().await;
    let poll_interval = std::time::Duration::from_millis(300);
    let config = RelayConfig {
        poll_interval,
        ..Default::default()
    };
    let (mut state, relay) = run_relay(&env, config).await;
    let within = std::time::Duration::from_secs(30);
    let mut subscription = quiz_messages(&env).await;
    for _ in 0..3 {
        tokio::time::timeout(within, state.wait_for(|s| *s == RelayState::Parked))
            .await
            .expect("an idle relay parks")
            .unwrap();
        // A commit that sends no NOTIFY to the parked relay, as when the notification is
        // lost (the listener's connection dropped at that moment): the event and its outbox
        // row written by hand, without the append's wake-up.
        let event_id = Uuid::now_v7();
        let appended = std::time::Instant::now();
        sqlx::query(
            "WITH e AS (INSERT INTO events (event_id, aggregate_type, aggregate_id, sequence, \
                 event_type, version, payload, occurred_at) \
               VALUES ($1, 'quiz', $2, 1, 'quiz.submitted', 2, '{}', now()) RETURNING position) \
             INSERT INTO outbox (position, partition, subject) SELECT position, 0, $3 FROM e",
        )
        .bind(event_id)
        .bind(Uuid::now_v7())
        .bind(QuizSubmitted::subject(&env.prefix))
        .execute(&env.pool)
        .await
        .unwrap();
        let message = tokio::time::timeout(within, subscription.next())
            .await
            .expect("a commit without a wake-up is still relayed")
            .unwrap();
        assert_eq!(
            message.headers.unwrap().get("ce-id").unwrap().as_str(),
            event_id.to_string()
        );
        assert!(
            appended.elapsed() < poll_interval * 10,
            "relayed after {:?}: the fallback timer is {poll_interval:?}",
            appended.elapsed()
        );
        // Its row is deleted by the read that finds nothing more, before the relay parks
        // again: the next round starts from a parked relay.
        common::backlog::until_outbox_empty(&env).await;
    }
    relay.stop().await;
    assert_eq!(env.count("outbox").await, 0);
    env.cleanup().await;
}

#[tokio::test]
async fn a_relay_that_cannot_delete_what_it_published_backs_off() {
    use futures::StreamExt;
    let env = TestEnv::new().await;
    // Deletes from the outbox fail (as on a replica promoted read-only, or a revoked
    // privilege) while reads work; a sequence counts the attempts, as it survives the
    // failed statement's rollback.
    sqlx::raw_sql(
        "CREATE SEQUENCE delete_attempts; \
         CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM nextval('delete_attempts'); RAISE EXCEPTION 'deletes refused'; END $$; \
         CREATE TRIGGER refuse_delete BEFORE DELETE ON outbox \
             FOR EACH STATEMENT EXECUTE FUNCTION refuse_delete();",
    )
    .execute(&env.pool)
    .await
    .unwrap();
    let mut subscription = quiz_messages(&env).await;
    let (_, relay) = run_relay(&env, RelayConfig::default()).await;
    env.append(&[submitted(Uuid::now_v7(), 0)]).await;
    tokio::time::timeout(std::time::Duration::from_secs(30), subscription.next())
        .await
        .expect("published")
        .unwrap();
    // The relay retries the delete with growing pauses (20 ms, doubling), not every few
    // milliseconds as a relay that goes on as if nothing failed would: three retries after
    // the first attempt take at least 20 + 40 + 80 ms.
    let attempts = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM delete_attempts",
        )
        .fetch_one(&env.pool)
        .await
        .unwrap()
    };
    let until = |count: i64| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut look = tokio::time::interval(std::time::Duration::from_millis(2));
        while attempts().await < count {
            assert!(
                std::time::Instant::now() < deadline,
                "the relay stopped retrying"
            );
            look.tick().await;
        }
    };
    until(1).await;
    let first = std::time::Instant::now();
    until(4).await;
    assert!(
        first.elapsed() >= std::time::Duration::from_millis(140),
        "three retries within {:?}: the relay does not back off",
        first.elapsed()
    );
    assert_eq!(env.count("outbox").await, 1, "nothing deleted");
    sqlx::query("DROP TRIGGER refuse_delete ON outbox")
        .execute(&env.pool)
        .await
        .unwrap();
    common::backlog::until_outbox_empty(&env).await;
    relay.stop().await;
    env.cleanup().await;
}
