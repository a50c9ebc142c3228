//! Evidence of interception: each distinct intercepting chain saved once as
//! PEM in `tls.intercepted_dir`, named by the SHA-256 of the SPKI at the top
//! of its linked part; its self-signed root, when it has one, saved alone
//! beside it (`<spki>.root.pem`) for the fix to point at; `index.jsonl`
//! with one record per interceptor; and an `interception` event in the log.
//!
//! Only certificates that sign each other are saved, and every comment is
//! escaped onto one line, so a hostile certificate can neither smuggle a
//! PEM block into the file nor lend itself the name of a root it does not
//! chain to.
//!
//! The index is rewritten through a temporary file and a rename, so a crash
//! never leaves a torn file.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use crate::config::OnInterception;
use crate::core::escape::escape;
use crate::tls::certinfo::CertInfo;
use crate::tls::chain::{ChainReport, Verdict};
use crate::tls::pem::to_pem;

/// Hosts remembered per interceptor in the index.
const MAX_HOSTS: usize = 64;

/// One line of `index.jsonl`: an interceptor and where it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    /// SHA-256 of the top certificate's SPKI (the file name of the chain).
    pub spki: String,
    /// The leaf's issuer.
    pub issuer: String,
    /// The product, or `unknown`.
    pub vendor: String,
    /// The verdict when last seen.
    pub verdict: String,
    /// First sighting, RFC 3339.
    pub first_seen: String,
    /// Last sighting, RFC 3339.
    pub last_seen: String,
    /// Hosts it was seen for (up to 64).
    pub hosts: BTreeSet<String>,
    /// How many times it was seen.
    pub count: u64,
}

/// Where a chain's evidence is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The linked chain, leaf first.
    pub chain: String,
    /// Its self-signed root alone, when the chain ends in one: the file a
    /// fix may point at.
    pub root: Option<String>,
}

/// The evidence directory.
#[derive(Debug)]
pub struct Evidence {
    dir: PathBuf,
    index: Mutex<BTreeMap<String, Sighting>>,
}

impl Evidence {
    /// Evidence kept in `dir`, continuing an existing index.
    pub fn open(dir: &Path) -> Evidence {
        let mut index = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(dir.join("index.jsonl")) {
            for line in text.lines() {
                if let Ok(s) = serde_json::from_str::<Sighting>(line) {
                    index.insert(s.spki.clone(), s);
                }
            }
        }
        Evidence {
            dir: dir.to_owned(),
            index: Mutex::new(index),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records a chain that failed the public roots: saves it (once), updates
    /// the index, and logs the `interception` event. Returns the path the
    /// chain is saved at.
    pub fn record(&self, report: &ChainReport, chain: &[CertificateDer<'_>], policy: OnInterception) -> Option<Saved> {
        let saved = self.save_chain(report, chain);
        self.update_index(report);
        log_event(report, saved.as_ref(), policy);
        saved
    }

    fn save_chain(&self, report: &ChainReport, chain: &[CertificateDer<'_>]) -> Option<Saved> {
        let linked = chain.len().min(report.linked).min(report.certs.len());
        let path = self.dir.join(format!("{}.pem", report.top_spki_sha256));
        let root_path = self.dir.join(format!("{}.root.pem", report.top_spki_sha256));
        let mut files = vec![(path.clone(), chain_pem(&chain[..linked], &report.certs[..linked]))];
        if report.root_in_chain && linked > 0 {
            let top = linked - 1;
            files.push((
                root_path.clone(),
                chain_pem(&chain[top..linked], &report.certs[top..linked]),
            ));
        }
        for (path, pem) in files {
            if path.exists() {
                continue;
            }
            if let Err(e) = write_atomically(&path, pem.as_bytes()) {
                tracing::warn!(path = %path.display(), error = %e, "cannot save the intercepted chain");
                return None;
            }
        }
        Some(Saved {
            chain: path.display().to_string(),
            root: report.root_in_chain.then(|| root_path.display().to_string()),
        })
    }

    fn update_index(&self, report: &ChainReport) {
        let Ok(mut index) = self.index.lock() else { return };
        let now = now_rfc3339();
        let entry = index.entry(report.top_spki_sha256.clone()).or_insert_with(|| Sighting {
            spki: report.top_spki_sha256.clone(),
            issuer: escape(&report.issuer).into_owned(),
            vendor: report.vendor.clone().unwrap_or_else(|| "unknown".into()),
            verdict: report.verdict.to_string(),
            first_seen: now.clone(),
            last_seen: now.clone(),
            hosts: BTreeSet::new(),
            count: 0,
        });
        entry.last_seen = now;
        entry.count += 1;
        entry.verdict = report.verdict.to_string();
        if let Some(host) = &report.host {
            if entry.hosts.len() < MAX_HOSTS {
                entry.hosts.insert(host.clone());
            }
        }
        let mut text = String::new();
        for s in index.values() {
            if let Ok(line) = serde_json::to_string(s) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        if let Err(e) = write_atomically(&self.dir.join("index.jsonl"), text.as_bytes()) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write the interception index");
        }
    }

    /// The current index records.
    pub fn sightings(&self) -> Vec<Sighting> {
        self.index
            .lock()
            .map(|i| i.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// The PEM of `certs`, each block after its subject and issuer (from
/// `infos`) as one-line comments: nothing but the certificates themselves
/// can begin a line with `-----`.
fn chain_pem(certs: &[CertificateDer<'_>], infos: &[CertInfo]) -> String {
    let mut pem = String::new();
    for (cert, info) in certs.iter().zip(infos) {
        pem.push_str(&format!(
            "# subject: {}\n# issuer: {}\n",
            comment(&info.subject),
            comment(&info.issuer)
        ));
        pem.push_str(&to_pem(cert));
    }
    pem
}

/// Certificate text for a PEM comment: escaped onto one line, and with no
/// run of five hyphens, so not even a parser that looks for `-----BEGIN`
/// anywhere in a line finds a block in it.
fn comment(text: &str) -> String {
    escape(text).replace("-----", "-\\u{2d}---")
}

fn log_event(report: &ChainReport, saved: Option<&Saved>, policy: OnInterception) {
    let chain: Vec<String> = report
        .certs
        .iter()
        .map(|c| {
            format!(
                "subject={} | issuer={} | valid {}..{} | sha256={} | spki_sha256={}",
                escape(&c.subject),
                escape(&c.issuer),
                c.not_before,
                c.not_after,
                c.sha256,
                c.spki_sha256
            )
        })
        .collect();
    let chain = chain.join(" ;; ");
    let host = escape(report.host.as_deref().unwrap_or("-"));
    let host = host.as_ref();
    let vendor = report.vendor.as_deref().unwrap_or("unknown");
    let issuer = escape(&report.issuer);
    let issuer = issuer.as_ref();
    let root = saved.and_then(|s| s.root.as_deref()).unwrap_or("-");
    let saved = saved.map_or("-", |s| s.chain.as_str());
    let flags = report.flags.names().join(",");
    match (report.verdict, policy) {
        (Verdict::Intercepted, OnInterception::Allow) => tracing::info!(
            target: "modgate::interception", host, verdict = %report.verdict, vendor, issuer,
            spki = %report.top_spki_sha256, saved, root, flags, chain, "interception"
        ),
        _ => tracing::warn!(
            target: "modgate::interception", host, verdict = %report.verdict, vendor, issuer,
            spki = %report.top_spki_sha256, saved, root, flags, chain, "interception"
        ),
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, fsynced, renamed over `path`, and the directory fsynced so the
/// rename itself survives a crash.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".modgate-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}
