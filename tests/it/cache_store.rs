//! The module cache's storage layer (issue 10): atomic writes, LRU eviction
//! with pins, the directory as a GOPROXY tree for the real go, the
//! `modgate cache` commands, and the same store on S3 (moto) and file://
//! URLs.

use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use modgate::cache::file_body::MAX_CHUNK;
use modgate::cache::{CacheError, Key, KeyKind, MAX_OBJECT_BYTES, Store};
use modgate::config::Config;
use modgate::config::cache::CacheSettings;
use modgate::gomod::request::ModuleRequest;

use crate::gotool::{FixtureModule, GoProject, write_fixture};
use crate::moto::{Moto, eventually, start_moto};
use crate::support::{STEP, modgate_bin, pattern_chunk};

/// Settings for a cache directory of at most `max_size` bytes.
fn dir_settings(dir: &Path, max_size: &str) -> CacheSettings {
    let text = format!(
        "[cache]\ndir = {:?}\nmax_size = {max_size:?}\n",
        dir.display().to_string()
    );
    Config::parse(&text, "test.toml").expect("valid").cache
}

async fn open_dir(dir: &Path, max_size: &str) -> Store {
    Store::open(&dir_settings(dir, max_size))
        .await
        .unwrap()
        .expect("a cache")
}

fn zip_key(module: &str, version: &str) -> Key {
    Key::for_request(&ModuleRequest::Zip {
        module: module.into(),
        version: version.into(),
    })
    .unwrap()
}

fn list_key(module: &str) -> Key {
    Key::for_request(&ModuleRequest::List { module: module.into() }).unwrap()
}

/// Every file under `dir`, relative, skipping the hidden `.modgate/`.
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path != root.join(".modgate") {
                    walk(root, &path, out);
                }
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `n` bytes of the test pattern, sent in 64 KiB chunks.
async fn write_pattern(writer: &mut modgate::cache::ObjectWriter, n: u64) -> Result<(), CacheError> {
    let mut sent = 0;
    while sent < n {
        let len = (n - sent).min(64 * 1024) as usize;
        writer.write(pattern_chunk(sent, len)).await?;
        sent += len as u64;
    }
    Ok(())
}

fn pattern_bytes(n: u64) -> Bytes {
    pattern_chunk(0, n as usize)
}

#[tokio::test]
async fn a_committed_object_streams_back_with_its_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_dir(dir.path(), "1GiB").await;
    let key = zip_key("example.com/Big", "v1.2.3");
    let before = SystemTime::now() - Duration::from_secs(2);
    let mut writer = store.writer(&key).await.unwrap();
    write_pattern(&mut writer, 3_000_000).await.unwrap();
    assert_eq!(writer.commit().await.unwrap(), 3_000_000);

    let hit = store.get(&key).await.unwrap().expect("a hit");
    assert_eq!(hit.size, 3_000_000);
    assert!(hit.stored_at >= before, "{:?}", hit.stored_at);
    let mut stream = hit.into_stream();
    let (mut chunks, mut total) = (0, 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        // Streamed, never whole: chunks of at most 1 MiB (fewer bytes when
        // many bodies are read at once; see cache::file_body).
        assert!(chunk.len() <= MAX_CHUNK, "a chunk of {} bytes", chunk.len());
        assert_eq!(chunk, pattern_chunk(total, chunk.len()));
        total += chunk.len() as u64;
        chunks += 1;
    }
    assert_eq!(total, 3_000_000);
    assert!(chunks >= 3, "the body came in {chunks} chunks");
    assert_eq!(files(dir.path()), vec!["example.com/!big/@v/v1.2.3.zip"]);
    assert!(
        store
            .get(&zip_key("example.com/Big", "v9.9.9"))
            .await
            .unwrap()
            .is_none()
    );
    store.ready().await.unwrap();
    assert_eq!(
        files(dir.path()),
        vec!["example.com/!big/@v/v1.2.3.zip"],
        "ready() left a file"
    );

    // A restart finds it again, under the same key.
    drop(store);
    let store = open_dir(dir.path(), "1GiB").await;
    let listed = store.list("").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, key);
    assert_eq!(listed[0].size, 3_000_000);
}

#[tokio::test]
async fn a_hit_records_its_recency_on_the_file_and_a_file_removed_behind_the_store_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_dir(dir.path(), "1GiB").await;
    let key = zip_key("example.com/m", "v1.0.0");
    let mut writer = store.writer(&key).await.unwrap();
    write_pattern(&mut writer, 1000).await.unwrap();
    writer.commit().await.unwrap();
    let path = dir.path().join("example.com/m/@v/v1.0.0.zip");
    let long_ago = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_accessed(long_ago))
        .unwrap();

    // The hit's bytes, and its access time written, which the index a
    // restart rebuilds orders eviction by.
    let hit = store.get(&key).await.unwrap().expect("a hit");
    let body: Vec<Bytes> = hit.into_stream().map(Result::unwrap).collect().await;
    assert_eq!(body.concat(), pattern_bytes(1000));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let used = std::fs::metadata(&path).unwrap().accessed().unwrap();
        if used > long_ago + Duration::from_secs(1800) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the hit left the access time at {used:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Removed by another process: a miss, and forgotten, not an error.
    std::fs::remove_file(&path).unwrap();
    assert!(store.get(&key).await.unwrap().is_none());
    assert!(store.list("").await.unwrap().is_empty());
}

