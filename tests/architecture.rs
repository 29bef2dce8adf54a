//! ARCHITECTURE.md's module table is the truth: every `crate::` path in a module of `src/`
//! names a module its row says it may call (a submodule without a row of its own uses its
//! parent's row), and the table has no cycle, so every arrow points down.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The table: module (or `module::submodule`) → the top-level modules it may call.
fn table(architecture: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut rows = BTreeMap::new();
    let body = architecture
        .split("| module | owns | may call |")
        .nth(1)
        .expect("the module table");
    for line in body.lines().skip(2) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.split('|').collect();
        let (Some(names), Some(calls)) = (cells.get(1), cells.get(3)) else {
            continue;
        };
        let may: BTreeSet<String> = ticked(calls)
            .iter()
            .map(|c| c.split("::").next().unwrap_or("").to_string())
            .collect();
        for name in ticked(names) {
            rows.insert(name, may.clone());
        }
    }
    rows
}

/// The `backticked` module paths of a cell (lowercase identifiers joined by `::`).
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| {
            !t.is_empty()
                && t.split("::")
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        })
        .map(str::to_string)
        .collect()
}

/// The crate's modules (from `lib.rs`) and the names `lib.rs` re-exports or that are
/// macros, mapped to the module that defines them.
fn names(src: &Path) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut modules = BTreeSet::new();
    let mut defined = BTreeMap::new();
    for line in lib.lines().map(str::trim) {
        let line = line.trim_start_matches("pub ");
        if let Some(m) = line.strip_prefix("mod ").and_then(|m| m.strip_suffix(';')) {
            modules.insert(m.to_string());
        }
        if let Some(rest) = line.strip_prefix("use ") {
            let (module, items) = rest.split_once("::").unwrap_or((rest, ""));
            for item in items.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                if !item.is_empty() {
                    defined.insert(item.to_string(), module.to_string());
                }
            }
        }
    }
    // Multi-line `pub use module::{…};` blocks.
    for block in lib.split("pub use ").skip(1) {
        let Some((module, rest)) = block.split_once("::{") else {
            continue;
        };
        let items = rest.split('}').next().unwrap_or("");
        for item in items.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if !item.is_empty() {
                defined.insert(item.to_string(), module.trim().to_string());
            }
        }
    }
    for (file, text) in sources(src) {
        for m in text.split("macro_rules! ").skip(1) {
            let name: String = m.chars().take_while(|c| c.is_alphanumeric()).collect();
            defined.insert(
                name,
                unit(src, &file).split("::").next().unwrap().to_string(),
            );
        }
    }
    (modules, defined)
}

/// Every `.rs` file under `src` but `lib.rs` and unit-test files, with its text (comment
/// lines and inline `#[cfg(test)] mod tests { … }` blocks removed).
fn sources(src: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path
                    .file_name()
                    .is_some_and(|n| n != "lib.rs" && n != "tests.rs")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                let text = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or("");
                let code: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect();
                out.push((path, code.join("\n")));
            }
        }
    }
    out.sort();
    out
}

/// `a` for `src/a.rs` and `src/a/mod.rs`, `a::b` for `src/a/b.rs`.
fn unit(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|p| p != "mod")
        .collect();
    parts.join("::")
}

/// The top-level modules `code` reaches with `crate::…` paths.
fn references(
    code: &str,
    modules: &BTreeSet<String>,
    defined: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let resolve = |name: &str| -> String {
        if modules.contains(name) {
            name.to_string()
        } else {
            defined
                .get(name)
                .cloned()
                .unwrap_or_else(|| format!("?{name}"))
        }
    };
    let mut found = BTreeSet::new();
    for piece in code.split("crate::").skip(1) {
        if let Some(group) = piece.strip_prefix('{') {
            let items = group.split('}').next().unwrap_or("");
            for item in items.split(',') {
                let first: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !first.is_empty() {
                    found.insert(resolve(&first));
                }
            }
        } else {
            let first: String = piece
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !first.is_empty() {
                found.insert(resolve(&first));
            }
        }
    }
    found
}

/// The violations of `unit`'s code against the table.
fn violations(
    unit: &str,
    code: &str,
    rows: &BTreeMap<String, BTreeSet<String>>,
    modules: &BTreeSet<String>,
    defined: &BTreeMap<String, String>,
) -> Vec<String> {
    let top = unit.split("::").next().unwrap_or(unit);
    let Some(allowed) = rows.get(unit).or_else(|| rows.get(top)) else {
        return vec![format!("{unit}: no row in ARCHITECTURE.md")];
    };
    references(code, modules, defined)
        .into_iter()
        .filter(|m| m != top && !allowed.contains(m))
        .map(|m| format!("{unit} uses crate::{m}, which its row does not list"))
        .collect()
}

fn repository() -> (PathBuf, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    (root.join("src"), architecture)
}

#[test]
fn every_import_is_one_the_table_allows() {
    let (src, architecture) = repository();
    let rows = table(&architecture);
    let (modules, defined) = names(&src);
    assert!(rows.len() >= 20, "{rows:?}");
    let mut problems = Vec::new();
    for (file, code) in sources(&src) {
        problems.extend(violations(
            &unit(&src, &file),
            &code,
            &rows,
            &modules,
            &defined,
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Every module of lib.rs has a row (itself or its submodules').
    for m in &modules {
        let covered = rows
            .keys()
            .any(|r| r == m || r.starts_with(&format!("{m}::")));
        assert!(covered, "module {m} has no row in ARCHITECTURE.md");
    }
}

/// A cycle of `graph`, if it has one (depth-first search: a node met again while on the
/// path closes a cycle).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<String> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Result<(), String> {
        if done.contains(node) {
            return Ok(());
        }
        if let Some(at) = path.iter().position(|p| p == node) {
            return Err(format!("cycle: {} -> {node}", path[at..].join(" -> ")));
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done)?;
        }
        path.pop();
        done.insert(node.to_string());
        Ok(())
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done).err())
}

#[test]
fn the_table_has_no_cycle() {
    let (src, architecture) = repository();
    let rows = table(&architecture);
    let (modules, _) = names(&src);
    // One node per top-level module: the union of its rows.
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (row, calls) in &rows {
        let top = row.split("::").next().unwrap().to_string();
        let edges = graph.entry(top.clone()).or_default();
        edges.extend(
            calls
                .iter()
                .filter(|c| modules.contains(*c) && **c != top)
                .cloned(),
        );
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!("{cycle}");
    }
}

/// The checker itself catches what it is for: the kernels reaching up into the layers,
/// a grouped import, a re-exported name, and a module without a row.
#[test]
fn the_checker_catches_an_upward_import() {
    let (src, architecture) = repository();
    let rows = table(&architecture);
    let (modules, defined) = names(&src);
    let v = |unit: &str, code: &str| violations(unit, code, &rows, &modules, &defined);
    assert_eq!(v("kernels::generic", "use crate::layer::Dense;").len(), 1);
    assert_eq!(v("kernels", "use crate::{Dense, lanes::Lanes};").len(), 1);
    assert_eq!(v("math", "let s = crate::Seq![];").len(), 1);
    assert!(v("kernels::generic", "use crate::lanes::Lanes;").is_empty());
    assert!(v("kernels::generic", "use super::GradMode;").is_empty());
    assert_eq!(v("nowhere", "").len(), 1);
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("error", &["image"][..]),
        ("image", &["storage", "error"][..]),
        ("storage", &[][..]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
    .collect();
    assert_eq!(
        find_cycle(&graph).as_deref(),
        Some("cycle: error -> image -> error")
    );
}
