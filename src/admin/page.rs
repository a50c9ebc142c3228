//! `/`: the admin page. One server-rendered HTML page with its own small
//! stylesheet, no script and nothing loaded from elsewhere; it refreshes
//! itself every [`REFRESH_SECS`] seconds and has a refresh link.
//!
//! Sections: the config in effect and the last reload, the interceptors
//! seen (with links to their saved chains), the module cache, each
//! mirror's health, the recent decisions, and the rules as `modgate check`
//! prints them.

use std::fmt::Write as _;
use std::time::Duration;

use http::{Response, header};

use crate::admin::AdminState;
use crate::admin::html::{bytes, escape, timestamp, uptime};
use crate::cache::Stats;
use crate::core::body::{Body, full};
use crate::core::duration::fmt_duration;
use crate::core::timer;
use crate::proxy::context::Context;
use crate::telemetry::recent::Decision;
use crate::tls::evidence::{OVERFLOW, Sighting, sightings_in};

/// The page reloads itself this often.
pub const REFRESH_SECS: u32 = 10;

/// How long the cache may take to report its statistics.
const STATS_WAIT: Duration = Duration::from_secs(2);

const STYLE: &str = "body{font-family:'Liberation Sans',Arial,sans-serif;margin:1.5em;color:#1d2329;background:#fafbfc}\
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.6em 0 .5em;border-bottom:1px solid #d0d7de}\
table{border-collapse:collapse;font-size:.85em;width:100%}th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #e4e8ec;vertical-align:top}\
th{background:#eef1f4}td{overflow-wrap:anywhere}td.t{white-space:nowrap;overflow-wrap:normal}td.num{text-align:right}pre{background:#eef1f4;padding:.7em;font-size:.85em;overflow-x:auto}\
.meta{color:#57606a}.bad{color:#b42318;font-weight:bold}.ok{color:#1a7f37}.box{border:1px solid #b42318;background:#fff1f0;padding:.6em;margin:.8em 0}\
a{color:#0550ae}";

/// Renders the page.
pub async fn serve(state: &AdminState) -> Response<Body> {
    let ctx = state.live.current();
    let stats = match &ctx.cache {
        Some(cache) => timer::timeout(STATS_WAIT, cache.store().stats()).await.ok(),
        None => None,
    };
    let html = render(state, &ctx, stats.and_then(Result::ok).as_ref());
    let mut resp = Response::new(full(html));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    resp
}

fn render(state: &AdminState, ctx: &Context, stats: Option<&Stats>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
<title>modgate admin</title><style>{STYLE}</style></head><body>"
    );
    header(&mut out, state, ctx);
    let dir = &ctx.config.tls.intercepted_dir;
    interceptors(&mut out, &sightings_in(dir), dir);
    cache(&mut out, ctx, stats);
    mirrors(&mut out, ctx);
    decisions(&mut out, &ctx.telemetry.recent.list());
    let _ = write!(
        out,
        "<h2 id=\"rules\">Rules in effect</h2><pre>{}</pre></body></html>",
        escape(&in_effect(&ctx.config.describe(), state))
    );
    out
}

