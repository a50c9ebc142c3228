//! The cache on a local directory, whose files are the GOPROXY tree itself.
//!
//! This is modgate's own tokio/std file code rather than object_store's
//! `LocalFileSystem`, because the requirements are about exactly the things
//! that crate decides for you:
//! - file names must be exactly the keys, so `GOPROXY=file://DIR` works
//!   (`LocalFileSystem` percent-encodes `~`, which module paths may contain);
//! - a commit is a temp file in the object's own directory, fsync, rename,
//!   and an fsync of the directory; the temp file's name
//!   (`.modgate-tmp-*`) lets `gc` find those a crash left behind;
//! - reads pin objects in the same index that eviction uses, and eviction
//!   unlinks only under that index's lock, so a pinned object (being
//!   served) is never removed.
//!
//! Blocking file-system calls run on tokio's blocking pool; bodies are
//! written in chunks and read by [`FileBody`] (page-cache hits without a
//! thread hop, chunks sized to the number of readers). Files that are not valid keys (or not regular
//! files) are left alone: never listed, never evicted.

use std::fs::{self, File, FileTimes};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

use crate::cache::entry::{CounterSnapshot, Counters, Entry, GcReport, Stats};
use crate::cache::error::CacheError;
use crate::cache::file_body::FileBody;
use crate::cache::key::Key;
use crate::cache::lru::{Identity, Index, PinGuard};
use crate::cache::object::{CachedObject, ObjectStream};

/// Temp files start with this; no key element starts with '.'.
pub(crate) const TEMP_PREFIX: &str = ".modgate-tmp-";
/// The hidden top-level directory for the cache's own files (the readiness
/// probe). `go` never reads it: no module path starts with '.'.
pub(crate) const HIDDEN_DIR: &str = ".modgate";
/// An object's file opened for a hit: the file, its length, when it was
/// stored, and the pin that keeps eviction away while it is read.
type Opened = (File, u64, SystemTime, PinGuard);

/// A temp file untouched for this long belongs to no live writer (a writer
/// touches its file on every chunk, and the proxy's idle timeout is far
/// shorter), so `gc` removes it.
pub const ORPHAN_AGE: Duration = Duration::from_secs(3600);

/// A cache directory and its index.
pub(crate) struct DirStore {
    root: PathBuf,
    /// `dir /abs/path`, for messages.
    name: String,
    max_size: u64,
    index: Arc<Index>,
    counters: Counters,
    /// What opening found wrong but worked around, one line each: the
    /// directories it could not read, a hidden directory it could not
    /// create (a read-only cache).
    warnings: std::sync::Mutex<Vec<String>>,
}

impl DirStore {
    /// Creates `root` if needed and indexes what it holds, oldest use first.
    pub(crate) async fn open(root: &Path, max_size: u64) -> Result<Arc<DirStore>, CacheError> {
        let store = Arc::new(DirStore {
            root: root.to_owned(),
            name: format!("dir {}", root.display()),
            max_size,
            index: Arc::new(Index::default()),
            counters: Counters::default(),
            warnings: std::sync::Mutex::default(),
        });
        let this = store.clone();
        blocking(&store.name, "open", move || this.build_index()).await?;
        Ok(store)
    }

