//! Who wraps data keys: data keys are stored only wrapped by a master key that never sits in
//! the database, so a copy of the key table alone opens nothing.

use std::fmt;
use std::path::Path;

use base64ct::{Base64, Encoding};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use futures::future::BoxFuture;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::error::KeyError;
use super::key::DataKey;

/// The environment variable [`LocalKeyProvider::from_env`] reads: 32 bytes, base64.
pub const MASTER_KEY_ENV: &str = "EDUPULSE_MASTER_KEY";
/// During a master-key rotation: the master keys being retired, comma-separated, each 32
/// bytes in base64. Keys wrapped by them still open; new and re-wrapped keys use
/// [`MASTER_KEY_ENV`]'s.
pub const PREVIOUS_MASTER_KEYS_ENV: &str = "EDUPULSE_PREVIOUS_MASTER_KEYS";

/// Wraps and unwraps data keys with a master key. Asynchronous, so a KMS or Vault adapter can
/// call out without blocking the runtime.
pub trait KeyProvider: fmt::Debug + Send + Sync + 'static {
    /// `key` of `subject` at `key_version`, wrapped for storage.
    fn wrap<'a>(
        &'a self,
        subject: Uuid,
        key_version: u32,
        key: &'a DataKey,
    ) -> BoxFuture<'a, Result<Vec<u8>, KeyError>>;

    /// The data key in `wrapped`, which must have been wrapped for this subject and version.
    fn unwrap<'a>(
        &'a self,
        subject: Uuid,
        key_version: u32,
        wrapped: &'a [u8],
    ) -> BoxFuture<'a, Result<DataKey, KeyError>>;
}

/// A master key held by the process (from the environment or a file), wrapping data keys with
/// XChaCha20-Poly1305 bound to their subject and version: for development and for deployments
/// whose secret store injects the key into the environment.
pub struct LocalKeyProvider {
    master: DataKey,
    /// Master keys being retired: they still unwrap, never wrap.
    previous: Vec<DataKey>,
}

const WRAP_DOMAIN: &[u8] = b"edupulse-key-wrap/v1";

impl LocalKeyProvider {
    /// A provider over `master`.
    pub fn new(master: DataKey) -> Self {
        LocalKeyProvider {
            master,
            previous: Vec::new(),
        }
    }

    /// Also unwraps keys wrapped by `retiring`, a master key being replaced: run
    /// [`KeyStore::rotate_master_key`](super::KeyStore::rotate_master_key) with this provider,
    /// then drop `retiring` from the configuration, and every older copy of the key table
    /// (WAL, backups, replicas' history) stops opening anything.
    pub fn with_previous(mut self, retiring: DataKey) -> Self {
        self.previous.push(retiring);
        self
    }

    /// The master key from [`MASTER_KEY_ENV`] (32 bytes, base64), and any being retired
    /// from [`PREVIOUS_MASTER_KEYS_ENV`].
    pub fn from_env() -> Result<Self, KeyError> {
        let text = Zeroizing::new(std::env::var(MASTER_KEY_ENV).map_err(|_| {
            KeyError::MasterKey(format!("{MASTER_KEY_ENV} is not set (32 bytes, base64)"))
        })?);
        let mut provider = Self::parse(&text, MASTER_KEY_ENV)?;
        if let Ok(previous) = std::env::var(PREVIOUS_MASTER_KEYS_ENV) {
            let previous = Zeroizing::new(previous);
            for (n, text) in previous
                .split(',')
                .filter(|t| !t.trim().is_empty())
                .enumerate()
            {
                let origin = format!("{PREVIOUS_MASTER_KEYS_ENV} (key {})", n + 1);
                provider.previous.push(Self::parse(text, &origin)?.master);
            }
        }
        Ok(provider)
    }

    /// The master key from [`MASTER_KEY_ENV`] when it is set (a production process: a bad
    /// value is an error, never a fallback), else from the development key file `path`,
    /// created on first use (see [`from_file_or_create`](Self::from_file_or_create)).
    pub fn from_env_or_dev_file(path: &Path) -> Result<Self, KeyError> {
        if std::env::var_os(MASTER_KEY_ENV).is_some() {
            Self::from_env()
        } else {
            tracing::warn!(
                path = %path.display(),
                "{MASTER_KEY_ENV} is not set: personal data is sealed under the development \
                 master key in this file; losing the file makes it unreadable. Set \
                 {MASTER_KEY_ENV} in production"
            );
            Self::from_file_or_create(path)
        }
    }

