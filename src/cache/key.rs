//! Cache keys: the GOPROXY path of what is cached, so a cache directory is
//! itself a valid `GOPROXY=file://` tree.
//!
//! ```text
//! github.com/!azure/go-autorest/@v/v1.0.0.info     (.mod, .zip)
//! github.com/!azure/go-autorest/@v/list
//! github.com/!azure/go-autorest/@latest
//! sumdb/sum.golang.org/latest
//! sumdb/sum.golang.org/lookup/github.com/!azure/go-autorest@v1.0.0
//! sumdb/sum.golang.org/tile/8/0/x001/234
//! private/git.corp.example.com/team/repo/@v/v1.0.0.zip
//! ```
//!
//! Modules in `[private] modules` are kept under `private/` (no module
//! path starts with it: a first element needs a dot), so they can be
//! listed, removed or kept out of a shared store on their own.
//!
//! Module paths and versions are `!`-case-encoded. Every key is checked by
//! the same classifier that reads requests off the wire, so a key never
//! starts with `/`, never has an empty, `.` or `..` element, and no element
//! starts with `.`: names starting with `.` are the cache's own (temp files,
//! the hidden `.modgate/` prefix).

use std::fmt;

use crate::cache::error::CacheError;
use crate::gomod::check::{check_module_path, check_version};
use crate::gomod::classify::{classify_proxy_path, classify_sumdb_path};
use crate::gomod::escape::encode_case;
use crate::gomod::request::{ModuleRequest, SumdbKind};

/// The longest key accepted, in bytes: module path and version bounds plus
/// the sumdb and `@v/` framing.
const MAX_KEY: usize = 2048;

/// Where private modules' objects are kept.
pub const PRIVATE_PREFIX: &str = "private/";

/// What a cached object is, for statistics and listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyKind {
    /// `@v/$version.info`.
    Info,
    /// `@v/$version.mod`.
    Mod,
    /// `@v/$version.zip`.
    Zip,
    /// `@v/list`.
    List,
    /// `@latest`.
    Latest,
    /// Anything under `sumdb/`.
    Sumdb,
}

impl KeyKind {
    /// Every kind, in display order.
    pub const ALL: [KeyKind; 6] = [
        KeyKind::Zip,
        KeyKind::Mod,
        KeyKind::Info,
        KeyKind::List,
        KeyKind::Latest,
        KeyKind::Sumdb,
    ];

    /// `zip`, `mod`, `info`, `list`, `latest` or `sumdb`.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Info => "info",
            KeyKind::Mod => "mod",
            KeyKind::Zip => "zip",
            KeyKind::List => "list",
            KeyKind::Latest => "latest",
            KeyKind::Sumdb => "sumdb",
        }
    }
}

/// A validated cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    path: String,
    /// Under the `private/` prefix.
    private: bool,
    kind: KeyKind,
    module: Option<String>,
    version: Option<String>,
}

impl Key {
    /// The key of a module request. A sumdb `tile` request needs its path:
    /// use [`Key::sumdb`]; `sumdb/<db>/supported` is never cached.
    pub fn for_request(request: &ModuleRequest) -> Result<Key, CacheError> {
        let bad = |why: String| CacheError::BadKey {
            key: format!("{request:?}"),
            why,
        };
        if let Some(module) = request.module() {
            check_module_path(module).map_err(|e| bad(format!("bad module path: {e}")))?;
        }
        if let Some(version) = request.version() {
            check_version(version).map_err(|e| bad(format!("bad version: {e}")))?;
        }
        let at_v = |module: &str, file: String| format!("{}/@v/{file}", encode_case(module));
        let versioned =
            |module: &str, version: &str, ext: &str| at_v(module, format!("{}.{ext}", encode_case(version)));
        let (path, kind) = match request {
            ModuleRequest::List { module } => (at_v(module, "list".into()), KeyKind::List),
            ModuleRequest::Info { module, version } => (versioned(module, version, "info"), KeyKind::Info),
            ModuleRequest::Mod { module, version } => (versioned(module, version, "mod"), KeyKind::Mod),
            ModuleRequest::Zip { module, version } => (versioned(module, version, "zip"), KeyKind::Zip),
            ModuleRequest::Latest { module } => (format!("{}/@latest", encode_case(module)), KeyKind::Latest),
            ModuleRequest::Sumdb { db, kind } => {
                let endpoint = match kind {
                    SumdbKind::Latest => "latest".to_owned(),
                    SumdbKind::Lookup { module, version } => {
                        format!("lookup/{}@{}", encode_case(module), encode_case(version))
                    }
                    SumdbKind::Tile => return Err(bad("a tile key needs the tile path: use Key::sumdb".into())),
                    SumdbKind::Supported => return Err(bad("sumdb 'supported' is not cached".into())),
                };
                return Key::sumdb(db, &endpoint);
            }
        };
        Key::checked(Key {
            path,
            private: false,
            kind,
            module: request.module().map(str::to_owned),
            version: request.version().map(str::to_owned),
        })
    }

