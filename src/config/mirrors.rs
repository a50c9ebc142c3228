//! `[mirror."URL"]`: per-mirror settings for the module proxies that rules'
//! `mirrors` lists name: their own connect and first-byte timeouts, the
//! passive health check (how many failures mark a mirror down, and for how
//! long), and the credentials a private mirror needs.
//!
//! The GOPROXY string of a rule stays the list; a table only adds settings
//! to a URL in it. Credentials never appear in the file: a table names the
//! environment variable, the file or the `.netrc` they come from. They are
//! read once at load (and at each reload), and sent only to that mirror's
//! host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use http::HeaderValue;
use serde::Deserialize;
use toml::Spanned;

use crate::config::syntax::{ConfigDuration, Located, Parsed};
use crate::core::duration::fmt_duration;
use crate::policy::mirrors::{Mirror, MirrorList};

/// Failures in a row that mark a mirror down, unless its table says.
pub const DEFAULT_MAX_FAILS: u32 = 3;
/// How long a mirror stays down the first time, unless its table says.
pub const DEFAULT_FAIL_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a mirror stays down as the backoff doubles, unless its
/// table says.
pub const DEFAULT_MAX_FAIL_TIMEOUT: Duration = Duration::from_secs(300);

/// A secret read from the environment or a file. It never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How a mirror is logged in to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// HTTP Basic.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// `Authorization: Bearer TOKEN`.
    Bearer(Secret),
}

impl Credential {
    /// The `Authorization` header value, marked sensitive.
    pub fn header(&self) -> Option<HeaderValue> {
        let text = match self {
            Credential::Basic { username, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{}", password.expose()))
            ),
            Credential::Bearer(token) => format!("Bearer {}", token.expose()),
        };
        let mut value = HeaderValue::from_str(&text).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// A mirror's credential and where it came from (for `check`, masked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The credential.
    pub credential: Credential,
    /// Where it was read, e.g. `basic: user ci, password from env ATHENS_PASSWORD`.
    pub from: String,
}

/// The settings of one mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSettings {
    /// Time allowed to connect; `None`: `timeouts.connect`.
    pub connect: Option<Duration>,
    /// Time allowed for the response head; `None`: `timeouts.header`.
    pub first_byte: Option<Duration>,
    /// Failures in a row that mark the mirror down; 0 never does.
    pub max_fails: u32,
    /// How long the mirror stays down the first time.
    pub fail_timeout: Duration,
    /// The cap of the doubling down time.
    pub max_fail_timeout: Duration,
    /// The credential sent to the mirror's host.
    pub login: Option<Login>,
}

impl Default for MirrorSettings {
    fn default() -> MirrorSettings {
        MirrorSettings {
            connect: None,
            first_byte: None,
            max_fails: DEFAULT_MAX_FAILS,
            fail_timeout: DEFAULT_FAIL_TIMEOUT,
            max_fail_timeout: DEFAULT_MAX_FAIL_TIMEOUT,
            login: None,
        }
    }
}

impl MirrorSettings {
    /// One line for `check`: the timeouts, the health check and the login
    /// (never the secret).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = self.connect {
            parts.push(format!("connect {}", fmt_duration(c)));
        }
        if let Some(f) = self.first_byte {
            parts.push(format!("first byte {}", fmt_duration(f)));
        }
        if self.max_fails == 0 {
            parts.push("never marked down".to_owned());
        } else {
            parts.push(format!(
                "down after {} failures for {} (doubling up to {})",
                self.max_fails,
                fmt_duration(self.fail_timeout),
                fmt_duration(self.max_fail_timeout)
            ));
        }
        if let Some(login) = &self.login {
            parts.push(format!("login {}", login.from));
        }
        parts.join(", ")
    }
}

/// Every `[mirror."URL"]` table, by mirror URL (as the lists write it,
/// without a trailing slash).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorTable {
    by_url: BTreeMap<String, MirrorSettings>,
    default: MirrorSettings,
}

impl MirrorTable {
    /// The settings of `url`: its table's, or the defaults.
    pub fn get(&self, url: &str) -> &MirrorSettings {
        self.by_url.get(url).unwrap_or(&self.default)
    }

    /// The tables, by URL.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &MirrorSettings)> {
        self.by_url.iter()
    }

    /// The table URLs no list in `lists` names: settings that apply to
    /// nothing, most likely a typo (`check` warns).
    pub fn unused<'a>(&'a self, lists: impl IntoIterator<Item = &'a MirrorList>) -> Vec<&'a str> {
        let named: Vec<String> = lists
            .into_iter()
            .flat_map(|l| l.entries.iter())
            .filter_map(|e| match &e.mirror {
                Mirror::Proxy(url) => Some(url.clone()),
                _ => None,
            })
            .collect();
        self.by_url
            .keys()
            .filter(|url| !named.contains(url))
            .map(String::as_str)
            .collect()
    }
}

