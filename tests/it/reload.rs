//! Issue 12 §2: hot reload. A block rule added while a download streams
//! (the download completes, the next request is blocked, an open tunnel
//! keeps relaying); a broken edit (still serving, the error logged with
//! file:line:col, shown by the metrics and the admin page) and reverting
//! it; SIGHUP; a `listen` change refused.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::admin::{admin_get, scrape, value};
use crate::support::*;
use modgate::proxy::reload_watch;

/// An origin whose `/big` streams what the test sends through the
/// returned channel, and whose other paths answer "small".
async fn streaming_origin() -> (Origin, tokio::sync::mpsc::Sender<Bytes>) {
    let (tx, body) = chan_body(4);
    let body = Arc::new(Mutex::new(Some(body)));
    let origin = start_origin(Arc::new(move |req| {
        let body = body.clone();
        Box::pin(async move {
            match (req.uri().path(), body.lock().unwrap().take()) {
                ("/big", Some(b)) => Response::new(b),
                _ => Response::new(full("small")),
            }
        })
    }))
    .await;
    (origin, tx)
}

fn config_text(origin: std::net::SocketAddr, listen: &str, extra_rules: &str) -> String {
    format!(
        "{listen}[admin]\nlisten = \"127.0.0.1:0\"\n[cache]\ndir = \"\"\n[hosts]\n\"origin.test\" = \"{origin}\"\n{extra_rules}[[rule]]\nname = \"origin\"\nhosts = [\"origin.test\"]\naction = \"direct\"\n[[rule]]\nname = \"default\"\naction = \"block\"\n"
    )
}