/// An object cut short or overwritten in place since it was stored (by
/// hand, a disk fault) is never served as a hit: it is a miss, and its file
/// goes, so the next fetch stores it whole. One another writer put in its
/// place (a commit's rename: a new file) is a hit on the new content.
#[tokio::test]
async fn an_object_changed_in_place_is_a_miss_and_one_replaced_is_a_hit() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let store = open_dir(dir.path(), "1GiB").await;
    let commit = |key: Key, n: u64| {
        let store = &store;
        async move {
            let mut writer = store.writer(&key).await.unwrap();
            write_pattern(&mut writer, n).await.unwrap();
            writer.commit().await.unwrap();
        }
    };
    let cut = zip_key("example.com/cut", "v1.0.0");
    let flipped = zip_key("example.com/flipped", "v1.0.0");
    let replaced = list_key("example.com/replaced");
    commit(cut.clone(), 100_000).await;
    commit(flipped.clone(), 1000).await;
    commit(replaced.clone(), 1000).await;
    let path = |key: &Key| dir.path().join(key.as_str());
    // Cut short with truncate(2), and one byte overwritten (with the time
    // moved on, as any write moves it), on the same files.
    std::fs::File::options()
        .write(true)
        .open(path(&cut))
        .unwrap()
        .set_len(40_000)
        .unwrap();
    let mut f = std::fs::File::options().write(true).open(path(&flipped)).unwrap();
    f.write_all(b"X").unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(SystemTime::now() + Duration::from_secs(5)))
        .unwrap();
    drop(f);
    for key in [&cut, &flipped] {
        assert!(store.get(key).await.unwrap().is_none(), "{}: a miss", key.as_str());
        assert!(!path(key).exists(), "{}: its file goes", key.as_str());
    }
    // Another writer's new file in the list's place (write, then rename).
    let fresh = dir.path().join("fresh");
    std::fs::write(&fresh, b"v1.0.0\nv1.1.0\n").unwrap();
    std::fs::rename(&fresh, path(&replaced)).unwrap();
    let hit = store.get(&replaced).await.unwrap().expect("a hit on the new list");
    let body: Vec<Bytes> = hit.into_stream().map(Result::unwrap).collect().await;
    assert_eq!(body.concat(), b"v1.0.0\nv1.1.0\n");
    // Stored again, the cut one is whole and a hit.
    commit(cut.clone(), 100_000).await;
    let hit = store.get(&cut).await.unwrap().expect("a hit once stored again");
    let body: Vec<Bytes> = hit.into_stream().map(Result::unwrap).collect().await;
    assert_eq!(body.concat(), pattern_bytes(100_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_in_an_objects_place_is_a_miss_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_dir(dir.path(), "1GiB").await;
    let key = zip_key("example.com/fifo", "v1.0.0");
    store.put(&key, pattern_bytes(100)).await.unwrap();
    let path = dir.path().join("example.com/fifo/@v/v1.0.0.zip");
    std::fs::remove_file(&path).unwrap();
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    // Opening a FIFO for reading waits for a writer, which never comes: the
    // store must not wait with it, on a worker or on the blocking pool.
    let (store, k) = (std::sync::Arc::new(store), key.clone());
    let getting = tokio::spawn({
        let store = store.clone();
        async move { store.get(&k).await.map(|hit| hit.is_none()) }
    });
    let Ok(got) = tokio::time::timeout(Duration::from_secs(10), getting).await else {
        // Release the stuck reader, so the runtime can stop, then fail.
        drop(std::fs::OpenOptions::new().write(true).open(&path));
        panic!("the hit waited on the FIFO");
    };
    assert!(got.unwrap().unwrap(), "a FIFO was served as an object");
    assert!(store.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn an_uncommitted_writer_leaves_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_dir(dir.path(), "1GiB").await;
    let key = zip_key("example.com/m", "v1.0.0");

    // Dropped half-way.
    let mut writer = store.writer(&key).await.unwrap();
    write_pattern(&mut writer, 300_000).await.unwrap();
    let temp = files(dir.path());
    assert_eq!(temp.len(), 1, "{temp:?}");
    assert!(temp[0].starts_with("example.com/m/@v/.modgate-tmp-"), "{temp:?}");
    assert!(store.get(&key).await.unwrap().is_none(), "visible before commit");
    drop(writer);
    assert!(store.get(&key).await.unwrap().is_none());
    assert!(store.list("").await.unwrap().is_empty());
    assert_eq!(files(dir.path()), Vec::<String>::new());

    // Aborted.
    let mut writer = store.writer(&key).await.unwrap();
    write_pattern(&mut writer, 1000).await.unwrap();
    writer.abort().await.unwrap();
    assert!(store.get(&key).await.unwrap().is_none());
    assert_eq!(files(dir.path()), Vec::<String>::new());

    // A failed write fails the object: over the size limit here, as a full
    // disk would.
    let mut writer = store.writer(&key).await.unwrap();
    writer.write(Bytes::from_static(b"start")).await.unwrap();
    let huge = Bytes::from(vec![0u8; (MAX_OBJECT_BYTES) as usize]);
    let e = writer.write(huge).await.unwrap_err();
    assert!(matches!(e, CacheError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("example.com/m/@v/v1.0.0.zip"), "{e}");
    let e = writer.commit().await.unwrap_err();
    assert!(matches!(e, CacheError::Failed { .. }), "{e}");
    assert!(store.get(&key).await.unwrap().is_none());
    assert_eq!(files(dir.path()), Vec::<String>::new());

    // A replaced object is replaced whole.
    store.put(&key, Bytes::from_static(b"first")).await.unwrap();
    let mut writer = store.writer(&key).await.unwrap();
    writer.write(Bytes::from_static(b"sec")).await.unwrap();
    let old = store.get(&key).await.unwrap().unwrap().bytes().await.unwrap();
    assert_eq!(old, "first");
    writer.write(Bytes::from_static(b"ond")).await.unwrap();
    writer.commit().await.unwrap();
    let new = store.get(&key).await.unwrap().unwrap().bytes().await.unwrap();
    assert_eq!(new, "second");
    assert_eq!(store.stats().await.unwrap().bytes, 6);
}

#[tokio::test]
async fn gc_removes_a_temp_file_left_by_a_crash_and_keeps_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_dir(dir.path(), "1GiB").await;
    // A "crash": a temp file nobody owns, untouched for two hours.
    let at_v = dir.path().join("example.com/crashed/@v");
    std::fs::create_dir_all(&at_v).unwrap();
    let orphan = at_v.join(".modgate-tmp-crash1");
    std::fs::write(&orphan, vec![7u8; 4096]).unwrap();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&orphan)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    // A live writer's temp file.
    let live_key = zip_key("example.com/live", "v1.0.0");
    let mut live = store.writer(&live_key).await.unwrap();
    live.write(Bytes::from_static(b"in progress")).await.unwrap();

    let report = store.gc().await.unwrap();
    assert_eq!(report.temp_files, 1, "{report:?}");
    assert_eq!(report.temp_bytes, 4096);
    assert!(!orphan.exists());
    assert!(
        !dir.path().join("example.com/crashed").exists(),
        "empty directories are pruned"
    );
    // The live writer still commits.
    live.commit().await.unwrap();
    assert_eq!(
        store.get(&live_key).await.unwrap().unwrap().bytes().await.unwrap(),
        "in progress"
    );
    assert_eq!(files(dir.path()), vec!["example.com/live/@v/v1.0.0.zip"]);
}

#[tokio::test]
async fn eviction_keeps_the_directory_under_max_size_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_dir(dir.path(), "10KiB").await;
    let keys: Vec<Key> = ["a", "b", "c", "d"]
        .iter()
        .map(|m| zip_key(&format!("example.com/{m}"), "v1.0.0"))
        .collect();
    for key in &keys[..3] {
        store.put(key, pattern_bytes(3 * 1024)).await.unwrap();
    }
    assert_eq!(store.counters().evicted_objects, 0);
    // Reading a makes b the least recently used.
    drop(store.get(&keys[0]).await.unwrap().unwrap());
    store.put(&keys[3], pattern_bytes(3 * 1024)).await.unwrap();

    let stats = store.stats().await.unwrap();
    assert!(stats.bytes <= 10 * 1024, "{stats:?}");
    assert_eq!(stats.objects, 3);
    assert_eq!(stats.max_size, Some(10 * 1024));
    let counters = store.counters();
    assert_eq!((counters.evicted_objects, counters.evicted_bytes), (1, 3 * 1024));
    assert_eq!((counters.stored_objects, counters.stored_bytes), (4, 12 * 1024));
    assert!(store.get(&keys[1]).await.unwrap().is_none(), "b was the LRU");
    for key in [&keys[0], &keys[2], &keys[3]] {
        assert!(store.get(key).await.unwrap().is_some(), "{key} was evicted");
    }
    assert!(
        !dir.path().join("example.com/b").exists(),
        "evicted directories are pruned"
    );

    // Recency survives a restart: read d, then a, then c, so d is the least
    // recently used even though a was stored first.
    for key in [&keys[3], &keys[0], &keys[2]] {
        drop(store.get(key).await.unwrap().unwrap());
    }
    drop(store);
    let store = open_dir(dir.path(), "7KiB").await;
    let report = store.gc().await.unwrap();
    assert_eq!(report.evicted_objects, 1, "{report:?}");
    assert!(store.get(&keys[3]).await.unwrap().is_none(), "d was the LRU");
    assert!(store.get(&keys[0]).await.unwrap().is_some());
    assert!(store.get(&keys[2]).await.unwrap().is_some());
}

