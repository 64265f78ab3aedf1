//! One behavioural suite, two backends: the same checks run against the PostgreSQL store with
//! JetStream (real servers) and against the embedded SQLite store with the in-process bus,
//! through the `EventStore` trait both implement.

mod common;

use std::sync::Arc;

use common::TestEnv;
use edupulse_domain::{QuizSubmitted, QuizSubmittedV1};
use edupulse_events::admin::{AdminCommand, Target};
use edupulse_events::consume::{BusSubscriber, Subscriber};
use edupulse_events::embedded::{InProcessBus, SqliteStore, relay_pending};
use edupulse_events::privacy::Scrub;
use edupulse_events::privacy::{LocalKeyProvider, Pii};
use edupulse_events::publish::envelope_from_message;
use edupulse_events::store::{EventStore, ExpectedVersion, LogCursor, StoreError};
use edupulse_events::{Envelope, Registry, Uuid};
use futures::future::join_all;

/// A backend under test: its store, and what the checks need beyond the trait.
trait Backend {
    type Store: EventStore;
    fn store(&self) -> &Self::Store;
    /// Events waiting to be relayed.
    async fn outbox(&self) -> i64;
    /// Relays everything and returns what the bus or stream carried, personal data opened
    /// the way a consumer opens it.
    async fn relayed(&self) -> Vec<Envelope>;
    /// Every payload in the log as stored (sealed values as their sealed form).
    async fn stored_payloads(&self) -> Vec<String>;
    /// Runs the `scores` projection (a row per quiz submission; a subject's rows deleted and
    /// the subject noted in `erased` by `on_erasure`) until it holds `rows` rows and
    /// `erasures` erasures; then catches it up from the store and returns how many events
    /// that applied (every one was applied already: 0).
    async fn project(&self, rows: i64, erasures: i64) -> u64;
    /// What the admin command `myapp events <args>` prints against this backend.
    async fn admin(&self, args: &[&str]) -> String;
    async fn finish(self);
}

struct Postgres(TestEnv);

impl Backend for Postgres {
    type Store = edupulse_events::store::Store;
    fn store(&self) -> &Self::Store {
        &self.0.store
    }
    async fn outbox(&self) -> i64 {
        self.0.count("outbox").await
    }
    async fn relayed(&self) -> Vec<Envelope> {
        self.0.relay_everything().await;
        let mut envelopes: Vec<Envelope> = self
            .0
            .stream_messages()
            .await
            .iter()
            .map(|m| envelope_from_message(m.headers.as_ref(), &m.payload).unwrap())
            .collect();
        self.0.store.unseal(&mut envelopes).await.unwrap();
        envelopes
    }
    async fn stored_payloads(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT payload::text FROM events")
            .fetch_all(&self.0.pool)
            .await
            .unwrap()
    }
    async fn project(&self, rows: i64, erasures: i64) -> u64 {
        let env = &self.0;
        sqlx::raw_sql(PROJECTION).execute(&env.pool).await.unwrap();
        env.relay_everything().await;
        let runtime = env.runtime().await;
        let subscriber = Subscriber::builder(&runtime, "scores")
            .on(|quiz: QuizSubmitted, _envelope: &Envelope, tx| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO scores (quiz_id, student_id) VALUES ($1, $2)")
                        .bind(quiz.quiz_id.to_string())
                        .bind(quiz.student_id.to_string())
                        .execute(&mut *tx)
                        .await?;
                    Ok(())
                })
            })
            .on_erasure(|subject, tx| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM scores WHERE student_id = $1")
                        .bind(subject.to_string())
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("INSERT INTO erased (student_id) VALUES ($1)")
                        .bind(subject.to_string())
                        .execute(&mut *tx)
                        .await?;
                    Ok(())
                })
            })
            .build()
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let catching_up = Subscriber::builder(&runtime, "scores")
            .on(|_: QuizSubmitted, _envelope: &Envelope, _tx| Box::pin(async { Ok(()) }))
            .on_erasure(|_, _tx| Box::pin(async { Ok(()) }))
            .build()
            .await
            .unwrap();
        let running = tokio::spawn(subscriber.run(async {
            let _ = stopped.await;
        }));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while (env.count("scores").await, env.count("erased").await) != (rows, erasures) {
            assert!(
                std::time::Instant::now() < deadline,
                "the projection never caught up"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        stop.send(()).unwrap();
        running.await.unwrap().unwrap();
        catching_up.catch_up_from_start().await.unwrap()
    }
    async fn admin(&self, args: &[&str]) -> String {
        run_admin(args, || async {
            Ok::<_, edupulse_events::RuntimeError>(self.0.runtime().await)
        })
        .await
    }
    async fn finish(self) {
        self.0.cleanup().await;
    }
}