    /// The key of a checksum-database request: the database name and the
    /// path after it, as on the wire: `latest`, `lookup/$module@$version`
    /// (case-encoded) or `tile/$H/$L/$K[.p/$W]`.
    pub fn sumdb(db: &str, endpoint: &str) -> Result<Key, CacheError> {
        let path = format!("sumdb/{db}/{endpoint}");
        let bad = |why: String| CacheError::BadKey { key: path.clone(), why };
        let request = classify_sumdb_path(db, &format!("/{endpoint}"))
            .map_err(bad)?
            .ok_or_else(|| bad("not a sumdb latest, lookup or tile path".into()))?;
        let (module, version) = match &request {
            ModuleRequest::Sumdb {
                kind: SumdbKind::Lookup { module, version },
                ..
            } => {
                // The canonical encoding only: one object per record.
                let canonical = format!("lookup/{}@{}", encode_case(module), encode_case(version));
                if canonical != endpoint {
                    return Err(bad(format!("not canonical; want {canonical:?}")));
                }
                (Some(module.clone()), Some(version.clone()))
            }
            _ => (None, None),
        };
        Key::checked(Key {
            path,
            private: false,
            kind: KeyKind::Sumdb,
            module,
            version,
        })
    }

    /// Parses a key as stored or listed, e.g. `golang.org/x/mod/@v/list`.
    pub fn parse(path: &str) -> Result<Key, CacheError> {
        let bad = |why: String| CacheError::BadKey {
            key: path.to_owned(),
            why,
        };
        if path.starts_with('/') {
            return Err(bad("leading '/'".into()));
        }
        if let Some(rest) = path.strip_prefix(PRIVATE_PREFIX) {
            let key = Key::parse(rest)?;
            if key.private || key.kind == KeyKind::Sumdb {
                return Err(bad("only module files are kept under private/".into()));
            }
            return Ok(key.in_private());
        }
        if let Some(rest) = path.strip_prefix("sumdb/") {
            let (db, endpoint) = rest
                .split_once('/')
                .ok_or_else(|| bad("missing the endpoint after the database name".into()))?;
            return Key::sumdb(db, endpoint);
        }
        let request = classify_proxy_path(&format!("/{path}"))
            .map_err(bad)?
            .ok_or_else(|| bad("not a GOPROXY or sumdb path".into()))?;
        let key = Key::for_request(&request)?;
        if key.path != path {
            return Err(bad(format!("not canonical; want {:?}", key.path)));
        }
        Ok(key)
    }

    /// The last line of defence: whatever the classifier accepted must
    /// still be a safe relative path that is not the cache's own.
    fn checked(key: Key) -> Result<Key, CacheError> {
        let bad = |why: &str| CacheError::BadKey {
            key: key.path.clone(),
            why: why.to_owned(),
        };
        if key.path.len() > MAX_KEY {
            return Err(bad("too long"));
        }
        if key.path.starts_with('/') || key.path.contains('\\') || key.path.contains('\0') {
            return Err(bad("not a relative path"));
        }
        if key.path.split('/').any(|e| e.is_empty() || e.starts_with('.')) {
            return Err(bad("an empty element, or one starting with '.'"));
        }
        Ok(key)
    }

    /// The same object kept under the `private/` prefix, for a module in
    /// `[private] modules`.
    pub fn in_private(self) -> Key {
        if self.private {
            return self;
        }
        Key {
            path: format!("{PRIVATE_PREFIX}{}", self.path),
            private: true,
            ..self
        }
    }

    /// Whether the key is under the `private/` prefix.
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// The key as a relative path with `/` separators.
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// What the object is.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The decoded module path, when the key names one (not for sumdb
    /// latest and tiles).
    pub fn module(&self) -> Option<&str> {
        self.module.as_deref()
    }

