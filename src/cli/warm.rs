//! `modgate cache warm [--config F] [--jobs N] ARG...`: fetch module
//! versions, and the checksum-database records `go` needs offline, into the
//! cache, through the same rules and mirrors as `serve`.
//!
//! ARG is a `go.mod` (its `require`s), a `go.sum` (every line), a directory
//! (searched for `go.sum` files) or `module@version`. On a terminal a
//! progress bar shows modules, bytes, rate and ETA; otherwise one line per
//! module. The summary lists what failed; the exit code is 1 when anything
//! did, including a version whose files were stored but whose checksum
//! records were not. Blocked modules are reported, not fetched.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::usage_error;
use crate::config::Config;
use crate::core::error::Error;
use crate::core::size::fmt_size;
use crate::gomod::escape::encode_case;
use crate::proxy::warm::Warmer;

/// What one module version needs: `.info` and `.mod` always, the `.zip`
/// unless only its go.mod is required (a `/go.mod` line of go.sum).
type Wanted = BTreeMap<(String, String), bool>;

/// Directories searched for go.sum files at most this deep.
const MAX_DEPTH: usize = 16;

/// How one module version went.
enum Outcome {
    Warmed {
        bytes: u64,
    },
    /// The module's files are stored, its checksum-database records are
    /// not (the database failed): go can build offline only with the
    /// module in GONOSUMDB, or once the records are warmed too.
    NoRecords {
        bytes: u64,
        why: String,
    },
    Blocked(String),
    Failed(String),
}

/// Runs `cache warm`.
pub(crate) fn run(config: Option<PathBuf>, jobs: usize, args: Vec<String>) -> ExitCode {
    let config = match Config::load(config.as_deref()) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    let wanted = match collect(&args) {
        Ok(w) if w.is_empty() => return usage_error("modgate: cache warm: no module versions found in the arguments"),
        Ok(w) => w,
        Err(e) => return usage_error(format!("modgate: cache warm: {e}")),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return usage_error(format!("modgate: cannot start the runtime: {e}")),
    };
    runtime.block_on(warm(config, wanted, jobs.max(1)))
}

async fn warm(config: Config, wanted: Wanted, jobs: usize) -> ExitCode {
    let warmer = match Warmer::new(config).await {
        Ok(w) => w,
        Err(e) => return usage_error(format!("modgate: cache warm: {e}")),
    };
    let started = Instant::now();
    let bar = progress(wanted.len() as u64);
    let warmer = &warmer;
    let bar_ref = &bar;
    let mut results: Vec<((String, String), Outcome)> = futures_util::stream::iter(wanted)
        .map(|((module, version), zip)| async move {
            let outcome = warm_one(warmer, &module, &version, zip).await;
            report(bar_ref, &module, &version, &outcome);
            ((module, version), outcome)
        })
        .buffer_unordered(jobs)
        .collect()
        .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    results.sort_by(|a, b| a.0.cmp(&b.0));
    summary(&results, started.elapsed())
}

/// Fetches one module version's files and its checksum-database records.
async fn warm_one(warmer: &Warmer, module: &str, version: &str, zip: bool) -> Outcome {
    let base = format!("/{}/@v/{}", encode_case(module), encode_case(version));
    let mut files = vec![format!("{base}.info"), format!("{base}.mod")];
    if zip {
        files.push(format!("{base}.zip"));
    }
    let mut bytes = 0;
    for path in files {
        match warmer.fetch(&path).await {
            Ok(w) => bytes += w.bytes,
            Err(e @ (Error::Blocked { .. } | Error::NoRule(_))) => return Outcome::Blocked(e.to_string()),
            Err(e) => return Outcome::Failed(e.to_string()),
        }
    }
    let Some(db) = warmer.sumdb_for(module) else {
        return Outcome::Warmed { bytes };
    };
    // The module's files are stored by now: a checksum database that fails
    // leaves them there, and says so, rather than calling them failed.
    let records = [
        format!("/sumdb/{db}/latest"),
        format!("/sumdb/{db}/lookup/{}@{}", encode_case(module), encode_case(version)),
    ];
    for path in records {
        match warmer.fetch(&path).await {
            Ok(w) => bytes += w.bytes,
            Err(e) => {
                return Outcome::NoRecords {
                    bytes,
                    why: e.to_string(),
                };
            }
        }
    }
    Outcome::Warmed { bytes }
}