#[tokio::test]
async fn a_pinned_object_is_never_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_dir(dir.path(), "10KiB").await;
    let (a, b, c, d) = (
        zip_key("example.com/a", "v1.0.0"),
        zip_key("example.com/b", "v1.0.0"),
        zip_key("example.com/c", "v1.0.0"),
        zip_key("example.com/d", "v1.0.0"),
    );
    store.put(&a, pattern_bytes(4 * 1024)).await.unwrap();
    store.put(&b, pattern_bytes(4 * 1024)).await.unwrap();
    // a is being served: one chunk read, the rest to come. Reading b then
    // makes a the least recently used object.
    let mut serving = store.get(&a).await.unwrap().unwrap().into_stream();
    let first = serving.next().await.unwrap().unwrap();
    drop(store.get(&b).await.unwrap().unwrap());

    // c pushes the total over: a is the LRU, but pinned, so b goes.
    store.put(&c, pattern_bytes(4 * 1024)).await.unwrap();
    assert!(
        store.get(&b).await.unwrap().is_none(),
        "b should have been evicted instead of a"
    );
    assert!(dir.path().join(a.as_str()).exists(), "a pinned object was removed");
    let mut body = first.to_vec();
    while let Some(chunk) = serving.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(body, pattern_bytes(4 * 1024));

    // Once its stream is dropped, a is an ordinary LRU object again.
    drop(serving);
    store.put(&d, pattern_bytes(4 * 1024)).await.unwrap();
    assert!(!dir.path().join(a.as_str()).exists(), "a should now be evicted");
    assert!(store.get(&c).await.unwrap().is_some());
    assert!(store.get(&d).await.unwrap().is_some());

    // With c and d pinned, the only object eviction may take is the one
    // just committed.
    let pin_c = store.get(&c).await.unwrap().unwrap();
    let pin_d = store.get(&d).await.unwrap().unwrap();
    let e = zip_key("example.com/e", "v1.0.0");
    store.put(&e, pattern_bytes(4 * 1024)).await.unwrap();
    assert!(dir.path().join(c.as_str()).exists() && dir.path().join(d.as_str()).exists());
    assert!(store.get(&e).await.unwrap().is_none());
    assert!(store.stats().await.unwrap().bytes <= 10 * 1024);
    drop((pin_c, pin_d));
}