    fn build_index(&self) -> Result<(), CacheError> {
        let open_error = |e: io::Error| CacheError::Open {
            backend: self.name.clone(),
            detail: format!("{}: {e}", self.root.display()),
        };
        let mut warnings = Vec::new();
        let hidden = self.root.join(HIDDEN_DIR);
        // A copy of a live cache has its hidden directory already: whether
        // anything can be stored is asked of the file system.
        let writable = fs::create_dir_all(&hidden).and_then(|()| {
            tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .tempfile_in(&hidden)
                .map(drop)
        });
        if let Err(e) = writable {
            // A directory that exists but cannot be written to (a read-only
            // mount of a seeded cache) can still be read and listed.
            if !self.root.is_dir() {
                return Err(open_error(e));
            }
            warnings.push(format!(
                "cannot create or write {}: {e}; objects can be read, but nothing can be stored",
                hidden.display()
            ));
        }
        let mut found = Vec::new();
        let mut skipped = |dir: &Path, e: &io::Error| {
            warnings.push(format!(
                "skipped {}: {e}; objects under it are not listed, served or evicted",
                dir.display()
            ))
        };
        walk(&self.root, &self.root, &mut skipped, &mut |rel, meta| {
            let Some(name) = rel.rsplit('/').next() else { return };
            if name.starts_with(TEMP_PREFIX) {
                return;
            }
            if let Ok(key) = Key::parse(rel) {
                let stored_at = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                // The access time modgate sets on every read survives a
                // restart; it is never earlier than the commit.
                let last_used = meta.accessed().map_or(stored_at, |a| a.max(stored_at));
                found.push((key, meta.len(), stored_at, last_used, Identity::of(meta)));
            }
        })
        .map_err(open_error)?;
        for warning in &warnings {
            tracing::warn!(backend = %self.name, "{warning}");
        }
        *self.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = warnings;
        found.sort_by_key(|(_, _, _, last_used, _)| *last_used);
        let mut state = self.index.lock();
        for (key, size, stored_at, last_used, identity) in found {
            let name = key.as_str().to_owned();
            state.upsert(key, size, stored_at, last_used);
            state.set_identity(&name, identity);
        }
        Ok(())
    }

    /// The cache directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// `dir /abs/path`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// What opening worked around (unreadable directories, a read-only
    /// root), one line each.
    pub(crate) fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn path_of(&self, key: &Key) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn io(&self, op: &'static str, key: &Key, e: &io::Error) -> CacheError {
        CacheError::io(&self.name, op, key.as_str(), e)
    }

    /// The object under `key`, pinned, or `None`.
    pub(crate) async fn get(self: &Arc<Self>, key: &Key) -> Result<Option<CachedObject>, CacheError> {
        let opened = match self.open_cached(key) {
            Some(opened) => opened,
            None => {
                let (this, k) = (self.clone(), key.clone());
                blocking(&self.name, "read", move || this.open_pinned(&k)).await?
            }
        };
        let Some((file, size, stored_at, pin)) = opened else {
            return Ok(None);
        };
        let (name, k) = (self.name.clone(), key.clone());
        let chunks = FileBody::new(file, size)
            .map_err(move |e| CacheError::io(&name, "read", k.as_str(), &e))
            .boxed();
        Ok(Some(CachedObject::new(
            key.clone(),
            size,
            stored_at,
            ObjectStream::new(chunks, Some(pin)),
        )))
    }

