//! Data keys: 256-bit, random, wiped from memory when dropped.

use std::fmt;
use std::sync::OnceLock;

use aes_gcm_siv::Aes256GcmSiv;
use aes_gcm_siv::aead::KeyInit;
use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore;
use zeroize::Zeroizing;

/// One data subject's key (for one key version). Never printed, never serialized: it leaves
/// the process only wrapped by a [`KeyProvider`](super::KeyProvider).
#[derive(Clone)]
pub struct DataKey {
    bytes: Zeroizing<[u8; 32]>,
    /// The field cipher's key schedule, built on first use and kept with the key (a cached
    /// key seals and opens many values): it is a fifth of the cost of sealing a short value.
    /// Its round keys are wiped on drop (the `aes` crate's `zeroize` feature).
    cipher: OnceLock<Aes256GcmSiv>,
}

impl DataKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        DataKey {
            bytes,
            cipher: OnceLock::new(),
        }
    }

    /// A key from its 32 bytes (as unwrapped from storage).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DataKey {
            bytes: Zeroizing::new(bytes),
            cipher: OnceLock::new(),
        }
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// AES-256-GCM-SIV under this key, for sealing fields.
    pub(crate) fn field_cipher(&self) -> &Aes256GcmSiv {
        self.cipher.get_or_init(|| {
            Aes256GcmSiv::new(aes_gcm_siv::Key::<Aes256GcmSiv>::from_slice(
                self.bytes.as_ref(),
            ))
        })
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<secret>)")
    }
}

#[cfg(test)]
mod tests {
    use super::DataKey;

    #[test]
    fn keys_are_random_and_never_printed() {
        let (a, b) = (DataKey::generate(), DataKey::generate());
        assert_ne!(a.bytes(), b.bytes());
        let shown = format!("{a:?}");
        assert_eq!(shown, "DataKey(<secret>)");
    }
}