fn progress(total: u64) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(total);
    let style =
        ProgressStyle::with_template("{spinner} {pos}/{len} modules {msg} [{elapsed_precise}, ETA {eta}] {wide_bar}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

fn report(bar: &Option<ProgressBar>, module: &str, version: &str, outcome: &Outcome) {
    let line = match outcome {
        Outcome::Warmed { bytes } => format!("ok       {module}@{version} ({})", fmt_size(*bytes)),
        Outcome::NoRecords { bytes, why } => format!(
            "partial  {module}@{version} ({}): module files stored, checksum records not: {why}",
            fmt_size(*bytes)
        ),
        Outcome::Blocked(why) => format!("blocked  {module}@{version}: {why}"),
        Outcome::Failed(why) => format!("FAILED   {module}@{version}: {why}"),
    };
    match bar {
        Some(bar) => {
            bar.inc(1);
            if !matches!(outcome, Outcome::Warmed { .. }) {
                bar.println(line);
            }
        }
        None => eprintln!("{line}"),
    }
}

fn summary(results: &[((String, String), Outcome)], took: Duration) -> ExitCode {
    let (mut warmed, mut bytes, mut blocked, mut failed) = (0, 0, Vec::new(), Vec::new());
    let mut partial = Vec::new();
    for ((m, v), outcome) in results {
        match outcome {
            Outcome::Warmed { bytes: b } => {
                warmed += 1;
                bytes += b;
            }
            Outcome::NoRecords { bytes: b, why } => {
                bytes += b;
                partial.push(format!("{m}@{v}: {why}"));
            }
            Outcome::Blocked(_) => blocked.push(format!("{m}@{v}")),
            Outcome::Failed(why) => failed.push(format!("{m}@{v}: {why}")),
        }
    }
    let rate = bytes as f64 / took.as_secs_f64().max(0.001);
    outln!(
        "warmed {warmed} module versions ({}, {}/s) in {:.1}s; {} without checksum records, {} blocked, {} failed",
        fmt_size(bytes),
        fmt_size(rate as u64),
        took.as_secs_f64(),
        partial.len(),
        blocked.len(),
        failed.len()
    );
    for p in &partial {
        outln!("no checksum records (module files stored): {p}");
    }
    for b in &blocked {
        outln!("blocked: {b}");
    }
    for f in &failed {
        outln!("failed:  {f}");
    }
    // Offline, go needs the records too (unless GONOSUMDB covers the
    // module): a version without them is not ready, so the run is not.
    if failed.is_empty() && partial.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The module versions named by the arguments.
fn collect(args: &[String]) -> Result<Wanted, String> {
    let mut wanted = Wanted::new();
    for arg in args {
        let path = Path::new(arg);
        if path.is_dir() {
            let mut found = Vec::new();
            find_go_sums(path, 0, &mut found);
            if found.is_empty() {
                return Err(format!("{arg}: no go.sum files in this directory"));
            }
            for sum in found {
                read_go_sum(&sum, &mut wanted)?;
            }
        } else if path.is_file() && arg.ends_with("go.sum") {
            read_go_sum(path, &mut wanted)?;
        } else if path.is_file() && arg.ends_with("go.mod") {
            read_go_mod(path, &mut wanted)?;
        } else if let Some((module, version)) = arg.split_once('@') {
            if module.is_empty() || version.is_empty() {
                return Err(format!("'{arg}' is not module@version"));
            }
            // A query (`latest`, a branch, `v1.2`) is no file a mirror
            // keeps: go resolves it first, and so must the user.
            if !crate::gomod::semver::is_canonical(version) {
                return Err(format!(
                    "'{arg}': cache warm needs an exact version, as go.sum lists them, not the query '{version}'; find it with `go list -m {module}@{version}`"
                ));
            }
            wanted.insert((module.to_owned(), version.to_owned()), true);
        } else {
            return Err(format!(
                "'{arg}' is not a go.mod, a go.sum, a directory or module@version"
            ));
        }
    }
    Ok(wanted)
}

fn find_go_sums(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() && !name.starts_with('.') && name != "vendor" && name != "testdata" {
            find_go_sums(&path, depth + 1, found);
        } else if name == "go.sum" {
            found.push(path);
        }
    }
}

/// Every `module version[/go.mod] h1:…` line.
fn read_go_sum(path: &Path, wanted: &mut Wanted) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [module, version, hash] = fields[..] else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(format!("{}:{}: not a go.sum line", path.display(), n + 1));
        };
        if !hash.starts_with("h1:") {
            continue;
        }
        let (version, zip) = match version.strip_suffix("/go.mod") {
            Some(v) => (v, false),
            None => (version, true),
        };
        let entry = wanted.entry((module.to_owned(), version.to_owned())).or_insert(false);
        *entry |= zip;
    }
    Ok(())
}

