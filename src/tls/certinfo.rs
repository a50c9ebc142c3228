//! One certificate described for people: names, validity, SANs, key and
//! signature algorithm, fingerprints.

use std::sync::OnceLock;

use rustls::pki_types::CertificateDer;
use serde::Serialize;
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
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
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
