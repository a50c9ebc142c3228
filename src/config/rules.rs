//! `[[rule]]` entries as written, resolved into validated
//! [`Rule`]s: globs, CIDRs, ports and mirror lists parsed once.

use std::collections::HashSet;

use serde::Deserialize;
use toml::Spanned;

use crate::config::syntax::{Located, MatchList, parse_list};
use crate::policy::glob::{HostGlob, ModuleGlob, UserGlob};
use crate::policy::mirrors::MirrorList;
use crate::policy::rule::{Action, Cidr, PortRange, Rule};
use crate::policy::versions::VersionMatch;

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum FileAction {
    Direct,
    Block,
    Mirror,
}

/// A port written as a number (`443`) or a range string (`"8000-8100"`).
#[derive(Deserialize)]
#[serde(untagged, expecting = "a port number or a range string such as \"8000-8100\"")]
enum FilePort {
    Number(i64),
    Text(String),
}

impl FilePort {
    fn text(&self) -> String {
        match self {
            FilePort::Number(n) => n.to_string(),
            FilePort::Text(s) => s.clone(),
        }
    }
}

/// One `[[rule]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRule {
    name: Option<Spanned<String>>,
    hosts: Option<MatchList<Spanned<String>>>,
    ports: Option<MatchList<Spanned<FilePort>>>,
    src: Option<MatchList<Spanned<String>>>,
    dst: Option<MatchList<Spanned<String>>>,
    modules: Option<MatchList<Spanned<String>>>,
    users: Option<Spanned<MatchList<Spanned<String>>>>,
    versions: Option<MatchList<Spanned<String>>>,
    action: Spanned<FileAction>,
    reason: Option<Spanned<String>>,
    mirrors: Option<Spanned<String>>,
    cache: Option<bool>,
    parent: Option<bool>,
    verify_host: Option<bool>,
}

/// Validates the rule table: unique names, fields that fit the action,
/// and `users` only where `[auth]` authenticates users (`auth_on`).
pub(crate) fn resolve(file: Vec<FileRule>, auth_on: bool) -> Result<Vec<Rule>, Located> {
    let mut rules = Vec::with_capacity(file.len());
    let mut names = HashSet::new();
    for (i, r) in file.into_iter().enumerate() {
        let name = match &r.name {
            Some(n) if n.get_ref().trim().is_empty() => {
                return Err((n.span(), "rule name is empty".into()));
            }
            Some(n) => n.get_ref().clone(),
            None => format!("rule#{}", i + 1),
        };
        if !names.insert(name.clone()) {
            let span = r.name.as_ref().map_or(r.action.span(), Spanned::span);
            return Err((span, format!("rule name '{name}' is used twice")));
        }
        let action = action(&r)?;
        let users = match r.users {
            Some(users) if !auth_on => {
                return Err((
                    users.span(),
                    "users needs [auth] htpasswd: without it no user authenticates, and this rule would never match"
                        .into(),
                ));
            }
            Some(users) => parse_list::<UserGlob, _>(Some(users.into_inner()), String::clone)?,
            None => None,
        };
        rules.push(Rule {
            name: name.into(),
            hosts: parse_list::<HostGlob, _>(r.hosts, String::clone)?,
            ports: parse_list::<PortRange, _>(r.ports, FilePort::text)?,
            src: parse_list::<Cidr, _>(r.src, String::clone)?,
            dst: parse_list::<Cidr, _>(r.dst, String::clone)?,
            modules: parse_list::<ModuleGlob, _>(r.modules, String::clone)?,
            users,
            versions: parse_list::<VersionMatch, _>(r.versions, String::clone)?,
            action,
            cache: r.cache.unwrap_or(true),
            parent: r.parent.unwrap_or(true),
            verify_host: r.verify_host.unwrap_or(true),
        });
    }
    Ok(rules)
}

/// The rule's action, with `reason` only on `block` and `mirrors` only (and
/// always) on `mirror`.
fn action(r: &FileRule) -> Result<Action, Located> {
    let kind = *r.action.get_ref();
    if let (Some(reason), false) = (&r.reason, kind == FileAction::Block) {
        return Err((reason.span(), "reason is only used with action = \"block\"".into()));
    }
    if let (Some(mirrors), false) = (&r.mirrors, kind == FileAction::Mirror) {
        return Err((mirrors.span(), "mirrors is only used with action = \"mirror\"".into()));
    }
    Ok(match kind {
        FileAction::Direct => Action::Direct,
        FileAction::Block => Action::Block {
            reason: r
                .reason
                .as_ref()
                .map_or_else(|| "refused by policy".to_owned(), |r| r.get_ref().clone()),
        },
        FileAction::Mirror => {
            let Some(mirrors) = &r.mirrors else {
                return Err((
                    r.action.span(),
                    "action = \"mirror\" needs mirrors, e.g. mirrors = \"https://proxy.golang.org\"".into(),
                ));
            };
            let list = mirrors
                .get_ref()
                .parse::<MirrorList>()
                .map_err(|e| (mirrors.span(), e))?;
            Action::Mirror { mirrors: list }
        }
    })
}
