//! The `#[event(pii)]` fields of stored payloads: sealed with their owners' keys on the way in,
//! opened (or shown erased) on the way out. Works on the JSON by the descriptor's field list,
//! so the store never needs the Rust type.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use uuid::Uuid;

use crate::descriptor::EventDescriptor;
use crate::envelope::Envelope;
use crate::privacy::{
    DataKey, FieldContext, PrivacyError, SealedField, is_erased_json, open, seal,
};
use crate::registry::Registry;
use crate::store::StoreError;

/// The data subject a PII field belongs to, read from the owner field in the payload. `None`
/// when the owner is absent (an `Option` owner set to `None`).
fn owner_of(payload: &Value, owner: &str) -> Option<Uuid> {
    payload
        .get(owner)
        .and_then(Value::as_str)
        .and_then(|id| Uuid::parse_str(id).ok())
}

/// Each PII value of `payload` that must be sealed (non-null), with its owner.
fn pii_values<'p>(
    envelope: &'p Envelope,
    descriptor: &'static EventDescriptor,
) -> impl Iterator<Item = Result<(&'static str, Uuid), StoreError>> + 'p {
    descriptor.pii_fields().iter().filter_map(move |pii| {
        let value = envelope.payload.get(pii.field.json)?;
        if value.is_null() {
            return None;
        }
        Some(
            owner_of(&envelope.payload, pii.owner.json)
                .map(|owner| (pii.field.json, owner))
                .ok_or_else(|| StoreError::PiiWithoutOwner {
                    type_name: envelope.type_string(),
                    field: pii.field.json,
                    owner: pii.owner.json,
                }),
        )
    })
}

/// The descriptor of each of `events`, looked up once for the whole append; an unregistered
/// type is refused.
pub(crate) fn describe(events: &[Envelope]) -> Result<Vec<&'static EventDescriptor>, StoreError> {
    let registry = Registry::global();
    events
        .iter()
        .map(|e| {
            registry
                .get(&e.event_type, e.version)
                .ok_or_else(|| StoreError::Unregistered(e.type_string()))
        })
        .collect()
}