struct Embedded {
    store: SqliteStore,
    bus: InProcessBus,
    /// The `scores` projection's subscriber, subscribed at its first run.
    scores: tokio::sync::Mutex<Option<BusSubscriber>>,
    received:
        tokio::sync::Mutex<tokio::sync::broadcast::Receiver<edupulse_events::embedded::BusMessage>>,
    /// The file store's directory, removed when the test ends.
    _dir: Option<tempfile::TempDir>,
}

impl Backend for Embedded {
    type Store = SqliteStore;
    fn store(&self) -> &SqliteStore {
        &self.store
    }
    async fn outbox(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(self.store.pool())
            .await
            .unwrap()
    }
    async fn relayed(&self) -> Vec<Envelope> {
        relay_pending(&self.store, &self.bus).await.unwrap();
        let mut received = self.received.lock().await;
        let mut envelopes = Vec::new();
        while let Ok(message) = received.try_recv() {
            envelopes.push(message.envelope);
        }
        self.store.unseal(&mut envelopes).await.unwrap();
        envelopes
    }
    async fn stored_payloads(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT payload FROM events")
            .fetch_all(self.store.pool())
            .await
            .unwrap()
    }
    async fn project(&self, rows: i64, erasures: i64) -> u64 {
        let pool = self.store.pool();
        sqlx::raw_sql(PROJECTION).execute(pool).await.unwrap();
        let mut subscriber = self.scores.lock().await;
        let subscriber = subscriber.get_or_insert_with(|| {
            BusSubscriber::builder(&self.store, &self.bus, "scores")
                .on(|quiz: QuizSubmitted, _envelope: &Envelope, tx| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO scores (quiz_id, student_id) VALUES (?, ?)")
                            .bind(quiz.quiz_id.to_string())
                            .bind(quiz.student_id.to_string())
                            .execute(&mut *tx)
                            .await?;
                        Ok(())
                    })
                })
                .on_erasure(|subject, tx| {
                    Box::pin(async move {
                        sqlx::query("DELETE FROM scores WHERE student_id = ?")
                            .bind(subject.to_string())
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query("INSERT INTO erased (student_id) VALUES (?)")
                            .bind(subject.to_string())
                            .execute(&mut *tx)
                            .await?;
                        Ok(())
                    })
                })
                .build()
                .unwrap()
        });
        relay_pending(&self.store, &self.bus).await.unwrap();
        let settled = subscriber.apply_waiting().await.unwrap();
        assert_eq!(settled.set_aside + settled.retrying, 0, "{settled:?}");
        let counts: (i64, i64) =
            sqlx::query_as("SELECT (SELECT count(*) FROM scores), (SELECT count(*) FROM erased)")
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(counts, (rows, erasures));
        subscriber.catch_up().await.unwrap().applied
    }
    async fn admin(&self, args: &[&str]) -> String {
        let target = Target::embedded(self.store.clone(), self.bus.clone());
        run_admin(args, || async { Ok::<_, std::io::Error>(target) }).await
    }
    async fn finish(self) {}
}

async fn postgres() -> Postgres {
    Postgres(TestEnv::new().await)
}

