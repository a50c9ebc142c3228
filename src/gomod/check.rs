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
        return Err(format!("missing dot in first path element {first:?}"));
    }
    if first.starts_with('-') {
        return Err(format!("leading dash in first path element {first:?}"));
    }
    if let Some(c) = first
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'))
    {
        return Err(format!(
            "invalid character {c:?} in first path element {first:?} (want a lower-case host name)"
        ));
    }
    Ok(())
}

/// Checks one element of a module path.
pub(crate) fn check_elem(elem: &str) -> Result<(), String> {
    if elem == "." || elem == ".." {
        return Err(format!("path element {elem:?} is not allowed"));
    }
    if elem.starts_with('.') {
        return Err(format!("leading dot in path element {elem:?}"));
    }
    if elem.ends_with('.') {
        return Err(format!("trailing dot in path element {elem:?}"));
    }
    if let Some(c) = elem
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')))
    {
        return Err(format!("invalid character {c:?} in path element {elem:?}"));
    }
    Ok(())
}

/// Checks a decoded version. Queries such as `master` are allowed: go asks
/// for `@v/master.info`.
pub(crate) fn check_version(version: &str) -> Result<(), String> {
    if version.is_empty() {
        return Err("empty version".into());
    }
    if version == "." || version == ".." {
        return Err("not a version".into());
    }
    if let Some(c) = version
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '+' | '~')))
    {
        return Err(format!("invalid character {c:?}"));
    }
    Ok(())
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
/// other control characters, `\`, and `%` (go does not percent-encode these
/// paths).
pub(crate) fn check_chars(path: &str) -> Result<(), String> {
    let Some(c) = path.chars().find(|&c| c.is_control() || c == '\\' || c == '%') else {
        return Ok(());
    };
    let what = match c {
        '\\' => "a backslash",
        '%' => "'%' after percent-decoding",
        _ => "a control character",
    };
    Err(format!("bad module request path {}: contains {what}", quote(path)))
}
