//! Where fetches in flight spool their bodies: one directory per process,
//! removed when the cache is dropped, and found and removed by the next
//! start when a process was killed before it could.
//!
//! With a directory cache the spool lives under the cache's hidden
//! `.modgate/spool/`, on the same disk as the objects it becomes: a
//! toolchain zip spooled to a tmpfs `/tmp` would sit in memory. Otherwise
//! (object storage, or a cache directory that cannot be written) it lives
//! in the system's temp directory as `modgate-spool-PID-*`.
//!
//! A process's directory is named after its pid and holds a `lock` file
//! the process keeps locked (`flock`) while it runs. A start removes every
//! directory whose lock it can take: its process has ended, whatever its
//! pid (a container's modgate is pid 1 on every start) and whichever pid
//! namespace or host it ran in (a lock on a shared or network file system
//! is seen by all). A directory without a lock file (one just being made,
//! or left by an older modgate) goes once untouched for [`STALE_AFTER`];
//! should a live one go anyway, [`Spool::create`] makes it again.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Bytes free for an unprivileged writer on the file system holding
/// `path`, where that can be asked.
#[cfg(target_os = "linux")]
pub fn free_space(path: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    Some((stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64))
}

/// Elsewhere it is not asked: room is assumed.
#[cfg(not(target_os = "linux"))]
pub fn free_space(_path: &Path) -> Option<u64> {
    None
}

/// A spool directory with no lock file is removed once it has been
/// untouched this long.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// The file in each spool directory its process keeps locked.
const LOCK: &str = "lock";

/// The spool directory's name under a directory cache's hidden directory.
const UNDER_CACHE: &str = "spool";
/// Each process's directory starts with this (then `PID-`) in the system's
/// temp directory.
const IN_TEMP: &str = "modgate-spool-";

/// This process's spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: tempfile::TempDir,
    /// On the directory cache's disk, rather than in the temp directory.
    under_cache: bool,
    /// Locked while this process runs; the lock goes with the process.
    _lock: Option<Held>,
}

impl Spool {
    /// A spool under `cache_hidden` (a directory cache's `.modgate/`) when
    /// given and writable, else in the system's temp directory. Stale
    /// directories of dead processes beside it are removed first.
    pub fn open(cache_hidden: Option<&Path>) -> io::Result<Spool> {
        if let Some(hidden) = cache_hidden {
            let parent = hidden.join(UNDER_CACHE);
            match std::fs::create_dir_all(&parent).and_then(|()| Spool::open_in(&parent, "")) {
                Ok(spool) => {
                    return Ok(Spool {
                        under_cache: true,
                        ..spool
                    });
                }
                Err(e) => {
                    tracing::debug!(dir = %parent.display(), error = %e, "spooling in the temp directory instead")
                }
            }
        }
        Spool::open_in(&std::env::temp_dir(), IN_TEMP)
    }

    fn open_in(parent: &Path, prefix: &str) -> io::Result<Spool> {
        sweep(parent, prefix, SystemTime::now());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}{}-", std::process::id()))
            .tempdir_in(parent)?;
        // Without a lock (a file system that has none, or not Linux), the
        // directory is kept for as long as it is touched.
        let lock = if cfg!(target_os = "linux") {
            std::fs::File::create(dir.path().join(LOCK)).ok().and_then(try_lock)
        } else {
            None
        };
        Ok(Spool {
            dir,
            under_cache: false,
            _lock: lock,
        })
    }

    /// Whether it lives on the directory cache's disk.
    pub fn under_cache(&self) -> bool {
        self.under_cache
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Removes the directory and what is in it now, not when dropped (a
    /// process that ends may never drop it). Fetches still writing keep
    /// their open files.
    pub fn remove(&self) {
        if let Err(e) = std::fs::remove_dir_all(self.path())
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.path().display(), error = %e, "cannot remove the spool");
        }
    }

    /// Creates the spool file `path` (in this spool), making the directory
    /// again if something removed it.
    pub async fn create(path: &Path) -> io::Result<tokio::fs::File> {
        match tokio::fs::File::create(path).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    tokio::fs::create_dir_all(dir).await?;
                }
                tokio::fs::File::create(path).await
            }
            other => other,
        }
    }
}

/// The pid a spool directory's `name` belongs to, if it is one (`prefix`,
/// then `PID-`, then anything).
fn owner(name: &str, prefix: &str) -> Option<u32> {
    let (pid, _) = name.strip_prefix(prefix)?.split_once('-')?;
    pid.parse().ok()
}

/// Whether the process that made the spool directory `dir` has ended: its
/// lock can be taken (and is held in the returned file until the
/// directory is gone), or, with no lock file, nothing touched it for
/// [`STALE_AFTER`] before `now`.
fn ended(dir: &Path, modified: Option<SystemTime>, now: SystemTime) -> Option<Option<Held>> {
    match std::fs::File::open(dir.join(LOCK)) {
        Ok(file) => try_lock(file).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let untouched = modified.and_then(|m| now.duration_since(m).ok());
            untouched.is_some_and(|d| d >= STALE_AFTER).then_some(None)
        }
        Err(_) => None,
    }
}

