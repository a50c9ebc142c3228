//! The two seams of the verifier: where database answers come from
//! ([`TileFetcher`]), and where the latest verified tree is kept
//! ([`TreeStore`]), with a file-backed store.

use std::path::PathBuf;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::gomod::sumdb::note::MAX_NOTE_SIZE;

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// 404 or 410: the database has no such record or tile.
    #[error("not found")]
    NotFound,
    /// The body is longer than the limit asked for.
    #[error("answer longer than {0} bytes")]
    TooLarge(usize),
    /// Anything else: connect, TLS, timeout, another status.
    #[error("{0}")]
    Failed(String),
}

/// Fetches database answers by path below the database's base URL:
/// `latest`, `lookup/<escaped module>@<escaped version>`, and
/// `tile/8/<level>/<number>[.p/<width>]`. How (direct, through a module
/// proxy's `sumdb/<name>/`, from a cache) is the implementation's choice.
pub trait TileFetcher: Send + Sync {
    /// Fetches one path, reading at most `limit` bytes of body (more is
    /// [`FetchError::TooLarge`]).
    fn fetch<'a>(&'a self, path: &'a str, limit: usize) -> BoxFuture<'a, Result<Bytes, FetchError>>;
}

/// Keeps the latest verified tree across restarts: the signed tree note
/// itself, so that what is loaded is verified with the key again, and a
/// store can never hand back a tree the key did not sign.
pub trait TreeStore: Send + Sync {
    /// The signed note of the latest verified tree; `None` before the
    /// first one was saved.
    fn load(&self) -> BoxFuture<'_, Result<Option<Bytes>, String>>;

    /// Replaces the saved note with a newer verified one, atomically.
    fn save<'a>(&'a self, note: &'a [u8]) -> BoxFuture<'a, Result<(), String>>;

    /// Moves a saved note that cannot be used out of the way, keeping it
    /// for a look; where it went.
    fn set_aside(&self) -> BoxFuture<'_, Result<String, String>>;

    /// Where the note is kept, for messages.
    fn name(&self) -> String;
}

/// A [`TreeStore`] in one file, written atomically (go keeps the same
/// note in `$GOPATH/pkg/sumdb/<name>/latest`).
#[derive(Debug, Clone)]
pub struct FileTreeStore {
    path: PathBuf,
}

impl FileTreeStore {
    /// A store in `path`; the file and its directory are made on the first
    /// save.
    pub fn new(path: impl Into<PathBuf>) -> FileTreeStore {
        FileTreeStore { path: path.into() }
    }
}

impl TreeStore for FileTreeStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<Bytes>, String>> {
        let path = self.path.clone();
        Box::pin(async move {
            let shown = path.display().to_string();
            let read = tokio::task::spawn_blocking(move || read_bounded(&path)).await;
            read.map_err(|e| format!("{shown}: {e}"))?
                .map_err(|e| format!("{shown}: {e}"))
        })
    }

    fn save<'a>(&'a self, note: &'a [u8]) -> BoxFuture<'a, Result<(), String>> {
        let (path, note) = (self.path.clone(), note.to_vec());
        Box::pin(async move {
            let shown = path.display().to_string();
            let write = tokio::task::spawn_blocking(move || crate::tls::evidence::write_atomically(&path, &note)).await;
            write
                .map_err(|e| format!("{shown}: {e}"))?
                .map_err(|e| format!("{shown}: {e}"))
        })
    }

    fn set_aside(&self) -> BoxFuture<'_, Result<String, String>> {
        let path = self.path.clone();
        // Named by when: an earlier damaged note is kept too.
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut aside = path.clone().into_os_string();
        aside.push(format!(".damaged-{at}"));
        let aside = PathBuf::from(aside);
        Box::pin(async move {
            let shown = aside.display().to_string();
            let moved = tokio::task::spawn_blocking(move || std::fs::rename(&path, &aside)).await;
            moved.map_err(|e| e.to_string())?.map_err(|e| format!("{shown}: {e}"))?;
            Ok(shown)
        })
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

/// The file's bytes, `None` if it does not exist; an error if it is larger
/// than a note can be.
fn read_bounded(path: &std::path::Path) -> std::io::Result<Option<Bytes>> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        // No file there; nor can there be one under a path whose parent
        // is a file.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_NOTE_SIZE as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > MAX_NOTE_SIZE {
        return Err(std::io::Error::other(format!(
            "larger than a tree note can be ({MAX_NOTE_SIZE} bytes)"
        )));
    }
    Ok(Some(Bytes::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_store_round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileTreeStore::new(dir.path().join("sum.test/latest"));
        assert_eq!(store.load().await.unwrap(), None);
        store.save(b"note one\n").await.unwrap();
        store.save(b"note two\n").await.unwrap();
        assert_eq!(store.load().await.unwrap().unwrap(), &b"note two\n"[..]);
    }

    #[tokio::test]
    async fn an_oversized_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latest");
        std::fs::write(&path, vec![b'x'; MAX_NOTE_SIZE + 1]).unwrap();
        assert!(FileTreeStore::new(&path).load().await.is_err());
    }
}
