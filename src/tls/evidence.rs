//! Evidence of interception: each distinct intercepting chain saved once as
//! PEM in `tls.intercepted_dir`, named by the SHA-256 of its top
//! certificate's SPKI; `index.jsonl` beside it with one record per
//! interceptor; and an `interception` event in the log.
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
    pub fn record(&self, report: &ChainReport, chain: &[CertificateDer<'_>], policy: OnInterception) -> Option<String> {
        let saved = self.save_chain(report, chain);
        self.update_index(report);
        log_event(report, saved.as_deref(), policy);
        saved
    }

    fn save_chain(&self, report: &ChainReport, chain: &[CertificateDer<'_>]) -> Option<String> {
        let path = self.dir.join(format!("{}.pem", report.top_spki_sha256));
        let shown = path.display().to_string();
        if path.exists() {
            return Some(shown);
        }
        let mut pem = String::new();
        for (cert, info) in chain.iter().zip(&report.certs) {
            pem.push_str(&format!("# subject: {}\n# issuer: {}\n", info.subject, info.issuer));
            pem.push_str(&to_pem(cert));
        }
        match write_atomically(&path, pem.as_bytes()) {
            Ok(()) => Some(shown),
            Err(e) => {
                tracing::warn!(path = %shown, error = %e, "cannot save the intercepted chain");
                None
            }
        }
    }

    fn update_index(&self, report: &ChainReport) {
        let Ok(mut index) = self.index.lock() else { return };
        let now = now_rfc3339();
        let entry = index.entry(report.top_spki_sha256.clone()).or_insert_with(|| Sighting {
            spki: report.top_spki_sha256.clone(),
            issuer: report.issuer.clone(),
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

fn log_event(report: &ChainReport, saved: Option<&str>, policy: OnInterception) {
    let chain: Vec<String> = report
        .certs
        .iter()
        .map(|c| {
            format!(
                "subject={} | issuer={} | valid {}..{} | sha256={} | spki_sha256={}",
                c.subject, c.issuer, c.not_before, c.not_after, c.sha256, c.spki_sha256
            )
        })
        .collect();
    let chain = chain.join(" ;; ");
    let host = report.host.as_deref().unwrap_or("-");
    let vendor = report.vendor.as_deref().unwrap_or("unknown");
    let saved = saved.unwrap_or("-");
    let flags = report.flags.names().join(",");
    match (report.verdict, policy) {
        (Verdict::Intercepted, OnInterception::Allow) => tracing::info!(
            target: "modgate::interception", host, verdict = %report.verdict, vendor, issuer = %report.issuer,
            spki = %report.top_spki_sha256, saved, flags, chain, "interception"
        ),
        _ => tracing::warn!(
            target: "modgate::interception", host, verdict = %report.verdict, vendor, issuer = %report.issuer,
            spki = %report.top_spki_sha256, saved, flags, chain, "interception"
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
