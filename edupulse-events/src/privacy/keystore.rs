//! Data keys in PostgreSQL: created on first use (race-free), refused once a subject is
//! erased, held briefly in memory for reading.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::key::DataKey;
pub use super::key_outcome::{Destroyed, KeyStoreError};
use super::provider::KeyProvider;

/// Appends and erasures are ordered by the subject's lock, and each reads the key table after
/// taking it. That holds only when every statement sees what committed before it started:
/// under REPEATABLE READ or SERIALIZABLE, an append that waited for an erasure would still see
/// the destroyed key (and no tombstone), and an erasure would miss a key created while it
/// waited.
fn require_read_committed(isolation: String) -> Result<(), KeyStoreError> {
    if isolation == "read committed" {
        Ok(())
    } else {
        Err(KeyStoreError::IsolationLevel { isolation })
    }
}

/// The newest key of a subject, with its tombstone's `allow_new_keys` and `last_key_version`
/// if it was ever erased.
type KeyRow = (i32, Vec<u8>, Option<bool>, Option<i32>);

// One lock per subject (per store schema): appends hold it shared, an erasure exclusively.
// Each also reports the transaction's isolation level: see `require_read_committed`.
const SUBJECT_LOCK_SHARED: &str = "SELECT current_setting('transaction_isolation') \
     FROM (SELECT pg_advisory_xact_lock_shared( \
     hashtext(current_schema() || ':edupulse-subject'), hashtext($1::text))) AS locked";
const SUBJECT_LOCK_EXCLUSIVE: &str = "SELECT current_setting('transaction_isolation') \
     FROM (SELECT pg_advisory_xact_lock( \
     hashtext(current_schema() || ':edupulse-subject'), hashtext($1::text))) AS locked";

/// How long an unwrapped key stays in memory for reading. Erasure evicts at once in this
/// process; other processes evict when they see the erasure event, or after this long.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(60);

/// The data keys of one store.
pub struct KeyStore {
    pub(super) provider: Arc<dyn KeyProvider>,
    cache: Mutex<Cache>,
    evicted: tokio::sync::broadcast::Sender<Uuid>,
}

/// Unwrapped keys with the time each was fetched.
struct Cache {
    entries: HashMap<(Uuid, u32), (Instant, DataKey)>,
    swept: Instant,
    /// Evictions so far. A key fetched while an eviction happened is not cached: it may have
    /// been read just before its subject's erasure committed.
    evictions: u64,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore").finish_non_exhaustive()
    }
}

impl KeyStore {
    /// Keys wrapped and unwrapped by `provider`.
    pub fn new(provider: Arc<dyn KeyProvider>) -> Self {
        KeyStore {
            provider,
            cache: Mutex::new(Cache {
                entries: HashMap::new(),
                swept: Instant::now(),
                evictions: 0,
            }),
            evicted: tokio::sync::broadcast::channel(256).0,
        }
    }

    /// The key to seal `subject`'s data with, inside the appending transaction `tx`: the
    /// newest version, created if the subject has none; `None` once the subject is erased.
    ///
    /// The subject's lock is held shared until `tx` ends, so an erasure of the subject waits
    /// for this append: the append lands before the erasure (and is shredded with it) or,
    /// if the erasure committed first, finds the subject erased (`None`).
    ///
    /// A first key is created inside `tx` and stays uncommitted until `tx` ends. One `append`
    /// call takes its subjects' keys in a fixed order; a transaction that makes several calls
    /// for new subjects should make them in subject order too, or two such transactions that
    /// meet in opposite orders deadlock, and PostgreSQL aborts one (SQLSTATE 40P01: retry it).
    /// Creating the key on a second connection instead would avoid this but could exhaust the
    /// pool under load, every appending transaction waiting for a connection held by another.
    pub(crate) async fn key_for_append(
        &self,
        tx: &mut PgConnection,
        subject: Uuid,
    ) -> Result<Option<(u32, DataKey)>, KeyStoreError> {
        // Held until `tx` ends; an erasure takes it exclusively, so it waits for this append,
        // also one creating the subject's first key (a row the erasure could not yet see).
        // The key row itself needs no row lock: the SELECT below runs after this lock is
        // granted, in a snapshot (READ COMMITTED, checked) that shows any erasure that held it.
        let isolation: String = sqlx::query_scalar(SUBJECT_LOCK_SHARED)
            .bind(subject)
            .fetch_one(&mut *tx)
            .await?;
        require_read_committed(isolation)?;
        loop {
            let row: Option<KeyRow> = sqlx::query_as(
                "SELECT k.key_version, k.wrapped, t.allow_new_keys, t.last_key_version \
                 FROM subject_keys k LEFT JOIN erased_subjects t USING (subject_id) \
                 WHERE k.subject_id = $1 ORDER BY k.key_version DESC LIMIT 1",
            )
            .bind(subject)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((version, wrapped, allowed, last_destroyed)) = row {
                // A key that outlived its subject's erasure is never used.
                let erased_since = allowed == Some(false) || last_destroyed >= Some(version);
                if erased_since {
                    return Ok(None);
                }
                // Positive by the table's CHECK (key_version >= 1).
                let version = version.unsigned_abs();
                // The subject is locked either way; the cache only spares the unwrapping.
                if let Some(key) = self.cached(subject, version) {
                    return Ok(Some((version, key)));
                }
                let epoch = self.epoch();
                let key = self.provider.unwrap(subject, version, &wrapped).await?;
                self.remember(subject, version, &key, epoch);
                return Ok(Some((version, key)));
            }
            let erased: Option<(bool, i32)> = sqlx::query_as(
                "SELECT allow_new_keys, last_key_version FROM erased_subjects \
                 WHERE subject_id = $1",
            )
            .bind(subject)
            .fetch_optional(&mut *tx)
            .await?;
            let version: i32 = match erased {
                Some((false, _)) => return Ok(None),
                // Allowed again after an erasure: a version above every destroyed one.
                Some((true, last)) => last + 1,
                None => 1,
            };
            let key = DataKey::generate();
            let wrapped = self
                .provider
                .wrap(subject, version.unsigned_abs(), &key)
                .await?;
            // A racing first use may have inserted the same version: then read its key instead
            // (the loop), so every writer seals with the one stored key.
            let inserted = sqlx::query(
                "INSERT INTO subject_keys (subject_id, key_version, wrapped) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(subject)
            .bind(version)
            .bind(&wrapped)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok(Some((version.unsigned_abs(), key)));
            }
        }
    }

