//! What `modgate check` prints: the settings and the rules in effect.

use std::fmt::Write as _;

use crate::config::Config;
use crate::config::cache::CacheLocation;
use crate::core::duration::fmt_duration;
use crate::core::size::fmt_size;
use crate::policy::decide::NO_MATCH_REASON;
use crate::policy::describe::rule_line;
use crate::policy::rule::Action;

impl Config {
    /// A human-readable summary of the rules and settings in effect.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let t = &self.timeouts;
        let _ = writeln!(out, "config:   {}", self.source_path());
        let _ = writeln!(out, "listen:   {}", self.listen);
        let _ = writeln!(
            out,
            "timeouts: connect {}, header {}, idle {}, shutdown {}",
            fmt_duration(t.connect),
            fmt_duration(t.header),
            fmt_duration(t.idle),
            fmt_duration(t.shutdown)
        );
        let limit = |v: Option<usize>| v.map_or_else(|| "derived from the fd limit".to_owned(), |n| n.to_string());
        let _ = writeln!(
            out,
            "limits:   max_connections {}, per_client {}, workers {}",
            limit(self.limits.max_connections),
            limit(self.limits.per_client),
            self.limits
                .workers
                .map_or_else(|| "auto (one per core)".to_owned(), |n| n.to_string())
        );
        let guarded = match self.admin.require_auth {
            true => ", [auth] users only (but /healthz)",
            false => "",
        };
        let _ = writeln!(out, "admin:    {}{guarded}", self.admin.listen);
        let c = &self.cache;
        match &c.location {
            CacheLocation::Off { why } => {
                let _ = writeln!(out, "cache:    off ({why})");
            }
            location => {
                let limit = match location {
                    CacheLocation::Dir { max_size, .. } => format!(" (max {})", fmt_size(*max_size)),
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "cache:    {location}{limit}; list_ttl {}, stale_after {}, stale_if_error {}, negative_ttl {}",
                    fmt_duration(c.list_ttl),
                    fmt_duration(c.stale_after),
                    fmt_duration(c.stale_if_error),
                    fmt_duration(c.negative_ttl)
                );
            }
        }
        if self.policy.intercept.is_empty() {
            let _ = writeln!(out, "intercept: none (CONNECT tunnels are relayed, not terminated)");
        } else {
            let list: Vec<String> = self.policy.intercept.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "intercept: {} (CA {})",
                list.join(", "),
                self.tls.ca_cert.display()
            );
        }
        describe_network(self, &mut out);
        let private = &self.policy.private;
        if !private.modules.is_empty() {
            let globs: Vec<String> = private.modules.iter().map(ToString::to_string).collect();
            let mirrors: Vec<&str> = private.mirrors.iter().map(|m| m.url.as_str()).collect();
            let _ = writeln!(
                out,
                "private:  {} -> only to [{}], never to a checksum database; cache {}",
                globs.join(","),
                mirrors.join(", "),
                if private.cache { "on (under private/)" } else { "off" }
            );
        }
        for (name, addrs) in self.hosts.sorted() {
            let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            let _ = writeln!(out, "hosts:    {name} -> {}", list.join(", "));
        }
        for (url, settings) in self.mirrors.iter() {
            let _ = writeln!(out, "mirror:   {url}: {}", settings.describe());
        }
        let lists = self.policy.rules.iter().filter_map(|r| match &r.action {
            Action::Mirror { mirrors } => Some(mirrors),
            _ => None,
        });
        for url in self.mirrors.unused(lists) {
            let _ = writeln!(
                out,
                "warning:  [mirror.\"{url}\"] applies to nothing: no rule's mirrors list names {url}"
            );
        }
        let _ = writeln!(out, "rules (first match wins):");
        for (i, rule) in self.policy.rules.iter().enumerate() {
            let _ = writeln!(out, "  {}. {}", i + 1, rule_line(rule));
        }
        if !self.policy.has_catch_all() {
            let _ = writeln!(out, "  (no rule matched: block, \"{NO_MATCH_REASON}\")");
        }
        out
    }
}

/// The `[parent]`, `[transparent]` and `[auth]` lines, for the tables that
/// are set.
fn describe_network(config: &Config, out: &mut String) {
    let parent = &config.policy.parent;
    let shown = |p: &Option<crate::core::proxy_url::ProxyUrl>| {
        p.as_ref().map_or_else(
            || "none (direct)".to_owned(),
            |p| match p.user() {
                Some(user) => format!("{p} (as {user})"),
                None => p.to_string(),
            },
        )
    };
    match (&parent.https, &parent.http, parent.from_env) {
        (None, None, false) => {}
        (https, http, from_env) => {
            let source = if from_env { " from the environment" } else { "" };
            let _ = writeln!(out, "parent:   https {}, http {}{source}", shown(https), shown(http));
        }
    }
    if !parent.no_parent.is_empty() {
        let list: Vec<String> = parent.no_parent.entries().iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "no_parent: {}", list.join(", "));
    }
    if let Some(t) = &config.transparent {
        let mark = t.mark.map_or_else(|| "no mark".to_owned(), |m| format!("mark {m:#x}"));
        let _ = writeln!(out, "transparent: {} ({mark})", t.listen);
    }
    if let Some(a) = &config.auth {
        let _ = writeln!(
            out,
            "auth:     Basic, realm \"{}\", users from {}; {} failed logins within {} lock a client out",
            a.realm,
            a.htpasswd.display(),
            a.max_failures,
            fmt_duration(a.lockout)
        );
    }
}
