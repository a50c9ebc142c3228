//! Upstream failures: unresolvable names, refused ports, silent servers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn hosts_overrides_route_names_to_local_servers() {
    let origin = start_text_origin("from the override").await;
    let proxy = start_proxy(&config_allowing_loopback(&format!(
        "[hosts]\n\"proxy.golang.org\" = \"{}\"\n",
        origin.addr
    )))
    .await;
    let (status, _, body) = get_via(proxy.addr, "http://proxy.golang.org/").await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "from the override"));
    proxy.stop().await;
}

#[tokio::test]
async fn an_unresolvable_host_is_a_502_naming_it() {
    let proxy = start_proxy(&config_allowing_loopback("[timeouts]\nconnect = \"3s\"\n")).await;
    let (status, headers, body) = get_via(proxy.addr, "http://no-such-host.invalid/").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert!(
        body.starts_with("modgate: cannot resolve no-such-host.invalid"),
        "{body}"
    );
    let (_s, head) = connect_via(proxy.addr, "no-such-host.invalid:443").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    proxy.stop().await;
}

#[tokio::test]
async fn an_unreachable_port_is_a_502_naming_it() {
    let port = closed_port().await;
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let (status, _, body) = get_via(proxy.addr, &format!("http://{port}/")).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.starts_with(&format!("modgate: cannot connect to {port}")),
        "{body}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_a_504_within_the_header_timeout() {
    let (silent, _task) = start_silent_origin().await;
    let proxy = start_proxy(&config_allowing_loopback("[timeouts]\nheader = \"1s\"\n")).await;
    let started = Instant::now();
    let (status, _, body) = get_via(proxy.addr, &format!("http://{silent}/")).await;
    let waited = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert_eq!(body, format!("modgate: upstream {silent} did not answer within 1s\n"));
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "answered after {waited:?}"
    );
    proxy.stop().await;
}

/// `timeouts.connect`: an address that never answers the SYN is a 504
/// naming it after the connect timeout, for a request and a tunnel alike.
#[tokio::test]
async fn a_connect_timeout_is_a_504_naming_the_upstream() {
    let (_hole, _fill, hole) = black_hole();
    let proxy = start_proxy(&config_allowing_loopback(&format!(
        "[timeouts]\nconnect = \"1s\"\nheader = \"30s\"\n[hosts]\n\"hole.test\" = \"{hole}\"\n"
    )))
    .await;
    let started = Instant::now();
    let (status, _, body) = get_via(proxy.addr, "http://hole.test/").await;
    let waited = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert!(body.starts_with("modgate: ") && body.contains("hole.test"), "{body}");
    assert!(body.contains("1s"), "names the timeout: {body}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "answered after {waited:?}"
    );
    let (_s, head) = connect_via(proxy.addr, "hole.test:443").await;
    assert!(head.starts_with("HTTP/1.1 504"), "{head}");
    proxy.stop().await;
}

