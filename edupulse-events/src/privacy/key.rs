//! Data keys: 256-bit, random, wiped from memory when dropped.

use std::fmt;

use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore;
use zeroize::Zeroizing;

/// One data subject's key (for one key version). Never printed, never serialized: it leaves
/// the process only wrapped by a [`KeyProvider`](super::KeyProvider).
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        DataKey(bytes)
    }

    /// A key from its 32 bytes (as unwrapped from storage).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DataKey(Zeroizing::new(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
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
