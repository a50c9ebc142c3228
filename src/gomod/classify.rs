//! Classifying module requests: GOPROXY paths (`$module/@v/list`, `.info`,
//! `.mod`, `.zip`, `$module/@latest`) and checksum-database paths.
//!
//! Paths come in three shapes:
//!
//! - not a module request at all (`/`, `/favicon.ico`): `Ok(None)`;
//! - a module request: `Ok(Some(..))`, with module paths and versions decoded
//!   (`/github.com/!azure/x/@v/v1.0.0.info` names `github.com/Azure/x`);
//! - shaped like a module request but invalid (`/a.com//b/@v/list`): an error
//!   message of one line, which quotes the offending text escaped and cut short.
//!
//! The code is under 200 lines; the rest of the file is its table of cases.

use crate::gomod::check::{check_chars, check_db_name, module_path, resolved_version, version};
use crate::gomod::escape::quote;
use crate::gomod::request::{ModuleRequest, SumdbKind};

/// Classifies a GOPROXY-protocol path relative to the proxy base, e.g.
/// "/github.com/!azure/foo/@v/v1.2.3.info" or
/// "/sumdb/sum.golang.org/lookup/golang.org/x/mod@v0.20.0".
///
/// Ok(None): the path is not shaped like a module request at all (e.g. "/",
/// "/favicon.ico", "/index.html").
/// Err(message): it is shaped like one but invalid (bad case-encoding, bad
/// module path, bad version, unknown @v file suffix, bad sumdb path); the
/// message is one line naming the problem.
pub fn classify_proxy_path(path: &str) -> Result<Option<ModuleRequest>, String> {
    let p = path.strip_prefix('/').unwrap_or(path);

    // sumdb/<db>/<endpoint>. No module path starts with "sumdb/": its first
    // element would need a dot.
    if let Some(rest) = p.strip_prefix("sumdb/") {
        check_chars(path)?;
        let Some((db, endpoint)) = rest.split_once('/') else {
            return Err(format!(
                "bad checksum database path {}: missing endpoint after the database name",
                quote(path)
            ));
        };
        check_db_name(db)?;
        let kind = match endpoint {
            "supported" => SumdbKind::Supported,
            _ => sumdb_endpoint(endpoint)?.ok_or_else(|| {
                format!(
                    "bad checksum database path {}: unknown endpoint {} \
                     (want supported, latest, lookup/M@V or tile/...)",
                    quote(path),
                    quote(endpoint)
                )
            })?,
        };
        return Ok(Some(ModuleRequest::Sumdb {
            db: db.to_owned(),
            kind,
        }));
    }

    // Every other module request has an `@` (`@v/`, `@latest`); most paths
    // that are not one have none, and are settled by one byte search.
    if !p.contains('@') {
        return Ok(None);
    }

    // $module/@v/$file, split at the last "/@v/".
    let at_v = match last_at_v(p) {
        Some(i) => Some((&p[..i], &p[i + "/@v/".len()..])),
        None => p.strip_prefix("@v/").map(|file| ("", file)),
    };
    if let Some((module, file)) = at_v {
        check_chars(path)?;
        let module = module_path(module)?;
        if file == "list" {
            return Ok(Some(ModuleRequest::List { module }));
        }
        let with_version =
            |suffix: &str| -> Result<Option<String>, String> { file.strip_suffix(suffix).map(version).transpose() };
        if let Some(version) = with_version(".info")? {
            return Ok(Some(ModuleRequest::Info { module, version }));
        }
        if let Some(version) = with_version(".mod")? {
            return Ok(Some(ModuleRequest::Mod { module, version }));
        }
        if let Some(version) = with_version(".zip")? {
            return Ok(Some(ModuleRequest::Zip { module, version }));
        }
        return Err(format!(
            "bad module request path {}: unknown @v file {} (want list, $version.info, \
             $version.mod or $version.zip)",
            quote(path),
            quote(file)
        ));
    }

    // $module/@latest
    let latest = match p.strip_suffix("/@latest") {
        Some(module) => Some(module),
        None if p == "@latest" => Some(""),
        None => None,
    };
    if let Some(module) = latest {
        check_chars(path)?;
        let module = module_path(module)?;
        return Ok(Some(ModuleRequest::Latest { module }));
    }

    Ok(None)
}

