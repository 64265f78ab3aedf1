//! Sealing one field value: AES-256-GCM-SIV under the owner's data key, with the place the
//! value belongs to bound as associated data.
//!
//! Why AES-256-GCM-SIV rather than XChaCha20-Poly1305: a PII value is short, and for short
//! values RustCrypto's ChaCha20-Poly1305 is slow unless the build enables AVX2 (its run-time
//! detected Poly1305 back end costs about 1.3 µs per call at 30 bytes; see BENCHMARKS.md),
//! which a library cannot choose for its users. AES-GCM-SIV runs on the AES and carry-less
//! multiply instructions every x86-64 and ARMv8 server has, detected at run time at no such
//! cost, and it is nonce-misuse resistant: should two processes ever draw the same nonce for
//! one key, it reveals only whether the two (value, place) pairs were identical, and the place
//! (event id, field) never repeats.

use base64ct::{Base64, Encoding};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use aes_gcm_siv::Nonce;
use aes_gcm_siv::aead::rand_core::RngCore;
use aes_gcm_siv::aead::{Aead, OsRng, Payload};
use serde_json::{Map, Value};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::error::PrivacyError;
use super::key::DataKey;

use super::form::SEALED_MARKER;

/// AES-GCM-SIV's nonce.
const NONCE_LEN: usize = 12;
/// Its base64 length: four whole groups, no padding.
const NONCE_B64_LEN: usize = 16;
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
    nonce: [u8; NONCE_LEN],
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
    let cipher = key.field_cipher();
    let nonce = next_nonce();
    let ciphertext = with_associated_data(ctx, subject, key_version, |aad| {
        cipher.encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
    })
    .expect("AES-GCM-SIV encrypts any message shorter than 64 GiB");
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
    let cipher = key.field_cipher();
    with_associated_data(ctx, sealed.subject, sealed.key_version, |aad| {
        cipher.decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad,
            },
        )
    })
    .map(Zeroizing::new)
    .map_err(|_| PrivacyError::Undecryptable {
        event_id: ctx.event_id,
        field: ctx.field.to_owned(),
        subject: sealed.subject,
        key_version: sealed.key_version,
    })
}

impl SealedField {
    /// The JSON that takes the value's place:
    /// `{"$pii": "1.<subject id>.<key version>.<base64 of nonce and ciphertext>"}`. SQL and
    /// non-Rust consumers can see that a value is sealed and whose it is
    /// (`split_part(payload->'field'->>'$pii', '.', 2)`), and nothing else. One string rather
    /// than an object: building and reading it is a third of the cost of the cipher.
    pub fn to_json(&self) -> Value {
        use std::fmt::Write as _;

        let mut text =
            String::with_capacity(48 + NONCE_B64_LEN + Base64::encoded_len(&self.ciphertext));
        let mut buf = Uuid::encode_buffer();
        text.push_str(FORM_PREFIX);
        text.push_str(self.subject.hyphenated().encode_lower(&mut buf));
        write!(text, ".{}.", self.key_version).expect("writing to a String");
        // 12 bytes are whole base64 groups, so nonce and ciphertext encode one after the other
        // exactly as their concatenation would.
        let mut nonce = [0u8; NONCE_B64_LEN];
        text.push_str(Base64::encode(&self.nonce, &mut nonce).expect("sized for the nonce"));
        let mut short = [0u8; 256];
        match Base64::encode(&self.ciphertext, &mut short) {
            Ok(encoded) => text.push_str(encoded),
            // Longer than a name or an e-mail address: a buffer of its own.
            Err(_) => text.push_str(&Base64::encode_string(&self.ciphertext)),
        }
        let mut form = Map::new();
        form.insert(SEALED_MARKER.to_owned(), Value::String(text));
        Value::Object(form)
    }

    /// Reads the sealed form back; `None` when `value` is not a sealed value at all (the
    /// erased marker is not one either).
    pub fn from_json(value: &Value, ctx: &FieldContext<'_>) -> Option<Result<Self, PrivacyError>> {
        let inner = value.as_object()?.get(SEALED_MARKER)?;
        if inner.as_str() == Some(super::pii::ERASED) {
            return None;
        }
        let malformed = |reason| PrivacyError::Malformed {
            event_id: ctx.event_id,
            field: ctx.field.to_owned(),
            reason,
        };
        Some(match inner.as_str() {
            None => Err(malformed("`$pii` is not a string")),
            Some(form) => parse_form(form).map_err(malformed),
        })
    }
}