/// What a go.mod needs fetched: its `require`s (single lines and blocks),
/// as its `replace`s change them. A module replaced by a local directory
/// is not fetched; one replaced by another module version is fetched as
/// that version instead, as go does.
fn read_go_mod(path: &Path, wanted: &mut Wanted) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut requires = Vec::new();
    let mut replaces = Vec::new();
    let mut block: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let tokens = go_mod_tokens(line).map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
        let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
        let (verb, args) = match (&block, tokens.as_slice()) {
            (_, []) => continue,
            (Some(_), [")"]) => {
                block = None;
                continue;
            }
            (Some(verb), args) => (verb.as_str(), args),
            (None, [verb, "("]) => {
                block = Some((*verb).to_owned());
                continue;
            }
            (None, [verb, args @ ..]) => (*verb, args),
        };
        match verb {
            "require" => {
                if let [module, version, ..] = args {
                    requires.push(((*module).to_owned(), (*version).to_owned()));
                }
            }
            "replace" => {
                let Some(arrow) = args.iter().position(|t| *t == "=>") else {
                    continue;
                };
                let (old, new) = (&args[..arrow], &args[arrow + 1..]);
                let Some(old_module) = old.first() else { continue };
                let old_version = old.get(1).map(|v| (*v).to_owned());
                let new = match new {
                    [module, version] => Some(((*module).to_owned(), (*version).to_owned())),
                    _ => None,
                };
                replaces.push(((*old_module).to_owned(), old_version, new));
            }
            _ => {}
        }
    }
    for (module, version) in requires {
        // A replace naming the version wins over one for every version.
        let replaced = replaces
            .iter()
            .filter(|(old, old_version, _)| *old == module && old_version.as_ref().is_none_or(|v| *v == version))
            .max_by_key(|(_, old_version, _)| old_version.is_some());
        match replaced {
            None => {
                wanted.insert((module, version), true);
            }
            Some((_, _, Some(new))) => {
                wanted.insert(new.clone(), true);
            }
            // A local directory: nothing to fetch.
            Some((_, _, None)) => {}
        }
    }
    Ok(())
}

