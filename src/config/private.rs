//! `[private]` as written, resolved into [`Private`]: GOPRIVATE-style
//! module globs, the mirrors private paths may go to, and whether they are
//! cached.

use serde::Deserialize;
use toml::Spanned;

use crate::config::syntax::Located;
use crate::policy::glob::ModuleGlob;
use crate::policy::private::{Private, PrivateMirror};

/// `[private]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilePrivate {
    modules: Option<Spanned<Vec<Spanned<String>>>>,
    mirrors: Option<Spanned<Vec<Spanned<String>>>>,
    cache: Option<bool>,
}

impl FilePrivate {
    pub(crate) fn resolve(self) -> Result<Private, Located> {
        let mut modules = Vec::new();
        if let Some(list) = self.modules {
            let span = list.span();
            // Like GOPRIVATE, an entry may itself be a comma-separated
            // list; empty entries are skipped, as go skips them.
            for entry in list.into_inner() {
                for glob in entry
                    .get_ref()
                    .split(',')
                    .filter(|g| !g.trim_end_matches('/').is_empty())
                {
                    modules.push(glob.parse::<ModuleGlob>().map_err(|e| (entry.span(), e))?);
                }
            }
            if modules.is_empty() {
                return Err((
                    span,
                    "no module glob given; write e.g. modules = [\"git.corp.example.com/*\"], or remove [private]"
                        .into(),
                ));
            }
        }
        let mut mirrors = Vec::new();
        if let Some(list) = self.mirrors {
            let span = list.span();
            for url in list.into_inner() {
                mirrors.push(url.get_ref().parse::<PrivateMirror>().map_err(|e| (url.span(), e))?);
            }
            if modules.is_empty() {
                return Err((
                    span,
                    "[private] mirrors without [private] modules has no effect; list the private module globs".into(),
                ));
            }
        }
        Ok(Private {
            modules,
            mirrors,
            cache: self.cache.unwrap_or(true),
        })
    }
}
