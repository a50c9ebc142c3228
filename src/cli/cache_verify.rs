//! `modgate cache verify`: every cached module file checked again, as it
//! was when it was stored, for damage done where modgate could not see it
//! (while it was stopped, or by another tool).
//!
//! A `.zip` must open as a module zip go accepts, a `.mod` must have a
//! module statement, a `.info` must be the JSON go reads for its version.
//! Where the cache holds the checksum database's record of the version
//! (`sumdb/DB/lookup/M@V`, kept when it was verified), the `h1:` hash must
//! be that record's. Nothing is fetched: it works offline.

use std::io::Write as _;

use futures_util::StreamExt;

use crate::cache::{CacheError, Entry, Key, KeyKind, Store};
use crate::gomod::escape::encode_case;
use crate::gomod::sumdb::dirhash::{h1_of_mod, h1_of_zip_file};
use crate::gomod::sumdb::record::{module_hashes, parse_lookup};

/// What checking the selected objects found.
pub struct Verified {
    /// Objects checked.
    pub checked: usize,
    /// Of those, compared with a kept checksum-database record.
    pub with_record: usize,
    /// The bad ones: the key, and why.
    pub bad: Vec<(Key, String)>,
}

/// Checks `entries` of `store`; `db` is the checksum database's name.
pub async fn verify(store: &Store, db: &str, entries: &[Entry]) -> Result<Verified, CacheError> {
    let mut found = Verified {
        checked: 0,
        with_record: 0,
        bad: Vec::new(),
    };
    for entry in entries {
        let key = &entry.key;
        let (Some(module), Some(version)) = (key.module(), key.version()) else {
            continue;
        };
        let kind = key.kind();
        if !matches!(kind, KeyKind::Zip | KeyKind::Mod | KeyKind::Info) {
            continue;
        }
        let Some(object) = store.get(key).await? else { continue };
        found.checked += 1;
        let h1 = match kind {
            KeyKind::Info => {
                let bytes = object.bytes().await?;
                if let Err(why) = crate::modules::shape::check_info(&bytes, Some(version)) {
                    found.bad.push((key.clone(), format!("not the .info go reads: {why}")));
                }
                continue;
            }
            KeyKind::Mod => {
                let bytes = object.bytes().await?;
                if !crate::modules::shape::has_module_statement(&bytes) {
                    found
                        .bad
                        .push((key.clone(), "a go.mod with no module statement".into()));
                    continue;
                }
                h1_of_mod(&bytes)
            }
            _ => match zip_h1(object.into_stream(), module, version).await {
                Ok(h1) => h1,
                Err(why) => {
                    found.bad.push((key.clone(), why));
                    continue;
                }
            },
        };
        if key.is_private() {
            continue;
        }
        let lookup = format!("lookup/{}@{}", encode_case(module), encode_case(version));
        let Ok(record_key) = Key::sumdb(db, &lookup) else {
            continue;
        };
        let Some(record) = store.get(&record_key).await? else {
            continue;
        };
        let record = record.bytes().await?;
        let hashes = parse_lookup(&record).and_then(|l| module_hashes(l.record, module, version));
        let Ok(hashes) = hashes else { continue };
        found.with_record += 1;
        let want = if kind == KeyKind::Zip {
            hashes.zip_h1
        } else {
            hashes.mod_h1
        };
        if h1 != want {
            found.bad.push((
                key.clone(),
                format!("checksum mismatch: it hashes to {h1}, but {db} says {want}"),
            ));
        }
    }
    Ok(found)
}

/// The `h1:` hash of a zip streamed from the store, through a temp file
/// (zips are read by their directory, at the end).
async fn zip_h1(mut body: crate::cache::ObjectStream, module: &str, version: &str) -> Result<String, String> {
    let mut file = tempfile::NamedTempFile::new().map_err(|e| format!("a temp file: {e}"))?;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("reading it: {e}"))?;
        file.write_all(&chunk).map_err(|e| format!("a temp file: {e}"))?;
    }
    let path = file.into_temp_path();
    let (module, version) = (module.to_owned(), version.to_owned());
    tokio::task::spawn_blocking(move || h1_of_zip_file(&path, &module, &version))
        .await
        .map_err(|e| format!("checking it: {e}"))?
        .map_err(|e| format!("not a module zip go would accept: {e}"))
}
