//! Proof that personal data never rests in clear, for users to run against their own
//! deployment: plant [`Canary`] values in every PII field, then scan every PostgreSQL table of
//! the store and every raw message of the stream for them, as text, hex and base64.
//!
//! ```no_run
//! # async fn check(pool: edupulse_events::sqlx::PgPool, nats: edupulse_events::async_nats::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use edupulse_events::privacy::canary::{Canary, PlaintextScan};
//!
//! let canary = Canary::new();
//! // ... append events whose PII fields hold `canary.as_str()`, let the relay publish them ...
//! let leaks = PlaintextScan::new(vec![canary])
//!     .postgres(&pool, "public")
//!     .await?
//!     .jetstream(&edupulse_events::async_nats::jetstream::new(nats), "EDUPULSE")
//!     .await?
//!     .leaks();
//! assert!(leaks.is_empty(), "{leaks:?}");
//! # Ok(()) }
//! ```

use async_nats::jetstream;
use base64ct::{Base64Unpadded, Base64UrlUnpadded};
use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore;
use futures::{StreamExt, TryStreamExt};
use sqlx::PgPool;
use thiserror::Error;

/// A random marker to plant in a PII field: unique enough never to occur by chance, made of
/// letters and digits so JSON, SQL and headers carry it unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Canary(String);

impl Canary {
    /// A fresh canary, e.g. `canary7Gk2...` (30 characters).
    pub fn new() -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut bytes = [0u8; 24];
        OsRng.fill_bytes(&mut bytes);
        let tail: String = bytes
            .iter()
            .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
            .collect();
        Canary(format!("canary{tail}"))
    }

    /// The text to plant.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What a copy of the canary looks like in each encoding a scan recognises.
    fn needles(&self) -> Vec<(Encoding, String)> {
        let raw = self.0.as_bytes();
        let mut needles = vec![
            (Encoding::Text, self.0.clone()),
            (Encoding::Hex, hex(raw, false)),
            (Encoding::Hex, hex(raw, true)),
        ];
        for offset in 0..3 {
            needles.push((Encoding::Base64, base64_core::<Base64Unpadded>(raw, offset)));
            needles.push((
                Encoding::Base64,
                base64_core::<Base64UrlUnpadded>(raw, offset),
            ));
        }
        needles
    }
}

impl Default for Canary {
    fn default() -> Self {
        Self::new()
    }
}

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

/// The characters of the base64 of `bytes` that do not depend on what surrounds it, when it
/// starts `offset` bytes into a 3-byte group of a longer text.
fn base64_core<E: base64ct::Encoding>(bytes: &[u8], offset: usize) -> String {
    let mut padded = vec![0u8; offset];
    padded.extend_from_slice(bytes);
    let encoded = E::encode_string(&padded);
    // Characters that mix in bits of the bytes before, or of the bytes after.
    let skip = [0, 2, 3][offset];
    let whole = padded.len() * 8 / 6;
    encoded[skip..whole].to_owned()
}

/// How a leaked canary was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// As it was planted.
    Text,
    /// Its bytes in hexadecimal (PostgreSQL shows `bytea` this way).
    Hex,
    /// Its bytes in base64, standard or URL-safe, at any alignment.
    Base64,
}

/// One canary found where it must not be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// The canary found (a planted marker, never real data).
    pub canary: String,
    /// Where: `postgres:<schema>.<table>`, `jetstream:<stream>#<sequence>` or `file:<path>`.
    pub place: String,
    /// In which encoding.
    pub encoding: Encoding,
}

