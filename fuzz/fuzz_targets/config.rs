//! The TOML config into a validated `Config` (`Config::parse_in`).
//!
//! Properties: never a panic; every error is one line located as
//! `fuzz.toml:LINE:COL: message`, with LINE and COL inside the text (COL
//! counts characters, 1-based; the end of the text is a valid place); and
//! a config that validates is accepted again from the same text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use modgate::config::Config;

const SOURCE: &str = "fuzz.toml";

fuzz_target!(|text: &str| {
    // Relative paths resolve against a directory that is never read.
    let base = std::path::Path::new("/nonexistent/modgate-fuzz");
    match Config::parse_in(text, SOURCE, base) {
        Ok(config) => {
            let again = Config::parse_in(text, SOURCE, base).expect("the same text validates again");
            assert_eq!(again.digest, config.digest);
        }
        Err(e) => {
            let rendered = e.to_string();
            assert!(!e.message.contains('\n'), "one-line message: {rendered:?}");
            assert!(!e.message.trim().is_empty(), "a message: {rendered:?}");
            let place = e
                .location
                .strip_prefix(SOURCE)
                .and_then(|p| p.strip_prefix(':'))
                .unwrap_or_else(|| panic!("no line:col in {rendered:?}"));
            let (line, col) = place
                .split_once(':')
                .unwrap_or_else(|| panic!("no col in {rendered:?}"));
            let (line, col): (usize, usize) = (
                line.parse().unwrap_or_else(|_| panic!("line in {rendered:?}")),
                col.parse().unwrap_or_else(|_| panic!("col in {rendered:?}")),
            );
            let lines: Vec<&str> = text.split('\n').collect();
            assert!(
                line >= 1 && line <= lines.len(),
                "line {line} of {}: {rendered:?}",
                lines.len()
            );
            let width = lines[line - 1].chars().count();
            assert!(col >= 1 && col <= width + 1, "col {col} of {width}: {rendered:?}");
            assert!(rendered.starts_with(&format!("{SOURCE}:{line}:{col}: ")));
        }
    }
});