/// An origin that answers every request with `raw`, then closes.
async fn start_raw_origin(raw: &'static [u8]) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(raw).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Issue 9 item 10: a response head that cannot be passed on safely — both
/// Content-Length and Transfer-Encoding, or a 101 nobody asked for — is a
/// 502 with a modgate line naming the upstream.
#[tokio::test]
async fn upstream_framing_that_cannot_be_passed_on_is_a_502() {
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let both = start_raw_origin(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let (status, _, body) = get_via(proxy.addr, &format!("http://{both}/")).await;
    assert_eq!(status.as_u16(), 502, "{body}");
    assert!(
        body.starts_with(&format!(
            "modgate: upstream {both} failed: sent both Content-Length and Transfer-Encoding"
        )),
        "{body}"
    );
    let upgrade =
        start_raw_origin(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n").await;
    let (status, _, body) = get_via(proxy.addr, &format!("http://{upgrade}/")).await;
    assert_eq!(status.as_u16(), 502, "{body}");
    assert!(body.contains("switched protocols (101)"), "{body}");
    // hyper takes off the chunked framing only; passed on without its
    // Transfer-Encoding, a gzip-coded body would change meaning.
    let gzip =
        start_raw_origin(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n").await;
    let (status, _, body) = get_via(proxy.addr, &format!("http://{gzip}/")).await;
    assert_eq!(status.as_u16(), 502, "{body}");
    assert!(
        body.contains("used the transfer coding 'gzip', which modgate does not pass on"),
        "{body}"
    );
    proxy.stop().await;
}

/// A response body that fails before its first byte (a chunk-size line that
/// is not one) is still a 502 with a modgate line, not a head followed by
/// an aborted connection (curl's "Empty reply from server").
#[tokio::test]
async fn a_body_that_fails_before_its_first_byte_is_a_502() {
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    for raw in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let origin = start_raw_origin(raw).await;
        let (status, _, body) = get_via(proxy.addr, &format!("http://{origin}/")).await;
        assert_eq!(status.as_u16(), 502, "{body}");
        assert!(
            body.starts_with(&format!(
                "modgate: upstream {origin} failed: its response body failed before its first byte: "
            )) && body.lines().count() == 1,
            "{body}"
        );
    }
    // A body that has sent data first is cut, never passed on as whole.
    let origin = start_raw_origin(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n").await;
    let reply = raw_exchange(
        proxy.addr,
        format!("GET http://{origin}/ HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.contains("hello") && !reply.ends_with("0\r\n\r\n"), "{reply}");
    proxy.stop().await;
}

/// An HTTP/1.1 origin whose keep-alive connections each carry one answer
/// at most. With a body, it answers the first request (keep-alive, no
/// `Connection: close`), then reads the next request whole and closes the
/// connection without answering it, as a server whose keep-alive timeout
/// fires just as a request arrives does. Without one, it closes each
/// connection when its first request has arrived.
struct ClosingOrigin {
    addr: std::net::SocketAddr,
    connections: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

/// How [`ClosingOrigin`] speaks and closes.
#[derive(Clone)]
enum Closing {
    /// Plain TCP, closed with a FIN.
    Fin,
    /// Plain TCP, closed with a RST.
    Reset,
    /// TLS (http/1.1), the TCP connection closed without a close_notify.
    Tls(tokio_rustls::TlsAcceptor),
}

impl ClosingOrigin {
    async fn start(body: Option<&'static str>, closing: Closing) -> ClosingOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = ClosingOrigin {
            addr: listener.local_addr().unwrap(),
            connections: Arc::default(),
            answered: Arc::default(),
            dropped: Arc::default(),
        };
        let counts = [
            origin.connections.clone(),
            origin.answered.clone(),
            origin.dropped.clone(),
        ];
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                counts[0].fetch_add(1, Ordering::SeqCst);
                let (closing, counts) = (closing.clone(), counts.clone());
                tokio::spawn(async move {
                    match closing {
                        Closing::Fin => one_answer(s, body, &counts).await,
                        Closing::Reset => {
                            let linger = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                            linger.expect("SO_LINGER");
                            one_answer(s, body, &counts).await
                        }
                        Closing::Tls(acceptor) => {
                            if let Ok(tls) = acceptor.accept(s).await {
                                one_answer(tls, body, &counts).await
                            }
                        }
                    }
                });
            }
        });
        origin
    }

    /// Asserts a 502 whose body is one `modgate:` line naming this origin.
    fn assert_named_in_a_502(&self, status: http::StatusCode, body: &str) {
        assert_eq!(status, 502, "{body}");
        assert!(
            body.starts_with(&format!("modgate: upstream http://{} failed: ", self.addr))
                && body.trim_end().lines().count() == 1,
            "{body}"
        );
    }

    fn counts(&self) -> (usize, usize, usize) {
        (
            self.connections.load(Ordering::SeqCst),
            self.answered.load(Ordering::SeqCst),
            self.dropped.load(Ordering::SeqCst),
        )
    }
}

/// Answers the first request on `s` with `body` (when there is one), then
/// reads the next and drops `s` without answering it. `counts`:
/// connections, answered, dropped.
async fn one_answer<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, body: Option<&str>, counts: &[Arc<AtomicUsize>; 3]) {
    if let Some(body) = body {
        if read_request(&mut s).await.is_none() {
            return;
        }
        let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        if s.write_all(answer.as_bytes()).await.is_err() || s.flush().await.is_err() {
            return;
        }
        counts[1].fetch_add(1, Ordering::SeqCst);
    }
    if read_request(&mut s).await.is_some() {
        counts[2].fetch_add(1, Ordering::SeqCst);
    }
}

/// Reads one request (its head, and a `Content-Length` body) whole; `None`
/// when the connection closes first.
async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> Option<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).await.ok()?;
    Some(())
}

