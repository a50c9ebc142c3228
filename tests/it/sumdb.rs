//! Verifying against a real Go checksum database: the tests/sumdb server,
//! built from the go toolchain's own `golang.org/x/mod/sumdb`, over plain
//! HTTP on 127.0.0.1. It is built once per test binary; a test that cannot
//! build it fails, it never skips.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use modgate::gomod::sumdb::dirhash::{h1_of_mod, h1_of_zip_file};
use modgate::gomod::sumdb::note::VerifierKey;
use modgate::modules::sumdb::{FetchError, FileTreeStore, SumdbError, SumdbVerifier, TileFetcher, TreeStore};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::gotool::{FixtureModule, go_binary, write_fixture};
use crate::support::STEP;

/// The server binary, built by tests/sumdb/build.sh on first use with the
/// same go toolchain as the other go tests.
pub(crate) fn sumdb_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = repo.join("target/sumdb-test/sumdb");
        let built = std::process::Command::new("bash")
            .arg(repo.join("tests/sumdb/build.sh"))
            .arg(&out)
            .env("GO", go_binary())
            .output()
            .unwrap_or_else(|e| panic!("cannot run tests/sumdb/build.sh: {e}"));
        assert!(
            built.status.success(),
            "tests/sumdb/build.sh failed; the sumdb tests need the go test server:\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        out
    })
}

/// One running test server over a GOPROXY-layout directory; it exits when
/// dropped (its stdin closes).
pub(crate) struct SumdbServer {
    pub(crate) addr: SocketAddr,
    pub(crate) key: VerifierKey,
    modules: PathBuf,
    _child: tokio::process::Child,
}

pub(crate) async fn start_sumdb(modules: &Path) -> SumdbServer {
    let mut child = tokio::process::Command::new(sumdb_binary())
        .arg("-modules")
        .arg(modules)
        .arg("-exit-on-eof")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    tokio::time::timeout(STEP, BufReader::new(stdout).read_line(&mut line))
        .await
        .expect("the sumdb server starts")
        .unwrap();
    // "sumdb listening on 127.0.0.1:38573 key sum.test+2aa55928+Abc…"
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.get(..3), Some(&["sumdb", "listening", "on"][..]), "{line:?}");
    SumdbServer {
        addr: fields[3].parse().unwrap(),
        key: VerifierKey::parse(fields[5]).unwrap(),
        modules: modules.to_owned(),
        _child: child,
    }
}

impl SumdbServer {
    /// POSTs to the control API; the answer's body.
    pub(crate) async fn control(&self, path_and_query: &str) -> String {
        let (status, body) = http(self.addr, "POST", path_and_query).await;
        let body = String::from_utf8(body).unwrap();
        assert_eq!(status, 200, "POST {path_and_query}: {body}");
        body
    }

    /// Publishes a record with the given hashes, right or wrong.
    pub(crate) async fn add(&self, module: &str, version: &str, zip_h1: &str, mod_h1: &str) {
        let q = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        self.control(&format!(
            "/_control/add?path={}&version={}&zip={}&mod={}",
            q(module),
            q(version),
            q(zip_h1),
            q(mod_h1)
        ))
        .await;
    }

    /// The zip and go.mod of a fixture module, as files.
    fn files_of(&self, module: &str, version: &str) -> (PathBuf, PathBuf) {
        let dir = self
            .modules
            .join(modgate::gomod::escape::encode_case(module))
            .join("@v");
        let version = modgate::gomod::escape::encode_case(version);
        (dir.join(format!("{version}.zip")), dir.join(format!("{version}.mod")))
    }

    /// A fetcher for this server, recording every path it fetches.
    fn fetcher(&self) -> Arc<HttpFetcher> {
        Arc::new(HttpFetcher {
            addr: self.addr,
            fetched: Mutex::new(Vec::new()),
            corrupt_tiles: AtomicBool::new(false),
            forge_records: AtomicBool::new(false),
        })
    }
}

/// A bare HTTP/1.0 exchange: status and body.
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut answer))
        .await
        .expect("the sumdb server answers")
        .unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, answer[split + 4..].to_vec())
}

