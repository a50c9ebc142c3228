//! `[cache]`: where the module cache is kept (a directory or object
//! storage), how large the directory may grow, and the times the cache
//! semantics work with.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::syntax::{ConfigDuration, ConfigSize, Located, Parsed, duration_or};

/// `cache.stale_after` when it is not set.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(2);

/// `cache.max_size` when it is not set: 20 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 20 << 30;

/// The `[cache]` table, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Where cached objects are kept, or why there is no cache.
    pub location: CacheLocation,
    /// How long a cached `@v/list`, `@latest` or sumdb `latest` is served
    /// without asking upstream again.
    pub list_ttl: Duration,
    /// How long past its time to live a cached answer may still be served
    /// when every upstream fails.
    pub stale_if_error: Duration,
    /// How long a request for an expired `@v/list`, `@latest` or sumdb
    /// `latest` waits for its upstream before the stale copy is served
    /// (the fetch goes on in the background and refreshes the cache).
    pub stale_after: Duration,
    /// How long a 404/410 from upstream is remembered.
    pub negative_ttl: Duration,
}

/// Where the cache is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLocation {
    /// No cache; `why` says so in `check` and in `modgate cache` errors.
    Off {
        /// E.g. `cache.dir = ""`.
        why: String,
    },
    /// A local directory, itself a valid `GOPROXY=file://` tree.
    Dir {
        /// Absolute.
        path: PathBuf,
        /// Least recently used entries are evicted above this many bytes.
        max_size: u64,
    },
    /// Object storage.
    Url(StoreUrl),
}

/// An object-storage URL whose scheme modgate supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// The URL as parsed.
    pub url: url::Url,
    /// Which service it names.
    pub service: Service,
}

/// The object-storage services modgate can keep its cache in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `s3://bucket/prefix`, and S3-compatible stores through `AWS_ENDPOINT_URL`.
    S3,
    /// `gs://bucket/prefix`.
    Gcs,
    /// `az://container/prefix`, with the account from `AZURE_STORAGE_ACCOUNT_NAME`.
    Azure,
    /// `file:///abs/dir`: a directory written through object storage's rules
    /// (no size limit, no eviction).
    File,
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str())
    }
}

impl fmt::Display for CacheLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheLocation::Off { why } => write!(f, "off ({why})"),
            CacheLocation::Dir { path, .. } => write!(f, "{}", path.display()),
            CacheLocation::Url(url) => write!(f, "{url}"),
        }
    }
}

/// `[cache]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileCache {
    dir: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    max_size: Option<Spanned<Parsed<ConfigSize>>>,
    list_ttl: Option<Parsed<ConfigDuration>>,
    stale_if_error: Option<Parsed<ConfigDuration>>,
    stale_after: Option<Parsed<ConfigDuration>>,
    negative_ttl: Option<Parsed<ConfigDuration>>,
}

impl FileCache {
    /// The settings; a relative `dir` is resolved against `base` (the config
    /// file's directory) and made absolute.
    pub(crate) fn resolve(self, base: &Path) -> Result<CacheSettings, Located> {
        self.resolve_in(base, &|name| std::env::var_os(name))
    }

    /// [`FileCache::resolve`] with the environment given, for tests.
    fn resolve_in(self, base: &Path, env: &dyn Fn(&str) -> Option<OsString>) -> Result<CacheSettings, Located> {
        let list_ttl = duration_or(self.list_ttl, Duration::from_secs(60));
        let stale_if_error = duration_or(self.stale_if_error, Duration::from_secs(7 * 86_400));
        let negative_ttl = duration_or(self.negative_ttl, Duration::from_secs(60));
        let stale_after = duration_or(self.stale_after, DEFAULT_STALE_AFTER);
        let max_size = self.max_size.map(|m| (m.span(), m.into_inner().0.0));
        let location = match (self.dir, self.url) {
            (Some(_), Some(url)) => {
                return Err((
                    url.span(),
                    "cache.url and cache.dir are mutually exclusive: keep one".into(),
                ));
            }
            (None, Some(url)) => {
                if let Some((span, _)) = max_size {
                    return Err((
                        span,
                        "cache.max_size applies to cache.dir only; object storage is sized by its own lifecycle rules"
                            .into(),
                    ));
                }
                CacheLocation::Url(parse_store_url(url.get_ref()).map_err(|e| (url.span(), e))?)
            }
            (Some(dir), None) if dir.get_ref().is_empty() => CacheLocation::Off {
                why: "cache.dir = \"\"".into(),
            },
            (Some(dir), None) => {
                let path = std::path::absolute(base.join(dir.get_ref()))
                    .map_err(|e| (dir.span(), format!("cannot make cache.dir absolute: {e}")))?;
                CacheLocation::Dir {
                    path,
                    max_size: max_size.map_or(DEFAULT_MAX_SIZE, |(_, bytes)| bytes),
                }
            }
            (None, None) => match platform_cache_dir(env) {
                Some(path) => CacheLocation::Dir {
                    path,
                    max_size: max_size.map_or(DEFAULT_MAX_SIZE, |(_, bytes)| bytes),
                },
                None => CacheLocation::Off {
                    why: "no default location: neither $XDG_CACHE_HOME nor $HOME is set; set cache.dir".into(),
                },
            },
        };
        Ok(CacheSettings {
            location,
            list_ttl,
            stale_if_error,
            stale_after,
            negative_ttl,
        })
    }
}