/// Replaces the file the way editors do: a new file renamed over it.
fn replace_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_a_block_rule_added_while_a_download_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (origin, chunks) = streaming_origin().await;
    let path = dir.path().join("modgate.toml");
    std::fs::write(&path, config_text(origin.addr, "", "")).unwrap();
    let mut served = start_served_json(dir.path(), "modgate.toml", &[]).await;
    let url = |p: &str| format!("http://origin.test:{}{p}", origin.addr.port());

    // A download starts, and a tunnel opens, under the old config.
    let mut conn = ProxyConn::open(served.addr).await;
    let resp = conn.send(Request::get(url("/big")).body(full("")).unwrap()).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    chunks.send(pattern_chunk(0, 65536)).await.unwrap();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let target = format!("origin.test:{}", origin.addr.port());
    let (mut tunnel, head) = connect_via(served.addr, &target).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // The edit: a block rule above the one that allowed them.
    let block = "[[rule]]\nname = \"stop-origin\"\nhosts = [\"origin.test\"]\naction = \"block\"\nreason = \"INC-7: origin retired\"\n";
    replace_file(&path, &config_text(origin.addr, "", block));
    let line = served.wait_for_line("config reloaded").await;
    assert!(line.contains("modgate.toml"), "{line}");

    // The download completes, every byte.
    let mut received = first.len() as u64;
    let sender = tokio::spawn(async move {
        for i in 1..16u64 {
            chunks.send(pattern_chunk(i * 65536, 65536)).await.unwrap();
        }
    });
    while let Some(frame) = tokio::time::timeout(STEP, body.frame()).await.unwrap() {
        let data = frame.expect("the download does not fail").into_data().unwrap();
        assert_eq!(data, pattern_chunk(received, data.len()));
        received += data.len() as u64;
    }
    sender.await.unwrap();
    assert_eq!(received, 16 * 65536);

    // The open tunnel still relays.
    tunnel
        .write_all(b"GET /t HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(STEP, tunnel.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&reply).ends_with("small"),
        "{}",
        String::from_utf8_lossy(&reply)
    );

    // The next request is blocked: on the same keep-alive connection, and
    // on a new one; and so is a new tunnel.
    let resp = conn.send(Request::get(url("/next")).body(full("")).unwrap()).await;
    assert_eq!(resp.status(), 403);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(text, "modgate: blocked by rule 'stop-origin': INC-7: origin retired\n");
    let (status, _, text) = get_via(served.addr, &url("/next")).await;
    assert_eq!((status.as_u16(), text.contains("stop-origin")), (403, true));
    let (_, head) = connect_via(served.addr, &target).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");

    let m = scrape(served.admin.unwrap()).await;
    assert_eq!(value(&m, "modgate_config_reloads_total", &[("result", "ok")]), 1.0);
    assert_eq!(value(&m, "modgate_config_last_reload_successful", &[]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_a_broken_edit_keeps_serving_and_reverting_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let origin = start_text_origin("still here").await;
    let path = dir.path().join("modgate.toml");
    let good = config_text(origin.addr, "", "");
    std::fs::write(&path, &good).unwrap();
    let mut served = start_served_json(dir.path(), "modgate.toml", &[]).await;
    let admin = served.admin.unwrap();
    let url = format!("http://origin.test:{}/", origin.addr.port());
    let digest_before = config_digest(admin).await;

    // Written in place (no rename): a bad duration on line 2, column 11.
    std::fs::write(&path, format!("[timeouts]\nconnect = \"ten\"\n{good}")).unwrap();
    let line = served.wait_for_line("config reload refused").await;
    assert!(line.contains("modgate.toml:2:11: bad duration 'ten'"), "{line}");
    // Tried once per edit: reading the file is no edit (a watcher that
    // reacted to modgate's own reads refused it every 300 ms).
    tokio::time::sleep(reload_watch::DEBOUNCE * 5).await;
    let (status, _, text) = get_via(served.addr, &url).await;
    assert_eq!((status.as_u16(), text.as_str()), (200, "still here"), "still serving");
    let m = scrape(admin).await;
    assert_eq!(value(&m, "modgate_config_reloads_total", &[("result", "failed")]), 1.0);
    assert_eq!(value(&m, "modgate_config_last_reload_successful", &[]), 0.0);
    assert_eq!(
        config_digest(admin).await,
        digest_before,
        "the old config is still in effect"
    );
    let (_, _, page) = admin_get(admin, "/").await;
    assert!(page.contains("The last reload was refused"), "{page}");
    assert!(page.contains("modgate.toml:2:11: bad duration &#39;ten&#39;"), "{page}");

    // Reverting the edit.
    std::fs::write(&path, &good).unwrap();
    served.wait_for_line("config reloaded").await;
    let m = scrape(admin).await;
    assert_eq!(value(&m, "modgate_config_last_reload_successful", &[]), 1.0);
    assert_eq!(value(&m, "modgate_config_reloads_total", &[("result", "ok")]), 1.0);
    let (_, _, page) = admin_get(admin, "/").await;
    assert!(!page.contains("The last reload was refused"), "{page}");
    assert!(page.contains("reloads: 1 ok, 1 refused"), "{page}");
    assert_eq!(get_via(served.addr, &url).await.0, 200);

    // A file the config names that cannot be used is located at its key,
    // as `check` and a start locate it.
    std::fs::write(&path, format!("[auth]\nhtpasswd = \"missing.htpasswd\"\n{good}")).unwrap();
    let line = served.wait_for_line("config reload refused").await;
    assert!(line.contains("modgate.toml:2:12: "), "{line}");
    assert!(line.contains("missing.htpasswd"), "{line}");
}

/// The sha256 label of `modgate_config_info`.
async fn config_digest(admin: std::net::SocketAddr) -> String {
    let m = scrape(admin).await;
    let s = m.samples.iter().find(|s| s.metric == "modgate_config_info").unwrap();
    s.labels.get("sha256").unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue12_sighup_reloads_and_a_listen_change_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let origin = start_text_origin("ok").await;
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (listen, other) = (free(), free());
    let path = dir.path().join("modgate.toml");
    let text = |l: std::net::SocketAddr| config_text(origin.addr, &format!("listen = \"{l}\"\n"), "");
    std::fs::write(&path, text(listen)).unwrap();
    let mut served = start_served(dir.path(), &["--config", "modgate.toml", "--log-format", "json"]).await;
    assert_eq!(served.addr, listen);

    // SIGHUP with the file unchanged: loaded again (CA and roots re-read).
    signal(&served.child, "HUP");
    served.wait_for_line("config reloaded").await;

    std::fs::write(&path, text(other)).unwrap();
    let line = served.wait_for_line("config reload refused").await;
    assert!(
        line.contains(&format!(
            "listen changed from {listen} to {other}; that needs a restart of modgate (the config in effect stays)"
        )),
        "{line}"
    );
    let url = format!("http://origin.test:{}/", origin.addr.port());
    assert_eq!(get_via(listen, &url).await.0, 200, "still on the old address");
    let m = scrape(served.admin.unwrap()).await;
    assert_eq!(value(&m, "modgate_config_reloads_total", &[("result", "ok")]), 1.0);
    assert_eq!(value(&m, "modgate_config_reloads_total", &[("result", "failed")]), 1.0);
}
