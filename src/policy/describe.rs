//! A rule as one line: its name, what it matches, and its action. `check`
//! prints the table this way and `explain` traces it.

use std::fmt::Display;

use crate::policy::rule::{Action, Rule};

/// One line describing a rule: name, match fields, action.
pub fn rule_line(rule: &Rule) -> String {
    fn list<T: Display>(items: &[T]) -> String {
        items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }
    let mut fields = Vec::new();
    if let Some(h) = &rule.hosts {
        fields.push(format!("hosts [{}]", list(h)));
    }
    if let Some(p) = &rule.ports {
        fields.push(format!("ports [{}]", list(p)));
    }
    if let Some(s) = &rule.src {
        fields.push(format!("src [{}]", list(s)));
    }
    if let Some(d) = &rule.dst {
        fields.push(format!("dst [{}]", list(d)));
    }
    if let Some(m) = &rule.modules {
        fields.push(format!("modules [{}]", list(m)));
    }
    if let Some(u) = &rule.users {
        fields.push(format!("users [{}]", list(u)));
    }
    if let Some(v) = &rule.versions {
        fields.push(format!("versions [{}]", list(v)));
    }
    let matches = if fields.is_empty() {
        "everything".to_owned()
    } else {
        fields.join(" and ")
    };
    let mut line = format!("'{}': {} -> {}", rule.name, matches, action_text(&rule.action));
    if !rule.parent {
        line.push_str(" (parent = false)");
    }
    if !rule.verify_host {
        line.push_str(" (verify_host = false)");
    }
    line
}

/// The action as the config reads: `direct`, `block: reason`, `mirror: list`.
pub fn action_text(action: &Action) -> String {
    match action {
        Action::Direct => "direct".to_owned(),
        Action::Block { reason } => format!("block: {reason}"),
        Action::Mirror { mirrors } => format!("mirror: {mirrors}"),
    }
}
