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
//! A process's directory is named after its pid. A start removes the
//! directories of pids that are no longer running on this host (Linux's
//! `/proc` tells), and only once they have been untouched for
//! [`STALE_AFTER`], so a modgate on another host sharing the cache over
//! a network file system keeps its own; should its directory go anyway,
//! [`Spool::create`] makes it again.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A dead process's spool directory is removed once it has been untouched
/// this long.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// The spool directory's name under a directory cache's hidden directory.
const UNDER_CACHE: &str = "spool";
/// Each process's directory starts with this (then `PID-`) in the system's
/// temp directory.
const IN_TEMP: &str = "modgate-spool-";

/// This process's spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: tempfile::TempDir,
}

impl Spool {
    /// A spool under `cache_hidden` (a directory cache's `.modgate/`) when
    /// given and writable, else in the system's temp directory. Stale
    /// directories of dead processes beside it are removed first.
    pub fn open(cache_hidden: Option<&Path>) -> io::Result<Spool> {
        if let Some(hidden) = cache_hidden {
            let parent = hidden.join(UNDER_CACHE);
            match std::fs::create_dir_all(&parent).and_then(|()| Spool::open_in(&parent, "")) {
                Ok(spool) => return Ok(spool),
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
        Ok(Spool { dir })
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

/// Whether process `pid` may still be running on this host. Only Linux
/// can tell without unsafe code; elsewhere every process may be.
fn may_be_running(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Removes the spool directories in `parent` whose process has ended and
/// that have not been touched for [`STALE_AFTER`] before `now`. What cannot
/// be read or removed is left, and logged.
fn sweep(parent: &Path, prefix: &str, now: SystemTime) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| owner(n, prefix)) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        let untouched = meta.modified().ok().and_then(|m| now.duration_since(m).ok());
        if !meta.is_dir() || untouched.is_none_or(|d| d < STALE_AFTER) || may_be_running(pid) {
            continue;
        }
        let path: PathBuf = entry.path();
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
    fn a_dead_processs_old_spool_goes_and_live_or_fresh_ones_stay() {
        let parent = tempfile::tempdir().unwrap();
        let dead = parent.path().join(format!("{DEAD}-old"));
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("0.spool"), b"left behind").unwrap();
        let mine = parent.path().join(format!("{}-mine", std::process::id()));
        std::fs::create_dir(&mine).unwrap();
        let other = parent.path().join("not-a-spool");
        std::fs::create_dir(&other).unwrap();

        // Just touched: a process elsewhere may still own it.
        sweep(parent.path(), "", SystemTime::now());
        assert!(dead.exists());

        let later = SystemTime::now() + STALE_AFTER + Duration::from_secs(1);
        sweep(parent.path(), "", later);
        assert!(!dead.exists(), "a stopped process's spool is removed");
        assert!(mine.exists() && other.exists(), "the live and the foreign stay");
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
        std::fs::remove_dir(&dir).unwrap();
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
