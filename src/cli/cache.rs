//! `modgate cache ls|stats|rm|gc`: look into and maintain the module cache
//! that the config's `[cache]` names.
//!
//! Exit codes: 0 done, 2 a bad config, pattern or a cache that is off, 1 a
//! storage failure.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Subcommand;
use serde_json::json;

use crate::cache::{CacheError, Entry, GcReport, KeyKind, Stats, Store};
use crate::cli::usage_error;
use crate::config::Config;
use crate::config::cache::CacheLocation;
use crate::core::size::{fmt_size, human_size};
use crate::gomod::escape::encode_case;
use crate::policy::glob::ModuleGlob;

/// Exit code for a storage failure.
const EXIT_STORAGE: u8 = 1;

#[derive(Subcommand)]
pub(crate) enum CacheCommand {
    /// List cached objects: size, when stored, key.
    Ls {
        /// A module path glob (GOPRIVATE syntax, e.g. `github.com/corp/*`) or a
        /// key prefix (anything with `@` or `!`, starting with `sumdb/`, or
        /// ending in `/`). Default: everything.
        pattern: Option<String>,
        /// Config file [default: ./modgate.toml if present, else the embedded default]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show objects and bytes, in total and by kind.
    Stats {
        /// Config file [default: ./modgate.toml if present, else the embedded default]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove the cached objects that PATTERN matches (see `ls`).
    Rm {
        /// A module path glob or a key prefix, as for `ls`; `*` matches every module.
        pattern: String,
        /// Config file [default: ./modgate.toml if present, else the embedded default]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Fetch module versions, and the checksum-database records go needs
    /// offline, into the cache (same rules and mirrors as serve).
    Warm {
        /// go.mod, go.sum, a directory (searched for go.sum files), or module@version.
        #[arg(required = true, value_name = "ARG")]
        args: Vec<String>,
        /// Config file [default: ./modgate.toml if present, else the embedded default]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Module versions fetched at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
    },
    /// Check cached module files again, offline: each .zip opens as a
    /// module zip, each .mod has a module statement, each .info is the JSON
    /// go reads, and each .mod and .zip hashes to the checksum-database
    /// record the cache keeps. Exit 1 when a bad one remains.
    Verify {
        /// A module path glob or a key prefix, as for `ls`. Default: everything.
        pattern: Option<String>,
        /// Config file [default: ./modgate.toml if present, else the embedded default]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Remove the bad ones, so the next request fetches them again.
        #[arg(long)]
        remove: bool,
    },
    /// Remove temp files left by crashed writers and evict down to cache.max_size.
    Gc {
        /// Config file [default: ./modgate.toml if present, else the embedded default]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print a JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// What `ls` and `rm` select.
enum Pattern {
    /// Keys starting with this (encoded) text.
    Prefix(String),
    /// Module files (not sumdb records) of modules matching the glob.
    Modules(ModuleGlob),
}

impl Pattern {
    fn parse(text: Option<&str>) -> Result<Pattern, String> {
        let Some(text) = text else {
            return Ok(Pattern::Prefix(String::new()));
        };
        let is_key_prefix = text.starts_with("sumdb/") || text.contains(['@', '!']) || text.ends_with('/');
        if is_key_prefix {
            return Ok(Pattern::Prefix(text.to_owned()));
        }
        text.parse::<ModuleGlob>()
            .map(Pattern::Modules)
            .map_err(|e| format!("modgate: bad pattern '{text}': {e}"))
    }

    /// The key prefixes every match starts with, for listing: a module
    /// glob's literal start, and the same under `private/`, where
    /// `[private]` modules are kept.
    fn list_prefixes(&self) -> Vec<String> {
        match self {
            Pattern::Prefix(p) => vec![p.clone()],
            Pattern::Modules(glob) => {
                let text = glob.to_string();
                let literal: String = text
                    .chars()
                    .take_while(|c| !matches!(c, '*' | '?' | '[' | '\\'))
                    .collect();
                let literal = encode_case(&literal);
                let private = format!("{}{literal}", crate::cache::key::PRIVATE_PREFIX);
                // One listing when one prefix covers the other (`*`: "").
                match private.starts_with(&literal) {
                    true => vec![literal],
                    false => vec![private, literal],
                }
            }
        }
    }

    fn matches(&self, entry: &Entry) -> bool {
        match self {
            Pattern::Prefix(p) => entry.key.as_str().starts_with(p.as_str()),
            Pattern::Modules(glob) => {
                entry.key.kind() != KeyKind::Sumdb && entry.key.module().is_some_and(|m| glob.matches(m))
            }
        }
    }
}

/// Runs a `cache` subcommand.
pub(crate) fn run(command: CacheCommand) -> ExitCode {
    // warm runs the proxy's request path, on a runtime of its own.
    let command = match command {
        CacheCommand::Warm { args, config, jobs } => return crate::cli::warm::run(config, jobs, args),
        other => other,
    };

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return storage_error(format!("modgate: cannot start the runtime: {e}")),
    };
    runtime.block_on(cache_command(command))
}

async fn cache_command(command: CacheCommand) -> ExitCode {
    match command {
        CacheCommand::Warm { .. } => usage_error("modgate: cache warm runs on its own runtime"),
        CacheCommand::Ls { pattern, config, json } => match open_selected(pattern.as_deref(), config).await {
            Ok((_, entries)) => {
                out!("{}", if json { ls_json(&entries) } else { ls_text(&entries) });
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        CacheCommand::Stats { config, json } => {
            let store = match open(config).await {
                Ok(store) => store,
                Err(code) => return code,
            };
            match store.stats().await {
                Ok(stats) if json => {
                    outln!("{}", stats_json(&stats));
                    ExitCode::SUCCESS
                }
                Ok(stats) => {
                    out!("{}", stats_text(&stats));
                    ExitCode::SUCCESS
                }
                Err(e) => storage_error(e),
            }
        }
        CacheCommand::Rm { pattern, config } => {
            let (store, entries) = match open_selected(Some(&pattern), config).await {
                Ok(selected) => selected,
                Err(code) => return code,
            };
            let mut bytes = 0;
            for entry in &entries {
                if let Err(e) = store.delete(&entry.key).await {
                    return storage_error(e);
                }
                bytes += entry.size;
                outln!("removed {}", entry.key);
            }
            outln!(
                "removed {} objects ({}) from {}",
                entries.len(),
                human_size(bytes),
                store.backend()
            );
            ExitCode::SUCCESS
        }
        CacheCommand::Verify {
            pattern,
            config,
            remove,
        } => {
            let db = match Config::load(config.as_deref()) {
                Ok(c) => c.sumdb.name().to_owned(),
                Err(e) => return usage_error(e),
            };
            let (store, entries) = match open_selected(pattern.as_deref(), config).await {
                Ok(selected) => selected,
                Err(code) => return code,
            };
            let found = match crate::cli::cache_verify::verify(&store, &db, &entries).await {
                Ok(found) => found,
                Err(e) => return storage_error(e),
            };
            for (key, why) in &found.bad {
                if remove {
                    if let Err(e) = store.delete(key).await {
                        return storage_error(e);
                    }
                    outln!("removed {key}: {why}");
                } else {
                    outln!("bad {key}: {why}");
                }
            }
            outln!(
                "checked {} module files ({} against a kept {db} record) in {}: {} bad{}",
                found.checked,
                found.with_record,
                store.backend(),
                found.bad.len(),
                if remove && !found.bad.is_empty() {
                    ", removed"
                } else {
                    ""
                }
            );
            match found.bad.is_empty() || remove {
                true => ExitCode::SUCCESS,
                false => ExitCode::from(EXIT_STORAGE),
            }
        }
        CacheCommand::Gc { config, json } => {
            let store = match open(config).await {
                Ok(store) => store,
                Err(code) => return code,
            };
            let report = match store.gc().await {
                Ok(report) => report,
                Err(e) => return storage_error(e),
            };
            let stats = match store.stats().await {
                Ok(stats) => stats,
                Err(e) => return storage_error(e),
            };
            if json {
                outln!("{}", gc_json(&report, &stats));
            } else {
                out!("{}", gc_text(&report, &stats));
            }
            ExitCode::SUCCESS
        }
    }
}

/// The config's store and the objects `pattern` selects in it (every
/// object without one), or the exit code to leave with.
async fn open_selected(pattern: Option<&str>, config: Option<PathBuf>) -> Result<(Store, Vec<Entry>), ExitCode> {
    let pattern = Pattern::parse(pattern).map_err(usage_error)?;
    let store = open(config).await?;
    let entries = select(&store, &pattern).await.map_err(storage_error)?;
    Ok((store, entries))
}

/// The config's store, or the exit code to leave with.
async fn open(config: Option<PathBuf>) -> Result<Store, ExitCode> {
    let config = Config::load(config.as_deref()).map_err(usage_error)?;
    if let CacheLocation::Off { why } = &config.cache.location {
        return Err(usage_error(format!(
            "modgate: the cache is off ({why}) in {}",
            config.source
        )));
    }
    match Store::open(&config.cache).await {
        Ok(Some(store)) => {
            for warning in store.warnings() {
                eprintln!("modgate: warning: {}: {warning}", store.backend());
            }
            Ok(store)
        }
        Ok(None) => Err(usage_error(format!("modgate: the cache is off in {}", config.source))),
        Err(e) => Err(storage_error(e)),
    }
}

async fn select(store: &Store, pattern: &Pattern) -> Result<Vec<Entry>, CacheError> {
    let mut selected = Vec::new();
    for prefix in pattern.list_prefixes() {
        let entries = store.list(&prefix).await?;
        selected.extend(entries.into_iter().filter(|e| pattern.matches(e)));
    }
    Ok(selected)
}

fn storage_error(e: impl std::fmt::Display) -> ExitCode {
    let text = e.to_string();
    if text.starts_with("modgate:") {
        eprintln!("{text}");
    } else {
        eprintln!("modgate: {text}");
    }
    ExitCode::from(EXIT_STORAGE)
}

/// RFC 3339 in UTC, to the second.
fn timestamp(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t)
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "-".into())
}

fn ls_text(entries: &[Entry]) -> String {
    let mut out = String::new();
    for e in entries {
        let _ = writeln!(out, "{:>10}  {}  {}", human_size(e.size), timestamp(e.stored_at), e.key);
    }
    out
}

fn ls_json(entries: &[Entry]) -> String {
    let list: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            json!({
                "key": e.key.as_str(),
                "kind": e.key.kind().name(),
                "module": e.key.module(),
                "version": e.key.version(),
                "size": e.size,
                "stored_at": timestamp(e.stored_at),
                "last_used": e.last_used.map(timestamp),
            })
        })
        .collect();
    format!("{}\n", serde_json::Value::Array(list))
}

fn stats_json(stats: &Stats) -> serde_json::Value {
    let by_kind: serde_json::Map<String, serde_json::Value> = stats
        .by_kind
        .iter()
        .map(|(kind, k)| {
            (
                kind.name().to_owned(),
                json!({ "objects": k.objects, "bytes": k.bytes }),
            )
        })
        .collect();
    json!({
        "backend": stats.backend,
        "objects": stats.objects,
        "bytes": stats.bytes,
        "max_size": stats.max_size,
        "by_kind": by_kind,
    })
}

fn stats_text(stats: &Stats) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "cache:   {}", stats.backend);
    let limit = stats
        .max_size
        .map_or_else(String::new, |m| format!(" of {} max", fmt_size(m)));
    let _ = writeln!(out, "objects: {} ({}{limit})", stats.objects, human_size(stats.bytes));
    for kind in KeyKind::ALL {
        let k = stats.by_kind.get(&kind).copied().unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<7} {:>8}  {:>10}",
            kind.name(),
            k.objects,
            human_size(k.bytes)
        );
    }
    out
}

