//! Why a received message (from JetStream or the in-process bus) could not become a typed
//! event, and whose fault that is: what a consumer may do with it.

use thiserror::Error;

use crate::error::DecodeError;
#[cfg(feature = "nats")]
use crate::publish::ReceiveError;
use crate::store::StoreError;

/// Why a received message could not be turned into a typed event.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Not a message this library published.
    #[cfg(feature = "nats")]
    #[error(transparent)]
    Receive(#[from] ReceiveError),
    /// Its personal data could not be opened (altered or moved ciphertext, or no key store).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The payload does not decode with this binary's types.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A header contradicts the payload, another header or the subject the message came on:
    /// not what the relay publishes, so not trusted.
    #[error("message header `{header}` {reason}")]
    Inconsistent {
        /// The header that does not fit.
        header: &'static str,
        /// What it contradicts.
        reason: &'static str,
    },
}

/// Whose fault a failed decode is: what a consumer may do with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The message itself (bad bytes or headers, an unknown type, a payload that does not
    /// fit, a forged or altered sealed value): it will never decode, so set it aside.
    Message,
    /// The database or the key provider failed for now: retry the message later.
    Transient,
    /// This process is misconfigured (a wrong master key, a key table that lacks keys, no key
    /// store): the message is fine, and must wait until an operator fixes the cause.
    Configuration,
}

impl MessageError {
    /// Whose fault this is; only [`Fault::Message`] may set a message aside.
    pub fn fault(&self) -> Fault {
        use crate::privacy::{KeyError, KeyStoreError, PrivacyError};
        match self {
            #[cfg(feature = "nats")]
            MessageError::Receive(_) => Fault::Message,
            MessageError::Decode(_) | MessageError::Inconsistent { .. } => Fault::Message,
            MessageError::Store(err) => match err {
                StoreError::Privacy(PrivacyError::KeyMissing { .. })
                | StoreError::Keys(
                    KeyStoreError::KeyMissing { .. } | KeyStoreError::Key(KeyError::Unwrap { .. }),
                )
                | StoreError::NoKeyStore { .. } => Fault::Configuration,
                StoreError::Privacy(_)
                | StoreError::Corrupt { .. }
                | StoreError::Unregistered(_)
                | StoreError::PiiWithoutOwner { .. } => Fault::Message,
                _ => Fault::Transient,
            },
        }
    }
}