    /// The decoded version, for `.info`, `.mod`, `.zip` and sumdb lookups.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip(module: &str, version: &str) -> ModuleRequest {
        ModuleRequest::Zip {
            module: module.into(),
            version: version.into(),
        }
    }

    #[test]
    fn keys_follow_the_goproxy_layout() {
        let cases = [
            (
                zip("github.com/Azure/go-autorest", "v1.0.0"),
                "github.com/!azure/go-autorest/@v/v1.0.0.zip",
                KeyKind::Zip,
            ),
            (
                ModuleRequest::Info {
                    module: "golang.org/x/mod".into(),
                    version: "v0.20.0-RC1".into(),
                },
                "golang.org/x/mod/@v/v0.20.0-!r!c1.info",
                KeyKind::Info,
            ),
            (
                ModuleRequest::Mod {
                    module: "example.com/a~b".into(),
                    version: "v2.0.0+incompatible".into(),
                },
                "example.com/a~b/@v/v2.0.0+incompatible.mod",
                KeyKind::Mod,
            ),
            (
                ModuleRequest::List {
                    module: "example.com/M".into(),
                },
                "example.com/!m/@v/list",
                KeyKind::List,
            ),
            (
                ModuleRequest::Latest {
                    module: "example.com/m".into(),
                },
                "example.com/m/@latest",
                KeyKind::Latest,
            ),
            (
                ModuleRequest::Sumdb {
                    db: "sum.golang.org".into(),
                    kind: SumdbKind::Lookup {
                        module: "github.com/BurntSushi/toml".into(),
                        version: "v1.3.2".into(),
                    },
                },
                "sumdb/sum.golang.org/lookup/github.com/!burnt!sushi/toml@v1.3.2",
                KeyKind::Sumdb,
            ),
            (
                ModuleRequest::Sumdb {
                    db: "sum.golang.org".into(),
                    kind: SumdbKind::Latest,
                },
                "sumdb/sum.golang.org/latest",
                KeyKind::Sumdb,
            ),
        ];
        for (request, path, kind) in cases {
            let key = Key::for_request(&request).unwrap();
            assert_eq!(key.as_str(), path);
            assert_eq!(key.kind(), kind);
            assert_eq!(key.module(), request.module());
            assert_eq!(key.version(), request.version());
            // A stored key parses back to the same key.
            assert_eq!(Key::parse(path).unwrap(), key, "{path}");
        }
        let tile = Key::sumdb("sum.golang.org", "tile/8/0/x001/234.p/5").unwrap();
        assert_eq!(tile.as_str(), "sumdb/sum.golang.org/tile/8/0/x001/234.p/5");
        assert_eq!(Key::parse(tile.as_str()).unwrap(), tile);
        assert_eq!(
            Key::sumdb("sum.golang.org", "tile/8/data/000").unwrap().kind(),
            KeyKind::Sumdb
        );
    }

    #[test]
    fn unsafe_or_foreign_keys_are_refused() {
        for bad in [
            "",
            "/github.com/a/b/@v/list",
            "github.com/a/../b/@v/list",
            "github.com/a/./b/@v/list",
            "github.com//b/@v/list",
            "github.com/.hidden/@v/list",
            "github.com/a/@v/.modgate-tmp-x.zip",
            "github.com/a/@v/..zip",
            "github.com/A/@v/list",
            "github.com/a/@v/v1.0.0.txt",
            "github.com/a/@v/v1/x.zip",
            "github.com/a\\b/@v/list",
            "github.com/a%2e%2e/@v/list",
            ".modgate/ready",
            "sumdb/sum.golang.org/supported",
            "sumdb/sum.golang.org/tile/../../x",
            "sumdb/SUM.golang.org/latest",
            "sumdb/sum.golang.org/lookup/github.com/A/b@v1.0.0",
            "sumdb/sum.golang.org/lookup/github.com/a/b@v1.0.0/../x",
            "nodot/@v/list",
            "README.md",
        ] {
            assert!(Key::parse(bad).is_err(), "{bad:?} was accepted");
        }
        for request in [
            zip("github.com/a/../b", "v1.0.0"),
            zip("github.com/a", ".."),
            zip("github.com/a", "v1/../../x"),
            zip("/abs.com/a", "v1.0.0"),
            ModuleRequest::Sumdb {
                db: "sum.golang.org".into(),
                kind: SumdbKind::Supported,
            },
            ModuleRequest::Sumdb {
                db: "../etc".into(),
                kind: SumdbKind::Latest,
            },
        ] {
            let e = Key::for_request(&request).unwrap_err().to_string();
            assert!(e.starts_with("bad cache key"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn private_modules_are_kept_under_their_own_prefix() {
        let key = Key::for_request(&zip("git.corp.test/Team/repo", "v1.0.0"))
            .unwrap()
            .in_private();
        assert_eq!(key.as_str(), "private/git.corp.test/!team/repo/@v/v1.0.0.zip");
        assert!(key.is_private());
        assert_eq!(key.module(), Some("git.corp.test/Team/repo"));
        let parsed = Key::parse(key.as_str()).unwrap();
        assert_eq!(parsed, key);
        assert!(
            !Key::parse("git.corp.test/!team/repo/@v/v1.0.0.zip")
                .unwrap()
                .is_private()
        );
        for bad in [
            "private/private/a.test/m/@v/list",
            "private/sumdb/sum.golang.org/latest",
            "private/",
        ] {
            assert!(Key::parse(bad).is_err(), "{bad}");
        }
    }
}