fn gc_json(report: &GcReport, stats: &Stats) -> serde_json::Value {
    json!({
        "backend": stats.backend,
        "temp_files_removed": report.temp_files,
        "temp_bytes_removed": report.temp_bytes,
        "evicted_objects": report.evicted_objects,
        "evicted_bytes": report.evicted_bytes,
        "objects": stats.objects,
        "bytes": stats.bytes,
        "max_size": stats.max_size,
    })
}

fn gc_text(report: &GcReport, stats: &Stats) -> String {
    let limit = stats
        .max_size
        .map_or_else(String::new, |m| format!(" of {} max", fmt_size(m)));
    format!(
        "{}: removed {} temp files ({}), evicted {} objects ({}); now {} objects ({}{limit})\n",
        stats.backend,
        report.temp_files,
        human_size(report.temp_bytes),
        report.evicted_objects,
        human_size(report.evicted_bytes),
        stats.objects,
        human_size(stats.bytes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_globs_or_key_prefixes() {
        let entry = |key: &str| Entry {
            key: crate::cache::Key::parse(key).unwrap(),
            size: 1,
            stored_at: SystemTime::UNIX_EPOCH,
            last_used: None,
        };
        let glob = Pattern::parse(Some("github.com/Corp/*")).unwrap();
        assert_eq!(glob.list_prefixes(), ["private/github.com/!corp/", "github.com/!corp/"]);
        assert!(glob.matches(&entry("private/github.com/!corp/x/@v/v1.0.0.zip")));
        assert_eq!(Pattern::parse(Some("*")).unwrap().list_prefixes(), [""]);
        assert_eq!(Pattern::parse(Some("pr*")).unwrap().list_prefixes(), ["pr"]);
        assert!(glob.matches(&entry("github.com/!corp/x/@v/v1.0.0.zip")));
        assert!(glob.matches(&entry("github.com/!corp/x/sub/@v/list")));
        assert!(!glob.matches(&entry("github.com/!corporate/x/@v/list")));
        assert!(!glob.matches(&entry("sumdb/sum.golang.org/lookup/github.com/!corp/x@v1.0.0")));

        let bare = Pattern::parse(Some("example.com/m")).unwrap();
        assert!(bare.matches(&entry("example.com/m/@latest")));
        assert!(bare.matches(&entry("example.com/m/v2/@v/list")));
        assert!(!bare.matches(&entry("example.com/mm/@v/list")));

        let prefix = Pattern::parse(Some("sumdb/")).unwrap();
        assert!(prefix.matches(&entry("sumdb/sum.golang.org/latest")));
        assert!(!prefix.matches(&entry("example.com/m/@latest")));
        let prefix = Pattern::parse(Some("github.com/!corp/x/@v/")).unwrap();
        assert!(prefix.matches(&entry("github.com/!corp/x/@v/list")));

        let all = Pattern::parse(None).unwrap();
        assert!(all.matches(&entry("sumdb/sum.golang.org/latest")));
        assert!(Pattern::parse(Some("github.com/[corp")).is_err());
    }
}
