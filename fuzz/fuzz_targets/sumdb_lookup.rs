//! A checksum database's answer to `lookup/M@V`
//! (`gomod::sumdb::record::parse_lookup`) and the go.sum lines of its
//! record (`module_hashes`).
//!
//! Properties: no panic; errors are one line; a parsed answer's parts are
//! the answer's own bytes, in order (`id\nrecord\nnote`); a record that
//! yields hashes yields them for the module version asked for, and the
//! same hashes written back as a record parse to the same.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use modgate::gomod::sumdb::record::{MAX_LOOKUP_SIZE, module_hashes, parse_lookup};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    answer: &'a [u8],
    module: &'a str,
    version: &'a str,
}

fuzz_target!(|input: Input<'_>| {
    // modgate asks only for module versions it has already checked (no
    // control characters); errors quote the record's text, not the asking.
    if (input.module.chars().chain(input.version.chars())).any(char::is_control) {
        return;
    }
    let lookup = match parse_lookup(input.answer) {
        Ok(lookup) => lookup,
        Err(e) => {
            assert!(!e.to_string().contains('\n'), "{e}");
            return;
        }
    };
    assert!(input.answer.len() <= MAX_LOOKUP_SIZE);
    let rebuilt = [
        lookup.id.to_string().as_bytes(),
        b"\n",
        lookup.record.as_bytes(),
        b"\n",
        lookup.note,
    ]
    .concat();
    assert_eq!(rebuilt, input.answer, "the parts are the answer");
    assert!(lookup.record.ends_with('\n'));
    match module_hashes(lookup.record, input.module, input.version) {
        Ok(hashes) => {
            assert!(hashes.zip_h1.starts_with("h1:") && hashes.mod_h1.starts_with("h1:"));
            let record = format!(
                "{m} {v} {}\n{m} {v}/go.mod {}\n",
                hashes.zip_h1,
                hashes.mod_h1,
                m = input.module,
                v = input.version
            );
            assert_eq!(record, lookup.record, "only the canonical record yields hashes");
            assert_eq!(module_hashes(&record, input.module, input.version), Ok(hashes));
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
    }
});
