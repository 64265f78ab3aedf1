//! The admin commands, mounted under an application's own clap parser as the docs show, run
//! against real PostgreSQL and nats-server.

mod common;

#[path = "common/contract_types.rs"]
mod contract_types;

use clap::{Parser, Subcommand};
use common::TestEnv;
use edupulse_domain::QuizSubmitted;
use edupulse_events::admin::{AdminCommand, Target};
use edupulse_events::{RuntimeError, Uuid};

/// An application's command line with the admin group mounted under `events`.
#[derive(Parser)]
#[command(name = "myapp")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Event administration.
    #[command(subcommand)]
    Events(AdminCommand),
}

/// Runs `myapp events <args>` and returns what it printed.
async fn admin(env: &TestEnv, args: &[&str]) -> String {
    let cli = Cli::try_parse_from(["myapp", "events"].iter().chain(args)).unwrap();
    let Command::Events(command) = cli.command;
    let mut out = Vec::new();
    command
        .run(
            || async { Ok::<_, RuntimeError>(env.runtime().await) },
            &mut out,
        )
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

fn submission(student_id: Uuid, name: &str) -> QuizSubmitted {
    QuizSubmitted {
        quiz_id: Uuid::now_v7(),
        student_id,
        student_name: name.to_owned().into(),
        score: 0.75,
        answers: vec![],
    }
}

#[tokio::test]
async fn status_tail_and_erase_report_what_the_servers_hold() {
    let env = TestEnv::new().await;
    let student = Uuid::now_v7();
    for _ in 0..3 {
        env.append(&[submission(student, "Canary Lovelace")]).await;
    }
    let status = admin(&env, &["status"]).await;
    assert!(status.contains("outbox: 3 event(s) waiting"), "{status}");
    assert!(status.contains("log: 3 event(s)"), "{status}");
    assert!(
        status.contains(&format!("stream {}: 0 message(s)", env.stream)),
        "{status}"
    );

    env.relay_everything().await;
    let status = admin(&env, &["status"]).await;
    assert!(status.contains("outbox: empty"), "{status}");
    assert!(status.contains("relay dead letters: 0"), "{status}");
    assert!(
        status.contains(&format!("stream {}: 3 message(s)", env.stream)),
        "{status}"
    );

    let tail = admin(&env, &["tail", "quiz.>", "--from-start", "--limit", "3"]).await;
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 3, "{tail}");
    for (n, line) in lines.iter().enumerate() {
        assert!(line.contains("quiz.submitted.v2"), "{line}");
        assert!(line.contains(&format!("#{}", n + 1)), "{line}");
        assert!(line.contains(&student.to_string()), "{line}");
    }
    assert!(!tail.contains("Canary"), "personal data shown: {tail}");
    // More asked for than the stream holds: what it holds, then the command ends.
    let tail = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        admin(&env, &["tail", "quiz.>", "--from-start", "--limit", "10"]),
    )
    .await
    .expect("tail --from-start --limit must end once it has shown what the stream holds");
    assert_eq!(tail.lines().count(), 3, "{tail}");
    let none = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        admin(&env, &["tail", "badge.>", "--from-start", "--limit", "10"]),
    )
    .await
    .expect("tail of a filter nothing matches must end too");
    assert_eq!(none, "");

    let erased = admin(
        &env,
        &["erase", &student.to_string(), "--reason", "ticket 1234"],
    )
    .await;
    assert!(
        erased.starts_with(&format!("erased {student}: 1 key version(s) destroyed")),
        "{erased}"
    );
    let status = admin(&env, &["status"]).await;
    assert!(status.contains("log: 4 event(s)"), "{status}");

    // The operator sees that the erasure took effect: the names now print as erased.
    let tail = admin(&env, &["tail", "quiz.>", "--from-start", "--limit", "3"]).await;
    assert_eq!(tail.matches("<erased>").count(), 3, "{tail}");
    assert!(!tail.contains("<pii>"), "{tail}");
    let again = admin(
        &env,
        &["erase", &student.to_string(), "--reason", "ticket 1235"],
    )
    .await;
    assert!(
        again.starts_with(&format!("{student} was already erased")),
        "{again}"
    );
    let another = Uuid::now_v7();
    env.append(&[submission(another, "Grace")]).await;
    let rotated = admin(&env, &["rotate-master-key"]).await;
    assert!(rotated.starts_with("re-wrapped 1 data key(s)"), "{rotated}");
    env.cleanup().await;
}

#[tokio::test]
async fn migrate_lists_the_applied_migrations() {
    let env = TestEnv::new().await;
    let migrated = admin(&env, &["migrate"]).await;
    let embedded = edupulse_events::store::MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .count();
    assert!(
        migrated.contains(&format!("{embedded} of {embedded} migration(s) applied")),
        "{migrated}"
    );
    assert_eq!(
        migrated
            .lines()
            .filter(|l| l.starts_with("applied "))
            .count(),
        embedded
    );
    env.cleanup().await;
}

#[tokio::test]
async fn catalog_and_contracts_need_no_server() {
    let _ = <QuizSubmitted as edupulse_events::DomainEvent>::NAME;
    let mut out = Vec::new();
    let never = || async { Err::<edupulse_events::Runtime, _>("no runtime is needed") };
    let cli = Cli::try_parse_from(["myapp", "events", "catalog", "--prefix", "quizzes"]).unwrap();
    let Command::Events(command) = cli.command;
    command.run(never, &mut out).await.unwrap();
    let document: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(document["asyncapi"], "3.0.0");
    assert_eq!(document["info"]["title"], "quizzes");
    assert_eq!(
        document["channels"]["quiz_submitted_v2"]["address"],
        "quizzes.quiz.submitted.v2"
    );

    let mut out = Vec::new();
    let cli = Cli::try_parse_from(["myapp", "events", "catalog", "--format", "json"]).unwrap();
    let Command::Events(command) = cli.command;
    command.run(never, &mut out).await.unwrap();
    let catalog: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let listed = contract_types::listed(&catalog);
    assert_eq!(listed, contract_types::contract_types());

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/edupulse-domain/contracts");
    let mut out = Vec::new();
    let cli = Cli::try_parse_from(["myapp", "events", "contracts", dir]).unwrap();
    let Command::Events(command) = cli.command;
    command.run(never, &mut out).await.unwrap();
    let said = String::from_utf8(out).unwrap();
    assert!(
        said.contains("event versions match their snapshots"),
        "{said}"
    );
}

/// Without `--prefix`, the AsyncAPI catalog's addresses are the ones the application's own
/// store publishes under (here an embedded store's `lessons`), never a built-in default.
#[tokio::test]
async fn the_catalog_takes_the_prefix_and_name_of_the_applications_runtime() {
    let _ = <QuizSubmitted as edupulse_events::DomainEvent>::NAME;
    let store = edupulse_events::embedded::SqliteStore::in_memory("lessons")
        .await
        .unwrap();
    let bus = edupulse_events::embedded::InProcessBus::default();
    let target = || async { Ok::<_, std::io::Error>(Target::embedded(store, bus)) };
    let cli = Cli::try_parse_from(["myapp", "events", "catalog"]).unwrap();
    let Command::Events(command) = cli.command;
    let mut out = Vec::new();
    command.run(target, &mut out).await.unwrap();
    let document: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(document["info"]["title"], "lessons");
    assert_eq!(
        document["channels"]["quiz_submitted_v2"]["address"],
        "lessons.quiz.submitted.v2"
    );
}
