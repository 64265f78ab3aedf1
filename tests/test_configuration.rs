//! Configuration that would break things silently is refused at start-up, naming what is
//! wrong: a subject prefix that captures other subjects, a schema name that is really a list,
//! an outbox partition count that differs from the store's.

mod common;

use std::str::FromStr;

use common::{TestEnv, database_url};
use edupulse_events::publish::PublishError;
use edupulse_events::store::{Store, StoreError, in_schema};
use edupulse_events::{Runtime, RuntimeError, Uuid};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

async fn build(env: &TestEnv, prefix: &str, partitions: u16) -> Result<Runtime, RuntimeError> {
    Runtime::builder()
        .postgres(env.pool.clone())
        .nats(env.nats_url.as_str(), async_nats::ConnectOptions::new())
        .subject_prefix(prefix)
        .stream(env.stream.clone())
        .partitions(partitions)
        .key_provider(std::sync::Arc::new(
            edupulse_events::privacy::LocalKeyProvider::new(env.master.clone()),
        ))
        .build()
        .await
}

#[tokio::test]
async fn a_prefix_that_captures_other_subjects_is_refused_before_any_stream_exists() {
    let env = TestEnv::new().await;
    for prefix in [
        "*",
        ">",
        "edupulse.*",
        "_INBOX",
        "$JS",
        "a..b",
        "with space",
    ] {
        match build(&env, prefix, 4).await {
            Err(RuntimeError::Publish(PublishError::Prefix(err))) => {
                assert_eq!(err.prefix, prefix);
            }
            other => panic!("`{prefix}` was accepted: {:?}", other.map(|_| ())),
        }
    }
    let js = async_nats::jetstream::new(env.nats.clone());
    assert!(
        js.get_stream(&env.stream).await.is_err(),
        "a stream was provisioned"
    );
    // The control: the test's own prefix is accepted.
    build(&env, &env.prefix, 4).await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn a_partition_count_other_than_the_stores_is_refused_naming_both() {
    // The environment's store recorded 4 partitions when it migrated.
    let env = TestEnv::new().await;
    match build(&env, &env.prefix, 8).await {
        Err(RuntimeError::Store(StoreError::PartitionMismatch {
            recorded,
            configured,
        })) => {
            assert_eq!((recorded, configured), (4, 8));
            let message = StoreError::PartitionMismatch {
                recorded,
                configured,
            }
            .to_string();
            assert!(message.contains('4') && message.contains('8'), "{message}");
        }
        other => panic!("8 partitions accepted: {:?}", other.map(|_| ())),
    }
    // A writer that builds its store by hand is told too.
    let writer = Store::new(env.pool.clone(), env.prefix.clone()).with_partitions(16);
    assert!(matches!(
        writer.check_partitions().await,
        Err(StoreError::PartitionMismatch {
            recorded: 4,
            configured: 16
        })
    ));
    build(&env, &env.prefix, 4).await.unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn a_schema_name_with_a_comma_is_one_schema_not_a_search_path() {
    let schema = format!("t_{},public", Uuid::now_v7().simple());
    let base = PgConnectOptions::from_str(&database_url()).unwrap();
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(base.clone())
        .await
        .unwrap();
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&admin)
        .await
        .unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(in_schema(base, &schema).unwrap())
        .await
        .unwrap();
    let tables = async |schema: &str| -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = $1")
            .bind(schema)
            .fetch_one(&admin)
            .await
            .unwrap()
    };
    let public_before = tables("public").await;
    Store::new(pool.clone(), "t").migrate().await.unwrap();
    assert!(tables(&schema).await > 0, "no table in the schema");
    assert_eq!(
        tables("public").await,
        public_before,
        "the store ran in public"
    );
    pool.close().await;
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn stream_settings_are_provisioned_and_a_shorter_duplicate_window_is_refused() {
    use edupulse_events::publish::StreamSettings;
    use std::time::Duration;

    let env = TestEnv::new().await;
    let settings = StreamSettings::new("", "")
        .with_max_age(Duration::from_secs(3_600))
        .with_duplicate_window(Duration::from_secs(600));
    let runtime = Runtime::builder()
        .postgres(env.pool.clone())
        .nats(env.nats_url.as_str(), async_nats::ConnectOptions::new())
        .subject_prefix(env.prefix.clone())
        .stream(env.stream.clone())
        .partitions(4)
        .key_provider(std::sync::Arc::new(
            edupulse_events::privacy::LocalKeyProvider::new(env.master.clone()),
        ))
        .stream_settings(settings.clone())
        .build()
        .await
        .unwrap();
    let mut stream = async_nats::jetstream::new(env.nats.clone())
        .get_stream(&env.stream)
        .await
        .unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert_eq!(config.max_age, Duration::from_secs(3_600));
    assert_eq!(config.duplicate_window, Duration::from_secs(600));
    drop(runtime);

    // A relay that needs a longer window than the stream keeps is refused: a crash between
    // publish and bookkeeping recovered after the stream's window would duplicate events.
    let longer = edupulse_events::publish::Publisher::provision(
        env.nats.clone(),
        StreamSettings::new(&env.stream, &env.prefix)
            .with_duplicate_window(Duration::from_secs(1_200)),
    )
    .await;
    match longer {
        Err(PublishError::IncompatibleStream { setting, .. }) => {
            assert_eq!(setting, "duplicate window");
        }
        other => panic!("accepted: {:?}", other.map(|_| ())),
    }
    env.cleanup().await;
}

/// A service's own schema through the builder: created when missing (a name that needs
/// quoting, with capitals, a backslash, a space and a comma), the store migrated into it and nowhere else,
/// and appends through the runtime's pool land there. A name PostgreSQL cannot hold is
/// refused before anything is created.
#[tokio::test]
async fn the_builders_schema_is_created_quoted_and_holds_the_store() {
    let env = TestEnv::new().await;
    let schema = format!("Les\\sons, {}", Uuid::now_v7().simple());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(PgConnectOptions::from_str(&database_url()).unwrap())
        .await
        .unwrap();
    let tables = async |schema: &str| -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = $1")
            .bind(schema)
            .fetch_one(&admin)
            .await
            .unwrap()
    };
    let public_before = tables("public").await;
    let builder = || {
        Runtime::builder()
            .postgres(env.pool.clone())
            .nats(env.nats_url.as_str(), async_nats::ConnectOptions::new())
            .subject_prefix(env.prefix.clone())
            .stream(env.stream.clone())
            .key_provider(std::sync::Arc::new(
                edupulse_events::privacy::LocalKeyProvider::new(env.master.clone()),
            ))
    };
    let refused = builder().schema("a\0b").build().await.unwrap_err();
    assert!(matches!(refused, RuntimeError::Schema(_)), "{refused}");

    let runtime = builder().schema(schema.clone()).build().await.unwrap();
    assert!(
        tables(&schema).await > 0,
        "no table in the service's schema"
    );
    assert_eq!(
        tables("public").await,
        public_before,
        "the store ran in public"
    );
    let quiz_id = Uuid::now_v7();
    let store = runtime.store();
    let mut tx = store.pool().begin().await.unwrap();
    let event = edupulse_events::Envelope::new(&edupulse_domain::QuizSubmitted {
        quiz_id,
        student_id: Uuid::now_v7(),
        student_name: "Ada".to_owned().into(),
        score: 0.5,
        answers: vec![],
    })
    .unwrap();
    store
        .append(
            &mut tx,
            edupulse_events::store::ExpectedVersion::NoStream,
            &[event],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let in_schema: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".events WHERE aggregate_id = $1",
        schema.replace('"', "\"\"")
    ))
    .bind(quiz_id)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(in_schema, 1);
    // The service's tables are where the runtime's own pool looks, and only there.
    let search_path: String = sqlx::query_scalar("SHOW search_path")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(search_path, format!("\"{schema}\""));

    store.pool().close().await;
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    env.cleanup().await;
}

