//! `[sumdb]`: the checksum database modgate verifies module content
//! against before it enters the cache, and serves to `go` through its
//! endpoint.

use serde::Deserialize;
use toml::Spanned;

use crate::config::syntax::{Located, MatchList, parse_list};
use crate::gomod::sumdb::note::VerifierKey;
use crate::policy::glob::ModuleGlob;

/// sum.golang.org's verifier key, as in the go command's sources
/// (`cmd/go/internal/modfetch/key.go`).
pub const SUM_GOLANG_ORG_KEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
/// Where sum.golang.org answers.
pub const SUM_GOLANG_ORG_URL: &str = "https://sum.golang.org";

/// The `[sumdb]` table, validated.
#[derive(Debug, Clone)]
pub struct SumdbSettings {
    /// Check `.mod` and `.zip` hashes against the database before caching.
    pub verify: bool,
    /// The database's verifier key; its name is the database's name.
    pub key: VerifierKey,
    /// Where the database (or a proxied copy of it) answers, without a
    /// trailing slash.
    pub url: String,
    /// Modules the database cannot know (GONOSUMDB globs): trusted on first
    /// use instead.
    pub nosumdb: Vec<ModuleGlob>,
}

impl SumdbSettings {
    /// The database's name, e.g. `sum.golang.org`.
    pub fn name(&self) -> &str {
        self.key.name()
    }

    /// Whether `module` is outside the database (matches `nosumdb`).
    pub fn is_private(&self, module: &str) -> bool {
        self.nosumdb.iter().any(|g| g.matches(module))
    }
}

/// `[sumdb]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSumdb {
    verify: Option<bool>,
    name: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    nosumdb: Option<MatchList<Spanned<String>>>,
}

impl FileSumdb {
    pub(crate) fn resolve(self) -> Result<SumdbSettings, Located> {
        let key = match &self.key {
            Some(k) => VerifierKey::parse(k.get_ref()).map_err(|e| (k.span(), format!("sumdb.key: {e}")))?,
            None => VerifierKey::parse(SUM_GOLANG_ORG_KEY).map_err(|e| (0..0, format!("built-in sumdb key: {e}")))?,
        };
        if let Some(name) = &self.name {
            if name.get_ref() != key.name() {
                return Err((
                    name.span(),
                    format!(
                        "sumdb.name '{}' is not the name in sumdb.key ('{}')",
                        name.get_ref(),
                        key.name()
                    ),
                ));
            }
        }
        let url = match &self.url {
            Some(u) => {
                let text = u.get_ref().trim_end_matches('/');
                let parsed = url::Url::parse(text).map_err(|e| (u.span(), format!("bad sumdb.url '{text}': {e}")))?;
                if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
                    return Err((
                        u.span(),
                        format!("bad sumdb.url '{text}': expected https://host[/prefix]"),
                    ));
                }
                text.to_owned()
            }
            None if key.name() == "sum.golang.org" => SUM_GOLANG_ORG_URL.to_owned(),
            None => format!("https://{}", key.name()),
        };
        Ok(SumdbSettings {
            verify: self.verify.unwrap_or(true),
            key,
            url,
            nosumdb: parse_list::<ModuleGlob, _>(self.nosumdb, String::clone)?.unwrap_or_default(),
        })
    }
}