/// Where the last `/@v/` in `p` starts: found from its `@`, which a byte
/// search finds faster than a substring search sets itself up.
fn last_at_v(p: &str) -> Option<usize> {
    let bytes = p.as_bytes();
    let mut end = bytes.len();
    while let Some(at) = p[..end].rfind('@') {
        if at > 0 && bytes[at - 1] == b'/' && bytes[at + 1..].starts_with(b"v/") {
            return Some(at - 1);
        }
        end = at;
    }
    None
}

/// Classifies a path on a checksum database host itself (an intercepted
/// sum.golang.org): "/latest", "/lookup/M@V", "/tile/8/0/001",
/// "/tile/8/data/000", where `db` is the host name (lower case, no port).
///
/// Ok(None) for any other path (including "/supported", which only proxies
/// serve). Err(message) for a malformed lookup or tile path, or a `db` that
/// is not a host name.
pub fn classify_sumdb_path(db: &str, path: &str) -> Result<Option<ModuleRequest>, String> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let shaped = p == "latest" || p.starts_with("lookup/") || p.starts_with("tile/");
    if !shaped {
        return Ok(None);
    }
    check_chars(path)?;
    check_db_name(db)?;
    let kind = sumdb_endpoint(p)?;
    Ok(kind.map(|kind| ModuleRequest::Sumdb {
        db: db.to_owned(),
        kind,
    }))
}

/// Classifies the part of a checksum-database path after the database:
/// `latest`, `lookup/M@V` or `tile/...`. `None` for anything else.
fn sumdb_endpoint(endpoint: &str) -> Result<Option<SumdbKind>, String> {
    if endpoint == "latest" {
        return Ok(Some(SumdbKind::Latest));
    }
    if let Some(record) = endpoint.strip_prefix("lookup/") {
        let Some((module, v)) = record.split_once('@') else {
            return Err(format!(
                "bad checksum database lookup {}: want lookup/$module@$version",
                quote(endpoint)
            ));
        };
        return Ok(Some(SumdbKind::Lookup {
            module: module_path(module)?,
            version: resolved_version(v)?,
        }));
    }
    if let Some(tile) = endpoint.strip_prefix("tile/") {
        check_tile(tile).map_err(|why| {
            format!(
                "bad checksum database tile {}: {why} \
                 (want tile/$H/$L/$K[.p/$W] or tile/$H/data/$K[.p/$W])",
                quote(endpoint)
            )
        })?;
        return Ok(Some(SumdbKind::Tile));
    }
    Ok(None)
}

/// Checks a tile path after `tile/`: `H/L/K[.p/W]`, where H is the height
/// (1-30), L a level or `data`, K the index as 3-digit groups with all but
/// the last prefixed by `x` (`x001/x234/067`), and W a partial width.
fn check_tile(tile: &str) -> Result<(), &'static str> {
    let mut parts: Vec<&str> = tile.split('/').collect();
    if parts.len() < 3 {
        return Err("too few elements");
    }
    let height = small_number(parts[0], 2)
        .filter(|h| (1..=30).contains(h))
        .ok_or("bad height")?;
    if parts[1] != "data" && small_number(parts[1], 2).is_none() {
        return Err("bad level");
    }
    let n = parts.len();
    if let Some(last_k) = parts[n - 2].strip_suffix(".p") {
        let width = small_number(parts[n - 1], 10).ok_or("bad partial width")?;
        if width == 0 || width >= 1 << height {
            return Err("bad partial width");
        }
        parts[n - 2] = last_k;
        parts.truncate(n - 1);
    }
    let (last, groups) = parts[2..].split_last().ok_or("missing tile index")?;
    let is_group = |s: &str| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit());
    if !groups.iter().all(|g| g.strip_prefix('x').is_some_and(is_group)) || !is_group(last) {
        return Err("bad tile index");
    }
    Ok(())
}

