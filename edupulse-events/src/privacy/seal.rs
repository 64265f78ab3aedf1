//! Sealing one field value: XChaCha20-Poly1305 under the owner's data key, with the place the
//! value belongs to bound as associated data.

use base64ct::{Base64, Encoding};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde_json::{Map, Value, json};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::error::PrivacyError;
use super::key::DataKey;

/// The member that marks a sealed value in a payload: `{"$pii": {...}}`.
pub const SEALED_MARKER: &str = "$pii";
/// The form this code writes; a reader refuses forms it does not know.
const FORM_VERSION: u64 = 1;
/// Domain separation for the associated data, so it can never equal another protocol's.
const AAD_DOMAIN: &[u8] = b"edupulse-pii/v1";

/// Where a value lives: what the associated data binds it to.
#[derive(Debug, Clone, Copy)]
pub struct FieldContext<'a> {
    /// The event's id.
    pub event_id: Uuid,
    /// The event's type name, e.g. `quiz.submitted`.
    pub event_type: &'a str,
    /// The event's schema version.
    pub version: u32,
    /// The field's path in the payload (its wire name).
    pub field: &'a str,
}

/// A sealed value as stored and published: whose key opens it, the nonce, the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedField {
    /// The data subject whose key sealed it.
    pub subject: Uuid,
    /// That subject's key version.
    pub key_version: u32,
    nonce: [u8; 24],
    ciphertext: Vec<u8>,
}

/// Seals `plaintext` (the field value's JSON text) with `key`, the key of `subject` at
/// `key_version`, for the place `ctx`.
pub fn seal(
    key: &DataKey,
    subject: Uuid,
    key_version: u32,
    ctx: &FieldContext<'_>,
    plaintext: &[u8],
) -> SealedField {
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key.bytes()));
    let nonce = next_nonce();
    let aad = associated_data(ctx, subject, key_version);
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .expect("XChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
    SealedField {
        subject,
        key_version,
        nonce: nonce.into(),
        ciphertext,
    }
}

/// Opens `sealed` with `key` for the place `ctx`; the plaintext buffer is wiped when dropped.
pub fn open(
    key: &DataKey,
    ctx: &FieldContext<'_>,
    sealed: &SealedField,
) -> Result<Zeroizing<Vec<u8>>, PrivacyError> {
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key.bytes()));
    let aad = associated_data(ctx, sealed.subject, sealed.key_version);
    cipher
        .decrypt(
            XNonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| PrivacyError::Undecryptable {
            event_id: ctx.event_id,
            field: ctx.field.to_owned(),
            subject: sealed.subject,
            key_version: sealed.key_version,
        })
}

impl SealedField {
    /// The JSON that takes the value's place: `{"$pii": {"v": 1, "sub": ..., "kv": ...,
    /// "n": <base64 nonce>, "c": <base64 ciphertext>}}`. SQL and non-Rust consumers can see
    /// that a value is sealed and whose it is, and nothing else.
    pub fn to_json(&self) -> Value {
        json!({
            SEALED_MARKER: {
                "v": FORM_VERSION,
                "sub": self.subject,
                "kv": self.key_version,
                "n": Base64::encode_string(&self.nonce),
                "c": Base64::encode_string(&self.ciphertext),
            }
        })
    }

    /// Reads the sealed form back; `None` when `value` is not a sealed value at all.
    pub fn from_json(value: &Value, ctx: &FieldContext<'_>) -> Option<Result<Self, PrivacyError>> {
        let inner = value.as_object()?.get(SEALED_MARKER)?;
        let malformed = |reason| PrivacyError::Malformed {
            event_id: ctx.event_id,
            field: ctx.field.to_owned(),
            reason,
        };
        Some(match inner.as_object() {
            None => Err(malformed("`$pii` is not an object")),
            Some(form) => parse_form(form).map_err(malformed),
        })
    }
}

fn parse_form(form: &Map<String, Value>) -> Result<SealedField, &'static str> {
    if form.get("v").and_then(Value::as_u64) != Some(FORM_VERSION) {
        return Err("unknown form version (sealed by a newer writer?)");
    }
    let subject = form
        .get("sub")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or("`sub` is not a subject id")?;
    let key_version = form
        .get("kv")
        .and_then(Value::as_u64)
        .and_then(|v| i32::try_from(v).ok())
        .filter(|v| *v >= 1)
        .map(|v| v as u32)
        .ok_or("`kv` is not a key version")?;
    let nonce: [u8; 24] = form
        .get("n")
        .and_then(Value::as_str)
        .and_then(|n| Base64::decode_vec(n).ok())
        .and_then(|n| n.try_into().ok())
        .ok_or("`n` is not a 24-byte base64 nonce")?;
    let ciphertext = form
        .get("c")
        .and_then(Value::as_str)
        .and_then(|c| Base64::decode_vec(c).ok())
        .ok_or("`c` is not base64")?;
    Ok(SealedField {
        subject,
        key_version,
        nonce,
        ciphertext,
    })
}

