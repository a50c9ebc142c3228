//! `/healthz`: the process answers. `/readyz`: it can do its job: a config
//! is in effect, the proxy's listener accepts, and the module cache (when
//! there is one) can be written. Each check is one line; a failing one
//! says why, and the answer is then `503`.

use std::time::Duration;

use http::{Response, StatusCode};

use crate::admin::AdminState;
use crate::core::body::{Body, text};
use crate::core::timer;

/// How long the cache's write check may take.
const CACHE_CHECK: Duration = Duration::from_secs(5);

/// `/healthz`.
pub fn healthz() -> Response<Body> {
    text(StatusCode::OK, "ok")
}

/// `/readyz`: one line per check, `ok ...` or `fail ...`.
pub async fn readyz(state: &AdminState) -> Response<Body> {
    let ctx = state.live.current();
    let mut lines = vec![Check::pass(format!(
        "config {} (sha256 {})",
        ctx.config.source_path(),
        ctx.config.digest
    ))];
    lines.push(match state.proxy.accepting() {
        true => Check::pass(format!("listener {}", state.proxy.addr)),
        false => Check::fail(format!("listener {} is closed: shutting down", state.proxy.addr)),
    });
    if let Some(cache) = &ctx.cache {
        let store = cache.store();
        lines.push(match timer::timeout(CACHE_CHECK, store.ready()).await {
            Ok(Ok(())) => Check::pass(format!("cache {} is writable", store.backend())),
            Ok(Err(e)) => Check::fail(format!("cache {} is not writable: {e}", store.backend())),
            Err(_) => Check::fail(format!(
                "cache {} did not answer a write within {}s",
                store.backend(),
                CACHE_CHECK.as_secs()
            )),
        });
    }
    let ready = lines.iter().all(|c| c.ok);
    let body: Vec<String> = lines.into_iter().map(|c| c.line).collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, &body.join("\n"))
}

/// One line of `/readyz`.
struct Check {
    ok: bool,
    line: String,
}

impl Check {
    fn pass(what: String) -> Check {
        Check {
            ok: true,
            line: format!("ok   {what}"),
        }
    }

    fn fail(why: String) -> Check {
        Check {
            ok: false,
            line: format!("fail {}", crate::core::escape::escape(&why)),
        }
    }
}