/// The data subject a stored value is sealed for, read from its form without opening it
/// (`None` for anything else, the erased marker included): what a scrub looks for.
#[cfg(feature = "sqlite")]
pub(crate) fn sealed_subject(value: &Value) -> Option<Uuid> {
    let form = value.as_object()?.get(SEALED_MARKER)?.as_str()?;
    parse_form(form).ok().map(|sealed| sealed.subject)
}

/// The form's version and the separator after it.
const FORM_PREFIX: &str = "1.";

fn parse_form(form: &str) -> Result<SealedField, &'static str> {
    let rest = form
        .strip_prefix(FORM_PREFIX)
        .ok_or("unknown form version (sealed by a newer writer?)")?;
    let mut parts = rest.splitn(3, '.');
    // Only the canonical spelling of each part is accepted: SQL (the scrub) compares the text,
    // so one sealed value must have exactly one form.
    let subject_text = parts.next().ok_or("no subject id")?;
    let subject = Uuid::parse_str(subject_text)
        .ok()
        .filter(|id| id.hyphenated().encode_lower(&mut Uuid::encode_buffer()) == subject_text)
        .ok_or("no subject id in lowercase hyphenated form")?;
    let key_version = parts
        .next()
        .filter(|v| v.bytes().all(|b| b.is_ascii_digit()) && !v.starts_with('0'))
        .and_then(|v| v.parse::<i32>().ok())
        .and_then(|v| u32::try_from(v).ok())
        .ok_or("no key version")?;
    let sealed = parts.next().ok_or("no nonce and ciphertext")?;
    let (nonce_b64, ciphertext_b64) = sealed
        .split_at_checked(NONCE_B64_LEN)
        .ok_or("no base64 nonce")?;
    let mut nonce = [0u8; NONCE_LEN];
    let decoded = Base64::decode(nonce_b64, &mut nonce).map_err(|_| "no base64 nonce")?;
    if decoded.len() != NONCE_LEN {
        return Err("no 12-byte nonce");
    }
    let ciphertext = Base64::decode_vec(ciphertext_b64).map_err(|_| "no base64 ciphertext")?;
    Ok(SealedField {
        subject,
        key_version,
        nonce,
        ciphertext,
    })
}

/// A nonce no other seal of this process uses: a counter from a random start, drawn once per
/// process, which spares a system call per value. Processes (or a fork) that happen to overlap
/// lose nothing under GCM-SIV but the fact that two identical (value, place) pairs are
/// identical, and places never repeat.
fn next_nonce() -> Nonce {
    static PREFIX: OnceLock<[u8; 4]> = OnceLock::new();
    static COUNTER: OnceLock<AtomicU64> = OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let mut prefix = [0u8; 4];
        OsRng.fill_bytes(&mut prefix);
        prefix
    });
    let counter = COUNTER.get_or_init(|| AtomicU64::new(OsRng.next_u64()));
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..4].copy_from_slice(prefix);
    nonce[4..].copy_from_slice(&counter.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    nonce.into()
}

