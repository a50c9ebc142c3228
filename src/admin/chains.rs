//! `/chains/SPKI.pem` and `/chains/SPKI.root.pem`: the chains saved in
//! `tls.intercepted_dir`, for the admin page's download links. Only names
//! of that exact form are served, so no other file can be reached.

use std::path::Path;

use http::{Response, StatusCode, header};

use crate::core::body::{Body, text};

/// The saved chain `name` (`<64 hex>.pem` or `<64 hex>.root.pem`) in `dir`.
pub async fn serve(dir: &Path, name: &str) -> Response<Body> {
    if !is_chain_name(name) {
        return text(
            StatusCode::NOT_FOUND,
            "modgate: no such chain; the names are SPKI-SHA256.pem or SPKI-SHA256.root.pem",
        );
    }
    match tokio::fs::read(dir.join(name)).await {
        Ok(pem) => {
            let mut resp = Response::new(crate::core::body::full(pem));
            let headers = resp.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/x-pem-file"),
            );
            if let Ok(v) = header::HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
                headers.insert(header::CONTENT_DISPOSITION, v);
            }
            resp
        }
        Err(e) => text(
            StatusCode::NOT_FOUND,
            &format!("modgate: chain {name} is not in {}: {e}", dir.display()),
        ),
    }
}

/// `<64 lowercase hex>.pem` or `<64 lowercase hex>.root.pem`.
fn is_chain_name(name: &str) -> bool {
    let spki = name
        .strip_suffix(".root.pem")
        .or_else(|| name.strip_suffix(".pem"))
        .unwrap_or_default();
    spki.len() == 64 && spki.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_chain_names() {
        let spki = "a".repeat(64);
        assert!(is_chain_name(&format!("{spki}.pem")));
        assert!(is_chain_name(&format!("{spki}.root.pem")));
        assert!(!is_chain_name("index.jsonl"));
        assert!(!is_chain_name(&format!("../{}.pem", "a".repeat(61))));
        assert!(!is_chain_name(&format!("{}.pem", "A".repeat(64))));
    }
}