    /// The key to open data sealed for `subject` at `key_version`; `None` once an erasure
    /// destroyed it. A key neither there nor erased is [`KeyStoreError::KeyMissing`].
    pub(crate) async fn key_for_read(
        &self,
        pool: &PgPool,
        subject: Uuid,
        key_version: u32,
    ) -> Result<Option<DataKey>, KeyStoreError> {
        self.keys_for_read(pool, &[(subject, key_version)])
            .await?
            .remove(&(subject, key_version))
            .ok_or(KeyStoreError::KeyMissing {
                subject,
                key_version,
            })
    }

    /// The keys to open each of `wanted` (subject, key version), fetched in one query for
    /// those not cached: `Some` key, or `None` where the subject's erasure record covers that
    /// version (every version while the subject may have no new keys; those up to the last
    /// destroyed one after [`allow_new_keys`](Self::allow_new_keys)). A key that is neither there nor destroyed is absent
    /// from the map: the caller reports it, rather than reading the value as erased. Read
    /// through `db`: the pool, or the connection of a transaction that must not wait for a
    /// second one.
    pub(crate) async fn keys_for_read<'c>(
        &self,
        db: impl sqlx::PgExecutor<'c>,
        wanted: &[(Uuid, u32)],
    ) -> Result<HashMap<(Uuid, u32), Option<DataKey>>, KeyStoreError> {
        let mut found = HashMap::new();
        let mut missing = std::collections::HashSet::new();
        for &(subject, version) in wanted {
            if found.contains_key(&(subject, version)) {
                continue;
            }
            match self.cached(subject, version) {
                Some(key) => {
                    found.insert((subject, version), Some(key));
                }
                // A version beyond the table's `integer` has no key: left absent, reported as
                // missing by the caller.
                None => {
                    if let Ok(version) = i32::try_from(version) {
                        missing.insert((subject, version));
                    }
                }
            }
        }
        let (missing_subjects, missing_versions): (Vec<Uuid>, Vec<i32>) =
            missing.into_iter().unzip();
        let epoch = self.epoch();
        if missing_subjects.is_empty() {
            return Ok(found);
        }
        // One statement, so the key and the tombstone are read from one snapshot: an erasure
        // deletes the one and writes the other in one transaction.
        let rows: Vec<(Uuid, i32, Option<Vec<u8>>, bool)> = sqlx::query_as(
            "SELECT w.subject_id, w.key_version, k.wrapped, \
             coalesce(NOT t.allow_new_keys OR t.last_key_version >= w.key_version, false) \
             FROM unnest($1::uuid[], $2::int[]) AS w(subject_id, key_version) \
             LEFT JOIN subject_keys k USING (subject_id, key_version) \
             LEFT JOIN erased_subjects t ON t.subject_id = w.subject_id",
        )
        .bind(&missing_subjects)
        .bind(&missing_versions)
        .fetch_all(db)
        .await?;
        for (subject, version, wrapped, erased) in rows {
            // Asked for as a u32 above.
            let version = version.unsigned_abs();
            match wrapped {
                Some(wrapped) => {
                    let key = self.provider.unwrap(subject, version, &wrapped).await?;
                    self.remember(subject, version, &key, epoch);
                    found.insert((subject, version), Some(key));
                }
                None if erased => {
                    found.insert((subject, version), None);
                }
                None => {}
            }
        }
        Ok(found)
    }

    /// The eviction count to pass to [`remember`](Self::remember), taken before a key is read.
    fn epoch(&self) -> u64 {
        self.cache.lock().expect("key cache lock").evictions
    }

    /// Caches a key read when the eviction count was `epoch`, unless an eviction (of any
    /// subject: they are rare) happened since: an erasure committing between the read and
    /// this call must not leave its subject's key cached.
    fn remember(&self, subject: Uuid, key_version: u32, key: &DataKey, epoch: u64) {
        let mut cache = self.cache.lock().expect("key cache lock");
        if cache.evictions != epoch {
            return;
        }
        // Built once here, so every clone handed out from the cache carries it.
        key.field_cipher();
        // Expired keys are dropped once per TTL, so unwrapped keys of subjects no longer read
        // do not stay in memory.
        if cache.swept.elapsed() >= KEY_CACHE_TTL {
            cache
                .entries
                .retain(|_, (at, _)| at.elapsed() < KEY_CACHE_TTL);
            cache.swept = Instant::now();
        }
        cache
            .entries
            .insert((subject, key_version), (Instant::now(), key.clone()));
    }

    /// Destroys every key of `subject` and records the tombstone, inside `tx`; waits for
    /// appends still holding or creating the subject's key. Evicts this process's cached keys
    /// (call [`KeyStore::evict`] again after `tx` commits: a read racing the erasure may have
    /// cached the key meanwhile).
    pub(crate) async fn destroy(
        &self,
        tx: &mut PgConnection,
        subject: Uuid,
        reason: &str,
    ) -> Result<Destroyed, KeyStoreError> {
        let isolation: String = sqlx::query_scalar(SUBJECT_LOCK_EXCLUSIVE)
            .bind(subject)
            .fetch_one(&mut *tx)
            .await?;
        require_read_committed(isolation)?;
        let erased_before: Option<bool> =
            sqlx::query_scalar("SELECT true FROM erased_subjects WHERE subject_id = $1")
                .bind(subject)
                .fetch_optional(&mut *tx)
                .await?;
        // Which partition held each key (schema-qualified and quoted, so the compaction
        // after the commit names the same table on any connection).
        let destroyed: Vec<(i32, String)> = sqlx::query_as(
            "DELETE FROM subject_keys WHERE subject_id = $1 \
             RETURNING key_version, (SELECT format('%I.%I', n.nspname, c.relname) \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE c.oid = subject_keys.tableoid)",
        )
        .bind(subject)
        .fetch_all(&mut *tx)
        .await?;
        let last = destroyed.iter().map(|(v, _)| *v).max().unwrap_or(0);
        sqlx::query(
            "INSERT INTO erased_subjects (subject_id, reason, last_key_version) \
             VALUES ($1, $2, $3) \
             ON CONFLICT (subject_id) DO UPDATE SET erased_at = now(), reason = $2, \
             allow_new_keys = false, \
             last_key_version = greatest(erased_subjects.last_key_version, $3)",
        )
        .bind(subject)
        .bind(reason)
        .bind(last)
        .execute(&mut *tx)
        .await?;
        self.evict(subject);
        let mut relations: Vec<String> = destroyed.iter().map(|(_, r)| r.clone()).collect();
        relations.dedup();
        // The compaction waits for snapshots taken before this transaction commits.
        let xid: String = sqlx::query_scalar("SELECT pg_current_xact_id()::xid::text")
            .fetch_one(&mut *tx)
            .await?;
        Ok(Destroyed {
            keys: destroyed.len() as u64,
            already_erased: erased_before.is_some() && destroyed.is_empty(),
            relations,
            xid: Some(xid),
        })
    }

    /// Lets an erased subject have personal data again (a person who comes back under the
    /// same id): the next append creates a key of a version above every destroyed one, so
    /// nothing sealed before the erasure ever opens again. `false` when the subject was never
    /// erased.
    pub(crate) async fn allow_new_keys(
        &self,
        pool: &PgPool,
        subject: Uuid,
    ) -> Result<bool, KeyStoreError> {
        let updated =
            sqlx::query("UPDATE erased_subjects SET allow_new_keys = true WHERE subject_id = $1")
                .bind(subject)
                .execute(pool)
                .await?
                .rows_affected();
        Ok(updated == 1)
    }

    /// Forgets `subject`'s cached keys (on seeing its erasure from another process).
    pub fn evict(&self, subject: Uuid) {
        let mut cache = self.cache.lock().expect("key cache lock");
        cache.entries.retain(|(s, _), _| *s != subject);
        cache.evictions += 1;
        drop(cache);
        // Nobody listening is fine.
        let _ = self.evicted.send(subject);
    }

    /// Every subject evicted from now on, as it happens: how a test or a read model learns
    /// that another process's erasure has reached this one.
    pub fn evictions(&self) -> tokio::sync::broadcast::Receiver<Uuid> {
        self.evicted.subscribe()
    }

    fn cached(&self, subject: Uuid, key_version: u32) -> Option<DataKey> {
        let mut cache = self.cache.lock().expect("key cache lock");
        match cache.entries.get(&(subject, key_version)) {
            Some((at, key)) if at.elapsed() < KEY_CACHE_TTL => Some(key.clone()),
            Some(_) => {
                cache.entries.remove(&(subject, key_version));
                None
            }
            None => None,
        }
    }
}
