//! Privacy errors. They name events, fields and subjects, never a value or a key.

use thiserror::Error;
use uuid::Uuid;

/// Why a sealed field could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrivacyError {
    /// The sealed value does not open with its subject's key in this place: it was moved from
    /// another field or event, altered, or sealed with another key.
    #[error(
        "field `{field}` of event {event_id} does not open with the key of subject {subject} \
         (version {key_version}): moved from another field or event, altered, or sealed with \
         another key"
    )]
    Undecryptable {
        /// The event read.
        event_id: Uuid,
        /// The field's path in the payload.
        field: String,
        /// The data subject the value claims to belong to.
        subject: Uuid,
        /// The key version it claims.
        key_version: u32,
    },
    /// The subject has no key of this version and no erasure record: the store points at
    /// the wrong schema or database, the key table was restored from an older backup, or the
    /// value was forged. Only an erasure makes a value read as erased.
    #[error(
        "field `{field}` of event {event_id} is sealed with key version {key_version} of \
         subject {subject}, which this key table neither holds nor records as erased: check \
         that the store points at the right schema and that the key table was not restored \
         from an older backup"
    )]
    KeyMissing {
        /// The event read.
        event_id: Uuid,
        /// The field's path in the payload.
        field: String,
        /// The data subject the value claims to belong to.
        subject: Uuid,
        /// The key version it claims.
        key_version: u32,
    },
    /// The object under `$pii` is not a sealed value this version understands.
    #[error("field `{field}` of event {event_id} is not a well-formed sealed value: {reason}")]
    Malformed {
        /// The event read.
        event_id: Uuid,
        /// The field's path in the payload.
        field: String,
        /// What is wrong with its form.
        reason: &'static str,
    },
}

/// Why a data key could not be wrapped or unwrapped.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The wrapped key does not open with the master key for this subject and version.
    #[error(
        "the stored key of subject {subject} (version {key_version}) does not open with the \
         master key: a different master key, or a key row moved or altered"
    )]
    Unwrap {
        /// The data subject.
        subject: Uuid,
        /// The key version.
        key_version: u32,
    },
    /// The master key is missing or unusable.
    #[error("master key unavailable: {0}")]
    MasterKey(String),
}
