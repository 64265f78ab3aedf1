//! What a contract check found wrong, each naming the event type and what to do about it.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// One broken contract.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ContractViolation {
    /// A snapshotted (so possibly published) version's contract changed.
    #[error(
        "`{type_name}` (version {version} of `{name}`) changed since its snapshot {}:\n{}\n  \
         A version that may have been published must not change: events already stored and \
         streamed were written with the old shape. Keep `{rust_type}` as it was, add version \
         {next} (`#[event(name = \"{name}\", version = {next}, upcast_from = {rust_type})]` \
         on a new type, with `impl From<{rust_type}> for` it), and snapshot the new version.",
        file.display(),
        changes.iter().map(|c| format!("  - {c}")).collect::<Vec<_>>().join("\n"),
        next = version + 1
    )]
    Changed {
        /// e.g. `quiz.submitted.v2`.
        type_name: String,
        /// e.g. `quiz.submitted`.
        name: String,
        /// The version that changed.
        version: u32,
        /// The Rust type that defines it today.
        rust_type: String,
        /// The snapshot it was compared with.
        file: PathBuf,
        /// One line per difference, naming the field.
        changes: Vec<String>,
    },
    /// A registered version without a snapshot.
    #[error(
        "`{type_name}` has no snapshot in {}: write it (`EDUPULSE_CONTRACTS=write cargo test`, \
         or the admin CLI's `contracts <dir> --write`) and commit it",
        dir.display()
    )]
    Unsnapshotted {
        /// The type.
        type_name: String,
        /// Where its snapshot belongs.
        dir: PathBuf,
    },
    /// No event type of the crate being checked is linked into this binary.
    #[error(
        "no event type of the crate `{crate_name}` is linked into this binary, so none of its \
         contracts can be checked (linked: {}). A binary, an integration test included, links \
         a crate only when it names something from it, and the types of a crate it does not \
         link are not registered. Add `use {crate_name} as _;` to this test (or binary)",
        if linked.is_empty() { "none".to_owned() } else { linked.join(", ") }
    )]
    NotLinked {
        /// The crate, as Rust names it.
        crate_name: String,
        /// The crates whose types are registered.
        linked: Vec<String>,
    },
    /// A snapshot whose type is no longer in the binary.
    #[error(
        "snapshot {} is of `{type_name}`, which no type in this binary registers. If the type \
         is defined in another crate, this binary does not link it (it names nothing from \
         it): add `use that_crate as _;`. Otherwise stored and streamed events of that \
         version would no longer decode: restore the type (with an upcast to the newest \
         version), or delete the snapshot if it was never published",
        file.display()
    )]
    Unregistered {
        /// The type the snapshot describes.
        type_name: String,
        /// The snapshot.
        file: PathBuf,
    },
    /// A snapshot's example payload no longer decodes (through the upcasts to the newest
    /// version).
    #[error(
        "the example payload of `{type_name}` in {} no longer decodes: {reason}",
        file.display()
    )]
    ExampleDoesNotDecode {
        /// The type.
        type_name: String,
        /// The snapshot.
        file: PathBuf,
        /// The decoding error.
        reason: String,
    },
    /// No example payload could be made from the schema for a new snapshot.
    #[error(
        "no example payload could be made for `{type_name}` from its schema ({reason}); give \
         one with `Contracts::with_example`"
    )]
    NoExample {
        /// The type.
        type_name: String,
        /// Why.
        reason: String,
    },
    /// A snapshot file that cannot be read or parsed, or written.
    #[error("contract snapshot {}: {reason}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Every violation a check found; its `Display` lists them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractViolations(pub Vec<ContractViolation>);

impl fmt::Display for ContractViolations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} event contract(s) broken:", self.0.len())?;
        for violation in &self.0 {
            writeln!(f, "* {violation}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ContractViolations {}
