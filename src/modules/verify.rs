//! Checking module content before it enters the cache.
//!
//! A `.mod` or `.zip` of a canonical version is checked against the
//! checksum database: its `h1:` hash must equal the database's record, which
//! the [`SumdbVerifier`] proves is in a signed tree consistent with the
//! last one seen. Modules in `sumdb.nosumdb` cannot be in the database:
//! they are trusted on first use, and the hash first seen is kept, so
//! different content for the same version later is refused.
//!
//! Without a database (`sumdb.verify = false`) a zip is still refused when
//! it is not a module zip `go` would accept ([`check_well_formed`]): an
//! error page served with a 200 would otherwise be cached as the version.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::sumdb::SumdbSettings;
use crate::core::error::Error;
use crate::gomod::request::{ModuleRequest, SumdbKind};
use crate::gomod::semver::is_canonical;
use crate::gomod::sumdb::dirhash::{h1_of_mod, h1_of_zip_file};
use crate::gomod::sumdb::record::{module_hashes, parse_lookup};
use crate::gomod::sumdb::tile::Tile;
use crate::modules::sumdb::{SumdbError, SumdbVerifier};

/// What a check concluded.
#[derive(Debug)]
pub enum Verdict {
    /// The content is what the database (or the first sighting) says.
    Verified,
    /// It could not be checked (the database is unreachable, or does not
    /// know the module): serve it, but do not cache it.
    Unverifiable(String),
}

/// The content checks of the cache.
pub struct ContentCheck {
    settings: SumdbSettings,
    verifier: Arc<SumdbVerifier>,
    /// Where first-seen hashes of `nosumdb` modules are kept.
    tofu_dir: PathBuf,
    /// The cache's count of refused files, for refusals made before a
    /// file reaches the cache ([`ContentCheck::vet`]).
    refused: std::sync::OnceLock<Arc<std::sync::atomic::AtomicU64>>,
}

/// What is being checked: one module file.
#[derive(Debug, Clone)]
pub struct Subject {
    module: String,
    version: String,
    zip: bool,
}

impl Subject {
    /// The subject of `request`, when it is a `.mod` or `.zip` of a
    /// canonical version.
    pub fn of(request: &ModuleRequest) -> Option<Subject> {
        let (module, version, zip) = match request {
            ModuleRequest::Mod { module, version } => (module, version, false),
            ModuleRequest::Zip { module, version } => (module, version, true),
            _ => return None,
        };
        is_canonical(version).then(|| Subject {
            module: module.clone(),
            version: version.clone(),
            zip,
        })
    }

    fn what(&self) -> String {
        let file = if self.zip { "zip" } else { "go.mod" };
        format!("the {file} of {}@{}", self.module, self.version)
    }
}

impl ContentCheck {
    /// Checks against the database in `settings` through `verifier`;
    /// first-seen hashes go to `tofu_dir`.
    pub fn new(settings: SumdbSettings, verifier: Arc<SumdbVerifier>, tofu_dir: PathBuf) -> ContentCheck {
        ContentCheck {
            settings,
            verifier,
            tofu_dir,
            refused: std::sync::OnceLock::new(),
        }
    }

    /// Counts the refusals [`vet`](Self::vet) makes in `refused`.
    pub fn count_refusals_in(&self, refused: Arc<std::sync::atomic::AtomicU64>) {
        let _ = self.refused.set(refused);
    }

