//! Errors of the registry and of decoding. Messages name types, versions and field paths,
//! never values: a payload value may be personal data.

use std::fmt;

use thiserror::Error;

/// A payload that does not fit its type, described without quoting any value from it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{problem} at `{path}`")]
pub struct PayloadError {
    /// Where in the payload, e.g. `answers[3].choice` (`.` for the root).
    pub path: String,
    /// What is wrong there, without the offending value.
    pub problem: String,
}

impl PayloadError {
    pub(crate) fn from_serde(err: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let text = inner.to_string();
        // serde's "invalid type: string \"Ada\", expected f32" quotes the value; the other
        // messages carry only field names, which are schema, not data.
        let problem = ["missing field", "unknown field", "duplicate field"]
            .iter()
            .find(|prefix| text.starts_with(*prefix))
            .map_or_else(
                || {
                    match inner.classify() {
                        serde_json::error::Category::Data => "invalid type or value",
                        serde_json::error::Category::Syntax => "malformed JSON",
                        serde_json::error::Category::Eof => "truncated JSON",
                        serde_json::error::Category::Io => "I/O failure",
                    }
                    .to_owned()
                },
                |_| text.split(" at line ").next().unwrap_or(&text).to_owned(),
            );
        PayloadError { path, problem }
    }
}

/// Why a stored or received event could not be turned into a typed one.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No registered type has this name.
    #[error("unknown event type `{name}.v{version}`; known types: {}", known.join(", "))]
    UnknownType {
        /// The name that was asked for.
        name: String,
        /// The version that was asked for.
        version: u32,
        /// Every registered type string, sorted.
        known: Vec<&'static str>,
    },
    /// The name is known but not this version: the writer is newer than this binary.
    #[error(
        "event `{name}` has no registered version {version} (known: {}); \
         deploy the type that defines it before reading such events",
        known.iter().map(|v| format!("v{v}")).collect::<Vec<_>>().join(", ")
    )]
    UnknownVersion {
        /// The event name.
        name: String,
        /// The version that was asked for.
        version: u32,
        /// The registered versions of this name.
        known: Vec<u32>,
    },
    /// The payload does not deserialize into the registered type.
    #[error("payload of `{type_name}` ({rust_type}) does not match the type: {source}")]
    Payload {
        /// The type string.
        type_name: &'static str,
        /// The Rust type it was decoded into.
        rust_type: &'static str,
        /// What did not fit, and where.
        source: PayloadError,
    },
    /// An upcast step produced a type other than the one the chain expected.
    #[error("upcast of `{from}` produced an unexpected type; check the registry with validate()")]
    BrokenUpcast {
        /// The type string the failed step started from.
        from: &'static str,
    },
    /// The upcast chain reaches a step that does not lead to a newer version, such as a type
    /// upcasting from itself or two types upcasting from each other: it is never followed,
    /// since it could loop forever.
    #[error(
        "upcast chain of `{type_name}` loops: `{upcast_by}` upcasts from it but is no newer; \
         check the registry with validate()"
    )]
    UpcastCycle {
        /// The type string the chain cannot go on from.
        type_name: &'static str,
        /// The Rust type whose `upcast_from` names it.
        upcast_by: &'static str,
    },
}

/// One thing wrong with the set of registered event types.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryProblem {
    /// Two Rust types claim one type string.
    DuplicateType {
        /// The contested type string.
        type_name: &'static str,
        /// The Rust types that claim it.
        rust_types: [&'static str; 2],
    },
    /// Two Rust types publish to one subject.
    DuplicateSubject {
        /// The contested subject (below the prefix).
        subject: &'static str,
        /// The Rust types that use it.
        rust_types: [&'static str; 2],
    },
    /// An upcast source that is not the previous version of the same event.
    BrokenUpcast {
        /// The type that declares `upcast_from`.
        rust_type: &'static str,
        /// Its type string.
        type_name: &'static str,
        /// Why the link is broken.
        reason: String,
    },
    /// An upcast source that is not older than the type upcasting from it, so the chain could
    /// loop (it does, when it comes back to this type); decoding refuses to follow it.
    UpcastCycle {
        /// The type that declares `upcast_from`.
        rust_type: &'static str,
        /// Its type string.
        type_name: &'static str,
        /// The type string it upcasts from.
        from: String,
    },
    /// A version missing between two registered ones.
    VersionGap {
        /// The event name.
        name: &'static str,
        /// The version nobody registered.
        missing: u32,
    },
}

impl fmt::Display for RegistryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryProblem::DuplicateType {
                type_name,
                rust_types: [a, b],
            } => write!(
                f,
                "type `{type_name}` is defined twice, by `{a}` and by `{b}`; \
                 rename one or give it another version"
            ),
            RegistryProblem::DuplicateSubject {
                subject,
                rust_types: [a, b],
            } => write!(
                f,
                "subject `{subject}` is used by both `{a}` and `{b}`; \
                 consumers could not tell them apart"
            ),
            RegistryProblem::BrokenUpcast {
                rust_type,
                type_name,
                reason,
            } => write!(
                f,
                "upcast chain of `{type_name}` ({rust_type}) is broken: {reason}"
            ),
            RegistryProblem::UpcastCycle {
                rust_type,
                type_name,
                from,
            } => write!(
                f,
                "upcast chain of `{type_name}` ({rust_type}) loops: it upcasts from `{from}`, \
                 which is not an older version; upcast_from must name the version just below"
            ),
            RegistryProblem::VersionGap { name, missing } => write!(
                f,
                "event `{name}` has no version {missing} between registered versions; \
                 stored v{missing} events could not be read"
            ),
        }
    }
}

/// The registry is inconsistent: returned by [`Registry::validate`](crate::Registry::validate).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "{} problem(s) with registered event types:\n{}",
    problems.len(),
    problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
)]
pub struct RegistryError {
    /// Every problem found, not just the first.
    pub problems: Vec<RegistryProblem>,
}
