//! PEM in and out: reading a certificate chain someone pasted (parsing is
//! rustls-pki-types'), and writing DER certificates as PEM (the `pem` crate,
//! which rcgen already brings; pki-types only decodes).

use std::io::Read as _;
use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{self, SectionKind};

/// PEM for a DER certificate, with Unix line endings (as openssl writes
/// it), so files modgate writes hold no carriage returns.
pub fn to_pem(der: &[u8]) -> String {
    let lf = ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF);
    ::pem::encode_config(&::pem::Pem::new("CERTIFICATE", der.to_vec()), lf)
}

/// The most bytes of a chain file read. A chain is a few kilobytes; this
/// leaves room for `openssl s_client` output around it.
pub const MAX_CHAIN_FILE: u64 = 1024 * 1024;
/// The most certificates in a chain read from a file.
pub const MAX_CHAIN_CERTS: usize = 20;

/// Reads a PEM chain, leaf first. Text around the blocks (as in `openssl
/// s_client -showcerts` output) and non-certificate blocks are ignored.
/// At most [`MAX_CHAIN_FILE`] bytes and [`MAX_CHAIN_CERTS`] certificates.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let name = path.display();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CHAIN_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("{name}: cannot read: {e}"))?;
    parse_chain(&name.to_string(), &bytes)
}

/// [`read_chain`] on bytes already read, named `name` in messages.
pub fn parse_chain(name: &str, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    if bytes.len() as u64 > MAX_CHAIN_FILE {
        return Err(format!(
            "{name}: larger than 1 MiB; a certificate chain is a few kilobytes, so give the PEM of one chain"
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(format!("{name}: the file is empty"));
    }
    let text = String::from_utf8_lossy(bytes);
    if !text.contains("-----BEGIN") {
        if bytes.first() == Some(&0x30) {
            return Err(format!(
                "{name}: this looks like DER, not PEM; convert it with: openssl x509 -inform der -in {name} -out chain.pem"
            ));
        }
        return Err(format!(
            "{name}: no PEM certificates found (expected -----BEGIN CERTIFICATE----- blocks, e.g. from openssl s_client -showcerts)"
        ));
    }
    let begun = text.matches("-----BEGIN CERTIFICATE-----").count();
    if begun > MAX_CHAIN_CERTS {
        return Err(format!(
            "{name}: {begun} certificates; a chain has at most {MAX_CHAIN_CERTS}, so give the PEM of one chain"
        ));
    }
    // A byte-order mark (Windows exports) or an indented paste hides the
    // `-----BEGIN` from a parser that wants it at a line's start: each line
    // is read without the space around it.
    let lines: String = text
        .lines()
        .map(|line| line.trim_start_matches('\u{feff}').trim())
        .fold(String::with_capacity(text.len()), |mut out, line| {
            out.push_str(line);
            out.push('\n');
            out
        });
    let mut reader = lines.as_bytes();
    let mut certs = Vec::new();
    let mut other = Vec::new();
    loop {
        match pem::from_buf(&mut reader) {
            Ok(Some((SectionKind::Certificate, der))) => certs.push(CertificateDer::from(der)),
            Ok(Some((kind, _))) => other.push(format!("{kind:?}")),
            Ok(None) => break,
            Err(pem::Error::MissingSectionEnd { .. }) => {
                return Err(format!(
                    "{name}: a PEM block begins but never ends; the file looks truncated"
                ));
            }
            Err(e) => return Err(format!("{name}: malformed PEM: {e}")),
        }
    }
    if certs.len() < begun {
        return Err(format!(
            "{name}: {begun} certificate blocks begin but only {} are complete; the file looks truncated",
            certs.len()
        ));
    }
    if certs.is_empty() {
        let found = if other.is_empty() {
            "only unrecognised blocks".to_owned()
        } else {
            other.join(", ")
        };
        return Err(format!("{name}: PEM blocks found ({found}), but no CERTIFICATE"));
    }
    Ok(certs)
}
