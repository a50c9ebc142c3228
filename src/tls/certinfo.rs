//! One certificate described for people: names, validity, SANs, key and
//! signature algorithm, fingerprints. Names are read whatever string type
//! they are encoded in ([`attribute_text`]).

use std::sync::OnceLock;

use rustls::pki_types::CertificateDer;
use serde::Serialize;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::oid_registry::{Oid, OidRegistry};
use x509_parser::prelude::*;

/// Hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// One certificate, described.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// Start of validity, RFC 3339.
    pub not_before: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// Whole days until `not_after` (negative when expired).
    pub days_left: i64,
    /// DNS names and IP addresses in the SAN extension.
    pub sans: Vec<String>,
    /// Key type and size, e.g. `ECDSA P-256` or `RSA 2048`.
    pub key: String,
    /// Signature algorithm.
    pub signature: String,
    /// SHA-256 of the DER certificate, hex.
    pub sha256: String,
    /// SHA-256 of the SubjectPublicKeyInfo, hex.
    pub spki_sha256: String,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
}

pub(crate) fn info(cert: &X509Certificate<'_>, der: &CertificateDer<'_>) -> CertInfo {
    let validity = cert.validity();
    let rfc3339 = |t: &ASN1Time| {
        t.to_datetime()
            .format(&::time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| t.to_string())
    };
    let now = ::time::OffsetDateTime::now_utc().unix_timestamp();
    let days_left = (validity.not_after.timestamp() - now).div_euclid(86_400);
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push((*d).to_owned()),
                GeneralName::IPAddress(ip) => sans.push(ip_text(ip)),
                _ => {}
            }
        }
    }
    CertInfo {
        subject: dn_text(cert.subject()),
        issuer: dn_text(cert.issuer()),
        serial: cert.raw_serial_as_string().replace(':', ""),
        not_before: rfc3339(&validity.not_before),
        not_after: rfc3339(&validity.not_after),
        days_left,
        sans,
        key: key_text(cert),
        signature: signature_text(cert),
        sha256: sha256_hex(der),
        spki_sha256: sha256_hex(cert.public_key().raw),
        is_ca: cert.is_ca(),
    }
}

/// The text of a name attribute, whatever string type encodes it:
/// UTF8String, PrintableString, IA5String and the like as they are;
/// BMPString as UTF-16BE and UniversalString as UTF-32BE (older Windows
/// and appliance CAs write their names so); T61String (TeletexString) as
/// Latin-1, as go reads it. `None` for a value that is not a string or
/// does not decode. (x509-parser's `as_str` reads only the first kind.)
pub fn attribute_text(attr: &AttributeTypeAndValue<'_>) -> Option<String> {
    let value = attr.attr_value();
    string_value(value.tag(), value.data)
}

/// A string value's text, by its ASN.1 tag.
fn string_value(tag: Tag, data: &[u8]) -> Option<String> {
    match tag {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString
        | Tag::GeneralString
        | Tag::GraphicString
        | Tag::VideotexString
        | Tag::ObjectDescriptor => std::str::from_utf8(data).ok().map(str::to_owned),
        Tag::BmpString if data.len() % 2 == 0 => {
            let units: Vec<u16> = data.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).ok()
        }
        Tag::UniversalString if data.len() % 4 == 0 => data
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        Tag::T61String => Some(data.iter().map(|&b| char::from(b)).collect()),
        _ => None,
    }
}

/// A DN as x509-parser writes one (`CN=a, O=b`; ` + ` inside a
/// multi-valued RDN), with each value read by [`attribute_text`]; a value
/// that is not a string is shown as upper-case hex, as x509-parser does.
pub fn dn_text(name: &X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            let attrs: Vec<String> = rdn
                .iter()
                .map(|attr| {
                    let key = x509_parser::objects::oid2abbrev(attr.attr_type(), registry)
                        .map_or_else(|_| format!("{:?}", attr.attr_type()), str::to_owned);
                    let value = attribute_text(attr).unwrap_or_else(|| hex(attr.attr_value().data).to_uppercase());
                    format!("{key}={value}")
                })
                .collect();
            attrs.join(" + ")
        })
        .collect();
    rdns.join(", ")
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            std::net::Ipv6Addr::from(a).to_string()
        }
        _ => hex(bytes),
    }
}

/// Names of the OIDs certificates use: signature and key algorithms, curves.
fn registry() -> &'static OidRegistry<'static> {
    static REGISTRY: OnceLock<OidRegistry<'static>> = OnceLock::new();
    REGISTRY.get_or_init(|| OidRegistry::default().with_all_crypto())
}

/// The registry's short name for `oid`, or its dotted form.
fn oid_name(oid: &Oid<'_>) -> String {
    registry()
        .get(oid)
        .map_or_else(|| oid.to_id_string(), |entry| entry.sn().to_owned())
}

fn key_text(cert: &X509Certificate<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(point)) => {
            // The NIST curves go by "P-256" etc. in the registry's
            // description; others by their short name.
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| match registry().get(&oid) {
                    Some(entry) if entry.description().starts_with("P-") => {
                        entry.description().split(' ').next().unwrap_or_default().to_owned()
                    }
                    _ => oid_name(&oid),
                })
                .unwrap_or_else(|| format!("{} bits", point.key_size()));
            format!("ECDSA {curve}")
        }
        Ok(_) if spki.algorithm.algorithm == x509_parser::oid_registry::OID_SIG_ED25519 => "Ed25519".into(),
        Ok(_) => oid_name(&spki.algorithm.algorithm),
        Err(_) => "unparsable key".into(),
    }
}

fn signature_text(cert: &X509Certificate<'_>) -> String {
    let oid = &cert.signature_algorithm.algorithm;
    if *oid == x509_parser::oid_registry::OID_SIG_ED25519 {
        return "Ed25519".into();
    }
    if *oid == x509_parser::oid_registry::OID_PKCS1_RSASSAPSS {
        return "RSASSA-PSS".into();
    }
    oid_name(oid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_type_of_a_name_is_read() {
        assert_eq!(
            string_value(Tag::Utf8String, "Zürich".as_bytes()).as_deref(),
            Some("Zürich")
        );
        // BMPString: UTF-16BE, surrogate pairs included.
        let utf16: Vec<u8> = "Zürich \u{1f512}".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(
            string_value(Tag::BmpString, &utf16).as_deref(),
            Some("Zürich \u{1f512}")
        );
        assert_eq!(string_value(Tag::BmpString, &[0, 0x41, 0]), None, "odd length");
        // T61String: Latin-1.
        assert_eq!(
            string_value(Tag::T61String, b"Soci\xe9t\xe9").as_deref(),
            Some("Société")
        );
        // UniversalString: UTF-32BE.
        let utf32: Vec<u8> = "Zürich".chars().flat_map(|c| u32::from(c).to_be_bytes()).collect();
        assert_eq!(string_value(Tag::UniversalString, &utf32).as_deref(), Some("Zürich"));
        assert_eq!(string_value(Tag::UniversalString, &[0, 0x11, 0, 0]), None, "not a char");
        assert_eq!(string_value(Tag::Integer, &[1]), None);
    }
}
