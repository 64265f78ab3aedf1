//! Data keys against a real PostgreSQL: created once per subject even when first uses race,
//! refused after erasure, and an erasure waits for an append that holds the subject's key.

mod common;

use std::sync::Arc;

use common::TestEnv;
use edupulse_events::__private::keys::{
    FieldContext, destroy, key_for_append, key_for_read, open, seal,
};
use edupulse_events::Uuid;
use edupulse_events::privacy::Scrub;
use edupulse_events::privacy::{DataKey, KeyStore, LocalKeyProvider};
use edupulse_events::store::StoreError;

fn key_store() -> Arc<KeyStore> {
    Arc::new(KeyStore::new(Arc::new(LocalKeyProvider::new(
        DataKey::generate(),
    ))))
}

/// Takes (creating if need be) the subject's key in a committed transaction; its version.
async fn key_in_own_transaction(env: &TestEnv, keys: &KeyStore, subject: Uuid) -> u32 {
    let mut tx = env.pool.begin().await.unwrap();
    let (version, _) = key_for_append(keys, &mut tx, subject).await.unwrap();
    tx.commit().await.unwrap();
    version
}

/// Waits until an erasure is seen blocked on the subject's lock (an append holds it), failing
/// if the erasure finishes first.
async fn until_erasure_waits<T>(env: &TestEnv, erasing: &tokio::task::JoinHandle<T>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND query LIKE '%edupulse-subject%'",
        )
        .fetch_one(&env.pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            !erasing.is_finished(),
            "the erasure did not wait for the append"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the erasure never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn racing_first_uses_of_a_subject_all_get_its_one_key() {
    let env = TestEnv::new().await;
    let keys = key_store();
    let subject = Uuid::now_v7();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (pool, keys) = (env.pool.clone(), keys.clone());
        tasks.push(tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            let (version, key) = key_for_append(&keys, &mut tx, subject).await.unwrap();
            tx.commit().await.unwrap();
            (version, key)
        }));
    }
    let mut got = Vec::new();
    for task in tasks {
        got.push(task.await.unwrap());
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM subject_keys WHERE subject_id = $1")
        .bind(subject)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1, "one key row per subject");
    let read = key_for_read(&keys, &env.pool, subject, 1)
        .await
        .unwrap()
        .expect("the key is readable");
    // Every writer's key opens what the stored key seals, and vice versa.
    for (version, key) in &got {
        assert_eq!(*version, 1);
        let ctx = FieldContext {
            event_id: Uuid::nil(),
            event_type: "probe",
            version: 1,
            field: "probe",
        };
        let sealed = seal(key, subject, 1, &ctx, b"x");
        assert!(open(&read, &ctx, &sealed).is_ok());
    }
    env.cleanup().await;
}

#[tokio::test]
async fn an_erased_subject_gets_no_new_key_and_its_old_one_is_gone() {
    let env = TestEnv::new().await;
    let keys = key_store();
    let subject = Uuid::now_v7();
    key_in_own_transaction(&env, &keys, subject).await;
    assert!(
        key_for_read(&keys, &env.pool, subject, 1)
            .await
            .unwrap()
            .is_some()
    );

    let mut tx = env.pool.begin().await.unwrap();
    assert_eq!(
        destroy(&keys, &mut tx, subject, "request 42")
            .await
            .unwrap()
            .keys,
        1
    );
    tx.commit().await.unwrap();

    assert!(
        key_for_read(&keys, &env.pool, subject, 1)
            .await
            .unwrap()
            .is_none()
    );
    let mut tx = env.pool.begin().await.unwrap();
    let err = key_for_append(&keys, &mut tx, subject).await.unwrap_err();
    assert!(
        matches!(err, StoreError::SubjectErased { subject: s } if s == subject),
        "{err}"
    );
    tx.rollback().await.unwrap();
    // Allowed again explicitly: a version above the destroyed one, never the old one revived.
    assert!(env.store.allow_new_keys(subject).await.unwrap());
    assert!(!env.store.allow_new_keys(Uuid::now_v7()).await.unwrap());
    let version = key_in_own_transaction(&env, &keys, subject).await;
    assert_eq!(version, 2);
    env.cleanup().await;
}

