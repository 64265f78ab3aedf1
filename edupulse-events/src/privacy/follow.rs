//! Other processes' erasures reach this one's key cache through the erasure event: a plain
//! NATS subscription sees it as soon as the relay publishes it, one relay round trip after
//! the erasure commits, instead of when the cached key expires.

use std::sync::{Arc, Weak};

use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::DomainEvent;

use super::erasure::DataSubjectErased;
use super::keystore::KeyStore;

impl KeyStore {
    /// Evicts the cached keys of every subject whose [`DataSubjectErased`] event is published
    /// under `prefix`, until the client closes or this key store is dropped. Returns once the
    /// server has the subscription, so no erasure published afterwards is missed.
    ///
    /// A message missed while disconnected leaves the key cached for at most
    /// [`KEY_CACHE_TTL`](super::KEY_CACHE_TTL); appends never use a cached key without locking
    /// its row, so they are refused at once either way.
    pub async fn follow_erasures(
        self: &Arc<Self>,
        client: &async_nats::Client,
        prefix: &str,
    ) -> Result<JoinHandle<()>, async_nats::SubscribeError> {
        let mut erasures = client.subscribe(DataSubjectErased::subject(prefix)).await?;
        // The SUB is on the wire once the flush returns.
        client.flush().await.map_err(|err| {
            async_nats::SubscribeError::with_source(
                async_nats::client::SubscribeErrorKind::Other,
                err,
            )
        })?;
        let keys: Weak<KeyStore> = Arc::downgrade(self);
        Ok(tokio::spawn(async move {
            while let Some(message) = erasures.next().await {
                let Some(keys) = keys.upgrade() else { break };
                if let Ok(erased) = serde_json::from_slice::<DataSubjectErased>(&message.payload) {
                    keys.evict(erased.subject_id);
                    crate::aggregate::forget_subject(erased.subject_id);
                } else {
                    tracing::warn!(
                        subject = %message.subject,
                        "ignored an erasure message whose body is not a DataSubjectErased event"
                    );
                }
            }
        }))
    }
}
