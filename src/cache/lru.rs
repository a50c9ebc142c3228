//! The in-memory index of a cache directory: every object's size and times,
//! its recency, and its pins. Pure bookkeeping: the directory backend does
//! the I/O and takes this lock around every unlink, so an object that is
//! pinned (being served) is never evicted.
//!
//! Recency is a tick from a counter: the least recently used object has the
//! smallest tick, and `order` finds it in O(log n).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crate::cache::key::Key;

/// The index, shared by the store, its readers' pins and its writers.
#[derive(Default)]
pub(crate) struct Index {
    state: Mutex<IndexState>,
}

impl Index {
    /// The state, locked. A panic while it was held cannot leave it
    /// inconsistent in a way that matters more than losing the cache, so a
    /// poisoned lock is taken as it is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, IndexState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One object in the index.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub(crate) key: Key,
    pub(crate) size: u64,
    /// When the object was committed (its file's mtime).
    pub(crate) stored_at: SystemTime,
    /// When it was last read or committed.
    pub(crate) last_used: SystemTime,
    tick: u64,
    pins: u32,
    /// Tells a pin taken on an earlier object under the same key from one
    /// taken on this one.
    id: u64,
    /// Its file as it was indexed, to tell a file changed in place (cut
    /// short, overwritten) from one replaced by another writer.
    identity: Option<Identity>,
}

/// A file's identity and content stamp: which inode it is, and its length
/// and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Identity {
    /// The identity of the file `meta` describes, where it has one.
    #[cfg(unix)]
    pub(crate) fn of(meta: &std::fs::Metadata) -> Option<Identity> {
        use std::os::unix::fs::MetadataExt;
        Some(Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }

    #[cfg(not(unix))]
    pub(crate) fn of(_meta: &std::fs::Metadata) -> Option<Identity> {
        None
    }

    /// Whether `now` is this very file with other content: the same inode,
    /// another length or modification time. A file put in its place (a
    /// new inode, as a commit's rename makes) is not.
    pub(crate) fn changed_in_place(&self, now: &Identity) -> bool {
        (self.dev, self.ino) == (now.dev, now.ino) && (self.len, self.modified) != (now.len, now.modified)
    }
}

/// The index's data, behind [`Index::lock`].
#[derive(Default)]
pub(crate) struct IndexState {
    slots: HashMap<String, Slot>,
    /// tick -> key, oldest first.
    order: BTreeMap<u64, String>,
    tick: u64,
    next_id: u64,
    total: u64,
}

impl IndexState {
    /// Adds or replaces an object, making it the most recently used. Pins
    /// on a replaced object stay (its readers still hold its old file).
    pub(crate) fn upsert(&mut self, key: Key, size: u64, stored_at: SystemTime, last_used: SystemTime) {
        self.tick += 1;
        let tick = self.tick;
        let name = key.as_str().to_owned();
        if let Some(slot) = self.slots.get_mut(&name) {
            self.order.remove(&slot.tick);
            self.total = self.total - slot.size + size;
            slot.size = size;
            slot.stored_at = stored_at;
            slot.last_used = last_used;
            slot.tick = tick;
        } else {
            self.next_id += 1;
            self.total += size;
            let slot = Slot {
                key,
                size,
                stored_at,
                last_used,
                tick,
                pins: 0,
                id: self.next_id,
                identity: None,
            };
            self.slots.insert(name.clone(), slot);
        }
        self.order.insert(tick, name);
    }

