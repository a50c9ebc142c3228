//! Malformed and hostile requests: each gets a clear `modgate:` answer, and
//! the proxy keeps serving.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

async fn still_serving(proxy: std::net::SocketAddr) {
    let origin = start_text_origin("alive").await;
    let (status, _, body) = get_via(proxy, &format!("http://{}/", origin.addr)).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "alive"));
}

fn assert_400(reply: &str, message: &str) {
    assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply}");
    assert!(reply.contains("content-type: text/plain; charset=utf-8\r\n"), "{reply}");
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(
        body.starts_with("modgate: bad request: ") && body.contains(message),
        "{reply}"
    );
    assert_eq!(body.lines().count(), 1, "{reply}");
}

#[tokio::test]
async fn garbage_request_lines_get_a_400() {
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    for garbage in [
        &b"HELLO\r\n\r\n"[..],
        b"GET / HTTP/7.0\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET http://x/ HTTP/1.1\r\nno colon here\r\n\r\n",
    ] {
        let reply = raw_exchange(proxy.addr, garbage).await;
        assert_400(&reply, "malformed request head");
    }
    // Bytes no request starts with are refused at once, with no end of
    // head to wait for (the header timeout would give a 408): a TLS
    // ClientHello (an https:// proxy URL) is named as such.
    let hello = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03";
    let reply = raw_exchange(proxy.addr, hello).await;
    assert_400(
        &reply,
        "the client started a TLS handshake, but this port speaks plain HTTP",
    );
    assert_400(
        &raw_exchange(proxy.addr, b"\x00\x00\x00\x00").await,
        "not an HTTP request",
    );
    still_serving(proxy.addr).await;
    proxy.stop().await;
}

