//! `modgate inspect --file` input: PEM chains, DER given by mistake, and
//! `openssl s_client -showcerts` output, through the same steps as the
//! command (`tls::pem::parse_chain`, then `tls::chain::analyze` with the
//! public and system roots) up to the report it prints as JSON.
//!
//! The first byte chooses the form: `D` takes the rest as one DER
//! certificate and wraps it in PEM (so the fuzzer mutates DER, not
//! base64); anything else is the file as written.
//!
//! Properties: no panic; errors are one line naming the file; a chain has
//! 1 to `MAX_CHAIN_CERTS` certificates; a report lists every certificate.

#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use modgate::config::PublicRoots;
use modgate::tls::chain::analyze;
use modgate::tls::pem::{MAX_CHAIN_CERTS, parse_chain};
use modgate::tls::trust::Trust;

const NAME: &str = "chain.pem";

fn trust() -> &'static Trust {
    static TRUST: OnceLock<Trust> = OnceLock::new();
    TRUST.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Trust::load(&PublicRoots::Webpki, &[]).expect("the public and system roots load")
    })
}

fuzz_target!(|input: &[u8]| {
    let file = match input.split_first() {
        Some((b'D', der)) => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            let mut pem = String::from("depth=0 CN = fuzz\n-----BEGIN CERTIFICATE-----\n");
            for line in b64.as_bytes().chunks(64) {
                pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
                pem.push('\n');
            }
            pem.push_str("-----END CERTIFICATE-----\n");
            pem.into_bytes()
        }
        _ => input.to_vec(),
    };
    let chain = match parse_chain(NAME, &file) {
        Ok(chain) => chain,
        Err(e) => {
            assert!(e.starts_with(NAME) && !e.contains('\n'), "{e:?}");
            return;
        }
    };
    assert!(
        !chain.is_empty() && chain.len() <= MAX_CHAIN_CERTS,
        "{} certificates",
        chain.len()
    );
    match analyze(&trust().verifiers, &chain, None) {
        Ok(report) => {
            assert_eq!(report.certs.len(), chain.len());
            assert!(report.linked >= 1 && report.linked <= chain.len());
            let json = serde_json::to_string(&report).expect("a report serialises");
            assert!(!json.contains('\n'));
        }
        Err(e) => assert!(!e.contains('\n'), "{e:?}"),
    }
});