/// Stores `modules` through the API: .info, .mod, .zip and list.
async fn store_fixture(store: &Store, modules: &[FixtureModule]) {
    let source = tempfile::tempdir().unwrap();
    write_fixture(source.path(), modules);
    for m in modules {
        let at_v = source
            .path()
            .join(modgate::gomod::escape::encode_case(m.path))
            .join("@v");
        let version = modgate::gomod::escape::encode_case(m.version);
        for (request, file) in [
            (
                ModuleRequest::Info {
                    module: m.path.into(),
                    version: m.version.into(),
                },
                format!("{version}.info"),
            ),
            (
                ModuleRequest::Mod {
                    module: m.path.into(),
                    version: m.version.into(),
                },
                format!("{version}.mod"),
            ),
            (
                ModuleRequest::Zip {
                    module: m.path.into(),
                    version: m.version.into(),
                },
                format!("{version}.zip"),
            ),
            (ModuleRequest::List { module: m.path.into() }, "list".to_owned()),
        ] {
            let bytes = std::fs::read(at_v.join(file)).unwrap();
            let key = Key::for_request(&request).unwrap();
            let mut writer = store.writer(&key).await.unwrap();
            for chunk in bytes.chunks(1000) {
                writer.write(Bytes::copy_from_slice(chunk)).await.unwrap();
            }
            writer.commit().await.unwrap();
        }
    }
}

const GO_FIXTURE: &[FixtureModule] = &[
    FixtureModule {
        path: "example.com/Upper/Case",
        version: "v1.2.0",
        payload: 20_000,
    },
    FixtureModule {
        path: "example.com/plain-mod",
        version: "v0.3.1",
        payload: 100,
    },
];

#[tokio::test]
async fn the_cache_dir_is_a_goproxy_tree_for_the_real_go() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_dir(dir.path(), "1GiB").await;
    store_fixture(&store, GO_FIXTURE).await;
    store.ready().await.unwrap();
    // A live writer's temp file sits in an @v directory meanwhile.
    let mut pending = store.writer(&zip_key("example.com/plain-mod", "v0.4.0")).await.unwrap();
    pending.write(Bytes::from_static(b"partial")).await.unwrap();

    let project = GoProject::new(&[
        ("example.com/Upper/Case", "v1.2.0"),
        ("example.com/plain-mod", "v0.3.1"),
    ]);
    let run = project
        .download(&[
            ("GOPROXY", format!("file://{}", dir.path().display())),
            ("GONOSUMDB", "example.com".into()),
        ])
        .await;
    run.assert_ok();
    assert_eq!(run.modules.len(), 2, "{:?}", run.modules);
    drop(pending);
}

// ---------- the commands ----------

