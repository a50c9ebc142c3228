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
//! Files are written by one writer thread per directory user, fed through a
//! bounded queue, so no request or tunnel ever waits on the disk. The writer
//! takes an exclusive lock on `<dir>/.lock` (on Linux), re-reads the index, merges its
//! sightings and rewrites it through a temporary file and a rename: `serve`
//! and `inspect` sharing a directory keep each other's records, and a crash
//! never leaves a torn file. At most [`MAX_CHAINS`] distinct chains are kept;
//! sightings of any others are counted in one [`OVERFLOW`] record.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use crate::config::OnInterception;
use crate::core::escape::escape;
use crate::tls::certinfo::CertInfo;
use crate::tls::chain::{ChainReport, Verdict};
use crate::tls::pem::to_pem;

/// Distinct chains kept in one directory. Sightings of chains beyond it
/// are counted in the [`OVERFLOW`] record, and the chains are not saved, so
/// a stream of rotating self-signed servers cannot fill the disk.
pub const MAX_CHAINS: usize = 1000;
/// The `spki` of the index record that counts sightings of chains beyond
/// [`MAX_CHAINS`].
pub const OVERFLOW: &str = "overflow";
/// Sightings waiting for the writer. When it falls this far behind (a slow
/// disk), further sightings are logged but not written, and counted in a
/// warning.
const QUEUE: usize = 1024;
/// Sightings merged into one rewrite of the index.
const BATCH: usize = 256;
/// How long dropping an [`Evidence`] waits for its writer to finish.
const DRAIN: Duration = Duration::from_secs(5);

/// Hosts remembered per interceptor in the index.
const MAX_HOSTS: usize = 64;

/// One line of `index.jsonl`: an interceptor and where it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    /// SHA-256 of the top certificate's SPKI (the file name of the chain),
    /// or [`OVERFLOW`].
    pub spki: String,
    /// The leaf's issuer, escaped.
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

impl Sighting {
    /// Adds `other` (a later sighting of the same chain) to this record.
    fn merge(&mut self, other: Sighting) {
        if instant(&other.first_seen) < instant(&self.first_seen) {
            self.first_seen = other.first_seen;
        }
        if instant(&other.last_seen) >= instant(&self.last_seen) {
            self.last_seen = other.last_seen;
            self.verdict = other.verdict;
            self.issuer = other.issuer;
            self.vendor = other.vendor;
        }
        for host in other.hosts {
            if self.hosts.len() >= MAX_HOSTS {
                break;
            }
            self.hosts.insert(host);
        }
        self.count = self.count.saturating_add(other.count);
    }
}

/// Where a chain was seen: what modgate connected to, which is what the
/// index and the `interception` event name, not merely what a client
/// claimed. A tunnel to attacker.test carrying SNI proxy.golang.org is
/// recorded as `attacker.test (SNI proxy.golang.org)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sighted {
    /// The host modgate connected to: the CONNECT destination, the
    /// upstream's host, or `inspect`'s target. `None` for a saved chain.
    pub host: Option<String>,
    /// The name sent in the handshake (the client's SNI, or `--sni`), when
    /// it differs from `host`.
    pub sni: Option<String>,
    /// The address connected to.
    pub addr: Option<SocketAddr>,
}

impl Sighted {
    /// A sighting at `host` (reached at `addr`) of a chain verified for
    /// `name`.
    pub fn at(host: &str, name: &str, addr: Option<SocketAddr>) -> Sighted {
        Sighted {
            host: Some(host.to_owned()),
            sni: (!name.eq_ignore_ascii_case(host)).then(|| name.to_owned()),
            addr,
        }
    }