    fn refusing(&self, subject: &Subject, reason: String) -> String {
        if let Some(refused) = self.refused.get() {
            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        tracing::warn!(module = %subject.module, version = %subject.version, error = %reason, "refused: the content check failed");
        reason
    }

    /// The database's name.
    pub fn db(&self) -> &str {
        self.settings.name()
    }

    /// Checks the complete content of `subject` in `file` (from `source`,
    /// named in the refusal). A mismatch is an error naming both hashes.
    /// `pin`: a first sighting may be recorded (content that could have
    /// been cut short unnoticed is compared with one, never recorded as
    /// one).
    pub async fn check(&self, subject: &Subject, file: &Path, source: &str, pin: bool) -> Result<Verdict, Error> {
        let got = h1_of(subject, file, source).await?;
        if self.settings.is_private(&subject.module) {
            return self.trust_on_first_use(subject, &got, source, pin).await;
        }
        let hashes = match self.verifier.lookup(&subject.module, &subject.version).await {
            Ok(hashes) => hashes,
            Err(e) if e.is_misbehavior() => {
                return Err(Error::Upstream {
                    target: self.settings.url.clone(),
                    reason: format!("checksum database {} misbehaves: {e}", self.db()),
                });
            }
            Err(e @ SumdbError::NotFound { .. }) => return Ok(Verdict::Unverifiable(e.to_string())),
            Err(e) => return Ok(Verdict::Unverifiable(e.to_string())),
        };
        let want = if subject.zip { &hashes.zip_h1 } else { &hashes.mod_h1 };
        if &got != want {
            return Err(mismatch(subject, source, &got, want, self.db()));
        }
        Ok(Verdict::Verified)
    }

    /// Judges `subject`, whose whole content (from `source`) hashes to
    /// `got`, before a byte of it is served: a mismatch is the answer's
    /// fault (the reason is returned), so the mirror list can move on.
    /// `None` where the judgment is the cache's to make once the file is
    /// stored: a private module seen for the first time (its hash is
    /// recorded then), or a database that misbehaves.
    pub async fn vet(&self, subject: &Subject, got: &str) -> Result<Option<Verdict>, String> {
        if self.settings.is_private(&subject.module) {
            let record = self.tofu_dir.join(tofu_name(subject));
            let Ok(seen) = tokio::fs::read_to_string(&record).await else {
                return Ok(None);
            };
            return match seen.trim() {
                first if first != got => {
                    Err(self.refusing(subject, mismatch_reason(subject, got, first, "its first sighting")))
                }
                _ => Ok(Some(Verdict::Verified)),
            };
        }
        match self.verifier.lookup(&subject.module, &subject.version).await {
            Ok(hashes) => {
                let want = if subject.zip { &hashes.zip_h1 } else { &hashes.mod_h1 };
                match got == want {
                    true => Ok(Some(Verdict::Verified)),
                    false => Err(self.refusing(subject, mismatch_reason(subject, got, want, self.db()))),
                }
            }
            Err(e) if e.is_misbehavior() => Ok(None),
            Err(e) => Ok(Some(Verdict::Unverifiable(e.to_string()))),
        }
    }

    async fn trust_on_first_use(
        &self,
        subject: &Subject,
        got: &str,
        source: &str,
        pin: bool,
    ) -> Result<Verdict, Error> {
        let record = self.tofu_dir.join(tofu_name(subject));
        let seen = tokio::fs::read_to_string(&record).await.ok();
        match seen.as_deref().map(str::trim) {
            Some(first) if first != got => Err(mismatch(subject, source, got, first, "its first sighting")),
            Some(_) => Ok(Verdict::Verified),
            None if !pin => Ok(Verdict::Unverifiable(
                "no first sighting yet, and this answer had no length to show it is whole".into(),
            )),
            None => {
                let (record, line) = (record.clone(), format!("{got}\n"));
                let written = tokio::task::spawn_blocking(move || {
                    crate::tls::evidence::write_atomically(&record, line.as_bytes())
                })
                .await;
                if !matches!(written, Ok(Ok(()))) {
                    return Ok(Verdict::Unverifiable("cannot keep its first-seen hash".into()));
                }
                Ok(Verdict::Verified)
            }
        }
    }
}

/// The refusal of content whose hash is not the one it must have.
fn mismatch(subject: &Subject, source: &str, got: &str, want: &str, authority: &str) -> Error {
    Error::Upstream {
        target: source.to_owned(),
        reason: format!(
            "{}; not served complete and not cached",
            mismatch_reason(subject, got, want, authority)
        ),
    }
}

fn mismatch_reason(subject: &Subject, got: &str, want: &str, authority: &str) -> String {
    format!(
        "checksum mismatch for {}: it hashes to {got}, but {authority} says {want}",
        subject.what()
    )
}

/// The judgment of a whole module file made before it was served
/// ([`ContentCheck::vet`]), carried on the answer so the cache does not
/// ask the database again: `len` bytes, and why they could not be checked
/// when they could not.
#[derive(Debug, Clone)]
pub struct Vetted {
    /// The length of the content judged.
    pub len: u64,
    /// `None`: the database (or the first sighting) agrees.
    pub unverifiable: Option<String>,
}

impl Vetted {
    /// The verdict for content of `len` bytes: this one, if it was about
    /// that content.
    pub fn verdict_for(&self, len: u64) -> Option<Verdict> {
        (len == self.len).then(|| match &self.unverifiable {
            None => Verdict::Verified,
            Some(why) => Verdict::Unverifiable(why.clone()),
        })
    }
}

/// A file name for a subject's first-seen hash: the module path with `/`
/// kept as directories, `!`-case-encoded like the GOPROXY layout.
fn tofu_name(subject: &Subject) -> PathBuf {
    let module = crate::gomod::escape::encode_case(&subject.module);
    let version = crate::gomod::escape::encode_case(&subject.version);
    let ext = if subject.zip { "zip.h1" } else { "mod.h1" };
    PathBuf::from(module).join(format!("{version}.{ext}"))
}

/// Checks, with no database to compare hashes with, that `subject`'s
/// content in `file` (from `source`) is a module file `go` would accept:
/// a zip must open as a module zip (the checks hashing it makes). A
/// `.mod`'s module statement was checked as it arrived
/// ([`crate::modules::shape`]).
pub async fn check_well_formed(subject: &Subject, file: &Path, source: &str) -> Result<(), Error> {
    if !subject.zip {
        return Ok(());
    }
    h1_of(subject, file, source).await.map(drop)
}

/// The `h1:` hash of the file's content (from `source`, named when it is
/// not a valid module file), off the async runtime.
async fn h1_of(subject: &Subject, file: &Path, source: &str) -> Result<String, Error> {
    let (subject, file) = (subject.clone(), file.to_owned());
    let what = subject.what();
    let hashed = tokio::task::spawn_blocking(move || -> Result<String, String> {
        if subject.zip {
            h1_of_zip_file(&file, &subject.module, &subject.version).map_err(|e| e.to_string())
        } else {
            std::fs::read(&file)
                .map(|bytes| h1_of_mod(&bytes))
                .map_err(|e| e.to_string())
        }
    })
    .await
    .map_err(|e| Error::Internal(format!("hashing {what}: {e}")))?;
    hashed.map_err(|e| Error::Upstream {
        target: source.to_owned(),
        reason: format!("{what} is not a valid module file: {e}; not served complete and not cached"),
    })
}

/// The most a data tile is read to be checked: 256 records, each well
/// under the size of a lookup answer.
const MAX_DATA_TILE: u64 = 4 * 1024 * 1024;

/// Checks that a checksum-database answer of `request` (a lookup or a
/// tile at `key`, `sumdb/DB/PATH`), whole in `file`, is shaped as one
/// before it is kept for good: a lookup is a record id, the record of the
/// module version asked for, and a note; a hash tile is 32 bytes per hash
/// its path names; a data tile is records (`MODULE VERSION HASH` lines).
/// A login page, an error page or a cut-short tile answered with a 200 is
/// not. The signature and proofs are `go`'s to check, as for any proxy.
pub async fn check_sumdb_shape(request: &ModuleRequest, key: &str, file: &Path) -> Result<(), String> {
    let ModuleRequest::Sumdb { db, kind } = request else {
        return Ok(());
    };
    let path = key.strip_prefix(&format!("sumdb/{db}/")).unwrap_or(key);
    let len = tokio::fs::metadata(file).await.map_err(|e| e.to_string())?.len();
    if len > MAX_DATA_TILE {
        return Err(format!("{len} bytes is more than any lookup or tile"));
    }
    let body = tokio::fs::read(file).await.map_err(|e| e.to_string())?;
    sumdb_answer_shape(kind, path, &body)
}

/// [`check_sumdb_shape`] on `body`, the answer of a `kind` request at
/// `path` below the database's base URL.
pub fn sumdb_answer_shape(kind: &SumdbKind, path: &str, body: &[u8]) -> Result<(), String> {
    match kind {
        SumdbKind::Lookup { module, version } => {
            let lookup = parse_lookup(body).map_err(|e| e.to_string())?;
            module_hashes(lookup.record, module, version).map_err(|e| e.to_string())?;
            if lookup.note.is_empty() {
                return Err("no signed tree note after the record".into());
            }
            Ok(())
        }
        SumdbKind::Tile if path.starts_with("tile/8/data/") => {
            let text = std::str::from_utf8(body).map_err(|_| "a data tile that is not text".to_owned())?;
            let record_line = |line: &str| {
                let fields: Vec<&str> = line.split(' ').collect();
                fields.len() == 3
                    && fields[2]
                        .split_once(':')
                        .is_some_and(|(alg, hash)| !alg.is_empty() && !hash.is_empty())
            };
            match text.lines().filter(|l| !l.is_empty()).all(record_line) && !text.trim().is_empty() {
                true => Ok(()),
                false => Err("a data tile whose lines are not MODULE VERSION HASH records".into()),
            }
        }
        SumdbKind::Tile => {
            let tile = Tile::from_path(path).map_err(|e| e.to_string())?;
            match body.len() == tile.byte_len() {
                true => Ok(()),
                false => Err(format!(
                    "a tile of {} hashes is {} bytes, not {}",
                    tile.width,
                    tile.byte_len(),
                    body.len()
                )),
            }
        }
        SumdbKind::Supported | SumdbKind::Latest => Ok(()),
    }
}
