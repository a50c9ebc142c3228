//! `[limits]`: how many client connections modgate holds at once, in all
//! and per client address, and how many threads serve them. Absent
//! connection limits are derived from the open-file limit when `serve`
//! starts (see `proxy::limits`); absent `workers` is one per core.

use serde::Deserialize;
use toml::Spanned;

use crate::config::syntax::Located;

/// The `[limits]` table, validated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitSettings {
    /// Client connections open at once; `None`: derived from the fd limit.
    pub max_connections: Option<usize>,
    /// Client connections open at once from one address; `None`: half of
    /// `max_connections`.
    pub per_client: Option<usize>,
    /// Threads that serve connections; `None` (`"auto"`): one per core
    /// the process may use.
    pub workers: Option<usize>,
}

/// The most worker threads `[limits] workers` may ask for.
pub const MAX_WORKERS: usize = 1024;

/// `[limits]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileLimits {
    max_connections: Option<Spanned<i64>>,
    per_client: Option<Spanned<i64>>,
    workers: Option<Spanned<toml::Value>>,
}

impl FileLimits {
    pub(crate) fn resolve(self) -> Result<LimitSettings, Located> {
        let positive = |v: Option<Spanned<i64>>, key: &str| -> Result<Option<usize>, Located> {
            match v {
                None => Ok(None),
                Some(v) if *v.get_ref() >= 1 && *v.get_ref() <= 10_000_000 => Ok(Some(*v.get_ref() as usize)),
                Some(v) => Err((v.span(), format!("limits.{key} must be between 1 and 10000000"))),
            }
        };
        let per_client_span = self.per_client.as_ref().map(Spanned::span);
        let settings = LimitSettings {
            max_connections: positive(self.max_connections, "max_connections")?,
            per_client: positive(self.per_client, "per_client")?,
            workers: self.workers.map(workers).transpose()?.flatten(),
        };
        // A per-client limit above the total is no limit at all: a mistake
        // (a swapped pair, or a total lowered without the other).
        if let (Some(total), Some(each), Some(span)) = (settings.max_connections, settings.per_client, per_client_span)
        {
            if each > total {
                return Err((
                    span,
                    format!(
                        "limits.per_client ({each}) is above limits.max_connections ({total}), so it would never apply"
                    ),
                ));
            }
        }
        Ok(settings)
    }
}

/// `workers = "auto"` (`None`) or a thread count from 1 to [`MAX_WORKERS`].
fn workers(value: Spanned<toml::Value>) -> Result<Option<usize>, Located> {
    match value.get_ref() {
        toml::Value::String(word) if word == "auto" => Ok(None),
        toml::Value::Integer(n) if (1..=MAX_WORKERS as i64).contains(n) => Ok(Some(*n as usize)),
        _ => Err((
            value.span(),
            format!("limits.workers must be \"auto\" or a number of threads from 1 to {MAX_WORKERS}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn workers_is_auto_or_a_thread_count() {
        assert_eq!(parse("").unwrap().limits.workers, None);
        assert_eq!(parse("[limits]\nworkers = \"auto\"\n").unwrap().limits.workers, None);
        assert_eq!(parse("[limits]\nworkers = 1\n").unwrap().limits.workers, Some(1));
        assert_eq!(parse("[limits]\nworkers = 1024\n").unwrap().limits.workers, Some(1024));
        for bad in ["0", "-2", "1025", "\"all\"", "\"4\"", "2.5", "true"] {
            let e = parse(&format!("[limits]\nworkers = {bad}\n")).unwrap_err();
            assert!(
                e.starts_with("t.toml:2:11: limits.workers must be \"auto\" or a number of threads from 1 to 1024"),
                "{bad}: {e}"
            );
        }
    }
}