    /// The master key from a file holding 32 bytes in base64 (surrounding whitespace allowed).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|err| {
            KeyError::MasterKey(format!("cannot read {}: {}", path.display(), err.kind()))
        })?);
        Self::parse(&text, &path.display().to_string())
    }

    /// The master key from `path`, created there (random, readable by the owner only) when
    /// the file does not exist yet: for development machines and examples. Losing the file
    /// makes every sealed value unreadable, exactly as an erasure would.
    pub fn from_file_or_create(path: &Path) -> Result<Self, KeyError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;

        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|err| {
                KeyError::MasterKey(format!(
                    "cannot create {}: {}",
                    parent.display(),
                    err.kind()
                ))
            })?;
        }
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            Ok(mut file) => {
                let key = DataKey::generate();
                let text = Zeroizing::new(Base64::encode_string(key.bytes()));
                file.write_all(text.as_bytes()).map_err(|err| {
                    KeyError::MasterKey(format!("cannot write {}: {}", path.display(), err.kind()))
                })?;
                Ok(LocalKeyProvider::new(key))
            }
            // Another process may have created it first: read what it wrote.
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Self::from_file(path),
            Err(err) => Err(KeyError::MasterKey(format!(
                "cannot create {}: {}",
                path.display(),
                err.kind()
            ))),
        }
    }

    fn parse(text: &str, origin: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(
            Base64::decode_vec(text.trim())
                .map_err(|_| KeyError::MasterKey(format!("{origin} is not base64")))?,
        );
        let bytes: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::MasterKey(format!("{origin} does not hold 32 bytes")))?;
        Ok(LocalKeyProvider::new(DataKey::from_bytes(bytes)))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        cipher_of(&self.master)
    }
}

fn cipher_of(master: &DataKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(Key::from_slice(master.bytes()))
}

impl fmt::Debug for LocalKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalKeyProvider(<master key>)")
    }
}

fn wrap_aad(subject: Uuid, key_version: u32) -> Vec<u8> {
    let mut aad = WRAP_DOMAIN.to_vec();
    aad.extend_from_slice(subject.as_bytes());
    aad.extend_from_slice(&key_version.to_be_bytes());
    aad
}

impl KeyProvider for LocalKeyProvider {
    fn wrap<'a>(
        &'a self,
        subject: Uuid,
        key_version: u32,
        key: &'a DataKey,
    ) -> BoxFuture<'a, Result<Vec<u8>, KeyError>> {
        Box::pin(async move {
            let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
            let aad = wrap_aad(subject, key_version);
            let sealed = self
                .cipher()
                .encrypt(
                    &nonce,
                    Payload {
                        msg: key.bytes(),
                        aad: &aad,
                    },
                )
                .expect("a 32-byte key always encrypts");
            let mut wrapped = nonce.to_vec();
            wrapped.extend_from_slice(&sealed);
            Ok(wrapped)
        })
    }

    fn unwrap<'a>(
        &'a self,
        subject: Uuid,
        key_version: u32,
        wrapped: &'a [u8],
    ) -> BoxFuture<'a, Result<DataKey, KeyError>> {
        Box::pin(async move {
            let failed = KeyError::Unwrap {
                subject,
                key_version,
            };
            if wrapped.len() < 24 {
                return Err(failed);
            }
            let (nonce, sealed) = wrapped.split_at(24);
            let aad = wrap_aad(subject, key_version);
            // The current master first; a retiring one only for keys not yet re-wrapped.
            let bytes = Zeroizing::new(
                std::iter::once(&self.master)
                    .chain(&self.previous)
                    .find_map(|master| {
                        cipher_of(master)
                            .decrypt(
                                XNonce::from_slice(nonce),
                                Payload {
                                    msg: sealed,
                                    aad: &aad,
                                },
                            )
                            .ok()
                    })
                    .ok_or_else(|| failed.clone())?,
            );
            let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| failed)?;
            Ok(DataKey::from_bytes(bytes))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<T>(f: BoxFuture<'_, T>) -> T {
        futures::executor::block_on(f)
    }

    #[test]
    fn a_wrapped_key_opens_only_for_its_subject_and_version_under_its_master() {
        let provider = LocalKeyProvider::new(DataKey::generate());
        let (subject, key) = (Uuid::now_v7(), DataKey::generate());
        let wrapped = block_on(provider.wrap(subject, 1, &key)).unwrap();
        assert!(!wrapped.windows(32).any(|w| w == key.bytes()));
        let back = block_on(provider.unwrap(subject, 1, &wrapped)).unwrap();
        assert_eq!(back.bytes(), key.bytes());
        for (s, v) in [(Uuid::now_v7(), 1), (subject, 2)] {
            assert_eq!(
                block_on(provider.unwrap(s, v, &wrapped)).unwrap_err(),
                KeyError::Unwrap {
                    subject: s,
                    key_version: v
                }
            );
        }
        let other = LocalKeyProvider::new(DataKey::generate());
        assert!(block_on(other.unwrap(subject, 1, &wrapped)).is_err());
    }

    #[test]
    fn a_master_key_is_read_from_base64_and_never_printed() {
        let bytes = [7u8; 32];
        let text = Base64::encode_string(&bytes);
        let provider = LocalKeyProvider::parse(&format!("{text}\n"), "test").unwrap();
        assert_eq!(provider.master.bytes(), &bytes);
        assert_eq!(format!("{provider:?}"), "LocalKeyProvider(<master key>)");
        let short = Base64::encode_string(&[1u8; 16]);
        let err = LocalKeyProvider::parse(&short, "test").unwrap_err();
        assert!(err.to_string().contains("32 bytes"), "{err}");
        assert!(!err.to_string().contains(&short));
    }
}
