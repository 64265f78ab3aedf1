//! Event contracts that cannot drift: a committed snapshot of every event version's payload
//! schema, subject and aggregate, with an example payload, and a check that fails when a
//! snapshotted version changes without a version bump, or when an old version's example no
//! longer decodes through its upcasts.
//!
//! Put the check in your events crate's tests (`tests/contracts.rs`):
//!
//! ```no_run
//! // Links the crate's types into this test binary (`lesson_events` being your crate):
//! // use lesson_events as _;
//!
//! #[test]
//! fn event_contracts_hold() {
//!     edupulse_events::contracts!().assert();
//! }
//! ```
//!
//! [`contracts!`](crate::contracts) reads `contracts/` beside the crate's manifest and fails
//! when the test binary links no event type of the crate: a test (like any binary) links a
//! crate only when it names something from it, and the types of a crate that is not linked
//! are not registered, so the check would otherwise pass while checking nothing.
//!
//! `EDUPULSE_CONTRACTS=write cargo test` writes the snapshots of versions that have none (a
//! new event, a new version); it never rewrites one.

mod diff;
mod error;
mod example;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::descriptor::EventDescriptor;
use crate::event::DomainEvent;
use crate::registry::Registry;

pub use error::{ContractViolation, ContractViolations};

/// What a snapshot file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Snapshot {
    /// e.g. `quiz.submitted.v2`.
    #[serde(rename = "type")]
    type_name: String,
    /// The Rust type when it was written (for the reader; not part of the contract).
    rust_type: String,
    aggregate: String,
    subject: String,
    /// The payload's JSON Schema.
    schema: Value,
    /// A payload of this version, proven to decode when written and at every check since.
    example: Value,
}

/// The snapshots in one directory, checked against the binary's registry.
#[derive(Debug, Clone)]
pub struct Contracts {
    dir: PathBuf,
    only: Option<String>,
    /// The crate whose types must be linked, as Rust names it.
    of_crate: Option<String>,
    examples: HashMap<&'static str, Value>,
}

/// What a passing check covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractCheck {
    /// Versions compared with their snapshot.
    pub checked: usize,
    /// Snapshots written by this call (only [`Contracts::write_new`] writes).
    pub written: Vec<String>,
}