/// A [`TileFetcher`] over plain HTTP to the test server.
struct HttpFetcher {
    addr: SocketAddr,
    fetched: Mutex<Vec<String>>,
    /// Flip a bit in every tile, as a lying server (or proxy) would.
    corrupt_tiles: AtomicBool,
    /// Replace the zip hash in lookup answers, as a man in the middle would.
    forge_records: AtomicBool,
}

impl HttpFetcher {
    fn fetched(&self) -> Vec<String> {
        self.fetched.lock().unwrap().clone()
    }
}

impl TileFetcher for HttpFetcher {
    fn fetch<'a>(&'a self, path: &'a str, limit: usize) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(async move {
            self.fetched.lock().unwrap().push(path.to_owned());
            let (status, mut body) = http(self.addr, "GET", &format!("/{path}")).await;
            match status {
                200 if body.len() > limit => Err(FetchError::TooLarge(limit)),
                200 => {
                    if path.starts_with("tile/") && self.corrupt_tiles.load(Ordering::SeqCst) {
                        if let Some(b) = body.first_mut() {
                            *b ^= 1;
                        }
                    }
                    if path.starts_with("lookup/") && self.forge_records.load(Ordering::SeqCst) {
                        body = forge_zip_hash(&body);
                    }
                    Ok(Bytes::from(body))
                }
                404 | 410 => Err(FetchError::NotFound),
                other => Err(FetchError::Failed(format!("status {other}"))),
            }
        })
    }
}

/// A lookup answer whose first `h1:` hash (the zip's) is replaced.
fn forge_zip_hash(answer: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(answer.to_vec()).unwrap();
    let at = text.find(" h1:").unwrap() + 1;
    let forged = "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    format!("{}{forged}{}", &text[..at], &text[at + forged.len()..]).into_bytes()
}

/// A temporary directory with a module tree of `modules` in `proxy/`, and
/// a checksum database started over it.
async fn sumdb_over(modules: &[FixtureModule]) -> (tempfile::TempDir, PathBuf, SumdbServer) {
    let dir = tempfile::tempdir().unwrap();
    let proxy = dir.path().join("proxy");
    write_fixture(&proxy, modules);
    let server = start_sumdb(&proxy).await;
    (dir, proxy, server)
}

/// A verifier for `server` keeping its tree in `store_path`.
fn verifier(server: &SumdbServer, fetcher: Arc<HttpFetcher>, store_path: &Path) -> SumdbVerifier {
    SumdbVerifier::new(server.key.clone(), fetcher, Arc::new(FileTreeStore::new(store_path)))
}

/// A verifier key with the server's name but another Ed25519 key.
fn impostor_key(name: &str) -> VerifierKey {
    use base64::Engine as _;
    use ring::signature::KeyPair as _;
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap();
    let mut key = vec![1u8];
    key.extend_from_slice(pair.public_key().as_ref());
    let digest = ring::digest::digest(&ring::digest::SHA256, &[name.as_bytes(), b"\n", &key].concat());
    let hash = u32::from_be_bytes(digest.as_ref()[..4].try_into().unwrap());
    let encoded = base64::engine::general_purpose::STANDARD.encode(&key);
    VerifierKey::parse(&format!("{name}+{hash:08x}+{encoded}")).unwrap()
}