/// `$XDG_CACHE_HOME/modgate`, else `$HOME/.cache/modgate`. A relative
/// `$XDG_CACHE_HOME` is ignored, as the XDG spec says.
fn platform_cache_dir(env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let absolute = |name: &str| env(name).map(PathBuf::from).filter(|p| p.is_absolute());
    absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .map(|dir| dir.join("modgate"))
}

/// Parses and checks `cache.url`.
fn parse_store_url(text: &str) -> Result<StoreUrl, String> {
    let url = url::Url::parse(text).map_err(|e| format!("bad cache.url '{text}': {e}"))?;
    let service = match url.scheme() {
        "s3" => Service::S3,
        "gs" => Service::Gcs,
        "az" => Service::Azure,
        "file" => Service::File,
        other => {
            return Err(format!(
                "bad cache.url '{text}': unsupported scheme '{other}' (want s3://, gs://, az:// or file://)"
            ));
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "bad cache.url '{text}': credentials do not belong in the URL; they come from the environment (see docs/config.md)"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("bad cache.url '{text}': no query or fragment allowed"));
    }
    match service {
        Service::File if url.host_str().is_some_and(|h| !h.is_empty() && h != "localhost") => {
            return Err(format!(
                "bad cache.url '{text}': a file:// URL names a local directory, like file:///var/cache/modgate"
            ));
        }
        Service::File => {}
        _ if url.host_str().is_none_or(str::is_empty) => {
            return Err(format!(
                "bad cache.url '{text}': missing the bucket or container, like {}://bucket/prefix",
                url.scheme()
            ));
        }
        _ => {}
    }
    Ok(StoreUrl { url, service })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<CacheSettings, String> {
        Config::parse_in(text, "t.toml", Path::new("/etc/modgate"))
            .map(|c| c.cache)
            .map_err(|e| e.to_string())
    }

    fn resolve_with_env(vars: &[(&str, &str)]) -> CacheLocation {
        let vars: Vec<(String, OsString)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).into())).collect();
        let env = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        FileCache::default().resolve_in(Path::new(""), &env).unwrap().location
    }

    #[test]
    fn the_default_is_the_platform_cache_dir() {
        let dir = |p: &str| CacheLocation::Dir {
            path: PathBuf::from(p),
            max_size: DEFAULT_MAX_SIZE,
        };
        assert_eq!(
            resolve_with_env(&[("XDG_CACHE_HOME", "/xdg"), ("HOME", "/home/u")]),
            dir("/xdg/modgate")
        );
        assert_eq!(resolve_with_env(&[("HOME", "/home/u")]), dir("/home/u/.cache/modgate"));
        assert_eq!(
            resolve_with_env(&[("XDG_CACHE_HOME", "relative"), ("HOME", "/home/u")]),
            dir("/home/u/.cache/modgate")
        );
        assert!(matches!(resolve_with_env(&[]), CacheLocation::Off { .. }));
    }

    #[test]
    fn values_parse() {
        let c = parse(
            "[cache]\ndir = \"cache\"\nmax_size = \"512MiB\"\nlist_ttl = \"30s\"\nstale_if_error = \"1d\"\nnegative_ttl = \"5m\"\n",
        )
        .unwrap();
        assert_eq!(
            c.location,
            CacheLocation::Dir {
                path: PathBuf::from("/etc/modgate/cache"),
                max_size: 512 << 20
            }
        );
        assert_eq!(c.list_ttl, Duration::from_secs(30));
        assert_eq!(c.stale_if_error, Duration::from_secs(86_400));
        assert_eq!(c.negative_ttl, Duration::from_secs(300));

        let c = parse("[cache]\ndir = \"/srv/cache\"\n").unwrap();
        assert_eq!(
            c.location,
            CacheLocation::Dir {
                path: PathBuf::from("/srv/cache"),
                max_size: DEFAULT_MAX_SIZE
            }
        );
        assert_eq!(c.list_ttl, Duration::from_secs(60));
        assert_eq!(c.stale_if_error, Duration::from_secs(7 * 86_400));
        assert_eq!(c.negative_ttl, Duration::from_secs(60));

        let c = parse("[cache]\ndir = \"\"\n").unwrap();
        assert!(matches!(c.location, CacheLocation::Off { .. }));

        for (url, service) in [
            ("s3://bucket/prefix", Service::S3),
            ("s3://bucket", Service::S3),
            ("gs://bucket/p", Service::Gcs),
            ("az://container/p", Service::Azure),
            ("file:///var/cache/modgate", Service::File),
        ] {
            let c = parse(&format!("[cache]\nurl = \"{url}\"\n")).unwrap();
            let CacheLocation::Url(u) = c.location else {
                panic!("{url}: not a URL location")
            };
            assert_eq!(u.service, service, "{url}");
        }
    }

    #[test]
    fn relative_dirs_resolve_against_the_config_file() {
        let c = Config::parse("[cache]\ndir = \"c\"\n", "/srv/conf/modgate.toml").unwrap();
        assert_eq!(
            c.cache.location,
            CacheLocation::Dir {
                path: PathBuf::from("/srv/conf/c"),
                max_size: DEFAULT_MAX_SIZE
            }
        );
        // A config named relatively still yields an absolute path.
        let c = Config::parse("[cache]\ndir = \"c\"\n", "modgate.toml").unwrap();
        let CacheLocation::Dir { path, .. } = c.cache.location else {
            panic!("not a dir")
        };
        assert!(path.is_absolute() && path.ends_with("c"), "{}", path.display());
    }

    #[test]
    fn errors_carry_file_line_col() {
        let cases = [
            (
                "[cache]\ndir = \"/a\"\nurl = \"s3://b/p\"\n",
                "t.toml:3:7: cache.url and cache.dir are mutually exclusive",
            ),
            (
                "[cache]\nurl = \"s3://b/p\"\nmax_size = \"1GiB\"\n",
                "t.toml:3:12: cache.max_size applies to cache.dir only",
            ),
            ("[cache]\nmax_size = \"20 gigs\"\n", "t.toml:2:12: bad size '20 gigs'"),
            (
                "[cache]\nmax_size = \"0B\"\n",
                "t.toml:2:12: bad size '0B': must be greater than zero",
            ),
            ("[cache]\nlist_ttl = \"0s\"\n", "t.toml:2:12: bad duration '0s'"),
            (
                "[cache]\nstale_if_error = \"forever\"\n",
                "t.toml:2:18: bad duration 'forever'",
            ),
            ("[cache]\nnegative_ttl = \"-1m\"\n", "t.toml:2:16: bad duration '-1m'"),
            (
                "[cache]\nnegative_ttl = \"400000d\"\n",
                "t.toml:2:16: bad duration '400000d': at most 3650d (ten years)",
            ),
            (
                "[cache]\nurl = \"http://example.com/c\"\n",
                "t.toml:2:7: bad cache.url 'http://example.com/c': unsupported scheme 'http'",
            ),
            (
                "[cache]\nurl = \"s3:///p\"\n",
                "t.toml:2:7: bad cache.url 's3:///p': missing the bucket",
            ),
            (
                "[cache]\nurl = \"s3://k:s@b/p\"\n",
                "t.toml:2:7: bad cache.url 's3://k:s@b/p': credentials",
            ),
            (
                "[cache]\nurl = \"not a url\"\n",
                "t.toml:2:7: bad cache.url 'not a url'",
            ),
            ("[cache]\nsize = \"1GiB\"\n", "t.toml:2:1: unknown field `size`"),
        ];
        for (text, expected) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(expected), "{text:?}: expected {expected:?}, got {e:?}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