/// `[mirror."URL"]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileMirror {
    connect: Option<Parsed<ConfigDuration>>,
    first_byte: Option<Parsed<ConfigDuration>>,
    max_fails: Option<u32>,
    fail_timeout: Option<Parsed<ConfigDuration>>,
    max_fail_timeout: Option<Parsed<ConfigDuration>>,
    auth: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    username_env: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    netrc_file: Option<Spanned<String>>,
}

/// Resolves the tables; relative credential files are resolved against
/// `base`.
pub(crate) fn resolve(tables: BTreeMap<Spanned<String>, FileMirror>, base: &Path) -> Result<MirrorTable, Located> {
    let mut by_url = BTreeMap::new();
    for (url, table) in tables {
        let span = url.span();
        let text = url.into_inner();
        let list: MirrorList = text
            .parse()
            .map_err(|e: String| (span.clone(), format!("[mirror.\"{text}\"]: {e}")))?;
        let key = match list.entries.as_slice() {
            [entry] => match &entry.mirror {
                Mirror::Proxy(url) => url.clone(),
                other => {
                    return Err((
                        span,
                        format!(
                            "[mirror.\"{text}\"]: only module proxy URLs (https:// or http://) have settings, not '{other}'"
                        ),
                    ));
                }
            },
            _ => {
                return Err((span, format!("[mirror.\"{text}\"]: one URL per table, not a list")));
            }
        };
        let settings = table.resolve(&key, &span, base)?;
        if by_url.insert(key.clone(), settings).is_some() {
            return Err((span, format!("[mirror.\"{text}\"]: {key} has two tables")));
        }
    }
    Ok(MirrorTable {
        by_url,
        default: MirrorSettings::default(),
    })
}

impl FileMirror {
    fn resolve(self, url: &str, span: &std::ops::Range<usize>, base: &Path) -> Result<MirrorSettings, Located> {
        let d = MirrorSettings::default();
        let fail_timeout = self.fail_timeout.as_ref().map_or(d.fail_timeout, |p| p.0.0);
        let max_fail_timeout = self
            .max_fail_timeout
            .as_ref()
            .map_or(d.max_fail_timeout.max(fail_timeout), |p| p.0.0);
        if max_fail_timeout < fail_timeout {
            return Err((
                span.clone(),
                format!(
                    "[mirror.\"{url}\"]: max_fail_timeout ({}) is shorter than fail_timeout ({})",
                    fmt_duration(max_fail_timeout),
                    fmt_duration(fail_timeout)
                ),
            ));
        }
        // Durations are more than zero already (the syntax refuses 0).
        let connect = self.connect.as_ref().map(|p| p.0.0);
        let first_byte = self.first_byte.as_ref().map(|p| p.0.0);
        let login = self.login(url, base)?;
        Ok(MirrorSettings {
            connect,
            first_byte,
            max_fails: self.max_fails.unwrap_or(d.max_fails),
            fail_timeout,
            max_fail_timeout,
            login,
        })
    }

