//! What triggers a reload: SIGHUP, and changes to the config file.
//!
//! The file's directory is watched, not the file: editors and config
//! management replace a file by writing another and renaming it over the
//! old one, which a watch on the file itself would lose. Events for the
//! file's name (or for Kubernetes' `..data` links) are debounced: a reload
//! starts once the directory has been quiet for [`DEBOUNCE`], and only when
//! the file's text changed. SIGHUP reloads in any case, so a CA or root
//! file replaced beside an unchanged config is read again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::core::timer;
use crate::proxy::reload::Reloader;

/// How long the file must be left alone before it is read.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Starts the triggers, until `stop` is cancelled. The file watcher starts
/// only for a config file (not the embedded default); when it cannot, the
/// reason is returned and SIGHUP still works.
pub fn start(reloader: Arc<Reloader>, stop: CancellationToken) -> Result<(), String> {
    // Installed here, before the caller reports the proxy listening: a
    // SIGHUP that arrives before its handler would end the process.
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangup) => drop(tokio::spawn(on_hangup(hangup, reloader.clone(), stop.clone()))),
        Err(e) => tracing::warn!(error = %e, "cannot install the SIGHUP handler; reload by editing the file"),
    }
    let Some(path) = reloader.path() else {
        return Ok(());
    };
    let (events, rx) = mpsc::unbounded_channel();
    let name = path.file_name().map(|n| n.to_owned());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // modgate's own reads of the file (each reload's) are events too;
        // reacting to them would reload again and again.
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        let ours = event.paths.iter().any(|p| {
            let file = p.file_name();
            file == name.as_deref() || file.is_some_and(|f| f.to_string_lossy().starts_with(".."))
        });
        if ours {
            let _ = events.send(());
        }
    })
    .map_err(|e| format!("cannot watch the config file: {e}"))?;
    let dir = watched_dir(&path);
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    tokio::spawn(debounced(reloader, rx, watcher, stop));
    Ok(())
}

/// The directory holding `path`, absolute.
fn watched_dir(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

/// Reloads after each burst of file events has settled.
async fn debounced<W>(
    reloader: Arc<Reloader>,
    mut rx: mpsc::UnboundedReceiver<()>,
    watcher: W,
    stop: CancellationToken,
) {
    let _watching = watcher;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            event = rx.recv() => if event.is_none() { return },
        }
        // Quiet for DEBOUNCE: the editor has finished writing.
        while let Ok(Some(())) = timer::timeout(DEBOUNCE, rx.recv()).await {}
        reloader.reload(true).await;
    }
}

/// Reloads on each SIGHUP.
#[cfg(unix)]
async fn on_hangup(mut hangup: tokio::signal::unix::Signal, reloader: Arc<Reloader>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            got = hangup.recv() => if got.is_none() { return },
        }
        tracing::info!("SIGHUP: reloading the config");
        reloader.reload(false).await;
    }
}
