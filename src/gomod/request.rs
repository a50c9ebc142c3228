//! What a GOPROXY or checksum-database request asks for, once classified.

/// What a GOPROXY or checksum-database request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleRequest {
    /// `$module/@v/list`: the known versions.
    List {
        /// The decoded module path.
        module: String,
    },
    /// `$module/@v/$version.info`: version metadata; `version` may be a query
    /// such as `master`.
    Info {
        /// The decoded module path.
        module: String,
        /// The decoded version.
        version: String,
    },
    /// `$module/@v/$version.mod`: the go.mod file.
    Mod {
        /// The decoded module path.
        module: String,
        /// The decoded version.
        version: String,
    },
    /// `$module/@v/$version.zip`: the module zip.
    Zip {
        /// The decoded module path.
        module: String,
        /// The decoded version.
        version: String,
    },
    /// `$module/@latest`: the latest version, when list gives nothing usable.
    Latest {
        /// The decoded module path.
        module: String,
    },
    /// A checksum-database request, through a proxy or on the database host.
    Sumdb {
        /// The database's name, e.g. `sum.golang.org`.
        db: String,
        /// Which endpoint of the database.
        kind: SumdbKind,
    },
}

/// The endpoint of a checksum-database request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SumdbKind {
    /// `sumdb/<db>/supported`: whether the proxy serves this database.
    Supported,
    /// `latest`: the signed tree head.
    Latest,
    /// `lookup/<module>@<version>`: the record of one module version.
    Lookup {
        /// The decoded module path.
        module: String,
        /// The decoded version.
        version: String,
    },
    /// `tile/<H>/<L>/<K>[.p/<W>]` or `tile/<H>/data/<K>[.p/<W>]`: a tile of the log.
    Tile,
}

impl ModuleRequest {
    /// The decoded module path, when the request names one (not for sumdb
    /// supported/latest/tile).
    pub fn module(&self) -> Option<&str> {
        match self {
            ModuleRequest::List { module }
            | ModuleRequest::Info { module, .. }
            | ModuleRequest::Mod { module, .. }
            | ModuleRequest::Zip { module, .. }
            | ModuleRequest::Latest { module }
            | ModuleRequest::Sumdb {
                kind: SumdbKind::Lookup { module, .. },
                ..
            } => Some(module),
            ModuleRequest::Sumdb { .. } => None,
        }
    }

    /// The decoded version, when the request names one (info, mod, zip and
    /// sumdb lookup).
    pub fn version(&self) -> Option<&str> {
        match self {
            ModuleRequest::Info { version, .. }
            | ModuleRequest::Mod { version, .. }
            | ModuleRequest::Zip { version, .. }
            | ModuleRequest::Sumdb {
                kind: SumdbKind::Lookup { version, .. },
                ..
            } => Some(version),
            _ => None,
        }
    }

    /// Short kind name for logs: "list", "info", "mod", "zip", "latest", "sumdb".
    pub fn kind(&self) -> &'static str {
        match self {
            ModuleRequest::List { .. } => "list",
            ModuleRequest::Info { .. } => "info",
            ModuleRequest::Mod { .. } => "mod",
            ModuleRequest::Zip { .. } => "zip",
            ModuleRequest::Latest { .. } => "latest",
            ModuleRequest::Sumdb { .. } => "sumdb",
        }
    }
}

/// The largest module zip `go` accepts (cmd/go rejects bigger ones).
pub const MAX_ZIP_BYTES: u64 = 500 * 1024 * 1024;

/// The largest `.info` or `@latest` answer modgate accepts. A real one is a
/// few hundred bytes (`Version`, `Time`, sometimes `Origin`).
pub const MAX_INFO_BYTES: usize = 64 * 1024;
