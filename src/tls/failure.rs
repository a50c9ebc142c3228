//! Why a TLS handshake with an upstream failed, in words a user can act on.
//!
//! rustls reports a failure as a protocol fact ("received fatal alert:
//! ProtocolVersion"). The one failure users meet most that such a fact
//! does not explain is a server that speaks only TLS 1.0 or 1.1, which
//! rustls does not implement (DESIGN: "Old TLS"): that one is named.

use std::error::Error as StdError;

use rustls::{AlertDescription, PeerIncompatible};

/// What modgate says about a server that speaks only TLS 1.0 or 1.1.
pub const OLD_TLS: &str = "the server speaks only TLS 1.0 or 1.1, which modgate (rustls) does not \
     implement and current go refuses too; the server needs TLS 1.2 or later";

/// One line describing why a handshake failed: [`OLD_TLS`] when the server
/// refused every version rustls offers, else the error and its causes.
pub fn describe(err: &(dyn StdError + 'static)) -> String {
    if old_tls(err) {
        return OLD_TLS.to_owned();
    }
    let text = crate::core::error::chain(err);
    match rustls_errors(err).find_map(hint) {
        Some(hint) => format!("{text}; {hint}"),
        None => text,
    }
}

/// What a bare protocol fact means, for the two a user cannot act on
/// without it.
fn hint(err: &rustls::Error) -> Option<&'static str> {
    match err {
        rustls::Error::AlertReceived(AlertDescription::HandshakeFailure) => Some(
            "the server took none of what modgate offers (TLS 1.3, or TLS 1.2 with ECDHE and AES-GCM or ChaCha20-Poly1305): a server with only CBC or RSA key-exchange suites, or one that wants a client certificate, ends the handshake so",
        ),
        rustls::Error::InvalidMessage(rustls::InvalidMessage::HandshakePayloadTooLarge) => {
            Some("a handshake message (its certificate chain) is larger than the 64 KiB rustls accepts")
        }
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => Some(
            "what came back is not TLS: the server does not speak TLS on that port (plain HTTP, or another protocol)",
        ),
        _ => None,
    }
}

/// The rustls errors among `err` and its causes (inside io::Errors too).
fn rustls_errors<'a>(err: &'a (dyn StdError + 'static)) -> impl Iterator<Item = &'a rustls::Error> {
    crate::core::error::causes(err).flat_map(|cause| {
        let inner = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|e| e as &(dyn StdError + 'static));
        std::iter::once(cause)
            .chain(inner)
            .filter_map(|e| e.downcast_ref::<rustls::Error>())
    })
}

/// Whether `err` (or one of its causes) says the server and rustls share no
/// protocol version: the server's `protocol_version` alert, or its
/// ServerHello choosing TLS 1.0/1.1, which rustls refuses.
pub fn old_tls(err: &(dyn StdError + 'static)) -> bool {
    // An io::Error's `source` skips the error it wraps, so each io::Error
    // met is looked into as well.
    crate::core::error::causes(err).any(|cause| {
        let inner = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|e| e as &(dyn StdError + 'static));
        std::iter::once(cause).chain(inner).any(version_refused)
    })
}

/// Whether this one error is rustls saying no version is shared.
fn version_refused(err: &(dyn StdError + 'static)) -> bool {
    matches!(
        err.downcast_ref::<rustls::Error>(),
        Some(
            rustls::Error::AlertReceived(AlertDescription::ProtocolVersion)
                | rustls::Error::PeerIncompatible(PeerIncompatible::ServerDoesNotSupportTls12Or13)
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tls::testing::io;

    #[test]
    fn a_version_refusal_either_way_is_named_old_tls() {
        for e in [
            rustls::Error::AlertReceived(AlertDescription::ProtocolVersion),
            rustls::Error::PeerIncompatible(PeerIncompatible::ServerDoesNotSupportTls12Or13),
        ] {
            assert_eq!(describe(&io(e)), OLD_TLS);
        }
    }

    #[test]
    fn other_failures_keep_their_own_words() {
        let e = io(rustls::Error::AlertReceived(AlertDescription::HandshakeFailure));
        assert!(!old_tls(&e));
        assert!(describe(&e).contains("HandshakeFailure"), "{}", describe(&e));
        assert!(
            describe(&e).contains("only CBC or RSA key-exchange suites"),
            "{}",
            describe(&e)
        );
        let big = io(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::HandshakePayloadTooLarge,
        ));
        assert!(describe(&big).contains("larger than the 64 KiB"), "{}", describe(&big));
        let plain = io(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        ));
        assert!(
            describe(&plain).contains("the server does not speak TLS on that port"),
            "{}",
            describe(&plain)
        );
        let other = io(rustls::Error::AlertReceived(AlertDescription::UnknownCA));
        assert!(!describe(&other).contains("; "), "{}", describe(&other));
    }
}