/// A production role usually may not create schemas (no CREATE on the database). Given a
/// schema an administrator made for it, `pool_in_schema` uses it without trying to create
/// it, and the store migrates into it; one that is missing, which it may not create, is
/// `SchemaError::Create`.
#[tokio::test]
async fn a_role_that_may_not_create_schemas_uses_the_one_made_for_it() {
    common::ensure_services();
    let id = Uuid::now_v7().simple().to_string();
    let (role, schema) = (format!("r_{id}"), format!("s_{id}"));
    let base = PgConnectOptions::from_str(&database_url()).unwrap();
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(base.clone())
        .await
        .unwrap();
    for statement in [
        format!("CREATE ROLE {role} LOGIN"),
        format!("CREATE SCHEMA {schema} AUTHORIZATION {role}"),
    ] {
        sqlx::query(&statement).execute(&admin).await.unwrap();
    }
    let may_create: bool =
        sqlx::query_scalar("SELECT has_database_privilege($1, current_database(), 'CREATE')")
            .bind(&role)
            .fetch_one(&admin)
            .await
            .unwrap();
    assert!(!may_create, "the role must not be able to create schemas");
    let as_role = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(base.username(&role))
        .await
        .unwrap();

    let pool = edupulse_events::store::pool_in_schema(&as_role, &schema)
        .await
        .unwrap();
    Store::new(pool.clone(), "t").migrate().await.unwrap();
    let missing = edupulse_events::store::pool_in_schema(&as_role, &format!("{schema}_x"))
        .await
        .unwrap_err();
    assert!(
        matches!(missing, edupulse_events::store::SchemaError::Create(_)),
        "{missing}"
    );

    pool.close().await;
    as_role.close().await;
    for statement in [
        format!("DROP SCHEMA {schema} CASCADE"),
        format!("DROP ROLE {role}"),
    ] {
        sqlx::query(&statement).execute(&admin).await.unwrap();
    }
    admin.close().await;
}