/// Calls `f` with the associated data: length-prefixed parts, so no two different places
/// share the same bytes. Built on the stack when it fits (it nearly always does).
fn with_associated_data<R>(
    ctx: &FieldContext<'_>,
    subject: Uuid,
    key_version: u32,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    let parts: [&[u8]; 7] = [
        AAD_DOMAIN,
        ctx.event_id.as_bytes(),
        ctx.event_type.as_bytes(),
        &ctx.version.to_be_bytes(),
        ctx.field.as_bytes(),
        subject.as_bytes(),
        &key_version.to_be_bytes(),
    ];
    let len: usize = parts.iter().map(|part| 4 + part.len()).sum();
    let mut stack = [0u8; 256];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    let mut at = 0;
    for part in parts {
        let len = u32::try_from(part.len()).expect("associated data parts are names and ids");
        buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        buf[at + 4..at + 4 + part.len()].copy_from_slice(part);
        at += 4 + part.len();
    }
    f(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::form::{PLAINTEXT_MARKER, SEALED_FORM_PATTERN};

    #[test]
    fn the_plaintext_marker_is_the_sealed_markers_name_with_a_suffix() {
        assert!(PLAINTEXT_MARKER.starts_with(SEALED_MARKER));
        assert_ne!(PLAINTEXT_MARKER, SEALED_MARKER);
    }
    use serde_json::json;

    fn ctx(event_id: Uuid, field: &str) -> FieldContext<'_> {
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
    fn every_sealed_form_matches_the_published_pattern_and_broken_ones_do_not() {
        let pattern = regex::Regex::new(SEALED_FORM_PATTERN).unwrap();
        let key = DataKey::generate();
        let c = ctx(Uuid::now_v7(), "student_name");
        // Every plaintext length modulo 3 (so every padding), and the widest key version.
        let versions = [1, 9, 10, 4_242, i32::MAX as u32].into_iter().cycle();
        let forms: Vec<String> = (1..=40)
            .zip(versions)
            .map(|(len, key_version)| {
                let plaintext = serde_json::to_vec(&"x".repeat(len)).unwrap();
                let sealed = seal(&key, Uuid::now_v7(), key_version, &c, &plaintext);
                sealed.to_json()[SEALED_MARKER].as_str().unwrap().to_owned()
            })
            .collect();
        for form in &forms {
            assert!(pattern.is_match(form), "{form}");
        }
        let one_pad = forms
            .iter()
            .find(|f| f.ends_with('=') && !f.ends_with("=="))
            .unwrap();
        let two_pad = forms.iter().find(|f| f.ends_with("==")).unwrap();
        let text = &forms[0];
        let subject = text.split('.').nth(1).unwrap();
        let body = text.rsplit('.').next().unwrap();
        let head = &text[..text.len() - body.len()];
        let refused_by_the_reader_too = [
            format!("2{}", &text[1..]),
            text.replace(subject, &subject.to_uppercase()),
            text.replace(subject, &subject.replace('-', "")),
            text.replacen(".1.", ".01.", 1),
            text.replacen(".1.", ".0.", 1),
            text.replacen(".1.", ".+1.", 1),
            text.replacen(".1.", ".12345678901.", 1),
            format!("{head}-{}", &body[1..]),
            one_pad.trim_end_matches('=').to_owned(),
            two_pad.trim_end_matches('=').to_owned(),
            // A bit set past the last byte: not what the encoder writes.
            format!("{}B=", &one_pad[..one_pad.len() - 2]),
            format!("{}R==", &two_pad[..two_pad.len() - 3]),
            format!("{text}\n"),
            format!(" {text}"),
            super::super::pii::ERASED.to_owned(),
        ];
        for form in &refused_by_the_reader_too {
            assert!(!pattern.is_match(form), "{form}");
            let read = SealedField::from_json(&json!({ SEALED_MARKER: form }), &c);
            assert!(!matches!(read, Some(Ok(_))), "{form}");
        }
        // Shorter than the tag: the reader parses it (and then cannot open it); never written.
        let untagged = format!("{head}{}", &body[..36]);
        assert!(!pattern.is_match(&untagged), "{untagged}");
    }

    #[test]
    fn plain_values_are_not_sealed_and_broken_forms_are_named() {
        let c = ctx(Uuid::now_v7(), "student_name");
        assert!(SealedField::from_json(&json!("Ada"), &c).is_none());
        assert!(SealedField::from_json(&json!({"name": "Ada"}), &c).is_none());
        assert!(SealedField::from_json(&json!({"$pii": "erased"}), &c).is_none());
        let sealed = seal(&DataKey::generate(), Uuid::now_v7(), 1, &c, b"\"Ada\"");
        let text = sealed.to_json()["$pii"].as_str().unwrap().to_owned();
        let subject = sealed.subject.to_string();
        for other_spelling in [
            text.replace(&subject, &subject.to_uppercase()),
            text.replace(&subject, &sealed.subject.simple().to_string()),
            text.replacen(".1.", ".01.", 1),
            text.replacen(".1.", ".+1.", 1),
        ] {
            assert!(
                SealedField::from_json(&json!({ "$pii": other_spelling }), &c)
                    .unwrap()
                    .is_err(),
                "{other_spelling}"
            );
        }
        let err = SealedField::from_json(&json!({"$pii": "9.x"}), &c)
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("form version"), "{err}");
    }
}
