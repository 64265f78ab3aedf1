//! The set of event types linked into this binary, built once from `inventory`.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde_json::Value;

use crate::any_event::AnyEvent;
use crate::catalog::{Catalog, CatalogEntry};
use crate::descriptor::{EventDescriptor, Registration, Upcast};
use crate::error::{DecodeError, RegistryError, RegistryProblem};

/// Every event type known to this binary, keyed by `(name, version)` and by subject.
///
/// The global registry holds every type that `#[derive(DomainEvent)]` registered anywhere in the
/// dependency graph. Call [`validate`](Self::validate) at start-up (the runtime builder does) so
/// a binary with two types claiming one name fails before it reads a single event.
///
/// (This example is a crate of its own: doctests merged into one binary would share, and
/// rightly fail, one registry.)
///
/// ```standalone_crate
/// use edupulse_events::{DomainEvent, Registry, Uuid};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, DomainEvent)]
/// struct LessonPublished {
///     #[event(aggregate_id)]
///     lesson_id: Uuid,
///     title: String,
/// }
///
/// let registry = Registry::global();
/// registry.validate().unwrap();
/// let payload = serde_json::json!({ "lesson_id": Uuid::nil(), "title": "Fractions" });
/// let event = registry.decode("lesson.published", 1, &payload).unwrap();
/// assert_eq!(event.downcast::<LessonPublished>().unwrap().title, "Fractions");
/// ```
#[derive(Debug)]
pub struct Registry {
    /// Sorted by type string; duplicates kept, so `validate` can name both culprits.
    all: Vec<&'static EventDescriptor>,
    by_type: HashMap<(&'static str, u32), &'static EventDescriptor>,
    by_subject: HashMap<&'static str, &'static EventDescriptor>,
    /// Each name's versions, ascending.
    versions: HashMap<&'static str, Vec<u32>>,
    /// `(name, version)` → the newer descriptor that upcasts from it. Only steps to a strictly
    /// newer version are here, so following them always ends.
    upcast_to: HashMap<(&'static str, u32), &'static EventDescriptor>,
    /// `(name, version)` → a descriptor no newer than it that upcasts from it: a step that could
    /// loop (a type upcasting from itself, two from each other), never followed.
    upcast_loops: HashMap<(&'static str, u32), &'static EventDescriptor>,
}

impl Registry {
    /// The registry of every type linked into this binary, built on first use.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            Registry::from_descriptors(inventory::iter::<Registration>.into_iter().map(|r| r.0))
        })
    }

    /// A registry of exactly these types: for tests, and for processes that serve a subset.
    pub fn from_descriptors(
        descriptors: impl IntoIterator<Item = &'static EventDescriptor>,
    ) -> Registry {
        let mut all: Vec<&'static EventDescriptor> = descriptors.into_iter().collect();
        // inventory gives no order; sort so that lookups and errors are deterministic.
        all.sort_by_key(|d| (d.name(), d.version(), d.rust_type()));
        let mut by_type = HashMap::new();
        let mut by_subject = HashMap::new();
        let mut versions: HashMap<&str, Vec<u32>> = HashMap::new();
        let mut upcast_to = HashMap::new();
        let mut upcast_loops = HashMap::new();
        for &d in &all {
            by_type.entry((d.name(), d.version())).or_insert(d);
            by_subject.entry(d.subject()).or_insert(d);
            versions.entry(d.name()).or_default().push(d.version());
            if let Some(up) = d.upcast() {
                let steps = if ascends(up, d) {
                    &mut upcast_to
                } else {
                    &mut upcast_loops
                };
                steps
                    .entry((up.from_name(), up.from_version()))
                    .or_insert(d);
            }
        }
        for list in versions.values_mut() {
            list.dedup();
        }
        Registry {
            all,
            by_type,
            by_subject,
            versions,
            upcast_to,
            upcast_loops,
        }
    }

    /// Checks the whole set: duplicate type strings or subjects, broken upcast chains, gaps
    /// between versions. Every problem is reported, each naming the Rust types involved.
    pub fn validate(&self) -> Result<(), RegistryError> {
        let mut problems = Vec::new();
        self.check_duplicates(&mut problems);
        self.check_upcasts(&mut problems);
        self.check_version_gaps(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(RegistryError { problems })
        }
    }

    fn check_duplicates(&self, problems: &mut Vec<RegistryProblem>) {
        let mut seen_type: HashMap<&str, &EventDescriptor> = HashMap::new();
        let mut seen_subject: HashMap<&str, &EventDescriptor> = HashMap::new();
        for &d in &self.all {
            if let Some(first) = seen_type.insert(d.type_name(), d) {
                problems.push(RegistryProblem::DuplicateType {
                    type_name: d.type_name(),
                    rust_types: [first.rust_type(), d.rust_type()],
                });
            }
            match seen_subject.insert(d.subject(), d) {
                // Two claims on one type string are already reported above.
                Some(first) if first.type_name() != d.type_name() => {
                    problems.push(RegistryProblem::DuplicateSubject {
                        subject: d.subject(),
                        rust_types: [first.rust_type(), d.rust_type()],
                    });
                }
                _ => {}
            }
        }
    }

