//! What a sealed value looks like in a payload, for the catalog and the schemas as much as for
//! sealing itself: without the crypto crates too.

/// The member that marks a sealed value in a payload: `{"$pii": {...}}`.
pub const SEALED_MARKER: &str = "$pii";
/// The member a present value is wrapped in while an envelope is made (see `guard.rs`): the
/// sealed marker's name with a suffix, so that nothing but the envelope's own code reads it as
/// either. Never stored: the envelope removes every one before it exists.
pub(crate) const PLAINTEXT_MARKER: &str = "$pii:plaintext";
/// The text of a sealed value (the string under [`SEALED_MARKER`]) as a regular expression, for
/// schemas that describe the wire: the form version `1`, the owner's id (lowercase,
/// hyphenated), the key version (decimal, no leading zero; the reader also bounds it to
/// `i32::MAX`), then the base64 (standard alphabet, padded, zero trailing bits: what
/// `base64ct::Base64` writes) of the 12-byte nonce followed by the ciphertext, which is at least the
/// 16-byte tag. Only constructs common to ECMA-262 (JSON Schema's `pattern`) and Rust's `regex`.
pub const SEALED_FORM_PATTERN: &str = concat!(
    r"^1\.",
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.",
    r"[1-9][0-9]{0,9}\.",
    // The nonce: four whole groups.
    r"[A-Za-z0-9+/]{16}",
    // The ciphertext: at least 15 bytes in whole groups, then a last group of 3, 2 or 1 bytes.
    r"(?:[A-Za-z0-9+/]{4}){5,}",
    r"(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=|[A-Za-z0-9+/][AQgw]==)$",
);