/// The go oracle's `hash` or `hash-mod` of a file.
fn oracle(command: &str, file: &Path) -> String {
    let out = std::process::Command::new(sumdb_binary())
        .arg(command)
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn module(path: &'static str, version: &'static str) -> FixtureModule {
    FixtureModule {
        path,
        version,
        payload: 3000,
    }
}

#[tokio::test]
async fn verified_hashes_equal_gos_and_our_own() {
    let (dir, _, server) = sumdb_over(&[
        module("example.test/alpha", "v1.0.0"),
        module("example.test/Beta", "v0.1.0-RC.1"),
    ])
    .await;
    let store = dir.path().join("sumdb/sum.test/latest");
    let verifier = verifier(&server, server.fetcher(), &store);

    for (path, version) in [("example.test/alpha", "v1.0.0"), ("example.test/Beta", "v0.1.0-RC.1")] {
        let hashes = verifier.lookup(path, version).await.unwrap();
        let (zip, go_mod) = server.files_of(path, version);
        assert_eq!(hashes.zip_h1, oracle("hash", &zip), "{path}");
        assert_eq!(hashes.mod_h1, oracle("hash-mod", &go_mod), "{path}");
        assert_eq!(hashes.zip_h1, h1_of_zip_file(&zip, path, version).unwrap());
        assert_eq!(hashes.mod_h1, h1_of_mod(&std::fs::read(&go_mod).unwrap()));
    }
    let tree = verifier.verified_tree().await.unwrap().unwrap();
    assert_eq!(tree.size, 2);
    let kept = std::fs::read_to_string(&store).unwrap();
    assert!(kept.starts_with(&tree.note_text()), "{kept}");

    assert!(matches!(
        verifier.lookup("example.test/missing", "v1.0.0").await,
        Err(SumdbError::NotFound { .. })
    ));
    assert!(matches!(
        verifier.lookup("example.test/alpha", "v1.0.0/go.mod").await,
        Err(SumdbError::BadRequest { .. })
    ));
}

#[tokio::test]
async fn a_tampered_record_is_returned_as_published_and_forged_or_foreign_answers_fail() {
    let (dir, proxy, server) = sumdb_over(&[module("example.test/alpha", "v1.0.0")]).await;
    // The proxy serves v1.1.0, but the database publishes another zip hash.
    write_fixture(&proxy, &[module("example.test/alpha", "v1.1.0")]);
    let (zip, go_mod) = server.files_of("example.test/alpha", "v1.1.0");
    let real_mod = h1_of_mod(&std::fs::read(&go_mod).unwrap());
    let wrong = "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    server.add("example.test/alpha", "v1.1.0", wrong, &real_mod).await;

    let verifier = verifier(&server, server.fetcher(), &dir.path().join("latest"));
    let hashes = verifier.lookup("example.test/alpha", "v1.1.0").await.unwrap();
    assert_eq!(
        hashes.zip_h1, wrong,
        "the published record is what the caller compares with"
    );
    assert_ne!(
        hashes.zip_h1,
        h1_of_zip_file(&zip, "example.test/alpha", "v1.1.0").unwrap()
    );
    assert_eq!(hashes.mod_h1, real_mod);

    // The same record with its hash changed on the way: the signed tree
    // does not hold it.
    let forging = server.fetcher();
    forging.forge_records.store(true, Ordering::SeqCst);
    let fooled = self::verifier(&server, forging, &dir.path().join("fooled"));
    let refused = fooled.lookup("example.test/alpha", "v1.0.0").await.unwrap_err();
    assert!(
        matches!(refused, SumdbError::NotInTree { id: 0, size: 2, .. }),
        "{refused}"
    );

    let stranger = SumdbVerifier::new(
        impostor_key(server.key.name()),
        server.fetcher(),
        Arc::new(FileTreeStore::new(dir.path().join("stranger"))),
    );
    let refused = stranger.lookup("example.test/alpha", "v1.0.0").await.unwrap_err();
    assert!(matches!(refused, SumdbError::Signature { .. }), "{refused}");
    assert!(refused.is_misbehavior());
    assert_eq!(stranger.verified_tree().await.unwrap(), None);
}

#[tokio::test]
async fn a_grown_tree_is_consistent_and_the_kept_tree_moves_forward() {
    let (dir, proxy, server) = sumdb_over(&[module("example.test/alpha", "v1.0.0")]).await;
    let store = dir.path().join("latest");
    let verifier = verifier(&server, server.fetcher(), &store);
    verifier.lookup("example.test/alpha", "v1.0.0").await.unwrap();
    assert_eq!(verifier.verified_tree().await.unwrap().unwrap().size, 1);
    let first_note = std::fs::read(&store).unwrap();

    write_fixture(
        &proxy,
        &[
            module("example.test/alpha", "v1.2.0"),
            module("example.test/gamma", "v0.0.1"),
        ],
    );
    let added = server.control("/_control/rescan").await;
    assert_eq!(added.lines().count(), 2, "{added}");
    verifier.lookup("example.test/alpha", "v1.2.0").await.unwrap();
    let grown = verifier.verified_tree().await.unwrap().unwrap();
    assert_eq!(grown.size, 3);
    assert!(std::fs::read_to_string(&store).unwrap().starts_with(&grown.note_text()));

    // A verifier started later loads the kept tree and checks from it.
    let restarted = self::verifier(&server, server.fetcher(), &store);
    assert_eq!(restarted.verified_tree().await.unwrap(), Some(grown));
    assert_eq!(restarted.refresh().await.unwrap(), grown);
    // An older signed tree is checked as a prefix of the kept one, which
    // stays; the kept note itself checks out again.
    assert_eq!(restarted.check_latest(&first_note).await.unwrap().size, 1);
    assert_eq!(restarted.verified_tree().await.unwrap(), Some(grown));
    let kept_note = FileTreeStore::new(&store).load().await.unwrap().unwrap();
    assert_eq!(restarted.check_latest(&kept_note).await.unwrap(), grown);
}

#[tokio::test]
async fn a_fork_is_refused_loudly_and_the_old_tree_kept() {
    let (dir, _, server) = sumdb_over(&[
        module("example.test/alpha", "v1.0.0"),
        module("example.test/beta", "v1.0.0"),
    ])
    .await;
    let store = dir.path().join("latest");
    let verifier = verifier(&server, server.fetcher(), &store);
    verifier.lookup("example.test/alpha", "v1.0.0").await.unwrap();
    let before = verifier.verified_tree().await.unwrap().unwrap();
    let kept_note = std::fs::read(&store).unwrap();

    assert_eq!(
        server.control("/_control/fork").await.trim(),
        "forked: tree size 2 -> 3"
    );
    let refused = verifier.lookup("example.test/alpha", "v1.0.0").await.unwrap_err();
    let SumdbError::Fork {
        old_size,
        old_hash,
        new_size,
        ..
    } = &refused
    else {
        panic!("expected a fork, got {refused}");
    };
    assert_eq!((*old_size, *new_size), (2, 3));
    assert_eq!(*old_hash, before.hash.to_string());
    assert!(refused.to_string().starts_with("SECURITY ERROR"), "{refused}");
    assert_eq!(verifier.verified_tree().await.unwrap(), Some(before));
    assert_eq!(std::fs::read(&store).unwrap(), kept_note, "the kept tree stays on disk");
    assert!(matches!(verifier.refresh().await, Err(SumdbError::Fork { .. })));

    // A client with nothing kept accepts the fork, as go does.
    let fresh = self::verifier(&server, server.fetcher(), &dir.path().join("fresh"));
    fresh.lookup("example.test/alpha", "v1.0.0").await.unwrap();
    assert_eq!(fresh.verified_tree().await.unwrap().unwrap().size, 3);
}

#[tokio::test]
async fn a_tree_of_300_records_verifies_through_full_partial_and_level_1_tiles() {
    let (dir, proxy, server) = sumdb_over(&[module("example.test/alpha", "v1.0.0")]).await;
    let fetcher = server.fetcher();
    let store = dir.path().join("latest");
    let verifier = verifier(&server, fetcher.clone(), &store);
    verifier.lookup("example.test/alpha", "v1.0.0").await.unwrap();

    let filler = "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    for i in 0..300 {
        server
            .add(&format!("filler.test/m{i:03}"), "v1.0.0", filler, filler)
            .await;
    }
    write_fixture(&proxy, &[module("example.test/omega", "v3.0.0")]);
    assert_eq!(
        server.control("/_control/rescan").await.trim(),
        "301 example.test/omega v3.0.0"
    );

    let hashes = verifier.lookup("example.test/omega", "v3.0.0").await.unwrap();
    let (zip, _) = server.files_of("example.test/omega", "v3.0.0");
    assert_eq!(hashes.zip_h1, oracle("hash", &zip));
    assert_eq!(verifier.verified_tree().await.unwrap().unwrap().size, 302);
    let fetched = fetcher.fetched();
    for tile in ["tile/8/0/000", "tile/8/0/001.p/46", "tile/8/1/000.p/1"] {
        assert!(fetched.iter().any(|p| p == tile), "{tile} not in {fetched:?}");
    }

    // Records 0 and 151 of the tree of 302 need the full tile, verified
    // and cached by the consistency proof from 1 to 302.
    let count = |path: &str| fetcher.fetched().iter().filter(|p| *p == path).count();
    assert_eq!(count("tile/8/0/000"), 1);
    verifier.lookup("example.test/alpha", "v1.0.0").await.unwrap();
    verifier.lookup("filler.test/m150", "v1.0.0").await.unwrap();
    assert_eq!(count("tile/8/0/000"), 1, "the full tile comes from the cache");
    assert_eq!(count("tile/8/1/000.p/1"), 1, "so does the level-1 tile");

    // A fork of the large tree: the cached level-1 tile is the old log's,
    // so it fails against the new tree, is dropped and fetched again, and
    // the consistency proof then finds the fork.
    server.control("/_control/fork").await;
    let refused = verifier.lookup("example.test/omega", "v3.0.0").await.unwrap_err();
    assert!(
        matches!(
            refused,
            SumdbError::Fork {
                old_size: 302,
                new_size: 303,
                ..
            }
        ),
        "{refused}"
    );
    assert_eq!(count("tile/8/1/000.p/1"), 2, "the stale cached tile was fetched again");
    assert_eq!(verifier.verified_tree().await.unwrap().unwrap().size, 302);
}

