//! The checks that go on the network: whether modgate answers at the
//! proxy URL, which of its rules applies to the module (the `explain`
//! logic, on the config doctor was given), and a real fetch of the
//! module's `.info` along the path `go` would take, with `inspect`'s
//! verdict on every TLS chain met, naming the interceptor.

use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cli::doctor::checks::{DEFAULT_GOPROXY, Finding, authority, bypasses, entries};
use crate::cli::doctor::goenv::GoEnv;
use crate::cli::inspect::{Source, inspect};
use crate::config::Config;
use crate::config::dns::DnsSettings;
use crate::core::host::{Authority, HostOverrides};
use crate::core::proxy_url::ProxyUrl;
use crate::gomod::escape::encode_case;
use crate::policy::explain::{self, ExplainTarget, Explainer, Viewpoint};
use crate::policy::glob::ModuleGlob;
use crate::tls::chain::Verdict;
use crate::upstream::dial::{Dialer, DirectDialer};
use crate::upstream::parent::ParentDialer;
use crate::upstream::resolve::Resolver;

/// Time allowed for each network step.
const STEP: Duration = Duration::from_secs(15);
/// The most of a body doctor reads.
const MAX_BODY: usize = 64 * 1024;

/// Whether modgate answers at `url`.
pub async fn proxy_answers(url: &str) -> Finding {
    let fix = "start it (modgate serve), or point HTTPS_PROXY / --proxy at where it listens";
    let Some(addr) = authority(url) else {
        return Finding::fail("proxy", format!("'{url}' is not an http://host:port URL"), fix);
    };
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(&addr).await?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: modgate\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        s.take(MAX_BODY as u64).read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).into_owned())
    };
    match tokio::time::timeout(STEP, exchange).await {
        Ok(Ok(reply)) if reply.contains("modgate:") => Finding::pass("proxy", format!("modgate answers at {url}")),
        Ok(Ok(reply)) => Finding::fail(
            "proxy",
            format!(
                "{url} answers, but not as modgate: {}",
                reply.lines().next().unwrap_or("(nothing)")
            ),
            fix,
        ),
        Ok(Err(e)) => Finding::fail("proxy", format!("cannot reach modgate at {url}: {e}"), fix),
        Err(_) => Finding::timeout(
            "proxy",
            format!("modgate at {url} did not answer within {}s", STEP.as_secs()),
        ),
    }
}

impl Finding {
    fn timeout(check: &'static str, message: String) -> Finding {
        Finding::fail(check, message, "check that the host is up and reachable from here")
    }
}

/// Which rule of `config` applies to `module`, as `modgate explain` says,
/// for `user` (the one in the proxy URL, for `users` rules).
pub fn rule_for(config: &Config, module: &str, user: Option<&str>) -> Finding {
    let target = match ExplainTarget::parse(module) {
        Ok(t) => t,
        Err(e) => return Finding::fail("rule", format!("'{module}': {e}"), "give MODULE as path[@version]"),
    };
    let explainer = Explainer {
        policy: &config.policy,
        hosts: &config.hosts,
        mirror_settings: &|url| config.mirrors.get(url).describe(),
        health: None,
    };
    let who = Viewpoint {
        from: std::net::IpAddr::from([127, 0, 0, 1]),
        user,
        transparent: None,
    };
    let text = match explain::explain(&explainer, &who, &target) {
        Ok(text) => text,
        Err(e) => return Finding::fail("rule", format!("'{module}': {e}"), "give MODULE as path[@version]"),
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or_else(String::new, |v| v.trim().to_owned())
    };
    let (rule, action) = (field("rule:"), field("action:"));
    let message = format!("modgate ({}): rule {rule}, {action}", config.source);
    match action.starts_with("block") {
        true => Finding::fail(
            "rule",
            message,
            format!("modgate refuses {module}: ask its operator, or see `modgate explain {module}`"),
        ),
        false => Finding::pass("rule", message),
    }
}

