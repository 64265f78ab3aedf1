//! The warm path: aggregates' states kept in memory with their versions, so a command on one
//! appends without reading it first. The append's `Exact` check validates what was cached; a
//! conflict evicts it. An erasure evicts every state built from the erased person's events,
//! in every cache of the process, since a state may hold their personal data.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use uuid::Uuid;

/// One cached state.
pub(super) struct Entry<A> {
    pub(super) state: A,
    pub(super) version: u64,
    /// The data subjects of the events folded into it.
    pub(super) subjects: Vec<Uuid>,
}

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
            .filter(|(_, entry)| entry.subjects.contains(&subject))
            .map(|(id, _)| *id)
            .collect();
        for id in holding {
            entries.pop(&id);
        }
    }
}

static CACHES: Mutex<Vec<Weak<dyn ForgetSubject>>> = Mutex::new(Vec::new());

/// Counts erasures heard of: a command that loaded a state before one and finishes after it
/// does not cache that state (it may hold the erased person's data, and the eviction passed
/// it by while the command held it).
static ERASURES: AtomicU64 = AtomicU64::new(0);

/// Where the erasure count stands: taken when a command takes or loads its state.
pub(super) fn erasures_seen() -> u64 {
    ERASURES.load(Ordering::SeqCst)
}

/// Evicts every cached state built from `subject`'s events, in every cache of the process:
/// called when an erasure commits here, and when one made elsewhere is heard of.
pub(crate) fn forget_subject(subject: Uuid) {
    ERASURES.fetch_add(1, Ordering::SeqCst);
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
        CACHES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(weak);
        cache
    }

    /// Takes an aggregate's state out while a command works on it: a command that fails
    /// leaves nothing behind that the store may contradict.
    pub(super) fn take(&self, id: Uuid) -> Option<Entry<A>> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop(&id)
    }

    /// Keeps a state known to match the store at `entry.version`, unless an erasure was
    /// heard of since `seen` (see [`erasures_seen`]).
    pub(super) fn put(&self, id: Uuid, entry: Entry<A>, seen: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock an eviction takes: an erasure after this sees the entry.
        if erasures_seen() == seen {
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
