//! Validating decoded module paths, versions and checksum-database names,
//! the way `golang.org/x/mod/module` does.

use crate::gomod::escape::{decode_case, quote};

// No length limits on module paths and versions: go has none (a 1217-byte
// module path is valid). The request-head limit bounds them; a store that
// cannot keep a name that long says "not here" (404), so go falls through.
/// The longest checksum-database name accepted, in bytes (a DNS name).
const MAX_DB_NAME: usize = 253;

/// Decodes and checks a module path.
pub(crate) fn module_path(encoded: &str) -> Result<String, String> {
    let bad = |why: String| format!("bad module path {}: {why}", quote(encoded));
    let module = decode_case(encoded).map_err(bad)?;
    check_module_path(&module).map_err(bad)?;
    Ok(module)
}

/// Decodes and checks a version.
pub(crate) fn version(encoded: &str) -> Result<String, String> {
    let bad = |why: String| format!("bad version {}: {why}", quote(encoded));
    let version = decode_case(encoded).map_err(bad)?;
    check_version(&version).map_err(bad)?;
    Ok(version)
}

/// Checks a decoded module path the way `golang.org/x/mod/module.CheckPath`
/// does (without its major-version suffix and Windows-name rules).
pub(crate) fn check_module_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty module path".into());
    }
    if path.starts_with('/') {
        return Err("leading slash".into());
    }
    if path.ends_with('/') {
        return Err("trailing slash".into());
    }
    if path.contains("//") {
        return Err("double slash".into());
    }
    for elem in path.split('/') {
        check_elem(elem)?;
    }
    let first = path.split('/').next().unwrap_or_default();
    if !first.contains('.') {
        return Err(format!("missing dot in first path element {}", quote(first)));
    }
    if first.starts_with('-') {
        return Err(format!("leading dash in first path element {}", quote(first)));
    }
    if let Some(c) = first
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'))
    {
        return Err(format!(
            "invalid character {c:?} in first path element {} (want a lower-case host name)",
            quote(first)
        ));
    }
    Ok(())
}

/// Checks one element of a module path.
pub(crate) fn check_elem(elem: &str) -> Result<(), String> {
    if elem == "." || elem == ".." {
        return Err(format!("path element {} is not allowed", quote(elem)));
    }
    if elem.starts_with('.') {
        return Err(format!("leading dot in path element {}", quote(elem)));
    }
    if elem.ends_with('.') {
        return Err(format!("trailing dot in path element {}", quote(elem)));
    }
    if let Some(c) = elem
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')))
    {
        return Err(format!("invalid character {c:?} in path element {}", quote(elem)));
    }
    Ok(())
}

/// Decodes and checks a version that must be a version, not a query (a
/// checksum-database lookup): semver's characters only.
pub(crate) fn resolved_version(encoded: &str) -> Result<String, String> {
    let version = version(encoded)?;
    match version
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '+' | '~')))
    {
        Some(c) => Err(format!(
            "bad version {}: invalid character {c:?} (a lookup names a version, not a query)",
            quote(encoded)
        )),
        None => Ok(version),
    }
}

/// Checks a decoded version the way `golang.org/x/mod/module.EscapeVersion`
/// does, since go checks a version so before it asks for one. Queries
/// such as `master` are allowed (go asks for `@v/master.info`), and so is a
/// branch name like `fix#12`, `a b` or `user@topic`: go's file-name
/// characters, ASCII only.
pub(crate) fn check_version(version: &str) -> Result<(), String> {
    if version.is_empty() {
        return Err("empty version".into());
    }
    if version.bytes().all(|b| b == b'.') {
        return Err("not a version".into());
    }
    if version.ends_with('.') {
        return Err("trailing dot".into());
    }
    if let Some(c) = version.chars().find(|&c| !version_char(c)) {
        return Err(format!("invalid character {c:?}"));
    }
    Ok(())
}

/// go's `fileNameOK` without `!` (which `EscapeVersion` refuses) and
/// without non-ASCII letters (which its escaping refuses).
fn version_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "#$%&()+,-.=@[]^_{}~ ".contains(c)
}

/// Checks a checksum-database name: a lower-case host name.
pub(crate) fn check_db_name(db: &str) -> Result<(), String> {
    let ok = !db.is_empty()
        && db.len() <= MAX_DB_NAME
        && !db.starts_with(['-', '.'])
        && !db.ends_with('.')
        && !db.contains("..")
        && db
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad checksum database name {}: want a lower-case host name like sum.golang.org",
            quote(db)
        ))
    }
}

/// Rejects characters go never sends in a module request path: NUL and
/// other control characters, and `\`. (A `%` left after percent-decoding
/// is a character of a version query, like `fix%1`; no module path or
/// checksum-database name has one.)
pub(crate) fn check_chars(path: &str) -> Result<(), String> {
    let Some(c) = path.chars().find(|&c| c.is_control() || c == '\\') else {
        return Ok(());
    };
    let what = match c {
        '\\' => "a backslash",
        _ => "a control character",
    };
    Err(format!("bad module request path {}: contains {what}", quote(path)))
}
