//! `Proxy-Authorization: Basic <base64(user:password)>` (RFC 7617), read
//! strictly: anything else is a malformed header, said so in one line.

use base64::Engine as _;

/// Credentials a client sent.
pub struct Credentials {
    /// The user name (UTF-8, no `:`).
    pub user: String,
    /// The password, as bytes.
    pub password: Vec<u8>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.user)
    }
}

/// The longest header value read.
const MAX_VALUE: usize = 4096;

/// Parses a `Basic` credentials header value.
pub fn parse(value: &[u8]) -> Result<Credentials, String> {
    if value.len() > MAX_VALUE {
        return Err("the header is too long".into());
    }
    let text = std::str::from_utf8(value).map_err(|_| "the header is not text".to_owned())?;
    let (scheme, token) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(format!(
            "the scheme is '{}', not Basic",
            crate::core::escape::escape(scheme)
        ));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| "the Basic token is not base64".to_owned())?;
    let colon = decoded
        .iter()
        .position(|b| *b == b':')
        .ok_or_else(|| "the Basic token has no ':' between user and password".to_owned())?;
    let user = String::from_utf8(decoded[..colon].to_vec()).map_err(|_| "the user name is not UTF-8".to_owned())?;
    if user.is_empty() {
        return Err("the user name is empty".into());
    }
    Ok(Credentials {
        user,
        password: decoded[colon + 1..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> Vec<u8> {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s)).into_bytes()
    }

    #[test]
    fn basic_credentials_are_split_at_the_first_colon() {
        let c = parse(&basic("alice:pa:ss")).unwrap();
        assert_eq!((c.user.as_str(), c.password.as_slice()), ("alice", &b"pa:ss"[..]));
        let c = parse(b"basic YWxpY2U6").unwrap();
        assert_eq!((c.user.as_str(), c.password.len()), ("alice", 0));
        assert!(!format!("{c:?}").contains("pa"));
    }

    #[test]
    fn anything_else_is_malformed() {
        assert!(parse(b"Bearer abc").unwrap_err().contains("not Basic"));
        assert!(parse(b"Basic !!!").unwrap_err().contains("base64"));
        assert!(parse(&basic("nocolon")).unwrap_err().contains("no ':'"));
        assert!(parse(&basic(":pw")).unwrap_err().contains("empty"));
        assert!(parse(b"Basic").unwrap_err().contains("base64") || parse(b"Basic").is_err());
        assert!(parse(&vec![b'a'; 5000]).unwrap_err().contains("too long"));
    }
}