#[tokio::test]
async fn an_oversized_header_block_gets_a_400() {
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let mut req = b"GET http://example.test/ HTTP/1.1\r\n".to_vec();
    for i in 0..100 {
        req.extend_from_slice(format!("x-filler-{i}: {}\r\n", "a".repeat(1000)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let reply = raw_exchange(proxy.addr, &req).await;
    assert_400(&reply, "request head is larger than 65536 bytes");
    let mut many = b"GET http://example.test/ HTTP/1.1\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_400(&raw_exchange(proxy.addr, &many).await, "more than 100 header fields");
    still_serving(proxy.addr).await;
    proxy.stop().await;
}

#[tokio::test]
async fn bad_connect_targets_get_a_400() {
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let cases: [(&str, &str); 9] = [
        ("example.com", "has no port"),
        ("http://example.com:80/", "is a URL or a path; CONNECT takes host:port"),
        ("example.com:443/x", "is a URL or a path"),
        ("u:p@example.com:443", "carries credentials"),
        ("::1:443", "has an IPv6 address without brackets; use [addr]:port"),
        ("example.com:", "has a bad port"),
        ("example.com:0", "has a bad port"),
        ("exa mple.com:443", "malformed request head"),
        ("bad_host!:443", "not a valid host name"),
    ];
    for (target, message) in cases {
        let reply = raw_exchange(proxy.addr, format!("CONNECT {target} HTTP/1.1\r\n\r\n").as_bytes()).await;
        assert_400(&reply, message);
    }
    still_serving(proxy.addr).await;
    proxy.stop().await;
}

/// A port outside 1-65535 in a forwarded URL is refused. `http::Uri`
/// reports such a port as none, and taking the default (80) in its place
/// would send the request to another service; so would wrapping it.
#[tokio::test]
async fn a_forwarded_url_with_a_bad_port_gets_a_400_and_goes_nowhere() {
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let origin = start_text_origin("wrong service").await;
    let wrapped = u32::from(origin.addr.port()) + 65536;
    for port in [
        wrapped.to_string(),
        "0".into(),
        "99999999999999999999".into(),
        "-1".into(),
    ] {
        let req = format!("GET http://127.0.0.1:{port}/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let reply = raw_exchange(proxy.addr, req.as_bytes()).await;
        assert_400(&reply, &format!("'127.0.0.1:{port}' has a bad port; ports are 1-65535"));
    }
    assert_eq!(origin.connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    still_serving(proxy.addr).await;
    proxy.stop().await;
}

/// A request body in a transfer coding other than chunked is a 501 (RFC
/// 9112 §6.1): hyper takes off only the chunked framing, and sent on
/// without its Transfer-Encoding the body would change meaning.
#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_a_501() {
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let origin = start_text_origin("unused").await;
    for te in [
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
    ] {
        let req = format!(
            "POST http://{}/x HTTP/1.1\r\nHost: x\r\n{te}\r\nConnection: close\r\n\r\n2\r\nxy\r\n0\r\n\r\n",
            origin.addr
        );
        let reply = raw_exchange(proxy.addr, req.as_bytes()).await;
        assert!(reply.starts_with("HTTP/1.1 501 Not Implemented\r\n"), "{reply}");
        assert!(
            reply.ends_with("modgate: not implemented: the request body uses the transfer coding 'gzip'; modgate passes on only chunked\n"),
            "{reply}"
        );
    }
    assert_eq!(origin.connections.load(std::sync::atomic::Ordering::SeqCst), 0);
    still_serving(proxy.addr).await;
    proxy.stop().await;
}

/// Text a message quotes from the request is escaped once: a backslash
/// shows as `\\`, a NUL as `\0`, an ESC as `\u{1b}`.
#[tokio::test]
async fn quoted_request_text_is_escaped_once() {
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    for (path, shown) in [
        (
            "/example.com/m\\x/@v/list",
            r#""/example.com/m\\x/@v/list": contains a backslash"#,
        ),
        (
            "/example.com/m%00/@v/list",
            r#""/example.com/m\0/@v/list": contains a control character"#,
        ),
        (
            "/example.com/m%1b/@v/list",
            r#""/example.com/m\u{1b}/@v/list": contains a control character"#,
        ),
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let reply = raw_exchange(proxy.addr, req.as_bytes()).await;
        assert_400(&reply, &format!("bad module request path {shown}"));
    }
    proxy.stop().await;
}

#[tokio::test]
async fn requests_a_proxy_cannot_serve_get_a_400() {
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    for (req, message) in [
        (
            "GET /just/a/path HTTP/1.1\r\nHost: x\r\n\r\n",
            "is neither a proxy request nor a module request",
        ),
        ("GET https://example.test/ HTTP/1.1\r\nHost: x\r\n\r\n", "https URL"),
        (
            "GET ftp://example.test/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "scheme 'ftp' is not supported",
        ),
    ] {
        let reply = raw_exchange(
            proxy.addr,
            req.replace("Host: x\r\n", "Host: x\r\nConnection: close\r\n")
                .as_bytes(),
        )
        .await;
        assert_400(&reply, message);
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_trickling_its_header_is_closed_after_the_header_timeout() {
    let proxy = start_proxy(&config_allowing_loopback("[timeouts]\nheader = \"1s\"\n")).await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let started = Instant::now();
    let request = b"GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n";
    let mut reply = Vec::new();
    for byte in request {
        if s.write_all(&[*byte]).await.is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => reply.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if started.elapsed() > Duration::from_secs(10) {
            panic!("the proxy kept a trickling client for 10 s");
        }
    }
    let _ = tokio::time::timeout(STEP, s.read_to_end(&mut reply)).await;
    let waited = started.elapsed();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(
        reply.contains("modgate: request header not received within 1s"),
        "{reply}"
    );
    assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
    still_serving(proxy.addr).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_that_connects_and_says_nothing_is_closed() {
    let proxy = start_proxy(&config_allowing_loopback("[timeouts]\nheader = \"1s\"\n")).await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("closed")
        .unwrap();
    proxy.stop().await;
}

/// Reads one response with a `content-length` from `s`; its head and body.
async fn read_response(s: &mut tokio::net::TcpStream) -> (String, String) {
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(STEP, s.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(
            n > 0,
            "closed before a whole response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .expect("a content-length")
                .trim()
                .parse()
                .unwrap();
            if body.len() >= length {
                return (head.to_owned(), body.to_owned());
            }
        }
    }
}

/// How long until `s` is closed by the other end (reading and dropping
/// anything that arrives), at most 10 s.
async fn closed_after(s: &mut tokio::net::TcpStream, from: Instant) -> Duration {
    let mut sink = [0u8; 512];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return from.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("still open after 10 s"),
        }
    }
}

/// A proxy with a 1 s header timeout (the idle one far off), and a
/// connection to it.
async fn one_second_heads() -> (Proxy, tokio::net::TcpStream) {
    let proxy = start_proxy(&config_allowing_loopback(
        "[timeouts]\nheader = \"1s\"\nidle = \"60s\"\n",
    ))
    .await;
    let s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    (proxy, s)
}

/// A keep-alive GET of `path` on `origin`, in absolute form.
fn get_line(origin: &Origin, path: &str) -> String {
    format!("GET http://{0}{path} HTTP/1.1\r\nHost: {0}\r\n\r\n", origin.addr)
}

/// [`one_second_heads`], with a keep-alive connection on which one request
/// was just answered;
/// that request, to send again.
async fn answered_once() -> (Proxy, Origin, tokio::net::TcpStream, String) {
    let origin = start_text_origin("first").await;
    let (proxy, mut s) = one_second_heads().await;
    let request = get_line(&origin, "/");
    s.write_all(request.as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "first");
    (proxy, origin, s, request)
}

/// `timeouts.header` is also the longest a keep-alive connection waits
/// for its next request: after its answer, a client that sends nothing is
/// closed once it has passed, not before (the idle timeout is far off).
#[tokio::test]
async fn a_keep_alive_client_silent_after_its_answer_is_closed_after_the_header_timeout() {
    let (proxy, _origin, mut s, _) = answered_once().await;
    let answered = Instant::now();
    let waited = closed_after(&mut s, answered).await;
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "closed {waited:?} after the answer"
    );
    still_serving(proxy.addr).await;
    proxy.stop().await;
}

/// A later head that trickles in (a byte every 200 ms, so bytes keep
/// moving) is cut at the header timeout, as the first is.
#[tokio::test]
async fn a_client_trickling_its_second_head_is_closed_after_the_header_timeout() {
    let (proxy, _origin, mut s, request) = answered_once().await;
    let trickled = request.replace("\r\n\r\n", "\r\nX-Slow: ");
    let waited = trickle_until_closed(&mut s, trickled.as_bytes()).await;
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "cut {waited:?} after its answer"
    );
    proxy.stop().await;
}

/// An origin whose `/slow` streams 30 bytes over 2 s (a chunk every
/// 400 ms) and whose other paths answer `next` at once.
async fn slow_origin() -> Origin {
    start_origin(std::sync::Arc::new(|req| {
        Box::pin(async move {
            if req.uri().path() != "/slow" {
                return http::Response::new(full("next"));
            }
            let (tx, body) = chan_body(1);
            tokio::spawn(async move {
                for i in 0..5 {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    if tx.send(bytes::Bytes::from(format!("part{i};"))).await.is_err() {
                        return;
                    }
                }
            });
            http::Response::builder()
                .header("content-length", "30")
                .body(body)
                .unwrap()
        })
    }))
    .await
}

/// The header timeout is for heads alone: an answer whose body takes
/// several times as long (a chunk every 400 ms for 2 s, header timeout
/// 1 s) arrives whole, and the connection then carries the next request.
#[tokio::test]
async fn an_answer_slower_than_the_header_timeout_is_not_cut() {
    let origin = slow_origin().await;
    let (proxy, mut s) = one_second_heads().await;
    let get = |path: &str| get_line(&origin, path);
    s.write_all(get("/slow").as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "part0;part1;part2;part3;part4;");
    s.write_all(get("/next").as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "next");
    proxy.stop().await;
}

/// Two requests in one write (pipelined), the first answered slower than
/// the header timeout: the second, whose head arrived meanwhile, is
/// answered too, and only then does the wait for a head start.
#[tokio::test]
async fn a_pipelined_request_behind_a_slow_answer_is_answered() {
    let origin = slow_origin().await;
    let (proxy, mut s) = one_second_heads().await;
    let get = |path: &str| get_line(&origin, path);
    s.write_all(format!("{}{}", get("/slow"), get("/next")).as_bytes())
        .await
        .unwrap();
    let got = read_until_end_is(&mut s, "\r\n\r\nnext").await;
    let answered = Instant::now();
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{text}");
    assert!(
        text.contains("\r\n\r\npart0;part1;part2;part3;part4;HTTP/1.1 200"),
        "{text}"
    );
    let waited = closed_after(&mut s, answered).await;
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "closed {waited:?} after the second answer"
    );
    proxy.stop().await;
}