    /// How the index names it: `host`, or `host (SNI name)`; escaped.
    fn label(&self) -> Option<String> {
        let host = escape(self.host.as_deref()?).into_owned();
        Some(match &self.sni {
            Some(sni) => format!("{host} (SNI {})", escape(sni)),
            None => host,
        })
    }
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

/// One sighting on its way to the writer.
struct Pending {
    /// The record, with a count of 1.
    sighting: Sighting,
    /// The PEM files to write; empty beyond the cap, or when nothing new
    /// was seen.
    files: Vec<PemFile>,
}

/// What the writer thread is asked to do.
enum Job {
    Record(Box<Pending>),
    /// Reply once everything queued before has been written.
    Flush(SyncSender<()>),
}

/// The evidence directory and its writer.
#[derive(Debug)]
pub struct Evidence {
    dir: PathBuf,
    cap: usize,
    /// SPKIs with a saved chain, as far as this process knows, and a hash
    /// of the chain file this process last wrote for each: `record`
    /// answers where a chain is saved without touching the disk, and
    /// writes a chain only when it differs from the one last saved.
    known: Mutex<HashMap<String, Option<u64>>>,
    /// To the writer; `None` when it could not be started.
    queue: Option<SyncSender<Job>>,
    /// Signalled when the writer has finished, for a bounded wait on drop.
    finished: Mutex<Option<Receiver<()>>>,
    /// Sightings not written because the queue was full.
    dropped: AtomicU64,
}

impl Evidence {
    /// Evidence kept in `dir`, continuing an existing index.
    pub fn open(dir: &Path) -> Evidence {
        Evidence::with_cap(dir, MAX_CHAINS)
    }

