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

pub mod canary;
mod compact;
mod erasure;
mod error;
mod follow;
mod guard;
mod key;
pub(crate) mod keystore;
mod pii;
pub(crate) mod probe;
mod provider;
mod rotate;
pub(crate) mod seal;

pub use erasure::{DataSubjectErased, ErasureReceipt, Scrub};
pub use error::{KeyError, PrivacyError};
pub use guard::reveal;
pub(crate) use guard::{marking, unwrap_marked};
pub use key::DataKey;
pub(crate) use keystore::Destroyed;
pub use keystore::{KEY_CACHE_TTL, KeyStore, KeyStoreError};
pub(crate) use pii::is_erased_json;
pub use pii::{Erasable, Pii, PiiOwner, erased_json};
pub use provider::{KeyProvider, LocalKeyProvider, MASTER_KEY_ENV, PREVIOUS_MASTER_KEYS_ENV};
pub(crate) use seal::{FieldContext, SealedField};
pub use seal::{SEALED_FORM_PATTERN, SEALED_MARKER};
pub(crate) use seal::{open, seal, sealed_subject};
