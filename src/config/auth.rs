//! `[auth]`: Basic proxy authentication on the explicit listener, against
//! an htpasswd file.
//!
//! ```toml
//! [auth]
//! htpasswd = "users.htpasswd"   # bcrypt ($2y$, htpasswd -B) or sha-crypt ($5$, $6$) entries
//! realm = "modgate"
//! max_failures = 10             # failed logins per client address ...
//! lockout = "1m"                # ... within this time, then refused for it
//! ```
//!
//! The file itself is read when `serve` starts and by `check` (see
//! `auth::Users`); here only the settings are validated.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::syntax::{ConfigDuration, Located, Parsed, duration_or};

/// The `[auth]` table, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// The htpasswd file, absolute.
    pub htpasswd: PathBuf,
    /// The realm in `Proxy-Authenticate: Basic realm="..."`.
    pub realm: String,
    /// Failed logins from one client address within `lockout` before it
    /// is refused.
    pub max_failures: u32,
    /// How long failures are counted, and how long a client that reached
    /// `max_failures` is refused after its last failure.
    pub lockout: Duration,
}

/// `[auth]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileAuth {
    htpasswd: Spanned<String>,
    realm: Option<Spanned<String>>,
    max_failures: Option<Spanned<i64>>,
    lockout: Option<Parsed<ConfigDuration>>,
}

impl FileAuth {
    /// `htpasswd` as written, with where.
    pub(crate) fn written_paths(&self) -> Vec<(String, std::ops::Range<usize>)> {
        vec![(self.htpasswd.get_ref().clone(), self.htpasswd.span())]
    }

    pub(crate) fn resolve(self, base: &Path) -> Result<AuthSettings, Located> {
        if self.htpasswd.get_ref().trim().is_empty() {
            return Err((self.htpasswd.span(), "auth.htpasswd is empty".into()));
        }
        let realm = match self.realm {
            None => "modgate".to_owned(),
            Some(r)
                if r.get_ref().is_empty() || r.get_ref().chars().any(|c| c == '"' || c == '\\' || c.is_control()) =>
            {
                return Err((
                    r.span(),
                    "auth.realm must be non-empty, without quotes, backslashes or control characters".into(),
                ));
            }
            Some(r) => r.into_inner(),
        };
        let max_failures = match self.max_failures {
            None => 10,
            Some(n) => u32::try_from(*n.get_ref())
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| (n.span(), "auth.max_failures must be between 1 and 1000000".to_owned()))?,
        };
        Ok(AuthSettings {
            htpasswd: crate::config::paths::absolute(&base.join(self.htpasswd.get_ref())),
            realm,
            max_failures,
            lockout: duration_or(self.lockout, Duration::from_secs(60)),
        })
    }
}