    /// The credential the table describes, read now.
    fn login(&self, url: &str, base: &Path) -> Result<Option<Login>, Located> {
        let present: Vec<(&str, &Spanned<String>)> = [
            ("username", &self.username),
            ("username_env", &self.username_env),
            ("password_env", &self.password_env),
            ("password_file", &self.password_file),
            ("token_env", &self.token_env),
            ("token_file", &self.token_file),
            ("netrc_file", &self.netrc_file),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        let Some(auth) = &self.auth else {
            if let Some((key, value)) = present.first() {
                return Err((
                    value.span(),
                    format!("{key} needs auth = \"basic\", \"bearer\" or \"netrc\" in [mirror.\"{url}\"]"),
                ));
            }
            return Ok(None);
        };
        let allowed: &[&str] = match auth.get_ref().as_str() {
            "basic" => &["username", "username_env", "password_env", "password_file"],
            "bearer" => &["token_env", "token_file"],
            "netrc" => &["netrc_file"],
            other => {
                return Err((
                    auth.span(),
                    format!("bad auth '{other}': expected \"basic\", \"bearer\" or \"netrc\""),
                ));
            }
        };
        if let Some((key, value)) = present.iter().find(|(k, _)| !allowed.contains(k)) {
            return Err((
                value.span(),
                format!("{key} is not used with auth = \"{}\"", auth.get_ref()),
            ));
        }
        let login = match auth.get_ref().as_str() {
            "basic" => {
                let (username, user_from) = match (&self.username, &self.username_env) {
                    (Some(u), None) => (u.get_ref().clone(), format!("user {}", u.get_ref())),
                    (None, Some(env)) => (read_env(env)?.0, format!("user from env {}", env.get_ref())),
                    (Some(u), Some(_)) => return Err((u.span(), "give username or username_env, not both".into())),
                    (None, None) => {
                        return Err((auth.span(), "auth = \"basic\" needs username or username_env".into()));
                    }
                };
                if username.contains(':') {
                    return Err((auth.span(), "a Basic user name cannot contain ':'".into()));
                }
                let (password, pass_from) = one_secret(
                    auth,
                    ("password_env", &self.password_env),
                    ("password_file", &self.password_file),
                    base,
                )?;
                Login {
                    credential: Credential::Basic { username, password },
                    from: format!("basic: {user_from}, password {pass_from}"),
                }
            }
            "bearer" => {
                let (token, from) = one_secret(
                    auth,
                    ("token_env", &self.token_env),
                    ("token_file", &self.token_file),
                    base,
                )?;
                Login {
                    credential: Credential::Bearer(token),
                    from: format!("bearer: token {from}"),
                }
            }
            _ => netrc_login(url, auth, self.netrc_file.as_ref(), base)?,
        };
        if login.credential.header().is_none() {
            return Err((
                auth.span(),
                "the credential holds characters a header cannot carry".into(),
            ));
        }
        Ok(Some(login))
    }
}

/// The secret from exactly one of an environment variable and a file.
fn one_secret(
    auth: &Spanned<String>,
    (env_key, env): (&str, &Option<Spanned<String>>),
    (file_key, file): (&str, &Option<Spanned<String>>),
    base: &Path,
) -> Result<(Secret, String), Located> {
    match (env, file) {
        (Some(env), None) => read_env(env).map(|(s, _)| (Secret(s), format!("from env {}", env.get_ref()))),
        (None, Some(file)) => {
            let path = base.join(file.get_ref());
            let text = std::fs::read_to_string(&path)
                .map_err(|e| (file.span(), format!("{file_key}: cannot read {}: {e}", path.display())))?;
            let secret = text.trim_end_matches(['\r', '\n']).to_owned();
            if secret.is_empty() {
                return Err((file.span(), format!("{file_key}: {} is empty", path.display())));
            }
            Ok((Secret(secret), format!("from file {}", path.display())))
        }
        (Some(env), Some(_)) => Err((env.span(), format!("give {env_key} or {file_key}, not both"))),
        (None, None) => Err((
            auth.span(),
            format!("auth = \"{}\" needs {env_key} or {file_key}", auth.get_ref()),
        )),
    }
}

/// The value of the environment variable `env` names; unset or empty is an
/// error at `env`.
fn read_env(env: &Spanned<String>) -> Result<(String, ()), Located> {
    match std::env::var(env.get_ref()) {
        Ok(v) if !v.is_empty() => Ok((v, ())),
        Ok(_) => Err((env.span(), format!("environment variable {} is empty", env.get_ref()))),
        Err(_) => Err((env.span(), format!("environment variable {} is not set", env.get_ref()))),
    }
}

/// The login for `url`'s host from a `.netrc` file: `netrc_file`, else
/// `$NETRC`, else `~/.netrc` (as go reads it).
fn netrc_login(
    url: &str,
    auth: &Spanned<String>,
    file: Option<&Spanned<String>>,
    base: &Path,
) -> Result<Login, Located> {
    let (path, span) = match file {
        Some(f) => (base.join(f.get_ref()), f.span()),
        None => match std::env::var_os("NETRC").filter(|v| !v.is_empty()) {
            Some(p) => (PathBuf::from(p), auth.span()),
            None => match std::env::var_os("HOME") {
                Some(home) => (PathBuf::from(home).join(".netrc"), auth.span()),
                None => return Err((auth.span(), "auth = \"netrc\": no netrc_file, $NETRC or $HOME".into())),
            },
        },
    };
    let host = http::Uri::try_from(url)
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .unwrap_or_default();
    let netrc = netrc::Netrc::from_file(&path).map_err(|e| (span.clone(), format!("netrc {}: {e}", path.display())))?;
    let entry = netrc
        .hosts
        .get(&host)
        .or_else(|| netrc.hosts.get("default"))
        .ok_or_else(|| {
            (
                span.clone(),
                format!("netrc {} has no machine {host} (nor a default)", path.display()),
            )
        })?;
    if entry.login.is_empty() || entry.password.is_empty() {
        return Err((
            span,
            format!("netrc {}: machine {host} needs a login and a password", path.display()),
        ));
    }
    Ok(Login {
        credential: Credential::Basic {
            username: entry.login.clone(),
            password: Secret(entry.password.clone()),
        },
        from: format!("basic: from netrc {} (machine {host})", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn err(text: &str) -> String {
        Config::parse(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn tables_parse_with_defaults_and_their_own_values() {
        let c = Config::parse(
            "[mirror.\"https://goproxy.cn/\"]\nconnect = \"2s\"\nfirst_byte = \"5s\"\nmax_fails = 1\nfail_timeout = \"10s\"\n",
            "t.toml",
        )
        .unwrap();
        let m = c.mirrors.get("https://goproxy.cn");
        assert_eq!(m.connect, Some(std::time::Duration::from_secs(2)));
        assert_eq!(m.first_byte, Some(std::time::Duration::from_secs(5)));
        assert_eq!(m.max_fails, 1);
        assert_eq!(m.fail_timeout, std::time::Duration::from_secs(10));
        assert_eq!(m.max_fail_timeout, super::DEFAULT_MAX_FAIL_TIMEOUT);
        assert_eq!(c.mirrors.get("https://other.test"), &super::MirrorSettings::default());
    }

    #[test]
    fn credentials_come_from_env_or_file_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cr3t-token\n").unwrap();
        let path = dir.path().join("c.toml");
        let text = "[mirror.\"https://athens.corp\"]\nauth = \"bearer\"\ntoken_file = \"token\"\n";
        let c = Config::parse(text, path.to_str().unwrap()).unwrap();
        let m = c.mirrors.get("https://athens.corp");
        let login = m.login.as_ref().unwrap();
        assert_eq!(
            login.credential.header().unwrap().to_str().unwrap(),
            "Bearer s3cr3t-token"
        );
        assert!(login.credential.header().unwrap().is_sensitive());
        assert!(!format!("{c:?}").contains("s3cr3t"), "Debug masks the secret");
        assert!(!m.describe().contains("s3cr3t"), "{}", m.describe());
        assert!(m.describe().contains("bearer: token from file"), "{}", m.describe());
    }

    #[test]
    fn bad_tables_are_refused_at_their_place() {
        let e = err("[mirror.\"goproxy.cn\"]\nmax_fails = 1\n");
        assert!(e.starts_with("t.toml:1:9: [mirror.\"goproxy.cn\"]: bad mirror"), "{e}");
        let e = err("[mirror.\"direct\"]\nmax_fails = 1\n");
        assert!(e.contains("only module proxy URLs"), "{e}");
        let e = err("[mirror.\"https://a.test\"]\nfail_timeout = \"1m\"\nmax_fail_timeout = \"10s\"\n");
        assert!(
            e.contains("max_fail_timeout (10s) is shorter than fail_timeout (1m)"),
            "{e}"
        );
        let e = err("[mirror.\"https://a.test\"]\ntoken_env = \"X\"\n");
        assert!(e.starts_with("t.toml:2:13: token_env needs auth"), "{e}");
        let e = err("[mirror.\"https://a.test\"]\nauth = \"basic\"\nusername = \"u\"\ntoken_env = \"X\"\n");
        assert!(
            e.starts_with("t.toml:4:13: token_env is not used with auth = \"basic\""),
            "{e}"
        );
        let e = err("[mirror.\"https://a.test\"]\nauth = \"bearer\"\ntoken_env = \"MODGATE_TEST_SURELY_UNSET_VAR\"\n");
        assert!(
            e.starts_with("t.toml:3:13: environment variable MODGATE_TEST_SURELY_UNSET_VAR is not set"),
            "{e}"
        );
        let e = err("[mirror.\"https://a.test\"]\nauth = \"magic\"\n");
        assert!(e.starts_with("t.toml:2:8: bad auth 'magic'"), "{e}");
        let e = err("[mirror.\"https://a.test\"]\nconnect = \"0s\"\n");
        assert!(
            e.starts_with("t.toml:2:11: bad duration '0s': must be greater than zero"),
            "{e}"
        );
        let e = err("[mirror.\"https://a.test\"]\nbogus = 1\n");
        assert!(e.contains("unknown field `bogus`"), "{e}");
    }

    #[test]
    fn netrc_gives_the_hosts_login() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("netrc"),
            "machine other.test login x password y\nmachine athens.corp login ci password hunter2\n",
        )
        .unwrap();
        let path = dir.path().join("c.toml");
        let text = "[mirror.\"https://athens.corp:8443/go\"]\nauth = \"netrc\"\nnetrc_file = \"netrc\"\n";
        let c = Config::parse(text, path.to_str().unwrap()).unwrap();
        let login = c.mirrors.get("https://athens.corp:8443/go").login.clone().unwrap();
        assert_eq!(
            login.credential,
            super::Credential::Basic {
                username: "ci".into(),
                password: super::Secret("hunter2".into())
            }
        );
        let text = "[mirror.\"https://nobody.corp\"]\nauth = \"netrc\"\nnetrc_file = \"netrc\"\n";
        let e = Config::parse(text, path.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("has no machine nobody.corp"), "{e}");
    }
}
