//! Reloading the config while serving (SIGHUP, or a change to the file).
//!
//! The file is loaded and validated the way `check` validates it (the
//! syntax, the root files, the CA against `tls.intercept`). Only a config
//! that passes is put in effect, whole and at once ([`Live`]); a bad one is
//! logged with its `file:line:col` and the old one keeps serving. Requests
//! and tunnels in flight finish under the config they started with.
//!
//! Some settings belong to what `serve` built once and cannot change under
//! it: the proxy's `listen` (and `[admin] listen`, `[transparent] listen`),
//! `[limits]`, and the module cache (`[cache]`, `[sumdb]`). A reload that
//! changes one of them is refused with a message saying it needs a restart.
//! The module cache (its store and in-flight fetches), the metrics, the
//! ports of modgate's own upstream sockets (for the transparent listener's
//! loop check) and the failed-login counts of `[auth]` carry over to the new
//! config. `[parent]`, `[auth]` (the htpasswd file is read again),
//! `transparent.mark` and the rules take effect for new connections and
//! requests.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures_util::FutureExt;

use crate::config::Config;
use crate::proxy::context::Context;
use crate::proxy::live::Live;
use crate::proxy::server::rebuild_context;

/// What the admin page shows about the config in effect and the last
/// reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    /// When the config in effect was loaded.
    pub loaded_at: SystemTime,
    /// The last reload that was refused, when it was, and why; cleared by
    /// the next good one.
    pub failed: Option<(SystemTime, String)>,
    /// Reloads put in effect.
    pub ok: u64,
    /// Reloads refused.
    pub refused: u64,
}

/// Which restart-only settings the command line fixed, so the file's
/// value does not matter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    /// `serve --listen` was given.
    pub listen: bool,
    /// `serve --admin-listen` was given.
    pub admin_listen: bool,
}

/// Reloads one config file into the context in effect.
pub struct Reloader {
    live: Arc<Live<Context>>,
    path: Option<PathBuf>,
    overrides: Overrides,
    status: Mutex<ReloadStatus>,
    /// One reload at a time.
    running: tokio::sync::Mutex<()>,
}

/// How a reload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The new config is in effect.
    Loaded,
    /// The file's text has not changed (a file event that changed nothing).
    Unchanged,
    /// Refused; the config in effect stays. The reason, one line.
    Refused(String),
}