#[tokio::test]
async fn tiles_that_do_not_match_the_signed_tree_are_refused() {
    let (dir, _, server) = sumdb_over(&[
        module("example.test/alpha", "v1.0.0"),
        module("example.test/beta", "v1.0.0"),
        module("example.test/gamma", "v1.0.0"),
    ])
    .await;
    let fetcher = server.fetcher();
    fetcher.corrupt_tiles.store(true, Ordering::SeqCst);
    let verifier = verifier(&server, fetcher, &dir.path().join("latest"));
    let refused = verifier.lookup("example.test/beta", "v1.0.0").await.unwrap_err();
    assert!(matches!(refused, SumdbError::TileMismatch { size: 3, .. }), "{refused}");
    assert_eq!(verifier.verified_tree().await.unwrap(), None, "nothing is kept");
}

/// The kept tree's file never turns the check off: a damaged kept note
/// is set aside (named as local, not the database's fault) and checking
/// starts again from the database's next signed tree; a store that cannot
/// be written (a full or read-only disk) keeps the verified tree in
/// memory, and a lookup still verifies the record, so a tampered answer
/// still fails; a kept tree that cannot be read is an error (it may be
/// the one that guards against a fork), never overwritten.
#[tokio::test]
async fn a_damaged_or_unwritable_kept_tree_never_turns_the_check_off() {
    let (dir, _, server) = sumdb_over(&[
        module("example.test/alpha", "v1.0.0"),
        module("example.test/beta", "v1.0.0"),
    ])
    .await;

    // Damaged: garbage where the note was.
    let store = dir.path().join("latest");
    std::fs::write(&store, "garbage\n").unwrap();
    let verifier = verifier(&server, server.fetcher(), &store);
    verifier.lookup("example.test/alpha", "v1.0.0").await.unwrap();
    assert_eq!(verifier.verified_tree().await.unwrap().unwrap().size, 2);
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("latest.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "set aside for a look");
    assert_eq!(std::fs::read_to_string(aside[0].path()).unwrap(), "garbage\n");
    assert!(
        std::fs::read_to_string(&store).unwrap().contains("\n\n—"),
        "a verified note in its place"
    );

    // Unwritable: the store's directory is a file, so no save can work.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, "a file, not a directory").unwrap();
    let unsaved = self::verifier(&server, server.fetcher(), &blocked.join("latest"));
    let hashes = unsaved.lookup("example.test/beta", "v1.0.0").await.unwrap();
    assert_eq!(
        unsaved.verified_tree().await.unwrap().unwrap().size,
        2,
        "kept in memory"
    );
    assert!(hashes.zip_h1.starts_with("h1:"));
    // A forged answer still fails the check.
    let forging = server.fetcher();
    forging.forge_records.store(true, Ordering::SeqCst);
    let checked = self::verifier(&server, forging, &blocked.join("latest"));
    let refused = checked.lookup("example.test/beta", "v1.0.0").await.unwrap_err();
    assert!(matches!(refused, SumdbError::NotInTree { .. }), "{refused}");

    // Unreadable: the kept tree's path is a directory.
    let unreadable = dir.path().join("unreadable");
    std::fs::create_dir_all(unreadable.join("latest")).unwrap();
    let stuck = self::verifier(&server, server.fetcher(), &unreadable.join("latest"));
    let refused = stuck.lookup("example.test/beta", "v1.0.0").await.unwrap_err();
    assert!(
        matches!(&refused, SumdbError::Store { reason, .. } if reason.starts_with("cannot read the kept tree")),
        "{refused}"
    );
    assert!(unreadable.join("latest").is_dir(), "left as it was");
}