/// Why a scan could not finish.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ScanError {
    /// Reading PostgreSQL failed.
    #[error("scanning PostgreSQL failed: {0}")]
    Postgres(#[from] crate::database::DatabaseError),
    /// Reading a file failed.
    #[error("scanning file {path} failed: {reason}")]
    File {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
    /// Reading the stream failed.
    #[error("scanning stream `{stream}` failed: {reason}")]
    JetStream {
        /// The stream.
        stream: String,
        /// What failed.
        reason: String,
    },
}

/// A search for canaries across a deployment's tables and streams.
#[derive(Debug)]
pub struct PlaintextScan {
    needles: Vec<(String, Encoding, String)>,
    leaks: Vec<Leak>,
    rows: u64,
    messages: u64,
}

impl PlaintextScan {
    /// A scan for `canaries`.
    pub fn new(canaries: impl IntoIterator<Item = Canary>) -> Self {
        let needles = canaries
            .into_iter()
            .flat_map(|canary| {
                canary
                    .needles()
                    .into_iter()
                    .map(move |(encoding, needle)| (canary.0.clone(), encoding, needle))
            })
            .collect();
        PlaintextScan {
            needles,
            leaks: Vec::new(),
            rows: 0,
            messages: 0,
        }
    }

    fn search(&mut self, haystack: &str, place: impl Fn() -> String) {
        for (canary, encoding, needle) in &self.needles {
            if haystack.contains(needle.as_str()) {
                self.leaks.push(Leak {
                    canary: canary.clone(),
                    place: place(),
                    encoding: *encoding,
                });
            }
        }
    }

    /// Scans every row of every table and materialized view in `schema`, each row as
    /// PostgreSQL's text form (which shows `bytea` in hex and `jsonb` as JSON). Call it once
    /// per schema that may hold copies.
    pub async fn postgres(mut self, pool: &PgPool, schema: &str) -> Result<Self, ScanError> {
        let db = |err: sqlx::Error| ScanError::Postgres(err.into());
        // Tables and materialized views (a read model's copy counts too).
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'm') ORDER BY c.relname",
        )
        .bind(schema)
        .fetch_all(pool)
        .await
        .map_err(db)?;
        for table in tables {
            let sql = format!(
                "SELECT t::text FROM {}.{} t",
                quote_ident(schema),
                quote_ident(&table)
            );
            let mut rows = sqlx::query_scalar::<_, String>(&sql).fetch(pool);
            while let Some(row) = rows.try_next().await.map_err(db)? {
                self.rows += 1;
                self.search(&row, || format!("postgres:{schema}.{table}"));
            }
        }
        Ok(self)
    }

    /// Scans every message of `stream` as stored: subject, headers and body.
    pub async fn jetstream(
        mut self,
        js: &jetstream::Context,
        stream: &str,
    ) -> Result<Self, ScanError> {
        let failed = |reason: String| ScanError::JetStream {
            stream: stream.to_owned(),
            reason,
        };
        let mut handle = js
            .get_stream(stream)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let total = handle
            .info()
            .await
            .map_err(|e| failed(e.to_string()))?
            .state
            .messages;
        let consumer = handle
            .create_consumer(jetstream::consumer::pull::Config {
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ack_policy: jetstream::consumer::AckPolicy::None,
                inactive_threshold: std::time::Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut seen = 0;
        while seen < total {
            let mut batch = consumer
                .fetch()
                .max_messages(1000)
                .messages()
                .await
                .map_err(|e| failed(e.to_string()))?;
            let before = seen;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|e| failed(e.to_string()))?;
                seen += 1;
                let mut text = message.subject.to_string();
                if let Some(headers) = &message.headers {
                    for (name, values) in headers.iter() {
                        text.push('\n');
                        text.push_str(name.as_ref());
                        for value in values {
                            text.push(':');
                            text.push_str(value.as_str());
                        }
                    }
                }
                text.push('\n');
                text.push_str(&String::from_utf8_lossy(&message.payload));
                let sequence = message.info().map_or(0, |i| i.stream_sequence);
                self.search(&text, || format!("jetstream:{stream}#{sequence}"));
            }
            // Messages removed since `info` (limits, purges) end the scan early.
            if seen == before {
                break;
            }
        }
        self.messages += seen;
        Ok(self)
    }

    /// Scans the raw bytes of each file in `paths` that exists: an embedded store's database
    /// with its `-wal` and `-shm` files, a backup, an export. Counted as rows.
    pub fn files<P: AsRef<std::path::Path>>(
        mut self,
        paths: impl IntoIterator<Item = P>,
    ) -> Result<Self, ScanError> {
        for path in paths {
            let path = path.as_ref();
            let bytes = match std::fs::read(path) {
                Ok(bytes) => bytes,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => {
                    return Err(ScanError::File {
                        path: path.display().to_string(),
                        reason: err.kind().to_string(),
                    });
                }
            };
            self.rows += 1;
            for (canary, encoding, needle) in &self.needles {
                if contains(&bytes, needle.as_bytes()) {
                    self.leaks.push(Leak {
                        canary: canary.clone(),
                        place: format!("file:{}", path.display()),
                        encoding: *encoding,
                    });
                }
            }
        }
        Ok(self)
    }

    /// How many rows and messages were scanned: a scan that saw nothing proves nothing.
    pub fn scanned(&self) -> (u64, u64) {
        (self.rows, self.messages)
    }

    /// Every canary found.
    pub fn leaks(self) -> Vec<Leak> {
        self.leaks
    }
}

/// Whether `needle` occurs in `haystack`, byte for byte.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64ct::{Base64, Encoding as _};

    #[test]
    fn a_canary_is_found_as_text_hex_or_base64_at_any_alignment() {
        let canary = Canary::new();
        for prefix in ["", "a", "ab", "abc"] {
            let planted = format!("{prefix}{}!", canary.as_str());
            for haystack in [
                planted.clone(),
                hex(planted.as_bytes(), false),
                Base64::encode_string(planted.as_bytes()),
            ] {
                let mut scan = PlaintextScan::new([canary.clone()]);
                scan.search(&format!("x{haystack}y"), || "here".into());
                assert!(!scan.leaks().is_empty(), "{prefix:?}: {haystack}");
            }
        }
        let mut scan = PlaintextScan::new([canary]);
        scan.search("nothing to see", || "here".into());
        assert!(scan.leaks().is_empty());
    }
}