/// The owners of the present PII values of `events`, in order (keys are taken in this
/// order, so two appends needing the same subjects cannot deadlock); refuses PII without an
/// owner.
pub(crate) fn pii_owners(
    events: &[Envelope],
    descriptors: &[&'static EventDescriptor],
) -> Result<BTreeSet<Uuid>, StoreError> {
    let mut owners = BTreeSet::new();
    for (e, descriptor) in events.iter().zip(descriptors) {
        for value in pii_values(e, descriptor) {
            owners.insert(value?.1);
        }
    }
    Ok(owners)
}

/// The payload to store for each of `events`: sealed with its owners' keys from `keys` when it
/// has PII (`Some`), as it is otherwise (`None`).
pub(crate) fn seal_all(
    events: &[Envelope],
    descriptors: &[&'static EventDescriptor],
    keys: &HashMap<Uuid, (u32, DataKey)>,
) -> Result<Vec<Option<Value>>, StoreError> {
    events
        .iter()
        .zip(descriptors)
        .map(|(e, descriptor)| seal_one(e, descriptor, keys))
        .collect()
}

fn seal_one(
    e: &Envelope,
    descriptor: &'static EventDescriptor,
    keys: &HashMap<Uuid, (u32, DataKey)>,
) -> Result<Option<Value>, StoreError> {
    let mut sealed = None::<Value>;
    for value in pii_values(e, descriptor) {
        let (field, owner) = value?;
        let (key_version, key) = &keys[&owner];
        let payload = sealed.get_or_insert_with(|| e.payload.clone());
        let slot = payload.get_mut(field).expect("the field was just read");
        let plaintext = zeroize::Zeroizing::new(serde_json::to_vec(slot).expect("JSON value"));
        let ctx = FieldContext {
            event_id: e.id,
            event_type: &e.event_type,
            version: e.version,
            field,
        };
        *slot = seal(key, owner, *key_version, &ctx, &plaintext).to_json();
    }
    Ok(sealed)
}

/// One sealed value found in a read event: where it is, and what opens it.
pub(crate) struct Found {
    event: usize,
    descriptor: &'static EventDescriptor,
    pii_index: usize,
    sealed: SealedField,
}

impl Found {
    /// The key that opens it: (subject, key version).
    pub(crate) fn key_id(&self) -> (Uuid, u32) {
        (self.sealed.subject, self.sealed.key_version)
    }
}

/// Finds every sealed PII value of `events`, turning scrubbed ones into the field's erased
/// form on the way. With `sealing` (the store seals what it writes), a value in clear in a PII
/// field is refused; a value sealed for someone other than the field's owner always is.
pub(crate) fn find_sealed<E: AsMut<Envelope>>(
    events: &mut [E],
    sealing: bool,
) -> Result<Vec<Found>, StoreError> {
    let registry = Registry::global();
    let mut found = Vec::new();
    for (index, event) in events.iter_mut().enumerate() {
        let e = event.as_mut();
        let Some(descriptor) = registry.get(&e.event_type, e.version) else {
            continue;
        };
        for (pii_index, pii) in descriptor.pii_fields().iter().enumerate() {
            let Some(value) = e.payload.get(pii.field.json) else {
                continue;
            };
            if is_erased_json(value) {
                // Scrubbed: the ciphertext itself is gone.
                e.payload[pii.field.json] = descriptor.erased_pii(pii_index);
                continue;
            }
            let ctx = context(e, pii.field.json);
            let Some(sealed) = SealedField::from_json(value, &ctx) else {
                // This store seals every value it writes: one in clear was put there by
                // something else, and is refused rather than passed off as protected.
                if sealing && !value.is_null() {
                    return Err(PrivacyError::Malformed {
                        event_id: e.id,
                        field: pii.field.json.to_owned(),
                        reason: "personal data stored in clear, not sealed",
                    }
                    .into());
                }
                continue;
            };
            let sealed = sealed?;
            if owner_of(&e.payload, pii.owner.json) != Some(sealed.subject) {
                return Err(PrivacyError::Malformed {
                    event_id: e.id,
                    field: pii.field.json.to_owned(),
                    reason: "sealed for someone other than the field's owner",
                }
                .into());
            }
            found.push(Found {
                event: index,
                descriptor,
                pii_index,
                sealed,
            });
        }
    }
    Ok(found)
}

/// The keys a read asked for: `Some` key, or `None` where the subject's tombstone says the
/// key was destroyed. A key neither there nor destroyed is absent.
pub(crate) type ReadKeys = HashMap<(Uuid, u32), Option<DataKey>>;

/// Opens each of `found` in place with `keys`: the plaintext when its key is there, the
/// field's erased form when an erasure destroyed it. A value that does not open with its key,
/// or whose key is missing without an erasure, fails with a typed [`PrivacyError`].
pub(crate) fn open_found<E: AsMut<Envelope>>(
    events: &mut [E],
    found: Vec<Found>,
    keys: &ReadKeys,
) -> Result<(), StoreError> {
    for f in found {
        let e = events[f.event].as_mut();
        let descriptor = f.descriptor;
        let field = descriptor.pii_fields()[f.pii_index].field.json;
        let opened = match keys.get(&f.key_id()) {
            Some(Some(key)) => {
                let ctx = context(e, field);
                let plaintext = open(key, &ctx, &f.sealed)?;
                serde_json::from_slice(&plaintext).map_err(|_| PrivacyError::Malformed {
                    event_id: e.id,
                    field: field.to_owned(),
                    reason: "the opened value is not JSON",
                })?
            }
            Some(None) => descriptor.erased_pii(f.pii_index),
            None => {
                return Err(PrivacyError::KeyMissing {
                    event_id: e.id,
                    field: field.to_owned(),
                    subject: f.sealed.subject,
                    key_version: f.sealed.key_version,
                }
                .into());
            }
        };
        e.payload[field] = opened;
    }
    Ok(())
}

fn context<'e>(e: &'e Envelope, field: &'e str) -> FieldContext<'e> {
    FieldContext {
        event_id: e.id,
        event_type: &e.event_type,
        version: e.version,
        field,
    }
}