async fn embedded() -> Embedded {
    embedded_on(SqliteStore::in_memory("edupulse").await.unwrap(), None)
}

/// A file store: several connections, so writers really race (and wait on SQLite's lock).
async fn embedded_file() -> Embedded {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("events.db"), "edupulse")
        .await
        .unwrap();
    embedded_on(store, Some(dir))
}

fn embedded_on(store: SqliteStore, dir: Option<tempfile::TempDir>) -> Embedded {
    let master = edupulse_events::privacy::DataKey::generate();
    let store = store.with_keys(Arc::new(LocalKeyProvider::new(master)));
    let bus = InProcessBus::new(10_000);
    let received = tokio::sync::Mutex::new(bus.subscribe());
    Embedded {
        store,
        bus,
        scores: tokio::sync::Mutex::new(None),
        received,
        _dir: dir,
    }
}

fn submitted(quiz_id: Uuid, student_id: Uuid, name: &str) -> Envelope {
    Envelope::new(&QuizSubmitted {
        quiz_id,
        student_id,
        student_name: name.to_owned().into(),
        score: 0.5,
        answers: vec![],
    })
    .unwrap()
}

async fn append_one<S: EventStore>(
    store: &S,
    expected: ExpectedVersion,
    events: &[Envelope],
) -> Result<u64, StoreError> {
    let mut tx = store.begin().await?;
    match store.append(&mut tx, expected, events).await {
        Ok(appended) => {
            store.commit(tx).await?;
            Ok(appended.version)
        }
        Err(err) => {
            store.rollback(tx).await?;
            Err(err)
        }
    }
}

