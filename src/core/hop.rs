//! Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, not
//! the message, so a proxy removes them in both directions.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The headers that always describe one hop.
static HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Why an upstream's response head cannot be passed on, if it cannot:
/// `Content-Length` together with `Transfer-Encoding` (RFC 9112 §6.1: a
/// sender must not send both, and passing both on invites response
/// smuggling), a `101 Switching Protocols` nobody asked for, or a transfer
/// coding other than chunked ([`other_transfer_coding`]).
pub fn unusable_response(status: http::StatusCode, headers: &HeaderMap) -> Option<String> {
    if status == http::StatusCode::SWITCHING_PROTOCOLS {
        return Some("switched protocols (101) although no upgrade was asked for".into());
    }
    // Most responses have no Transfer-Encoding: one lookup settles them.
    if !headers.contains_key(header::TRANSFER_ENCODING) {
        return None;
    }
    if headers.contains_key(header::CONTENT_LENGTH) {
        return Some("sent both Content-Length and Transfer-Encoding".into());
    }
    other_transfer_coding(headers)
        .map(|coding| format!("used the transfer coding '{coding}', which modgate does not pass on (only chunked)"))
}

/// A transfer coding other than `chunked` in `headers`, if there is one.
/// hyper removes only the chunked framing, and `Transfer-Encoding` is
/// hop-by-hop: a message sent on with `gzip, chunked` would lose its
/// `gzip` and change meaning, so such a message is refused instead.
pub fn other_transfer_coding(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("(not text)").split(','))
        .map(str::trim)
        .find(|c| !c.is_empty() && !c.eq_ignore_ascii_case("chunked"))
        .map(str::to_owned)
}

/// The names in [`HOP`], as text.
const HOP_NAMES: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes the hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the headers (names compared as names, never parsed)
    // finds which are there, and whether `Connection` (or
    // `Proxy-Connection`) names more than `close` or `keep-alive`, as most
    // do not; only a message that names another header pays for parsing
    // the names.
    let mut present = 0u16;
    let mut names_more = false;
    for (name, value) in headers.iter() {
        if let Some(i) = hop_index(name) {
            present |= 1 << i;
            names_more = names_more || (i < 2 && options(value).next().is_some());
        }
    }
    if names_more {
        let named: Vec<HeaderName> = HOP[..2]
            .iter()
            .flat_map(|c| headers.get_all(c).iter())
            .flat_map(options)
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (i, name) in HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// The header names a `Connection` value lists that are not removed
/// anyway (and not `close`).
fn options(value: &HeaderValue) -> impl Iterator<Item = &str> {
    // Most messages say just `keep-alive` or `close`: settled by comparing
    // bytes, without the text check, split and trim.
    let plain = [b"keep-alive".as_slice(), b"close"]
        .iter()
        .any(|word| value.as_bytes().eq_ignore_ascii_case(word));
    let text = if plain { "" } else { value.to_str().unwrap_or_default() };
    text.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty() && !is_hop_name(name))
}

/// `name`'s place in [`HOP`], if it is there, found by its text (every
/// header name is kept in lower case). The length picks the one or two
/// names it could be, so most headers cost one jump and no comparison.
fn hop_index(name: &HeaderName) -> Option<usize> {
    let text = name.as_str();
    let candidates: &[usize] = match text.len() {
        2 => &[5],
        7 => &[6, 8],
        10 => &[0, 2],
        16 => &[1],
        17 => &[7],
        18 => &[4],
        19 => &[3],
        _ => return None,
    };
    candidates.iter().copied().find(|&i| HOP_NAMES[i] == text)
}

/// Whether a `Connection` option needs no removal of its own: `close`, or
/// a header that goes anyway.
fn is_hop_name(option: &str) -> bool {
    option.eq_ignore_ascii_case("close") || HOP_NAMES.iter().any(|hop| option.eq_ignore_ascii_case(hop))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header map of `pairs`, each name given once.
    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|&(name, value)| (HeaderName::from_static(name), HeaderValue::from_static(value)))
            .collect()
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = headers(&[
            ("connection", "close, X-Secret"),
            ("x-secret", "1"),
            ("proxy-authorization", "Basic eA=="),
            ("proxy-connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn only_chunked_transfer_coding_passes() {
        let ok = http::StatusCode::OK;
        assert_eq!(
            unusable_response(ok, &headers(&[("transfer-encoding", "Chunked")])),
            None
        );
        let mut two = headers(&[("transfer-encoding", "gzip")]);
        two.append(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        assert_eq!(other_transfer_coding(&two).as_deref(), Some("gzip"));
        let why = unusable_response(ok, &headers(&[("transfer-encoding", "chunked, br , chunked")])).unwrap();
        assert_eq!(
            why,
            "used the transfer coding 'br', which modgate does not pass on (only chunked)"
        );
    }

    #[test]
    fn the_names_are_the_headers() {
        for (i, (name, text)) in HOP.iter().zip(HOP_NAMES).enumerate() {
            assert_eq!(name.as_str(), text);
            assert_eq!(hop_index(name), Some(i), "{name}");
        }
        assert_eq!(hop_index(&header::ACCEPT), None);
        assert_eq!(hop_index(&HeaderName::from_static("x-connection")), None);
    }

    #[test]
    fn headers_named_in_connection_go_whatever_their_case() {
        let mut h = headers(&[
            ("connection", "Keep-Alive, CLOSE, x-Hop"),
            ("proxy-connection", "x-other"),
            ("x-hop", "1"),
            ("x-other", "1"),
            ("keep-alive", "timeout=5"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(HeaderName::as_str).collect::<Vec<_>>(), ["accept"]);
    }

    #[test]
    fn each_hop_header_goes_even_alone() {
        for name in &HOP {
            let mut h = HeaderMap::new();
            h.insert(name.clone(), HeaderValue::from_static("x"));
            h.insert("accept", HeaderValue::from_static("*/*"));
            strip_hop_by_hop(&mut h);
            assert_eq!(h.len(), 1, "{name} stayed");
        }
        let mut h = HeaderMap::new();
        h.insert("proxy-connection", HeaderValue::from_static("X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["accept"]);
        let mut plain = HeaderMap::new();
        plain.insert("accept", HeaderValue::from_static("*/*"));
        plain.append("x-a", HeaderValue::from_static("1"));
        plain.append("x-a", HeaderValue::from_static("2"));
        let before = plain.clone();
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain, before);
    }
}
