//! Not public API. Used by generated code: every path `#[derive(DomainEvent)]` emits goes
//! through here, so a user's crate needs no direct dependency on what the runtime uses.

pub use ::core::option::Option;
pub use ::inventory;
pub use ::serde_json::Value as JsonValue;
pub use ::std::vec::Vec;
pub use ::uuid::Uuid;

pub use crate::descriptor::{EventDescriptor, Registration, Upcast};
pub use crate::event::{DomainEvent, EntityId, FieldName, PiiField, PiiMask, SubjectIds};
pub use crate::schema;

/// Whether two strings are equal, in a constant: how `aggregate_events!` checks that each
/// event belongs to the aggregate.
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Holds when the event's aggregate id type is `A`, the aggregate's.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not identified by `{A}`, the aggregate's id type",
    label = "its #[event(aggregate_id)] field has another type",
    note = "give every event of the aggregate the aggregate id type named after `by`"
)]
pub trait IdentifiedBy<A> {
    /// Never called: the bound is the check.
    fn check() {}
}

impl<E: DomainEvent<AggregateId = A>, A> IdentifiedBy<A> for E {}

/// What generated code needs for `#[event(pii)]` fields.
pub mod privacy {
    pub use crate::privacy::probe::{
        NotPii, PiiDebug, PiiDebugErasable, PiiDebugOpaque, UnmarkedField, UnmarkedHoldsNoPii,
        UnmarkedHoldsPii, assert_not_pii,
    };
    pub use crate::privacy::{Erasable, PiiOwner};

    /// The JSON of a replacement declared with `pii(erased = ...)`; its type is the field's.
    pub fn replacement_json<T: ::serde::Serialize>(value: T) -> ::serde_json::Value {
        ::serde_json::to_value(value).unwrap_or(::serde_json::Value::Null)
    }

    /// Compiles only when `T` can own personal data.
    pub fn assert_pii_owner<T: PiiOwner + ?Sized>() {}
}

/// The store's append statements with their binds, for the test that describes them on a
/// real database.
#[cfg(feature = "postgres")]
pub mod store {
    pub use crate::store::append_statements;
}

/// The key store's and sealing's parts beneath the stores' flow, for tests and benchmarks
/// that prove them one by one. Not for applications: destroying keys outside an erasure skips
/// the event other processes need, and sealing by hand skips the store's checks.
#[cfg(feature = "postgres")]
pub mod keys {
    use sqlx::{PgConnection, PgPool};
    use uuid::Uuid;

    use crate::privacy::keystore::Destroyed;
    use crate::privacy::{DataKey, KeyStore, KeyStoreError};
    use crate::store::StoreError;
    use crate::store::flow::KeySource;

    pub use crate::privacy::seal::{FieldContext, SealedField, open, seal};

    /// See `KeySource::key_for_append`.
    pub async fn key_for_append(
        keys: &KeyStore,
        tx: &mut PgConnection,
        subject: Uuid,
    ) -> Result<(u32, DataKey), StoreError> {
        KeySource::key_for_append(keys, tx, subject).await
    }

    /// The key that opens `subject`'s values of `key_version`; `None` once destroyed.
    pub async fn key_for_read(
        keys: &KeyStore,
        pool: &PgPool,
        subject: Uuid,
        key_version: u32,
    ) -> Result<Option<DataKey>, KeyStoreError> {
        keys.key_for_read(pool, subject, key_version).await
    }

    /// See `KeySource::destroy`.
    pub async fn destroy(
        keys: &KeyStore,
        tx: &mut PgConnection,
        subject: Uuid,
        reason: &str,
    ) -> Result<Destroyed, StoreError> {
        KeySource::destroy(keys, tx, subject, reason).await
    }
}