    /// Notes the identity of `key`'s file, as indexed.
    pub(crate) fn set_identity(&mut self, key: &str, identity: Option<Identity>) {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.identity = identity;
        }
    }

    /// The identity of `key`'s file, as indexed.
    pub(crate) fn identity(&self, key: &str) -> Option<Identity> {
        self.slots.get(key).and_then(|slot| slot.identity)
    }

    /// Whether `key` is indexed.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.slots.contains_key(key)
    }

    /// Pins `key` and makes it the most recently used; the pin's id, or
    /// `None` if it is not indexed.
    pub(crate) fn pin(&mut self, key: &str, now: SystemTime) -> Option<u64> {
        self.tick += 1;
        let slot = self.slots.get_mut(key)?;
        self.order.remove(&slot.tick);
        slot.tick = self.tick;
        slot.last_used = now;
        slot.pins += 1;
        self.order.insert(self.tick, key.to_owned());
        Some(slot.id)
    }

    /// Releases a pin taken by [`IndexState::pin`].
    pub(crate) fn unpin(&mut self, key: &str, id: u64) {
        if let Some(slot) = self.slots.get_mut(key).filter(|s| s.id == id) {
            slot.pins = slot.pins.saturating_sub(1);
        }
    }

    /// Whether `key` is pinned.
    #[cfg(test)]
    pub(crate) fn is_pinned(&self, key: &str) -> bool {
        self.slots.get(key).is_some_and(|s| s.pins > 0)
    }

    /// Forgets `key`.
    pub(crate) fn remove(&mut self, key: &str) -> Option<Slot> {
        let slot = self.slots.remove(key)?;
        self.order.remove(&slot.tick);
        self.total -= slot.size;
        Some(slot)
    }

    /// The least recently used object that is not pinned.
    pub(crate) fn lru_unpinned(&self) -> Option<&str> {
        self.order
            .values()
            .find(|k| self.slots.get(k.as_str()).is_some_and(|s| s.pins == 0))
            .map(String::as_str)
    }

    /// Bytes of all indexed objects.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Every indexed object, in no particular order.
    pub(crate) fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.values()
    }
}

/// A pin on one object: while it lives, eviction leaves the object alone.
pub(crate) struct PinGuard {
    index: Arc<Index>,
    key: String,
    id: u64,
}

impl PinGuard {
    /// Pins `key`, if it is indexed.
    pub(crate) fn take(index: &Arc<Index>, state: &mut IndexState, key: &str, now: SystemTime) -> Option<PinGuard> {
        let id = state.pin(key, now)?;
        Some(PinGuard {
            index: index.clone(),
            key: key.to_owned(),
            id,
        })
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        self.index.lock().unpin(&self.key, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(n: u32) -> Key {
        Key::parse(&format!("example.com/m{n}/@v/list")).unwrap()
    }

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn least_recently_used_unpinned_goes_first() {
        let index = Arc::new(Index::default());
        let mut s = index.lock();
        for n in 1..=3 {
            s.upsert(key(n), 10, at(n.into()), at(n.into()));
        }
        assert_eq!(s.total(), 30);
        assert_eq!(s.lru_unpinned(), Some(key(1).as_str()));
        // Reading 1 makes 2 the oldest; pinning 2 skips it. (A guard locks
        // the index when dropped, so the lock is released first.)
        let pin1 = PinGuard::take(&index, &mut s, key(1).as_str(), at(9)).unwrap();
        drop(s);
        drop(pin1);
        let mut s = index.lock();
        let pin2 = PinGuard::take(&index, &mut s, key(2).as_str(), at(10)).unwrap();
        assert_eq!(s.lru_unpinned(), Some(key(3).as_str()));
        drop(s);
        drop(pin2);
        let mut s = index.lock();
        assert!(!s.is_pinned(key(2).as_str()));
        assert_eq!(s.lru_unpinned(), Some(key(3).as_str()));
        // Replacing an object changes the total by the difference.
        s.upsert(key(3), 25, at(11), at(11));
        assert_eq!(s.total(), 45);
        assert_eq!(s.lru_unpinned(), Some(key(1).as_str()));
        assert_eq!(s.remove(key(1).as_str()).unwrap().size, 10);
        assert_eq!(s.total(), 35);
    }

    #[test]
    fn a_pin_on_a_removed_object_does_not_touch_its_successor() {
        let index = Arc::new(Index::default());
        let mut s = index.lock();
        s.upsert(key(1), 10, at(1), at(1));
        let old = PinGuard::take(&index, &mut s, key(1).as_str(), at(2)).unwrap();
        s.remove(key(1).as_str());
        s.upsert(key(1), 10, at(3), at(3));
        let new = PinGuard::take(&index, &mut s, key(1).as_str(), at(4)).unwrap();
        drop(s);
        drop(old);
        assert!(index.lock().is_pinned(key(1).as_str()));
        drop(new);
        assert!(!index.lock().is_pinned(key(1).as_str()));
        assert!(PinGuard::take(&index, &mut index.lock(), key(9).as_str(), at(5)).is_none());
    }
}