/// The config's summary with the addresses actually listened on, which
/// `serve --listen` / `--admin-listen` (or a port 0) make differ from the
/// file's.
fn in_effect(described: &str, state: &AdminState) -> String {
    described
        .lines()
        .map(
            |line| match (line.strip_prefix("listen:   "), line.strip_prefix("admin:    ")) {
                (Some(_), _) => format!("listen:   {}", state.proxy.addr),
                (_, Some(rest)) => match state.admin {
                    // What follows the address (who may use it) stays.
                    Some(admin) => {
                        let guard = rest.find(", [auth]").map_or("", |at| &rest[at..]);
                        format!("admin:    {admin}{guard}")
                    }
                    None => line.to_owned(),
                },
                _ => line.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n")
}

fn header(out: &mut String, state: &AdminState, ctx: &Context) {
    let c = &ctx.config;
    let _ = write!(
        out,
        "<h1>modgate {}</h1><p class=\"meta\">up {} · proxy on {} · config {} (sha256 <code>{}</code>) · \
<a href=\"/\">refresh</a> (every {REFRESH_SECS}s) · <a href=\"/metrics\">metrics</a> · <a href=\"/readyz\">readiness</a></p>",
        env!("CARGO_PKG_VERSION"),
        uptime(ctx.telemetry.started.elapsed()),
        state.proxy.addr,
        escape(&c.source_path()),
        &c.digest.get(..12).unwrap_or(&c.digest),
    );
    let Some(reloader) = &state.reloader else { return };
    let status = reloader.status();
    let _ = write!(
        out,
        "<p class=\"meta\" id=\"reload\">config loaded {} · reloads: {} ok, {} refused</p>",
        timestamp(status.loaded_at),
        status.ok,
        status.refused
    );
    if let Some((at, why)) = status.failed {
        let _ = write!(
            out,
            "<div class=\"box\" id=\"reload-failed\"><span class=\"bad\">The last reload was refused</span> ({}); \
the config above is still in effect:<br><code>{}</code></div>",
            timestamp(at),
            escape(&why)
        );
    }
}

fn decisions(out: &mut String, list: &[Decision]) {
    let _ = write!(out, "<h2 id=\"decisions\">Recent decisions ({})</h2>", list.len());
    if list.is_empty() {
        out.push_str("<p class=\"meta\">No requests yet.</p>");
        return;
    }
    out.push_str(
        "<table><tr><th>time</th><th>client</th><th>request</th><th>rule</th><th>action</th><th>status</th>\
<th>cache</th><th>verdict</th><th>error</th></tr>",
    );
    for d in list {
        let verdict = match (d.verdict, d.vendor.as_ref()) {
            ("-", _) => "-".to_owned(),
            (v, "-") => v.to_owned(),
            (v, vendor) => format!("{v} ({vendor})"),
        };
        let class = if d.status >= 400 || d.error.is_some() {
            " class=\"bad\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr><td class=\"t\">{}</td><td class=\"t\">{}</td><td>{} {}</td><td>{}</td><td>{}</td><td{class}>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            timestamp(d.at),
            d.client,
            escape(&d.method),
            escape(&d.target),
            escape(d.rule.as_deref().unwrap_or("-")),
            d.action,
            d.status,
            d.cache,
            escape(&verdict),
            escape(d.error.as_deref().unwrap_or("")),
        );
    }
    out.push_str("</table>");
}

fn interceptors(out: &mut String, seen: &[Sighting], dir: &std::path::Path) {
    out.push_str("<h2 id=\"interceptors\">Interceptors seen</h2>");
    if seen.is_empty() {
        out.push_str("<p class=\"meta ok\">None: every upstream chain verified against the public roots.</p>");
        return;
    }
    out.push_str(
        "<table><tr><th>vendor</th><th>issuer</th><th>verdict</th><th>hosts</th><th>first seen</th><th>last seen</th>\
<th class=\"num\">count</th><th>chain</th></tr>",
    );
    for s in seen {
        let hosts: Vec<String> = s.hosts.iter().map(|h| escape(h)).collect();
        let chain = if s.spki == OVERFLOW {
            "not saved (over the limit)".to_owned()
        } else {
            let spki = escape(&s.spki);
            let chain = format!("<a href=\"/chains/{spki}.pem\">chain</a>");
            match dir.join(format!("{}.root.pem", s.spki)).exists() {
                true => format!("{chain} · <a href=\"/chains/{spki}.root.pem\">root</a>"),
                false => chain,
            }
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"bad\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{chain}</td></tr>",
            escape(&s.vendor),
            escape(&s.issuer),
            escape(&s.verdict),
            hosts.join("<br>"),
            escape(&s.first_seen),
            escape(&s.last_seen),
            s.count,
        );
    }
    out.push_str("</table>");
}

fn mirrors(out: &mut String, ctx: &Context) {
    out.push_str("<h2 id=\"mirrors\">Mirrors</h2>");
    let statuses = ctx.sources.statuses();
    if statuses.is_empty() {
        out.push_str("<p class=\"meta\">No module proxy in any rule's list.</p>");
        return;
    }
    out.push_str(
        "<table><tr><th>mirror</th><th>state</th><th>failures in a row</th><th>since</th>\
<th>retry in</th><th>skipped</th><th>last error</th></tr>",
    );
    for s in statuses {
        let since = s.since.elapsed().unwrap_or_default();
        let _ = write!(
            out,
            "<tr class=\"{state}\"><td>{}</td><td>{state}</td><td>{}</td><td>{} ago</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.mirror),
            s.fails,
            fmt_duration(since),
            s.retry_in.map_or_else(|| "-".into(), fmt_duration),
            s.skipped,
            escape(s.last_error.as_deref().unwrap_or("-")),
            state = s.state.as_str(),
        );
    }
    out.push_str("</table>");
}

fn cache(out: &mut String, ctx: &Context, stats: Option<&Stats>) {
    out.push_str("<h2 id=\"cache\">Module cache</h2>");
    let Some(cache) = &ctx.cache else {
        out.push_str("<p class=\"meta\">Off.</p>");
        return;
    };
    use std::sync::atomic::Ordering::Relaxed;
    let c = &cache.counters;
    let s = cache.store().counters();
    let _ = write!(
        out,
        "<p>{}</p><table style=\"width:auto\">",
        escape(cache.store().backend())
    );
    let held = match stats {
        Some(st) => format!(
            "{} objects, {}{}",
            st.objects,
            bytes(st.bytes),
            st.max_size.map_or_else(String::new, |m| format!(" of {}", bytes(m)))
        ),
        None => "not known (the store did not answer)".into(),
    };
    let rows: [(&str, String); 7] = [
        ("held", held),
        ("hits", c.hits.load(Relaxed).to_string()),
        ("misses", c.misses.load(Relaxed).to_string()),
        ("coalesced", c.coalesced.load(Relaxed).to_string()),
        ("stale served", c.stale.load(Relaxed).to_string()),
        (
            "stored / evicted",
            format!(
                "{} objects ({}) / {} objects ({})",
                s.stored_objects,
                bytes(s.stored_bytes),
                s.evicted_objects,
                bytes(s.evicted_bytes)
            ),
        ),
        ("refused by verification", c.refused.load(Relaxed).to_string()),
    ];
    for (name, value) in rows {
        let _ = write!(out, "<tr><th>{name}</th><td>{value}</td></tr>");
    }
    out.push_str("</table>");
}