    fn with_cap(dir: &Path, cap: usize) -> Evidence {
        let known = read_index(dir)
            .into_keys()
            .filter(|spki| spki != OVERFLOW)
            .map(|spki| (spki, None))
            .collect();
        let (queue, jobs) = mpsc::sync_channel(QUEUE);
        let (done, finished) = mpsc::sync_channel(1);
        let writer = Writer {
            dir: dir.to_owned(),
            cap,
        };
        let spawned = std::thread::Builder::new()
            .name("modgate-evidence".into())
            .spawn(move || {
                writer.run(jobs);
                let _ = done.send(());
            });
        let (queue, finished) = match spawned {
            Ok(_) => (Some(queue), Some(finished)),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot start the evidence writer; nothing will be saved");
                (None, None)
            }
        };
        Evidence {
            dir: dir.to_owned(),
            cap,
            known: Mutex::new(known),
            queue,
            finished: Mutex::new(finished),
            dropped: AtomicU64::new(0),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records a chain that failed the public roots, seen as `sighted`:
    /// logs the `interception` event and queues the chain and the index
    /// update for the writer. Never waits on the disk. Returns where the
    /// chain is (or is about to be) saved; `None` beyond [`MAX_CHAINS`].
    pub fn record(
        &self,
        report: &ChainReport,
        chain: &[CertificateDer<'_>],
        sighted: &Sighted,
        policy: OnInterception,
    ) -> Option<Saved> {
        let spki = &report.top_spki_sha256;
        let files = pem_files(report, chain, &self.dir);
        let written = files.first().map(|f| hash_of(&f.pem));
        // The chain file holds the last distinct chain seen under its
        // top, so a refusal that names it names the chain it refused. The
        // lock is held until the job is queued: jobs reach the writer in
        // the order `known` saw them, and one the full queue dropped is not
        // taken for written.
        let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let room = known.len() < self.cap;
        let (kept, changed) = match known.get_mut(spki) {
            Some(last) => (true, std::mem::replace(last, written) != written),
            None if room => {
                known.insert(spki.clone(), written);
                (true, true)
            }
            None => (false, false),
        };
        let saved = kept.then(|| self.saved(report));
        let sighting = sighting(report, sighted, kept);
        let files = if changed { files } else { Vec::new() };
        if !self.send(Pending { sighting, files }) && changed {
            if let Some(last) = known.get_mut(spki) {
                *last = None;
            }
        }
        drop(known);
        log_event(report, sighted, saved.as_ref(), policy);
        saved
    }

    /// Counts one more sighting of a chain [`record`](Self::record)ed
    /// before, such as a tunnel judged by an active probe's reused result:
    /// `count`, `last_seen` and `hosts` in the index, through the writer's
    /// queue like every sighting. The chain's files and the `interception`
    /// event were written when it was judged.
    pub fn recount(&self, report: &ChainReport, sighted: &Sighted) {
        let kept = self
            .known
            .lock()
            .is_ok_and(|known| known.contains_key(&report.top_spki_sha256));
        self.send(Pending {
            sighting: sighting(report, sighted, kept),
            files: Vec::new(),
        });
    }

    fn saved(&self, report: &ChainReport) -> Saved {
        let spki = &report.top_spki_sha256;
        Saved {
            chain: self.dir.join(format!("{spki}.pem")).display().to_string(),
            root: report
                .root_in_chain
                .then(|| self.dir.join(format!("{spki}.root.pem")).display().to_string()),
        }
    }

    /// Queues `pending` for the writer; false when it was not queued.
    fn send(&self, pending: Pending) -> bool {
        let Some(queue) = &self.queue else { return false };
        match queue.try_send(Job::Record(Box::new(pending))) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(dir = %self.dir.display(), dropped, "the evidence writer is behind; sightings not written");
                }
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Waits until everything recorded so far is on disk (for `inspect`,
    /// which exits right after, and for tests).
    pub fn flush(&self) {
        let (ack, acked) = mpsc::sync_channel(1);
        if self.queue.as_ref().is_some_and(|q| q.send(Job::Flush(ack)).is_ok()) {
            let _ = acked.recv();
        }
    }

    /// The index records on disk.
    pub fn sightings(&self) -> Vec<Sighting> {
        read_index(&self.dir).into_values().collect()
    }
}

impl Drop for Evidence {
    /// Lets the writer finish what is queued, for a few seconds at most.
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has drained it.
        self.queue.take();
        if let Some(finished) = self.finished.get_mut().ok().and_then(Option::take) {
            let _ = finished.recv_timeout(DRAIN);
        }
    }
}

/// One sighting of `report`'s chain now, as `sighted`: under its SPKI when
/// it is `kept`, else in the [`OVERFLOW`] record.
fn sighting(report: &ChainReport, sighted: &Sighted, kept: bool) -> Sighting {
    let now = now_rfc3339();
    Sighting {
        spki: if kept {
            report.top_spki_sha256.clone()
        } else {
            OVERFLOW.into()
        },
        issuer: escape(&report.issuer).into_owned(),
        vendor: report.vendor.clone().unwrap_or_else(|| "unknown".into()),
        verdict: report.verdict.to_string(),
        first_seen: now.clone(),
        last_seen: now,
        hosts: sighted.label().into_iter().collect(),
        count: 1,
    }
}

/// A PEM file of evidence.
struct PemFile {
    path: PathBuf,
    pem: String,
    /// Written over an existing file (the chain file, which holds the
    /// latest chain under its top), or only when there is none (the root).
    replace: bool,
}

/// The PEM files for a chain: the linked path, leaf first, and its root
/// alone when it ends in one.
fn pem_files(report: &ChainReport, chain: &[CertificateDer<'_>], dir: &Path) -> Vec<PemFile> {
    let path: Vec<usize> = report
        .path
        .iter()
        .copied()
        .filter(|&i| i < chain.len() && i < report.certs.len())
        .collect();
    let Some(&top) = path.last() else {
        return Vec::new();
    };
    let spki = &report.top_spki_sha256;
    let pem = path.iter().map(|&i| chain_pem(&chain[i], &report.certs[i])).collect();
    let mut files = vec![PemFile {
        path: dir.join(format!("{spki}.pem")),
        pem,
        replace: true,
    }];
    if report.root_in_chain {
        // A renewed copy of the root (the same key, so the same name)
        // takes the place of an older one; a stale copy never takes the
        // place of a root in its dates.
        let in_dates = report.sent_root_outside_dates.is_none()
            && x509_parser::parse_x509_certificate(&chain[top]).is_ok_and(|(_, c)| c.validity().is_valid());
        files.push(PemFile {
            path: dir.join(format!("{spki}.root.pem")),
            pem: chain_pem(&chain[top], &report.certs[top]),
            replace: in_dates,
        });
    }
    files
}

/// A hash of a chain file's text, to tell a new chain from the last one.
fn hash_of(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// The thread that owns the files.
struct Writer {
    dir: PathBuf,
    cap: usize,
}

impl Writer {
    /// Takes jobs until every sender is gone, merging up to [`BATCH`]
    /// sightings into one rewrite of the index.
    fn run(&self, jobs: Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let mut acks = Vec::new();
            let mut pending = Vec::new();
            for job in batch {
                match job {
                    Job::Record(p) => pending.push(*p),
                    Job::Flush(ack) => acks.push(ack),
                }
            }
            if !pending.is_empty() {
                if let Err(e) = self.write(pending) {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write the interception evidence");
                }
            }
            for ack in acks {
                let _ = ack.send(());
            }
        }
    }

    /// Under the directory lock: re-reads the index, saves new chains (up
    /// to the cap), merges the sightings and rewrites the index.
    fn write(&self, pending: Vec<Pending>) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let _lock = lock_dir(&self.dir)?;
        let mut index = read_index(&self.dir);
        for p in pending {
            let mut sighting = p.sighting;
            let chains = index.keys().filter(|k| *k != OVERFLOW).count();
            if sighting.spki != OVERFLOW && !index.contains_key(&sighting.spki) && chains >= self.cap {
                sighting.spki = OVERFLOW.into();
            }
            if sighting.spki != OVERFLOW {
                for file in &p.files {
                    if file.replace || !file.path.exists() {
                        write_atomically(&file.path, file.pem.as_bytes())?;
                    }
                }
            }
            if sighting.spki == OVERFLOW {
                sighting.issuer = format!("(chains beyond the first {} are counted, not saved)", self.cap);
                sighting.vendor = "-".into();
            }
            match index.get_mut(&sighting.spki) {
                Some(entry) => entry.merge(sighting),
                None => {
                    index.insert(sighting.spki.clone(), sighting);
                }
            }
        }
        let mut text = String::new();
        for s in index.values() {
            if let Ok(line) = serde_json::to_string(s) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        write_atomically(&self.dir.join("index.jsonl"), text.as_bytes())
    }
}

/// An exclusive lock on `<dir>/.lock`, held until the guard is dropped
/// (flock(2), so it also ends with the process). `std::fs::File::lock`
/// would do the same but needs Rust 1.89, above the crate's MSRV.
#[cfg(target_os = "linux")]
fn lock_dir(dir: &Path) -> std::io::Result<impl Sized> {
    use nix::fcntl::{Flock, FlockArg};
    let file = std::fs::File::create(dir.join(".lock"))?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| std::io::Error::from(errno))
}

/// Elsewhere the directory is not locked: a single writer per directory
/// keeps its records, concurrent ones may lose some.
#[cfg(not(target_os = "linux"))]
fn lock_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// The index records in `dir` (for the admin page, which reads what the
/// writer of any process sharing the directory has written).
pub fn sightings_in(dir: &Path) -> Vec<Sighting> {
    read_index(dir).into_values().collect()
}

/// The index in `dir`, by SPKI; unreadable lines are skipped.
fn read_index(dir: &Path) -> BTreeMap<String, Sighting> {
    let mut index = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("index.jsonl")) {
        for line in text.lines() {
            if let Ok(s) = serde_json::from_str::<Sighting>(line) {
                index.insert(s.spki.clone(), s);
            }
        }
    }
    index
}

/// The PEM of `cert`, after its subject and issuer (from `info`) as
/// one-line comments: nothing but the certificate itself can begin a line
/// with `-----`.
fn chain_pem(cert: &CertificateDer<'_>, info: &CertInfo) -> String {
    format!(
        "# subject: {}\n# issuer: {}\n{}",
        comment(&info.subject),
        comment(&info.issuer),
        to_pem(cert)
    )
}

/// Certificate text for a PEM comment: escaped onto one line, and with no
/// run of five hyphens, so not even a parser that looks for `-----BEGIN`
/// anywhere in a line finds a block in it.
fn comment(text: &str) -> String {
    escape(text).replace("-----", "-\\u{2d}---")
}

fn log_event(report: &ChainReport, sighted: &Sighted, saved: Option<&Saved>, policy: OnInterception) {
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
    let host = escape(sighted.host.as_deref().unwrap_or("-"));
    let host = host.as_ref();
    let sni = escape(sighted.sni.as_deref().unwrap_or("-"));
    let sni = sni.as_ref();
    let addr = sighted.addr.map_or_else(|| "-".to_owned(), |a| a.to_string());
    let addr = addr.as_str();
    let vendor = report.vendor.as_deref().unwrap_or("unknown");
    let issuer = escape(&report.issuer);
    let issuer = issuer.as_ref();
    let root = saved.and_then(|s| s.root.as_deref()).unwrap_or("-");
    let saved = saved.map_or("-", |s| s.chain.as_str());
    let flags = report.flags.names().join(",");
    match (report.verdict, policy) {
        (Verdict::Intercepted, OnInterception::Allow) => tracing::info!(
            target: "modgate::interception", host, sni, addr, verdict = %report.verdict, vendor, issuer = %issuer,
            spki = %report.top_spki_sha256, saved, root, flags, chain = %chain, "interception"
        ),
        _ => tracing::warn!(
            target: "modgate::interception", host, sni, addr, verdict = %report.verdict, vendor, issuer = %issuer,
            spki = %report.top_spki_sha256, saved, root, flags, chain = %chain, "interception"
        ),
    }
}

/// An RFC 3339 time as it orders: the text alone does not, since its
/// fraction of a second has as many digits as it needs (`02Z` is before
/// `02.5Z`). A time that does not parse orders as its text, before every
/// one that does.
fn instant(text: &str) -> (Option<time::OffsetDateTime>, &str) {
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok();
    (parsed, text)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::chain::{Verifiers, analyze};
    use std::time::{Duration, Instant};

    fn verifiers() -> Verifiers {
        let mut public = rustls::RootCertStore::empty();
        public.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Verifiers::new(
            crate::tls::anchors::Roots::from(public),
            crate::tls::anchors::Roots::empty(),
        )
        .unwrap()
    }

    /// A distinct untrusted chain (a self-signed leaf) for `host`.
    fn untrusted(host: &str) -> (ChainReport, Vec<CertificateDer<'static>>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let chain = vec![cert.der().clone()];
        (analyze(&verifiers(), &chain, Some(host)).unwrap(), chain)
    }

    fn at(report: &ChainReport) -> Sighted {
        let host = report.host.as_deref().unwrap_or_default();
        Sighted::at(host, host, None)
    }

    fn index_on_disk(dir: &Path) -> BTreeMap<String, Sighting> {
        std::fs::read_to_string(dir.join("index.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Sighting>(l).unwrap())
            .map(|s| (s.spki.clone(), s))
            .collect()
    }

    fn pem_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".pem"))
                    .count()
            })
            .unwrap_or(0)
    }

    #[test]
    fn sightings_merge_by_time_not_by_text() {
        let at = |first: &str, last: &str, verdict: &str| Sighting {
            spki: "s".into(),
            issuer: "i".into(),
            vendor: "v".into(),
            verdict: verdict.into(),
            first_seen: first.into(),
            last_seen: last.into(),
            hosts: BTreeSet::new(),
            count: 1,
        };
        // As text, "…:02Z" sorts after "…:02.5Z" and "…:03.1Z" after
        // "…:03.25Z".
        let mut kept = at("2026-11-24T10:00:02.5Z", "2026-11-24T10:00:03.1Z", "old");
        kept.merge(at("2026-11-24T10:00:02Z", "2026-11-24T10:00:03.25Z", "new"));
        assert_eq!(kept.first_seen, "2026-11-24T10:00:02Z");
        assert_eq!(kept.last_seen, "2026-11-24T10:00:03.25Z");
        assert_eq!(kept.verdict, "new");
    }

    /// Two chains under one root (two leaves an interceptor made): the
    /// chain file holds the one last seen, so a refusal that names it
    /// names the chain it refused; the root file stays; one record.
    #[test]
    fn the_chain_file_holds_the_last_distinct_chain_under_its_root() {
        let dir = tempfile::tempdir().unwrap();
        let evidence = Evidence::open(dir.path());
        let (root, issuer) =
            crate::tls::testing::ca("Zscaler Root CA", rcgen::KeyPair::generate().unwrap(), (-1, 3650), None);
        let chain_for = |host: &str| {
            let chain = vec![crate::tls::testing::leaf_by(host, &issuer), root.clone()];
            (analyze(&verifiers(), &chain, Some(host)).unwrap(), chain)
        };
        let (a, a_chain) = chain_for("a.test");
        let (b, b_chain) = chain_for("b.test");
        assert_eq!(a.top_spki_sha256, b.top_spki_sha256);
        let holds = |saved: &Saved, leaf: &CertificateDer<'_>| {
            std::fs::read_to_string(&saved.chain).unwrap().contains(&to_pem(leaf))
        };
        for (report, chain) in [(&a, &a_chain), (&b, &b_chain), (&a, &a_chain)] {
            let saved = evidence
                .record(report, chain, &at(report), OnInterception::Warn)
                .unwrap();
            evidence.flush();
            assert!(holds(&saved, &chain[0]), "{}", report.host.as_deref().unwrap());
            assert!(
                std::fs::read_to_string(saved.root.unwrap())
                    .unwrap()
                    .contains(&to_pem(&root))
            );
        }
        assert_eq!(pem_files(dir.path()), 2);
        assert_eq!(index_on_disk(dir.path())[&a.top_spki_sha256].count, 3);
    }

    /// Issue 9 item 6: `serve` and `inspect` (two writers) on one directory
    /// keep each other's records.
    #[test]
    fn issue9_two_writers_on_one_directory_keep_each_others_records() {
        let dir = tempfile::tempdir().unwrap();
        let serve = Evidence::open(dir.path());
        let inspect = Evidence::open(dir.path());
        let (a, a_chain) = untrusted("a.test");
        let (b, b_chain) = untrusted("b.test");
        assert!(serve.record(&a, &a_chain, &at(&a), OnInterception::Warn).is_some());
        serve.flush();
        assert!(inspect.record(&b, &b_chain, &at(&b), OnInterception::Warn).is_some());
        inspect.flush();
        serve.record(&a, &a_chain, &at(&a), OnInterception::Warn);
        serve.flush();
        let index = index_on_disk(dir.path());
        assert_eq!(index.len(), 2, "{index:?}");
        assert_eq!(index[&a.top_spki_sha256].count, 2);
        assert_eq!(index[&b.top_spki_sha256].count, 1);
        assert_eq!(pem_files(dir.path()), 2);
    }

    /// Issue 9 item 6: the caller never does the file work: with the
    /// directory locked by another writer, `record` still returns at once,
    /// and the record lands once the lock is released.
    #[cfg(target_os = "linux")]
    #[test]
    fn issue9_recording_returns_at_once_and_the_writer_waits_for_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let other = lock_dir(dir.path()).unwrap();
        let evidence = Evidence::open(dir.path());
        let (report, chain) = untrusted("a.test");
        let started = Instant::now();
        for _ in 0..20 {
            assert!(
                evidence
                    .record(&report, &chain, &at(&report), OnInterception::Warn)
                    .is_some()
            );
        }
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !dir.path().join("index.jsonl").exists(),
            "the index was written while another writer held the lock"
        );
        drop(other);
        evidence.flush();
        let index = index_on_disk(dir.path());
        assert_eq!(index[&report.top_spki_sha256].count, 20);
    }

    /// Issue 9 item 6: at most `cap` distinct chains are kept; the rest are
    /// counted in one `overflow` record.
    #[test]
    fn issue9_distinct_chains_are_capped_and_the_rest_counted() {
        let dir = tempfile::tempdir().unwrap();
        let evidence = Evidence::with_cap(dir.path(), 3);
        let mut saved = 0;
        for i in 0..5 {
            let (report, chain) = untrusted(&format!("h{i}.test"));
            saved += usize::from(
                evidence
                    .record(&report, &chain, &at(&report), OnInterception::Warn)
                    .is_some(),
            );
        }
        evidence.flush();
        assert_eq!(saved, 3);
        assert_eq!(pem_files(dir.path()), 3);
        let index = index_on_disk(dir.path());
        assert_eq!(index.len(), 4, "{index:?}");
        let overflow = &index[OVERFLOW];
        assert_eq!(overflow.count, 2);
        assert_eq!(
            overflow.hosts,
            BTreeSet::from(["h3.test".to_owned(), "h4.test".to_owned()])
        );
    }
}