impl Contracts {
    /// The snapshots in `dir`, one `<type>.json` per event version (e.g.
    /// `quiz.submitted.v2.json`), for every type registered in this binary.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Contracts {
            dir: dir.into(),
            only: None,
            of_crate: None,
            examples: HashMap::new(),
        }
    }

    /// Only event names starting with `prefix` (a team's own events, in a binary that also
    /// links others').
    pub fn only(mut self, prefix: impl Into<String>) -> Self {
        self.only = Some(prefix.into());
        self
    }

    /// Fails unless this binary links event types of `package` (a Cargo package name; `-`
    /// reads as `_`): the check of an events crate's own snapshots. [`contracts!`] sets it to
    /// the calling package.
    ///
    /// [`contracts!`]: crate::contracts
    ///
    /// A package whose library has another name (`[lib] name = ...`) names its crate with
    /// [`of_crate`](Self::of_crate) instead.
    pub fn of_package(mut self, package: &str) -> Self {
        self.of_crate = Some(package.replace('-', "_"));
        self
    }

    /// Fails unless this binary links event types of the crate `crate_name`, as Rust names
    /// it (`lesson_events`).
    pub fn of_crate(mut self, crate_name: &str) -> Self {
        self.of_crate = Some(crate_name.to_owned());
        self
    }

    /// The example payload to snapshot for `T`, instead of one made from its schema: for
    /// types whose deserialization checks more than the schema says.
    pub fn with_example<T: DomainEvent>(mut self, event: &T) -> Result<Self, serde_json::Error> {
        // The example is the test's own made-up data, kept in the snapshot as plaintext.
        let example = crate::privacy::reveal(|| serde_json::to_value(event))?;
        self.examples.insert(T::TYPE, example);
        Ok(self)
    }

    /// Compares every registered version with its snapshot and decodes every snapshot's
    /// example; reports everything found, not just the first.
    pub fn check(&self) -> Result<ContractCheck, ContractViolations> {
        let mut violations = Vec::new();
        self.check_linked(&mut violations);
        let snapshots = self.read(&mut violations);
        let registry = Registry::global();
        let mut checked = 0;
        for descriptor in self.descriptors() {
            let Some((file, snapshot)) = snapshots.get(descriptor.type_name()) else {
                violations.push(ContractViolation::Unsnapshotted {
                    type_name: descriptor.type_name().into(),
                    dir: self.dir.clone(),
                });
                continue;
            };
            checked += 1;
            let changes = changes(snapshot, descriptor);
            if !changes.is_empty() {
                violations.push(ContractViolation::Changed {
                    type_name: descriptor.type_name().into(),
                    name: descriptor.name().into(),
                    version: descriptor.version(),
                    rust_type: short_type(descriptor.rust_type()).into(),
                    file: file.clone(),
                    changes,
                });
            }
        }
        for (type_name, (file, snapshot)) in &snapshots {
            let Some(descriptor) = registry.get_type(type_name) else {
                violations.push(ContractViolation::Unregistered {
                    type_name: type_name.clone(),
                    file: file.clone(),
                });
                continue;
            };
            if let Err(err) =
                registry.decode(descriptor.name(), descriptor.version(), &snapshot.example)
            {
                violations.push(ContractViolation::ExampleDoesNotDecode {
                    type_name: type_name.clone(),
                    file: file.clone(),
                    reason: err.to_string(),
                });
            }
        }
        if violations.is_empty() {
            Ok(ContractCheck {
                checked,
                written: Vec::new(),
            })
        } else {
            Err(ContractViolations(violations))
        }
    }

    /// Writes a snapshot for every registered version that has none, then checks. An
    /// existing snapshot is never rewritten: a changed version is the error this exists for.
    pub fn write_new(&self) -> Result<ContractCheck, ContractViolations> {
        let mut violations = Vec::new();
        let snapshots = self.read(&mut violations);
        let mut written = Vec::new();
        if let Err(err) = std::fs::create_dir_all(&self.dir) {
            violations.push(ContractViolation::Io {
                file: self.dir.clone(),
                reason: err.to_string(),
            });
        }
        for descriptor in self.descriptors() {
            if snapshots.contains_key(descriptor.type_name()) || !violations.is_empty() {
                continue;
            }
            match self.snapshot_of(descriptor) {
                Ok(snapshot) => {
                    let file = self.file_of(descriptor.type_name());
                    let mut text =
                        serde_json::to_string_pretty(&snapshot).expect("JSON values serialize");
                    text.push('\n');
                    match std::fs::write(&file, text) {
                        Ok(()) => written.push(descriptor.type_name().to_owned()),
                        Err(err) => violations.push(ContractViolation::Io {
                            file,
                            reason: err.to_string(),
                        }),
                    }
                }
                Err(violation) => violations.push(violation),
            }
        }
        if !violations.is_empty() {
            return Err(ContractViolations(violations));
        }
        let mut check = self.check()?;
        check.written = written;
        Ok(check)
    }

    /// For a test: [`check`](Self::check), or [`write_new`](Self::write_new) when the
    /// environment says `EDUPULSE_CONTRACTS=write`; panics with every violation.
    #[track_caller]
    pub fn assert(&self) -> ContractCheck {
        let writing = std::env::var("EDUPULSE_CONTRACTS").is_ok_and(|v| v == "write");
        let result = if writing {
            self.write_new()
        } else {
            self.check()
        };
        match result {
            Ok(check) => check,
            Err(violations) => panic!("{violations}"),
        }
    }

    /// The directory of the snapshots.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_linked(&self, violations: &mut Vec<ContractViolation>) {
        let Some(crate_name) = &self.of_crate else {
            return;
        };
        if !Registry::global().crates().contains(&crate_name.as_str()) {
            violations.push(ContractViolation::NotLinked {
                crate_name: crate_name.clone(),
                linked: Registry::global()
                    .crates()
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
            });
        }
    }

    fn descriptors(&self) -> impl Iterator<Item = &'static EventDescriptor> + '_ {
        Registry::global()
            .descriptors()
            .filter(|d| self.covers(d.type_name()))
    }

    fn covers(&self, type_name: &str) -> bool {
        self.only
            .as_deref()
            .is_none_or(|prefix| type_name.starts_with(prefix))
    }

    fn file_of(&self, type_name: &str) -> PathBuf {
        self.dir.join(format!("{type_name}.json"))
    }

    /// Every snapshot in the directory that this check covers, by type; a missing directory
    /// has none.
    fn read(
        &self,
        violations: &mut Vec<ContractViolation>,
    ) -> BTreeMap<String, (PathBuf, Snapshot)> {
        let mut snapshots = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return snapshots;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        files.sort();
        for file in files {
            let parsed = std::fs::read_to_string(&file)
                .map_err(|err| err.to_string())
                .and_then(|text| {
                    serde_json::from_str::<Snapshot>(&text).map_err(|err| err.to_string())
                });
            let named_after = |snapshot: &Snapshot| {
                file.file_name().and_then(|n| n.to_str())
                    == Some(format!("{}.json", snapshot.type_name).as_str())
            };
            match parsed {
                // One file per version, named after it: two files cannot claim one version.
                Ok(snapshot) if !named_after(&snapshot) => violations.push(ContractViolation::Io {
                    reason: format!(
                        "it holds `{}`, so it must be named `{}.json`",
                        snapshot.type_name, snapshot.type_name
                    ),
                    file,
                }),
                Ok(snapshot) if self.covers(&snapshot.type_name) => {
                    snapshots.insert(snapshot.type_name.clone(), (file, snapshot));
                }
                Ok(_) => {}
                Err(reason) => violations.push(ContractViolation::Io { file, reason }),
            }
        }
        snapshots
    }

    fn snapshot_of(&self, d: &'static EventDescriptor) -> Result<Snapshot, ContractViolation> {
        let schema = d.payload_schema();
        let example = match self.examples.get(d.type_name()) {
            Some(example) => example.clone(),
            None => example::example_of(&schema).ok_or_else(|| ContractViolation::NoExample {
                type_name: d.type_name().into(),
                reason: "a recursive or unsupported schema".into(),
            })?,
        };
        if let Err(err) = d.decode_exact(&example) {
            return Err(ContractViolation::NoExample {
                type_name: d.type_name().into(),
                reason: format!("the one made does not decode: {err}"),
            });
        }
        Ok(Snapshot {
            type_name: d.type_name().into(),
            rust_type: d.rust_type().into(),
            aggregate: d.aggregate().into(),
            subject: d.subject().into(),
            schema,
            example,
        })
    }
}

