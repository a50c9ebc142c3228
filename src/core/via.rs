//! The `Via` entries modgate adds (RFC 9110 §7.6.3), and loop detection
//! through them.
//!
//! A response gets `1.1 modgate` (`2 modgate` over HTTP/2). A request
//! modgate sends on gets `1.1 modgate (ID)`, where ID is random per
//! process: a request that comes back carrying this process's entry went
//! round a loop that addresses cannot show (a parent, mirror or `[hosts]`
//! entry whose name leads back to modgate), and is refused. Another
//! modgate in the chain (a team's modgate whose parent is the company's)
//! has its own ID, so a chain is not a loop.

use std::sync::OnceLock;

use http::header::{self, HeaderMap, HeaderValue};

/// This process's `Via` entries for the requests it sends on, by version.
struct Sent {
    token: String,
    http10: HeaderValue,
    http11: HeaderValue,
    http2: HeaderValue,
    http3: HeaderValue,
}

fn sent_entries() -> &'static Sent {
    static SENT: OnceLock<Sent> = OnceLock::new();
    SENT.get_or_init(|| {
        let mut id = [0u8; 4];
        // Without a random source: the start time's nanoseconds mixed with
        // the pid (containers' modgates are all pid 1).
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            id = (nanos ^ std::process::id().rotate_left(16)).to_be_bytes();
        }
        let token = format!(
            "modgate ({})",
            id.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let entry = |protocol: &str| {
            HeaderValue::from_str(&format!("{protocol} {token}")).unwrap_or(HeaderValue::from_static("1.1 modgate"))
        };
        Sent {
            http10: entry("1.0"),
            http11: entry("1.1"),
            http2: entry("2"),
            http3: entry("3"),
            token,
        }
    })
}

/// The `Via` entry of a request modgate received over `version` and sends
/// on: it names this process.
pub fn sent(version: http::Version) -> HeaderValue {
    let sent = sent_entries();
    match version {
        http::Version::HTTP_2 => sent.http2.clone(),
        http::Version::HTTP_3 => sent.http3.clone(),
        http::Version::HTTP_10 => sent.http10.clone(),
        _ => sent.http11.clone(),
    }
}

/// The `Via` entry of a response modgate received over `version`:
/// `1.1 modgate`, or `2 modgate` for HTTP/2. The values are constants:
/// `from_static` checks its bytes when it runs, and a `const` runs it
/// once, at compile time.
pub fn received(version: http::Version) -> HeaderValue {
    const VIA_2: HeaderValue = HeaderValue::from_static("2 modgate");
    const VIA_3: HeaderValue = HeaderValue::from_static("3 modgate");
    const VIA_10: HeaderValue = HeaderValue::from_static("1.0 modgate");
    const VIA_11: HeaderValue = HeaderValue::from_static("1.1 modgate");
    match version {
        http::Version::HTTP_2 => VIA_2,
        http::Version::HTTP_3 => VIA_3,
        http::Version::HTTP_10 => VIA_10,
        _ => VIA_11,
    }
}

/// Whether a request with `headers` already went through this process:
/// one of its `Via` entries is this process's.
pub fn came_through_here(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::VIA)
        .iter()
        .any(|value| names_this_process(value.as_bytes()))
}

/// Whether a `Via` value holds this process's entry.
pub fn names_this_process(value: &[u8]) -> bool {
    let token = sent_entries().token.as_bytes();
    value.windows(token.len()).any(|w| w == token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_carrying_this_process_entry_came_through_here_and_another_modgates_did_not() {
        let ours = sent(http::Version::HTTP_11);
        let text = ours.to_str().unwrap();
        assert!(text.starts_with("1.1 modgate (") && text.ends_with(')'), "{text}");
        assert_eq!(text.len(), "1.1 modgate (12345678)".len());
        assert_eq!(
            sent(http::Version::HTTP_2).to_str().unwrap(),
            text.replacen("1.1", "2", 1)
        );
        let mut headers = HeaderMap::new();
        assert!(!came_through_here(&headers));
        headers.append(header::VIA, HeaderValue::from_static("1.1 modgate (00000000)"));
        headers.append(header::VIA, HeaderValue::from_static("1.1 modgate, 1.1 squid"));
        assert!(!came_through_here(&headers));
        // Anywhere in any entry, as a parent adds its own after it.
        let chained = format!("{text}, 1.1 corp-squid (squid/6.6)");
        headers.append(header::VIA, HeaderValue::from_str(&chained).unwrap());
        assert!(came_through_here(&headers));
        assert_eq!(received(http::Version::HTTP_2), "2 modgate");
        assert_eq!(received(http::Version::HTTP_11), "1.1 modgate");
    }
}
