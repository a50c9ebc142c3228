//! How `go` is configured on this machine: `go env -json` when `go` is on
//! PATH (it merges the environment, `go env -w` settings and defaults),
//! otherwise the environment; plus the proxy variables, the trust files,
//! and git's `http.sslCAInfo`.

use std::collections::BTreeMap;
use std::process::Command;

use serde::Serialize;

/// The settings doctor looks at.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GoEnv {
    /// Where the Go settings came from: `go env -json` or `environment`.
    pub from: String,
    /// GOPROXY, GOPRIVATE, GONOPROXY, GONOSUMDB, GOSUMDB, GOFLAGS,
    /// GOINSECURE (as `go env` reports them).
    pub go: BTreeMap<String, String>,
    /// HTTPS_PROXY, NO_PROXY, SSL_CERT_FILE, SSL_CERT_DIR (either case).
    pub process: BTreeMap<String, String>,
    /// git's `http.sslCAInfo`, when set.
    pub git_ca_info: Option<String>,
}

/// The Go settings doctor reads.
pub const GO_KEYS: [&str; 7] = [
    "GOPROXY",
    "GOPRIVATE",
    "GONOPROXY",
    "GONOSUMDB",
    "GOSUMDB",
    "GOFLAGS",
    "GOINSECURE",
];

/// The process variables doctor reads (upper case; the lower-case form is
/// used when the upper one is unset, as Go's httpproxy does).
pub const PROCESS_KEYS: [&str; 4] = ["HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR"];

impl GoEnv {
    /// Reads the settings.
    pub fn read() -> GoEnv {
        let (from, go) = match go_env_json() {
            Some(map) => ("go env -json".to_owned(), map),
            None => {
                let map = GO_KEYS
                    .iter()
                    .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
                    .collect();
                ("environment".to_owned(), map)
            }
        };
        let process = PROCESS_KEYS
            .iter()
            .filter_map(|k| {
                std::env::var(k)
                    .or_else(|_| std::env::var(k.to_lowercase()))
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(|v| (k.to_string(), v))
            })
            .collect();
        GoEnv {
            from,
            go,
            process,
            git_ca_info: git_ca_info(),
        }
    }

    /// A Go setting, `""` when unset.
    pub fn go(&self, key: &str) -> &str {
        self.go.get(key).map_or("", String::as_str)
    }

    /// A process variable, when set.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.process.get(key).map(String::as_str)
    }
}

/// `go env -json GOPROXY ...`, when `go` runs.
fn go_env_json() -> Option<BTreeMap<String, String>> {
    let out = Command::new("go").arg("env").arg("-json").args(GO_KEYS).output().ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// `git config --get http.sslCAInfo`, when git runs and it is set.
fn git_ca_info() -> Option<String> {
    let out = Command::new("git")
        .args(["config", "--get", "http.sslCAInfo"])
        .output()
        .ok()?;
    let value = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !value.is_empty()).then_some(value)
}