/// Parses 1 to `max_digits` ASCII digits.
fn small_number(s: &str, max_digits: usize) -> Option<u64> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gomod::escape::{decode_case, encode_case};

    fn proxy(path: &str) -> ModuleRequest {
        match classify_proxy_path(path) {
            Ok(Some(r)) => r,
            other => panic!("{path:?}: {other:?}"),
        }
    }

    fn proxy_err(path: &str) -> String {
        match classify_proxy_path(path) {
            Err(e) => {
                assert!(!e.contains('\n') && !e.contains('\0'), "{e:?}");
                e
            }
            other => panic!("{path:?} should be an error, got {other:?}"),
        }
    }

    fn host(path: &str) -> ModuleRequest {
        match classify_sumdb_path("sum.golang.org", path) {
            Ok(Some(r)) => r,
            other => panic!("{path:?}: {other:?}"),
        }
    }

    fn m(module: &str) -> String {
        module.to_owned()
    }

    #[test]
    fn double_percent_encoding_is_refused() {
        let decoded = crate::gomod::escape::decode_path("/a.com/x%2525/@v/list").unwrap();
        assert!(classify_proxy_path(&decoded).is_err());
    }

    #[test]
    fn list() {
        assert_eq!(
            proxy("/golang.org/x/mod/@v/list"),
            ModuleRequest::List {
                module: m("golang.org/x/mod")
            }
        );
    }

    #[test]
    fn info_mod_zip() {
        assert_eq!(
            proxy("/golang.org/x/mod/@v/v0.20.0.info"),
            ModuleRequest::Info {
                module: m("golang.org/x/mod"),
                version: m("v0.20.0")
            }
        );
        assert_eq!(
            proxy("/golang.org/x/mod/@v/v0.20.0.mod"),
            ModuleRequest::Mod {
                module: m("golang.org/x/mod"),
                version: m("v0.20.0")
            }
        );
        assert_eq!(
            proxy("/golang.org/x/mod/@v/v0.20.0.zip"),
            ModuleRequest::Zip {
                module: m("golang.org/x/mod"),
                version: m("v0.20.0")
            }
        );
    }

    #[test]
    fn latest() {
        assert_eq!(
            proxy("/github.com/pkg/errors/@latest"),
            ModuleRequest::Latest {
                module: m("github.com/pkg/errors")
            }
        );
    }

    #[test]
    fn leading_slash_is_optional() {
        assert_eq!(proxy("example.com/m/@v/list"), proxy("/example.com/m/@v/list"));
    }

    #[test]
    fn query_versions_and_unusual_versions() {
        for (file, v) in [
            ("master.info", "master"),
            ("v2.0.0+incompatible.info", "v2.0.0+incompatible"),
            (
                "v0.0.0-20240101000000-abcdef123456.zip",
                "v0.0.0-20240101000000-abcdef123456",
            ),
            ("v1.0.0-!r!c1.mod", "v1.0.0-RC1"),
            ("list.info", "list"),
            ("v1.2.3.info.info", "v1.2.3.info"),
            ("release_1~x.info", "release_1~x"),
        ] {
            let r = proxy(&format!("/example.com/m/@v/{file}"));
            assert_eq!(r.version(), Some(v), "{file}");
            assert_eq!(r.module(), Some("example.com/m"));
        }
    }

    #[test]
    fn case_encoding_is_decoded() {
        let r = proxy("/github.com/!azure/azure-sdk-for-go/@v/v1.0.0.info");
        assert_eq!(r.module(), Some("github.com/Azure/azure-sdk-for-go"));
        assert_eq!(r.kind(), "info");
        let r = proxy("/github.com/!burnt!sushi/toml/@latest");
        assert_eq!(r.module(), Some("github.com/BurntSushi/toml"));
    }

    #[test]
    fn bad_case_encoding_is_an_error() {
        for path in [
            "/github.com/Azure/x/@v/list",
            "/github.com/!1/x/@v/list",
            "/github.com/x!/@v/list",
            "/github.com/!!a/@v/list",
            "/github.com/!/@v/list",
            "/github.com/x/@v/V1.0.0.info",
            "/github.com/x/@v/v1.0.0-!.info",
            "/github.com/x/@v/v1.0.0-!R.info",
            "/github.com/Azure/x/@latest",
            "/github.com/café/@v/list",
        ] {
            proxy_err(path);
        }
        assert!(proxy_err("/github.com/Azure/x/@v/list").contains("'!a'"));
    }

    #[test]
    fn bad_module_paths_are_errors() {
        for path in [
            "/@v/list",
            "@v/list",
            "/@latest",
            "/nodot/@v/list",
            "/nodot/x/@latest",
            "/a.com//b/@v/list",
            "/a.com/../b/@v/list",
            "/a.com/./b/@v/list",
            "/a.com/b/../@v/list",
            "/a.com/.b/@v/list",
            "/a.com/b./@v/list",
            "/a.com/b c/@v/list",
            "/a.com/b@c/@v/list",
            "/a.com/b:c/@v/list",
            "//a.com/b/@v/list",
            "/a.com/b//@v/list",
            "/-a.com/b/@v/list",
            "/a_b.com/c/@v/list",
            "/.a.com/@v/list",
            "/a.com/@v/list/@v/list",
        ] {
            let e = proxy_err(path);
            assert!(e.starts_with("bad module path"), "{path}: {e}");
        }
    }

    #[test]
    fn long_paths_and_versions_are_what_go_accepts() {
        // go's module.CheckPath has no length limit: a 1217-byte path is valid.
        let long = format!("/a.com/{}/@v/list", "x/".repeat(600).trim_end_matches('/'));
        assert!(long.len() > 1200);
        assert_eq!(proxy(&long).kind(), "list");
        let version = format!("/a.com/b/@v/v1.0.0-{}.zip", "1".repeat(300));
        assert_eq!(proxy(&version).kind(), "zip");
    }

    #[test]
    fn bad_versions_are_errors() {
        for path in [
            "/a.com/b/@v/.info",
            "/a.com/b/@v/..info",
            "/a.com/b/@v/...info",
            "/a.com/b/@v/v1..info",
            "/a.com/b/@v/v1/x.info",
            "/a.com/b/@v/v1:x.zip",
            "/a.com/b/@v/a*b.info",
            "/a.com/b/@v/a|b.info",
            "/a.com/b/@v/a?b.info",
            "/a.com/b/@v/a\"b.info",
            "/a.com/b/@v/a'b.info",
            "/a.com/b/@v/a<b>.info",
            "/a.com/b/@v/a`b.info",
            "/a.com/b/@v/caf\u{e9}.info",
        ] {
            let e = proxy_err(path);
            assert!(e.starts_with("bad version"), "{path}: {e}");
        }
    }

    #[test]
    fn branch_names_go_allows_are_versions() {
        // module.EscapeVersion takes go's file-name characters, so
        // `go get m@fix#12` asks for `@v/fix%2312.info`.
        for version in [
            "fix#12",
            "a b",
            "x,y",
            "release(2)",
            "user@topic",
            "a=b",
            "$&",
            "[1]",
            "{x}",
            "^1",
            "50%",
            "a~b_c+d",
        ] {
            let request = proxy(&format!("/a.com/b/@v/{version}.info"));
            assert_eq!(request.version(), Some(version));
        }
    }

    #[test]
    fn unknown_at_v_files_are_errors() {
        for path in [
            "/a.com/b/@v/v1.0.0.txt",
            "/a.com/b/@v/",
            "/a.com/b/@v/v1.0.0",
            "/a.com/b/@v/lists",
            "/a.com/b/@v/list/",
            "/a.com/b/@v/v1.0.0.info/",
        ] {
            let e = proxy_err(path);
            assert!(
                e.contains("unknown @v file") || e.starts_with("bad version"),
                "{path}: {e}"
            );
        }
    }

    #[test]
    fn bad_characters_are_errors_in_module_shaped_paths() {
        for path in [
            "/a.com/b\\c/@v/list",
            "/a.com/b\0/@v/list",
            "/a.com/b\n/@latest",
            "/sumdb/sum.golang.org/latest\0",
        ] {
            let e = proxy_err(path);
            assert!(e.contains("contains"), "{path}: {e}");
        }
        // A `%` left after decoding belongs to no module path, database
        // name or looked-up version (a version query may have one).
        for path in [
            "/a.com/b%41/@v/list",
            "/sumdb/sum.golang.org/lookup/a.com/b%20@v1.0.0",
            "/sumdb/sum.golang.org/lookup/a.com/b@v1.0.0%20",
            "/sumdb/sum%2egolang.org/latest",
        ] {
            let e = proxy_err(path);
            assert!(
                e.contains("invalid character '%'") || e.contains("database name"),
                "{path}: {e}"
            );
        }
        assert_eq!(proxy("/a.com/b/@v/v1.0.0%2e.info").version(), Some("v1.0.0%2e"));
    }

    #[test]
    fn the_last_at_v_is_where_a_substring_search_finds_it() {
        for p in [
            "a.com/b/@v/list",
            "a/@v/b/@v/c",
            "@v/list",
            "/@v/",
            "/@@v/x",
            "x@v/y",
            "a/@v",
            "a/@",
            "@",
            "a/@/v/",
            "a/@v/@v/",
            "é/@v/ü@",
            "",
        ] {
            assert_eq!(last_at_v(p), p.rfind("/@v/"), "{p:?}");
        }
    }

    #[test]
    fn non_module_paths_are_none() {
        for path in [
            "",
            "/",
            "/favicon.ico",
            "/index.html",
            "/a.com/b",
            "/a.com/b/@v",
            "/a.com/b/@latest/",
            "/a.com/b/@latestx",
            "/a.com/@vv/list",
            "/sumdb",
            "/a%20b",
            "/\0",
            "/..\\..\\etc",
        ] {
            assert_eq!(classify_proxy_path(path), Ok(None), "{path:?}");
        }
    }

    #[test]
    fn sumdb_through_the_proxy() {
        let db = m("sum.golang.org");
        let sumdb = |kind| ModuleRequest::Sumdb { db: db.clone(), kind };
        assert_eq!(proxy("/sumdb/sum.golang.org/supported"), sumdb(SumdbKind::Supported));
        assert_eq!(proxy("/sumdb/sum.golang.org/latest"), sumdb(SumdbKind::Latest));
        assert_eq!(
            proxy("/sumdb/sum.golang.org/lookup/golang.org/x/mod@v0.20.0"),
            sumdb(SumdbKind::Lookup {
                module: m("golang.org/x/mod"),
                version: m("v0.20.0")
            })
        );
        assert_eq!(
            proxy("/sumdb/sum.golang.org/lookup/github.com/!azure/x@v1.0.0-!r!c1"),
            sumdb(SumdbKind::Lookup {
                module: m("github.com/Azure/x"),
                version: m("v1.0.0-RC1")
            })
        );
        for tile in [
            "tile/8/0/001",
            "tile/8/data/000",
            "tile/8/1/x001/234",
            "tile/8/0/x001/x234/067",
            "tile/8/0/x123/456.p/7",
            "tile/8/data/000.p/255",
            "tile/8/2/000.p/1",
        ] {
            assert_eq!(
                proxy(&format!("/sumdb/sum.golang.org/{tile}")),
                sumdb(SumdbKind::Tile),
                "{tile}"
            );
        }
    }

    #[test]
    fn sumdb_request_accessors() {
        let r = proxy("/sumdb/sum.golang.org/lookup/golang.org/x/mod@v0.20.0");
        assert_eq!(r.kind(), "sumdb");
        assert_eq!(r.module(), Some("golang.org/x/mod"));
        assert_eq!(r.version(), Some("v0.20.0"));
        let r = proxy("/sumdb/sum.golang.org/tile/8/0/001");
        assert_eq!(r.module(), None);
        assert_eq!(r.version(), None);
        assert_eq!(proxy("/sumdb/sum.golang.org/latest").module(), None);
    }

    #[test]
    fn bad_sumdb_paths_on_the_proxy() {
        for path in [
            "/sumdb/",
            "/sumdb/sum.golang.org",
            "/sumdb/sum.golang.org/",
            "/sumdb/sum.golang.org/other",
            "/sumdb/sum.golang.org/latest/",
            "/sumdb/Sum.golang.org/latest",
            "/sumdb/-sum.golang.org/latest",
            "/sumdb/sum..golang.org/latest",
            "/sumdb/../latest",
            "/sumdb/sum.golang.org:443/latest",
            "/sumdb/sum.golang.org/lookup/golang.org/x/mod",
            "/sumdb/sum.golang.org/lookup/golang.org/x/mod@",
            "/sumdb/sum.golang.org/lookup/@v1.0.0",
            "/sumdb/sum.golang.org/lookup/golang.org/X/mod@v1.0.0",
            "/sumdb/sum.golang.org/lookup/golang.org/../x@v1.0.0",
            "/sumdb/sum.golang.org/lookup/golang.org/x/mod@v1@v2",
            "/sumdb/sum.golang.org/tile/8/0",
            "/sumdb/sum.golang.org/tile/8/0/",
            "/sumdb/sum.golang.org/tile/8/0/1",
            "/sumdb/sum.golang.org/tile/8/0/0001",
            "/sumdb/sum.golang.org/tile/8/0/001/002",
            "/sumdb/sum.golang.org/tile/8/0/x001",
            "/sumdb/sum.golang.org/tile/8/0/..",
            "/sumdb/sum.golang.org/tile/8/../001",
            "/sumdb/sum.golang.org/tile/../0/001",
            "/sumdb/sum.golang.org/tile/0/0/001",
            "/sumdb/sum.golang.org/tile/31/0/001",
            "/sumdb/sum.golang.org/tile/x/0/001",
            "/sumdb/sum.golang.org/tile/8/x/001",
            "/sumdb/sum.golang.org/tile/8/0/001.p",
            "/sumdb/sum.golang.org/tile/8/0/001.p/",
            "/sumdb/sum.golang.org/tile/8/0/001.p/0",
            "/sumdb/sum.golang.org/tile/8/0/001.p/256",
            "/sumdb/sum.golang.org/tile/8/0/001.p/x",
            "/sumdb/sum.golang.org/tile/8/0/001.p/1/2",
            "/sumdb/sum.golang.org/tile/8/0/001/",
        ] {
            proxy_err(path);
        }
    }

    #[test]
    fn sumdb_on_its_own_host() {
        let sumdb = |kind| ModuleRequest::Sumdb {
            db: m("sum.golang.org"),
            kind,
        };
        assert_eq!(host("/latest"), sumdb(SumdbKind::Latest));
        assert_eq!(
            host("/lookup/golang.org/x/mod@v0.20.0"),
            sumdb(SumdbKind::Lookup {
                module: m("golang.org/x/mod"),
                version: m("v0.20.0")
            })
        );
        assert_eq!(host("/tile/8/0/001"), sumdb(SumdbKind::Tile));
        assert_eq!(host("/tile/8/data/000"), sumdb(SumdbKind::Tile));
        assert_eq!(host("/tile/8/1/x001/234.p/9"), sumdb(SumdbKind::Tile));
        assert_eq!(host("latest"), sumdb(SumdbKind::Latest));
    }

    #[test]
    fn sumdb_host_non_sumdb_paths_are_none() {
        for path in [
            "/",
            "",
            "/favicon.ico",
            "/supported",
            "/lookup",
            "/tile",
            "/latest/",
            "/sumdb/sum.golang.org/latest",
            "/golang.org/x/mod/@v/list",
        ] {
            assert_eq!(classify_sumdb_path("sum.golang.org", path), Ok(None), "{path:?}");
        }
    }

    #[test]
    fn sumdb_host_bad_paths_are_errors() {
        for path in [
            "/lookup/",
            "/lookup/golang.org/x/mod",
            "/lookup/golang.org/X/mod@v1.0.0",
            "/lookup/golang.org/x/mod@v1.0.0%00",
            "/tile/",
            "/tile/8/0/..",
            "/tile/8/0/1",
            "/tile/8/0/001\\",
        ] {
            assert!(classify_sumdb_path("sum.golang.org", path).is_err(), "{path:?}");
        }
        for db in ["", "Sum.golang.org", "sum.golang.org:443", "a b"] {
            assert!(classify_sumdb_path(db, "/latest").is_err(), "{db:?}");
        }
    }

    #[test]
    fn kind_names() {
        assert_eq!(proxy("/a.com/b/@v/list").kind(), "list");
        assert_eq!(proxy("/a.com/b/@v/v1.0.0.info").kind(), "info");
        assert_eq!(proxy("/a.com/b/@v/v1.0.0.mod").kind(), "mod");
        assert_eq!(proxy("/a.com/b/@v/v1.0.0.zip").kind(), "zip");
        assert_eq!(proxy("/a.com/b/@latest").kind(), "latest");
        assert_eq!(proxy("/sumdb/sum.golang.org/supported").kind(), "sumdb");
    }

    #[test]
    fn valid_module_paths() {
        for module in [
            "a.com",
            "gopkg.in/yaml.v3",
            "go.uber.org/zap",
            "example.com/a-b_c~d/e.f",
            "example.com/x/v2",
            "1.2.3.4/x",
            "xn--bcher-kva.example/pkg",
        ] {
            let r = proxy(&format!("/{}/@v/list", encode_case(module)));
            assert_eq!(r.module(), Some(module));
        }
    }

    #[test]
    fn decode_case_rules() {
        assert_eq!(decode_case("!azure"), Ok(m("Azure")));
        assert_eq!(decode_case("github.com/!burnt!sushi"), Ok(m("github.com/BurntSushi")));
        assert_eq!(decode_case(""), Ok(m("")));
        assert_eq!(decode_case("v1.0.0-!r!c1"), Ok(m("v1.0.0-RC1")));
        for bad in ["Azure", "!", "a!", "!1", "!A", "!!", "!-", "!é", "é", "a!/b"] {
            let e = decode_case(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn encode_case_rules() {
        assert_eq!(encode_case("github.com/Azure/x"), "github.com/!azure/x");
        assert_eq!(encode_case("BurntSushi"), "!burnt!sushi");
        assert_eq!(encode_case("v1.0.0-RC1"), "v1.0.0-!r!c1");
        assert_eq!(encode_case("lower.case/only"), "lower.case/only");
        assert_eq!(encode_case(""), "");
    }

    #[test]
    fn case_encoding_round_trips() {
        for s in [
            "github.com/Azure/azure-sdk-for-go",
            "github.com/BurntSushi/toml",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "abcdefghijklmnopqrstuvwxyz0123456789-._~+/",
            "v1.0.0-RC.1+Build",
        ] {
            let encoded = encode_case(s);
            assert!(!encoded.chars().any(|c| c.is_ascii_uppercase()), "{encoded}");
            assert_eq!(decode_case(&encoded), Ok(m(s)));
        }
    }

    #[test]
    fn error_messages_quote_and_truncate_request_text() {
        let e = proxy_err("/a.com/b\u{1b}[31m/@v/list");
        assert!(e.contains("\\u{1b}"), "{e}");
        let long = format!("/a.com/{}%/@v/list", "y".repeat(5000));
        let e = proxy_err(&long);
        assert!(e.len() < 400, "{}", e.len());
        assert!(e.contains("..."), "{e}");
    }
}