    // Each version above a name's lowest must upcast from the version just below it, of the
    // same name; otherwise stored events of older versions cannot reach the newest type.
    fn check_upcasts(&self, problems: &mut Vec<RegistryProblem>) {
        for &d in &self.all {
            let lowest = self.versions[d.name()][0];
            let broken = |reason: String| RegistryProblem::BrokenUpcast {
                rust_type: d.rust_type(),
                type_name: d.type_name(),
                reason,
            };
            match d.upcast() {
                None if d.version() > lowest => problems.push(broken(format!(
                    "v{lowest} is registered too, but `{}` has no #[event(upcast_from = ...)], \
                     so stored older events cannot be read as v{}",
                    d.rust_type(),
                    d.version()
                ))),
                Some(up) if !ascends(up, d) => problems.push(RegistryProblem::UpcastCycle {
                    rust_type: d.rust_type(),
                    type_name: d.type_name(),
                    from: format!("{}.v{}", up.from_name(), up.from_version()),
                }),
                Some(up) if up.from_name() != d.name() => problems.push(broken(format!(
                    "it upcasts from `{}.v{}`, another event; upcast_from must name an older \
                     version of `{}`",
                    up.from_name(),
                    up.from_version(),
                    d.name()
                ))),
                Some(up) if up.from_version() + 1 != d.version() => problems.push(broken(format!(
                    "it upcasts from v{}, but must upcast from v{}, the version just below",
                    up.from_version(),
                    d.version() - 1
                ))),
                Some(up)
                    if !self
                        .by_type
                        .contains_key(&(up.from_name(), up.from_version())) =>
                {
                    problems.push(broken(format!(
                        "its source `{}.v{}` is not in this registry",
                        up.from_name(),
                        up.from_version()
                    )));
                }
                // A newest version without an upcast, and an upcast that fits: nothing to say.
                None | Some(_) => {}
            }
        }
    }

    fn check_version_gaps(&self, problems: &mut Vec<RegistryProblem>) {
        let mut names: Vec<_> = self.versions.iter().collect();
        names.sort();
        for (&name, versions) in names {
            for pair in versions.windows(2) {
                for missing in pair[0] + 1..pair[1] {
                    problems.push(RegistryProblem::VersionGap { name, missing });
                }
            }
        }
    }

    /// The descriptor of one name and version.
    pub fn get(&self, name: &str, version: u32) -> Option<&'static EventDescriptor> {
        self.by_type.get(&(name, version)).copied()
    }

    /// The descriptor of a full type string such as `quiz.submitted.v2`.
    pub fn get_type(&self, type_name: &str) -> Option<&'static EventDescriptor> {
        let (name, version) = type_name.rsplit_once(".v")?;
        self.get(name, version.parse().ok()?)
    }

    /// The descriptor publishing to a subject (below the runtime's prefix).
    pub fn by_subject(&self, subject: &str) -> Option<&'static EventDescriptor> {
        self.by_subject.get(subject).copied()
    }

    /// The newest registered version of a name: what decoding upcasts to.
    pub fn latest(&self, name: &str) -> Option<&'static EventDescriptor> {
        let newest = *self.versions.get(name)?.last()?;
        self.get(name, newest)
    }

    /// Every registered descriptor, sorted by name, then version.
    pub fn descriptors(&self) -> impl Iterator<Item = &'static EventDescriptor> + '_ {
        self.all.iter().copied()
    }

    /// The crates whose event types this registry holds (sorted): an events crate missing
    /// here is not linked into the binary (it names nothing of that crate).
    pub fn crates(&self) -> Vec<&'static str> {
        let mut crates: Vec<_> = self
            .descriptors()
            .map(EventDescriptor::crate_name)
            .collect();
        crates.sort_unstable();
        crates.dedup();
        crates
    }

    /// Every registered type string, sorted.
    pub fn type_names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.all.iter().map(|d| d.type_name()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Decodes a payload stored or received as `name` / `version`, upcast to the newest version
    /// registered for that name. An upcast chain that could loop is refused with
    /// [`DecodeError::UpcastCycle`], not followed.
    pub fn decode(
        &self,
        name: &str,
        version: u32,
        payload: &Value,
    ) -> Result<AnyEvent, DecodeError> {
        let descriptor = self
            .get(name, version)
            .ok_or_else(|| self.unknown(name, version))?;
        let mut event =
            descriptor
                .decode_exact(payload)
                .map_err(|source| DecodeError::Payload {
                    type_name: descriptor.type_name(),
                    rust_type: descriptor.rust_type(),
                    source,
                })?;
        let mut current = descriptor;
        // Each step goes to a newer version (see `ascends`), so this ends.
        while let Some(next) = self.upcast_to.get(&(current.name(), current.version())) {
            event = next
                .upcast()
                .expect("indexed by its upcast")
                .apply(event)
                .map_err(|_| DecodeError::BrokenUpcast {
                    from: current.type_name(),
                })?;
            current = next;
        }
        match self.upcast_loops.get(&(current.name(), current.version())) {
            Some(looping) => Err(DecodeError::UpcastCycle {
                type_name: current.type_name(),
                upcast_by: looping.rust_type(),
            }),
            None => Ok(event),
        }
    }

    fn unknown(&self, name: &str, version: u32) -> DecodeError {
        match self.versions.get(name) {
            Some(known) => DecodeError::UnknownVersion {
                name: name.to_owned(),
                version,
                known: known.clone(),
            },
            None => DecodeError::UnknownType {
                name: name.to_owned(),
                version,
                known: self.type_names(),
            },
        }
    }

    /// Every event type with its version, aggregate, subject, PII fields and payload schema.
    pub fn catalog(&self) -> Catalog {
        let mut latest: BTreeMap<&str, u32> = BTreeMap::new();
        for d in &self.all {
            let newest = latest.entry(d.name()).or_default();
            *newest = (*newest).max(d.version());
        }
        Catalog {
            events: self
                .all
                .iter()
                .map(|d| CatalogEntry::describe(d, latest[d.name()] == d.version()))
                .collect(),
        }
    }
}

/// Whether `newer` is newer than the version it upcasts from. A chain of such steps climbs
/// through versions and so ends; every loop, however long, has a step that does not climb.
fn ascends(up: &Upcast, newer: &EventDescriptor) -> bool {
    up.from_version() < newer.version()
}
