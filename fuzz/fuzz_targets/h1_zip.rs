//! The `h1:` hash of a module zip (`gomod::sumdb::dirhash::h1_of_zip`).
//!
//! Two halves:
//! - bytes as a zip: no panic, errors are one line;
//! - a zip built here from files the fuzzer names: when modgate hashes
//!   it, the hash is the one dirhash's definition gives (written out
//!   here with ring: base64 of SHA-256 over sorted
//!   `hex(SHA-256(content))  name\n` lines), and the order the files were
//!   written in does not matter.

#![no_main]

use std::io::{Cursor, Write};

use arbitrary::Arbitrary;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use modgate::gomod::sumdb::dirhash::h1_of_zip;
use ring::digest::{SHA256, digest};

const MODULE: &str = "example.test/fuzz";
const VERSION: &str = "v1.0.0";

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    Raw(&'a [u8]),
    Files {
        files: Vec<(String, &'a [u8])>,
        deflate: bool,
        reverse: bool,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Dirhash's definition, for files already named in the zip.
fn oracle(files: &[(String, &[u8])]) -> String {
    let mut lines: Vec<String> = files
        .iter()
        .map(|(name, content)| format!("{}  {name}\n", hex(digest(&SHA256, content).as_ref())))
        .collect();
    lines.sort_unstable_by(|a, b| a.split_once("  ").map(|x| x.1).cmp(&b.split_once("  ").map(|x| x.1)));
    let summary = digest(&SHA256, lines.concat().as_bytes());
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(summary.as_ref())
    )
}

fn build(files: &[(String, &[u8])], deflate: bool) -> Option<Vec<u8>> {
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, content) in files {
        out.start_file(name.as_str(), options).ok()?;
        out.write_all(content).ok()?;
    }
    Some(out.finish().ok()?.into_inner())
}

fuzz_target!(|input: Input<'_>| match input {
    Input::Raw(bytes) => {
        if let Err(e) = h1_of_zip(Cursor::new(bytes), MODULE, VERSION) {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
    Input::Files {
        files,
        deflate,
        reverse,
    } => {
        let mut files: Vec<(String, &[u8])> = files
            .into_iter()
            .take(16)
            .map(|(name, content)| (format!("{MODULE}@{VERSION}/{name}"), content))
            .collect();
        let Some(zip) = build(&files, deflate) else { return };
        let hashed = h1_of_zip(Cursor::new(&zip), MODULE, VERSION);
        if let Ok(h1) = &hashed {
            assert_eq!(h1, &oracle(&files), "h1 of a zip of {} files", files.len());
        }
        if reverse {
            files.reverse();
            if let Some(zip) = build(&files, deflate) {
                let again = h1_of_zip(Cursor::new(&zip), MODULE, VERSION);
                assert_eq!(again.is_ok(), hashed.is_ok());
                if let (Ok(a), Ok(b)) = (&again, &hashed) {
                    assert_eq!(a, b, "the order of writing changes the hash");
                }
            }
        }
    }
});
