//! Crypto-shredding of personal data: every `#[event(pii)]` value is sealed with its data
//! subject's own key before it leaves the process, so destroying that key erases the value from
//! every copy at once: the log, the outbox, the stream, its mirrors and every backup.
//!
//! Rewriting stored rows reaches one copy; JetStream keeps its own, a filtered purge leaves the
//! bytes on disk, deletes do not reach mirrors, and backups keep everything. A destroyed key
//! reaches them all.
//!
//! The store seals on append and opens on read by itself (given a [`KeyStore`]); this module
//! holds the parts: [`Pii`] (the field type that says whether a value was erased), [`DataKey`]
//! (one per data subject and key version, zeroized when dropped), sealing (AES-256-GCM-SIV with
//! the event id, type, version, field path, subject and key version bound as associated data,
//! so a sealed value moved to another field or event fails to open), [`SealedField`] (the
//! self-describing JSON form stored and published in place of the value), [`KeyProvider`] (who
//! wraps data keys with a master key; [`LocalKeyProvider`] ships, a KMS adapter can follow),
//! what an erasure records ([`DataSubjectErased`], [`ErasureReceipt`]; the erasure itself is
//! the stores' `erase_subject`) and the [`canary`] scan.

// Without a store: `Pii`, what an erasure records, the sealed form's shape (for the catalog).
mod erasure;
mod error;
mod form;
mod guard;
mod pii;
pub(crate) mod probe;

// With a store: the keys and the sealing.
#[cfg(feature = "store")]
mod key;
#[cfg(feature = "store")]
mod key_outcome;
#[cfg(feature = "store")]
mod provider;
#[cfg(feature = "store")]
pub(crate) mod seal;

// With PostgreSQL: its key table.
#[cfg(feature = "postgres")]
mod compact;
#[cfg(feature = "postgres")]
pub(crate) mod keystore;
#[cfg(feature = "postgres")]
mod rotate;

// With JetStream too: following other runtimes' erasures, and the scan of every copy.
#[cfg(feature = "nats")]
pub mod canary;
#[cfg(feature = "nats")]
mod follow;

pub use erasure::{DataSubjectErased, ErasureReceipt, Scrub};
pub use error::{KeyError, PrivacyError};
pub use form::{SEALED_FORM_PATTERN, SEALED_MARKER};
pub use guard::reveal;
pub(crate) use guard::{marking, unwrap_marked};
#[cfg(feature = "store")]
pub(crate) use pii::is_erased_json;
pub use pii::{Erasable, Pii, PiiOwner, erased_json};

#[cfg(feature = "store")]
pub use key::DataKey;
#[cfg(feature = "store")]
pub(crate) use key_outcome::Destroyed;
#[cfg(feature = "store")]
pub use key_outcome::KeyStoreError;
#[cfg(feature = "store")]
pub use provider::{KeyProvider, LocalKeyProvider, MASTER_KEY_ENV, PREVIOUS_MASTER_KEYS_ENV};
#[cfg(feature = "sqlite")]
pub(crate) use seal::sealed_subject;
#[cfg(feature = "store")]
pub(crate) use seal::{FieldContext, SealedField, open, seal};

#[cfg(feature = "postgres")]
pub use keystore::{KEY_CACHE_TTL, KeyStore};