/// The module path and the GOPROXY path of its `.info` (or `@latest`).
fn info_path(module: &str) -> (String, String) {
    let (path, version) = module.split_once('@').unwrap_or((module, ""));
    let suffix = match version {
        "" | "latest" => "/@latest".to_owned(),
        v => format!("/@v/{}.info", encode_case(v)),
    };
    (path.to_owned(), format!("/{}{suffix}", encode_case(path)))
}

/// Whether `module` matches one of the comma-separated globs in `list`.
fn listed(list: &str, module: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .any(|g| g.parse::<ModuleGlob>().is_ok_and(|g| g.matches(module)))
}

/// Fetches `module`'s `.info` the way go would, entry by entry.
pub async fn fetch(env: &GoEnv, module: &str, config: Option<&Config>) -> Vec<Finding> {
    let (path, rel) = info_path(module);
    if listed(env.go("GONOPROXY"), &path) {
        return vec![Finding::pass(
            "fetch",
            format!("{path} is private (GONOPROXY): go fetches it from its origin with git, not through a proxy"),
        )];
    }
    let goproxy = match env.go("GOPROXY") {
        "" => DEFAULT_GOPROXY,
        v => v,
    };
    let mut found = Vec::new();
    for entry in entries(goproxy) {
        match entry.name.as_str() {
            "off" => {
                found.push(Finding::fail(
                    "fetch",
                    format!("GOPROXY reaches 'off' before an answer for {module}"),
                    "add the mirror that has it, or 'direct', before 'off'",
                ));
                return found;
            }
            "direct" => {
                found.push(Finding::pass(
                    "fetch",
                    format!("go would fetch {module} from its origin (direct); not tried here"),
                ));
                return found;
            }
            base => {
                let url = format!("{}{rel}", base.trim_end_matches('/'));
                let (finding, status) = fetch_one(env, &url, config, &mut found).await;
                let moves_on = matches!(status, Some(404 | 410)) || (status.is_none() && entry.then == Some('|'));
                let last = entry.then.is_none();
                if moves_on && !last {
                    found.push(Finding::pass("fetch", format!("{} ; go moves on", finding.message)));
                    continue;
                }
                found.push(finding);
                return found;
            }
        }
    }
    found
}

/// One GET of `url`: the TLS verdict (pushed to `found`) and the fetch.
async fn fetch_one(
    env: &GoEnv,
    url: &str,
    config: Option<&Config>,
    found: &mut Vec<Finding>,
) -> (Finding, Option<u16>) {
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            return (
                Finding::fail("fetch", format!("bad URL {url}: {e}"), "fix GOPROXY"),
                None,
            );
        }
    };
    let https = uri.scheme_str() == Some("https");
    let Some(dest) = authority(url).and_then(|a| Authority::parse_connect(&a).ok()) else {
        return (Finding::fail("fetch", format!("bad URL {url}"), "fix GOPROXY"), None);
    };
    let host = dest.host.to_string().trim_matches(['[', ']']).to_owned();
    let proxy = https
        .then(|| env.var("HTTPS_PROXY"))
        .flatten()
        .filter(|_| {
            !env.var("NO_PROXY")
                .is_some_and(|no| no.split(',').any(|e| bypasses(e, &host)))
        })
        .map(str::to_owned);
    let through = proxy.as_deref().map(|p| format!(" through {p}")).unwrap_or_default();
    if https {
        // Straight to the host, go resolves its name itself: the chain
        // judged must be the one go meets, not one a [hosts] entry of the
        // config points to.
        let direct;
        let config = match (&proxy, config) {
            (None, Some(c)) if c.hosts != HostOverrides::default() => {
                direct = Config {
                    hosts: HostOverrides::default(),
                    ..c.clone()
                };
                Some(&direct)
            }
            _ => config,
        };
        found.push(verdict(&dest, proxy.clone(), &through, config).await);
    }
    let result = tokio::time::timeout(STEP, get(&dest, &host, https, proxy.as_deref(), &uri)).await;
    match result {
        Err(_) => (Finding::timeout("fetch", format!("GET {url}{through} timed out")), None),
        Ok(Err(e)) => {
            // Only an https:// fetch was preceded by a tls line.
            let fix = match (https, &proxy) {
                (true, _) => "see the tls line above, or `modgate inspect` for the host".to_owned(),
                (false, Some(p)) => format!("check that the proxy {p} is running and reachable from here"),
                (false, None) => format!("check that {dest} is running and reachable from here (is modgate started?)"),
            };
            (Finding::fail("fetch", format!("GET {url}{through}: {e}"), &fix), None)
        }
        Ok(Ok((status, body))) => {
            let first = body.lines().next().unwrap_or("").chars().take(300).collect::<String>();
            let message = format!("GET {url}{through}: {status} {first}");
            match status {
                200 => (Finding::pass("fetch", message), Some(status)),
                _ => (
                    Finding::fail(
                        "fetch",
                        message,
                        "the answer above says what failed; for a 403 from modgate, see `modgate explain MODULE`",
                    ),
                    Some(status),
                ),
            }
        }
    }
}

