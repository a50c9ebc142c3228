//! `[parent]`: the corporate proxy every upstream connection goes through.
//!
//! ```toml
//! [parent]
//! url = "http://user:pass@proxy.corp.example:8080"   # or "env"
//! no_parent = ["*.corp.example.com", "10.0.0.0/8"]
//! ```
//!
//! `url = "env"` takes `HTTPS_PROXY` (for tunnels and TLS upstreams),
//! `HTTP_PROXY` (for plain-HTTP forwards) and `NO_PROXY` from modgate's
//! own environment when the config is loaded, upper or lower case, the
//! upper-case one first, as `go` reads them.

use serde::Deserialize;
use toml::Spanned;

use crate::config::syntax::Located;
use crate::core::proxy_url::ProxyUrl;
use crate::policy::parent::{Exemption, NoParent, ParentRoute};

/// `[parent]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileParent {
    url: Option<Spanned<String>>,
    no_parent: Option<Vec<Spanned<String>>>,
}

/// Reads an environment variable; the process environment in `serve`, a
/// table in tests.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, ignoring unset and empty variables.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl FileParent {
    /// The validated parent route; empty (everything direct) without `url`.
    pub(crate) fn resolve(self, env: Env<'_>) -> Result<ParentRoute, Located> {
        let mut no_parent = Vec::new();
        for entry in self.no_parent.unwrap_or_default() {
            no_parent.push(entry.get_ref().parse::<Exemption>().map_err(|e| (entry.span(), e))?);
        }
        let Some(url) = self.url else {
            return Ok(ParentRoute {
                no_parent: NoParent::new(no_parent),
                ..ParentRoute::default()
            });
        };
        let span = url.span();
        let text = url.into_inner();
        if text.trim() != "env" {
            let parent = ProxyUrl::parse(text.trim()).map_err(|e| (span.clone(), e))?;
            return Ok(ParentRoute {
                https: Some(parent.clone()),
                http: Some(parent),
                no_parent: NoParent::new(no_parent),
                from_env: false,
            });
        }
        let var = |upper: &str| env(upper).or_else(|| env(&upper.to_ascii_lowercase()));
        let from = |name: &str| -> Result<Option<ProxyUrl>, Located> {
            var(name)
                .map(|v| ProxyUrl::parse(v.trim()).map_err(|e| (span.clone(), format!("url = \"env\": {name}: {e}"))))
                .transpose()
        };
        let https = from("HTTPS_PROXY")?;
        let http = from("HTTP_PROXY")?;
        for entry in var("NO_PROXY").unwrap_or_default().split(',') {
            if entry.trim().is_empty() {
                continue;
            }
            let exemption = entry
                .parse::<Exemption>()
                .map_err(|e| (span.clone(), format!("url = \"env\": NO_PROXY: {e}")))?;
            no_parent.push(exemption);
        }
        Ok(ParentRoute {
            https,
            http,
            no_parent: NoParent::new(no_parent),
            from_env: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::host::Authority;

    fn resolve(text: &str, env: &[(&str, &str)]) -> Result<ParentRoute, String> {
        let file: FileParent = toml::from_str(text).unwrap();
        let lookup = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
        file.resolve(&lookup).map_err(|(_, e)| e)
    }

    #[test]
    fn a_url_is_the_parent_for_every_leg() {
        let route = resolve("url = \"http://u:p@proxy.corp:8080\"\nno_parent = [\".corp\"]", &[]).unwrap();
        assert_eq!(route.https.as_ref().unwrap().to_string(), "http://proxy.corp:8080");
        assert_eq!(route.https, route.http);
        assert!(
            route
                .no_parent
                .matches(&Authority::parse_connect("git.corp:443").unwrap())
        );
        assert!(!route.from_env);
    }

    #[test]
    fn env_reads_the_proxy_variables_upper_case_first() {
        let env = [
            ("HTTPS_PROXY", "http://alice:s3cret@tls-proxy:3128"),
            ("https_proxy", "http://ignored:1"),
            ("http_proxy", "plain-proxy:8080"),
            ("NO_PROXY", "localhost, .corp.example,10.0.0.0/8,"),
        ];
        let route = resolve("url = \"env\"\nno_parent = [\"extra.example\"]", &env).unwrap();
        assert_eq!(route.https.as_ref().unwrap().to_string(), "http://tls-proxy:3128");
        assert_eq!(route.https.as_ref().unwrap().user(), Some("alice"));
        assert_eq!(route.http.as_ref().unwrap().to_string(), "http://plain-proxy:8080");
        let listed: Vec<String> = route.no_parent.entries().iter().map(ToString::to_string).collect();
        assert_eq!(listed, ["extra.example", "localhost", ".corp.example", "10.0.0.0/8"]);
        assert!(route.from_env);
        let none = resolve("url = \"env\"", &[]).unwrap();
        assert!(none.https.is_none() && none.http.is_none());
    }

    #[test]
    fn bad_values_are_refused_with_what_is_wrong() {
        assert!(
            resolve("url = \"https://proxy:443\"", &[])
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            resolve("url = \"env\"", &[("HTTPS_PROXY", "socks5://x:1")])
                .unwrap_err()
                .starts_with("url = \"env\": HTTPS_PROXY: bad proxy URL")
        );
        assert!(
            resolve("no_parent = [\"a b\"]", &[])
                .unwrap_err()
                .contains("bad no_parent entry")
        );
    }
}