/// The tokens of one go.mod line, as go's lexer reads them: words,
/// quoted strings (`"..."` with backslash escapes, or `` `...` ``) and the
/// brackets, up to a `//` comment.
fn go_mod_tokens(line: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut rest = line;
    loop {
        rest = rest.trim_start();
        let Some(c) = rest.chars().next() else { break };
        if rest.starts_with("//") {
            break;
        }
        match c {
            '(' | ')' => {
                tokens.push(c.to_string());
                rest = &rest[1..];
            }
            '"' | '`' => {
                let mut token = String::new();
                let mut chars = rest[1..].char_indices();
                let end = loop {
                    match chars.next() {
                        None => return Err("an unterminated quoted string".into()),
                        Some((i, end)) if end == c => break i + 2,
                        Some((_, '\\')) if c == '"' => match chars.next() {
                            Some((_, escaped)) => token.push(escaped),
                            None => return Err("an unterminated quoted string".into()),
                        },
                        Some((_, other)) => token.push(other),
                    }
                };
                tokens.push(token);
                rest = &rest[end..];
            }
            _ => {
                let end = rest
                    .char_indices()
                    .find(|&(i, c)| c.is_whitespace() || "()\"`".contains(c) || rest[i..].starts_with("//"))
                    .map_or(rest.len(), |(i, _)| i);
                tokens.push(rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_go_mods_replaces_and_quoted_paths_are_read_as_go_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let gomod = dir.path().join("go.mod");
        std::fs::write(
            &gomod,
            "module m\n\nrequire (\n\t\"gopkg.in/yaml.v3\" v3.0.1\n\texample.com/local v0.0.0\n\texample.com/a v1.0.0\n\texample.com/b v1.2.0 // indirect\n\t`example.com/c` v0.1.0\n)\n\nreplace example.com/local => ../local\nreplace (\n\texample.com/a v1.0.0 => example.com/a/v2 v2.1.0\n\texample.com/b => example.com/b v1.2.1 // pinned\n)\n",
        )
        .unwrap();
        let wanted = collect(&[gomod.display().to_string()]).unwrap();
        let got: Vec<String> = wanted.keys().map(|(m, v)| format!("{m}@{v}")).collect();
        assert_eq!(
            got,
            [
                "example.com/a/v2@v2.1.0",
                "example.com/b@v1.2.1",
                "example.com/c@v0.1.0",
                "gopkg.in/yaml.v3@v3.0.1"
            ]
        );
        std::fs::write(&gomod, "module m\nrequire \"a.test/x v1.0.0\n").unwrap();
        let e = collect(&[gomod.display().to_string()]).unwrap_err();
        assert!(e.contains(":2: an unterminated quoted string"), "{e}");
    }

    #[test]
    fn go_sum_and_go_mod_name_what_to_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let sum = dir.path().join("go.sum");
        std::fs::write(
            &sum,
            "a.test/x v1.0.0 h1:abc=\na.test/x v1.0.0/go.mod h1:def=\nb.test/y v0.1.0/go.mod h1:ghi=\n",
        )
        .unwrap();
        let gomod = dir.path().join("go.mod");
        std::fs::write(
            &gomod,
            "module m\n\nrequire c.test/z v2.0.0+incompatible // indirect\n\nrequire (\n\td.test/w v0.0.1\n)\n",
        )
        .unwrap();
        let wanted = collect(&[
            dir.path().display().to_string(),
            gomod.display().to_string(),
            "e.test/v@v1.2.3".into(),
        ])
        .unwrap();
        let got: Vec<(String, bool)> = wanted.iter().map(|((m, v), z)| (format!("{m}@{v}"), *z)).collect();
        assert_eq!(
            got,
            [
                ("a.test/x@v1.0.0".to_owned(), true),
                ("b.test/y@v0.1.0".to_owned(), false),
                ("c.test/z@v2.0.0+incompatible".to_owned(), true),
                ("d.test/w@v0.0.1".to_owned(), true),
                ("e.test/v@v1.2.3".to_owned(), true),
            ]
        );
        assert!(collect(&["nonsense".into()]).is_err());
        for query in ["e.test/v@latest", "e.test/v@master", "e.test/v@v1.2"] {
            let e = collect(&[query.into()]).unwrap_err();
            assert!(e.contains("needs an exact version"), "{e}");
        }
        assert!(collect(&["e.test/v@v2.0.0+incompatible".into()]).is_ok());
    }
}