/// `inspect`'s verdict on the chain `dest` presents (through `proxy`).
async fn verdict(dest: &Authority, proxy: Option<String>, through: &str, config: Option<&Config>) -> Finding {
    let source = Source::Host {
        target: dest.to_string(),
        proxy,
        sni: None,
    };
    let i = match inspect(source, config).await {
        Ok(i) => i,
        Err(e) => {
            return Finding::fail(
                "tls",
                format!("{dest}{through}: {e}"),
                "modgate inspect HOST for details",
            );
        }
    };
    let r = &i.report;
    let by = format!(
        "issued by '{}' ({})",
        r.issuer,
        r.vendor.as_deref().unwrap_or("unknown product")
    );
    match r.verdict {
        Verdict::Public => Finding::pass("tls", format!("{dest}{through}: public chain")),
        Verdict::Intercepted => Finding::pass(
            "tls",
            format!("{dest}{through}: intercepted, {by}; trusted by the local roots"),
        ),
        Verdict::Untrusted => Finding::fail(
            "tls",
            format!(
                "{dest}{through}: untrusted chain {by}: go fails with 'x509: certificate signed by unknown authority'"
            ),
            i.fix.join("; "),
        ),
    }
}

/// GET `uri` at `dest`, over TLS with the roots go uses (the system store,
/// honouring SSL_CERT_FILE and SSL_CERT_DIR) when `https`.
async fn get(
    dest: &Authority,
    host: &str,
    https: bool,
    proxy: Option<&str>,
    uri: &http::Uri,
) -> Result<(u16, String), String> {
    let resolver = Arc::new(Resolver::new(HostOverrides::default(), &DnsSettings::default()));
    let dialer: Box<dyn Dialer> = match proxy {
        Some(p) => Box::new(ParentDialer::through(ProxyUrl::parse(p)?, DirectDialer::new(resolver))),
        None => Box::new(DirectDialer::new(resolver)),
    };
    let stream = dialer.dial(dest, None, STEP).await.map_err(|e| e.to_string())?.stream;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    if !https {
        return request(stream, host, path).await;
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    request(tls, host, path).await
}

/// One HTTP/1.1 GET over `io`; the status and at most [`MAX_BODY`] bytes.
async fn request<S>(io: S, host: &str, path: &str) -> Result<(u16, String), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", host)
        .header("user-agent", "modgate-doctor")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_paths() {
        assert_eq!(
            info_path("github.com/Azure/x@v1.2.3"),
            (
                "github.com/Azure/x".into(),
                "/github.com/!azure/x/@v/v1.2.3.info".into()
            )
        );
        assert_eq!(info_path("golang.org/x/mod").1, "/golang.org/x/mod/@latest");
    }
}
