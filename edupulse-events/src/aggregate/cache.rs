//! The warm path: aggregates' states kept in memory with their versions, so a command on one
//! appends without reading it first. The append's `Exact` check validates what was cached; a
//! conflict evicts it. An erasure evicts every state built from the erased person's events,
//! and every state read from a snapshot (which does not know whom the snapshot's events
//! named), in every cache of the process, since a state may hold their personal data.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use uuid::Uuid;

/// One cached state.
pub(super) struct Entry<A> {
    pub(super) state: A,
    pub(super) version: u64,
    /// The data subjects of the events folded into it after `base`.
    pub(super) subjects: Vec<Uuid>,
    /// The version of the snapshot it was read from (0: folded from the first event, and
    /// `subjects` are all of its subjects).
    pub(super) base: u64,
    /// The version of its latest snapshot known here (0: none).
    pub(super) snapshot_at: u64,
    /// When it was read or last validated by an append.
    pub(super) since: std::time::Instant,
}

impl<A> Entry<A> {
    /// Whether the state may hold `subject`'s data: a state read from a snapshot does not
    /// know who the snapshot's events named, so it may hold anyone's.
    fn may_hold(&self, subject: Uuid) -> bool {
        self.base > 0 || self.subjects.contains(&subject)
    }

    /// Whether an erasure heard of since `seen` (see [`erasures_seen`]) may concern it.
    pub(super) fn erased_since(&self, seen: u64) -> bool {
        if self.base > 0 {
            erasures_seen() != seen
        } else {
            recently_erased(seen, &self.subjects)
        }
    }
}

/// How long a cached state is used without the store confirming it: an erasure made by
/// another process reaches this cache only through the erasure follower (NATS), so a state
/// is read again at least this often, as keys are (`KEY_CACHE_TTL`).
pub(super) const STATE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// A bounded cache of one aggregate type's states, least recently used out first.
pub(super) struct Cache<A> {
    entries: Mutex<lru::LruCache<Uuid, Entry<A>>>,
}

/// What an erasure reaches: every cache in the process.
trait ForgetSubject: Send + Sync {
    fn forget_subject(&self, subject: Uuid);
}

impl<A: Send + Sync> ForgetSubject for Cache<A> {
    fn forget_subject(&self, subject: Uuid) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let holding: Vec<Uuid> = entries
            .iter()
            .filter(|(_, entry)| entry.may_hold(subject))
            .map(|(id, _)| *id)
            .collect();
        for id in holding {
            entries.pop(&id);
        }
    }
}

static CACHES: Mutex<Vec<Weak<dyn ForgetSubject>>> = Mutex::new(Vec::new());

/// Counts erasures heard of: a command that loaded a state before one and finishes after it
/// does not cache that state if it holds the erased person's data (the eviction passed it by
/// while the command held it).
static ERASURES: AtomicU64 = AtomicU64::new(0);

/// The latest erasures heard of (count after it, subject), newest last: what a command that
/// finishes checks its state's subjects against.
static RECENT: Mutex<VecDeque<(u64, Uuid)>> = Mutex::new(VecDeque::new());

/// How many recent erasures are remembered; a command that overlapped more does not cache.
const RECENT_ERASURES: usize = 1024;

/// Where the erasure count stands: taken when a command takes or loads its state.
pub(super) fn erasures_seen() -> u64 {
    ERASURES.load(Ordering::SeqCst)
}

/// Whether an erasure heard of since `seen` concerns one of `subjects` (or may have: more
/// erasures than are remembered).
fn recently_erased(seen: u64, subjects: &[Uuid]) -> bool {
    let recent = RECENT.lock().unwrap_or_else(PoisonError::into_inner);
    let now = ERASURES.load(Ordering::SeqCst);
    if now == seen {
        return false;
    }
    let remembered = recent.front().is_some_and(|(count, _)| *count <= seen + 1);
    !remembered
        || recent
            .iter()
            .any(|(count, subject)| *count > seen && subjects.contains(subject))
}

/// Evicts every cached state built from `subject`'s events, in every cache of the process:
/// called when an erasure commits here, and when one made elsewhere is heard of.
pub(crate) fn forget_subject(subject: Uuid) {
    {
        let mut recent = RECENT.lock().unwrap_or_else(PoisonError::into_inner);
        let count = ERASURES.fetch_add(1, Ordering::SeqCst) + 1;
        recent.push_back((count, subject));
        if recent.len() > RECENT_ERASURES {
            recent.pop_front();
        }
    }
    let caches: Vec<Arc<dyn ForgetSubject>> = {
        let mut caches = CACHES.lock().unwrap_or_else(PoisonError::into_inner);
        caches.retain(|cache| cache.strong_count() > 0);
        caches.iter().filter_map(Weak::upgrade).collect()
    };
    for cache in caches {
        cache.forget_subject(subject);
    }
}

impl<A: Send + Sync + 'static> Cache<A> {
    /// A cache of at most `capacity` states, reached by erasures.
    pub(super) fn new(capacity: NonZeroUsize) -> Arc<Self> {
        let cache = Arc::new(Cache {
            entries: Mutex::new(lru::LruCache::new(capacity)),
        });
        let weak: Weak<dyn ForgetSubject> = Arc::downgrade(&cache) as Weak<dyn ForgetSubject>;
        let mut caches = CACHES.lock().unwrap_or_else(PoisonError::into_inner);
        caches.retain(|cache| cache.strong_count() > 0);
        caches.push(weak);
        cache
    }

    /// Takes an aggregate's state out while a command works on it: a command that fails
    /// leaves nothing behind that the store may contradict.
    pub(super) fn take(&self, id: Uuid) -> Option<Entry<A>> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop(&id)
            .filter(|entry| entry.since.elapsed() < STATE_TTL)
    }

    /// Keeps a state known to match the store at `entry.version`, unless an erasure heard
    /// of since `seen` (see [`erasures_seen`]) concerns one of its subjects.
    pub(super) fn put(&self, id: Uuid, entry: Entry<A>, seen: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock an eviction takes: an erasure after this sees the entry.
        if entry.erased_since(seen) {
            return;
        }
        // A concurrent command may have put a newer state meanwhile: keep that one.
        if entries
            .peek(&id)
            .is_none_or(|cached| cached.version <= entry.version)
        {
            entries.put(id, entry);
        }
    }

    /// How many states it holds.
    pub(super) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