/// A lock taken with `flock(2)`, held until dropped.
#[cfg(target_os = "linux")]
type Held = nix::fcntl::Flock<std::fs::File>;
#[cfg(not(target_os = "linux"))]
type Held = std::fs::File;

/// `file`'s exclusive lock, unless another holds it. (`std::fs::File::
/// try_lock` would do the same but needs Rust 1.89, above the crate's
/// MSRV.)
#[cfg(target_os = "linux")]
fn try_lock(file: std::fs::File) -> Option<Held> {
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).ok()
}

/// No locks here: every spool is judged by its age alone.
#[cfg(not(target_os = "linux"))]
fn try_lock(_file: std::fs::File) -> Option<Held> {
    None
}

/// Removes the spool directories in `parent` whose process has ended
/// ([`ended`]). What cannot be read or removed is left, and logged.
fn sweep(parent: &Path, prefix: &str, now: SystemTime) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| owner(n, prefix)) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        let path: PathBuf = entry.path();
        if !meta.is_dir() {
            continue;
        }
        let Some(_held) = ended(&path, meta.modified().ok(), now) else {
            continue;
        };
        match std::fs::remove_dir_all(&path) {
            Ok(()) => tracing::info!(dir = %path.display(), pid, "removed the spool a stopped modgate left"),
            Err(e) => tracing::warn!(dir = %path.display(), error = %e, "cannot remove a stopped modgate's spool"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid no Linux process can have (above the kernel's 2^22 limit).
    const DEAD: u32 = 4_194_305;

    #[test]
    fn a_spool_name_names_its_pid() {
        assert_eq!(owner("123-abc", ""), Some(123));
        assert_eq!(owner("modgate-spool-77-x1", IN_TEMP), Some(77));
        assert_eq!(owner("modgate-spool-AB12CD", IN_TEMP), None);
        assert_eq!(owner("ready", ""), None);
        assert_eq!(owner("x-1-2", ""), None);
    }

    #[test]
    fn a_spool_whose_lock_is_free_goes_and_a_locked_or_fresh_one_stays() {
        let parent = tempfile::tempdir().unwrap();
        // Left by a killed modgate with this very pid (a container's pid 1
        // on every start): its lock file is there and nobody holds it.
        let killed = parent.path().join(format!("{}-killed", std::process::id()));
        std::fs::create_dir(&killed).unwrap();
        std::fs::write(killed.join(LOCK), b"").unwrap();
        std::fs::write(killed.join("0.spool"), b"half a zip").unwrap();
        // A running one's (in another pid namespace: its pid means nothing
        // here), with its lock held.
        let running = parent.path().join(format!("{DEAD}-running"));
        std::fs::create_dir(&running).unwrap();
        let held = try_lock(std::fs::File::create(running.join(LOCK)).unwrap()).unwrap();
        // An older modgate's, with no lock file, and one just being made.
        let old = parent.path().join(format!("{DEAD}-old"));
        std::fs::create_dir(&old).unwrap();
        let other = parent.path().join("not-a-spool");
        std::fs::create_dir(&other).unwrap();

        sweep(parent.path(), "", SystemTime::now());
        assert!(!killed.exists(), "a spool whose lock is free is removed");
        assert!(running.exists(), "a locked spool stays, however old");
        assert!(old.exists(), "a lockless spool stays while it may be new");

        let later = SystemTime::now() + STALE_AFTER + Duration::from_secs(1);
        sweep(parent.path(), "", later);
        assert!(running.exists() && other.exists());
        assert!(!old.exists(), "a lockless spool goes once untouched");
        drop(held);
        sweep(parent.path(), "", SystemTime::now());
        assert!(!running.exists(), "its lock free, it goes");
    }

    #[tokio::test]
    async fn a_spool_lives_under_the_cache_and_goes_when_dropped() {
        let cache = tempfile::tempdir().unwrap();
        let hidden = cache.path().join(".modgate");
        let spool = Spool::open(Some(&hidden)).unwrap();
        let dir = spool.path().to_owned();
        assert!(dir.starts_with(hidden.join(UNDER_CACHE)), "{}", dir.display());
        assert_eq!(
            owner(dir.file_name().unwrap().to_str().unwrap(), ""),
            Some(std::process::id())
        );

        // Removed from under it, it is made again.
        std::fs::remove_dir_all(&dir).unwrap();
        Spool::create(&dir.join("0.spool")).await.unwrap();
        assert!(dir.join("0.spool").is_file());

        drop(spool);
        assert!(!dir.exists());
    }

    #[test]
    fn a_cache_that_cannot_hold_a_spool_spools_in_the_temp_directory() {
        let cache = tempfile::tempdir().unwrap();
        let file = cache.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let spool = Spool::open(Some(&file)).unwrap();
        assert!(spool.path().starts_with(std::env::temp_dir()));
        let name = spool.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(owner(&name, IN_TEMP), Some(std::process::id()));
    }
}