fn modgate(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(modgate_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test]
async fn the_cache_commands_work_on_a_populated_dir() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("modgate.toml");
    std::fs::write(&config, "[cache]\ndir = \"cache\"\nmax_size = \"1MiB\"\n").unwrap();
    let config = config.to_str().unwrap();
    let cache_dir = root.path().join("cache");
    {
        let store = open_dir(&cache_dir, "1MiB").await;
        store_fixture(&store, GO_FIXTURE).await;
        let lookup = Key::sumdb("sum.golang.org", "lookup/example.com/plain-mod@v0.3.1").unwrap();
        store.put(&lookup, Bytes::from_static(b"record\n")).await.unwrap();
    }
    let crash = cache_dir.join("example.com/plain-mod/@v/.modgate-tmp-crash");
    std::fs::write(&crash, b"half").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&crash)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();

    // ls: everything, then a module glob (decoded, case and all).
    let (code, out, err) = modgate(root.path(), &["cache", "ls", "--json", "--config", config]);
    assert_eq!(code, 0, "{err}");
    let all = json(&out);
    let keys: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 9, "{keys:?}");
    assert!(keys.contains(&"example.com/!upper/!case/@v/v1.2.0.zip"), "{keys:?}");
    assert!(keys.contains(&"sumdb/sum.golang.org/lookup/example.com/plain-mod@v0.3.1"));
    let zip = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "example.com/!upper/!case/@v/v1.2.0.zip")
        .unwrap();
    assert_eq!(zip["kind"], "zip");
    assert_eq!(zip["module"], "example.com/Upper/Case");
    assert_eq!(zip["version"], "v1.2.0");
    assert!(zip["size"].as_u64().unwrap() > 1000);
    assert!(zip["stored_at"].as_str().unwrap().ends_with('Z'));

    let (code, out, _) = modgate(root.path(), &["cache", "ls", "example.com/Upper/*", "--config", config]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(
        out.lines()
            .all(|l| l.ends_with(".zip") || l.ends_with(".mod") || l.ends_with(".info") || l.ends_with("list"))
    );
    let (code, out, _) = modgate(root.path(), &["cache", "ls", "sumdb/", "--config", config]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "{out}");

    // stats.
    let (code, out, err) = modgate(root.path(), &["cache", "stats", "--json", "--config", config]);
    assert_eq!(code, 0, "{err}");
    let stats = json(&out);
    assert_eq!(stats["objects"], 9);
    assert_eq!(stats["by_kind"]["zip"]["objects"], 2);
    assert_eq!(stats["by_kind"]["list"]["objects"], 2);
    assert_eq!(stats["by_kind"]["sumdb"]["objects"], 1);
    assert_eq!(stats["max_size"], 1 << 20);
    let backend = stats["backend"].as_str().unwrap();
    assert_eq!(
        backend,
        format!("dir {}", cache_dir.display()),
        "the path printed is absolute"
    );
    let (code, out, _) = modgate(root.path(), &["cache", "stats", "--config", config]);
    assert_eq!(code, 0);
    assert!(out.contains("objects: 9"), "{out}");
    assert!(out.contains(&cache_dir.display().to_string()), "{out}");

    // rm by glob.
    let (code, out, err) = modgate(
        root.path(),
        &["cache", "rm", "example.com/Upper/Case", "--config", config],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed 4 objects"), "{out}");
    assert!(!cache_dir.join("example.com/!upper").exists());
    let (_, out, _) = modgate(root.path(), &["cache", "ls", "--json", "--config", config]);
    assert_eq!(json(&out).as_array().unwrap().len(), 5);

    // gc: the crash's temp file goes.
    let (code, out, err) = modgate(root.path(), &["cache", "gc", "--json", "--config", config]);
    assert_eq!(code, 0, "{err}");
    let gc = json(&out);
    assert_eq!(gc["temp_files_removed"], 1, "{gc}");
    assert_eq!(gc["temp_bytes_removed"], 4);
    assert_eq!(gc["objects"], 5);
    assert!(!crash.exists());
    let (code, out, _) = modgate(root.path(), &["cache", "gc", "--config", config]);
    assert_eq!(code, 0);
    assert!(out.contains("removed 0 temp files"), "{out}");
}

#[test]
fn the_cache_commands_exit_2_on_usage_errors_and_1_on_storage_failures() {
    let root = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = root.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let ok = write("ok.toml", "[cache]\ndir = \"c\"\n");
    let (code, _, err) = modgate(root.path(), &["cache", "ls", "github.com/[x", "--config", &ok]);
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("modgate: bad pattern 'github.com/[x'"), "{err}");

    let off = write("off.toml", "[cache]\ndir = \"\"\n");
    let (code, _, err) = modgate(root.path(), &["cache", "stats", "--config", &off]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the cache is off"), "{err}");

    let bad = write("bad.toml", "[cache]\ndir = \"c\"\nmax_size = \"lots\"\n");
    let (code, _, err) = modgate(root.path(), &["cache", "gc", "--config", &bad]);
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with(&format!("{bad}:3:12: bad size 'lots'")), "{err}");

    // The cache dir is a file: storage failure.
    write("blocker", "not a directory");
    let blocked = write("blocked.toml", "[cache]\ndir = \"blocker\"\n");
    let (code, _, err) = modgate(root.path(), &["cache", "ls", "--config", &blocked]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("modgate: cache dir "), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // check shows the cache line.
    let (code, out, err) = modgate(root.path(), &["check", "--config", &ok]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with("cache:")).expect("a cache line");
    assert!(
        line.contains(&root.path().join("c").display().to_string()) && line.contains("max 20GiB"),
        "{line}"
    );
}

// ---------- S3 (moto) ----------

/// Settings and a store for `s3://BUCKET/PREFIX` on `moto`.
async fn open_s3(moto: &Moto, bucket: &str, prefix: &str) -> Store {
    let text = format!("[cache]\nurl = \"s3://{bucket}/{prefix}\"\n");
    let settings = Config::parse(&text, "test.toml").expect("valid").cache;
    Store::open_with_env(&settings, &moto.env())
        .await
        .unwrap()
        .expect("a cache")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_writes_reads_lists_and_deletes_against_moto() {
    let moto = tokio::task::spawn_blocking(start_moto).await.unwrap();
    moto.create_bucket("modcache");
    let store = open_s3(&moto, "modcache", "team/a").await;
    assert_eq!(store.backend(), "s3://modcache/team/a");
    tokio::time::timeout(STEP, store.ready()).await.unwrap().unwrap();

    let info = Key::for_request(&ModuleRequest::Info {
        module: "example.com/Upper".into(),
        version: "v1.0.0".into(),
    })
    .unwrap();
    let zip = zip_key("example.com/Upper", "v1.0.0");
    let list = list_key("example.com/Upper");
    let lookup = Key::sumdb("sum.golang.org", "lookup/example.com/!upper@v1.0.0").unwrap();
    let before = SystemTime::now() - Duration::from_secs(5);
    store
        .put(&info, Bytes::from_static(b"{\"Version\":\"v1.0.0\"}"))
        .await
        .unwrap();
    store.put(&list, Bytes::from_static(b"v1.0.0\n")).await.unwrap();
    store.put(&lookup, Bytes::from_static(b"record\n")).await.unwrap();
    // Bigger than one part: a multipart upload, streamed back.
    let big = 20 * 1024 * 1024 + 123;
    let mut writer = store.writer(&zip).await.unwrap();
    write_pattern(&mut writer, big).await.unwrap();
    assert_eq!(writer.commit().await.unwrap(), big);

    // Objects sit under the prefix, with the GOPROXY names.
    let mut names = moto.object_names("modcache");
    names.sort();
    assert_eq!(
        names,
        vec![
            "team/a/example.com/!upper/@v/list",
            "team/a/example.com/!upper/@v/v1.0.0.info",
            "team/a/example.com/!upper/@v/v1.0.0.zip",
            "team/a/sumdb/sum.golang.org/lookup/example.com/!upper@v1.0.0",
        ]
    );

    let hit = store.get(&zip).await.unwrap().expect("a hit");
    assert_eq!(hit.size, big);
    assert!(hit.stored_at >= before, "{:?}", hit.stored_at);
    let mut stream = hit.into_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert_eq!(chunk, pattern_chunk(total, chunk.len()), "at {total}");
        total += chunk.len() as u64;
    }
    assert_eq!(total, big);
    assert_eq!(
        store.get(&info).await.unwrap().unwrap().bytes().await.unwrap(),
        "{\"Version\":\"v1.0.0\"}"
    );
    assert!(
        store
            .get(&zip_key("example.com/Upper", "v2.0.0"))
            .await
            .unwrap()
            .is_none()
    );

    // list: by prefix, with sizes; another prefix in the same bucket is
    // another cache.
    let entries = store.list("example.com/!upper/@v/").await.unwrap();
    let listed: Vec<(&str, u64)> = entries.iter().map(|e| (e.key.as_str(), e.size)).collect();
    assert_eq!(
        listed,
        vec![
            ("example.com/!upper/@v/list", 7),
            ("example.com/!upper/@v/v1.0.0.info", 20),
            ("example.com/!upper/@v/v1.0.0.zip", big),
        ]
    );
    assert_eq!(store.list("sumdb/").await.unwrap().len(), 1);
    assert_eq!(store.list("example.com/!up").await.unwrap().len(), 3);
    let other = open_s3(&moto, "modcache", "team/b").await;
    assert!(other.list("").await.unwrap().is_empty());
    assert!(other.get(&info).await.unwrap().is_none());

    let stats = store.stats().await.unwrap();
    assert_eq!(stats.objects, 4);
    assert_eq!(stats.bytes, big + 20 + 7 + 7);
    assert_eq!(stats.by_kind[&KeyKind::Zip].objects, 1);
    assert_eq!(stats.by_kind[&KeyKind::Sumdb].objects, 1);
    assert_eq!(stats.max_size, None);
    assert_eq!(store.counters().stored_objects, 4);

    store.delete(&zip).await.unwrap();
    store.delete(&zip).await.unwrap();
    assert!(store.get(&zip).await.unwrap().is_none());
    assert_eq!(store.list("").await.unwrap().len(), 3);
    assert_eq!(store.gc().await.unwrap(), Default::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_uncommitted_writes_leave_nothing_against_moto() {
    let moto = tokio::task::spawn_blocking(start_moto).await.unwrap();
    moto.create_bucket("atomic");
    let store = open_s3(&moto, "atomic", "").await;
    let small = zip_key("example.com/small", "v1.0.0");
    let large = zip_key("example.com/large", "v1.0.0");

    // Small and dropped: it never left memory.
    let mut writer = store.writer(&small).await.unwrap();
    write_pattern(&mut writer, 100_000).await.unwrap();
    drop(writer);
    assert!(store.get(&small).await.unwrap().is_none());

    // Large and dropped half-way: the multipart upload exists while the
    // writer lives, and is aborted once it is dropped.
    let mut writer = store.writer(&large).await.unwrap();
    write_pattern(&mut writer, 17 * 1024 * 1024).await.unwrap();
    assert!(store.get(&large).await.unwrap().is_none(), "visible before commit");
    let open = tokio::task::block_in_place(|| moto.open_uploads("atomic"));
    assert_eq!(open, 1, "a multipart upload while writing");
    drop(writer);
    assert!(store.get(&large).await.unwrap().is_none());
    let aborted = tokio::task::block_in_place(|| eventually(STEP, || moto.open_uploads("atomic") == 0));
    assert!(aborted, "the dropped writer's upload was not aborted");

    // Large and aborted explicitly.
    let mut writer = store.writer(&large).await.unwrap();
    write_pattern(&mut writer, 9 * 1024 * 1024).await.unwrap();
    writer.abort().await.unwrap();
    assert_eq!(tokio::task::block_in_place(|| moto.open_uploads("atomic")), 0);

    // Over the size limit: an error, and nothing.
    let mut writer = store.writer(&small).await.unwrap();
    writer.write(Bytes::from_static(b"x")).await.unwrap();
    let e = writer
        .write(Bytes::from(vec![0u8; MAX_OBJECT_BYTES as usize]))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cache s3://atomic/: write example.com/small/@v/v1.0.0.zip"),
        "{e}"
    );
    assert!(writer.commit().await.is_err());

    assert!(store.list("").await.unwrap().is_empty());
    assert!(tokio::task::block_in_place(|| moto.object_names("atomic")).is_empty());
}

#[test]
fn the_cache_commands_work_on_s3_with_credentials_from_the_environment() {
    let moto = start_moto();
    moto.create_bucket("cli");
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("modgate.toml");
    std::fs::write(&config, "[cache]\nurl = \"s3://cli/modules\"\n").unwrap();
    let config = config.to_str().unwrap();
    moto.boto3(
        "s3.put_object(Bucket='cli', Key='modules/example.com/m/@v/v1.0.0.mod', Body=b'module example.com/m\\n')\n\
         s3.put_object(Bucket='cli', Key='modules/example.com/m/@v/list', Body=b'v1.0.0\\n')\n\
         s3.put_object(Bucket='cli', Key='modules/not-a-key.txt', Body=b'x')",
    );
    let env = moto.env();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(modgate_bin())
            .args(args)
            .current_dir(root.path())
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["cache", "ls", "--json", "--config", config]);
    assert_eq!(code, 0, "{err}");
    let keys: Vec<String> = json(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, vec!["example.com/m/@v/list", "example.com/m/@v/v1.0.0.mod"]);
    let (code, out, err) = run(&["cache", "stats", "--json", "--config", config]);
    assert_eq!(code, 0, "{err}");
    let stats = json(&out);
    assert_eq!(stats["objects"], 2);
    assert_eq!(stats["backend"], "s3://cli/modules");
    assert_eq!(stats["max_size"], serde_json::Value::Null);
    let (code, out, err) = run(&["cache", "rm", "example.com/*", "--config", config]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed 2 objects"), "{out}");
    assert_eq!(moto.object_names("cli"), vec!["modules/not-a-key.txt"]);

    // An unreachable endpoint is a storage failure.
    drop(moto);
    let (code, _, err) = run(&["cache", "ls", "--config", config]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("modgate: cache s3://cli/modules: list"), "{err}");
}

// ---------- the other object-storage URLs ----------

#[tokio::test]
async fn a_file_url_store_round_trips_through_object_store() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[cache]\nurl = \"file://{}/objects\"\n", dir.path().display());
    let settings = Config::parse(&text, "test.toml").unwrap().cache;
    let store = Store::open_with_env(&settings, &[]).await.unwrap().unwrap();
    store.ready().await.unwrap();
    let tilde = Key::for_request(&ModuleRequest::Mod {
        module: "example.com/a~b/Mixed".into(),
        version: "v1.0.0+incompatible".into(),
    })
    .unwrap();
    let zip = zip_key("example.com/m", "v1.0.0");
    store
        .put(&tilde, Bytes::from_static(b"module example.com/a~b/Mixed\n"))
        .await
        .unwrap();
    let mut writer = store.writer(&zip).await.unwrap();
    // Past one part: a multipart upload, dropped uncommitted.
    write_pattern(&mut writer, 9 * 1024 * 1024).await.unwrap();
    drop(writer);
    assert!(
        store.get(&zip).await.unwrap().is_none(),
        "a dropped writer left an object"
    );
    let listed: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .iter()
        .map(|e| e.key.to_string())
        .collect();
    assert_eq!(listed, vec![tilde.to_string()]);
    assert_eq!(
        store.get(&tilde).await.unwrap().unwrap().bytes().await.unwrap(),
        "module example.com/a~b/Mixed\n"
    );
    store.delete(&tilde).await.unwrap();
    assert!(store.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn gcs_and_azure_urls_build_clients_and_name_what_is_missing() {
    let open = |url: &str| {
        let text = format!("[cache]\nurl = \"{url}\"\n");
        Config::parse(&text, "test.toml").unwrap().cache
    };
    let gcs = Store::open_with_env(&open("gs://bucket/prefix"), &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gcs.backend(), "gs://bucket/prefix");
    let env = [
        ("AZURE_STORAGE_ACCOUNT_NAME".to_owned(), "devstoreaccount1".to_owned()),
        ("AZURE_STORAGE_ACCOUNT_KEY".to_owned(), "bW9kZ2F0ZQ==".to_owned()),
    ];
    let azure = Store::open_with_env(&open("az://container/prefix"), &env)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(azure.backend(), "az://container/prefix");
    let e = Store::open_with_env(&open("az://container/prefix"), &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("cache az://container/prefix: cannot open:"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

/// `modgate` as the unprivileged user `nobody` (setpriv), in `dir`: root
/// reads and writes every directory, so permissions only bite without it.
fn modgate_as_nobody(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(modgate_bin())
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .output()
        .expect("setpriv runs (util-linux)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Gives the tree under `path` to `nobody`.
fn chown_nobody(path: &Path) {
    std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_nobody(&entry.unwrap().path());
        }
    }
}

/// A directory inside the cache that modgate may not read is skipped with
/// a warning naming it (it used to stop serve and every `cache` command,
/// with an error naming the cache root), and a cache it may read but not
/// write (a read-only mount of a seeded cache) is still listed.
#[test]
fn an_unreadable_directory_is_skipped_and_a_read_only_cache_still_lists() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let d = root.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let objects = d.join("cache/example.com/a/@v");
    std::fs::create_dir_all(&objects).unwrap();
    std::fs::write(objects.join("v1.0.0.mod"), "module example.com/a\n").unwrap();
    let locked = d.join("cache/example.com/locked");
    std::fs::create_dir_all(locked.join("@v")).unwrap();
    std::fs::write(locked.join("@v/v1.0.0.mod"), "module example.com/locked\n").unwrap();
    std::fs::write(d.join("c.toml"), "[cache]\ndir = \"cache\"\n").unwrap();
    chown_nobody(d);
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();

    let (code, out, err) = modgate_as_nobody(d, &["cache", "ls", "--config", "c.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("example.com/a/@v/v1.0.0.mod"), "{out}");
    assert!(!out.contains("locked"), "{out}");
    assert!(
        err.contains(&format!(
            "modgate: warning: dir {}: skipped {}: ",
            d.join("cache").display(),
            locked.display()
        )) && err.contains("ermission denied"),
        "{err}"
    );

    // Read-only: nothing can be created, everything can be listed.
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_dir_all(d.join("cache/.modgate")).unwrap();
    std::fs::set_permissions(d.join("cache"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let (code, out, err) = modgate_as_nobody(d, &["cache", "ls", "--config", "c.toml"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        err.contains("cannot create") && err.contains("nothing can be stored"),
        "{err}"
    );
    // A copy of a live cache has `.modgate/` already: read-only all the
    // same, and said so.
    std::fs::set_permissions(d.join("cache"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(d.join("cache/.modgate")).unwrap();
    for dir in ["cache/.modgate", "cache"] {
        std::fs::set_permissions(d.join(dir), std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let (code, _, err) = modgate_as_nobody(d, &["cache", "ls", "--config", "c.toml"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("cannot create or write") && err.contains("nothing can be stored"),
        "{err}"
    );
}

/// `ls` and `rm` by module glob reach a `[private]` module's objects,
/// which are kept under `private/`.
#[tokio::test]
async fn a_module_glob_reaches_private_objects_too() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("modgate.toml");
    std::fs::write(&config, "[cache]\ndir = \"cache\"\n").unwrap();
    let config = config.to_str().unwrap();
    {
        let store = open_dir(&root.path().join("cache"), "1MiB").await;
        for key in [
            "private/corp.example/team/x/@v/v1.1.0.mod",
            "private/corp.example/team/x/@v/list",
            "corp.example/team/x/@v/v1.0.0.mod",
            "other.example/y/@v/v1.0.0.mod",
        ] {
            let key = Key::parse(key).unwrap();
            store.put(&key, Bytes::from_static(b"module m\n")).await.unwrap();
        }
    }
    for glob in ["corp.example/team/x", "corp.example/*"] {
        let (code, out, err) = modgate(root.path(), &["cache", "ls", glob, "--config", config]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.lines().count(), 3, "{glob}: {out}");
        assert_eq!(
            out.lines().filter(|l| l.contains(" private/")).count(),
            2,
            "{glob}: {out}"
        );
    }
    let (code, out, err) = modgate(root.path(), &["cache", "rm", "corp.example/team/x", "--config", config]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("removed 3 objects"), "{out}");
    let (_, out, _) = modgate(root.path(), &["cache", "ls", "*", "--config", config]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.trim_end().ends_with(" other.example/y/@v/v1.0.0.mod"), "{out}");
}
