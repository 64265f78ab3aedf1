//! The PostgreSQL key source: the [`KeyStore`] (keys in the store's own tables, the subject's
//! advisory lock ordering appends and erasures, a short-lived cache for reading).

use sqlx::{PgConnection, PgPool, Postgres};
use uuid::Uuid;

use crate::privacy::{DataKey, Destroyed, KeyStore};
use crate::store::StoreError;
use crate::store::flow::KeySource;
use crate::store::sealing::ReadKeys;

impl KeySource<Postgres> for KeyStore {
    async fn key_for_append(
        &self,
        tx: &mut PgConnection,
        subject: Uuid,
    ) -> Result<(u32, DataKey), StoreError> {
        KeyStore::key_for_append(self, tx, subject)
            .await?
            .ok_or(StoreError::SubjectErased { subject })
    }

    async fn keys_for_read(
        &self,
        pool: &PgPool,
        wanted: &[(Uuid, u32)],
    ) -> Result<ReadKeys, StoreError> {
        Ok(KeyStore::keys_for_read(self, pool, wanted).await?)
    }

    /// On the command's own connection: holding it while waiting for another could exhaust
    /// the pool, every command holding one and waiting for a second.
    async fn keys_for_read_in(
        &self,
        tx: &mut PgConnection,
        _pool: &PgPool,
        wanted: &[(Uuid, u32)],
    ) -> Result<ReadKeys, StoreError> {
        Ok(KeyStore::keys_for_read(self, &mut *tx, wanted).await?)
    }

    async fn destroy(
        &self,
        tx: &mut PgConnection,
        subject: Uuid,
        reason: &str,
    ) -> Result<Destroyed, StoreError> {
        Ok(KeyStore::destroy(self, tx, subject, reason).await?)
    }

    async fn allow_new_keys(&self, pool: &PgPool, subject: Uuid) -> Result<bool, StoreError> {
        Ok(KeyStore::allow_new_keys(self, pool, subject).await?)
    }

    fn evict(&self, subject: Uuid) {
        KeyStore::evict(self, subject);
    }
}