#[tokio::test]
async fn an_erasure_waits_for_an_append_holding_the_subjects_key() {
    let env = TestEnv::new().await;
    let keys = key_store();
    let subject = Uuid::now_v7();
    key_in_own_transaction(&env, &keys, subject).await;

    let mut append = env.pool.begin().await.unwrap();
    key_for_append(&keys, &mut append, subject).await.unwrap();
    let erasing = {
        let (pool, keys) = (env.pool.clone(), keys.clone());
        tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            let destroyed = destroy(&keys, &mut tx, subject, "request 43").await;
            destroyed.map(|d| (d.keys, tx))
        })
    };
    // The erasure must be seen waiting on the append's lock before the append commits.
    until_erasure_waits(&env, &erasing).await;
    append.commit().await.unwrap();
    let (n, tx) = erasing.await.unwrap().unwrap();
    tx.commit().await.unwrap();
    assert_eq!(n, 1);
    env.cleanup().await;
}

#[tokio::test]
async fn erasing_a_subject_destroys_its_keys_and_appends_a_pii_free_event() {
    let env = TestEnv::new().await;
    let keys = env.keys.clone();
    let subject = Uuid::now_v7();
    key_in_own_transaction(&env, &keys, subject).await;

    let reason = format!("GDPR request {}", Uuid::now_v7());
    let receipt = env
        .store
        .erase_subject(subject, &reason, Scrub::KeysOnly)
        .await
        .unwrap();
    assert_eq!(receipt.subject, subject);
    assert_eq!(receipt.keys_destroyed, 1);
    assert!(
        key_for_read(&keys, &env.pool, subject, 1)
            .await
            .unwrap()
            .is_none()
    );

    // The event is in the log and waiting for the relay, and it does not carry the reason.
    let (event_type, subjects, payload): (String, Vec<Uuid>, String) = sqlx::query_as(
        "SELECT event_type, data_subjects, payload::text FROM events WHERE event_id = $1",
    )
    .bind(receipt.event_id)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(event_type, "privacy.subject_erased");
    assert_eq!(subjects, vec![subject]);
    assert!(!payload.contains(&reason));
    let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE position = $1")
        .bind(receipt.position)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(waiting, 1);
    let stored_reason: String =
        sqlx::query_scalar("SELECT reason FROM erased_subjects WHERE subject_id = $1")
            .bind(subject)
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(stored_reason, reason);
    env.cleanup().await;
}

#[tokio::test]
async fn an_erasure_waits_for_an_append_creating_the_subjects_first_key() {
    let env = TestEnv::new().await;
    let keys = env.keys.clone();
    let subject = Uuid::now_v7();
    // The append creates the key; its row is not visible to anyone until it commits.
    let mut append = env.pool.begin().await.unwrap();
    key_for_append(&keys, &mut append, subject).await.unwrap();
    let erasing = {
        let store = env.store.clone();
        tokio::spawn(async move {
            store
                .erase_subject(subject, "request 44", Scrub::KeysOnly)
                .await
        })
    };
    until_erasure_waits(&env, &erasing).await;
    append.commit().await.unwrap();
    let receipt = erasing.await.unwrap().unwrap();
    assert_eq!(
        receipt.keys_destroyed, 1,
        "the key created meanwhile is destroyed"
    );
    assert!(
        key_for_read(&keys, &env.pool, subject, 1)
            .await
            .unwrap()
            .is_none()
    );
    let mut tx = env.pool.begin().await.unwrap();
    assert!(matches!(
        key_for_append(&keys, &mut tx, subject).await,
        Err(StoreError::SubjectErased { .. })
    ));
    tx.rollback().await.unwrap();
    env.cleanup().await;
}