/// The whole log once it holds `count` events: PostgreSQL's `read_all` holds back events
/// younger than the oldest transaction still running (other tests' included), so it is polled.
async fn read_at_least<S: EventStore>(
    store: &S,
    count: usize,
) -> Vec<edupulse_events::store::StoredEvent> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let all = store.read_all(LogCursor::START, 100).await.unwrap();
        if all.len() >= count {
            return all;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the log never showed {count} events"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Appended events read back decoded, an old version upcast, with the aggregate's version.
async fn appends_read_back_upcast<B: Backend>(backend: B) {
    let store = backend.store();
    let (quiz, student) = (Uuid::now_v7(), Uuid::now_v7());
    let old = Envelope::new(&QuizSubmittedV1 {
        quiz_id: quiz,
        student_id: student,
        student_name: "Ada".to_owned().into(),
        correct: 3,
        total: 4,
    })
    .unwrap();
    append_one(store, ExpectedVersion::NoStream, &[old])
        .await
        .unwrap();
    let version = append_one(
        store,
        ExpectedVersion::Exact(1),
        &[submitted(quiz, student, "Ada")],
    )
    .await
    .unwrap();
    assert_eq!(version, 2);
    let loaded = store.load(quiz).await.unwrap();
    assert_eq!(loaded.version, 2);
    let events: Vec<QuizSubmitted> = loaded
        .events
        .into_iter()
        .map(|e| e.downcast().unwrap())
        .collect();
    assert_eq!(events[0].score, 0.75, "v1 upcast to v2");
    assert_eq!(events[1].student_name, Pii::Present("Ada".to_owned()));
    let all = read_at_least(store, 2).await;
    assert_eq!(all.len(), 2);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    backend.finish().await;
}

/// A rolled-back transaction leaves no event and nothing to relay.
async fn rollback_leaves_nothing<B: Backend>(backend: B) {
    let store = backend.store();
    let quiz = Uuid::now_v7();
    let mut tx = store.begin().await.unwrap();
    store
        .append(
            &mut tx,
            ExpectedVersion::NoStream,
            &[submitted(quiz, Uuid::now_v7(), "Ada")],
        )
        .await
        .unwrap();
    store.rollback(tx).await.unwrap();
    assert_eq!(store.load(quiz).await.unwrap().version, 0);
    assert!(
        store
            .read_all(LogCursor::START, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(backend.outbox().await, 0);
    assert!(backend.relayed().await.is_empty());
    backend.finish().await;
}

/// Writers racing on one aggregate: each success extends a contiguous sequence, every loser
/// gets `Conflict` naming the version it lost to.
async fn racing_writers_conflict<B: Backend>(backend: B) {
    let store = backend.store();
    let quiz = Uuid::now_v7();
    let attempts = join_all((0..16).map(|n| async move {
        let version = store.load(quiz).await.unwrap().version;
        let expected = if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        };
        append_one(
            store,
            expected,
            &[submitted(quiz, Uuid::now_v7(), &format!("s{n}"))],
        )
        .await
    }))
    .await;
    let won = attempts.iter().filter(|a| a.is_ok()).count() as u64;
    for attempt in &attempts {
        if let Err(err) = attempt {
            assert!(
                matches!(err, StoreError::Conflict { aggregate, actual, .. } if *aggregate == quiz && *actual >= 1),
                "{err}"
            );
        }
    }
    // All 16 read the version before any appended: one wins each version, the rest lose.
    assert!((1..16).contains(&won), "{won} won");
    let loaded = store.load(quiz).await.unwrap();
    assert_eq!(loaded.version, won);
    assert_eq!(loaded.events.len() as u64, won);
    backend.finish().await;
}

/// Erasing a subject turns their personal data into `Erased` in the log and in relayed copies,
/// leaves everyone else's, and refuses new personal data of theirs.
async fn erasure_shreds_one_subject<B: Backend>(backend: B) {
    let store = backend.store();
    let (erased, kept) = (Uuid::now_v7(), Uuid::now_v7());
    let (quiz_a, quiz_b) = (Uuid::now_v7(), Uuid::now_v7());
    append_one(
        store,
        ExpectedVersion::NoStream,
        &[submitted(quiz_a, erased, "Grace")],
    )
    .await
    .unwrap();
    append_one(
        store,
        ExpectedVersion::NoStream,
        &[submitted(quiz_b, kept, "Alan")],
    )
    .await
    .unwrap();
    let receipt = store
        .erase_subject(erased, "test request", Scrub::KeysOnly)
        .await
        .unwrap();
    assert_eq!(receipt.subject, erased);
    assert_eq!(receipt.keys_destroyed, 1);

    let name_in = |quiz| async move {
        let loaded = store.load(quiz).await.unwrap();
        let event: QuizSubmitted = loaded
            .events
            .into_iter()
            .next()
            .unwrap()
            .downcast()
            .unwrap();
        event.student_name
    };
    assert_eq!(name_in(quiz_a).await, Pii::Erased);
    assert_eq!(name_in(quiz_b).await, Pii::Present("Alan".to_owned()));

    let relayed = backend.relayed().await;
    assert_eq!(relayed.len(), 3, "two submissions and the erasure");
    for envelope in relayed.iter().filter(|e| e.event_type == "quiz.submitted") {
        let event: QuizSubmitted = Registry::global()
            .decode(&envelope.event_type, envelope.version, &envelope.payload)
            .unwrap()
            .downcast()
            .unwrap();
        let expected = if event.student_id == erased {
            Pii::Erased
        } else {
            Pii::Present("Alan".to_owned())
        };
        assert_eq!(event.student_name, expected);
    }
    let refused = append_one(
        store,
        ExpectedVersion::Any,
        &[submitted(quiz_a, erased, "Grace again")],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(refused, StoreError::SubjectErased { subject } if subject == erased),
        "{refused}"
    );
    backend.finish().await;
}

/// The name a quiz's one submission reads with now.
async fn name_in<S: EventStore>(store: &S, quiz: Uuid) -> Pii<String> {
    let event: QuizSubmitted = store
        .load(quiz)
        .await
        .unwrap()
        .events
        .into_iter()
        .last()
        .unwrap()
        .downcast()
        .unwrap();
    event.student_name
}

/// An erasure that scrubs leaves none of the subject's ciphertext in the stored log (and
/// everyone else's), and a subject let back in gets a key above the destroyed one: new data
/// opens, old data stays erased.
async fn scrubbed_erasure_and_readmission<B: Backend>(backend: B) {
    let store = backend.store();
    let (erased, kept) = (Uuid::now_v7(), Uuid::now_v7());
    let quizzes = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    for (quiz, (student, name)) in
        quizzes
            .iter()
            .zip([(erased, "Grace"), (erased, "Grace"), (kept, "Alan")])
    {
        append_one(
            store,
            ExpectedVersion::NoStream,
            &[submitted(*quiz, student, name)],
        )
        .await
        .unwrap();
    }
    let sealed_for = |subject: Uuid, version: u32| format!("1.{subject}.{version}.");
    let holding =
        |payloads: &[String], form: &str| payloads.iter().filter(|p| p.contains(form)).count();
    let before = backend.stored_payloads().await;
    assert_eq!(holding(&before, &sealed_for(erased, 1)), 2);

    let receipt = store
        .erase_subject(erased, "test request", Scrub::StoredCiphertext)
        .await
        .unwrap();
    assert_eq!(receipt.events_scrubbed, 2);
    let after = backend.stored_payloads().await;
    assert_eq!(holding(&after, &sealed_for(erased, 1)), 0, "{after:?}");
    assert_eq!(holding(&after, &sealed_for(kept, 1)), 1);
    assert_eq!(name_in(store, quizzes[0]).await, Pii::Erased);
    assert_eq!(
        name_in(store, quizzes[2]).await,
        Pii::Present("Alan".to_owned())
    );

    assert!(
        !store.allow_new_keys(Uuid::now_v7()).await.unwrap(),
        "never erased"
    );
    assert!(store.allow_new_keys(erased).await.unwrap());
    append_one(
        store,
        ExpectedVersion::Exact(1),
        &[submitted(quizzes[0], erased, "Grace, back")],
    )
    .await
    .unwrap();
    assert_eq!(
        name_in(store, quizzes[0]).await,
        Pii::Present("Grace, back".to_owned())
    );
    assert_eq!(name_in(store, quizzes[1]).await, Pii::Erased);
    assert_eq!(
        holding(&backend.stored_payloads().await, &sealed_for(erased, 2)),
        1
    );
    backend.finish().await;
}

/// An application's command line with the admin group mounted under `events`.
#[derive(clap::Parser)]
#[command(name = "myapp")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Event administration.
    #[command(subcommand)]
    Events(AdminCommand),
}

/// Runs `myapp events <args>` against what `target` makes; what it printed.
async fn run_admin<F, Fut, T, E>(args: &[&str], target: F) -> String
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    T: Into<Target>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use clap::Parser;
    let cli = Cli::try_parse_from(["myapp", "events"].iter().chain(args)).unwrap();
    let Command::Events(command) = cli.command;
    let mut out = Vec::new();
    command.run(target, &mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

/// The operator's commands report the outbox and the log, tail the events with personal data
/// masked, erase and scrub, and print the catalog and check contracts, on either backend.
async fn admin_commands_report_tail_and_erase<B: Backend>(backend: B) {
    let store = backend.store();
    let student = Uuid::now_v7();
    for _ in 0..3 {
        append_one(
            store,
            ExpectedVersion::NoStream,
            &[submitted(Uuid::now_v7(), student, "Canary Lovelace")],
        )
        .await
        .unwrap();
    }
    let status = backend.admin(&["status"]).await;
    assert!(status.contains("outbox: 3 event(s) waiting"), "{status}");
    assert!(status.contains("log: 3 event(s)"), "{status}");
    backend.relayed().await;
    let status = backend.admin(&["status"]).await;
    assert!(status.contains("outbox: empty"), "{status}");
    assert!(status.contains("consumer dead letters: 0"), "{status}");

    let tail_args = ["tail", "quiz.>", "--from-start", "--limit", "3"];
    let tail = backend.admin(&tail_args).await;
    assert_eq!(tail.lines().count(), 3, "{tail}");
    for line in tail.lines() {
        assert!(line.contains("quiz.submitted.v2"), "{line}");
        assert!(line.contains(&student.to_string()), "{line}");
    }
    assert!(!tail.contains("Canary"), "personal data shown: {tail}");
    // More asked for than there is: what there is, then the command ends.
    let all = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        backend.admin(&["tail", "quiz.>", "--from-start", "--limit", "10"]),
    )
    .await
    .expect("tail --from-start --limit must end once it has shown what there is");
    assert_eq!(all.lines().count(), 3, "{all}");

    let subject = student.to_string();
    let erased = backend
        .admin(&["erase", &subject, "--reason", "ticket 1234", "--scrub"])
        .await;
    assert!(
        erased.starts_with(&format!(
            "erased {student}: 1 key version(s) destroyed, 3 stored event(s) scrubbed"
        )),
        "{erased}"
    );
    let tail = backend.admin(&tail_args).await;
    assert_eq!(tail.matches("<erased>").count(), 3, "{tail}");

    let catalog = backend.admin(&["catalog", "--format", "json"]).await;
    assert!(catalog.contains("\"quiz.submitted.v2\""), "{catalog}");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/edupulse-domain/contracts");
    let contracts = backend.admin(&["contracts", dir]).await;
    assert!(
        contracts.contains("event versions match their snapshots"),
        "{contracts}"
    );
    backend.finish().await;
}

/// The tables of the `scores` projection, in SQL both databases read.
const PROJECTION: &str = "
CREATE TABLE IF NOT EXISTS scores (quiz_id TEXT NOT NULL, student_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS erased (student_id TEXT NOT NULL);
";

/// A subscriber applies each relayed event once through its inbox (a catch-up from the store
/// over the same inbox applies nothing more), and an erasure reaches its `on_erasure` hook.
async fn subscribers_apply_once_and_hear_of_erasures<B: Backend>(backend: B) {
    let store = backend.store();
    let (ada, grace) = (Uuid::now_v7(), Uuid::now_v7());
    for student in [ada, grace] {
        append_one(
            store,
            ExpectedVersion::NoStream,
            &[submitted(Uuid::now_v7(), student, "Someone")],
        )
        .await
        .unwrap();
    }
    assert_eq!(backend.project(2, 0).await, 0, "applied once, not again");
    store
        .erase_subject(ada, "test request", Scrub::KeysOnly)
        .await
        .unwrap();
    assert_eq!(backend.project(1, 1).await, 0, "applied once, not again");
    backend.finish().await;
}

macro_rules! suite {
    ($backend:ident, $make:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn appends_read_back_upcast() {
                super::appends_read_back_upcast($make().await).await;
            }

            #[tokio::test]
            async fn rollback_leaves_nothing() {
                super::rollback_leaves_nothing($make().await).await;
            }

            #[tokio::test]
            async fn racing_writers_conflict() {
                super::racing_writers_conflict($make().await).await;
            }

            #[tokio::test]
            async fn erasure_shreds_one_subject() {
                super::erasure_shreds_one_subject($make().await).await;
            }

            #[tokio::test]
            async fn subscribers_apply_once_and_hear_of_erasures() {
                super::subscribers_apply_once_and_hear_of_erasures($make().await).await;
            }

            #[tokio::test]
            async fn admin_commands_report_tail_and_erase() {
                super::admin_commands_report_tail_and_erase($make().await).await;
            }

            #[tokio::test]
            async fn scrubbed_erasure_and_readmission() {
                super::scrubbed_erasure_and_readmission($make().await).await;
            }
        }
    };
}

suite!(on_postgres_and_jetstream, postgres);
suite!(on_sqlite_and_in_process_bus, embedded);
suite!(on_sqlite_file_and_in_process_bus, embedded_file);
