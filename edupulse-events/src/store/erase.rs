//! Why an erasure failed. The erasure itself is the store's flow (`store/flow.rs`), the same
//! on PostgreSQL and SQLite.

use thiserror::Error;

use crate::envelope::EncodeError;
use crate::privacy::KeyStoreError;
use crate::store::StoreError;

/// Why an erasure did not happen (nothing was changed).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ErasureError {
    /// The key store failed (rotating the master key; an erasure's key errors arrive as
    /// [`StoreError::Keys`]).
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
    /// The store failed, or has no key store ([`StoreError::NoKeyStore`]).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The erasure event could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}
