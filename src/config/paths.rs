//! Where files live when the config does not say: relative paths in a
//! config file resolve against that file's directory; the embedded default
//! writes nothing into the working directory and keeps its files under the
//! platform state directory. Every path is made absolute here, so every path
//! modgate prints is absolute.

use std::path::{Path, PathBuf};

/// modgate's state directory: `$XDG_STATE_HOME/modgate`, else
/// `~/.local/state/modgate` (the platform's local data directory where there
/// is no state directory), else `modgate-state` under the temp directory.
pub fn state_dir() -> PathBuf {
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .map(|d| d.join("modgate"))
        .unwrap_or_else(|| std::env::temp_dir().join("modgate-state"))
}

/// `path` made absolute against the working directory (it need not exist).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The directory relative paths of a config resolve against: the file's
/// own directory, or the state directory for the embedded default.
pub fn base_for(source: &str, embedded: bool) -> PathBuf {
    if embedded {
        return state_dir();
    }
    // A file named alone (`c.toml`) has the empty path as its parent,
    // which `std::path::absolute` refuses: it is the current directory.
    let parent = Path::new(source).parent().filter(|p| !p.as_os_str().is_empty());
    absolute(parent.unwrap_or(Path::new(".")))
}
