//! The ClientHello peek: `tls::probe::client_sni` (what a relayed tunnel's
//! watcher reads) and the ClientHello that an intercepted tunnel's
//! acceptor hands modgate (SNI, compared with the tunnel's host; ALPN).
//!
//! Properties: no panic; the peek gives the same SNI whether the bytes
//! come at once or grow a chunk at a time (the tap re-reads a growing
//! buffer); an SNI found is what the acceptor sees, and the host check
//! the interceptor makes on it never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use modgate::core::host::Host;
use modgate::tls::probe::client_sni;

/// What rustls' acceptor sees in `bytes`: the SNI and the ALPN protocols.
fn accepted(bytes: &[u8]) -> Option<(Option<String>, Vec<Vec<u8>>)> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut reader = bytes;
    acceptor.read_tls(&mut reader).ok()?;
    let accepted = acceptor.accept().ok()??;
    let hello = accepted.client_hello();
    let alpn = hello
        .alpn()
        .map(|a| a.map(<[u8]>::to_vec).collect())
        .unwrap_or_default();
    Some((hello.server_name().map(str::to_owned), alpn))
}

fuzz_target!(|input: &[u8]| {
    let Some((&step, bytes)) = input.split_first() else {
        return;
    };
    let whole = client_sni(bytes);
    if let Some(sni) = &whole {
        let (seen, alpn) = accepted(bytes).expect("the acceptor sees the hello the peek saw");
        assert_eq!(seen.as_deref(), Some(sni.as_str()));
        assert!(alpn.iter().all(|p| !p.is_empty()), "ALPN protocols are not empty");
        let _ = Host::parse(sni);
    }
    // The tap: the buffer grows by `step` bytes; the first SNI seen is the
    // one the whole buffer gives.
    let step = usize::from(step % 64) + 1;
    let mut end = 0;
    while end < bytes.len() {
        end = (end + step).min(bytes.len());
        if let Some(sni) = client_sni(&bytes[..end]) {
            assert_eq!(Some(&sni), whole.as_ref(), "a prefix of {end} bytes names another SNI");
            break;
        }
    }
});