/// Each difference between a snapshot and the registered type.
fn changes(snapshot: &Snapshot, d: &EventDescriptor) -> Vec<String> {
    let mut changes = diff::schema_changes(&snapshot.schema, &d.payload_schema());
    if snapshot.aggregate != d.aggregate() {
        changes.push(format!(
            "the aggregate changed from `{}` to `{}`",
            snapshot.aggregate,
            d.aggregate()
        ));
    }
    if snapshot.subject != d.subject() {
        changes.push(format!(
            "the subject changed from `{}` to `{}`",
            snapshot.subject,
            d.subject()
        ));
    }
    changes
}

/// `QuizSubmitted` from `edupulse_domain::QuizSubmitted`.
fn short_type(path: &str) -> &str {
    path.rsplit("::").next().unwrap_or(path)
}

/// The contract check of the calling package's events: [`Contracts::new`] over `contracts/`
/// beside its `Cargo.toml`, [`of_package`](Contracts::of_package) the calling package.
/// `contracts!(lesson_events)` names the crate instead, for a library named otherwise than its
/// package.
///
/// ```no_run
/// // In an integration test, links the crate's types (`lesson_events` being your crate):
/// // use lesson_events as _;
///
/// #[test]
/// fn event_contracts_hold() {
///     edupulse_events::contracts!().assert();
/// }
/// ```
#[macro_export]
macro_rules! contracts {
    () => {
        $crate::contract::Contracts::new(::core::concat!(
            ::core::env!("CARGO_MANIFEST_DIR"),
            "/contracts"
        ))
        .of_package(::core::env!("CARGO_PKG_NAME"))
    };
    ($crate_name:ident) => {
        $crate::contract::Contracts::new(::core::concat!(
            ::core::env!("CARGO_MANIFEST_DIR"),
            "/contracts"
        ))
        .of_crate(::core::stringify!($crate_name))
    };
}
