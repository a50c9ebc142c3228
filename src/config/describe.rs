//! What `modgate check` prints: the settings and the rules in effect.

use std::fmt::Write as _;

use crate::config::Config;
use crate::config::cache::CacheLocation;
use crate::core::duration::fmt_duration;
use crate::core::size::fmt_size;
use crate::policy::decide::NO_MATCH_REASON;
use crate::policy::describe::rule_line;

impl Config {
    /// A human-readable summary of the rules and settings in effect.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let t = &self.timeouts;
        let _ = writeln!(out, "config:   {}", self.source);
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
            "limits:   max_connections {}, per_client {}",
            limit(self.limits.max_connections),
            limit(self.limits.per_client)
        );
        let _ = writeln!(out, "admin:    {}", self.admin.listen);
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
                    "cache:    {location}{limit}; list_ttl {}, stale_if_error {}, negative_ttl {}",
                    fmt_duration(c.list_ttl),
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
        for (name, addrs) in self.hosts.sorted() {
            let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            let _ = writeln!(out, "hosts:    {name} -> {}", list.join(", "));
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
