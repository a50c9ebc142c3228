//! `[limits]`: how many client connections modgate holds at once, in all
//! and per client address. Absent keys are derived from the open-file limit
//! when `serve` starts (see `proxy::limits`).

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
}

/// `[limits]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileLimits {
    max_connections: Option<Spanned<i64>>,
    per_client: Option<Spanned<i64>>,
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