    /// Pins `key` (indexing it first if another process wrote it), then
    /// opens its file. The pin comes first: from then on eviction skips it.
    fn open_pinned(&self, key: &Key) -> Result<Option<Opened>, CacheError> {
        let path = self.path_of(key);
        let now = SystemTime::now();
        let pin = {
            let mut state = self.index.lock();
            if !state.contains(key.as_str()) {
                match fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_file() => {
                        let stored_at = meta.modified().unwrap_or(now);
                        state.upsert(key.clone(), meta.len(), stored_at, now);
                        state.set_identity(key.as_str(), Identity::of(&meta));
                    }
                    Ok(_) => return Ok(None),
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(self.io("read", key, &e)),
                }
            }
            PinGuard::take(&self.index, &mut state, key.as_str(), now)
        };
        let Some(pin) = pin else { return Ok(None) };
        let file = match open_for_reading(&path) {
            Ok(file) => file,
            // Removed by another process: forget it.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(self.forget(key, pin)),
            Err(e) => return Err(self.io("read", key, &e)),
        };
        let meta = file.metadata().map_err(|e| self.io("read", key, &e))?;
        if !meta.is_file() {
            // Something other than a file took its place: not an object.
            return Ok(self.forget(key, pin));
        }
        if !self.still_whole(key, &meta) {
            return Ok(self.discard(key, pin));
        }
        Ok(Some(opened(file, &meta, now, pin)))
    }

    /// Whether `key`'s file, described by `meta`, is still the one that
    /// was indexed: a file cut short or overwritten in place since (by
    /// hand, or a disk fault) is not, and must not be served as a hit. A
    /// file another writer put in its place (a new inode) is indexed anew.
    fn still_whole(&self, key: &Key, meta: &fs::Metadata) -> bool {
        let Some(now) = Identity::of(meta) else { return true };
        let mut state = self.index.lock();
        match state.identity(key.as_str()) {
            Some(was) if was.changed_in_place(&now) => {
                tracing::warn!(backend = %self.name, key = %key.as_str(), "a cached object changed on disk since it was stored (cut short or overwritten); it is removed and fetched again");
                false
            }
            Some(was) if was == now => true,
            _ => {
                let stored_at = meta.modified().unwrap_or_else(|_| SystemTime::now());
                state.upsert(key.clone(), meta.len(), stored_at, SystemTime::now());
                state.set_identity(key.as_str(), Some(now));
                true
            }
        }
    }

    /// Removes `key`'s object, whose file changed in place: from the index,
    /// then its file, under the index lock. Always `None`, the answer for a
    /// hit on it.
    fn discard(&self, key: &Key, pin: PinGuard) -> Option<Opened> {
        drop(pin);
        let mut state = self.index.lock();
        if state.remove(key.as_str()).is_some() {
            let _ = fs::remove_file(self.path_of(key)).or_else(not_found_is_ok);
        }
        None
    }

    /// Drops `key` from the index once its pin is released: its file is
    /// gone. Always `None`, the answer for a hit on it.
    fn forget(&self, key: &Key, pin: PinGuard) -> Option<Opened> {
        drop(pin);
        self.index.lock().remove(key.as_str());
        None
    }

    /// [`open_pinned`](Self::open_pinned) for an indexed object, on the
    /// calling thread, when the kernel can open its file from what it has
    /// in memory: `openat2` with `RESOLVE_CACHED` fails with `EAGAIN`
    /// instead of waiting for the disk, as `preadv2(RWF_NOWAIT)` does for
    /// the reads ([`FileBody`]). A hit then costs no trip through the
    /// blocking pool: two thread switches, which were about a quarter of a
    /// `.mod` hit's time through the endpoint (about 140 µs, now 110).
    /// `None` sends the caller to the blocking path: an object not indexed
    /// yet, a file the kernel would have to look up on disk, a kernel
    /// before 5.12, or any error, which that path reports.
    #[cfg(target_os = "linux")]
    fn open_cached(&self, key: &Key) -> Option<Option<Opened>> {
        use rustix::fs::{CWD, Mode, OFlags, ResolveFlags, openat2};
        let now = SystemTime::now();
        let pin = {
            let mut state = self.index.lock();
            if !state.contains(key.as_str()) {
                return None;
            }
            PinGuard::take(&self.index, &mut state, key.as_str(), now)?
        };
        let path = self.path_of(key);
        // O_NONBLOCK: a FIFO put where the file was cannot hold the worker
        // waiting for a writer (on a regular file the flag changes nothing).
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = openat2(CWD, &path, flags, Mode::empty(), ResolveFlags::CACHED).ok()?;
        let file = File::from(fd);
        // An open file's inode is in memory: fstat does not wait.
        let meta = file.metadata().ok().filter(std::fs::Metadata::is_file)?;
        if !self.still_whole(key, &meta) {
            return Some(self.discard(key, pin));
        }
        // The access time it writes is an update of an inode in memory,
        // which waits for no read (at most, briefly, for the journal).
        Some(Some(opened(file, &meta, now, pin)))
    }

    #[cfg(not(target_os = "linux"))]
    fn open_cached(&self, _key: &Key) -> Option<Option<Opened>> {
        None
    }

    /// A writer whose temp file sits in the object's own directory.
    pub(crate) async fn writer(self: &Arc<Self>, key: &Key) -> Result<DirWriter, CacheError> {
        let (this, k) = (self.clone(), key.clone());
        let (file, temp) = blocking(&self.name, "write", move || this.create_temp(&k)).await?;
        Ok(DirWriter {
            store: self.clone(),
            key: key.clone(),
            file: tokio::fs::File::from_std(file),
            temp: Some(temp),
        })
    }

    fn create_temp(&self, key: &Key) -> Result<(File, TempPath), CacheError> {
        let path = self.path_of(key);
        let parent = path.parent().unwrap_or(&self.root);
        let mut builder = tempfile::Builder::new();
        builder.prefix(TEMP_PREFIX);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Readable like any file `go` would serve from a GOPROXY tree.
            builder.permissions(fs::Permissions::from_mode(0o644));
        }
        // Eviction prunes empty directories; one may vanish between the
        // two calls, so try again.
        let mut attempt = 0;
        let temp = loop {
            attempt += 1;
            fs::create_dir_all(parent).map_err(|e| self.io("write", key, &e))?;
            match builder.tempfile_in(parent) {
                Ok(temp) => break temp,
                Err(e) if e.kind() == ErrorKind::NotFound && attempt < 3 => continue,
                Err(e) => return Err(self.io("write", key, &e)),
            }
        };
        Ok(temp.into_parts())
    }

    /// Makes a synced temp file the object under `key`: rename, fsync the
    /// directory, index it, and evict down to `max_size`.
    fn publish(&self, temp: TempPath, key: &Key, size: u64) -> Result<(), CacheError> {
        let path = self.path_of(key);
        temp.persist(&path).map_err(|e| self.io("commit", key, &e.error))?;
        if let Some(parent) = path.parent() {
            File::open(parent)
                .and_then(|dir| dir.sync_all())
                .map_err(|e| self.io("commit", key, &e))?;
        }
        let now = SystemTime::now();
        let identity = fs::symlink_metadata(&path).ok().and_then(|meta| Identity::of(&meta));
        let mut state = self.index.lock();
        state.upsert(key.clone(), size, now, now);
        state.set_identity(key.as_str(), identity);
        drop(state);
        self.counters.stored(size);
        self.evict_to_fit();
        Ok(())
    }

    /// Evicts least recently used, unpinned objects until the total is at
    /// most `max_size`, or only pinned objects are left. Each unlink
    /// happens under the index lock, so no reader can pin a victim.
    fn evict_to_fit(&self) -> (u64, u64) {
        let (mut objects, mut bytes) = (0, 0);
        loop {
            let mut state = self.index.lock();
            if state.total() <= self.max_size {
                break;
            }
            let Some(victim) = state.lru_unpinned().map(str::to_owned) else {
                tracing::debug!(backend = %self.name, total = state.total(), "cache over max_size, every object is pinned");
                break;
            };
            let Some(slot) = state.remove(&victim) else { break };
            let path = self.root.join(&victim);
            if let Err(e) = fs::remove_file(&path).or_else(not_found_is_ok) {
                tracing::warn!(backend = %self.name, key = %victim, error = %e, "cache eviction could not remove a file");
            }
            drop(state);
            self.prune_dirs(&path);
            self.counters.evicted(slot.size);
            objects += 1;
            bytes += slot.size;
        }
        (objects, bytes)
    }

    /// Removes the now-empty directories above a removed file, up to the
    /// root.
    fn prune_dirs(&self, removed: &Path) {
        let mut dir = removed.parent();
        while let Some(d) = dir.filter(|d| *d != self.root && d.starts_with(&self.root)) {
            if fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }

    /// Removes the object under `key`, pinned or not (a reader that has it
    /// open keeps reading the old file). Whether there was one.
    pub(crate) async fn delete(self: &Arc<Self>, key: &Key) -> Result<bool, CacheError> {
        let (this, k) = (self.clone(), key.clone());
        blocking(&self.name, "delete", move || {
            let path = this.path_of(&k);
            let existed = {
                let mut state = this.index.lock();
                state.remove(k.as_str());
                match fs::remove_file(&path) {
                    Ok(()) => true,
                    Err(e) if e.kind() == ErrorKind::NotFound => false,
                    Err(e) => return Err(this.io("delete", &k, &e)),
                }
            };
            this.prune_dirs(&path);
            Ok(existed)
        })
        .await
    }

    /// Indexed objects whose key starts with `prefix`, sorted by key.
    pub(crate) fn list(&self, prefix: &str) -> Vec<Entry> {
        let state = self.index.lock();
        let mut entries: Vec<Entry> = state
            .slots()
            .filter(|s| s.key.as_str().starts_with(prefix))
            .map(|s| Entry {
                key: s.key.clone(),
                size: s.size,
                stored_at: s.stored_at,
                last_used: Some(s.last_used),
            })
            .collect();
        drop(state);
        entries.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
        entries
    }

    /// Totals from the index.
    pub(crate) fn stats(&self) -> Stats {
        let state = self.index.lock();
        Stats::of(
            &self.name,
            Some(self.max_size),
            state.slots().map(|s| (&s.key, s.size)),
            self.counters.snapshot(),
        )
    }

    /// The counters, without locking the index.
    pub(crate) fn counters(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }

    /// Removes temp files older than [`ORPHAN_AGE`] and evicts down to
    /// `max_size`.
    pub(crate) async fn gc(self: &Arc<Self>) -> Result<GcReport, CacheError> {
        let this = self.clone();
        blocking(&self.name, "gc", move || {
            let mut report = GcReport::default();
            let now = SystemTime::now();
            let mut orphans = Vec::new();
            walk(&this.root, &this.root, &mut |_, _| {}, &mut |rel, meta| {
                let is_temp = rel.rsplit('/').next().is_some_and(|n| n.starts_with(TEMP_PREFIX));
                let age = meta.modified().ok().and_then(|m| now.duration_since(m).ok());
                if is_temp && age.is_some_and(|a| a >= ORPHAN_AGE) {
                    orphans.push((this.root.join(rel), meta.len()));
                }
            })
            .map_err(|e| CacheError::io(&this.name, "gc", "-", &e))?;
            for (path, size) in orphans {
                match fs::remove_file(&path) {
                    Ok(()) => {
                        report.temp_files += 1;
                        report.temp_bytes += size;
                        this.prune_dirs(&path);
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(CacheError::io(&this.name, "gc", &path.display().to_string(), &e)),
                }
            }
            (report.evicted_objects, report.evicted_bytes) = this.evict_to_fit();
            Ok(report)
        })
        .await
    }

    /// Writes, syncs and removes a small file under the hidden prefix.
    pub(crate) async fn ready(self: &Arc<Self>) -> Result<(), CacheError> {
        let this = self.clone();
        blocking(&self.name, "ready", move || {
            let hidden = this.root.join(HIDDEN_DIR);
            let probe = || -> io::Result<()> {
                fs::create_dir_all(&hidden)?;
                let mut file = tempfile::Builder::new().prefix("ready-").tempfile_in(&hidden)?;
                io::Write::write_all(&mut file, b"ok\n")?;
                file.as_file().sync_all()?;
                file.close()
            };
            probe().map_err(|e| CacheError::io(&this.name, "ready", HIDDEN_DIR, &e))
        })
        .await
    }
}

/// An object being written to a directory: a temp file next to where it
/// will live. Dropped without [`DirWriter::commit`], the temp file is
/// removed.
pub(crate) struct DirWriter {
    store: Arc<DirStore>,
    key: Key,
    file: tokio::fs::File,
    /// Removes the temp file when dropped; `None` once committed.
    temp: Option<TempPath>,
}

impl DirWriter {
    pub(crate) fn backend(&self) -> &str {
        &self.store.name
    }

    pub(crate) async fn write(&mut self, chunk: &Bytes) -> Result<(), CacheError> {
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| self.store.io("write", &self.key, &e))
    }

    pub(crate) async fn commit(mut self, size: u64) -> Result<(), CacheError> {
        let synced = async {
            self.file.flush().await?;
            self.file.sync_all().await
        };
        synced.await.map_err(|e| self.store.io("commit", &self.key, &e))?;
        let Some(temp) = self.temp.take() else {
            return Err(CacheError::backend(
                &self.store.name,
                "commit",
                self.key.as_str(),
                "committed twice",
            ));
        };
        let (store, key) = (self.store.clone(), self.key.clone());
        blocking(&self.store.name, "commit", move || store.publish(temp, &key, size)).await
    }

    pub(crate) async fn abort(mut self) -> Result<(), CacheError> {
        let Some(temp) = self.temp.take() else { return Ok(()) };
        let (name, key) = (self.store.name.clone(), self.key.clone());
        blocking(&self.store.name, "abort", move || {
            temp.close()
                .map_err(|e| CacheError::io(&name, "abort", key.as_str(), &e))
        })
        .await
    }
}

