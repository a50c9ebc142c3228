//! The passive TLS 1.2 Certificate parser (`tls::probe::ServerFlight`),
//! fed the server's first flight as relayed chunks.
//!
//! Properties: no panic; bounded (never keeps more than `MAX_FLIGHT`
//! bytes); within that bound the result does not depend on how the bytes
//! were split; a result, once reached, never changes; the certificates it
//! returns hold no more bytes than were fed.

#![no_main]

use libfuzzer_sys::fuzz_target;
use modgate::tls::probe::{Flight, MAX_FLIGHT, ServerFlight};

fn feed_in(bytes: &[u8], step: usize) -> Option<Flight> {
    let mut parser = ServerFlight::new();
    let mut result = None;
    for chunk in bytes.chunks(step) {
        let now = parser.feed(chunk).cloned();
        if let Some(before) = &result {
            assert_eq!(now.as_ref(), Some(before), "a result never changes");
        }
        result = now;
    }
    result
}

fuzz_target!(|input: &[u8]| {
    let Some((&step, bytes)) = input.split_first() else {
        return;
    };
    let whole = feed_in(bytes, bytes.len().max(1));
    let split = feed_in(bytes, usize::from(step).max(1));
    // Past the bound, where the flight is cut depends on the chunks.
    if bytes.len() <= MAX_FLIGHT {
        assert_eq!(whole, split, "the split changes the result");
    }
    for result in [&whole, &split] {
        if let Some(Flight::Chain(chain)) = result {
            assert!(!chain.is_empty());
            let total: usize = chain.iter().map(|c| c.len()).sum();
            assert!(
                total <= bytes.len() && total <= MAX_FLIGHT,
                "{total} bytes of certificates"
            );
        }
    }
});