impl Reloader {
    /// Reloads what `serve` loaded: `path` (`serve --config`), or the same
    /// choice `serve` made without one.
    pub fn new(live: Arc<Live<Context>>, path: Option<PathBuf>, overrides: Overrides) -> Reloader {
        Reloader {
            live,
            path,
            overrides,
            status: Mutex::new(ReloadStatus {
                loaded_at: SystemTime::now(),
                failed: None,
                ok: 0,
                refused: 0,
            }),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// The config file's path, when it is a file.
    pub fn path(&self) -> Option<PathBuf> {
        let source = self.live.current().config.source.clone();
        (source != crate::config::EMBEDDED_NAME).then(|| PathBuf::from(source))
    }

    /// The status, for the admin page.
    pub fn status(&self) -> ReloadStatus {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Loads the file again and, when it is valid and changes nothing that
    /// needs a restart, puts it in effect. With `only_if_changed`, a file
    /// whose text is the same is left alone (file events); otherwise it is
    /// rebuilt anyway (SIGHUP: the CA or root files may have changed).
    pub async fn reload(&self, only_if_changed: bool) -> Reloaded {
        let _one = self.running.lock().await;
        let current = self.live.current();
        // The status the admin page shows changes first, then the metrics
        // and the log line: whoever sees either sees the page agree.
        match self.next(&current, only_if_changed).await {
            Ok(Some(next)) => {
                let (digest, source) = (next.config.digest.clone(), next.config.source_path());
                Arc::new(next).put_in_effect(&self.live);
                self.note(|status| {
                    status.ok += 1;
                    status.loaded_at = SystemTime::now();
                    status.failed = None;
                });
                current.telemetry.metrics.reloaded(Some(&digest));
                tracing::info!(config = %source, sha256 = %digest, "config reloaded; new connections and requests use it");
                Reloaded::Loaded
            }
            Ok(None) => Reloaded::Unchanged,
            Err(why) => {
                self.note(|status| {
                    status.refused += 1;
                    status.failed = Some((SystemTime::now(), why.clone()));
                });
                current.telemetry.metrics.reloaded(None);
                tracing::error!(error = %why, "config reload refused; the config in effect stays");
                Reloaded::Refused(why)
            }
        }
    }

    /// Changes the status the admin page shows.
    fn note(&self, change: impl FnOnce(&mut ReloadStatus)) {
        match self.status.lock() {
            Ok(mut status) => change(&mut status),
            Err(poisoned) => change(&mut poisoned.into_inner()),
        }
    }

    /// The context for the file as it is now; `None` when unchanged.
    async fn next(&self, current: &Context, only_if_changed: bool) -> Result<Option<Context>, String> {
        let config = Config::load(self.path.as_deref()).map_err(|e| e.to_string())?;
        // A file put back to the config in effect after a refused edit is
        // loaded again, which clears the failure.
        let failed = self.status().failed.is_some();
        if only_if_changed && config.digest == current.config.digest && !failed {
            return Ok(None);
        }
        let text = config.text();
        needs_restart(&current.config, &config, self.overrides, text.as_deref())?;
        let source = config.source.clone();
        // A file the config names that cannot be used points back at the
        // key naming it, as at start (`modgate.toml:9:12: auth.htpasswd: ...`).
        let located = config.clone();
        // A bug met while building it must not end the reloads: the config
        // in effect stays, and the failure is reported like any other.
        match std::panic::AssertUnwindSafe(rebuild_context(config, current))
            .catch_unwind()
            .await
        {
            Ok(built) => built.map(Some).map_err(|e| {
                let e = e.to_string();
                format!("{}: {e}", located.locate(&e))
            }),
            Err(_) => Err(format!(
                "{source}: an internal error while building the new context (a bug; stderr has the panic); the config in effect stays"
            )),
        }
    }
}

/// Refuses a config that changes what `serve` built once.
fn needs_restart(old: &Config, new: &Config, overrides: Overrides, text: Option<&str>) -> Result<(), String> {
    // `file:line:col` of the key (or table) in the new text, when found.
    let at = |table: Option<&str>, key: Option<&str>| match text.and_then(|text| key_position(text, table, key)) {
        Some((line, col)) => format!("{}:{line}:{col}", new.source),
        None => new.source.clone(),
    };
    let refuse = |what: &str, was: String, now: String| {
        let (table, key) = match what.rsplit_once('.') {
            Some((table, key)) => (Some(table), key),
            None => (None, what),
        };
        Err(format!(
            "{}: {what} changed from {was} to {now}; that needs a restart of modgate (the config in effect stays)",
            at(table, Some(key))
        ))
    };
    if !overrides.listen && old.listen != new.listen {
        return refuse("listen", old.listen.to_string(), new.listen.to_string());
    }
    if !overrides.admin_listen && old.admin.listen.addr() != new.admin.listen.addr() {
        return refuse(
            "admin.listen",
            old.admin.listen.to_string(),
            new.admin.listen.to_string(),
        );
    }
    let transparent = |c: &Config| c.transparent.map(|t| t.listen);
    if transparent(old) != transparent(new) {
        let show = |a: Option<std::net::SocketAddr>| a.map_or_else(|| "none".to_owned(), |a| a.to_string());
        return refuse("transparent.listen", show(transparent(old)), show(transparent(new)));
    }
    // Plain data: their Debug forms are equal exactly when they are.
    let same = |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") == format!("{b:?}");
    let tables: [(&str, bool); 3] = [
        ("[limits]", same(&old.limits, &new.limits)),
        ("[cache]", same(&old.cache, &new.cache)),
        ("[sumdb]", same(&old.sumdb, &new.sumdb)),
    ];
    match tables.iter().find(|(_, same)| !same) {
        Some((table, _)) => Err(format!(
            "{}: {table} changed; that needs a restart of modgate (the config in effect stays)",
            at(Some(table.trim_matches(['[', ']'])), None)
        )),
        None => Ok(()),
    }
}

/// The 1-based line and column where `key` is written in `table` (a key at
/// the top when `None`) in TOML `text`, or where the `[table]` header is
/// when `key` is `None`: as `key = ...` inside the table, or as
/// `table.key = ...` at the top.
fn key_position(text: &str, table: Option<&str>, key: Option<&str>) -> Option<(usize, usize)> {
    let assigns = |line: &str, name: &str| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.trim_start().starts_with('=') && !rest.trim_start().starts_with("=="))
    };
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        let col = raw.len() - line.len() + 1;
        if let Some(header) = line.strip_prefix('[').filter(|h| !h.starts_with('[')) {
            let name = header.split(']').next().unwrap_or_default().trim().to_owned();
            if key.is_none() && table == Some(name.as_str()) {
                return Some((i + 1, col));
            }
            current = Some(name);
            continue;
        }
        if line.starts_with("[[") {
            current = Some(String::new());
            continue;
        }
        let Some(key) = key else { continue };
        let found = match (table, &current) {
            (None, None) => assigns(line, key),
            (Some(t), Some(c)) if c == t => assigns(line, key),
            (Some(t), None) => assigns(line, &format!("{t}.{key}")),
            _ => false,
        };
        if found {
            return Some((i + 1, col));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_settings_are_named() {
        let old = Config::parse("listen = \"127.0.0.1:3128\"\n", "m.toml").unwrap();
        let text = "# moved\n  listen = \"127.0.0.1:3129\"\n";
        let new = Config::parse(text, "m.toml").unwrap();
        let e = needs_restart(&old, &new, Overrides::default(), Some(text)).unwrap_err();
        assert_eq!(
            e,
            "m.toml:2:3: listen changed from 127.0.0.1:3128 to 127.0.0.1:3129; that needs a restart of modgate (the config in effect stays)"
        );
        let overridden = Overrides {
            listen: true,
            ..Overrides::default()
        };
        assert!(needs_restart(&old, &new, overridden, None).is_ok());
        let text = "[[rule]]\naction = \"direct\"\n[cache]\nlist_ttl = \"5m\"\n";
        let new = Config::parse(text, "m.toml").unwrap();
        let old = Config::parse("[[rule]]\naction = \"direct\"\n", "m.toml").unwrap();
        assert!(
            needs_restart(&old, &new, Overrides::default(), Some(text))
                .unwrap_err()
                .starts_with("m.toml:3:1: [cache] changed")
        );
        let old = Config::parse("", "m.toml").unwrap();
        // The worker threads are started once, with the process.
        let new = Config::parse("[limits]\nworkers = 1\n", "m.toml").unwrap();
        assert!(
            needs_restart(&old, &new, Overrides::default(), None)
                .unwrap_err()
                .contains("[limits] changed")
        );
        let new = Config::parse("[[rule]]\naction = \"block\"\n", "m.toml").unwrap();
        assert!(needs_restart(&old, &new, Overrides::default(), None).is_ok());
    }

    #[test]
    fn the_transparent_listener_needs_a_restart_but_parent_auth_and_mark_do_not() {
        let old = Config::parse("[transparent]\nlisten = \"127.0.0.1:3129\"\n", "m.toml").unwrap();
        let none = Config::parse("", "m.toml").unwrap();
        assert_eq!(
            needs_restart(&old, &none, Overrides::default(), Some("")).unwrap_err(),
            "m.toml: transparent.listen changed from 127.0.0.1:3129 to none; that needs a restart of modgate (the config in effect stays)"
        );
        let text = "[transparent]\nlisten = \"127.0.0.1:3129\"\n";
        assert!(
            needs_restart(&none, &old, Overrides::default(), Some(text))
                .unwrap_err()
                .starts_with("m.toml:2:1: transparent.listen changed from none to 127.0.0.1:3129")
        );
        let dotted = "transparent.listen = \"127.0.0.1:3129\"\n";
        assert!(
            needs_restart(&none, &old, Overrides::default(), Some(dotted))
                .unwrap_err()
                .starts_with("m.toml:1:1: transparent.listen changed")
        );
        // The htpasswd file is read when the context is built, not here.
        let text = "[transparent]\nlisten = \"127.0.0.1:3129\"\nmark = 7\n\
                    [parent]\nurl = \"http://u:p@127.0.0.1:8080\"\n\
                    [auth]\nhtpasswd = \"users\"\n";
        let new = Config::parse(text, "m.toml").unwrap();
        assert!(needs_restart(&old, &new, Overrides::default(), None).is_ok());
    }
}
