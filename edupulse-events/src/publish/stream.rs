//! The JetStream stream events go to: created on start-up if missing, checked if present.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use thiserror::Error;

/// How long provisioning waits for a lazily connecting client's first round trip.
const INFO_WAIT: Duration = Duration::from_secs(2);

/// What the stream must look like.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Stream name, e.g. `EDUPULSE`.
    pub name: String,
    /// Subject prefix: the stream captures `{prefix}.>`.
    pub prefix: String,
    /// How long JetStream remembers message ids to drop duplicates. A relay crash between
    /// publish and bookkeeping is invisible only if it recovers within this window.
    pub duplicate_window: Duration,
    /// How long events are kept (zero: forever).
    pub max_age: Duration,
    /// Replicas (1 on a single server, 3 in a cluster).
    pub replicas: usize,
}

impl StreamSettings {
    /// Defaults for a stream `name` capturing `{prefix}.>`: file storage, limits retention,
    /// a two-minute duplicate window, kept forever.
    pub fn new(name: impl Into<String>, prefix: impl Into<String>) -> Self {
        StreamSettings {
            name: name.into(),
            prefix: prefix.into(),
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::ZERO,
            replicas: 1,
        }
    }

    /// Replicas: 3 in a three-server cluster, so the stream survives losing one.
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// How long events are kept (zero: forever).
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// How long JetStream remembers message ids: the longest a relay may take to recover
    /// from a crash between publishing and its bookkeeping without a visible duplicate.
    pub fn with_duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    fn subjects(&self) -> String {
        format!("{}.>", self.prefix)
    }

    fn config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: vec![self.subjects(), super::fence::fence_subjects(&self.prefix)],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            duplicate_window: self.duplicate_window,
            max_age: self.max_age,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }
}

/// Why the stream could not be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PublishError {
    /// A stream of that name exists with settings the relay cannot work with.
    #[error(
        "stream `{stream}` exists but its {setting} is {actual}, not {expected}; \
             change the stream or the settings"
    )]
    IncompatibleStream {
        /// The stream.
        stream: String,
        /// Which setting.
        setting: &'static str,
        /// What the relay needs.
        expected: String,
        /// What the stream has.
        actual: String,
    },
    /// JetStream refused or failed a request.
    #[error("JetStream error: {0}")]
    JetStream(String),
    /// The subject prefix would capture subjects that are not this stream's.
    #[error(transparent)]
    Prefix(#[from] super::PrefixError),
}

/// A JetStream context bound to a provisioned stream.
#[derive(Debug, Clone)]
pub struct Publisher {
    context: jetstream::Context,
    settings: StreamSettings,
    /// Whether the server checks fences (see `publish::fence`).
    pub(super) fencing: super::Fencing,
    /// The version of the server it was provisioned through.
    pub(super) server_version: String,
}

impl Publisher {
    /// Creates the stream if it is missing, or checks that the present one captures the prefix,
    /// stores to file, and de-duplicates for at least the requested window.
    pub async fn provision(
        client: async_nats::Client,
        settings: StreamSettings,
    ) -> Result<Self, PublishError> {
        super::validate_prefix(&settings.prefix)?;
        if client.server_info().version.is_empty() {
            // Connected lazily (`retry_on_initial_connect`): the server's INFO, which says
            // whether it can fence, arrives with the first round trip.
            match tokio::time::timeout(INFO_WAIT, client.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(PublishError::JetStream(err.to_string())),
                Err(_) => {
                    return Err(PublishError::JetStream(format!(
                        "no answer from NATS within {INFO_WAIT:?}"
                    )));
                }
            }
        }
        let info = client.server_info();
        let version = info.version;
        let fencing = super::Fencing::for_server(&version, info.cluster.is_some());
        let context = jetstream::new(client);
        match context.get_stream(&settings.name).await {
            Ok(mut existing) => {
                let info = existing
                    .info()
                    .await
                    .map_err(|e| PublishError::JetStream(e.to_string()))?;
                check_compatible(&settings, &info.config)?;
                let fences = super::fence::fence_subjects(&settings.prefix);
                if !info.config.subjects.contains(&fences) {
                    // A stream made before fencing: it gains the fence subjects, which no
                    // consumer of `{prefix}.>` sees.
                    let mut config = info.config.clone();
                    config.subjects.push(fences);
                    context
                        .update_stream(config)
                        .await
                        .map_err(|e| PublishError::JetStream(e.to_string()))?;
                }
            }
            Err(err) if is_not_found(&err) => {
                context
                    .create_stream(settings.config())
                    .await
                    .map_err(|e| PublishError::JetStream(e.to_string()))?;
                tracing::info!(
                    stream = %settings.name,
                    subjects = %settings.subjects(),
                    replicas = settings.replicas,
                    max_age = ?settings.max_age,
                    duplicate_window = ?settings.duplicate_window,
                    "stream created"
                );
            }
            Err(err) => return Err(PublishError::JetStream(err.to_string())),
        }
        tracing::info!(
            stream = %settings.name,
            server_version = %version,
            fencing = ?fencing,
            "stream ready"
        );
        Ok(Publisher {
            context,
            settings,
            fencing,
            server_version: version,
        })
    }

    /// The JetStream context.
    pub fn context(&self) -> &jetstream::Context {
        &self.context
    }

    /// The stream's settings.
    pub fn settings(&self) -> &StreamSettings {
        &self.settings
    }
}

fn is_not_found(err: &jetstream::context::GetStreamError) -> bool {
    matches!(
        err.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(e)
            if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

fn check_compatible(wanted: &StreamSettings, actual: &stream::Config) -> Result<(), PublishError> {
    let mismatch = |setting, expected: String, actual: String| PublishError::IncompatibleStream {
        stream: wanted.name.clone(),
        setting,
        expected,
        actual,
    };
    let subjects = wanted.subjects();
    if !actual.subjects.contains(&subjects) {
        return Err(mismatch(
            "subjects",
            format!("[{subjects}]"),
            format!("{:?}", actual.subjects),
        ));
    }
    if actual.storage != stream::StorageType::File {
        return Err(mismatch(
            "storage",
            "file".into(),
            format!("{:?}", actual.storage),
        ));
    }
    if actual.duplicate_window < wanted.duplicate_window {
        return Err(mismatch(
            "duplicate window",
            format!("at least {:?}", wanted.duplicate_window),
            format!("{:?}", actual.duplicate_window),
        ));
    }
    // Differences that break no promise of the relay's: said, not refused (an operator may
    // have changed them on purpose).
    if actual.num_replicas != wanted.replicas {
        tracing::warn!(
            stream = %wanted.name,
            configured = wanted.replicas,
            actual = actual.num_replicas,
            "the stream exists with another replica count than configured; leaving it as it is"
        );
    }
    if actual.max_age != wanted.max_age {
        tracing::warn!(
            stream = %wanted.name,
            configured = ?wanted.max_age,
            actual = ?actual.max_age,
            "the stream exists with another max age than configured; leaving it as it is"
        );
    }
    Ok(())
}
