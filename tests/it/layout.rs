//! The layout of `src/` (issue 8): subsystem folders whose dependencies
//! point one way, no import cycle between files, and a `lib.rs` layout map
//! that lists every folder in dependency order.
//!
//! Imports are read from the source text: every `crate::a::b` path outside
//! comments and `#[cfg(test)]` modules is an edge from the file to module
//! `a::b` (or folder `a`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `proxy/tunnel.rs` -> `proxy::tunnel`; `proxy/mod.rs` -> `proxy`.
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap().with_extension("");
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).filter(|p| *p != "mod").collect();
    parts.join("::")
}

/// The code of a file without its tests and comments.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Module-level import edges: `crate::a::b` names file `a/b.rs` when it
/// exists, else the folder `a`.
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let from = module_of(&file);
        let code = code(&file);
        let entry = graph.entry(from.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let mut names = rest.split("::").map(|s| {
                s.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            });
            let Some(top) = names.next().filter(|n| !n.is_empty()) else {
                continue;
            };
            let second = names.next().unwrap_or_default();
            let to = if !second.is_empty() && src().join(&top).join(format!("{second}.rs")).exists() {
                format!("{top}::{second}")
            } else {
                top
            };
            if to != from {
                entry.insert(to);
            }
        }
    }
    graph
}

fn folder(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// One cycle in `graph`, if there is any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node.as_str()) {
            if let Some(c) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn folder_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut folders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in edges() {
        let f = folder(&from).to_owned();
        let entry = folders.entry(f.clone()).or_default();
        for to in tos {
            if folder(&to) != f {
                entry.insert(folder(&to).to_owned());
            }
        }
    }
    folders
}

#[test]
fn no_import_cycle_between_subsystem_folders() {
    let folders = folder_graph();
    assert!(folders.len() >= 8, "expected subsystem folders, found {folders:?}");
    assert_eq!(find_cycle(&folders), None, "folder graph: {folders:#?}");
}

#[test]
fn no_import_cycle_between_files() {
    let graph = edges();
    assert_eq!(find_cycle(&graph), None);
}

#[test]
fn the_layout_map_lists_every_folder_above_what_it_uses() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let map: Vec<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//! - [`"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(src())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed = map.clone();
    listed.sort();
    assert_eq!(listed, on_disk, "lib.rs's layout map and src/ differ");
    let position = |name: &str| map.iter().position(|m| m == name).unwrap();
    for (from, tos) in folder_graph() {
        for to in tos {
            assert!(
                position(&to) > position(&from),
                "{from} uses {to}, so {to} must come after {from} in lib.rs's layout map"
            );
        }
    }
}

#[test]
fn the_checker_sees_cycles() {
    let mut g = BTreeMap::new();
    g.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    g.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert!(find_cycle(&g).is_some());
    g.insert("b".to_owned(), BTreeSet::new());
    assert!(find_cycle(&g).is_none());
}