/// A pooled keep-alive connection that the origin closes (FIN or RST) as a
/// GET goes out on it costs the client nothing: the GET is sent again on
/// a new connection and answered. Without that, each of these GETs after
/// the first would be a 502.
#[tokio::test]
async fn a_get_on_a_pooled_connection_the_origin_closed_is_sent_again() {
    for (closing, reset) in [(Closing::Fin, false), (Closing::Reset, true)] {
        let origin = ClosingOrigin::start(Some("answered"), closing).await;
        let proxy = start_proxy(&config_allowing_loopback("")).await;
        for path in ["/a", "/b", "/c"] {
            let (status, _, body) = get_via(proxy.addr, &format!("http://{}{path}", origin.addr)).await;
            assert_eq!(
                (status.as_u16(), body.as_str()),
                (200, "answered"),
                "{path}, reset {reset}"
            );
        }
        // /a on the first connection; /b dropped there and answered on a
        // second; /c dropped there and answered on a third.
        assert_eq!(origin.counts(), (3, 3, 2), "reset {reset}");
        proxy.stop().await;
    }
}

/// The same inside an intercepted tunnel, to an origin over TLS that
/// closes without a close_notify: go's GETs through modgate to an
/// https origin are each answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intercepted_get_on_a_pooled_tls_connection_the_origin_closed_is_sent_again() {
    let pki = TestPki::new("Keep-alive Origin Root");
    let acceptor = pki.acceptor(&["localhost"], &[b"http/1.1"]);
    let origin = ClosingOrigin::start(Some("answered"), Closing::Tls(acceptor)).await;
    let (dir, served) = crate::parent::intercepting_localhost(&pki).await;
    let target = format!("localhost:{}", origin.addr.port());
    let trust = crate::parent::trusting(&dir.path().join("ca/modgate-ca.pem"));
    for n in 0..3 {
        let response = crate::parent::tls_get(served.addr, &target, trust.clone()).await;
        assert!(
            response.starts_with("HTTP/1.1 200") && response.ends_with("answered"),
            "request {n}: {response}"
        );
    }
    assert_eq!(origin.counts(), (3, 3, 2));
}

/// The same for modgate's own fetches from a module mirror: each `@v/list`
/// is answered, none reaches go as a 502.
#[tokio::test]
async fn a_mirror_fetch_on_a_pooled_connection_the_mirror_closed_is_sent_again() {
    let origin = ClosingOrigin::start(Some("v1.0.0\n"), Closing::Fin).await;
    let proxy = start_proxy(&config_allowing_loopback(&format!(
        "[[rule]]\nname = \"mirror\"\nmodules = [\"example.test/*\"]\naction = \"mirror\"\nmirrors = \"http://{}\"\n",
        origin.addr
    )))
    .await;
    for n in 0..3 {
        let answer = crate::modules::endpoint_get(proxy.addr, "/example.test/m/@v/list").await;
        assert_eq!(answer, (200, "v1.0.0\n".to_owned()), "request {n}");
    }
    assert_eq!(origin.counts(), (3, 3, 2));
    proxy.stop().await;
}

/// A request that is not safe to send twice (here a POST with a body) is
/// never sent again: the client gets a one-line 502 naming the upstream,
/// and the origin saw the POST once.
#[tokio::test]
async fn a_post_on_a_pooled_connection_the_origin_closed_is_not_sent_twice() {
    let origin = ClosingOrigin::start(Some("answered"), Closing::Fin).await;
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let (status, _, _) = get_via(proxy.addr, &format!("http://{}/first", origin.addr)).await;
    assert_eq!(status, 200);
    let mut conn = ProxyConn::open(proxy.addr).await;
    let resp = conn
        .send(
            Request::post(format!("http://{}/form", origin.addr))
                .body(full("a=1"))
                .unwrap(),
        )
        .await;
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    origin.assert_named_in_a_502(status, &String::from_utf8_lossy(&body));
    assert_eq!(origin.counts(), (1, 1, 1));
    proxy.stop().await;
}

