//! The access event tells the truth (issue 9, items 2 and 15): answers
//! modgate writes itself count their bytes, a body that fails half-way is
//! logged with its error and the bytes actually sent, and text from a peer
//! never breaks a log line.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

fn write_config(dir: &std::path::Path) {
    std::fs::write(
        dir.join("c.toml"),
        "[[rule]]\nname = \"no-evil\"\nhosts = [\"evil.test\"]\naction = \"block\"\nreason = \"SEC-42\"\n\n[[rule]]\nname = \"allow\"\naction = \"direct\"\n",
    )
    .unwrap();
}

/// An origin that promises 1000 bytes, sends 100, and closes.
async fn start_short_origin() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n").await;
            let _ = s.write_all(&[b'x'; 100]).await;
            let _ = s.shutdown().await;
        }
    });
    addr
}

#[tokio::test]
async fn own_answers_count_their_bytes_and_broken_bodies_are_logged_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let mut served = start_served(
        dir.path(),
        &["--config", "c.toml", "--listen", "127.0.0.1:0", "--log-format", "json"],
    )
    .await;

    // A refusal modgate writes itself: bytes_out is its body.
    let (status, _, body) = get_via(served.addr, "http://evil.test/x").await;
    assert_eq!(status, 403);
    let event = served.next_access().await;
    assert_eq!(event["status"], 403);
    assert_eq!(event["bytes_out"].as_u64(), Some(body.len() as u64), "{event}");

    // A body that stops at 100 of 1000 bytes: the status was 200, but the
    // event says what failed and how much was sent.
    let origin = start_short_origin().await;
    let mut s = tokio::net::TcpStream::connect(served.addr).await.unwrap();
    s.write_all(format!("GET http://{origin}/big HTTP/1.1\r\nHost: {origin}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(STEP, s.read_to_end(&mut got)).await;
    let event = served.next_access().await;
    assert_eq!(event["status"], 200, "{event}");
    assert_eq!(event["bytes_out"].as_u64(), Some(100), "{event}");
    let error = event["error"].as_str().unwrap_or_default();
    assert!(error.contains("after 100 bytes"), "{event}");
}

#[tokio::test]
async fn peer_text_is_escaped_in_the_text_log() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let mut served = start_served(dir.path(), &["--config", "c.toml", "--listen", "127.0.0.1:0"]).await;
    // A CONNECT target with a line separator and a C1 control (CSI) in it:
    // the request parser takes bytes above 0x7f, so they reach the log.
    let reply = raw_exchange(
        served.addr,
        "CONNECT evil\u{2028}x\u{9b}2J.test:443 HTTP/1.1\r\nHost: x\r\n\r\n".as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let line = loop {
        let line = tokio::time::timeout(STEP, served.lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("a log line");
        if line.contains("access") {
            break line;
        }
    };
    assert!(!line.contains('\u{9b}') && !line.contains('\u{2028}'), "{line:?}");
    assert!(line.contains("\\u{2028}") && line.contains("\\u{9b}"), "{line:?}");
    // The client's line is escaped the same way.
    assert!(!reply.contains('\u{2028}') && reply.contains("\\u{2028}"), "{reply:?}");
}