/// A hit's opened object, its access time set to `now`: recency that
/// survives a restart (the mtime, when it was stored, is kept).
fn opened(file: File, meta: &fs::Metadata, now: SystemTime, pin: PinGuard) -> Opened {
    let _ = file.set_times(FileTimes::new().set_accessed(now));
    (file, meta.len(), meta.modified().unwrap_or(now), pin)
}

/// Opens `path` for reading. On Linux without waiting for a writer, should
/// a FIFO have taken the file's place (on a regular file `O_NONBLOCK`
/// changes nothing).
fn open_for_reading(path: &Path) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits());
    }
    options.open(path)
}

/// Runs blocking file-system work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    backend: &str,
    op: &'static str,
    work: impl FnOnce() -> Result<T, CacheError> + Send + 'static,
) -> Result<T, CacheError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CacheError::backend(backend, op, "-", format!("task failed: {e}")))?
}

fn not_found_is_ok(e: io::Error) -> io::Result<()> {
    if e.kind() == ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// Calls `visit` with the `/`-separated relative path and metadata of every
/// regular file under `dir`, skipping the hidden top-level directory.
/// Symbolic links are not followed. Entries that vanish meanwhile are
/// skipped.
/// Visits every regular file under `dir`, by its path relative to `root`.
/// A directory below `root` that cannot be read is passed to `skipped`
/// and left out; only `root` itself failing is an error.
fn walk(
    root: &Path,
    dir: &Path,
    skipped: &mut dyn FnMut(&Path, &io::Error),
    visit: &mut dyn FnMut(&str, &fs::Metadata),
) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if dir == root => return Err(e),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            skipped(dir, &e);
            return Ok(());
        }
    };
    for entry in entries {
        let Ok(entry) = entry else { continue };
        let Ok(file_type) = entry.file_type() else { continue };
        let path = entry.path();
        if file_type.is_dir() {
            if dir == root && entry.file_name() == HIDDEN_DIR {
                continue;
            }
            walk(root, &path, skipped, visit)?;
        } else if file_type.is_file() {
            let Ok(meta) = entry.metadata() else { continue };
            let Some(rel) = path.strip_prefix(root).ok().and_then(Path::to_str) else {
                continue;
            };
            visit(&rel.replace(std::path::MAIN_SEPARATOR, "/"), &meta);
        }
    }
    Ok(())
}