/// An origin that closes every connection as soon as a request has arrived
/// is asked twice, never in a loop: the GET gets a one-line 502 naming it.
#[tokio::test]
async fn a_get_an_origin_always_drops_is_sent_twice_at_most() {
    let origin = ClosingOrigin::start(None, Closing::Fin).await;
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let (status, _, body) = get_via(proxy.addr, &format!("http://{}/x", origin.addr)).await;
    origin.assert_named_in_a_502(status, &body);
    assert_eq!(origin.counts(), (2, 0, 2));
    proxy.stop().await;
}

/// A rule sending every module to the mirror at `mirror`.
fn mirror_rule(mirror: std::net::SocketAddr) -> String {
    format!(
        "[admin]\nlisten = \"\"\n[[rule]]\nname = \"mods\"\nmodules = [\"*\"]\naction = \"mirror\"\nmirrors = \"http://{mirror}\"\n"
    )
}

/// GET `path` on the module endpoint over `conn`.
async fn endpoint_get_on(conn: &mut ProxyConn, path: &str) -> http::Response<hyper::body::Incoming> {
    conn.send(Request::get(path).header("host", "modgate").body(full("")).unwrap())
        .await
}

/// A mirror's 404 that closes its own connection (`Connection: close`, as
/// Python's http.server sends) passes on the 404, not the close: the
/// client's keep-alive connection stays open for its next request.
#[tokio::test]
async fn a_mirrors_connection_close_on_a_404_does_not_close_the_client() {
    let mirror =
        start_raw_origin(b"HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 10\r\n\r\nnot found\n").await;
    let proxy = start_proxy(&config_allowing_loopback(&mirror_rule(mirror))).await;
    let mut conn = ProxyConn::open(proxy.addr).await;
    // A query, which the cache does not keep, twice on one connection.
    for _ in 0..2 {
        let resp = endpoint_get_on(&mut conn, "/example.com/m/@v/master.info").await;
        assert_eq!(resp.status(), 404);
        assert!(resp.headers().get("connection").is_none(), "{:?}", resp.headers());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"not found\n", "the mirror's own 404");
    }
    proxy.stop().await;
}

/// A mirror's 204 (or any 2xx but 200) carries no module file: a 502
/// naming the mirror and the status, like a 304 or a 500, never passed on
/// for go to choke on.
#[tokio::test]
async fn a_mirrors_204_is_a_502_naming_it() {
    let mirror = start_raw_origin(b"HTTP/1.1 204 No Content\r\n\r\n").await;
    let proxy = start_proxy(&config_allowing_loopback(&mirror_rule(mirror))).await;
    let mut conn = ProxyConn::open(proxy.addr).await;
    let resp = endpoint_get_on(&mut conn, "/example.com/m/@v/v1.0.0.info").await;
    assert_eq!(resp.status(), 502);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!("modgate: upstream http://{mirror} answered 204 No Content for .info of example.com/m@v1.0.0\n")
    );
    proxy.stop().await;
}

/// An HTTP/1.0 origin's answer reaches the client in modgate's own HTTP
/// version, on a connection that stays open; an answer with more header
/// fields than modgate takes is a 502 that says so.
#[tokio::test]
async fn an_http_1_0_answer_is_sent_as_http_1_1_and_a_huge_head_is_named() {
    let proxy = start_proxy(&config_allowing_loopback("")).await;
    let old = start_raw_origin(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
    let mut conn = ProxyConn::open(proxy.addr).await;
    for _ in 0..2 {
        let resp = conn
            .send(Request::get(format!("http://{old}/")).body(full("")).unwrap())
            .await;
        assert_eq!(resp.version(), http::Version::HTTP_11);
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
    }
    let mut head = String::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
    for i in 0..101 {
        head.push_str(&format!("x-field-{i}: {i}\r\n"));
    }
    head.push_str("\r\nok");
    let crowded = start_raw_origin(Box::leak(head.into_bytes().into_boxed_slice())).await;
    let (status, _, body) = get_via(proxy.addr, &format!("http://{crowded}/")).await;
    assert_eq!(status.as_u16(), 502, "{body}");
    assert!(body.contains("more than 100 header fields"), "{body}");
    proxy.stop().await;
}