/// A nonce no other seal uses: 16 random bytes drawn once per process, then a counter.
/// XChaCha20's 24-byte nonce leaves room for both, and it spares a system call per value.
/// (A process that forks without exec shares the counter with its child: do not seal in both.)
fn next_nonce() -> XNonce {
    static PREFIX: OnceLock<[u8; 16]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut prefix = [0u8; 16];
        OsRng.fill_bytes(&mut prefix);
        prefix
    });
    let mut nonce = [0u8; 24];
    nonce[..16].copy_from_slice(prefix);
    nonce[16..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    nonce.into()
}

/// Length-prefixed parts, so no two different places share the same bytes.
fn associated_data(ctx: &FieldContext<'_>, subject: Uuid, key_version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(128);
    let mut part = |bytes: &[u8]| {
        aad.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        aad.extend_from_slice(bytes);
    };
    part(AAD_DOMAIN);
    part(ctx.event_id.as_bytes());
    part(ctx.event_type.as_bytes());
    part(&ctx.version.to_be_bytes());
    part(ctx.field.as_bytes());
    part(subject.as_bytes());
    part(&key_version.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(event_id: Uuid, field: &'a str) -> FieldContext<'a> {
        FieldContext {
            event_id,
            event_type: "quiz.submitted",
            version: 2,
            field,
        }
    }

    #[test]
    fn a_sealed_value_opens_in_its_place_and_hides_the_plaintext() {
        let key = DataKey::generate();
        let (event, subject) = (Uuid::now_v7(), Uuid::now_v7());
        let plaintext = br#""Ada Lovelace""#;
        let sealed = seal(&key, subject, 1, &ctx(event, "student_name"), plaintext);
        let json = sealed.to_json().to_string();
        assert!(!json.contains("Ada"), "{json}");
        let back = SealedField::from_json(
            &serde_json::from_str(&json).unwrap(),
            &ctx(event, "student_name"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(back, sealed);
        let opened = open(&key, &ctx(event, "student_name"), &back).unwrap();
        assert_eq!(opened.as_slice(), plaintext);
    }

    #[test]
    fn a_value_moved_to_another_field_or_event_or_altered_does_not_open() {
        let key = DataKey::generate();
        let (event, subject) = (Uuid::now_v7(), Uuid::now_v7());
        let sealed = seal(&key, subject, 1, &ctx(event, "student_name"), b"\"Ada\"");
        let other_event = Uuid::now_v7();
        for (place, field) in [(event, "teacher_name"), (other_event, "student_name")] {
            let err = open(&key, &ctx(place, field), &sealed).unwrap_err();
            assert_eq!(
                err,
                PrivacyError::Undecryptable {
                    event_id: place,
                    field: field.to_owned(),
                    subject,
                    key_version: 1,
                }
            );
        }
        let mut altered = sealed.clone();
        altered.ciphertext[0] ^= 1;
        assert!(open(&key, &ctx(event, "student_name"), &altered).is_err());
        let mut other_subject = sealed.clone();
        other_subject.subject = Uuid::now_v7();
        assert!(open(&key, &ctx(event, "student_name"), &other_subject).is_err());
        assert!(open(&DataKey::generate(), &ctx(event, "student_name"), &sealed).is_err());
    }

    #[test]
    fn sealing_the_same_value_twice_never_repeats_a_nonce() {
        let key = DataKey::generate();
        let c = ctx(Uuid::now_v7(), "student_name");
        let a = seal(&key, Uuid::nil(), 1, &c, b"\"Ada\"");
        let b = seal(&key, Uuid::nil(), 1, &c, b"\"Ada\"");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn plain_values_are_not_sealed_and_broken_forms_are_named() {
        let c = ctx(Uuid::now_v7(), "student_name");
        assert!(SealedField::from_json(&json!("Ada"), &c).is_none());
        assert!(SealedField::from_json(&json!({"name": "Ada"}), &c).is_none());
        let err = SealedField::from_json(&json!({"$pii": {"v": 9}}), &c)
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("form version"), "{err}");
    }
}
