//! Test certificates for the TLS modules' own tests: CAs and leaves made
//! with rcgen, one way.

use rustls::pki_types::CertificateDer;

/// An rcgen issuer with its key.
pub type Issuer = rcgen::Issuer<'static, rcgen::KeyPair>;

/// The parameters of a CA named `cn`, valid from `days.0` to `days.1` days
/// from now.
pub fn ca_params(cn: &str, days: (i64, i64)) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let now = ::time::OffsetDateTime::now_utc();
    params.not_before = now + ::time::Duration::days(days.0);
    params.not_after = now + ::time::Duration::days(days.1);
    params
}

/// A CA made from `params` with the key `key`: self-signed, or
/// cross-signed by `by`.
pub fn ca_from(
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    by: Option<&Issuer>,
) -> (CertificateDer<'static>, Issuer) {
    let der = match by {
        Some(issuer) => params.signed_by(&key, issuer).unwrap().der().clone(),
        None => params.self_signed(&key).unwrap().der().clone(),
    };
    (der, rcgen::Issuer::new(params, key))
}

/// A CA named `cn` with the key `key`, valid from `days.0` to `days.1` days
/// from now: self-signed, or cross-signed by `by`.
pub fn ca(cn: &str, key: rcgen::KeyPair, days: (i64, i64), by: Option<&Issuer>) -> (CertificateDer<'static>, Issuer) {
    ca_from(ca_params(cn, days), key, by)
}

/// A leaf for `name` that `issuer` signs, valid now.
pub fn leaf_by(name: &str, issuer: &Issuer) -> CertificateDer<'static> {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .signed_by(&key, issuer)
        .unwrap()
        .der()
        .clone()
}

/// A rustls error as an I/O error, as a TLS stream reports one.
pub fn io(e: rustls::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}
