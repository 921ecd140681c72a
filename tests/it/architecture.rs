//! The layout's rules, checked: dependencies between connrun's folders point one way, reports and
//! comparisons read evidence records and never the probe engine or the network stack, and the server never
//! depends on the harness.
//!
//! The check reads the source as text (every `crate::<folder>` path and every external crate named in a
//! `use`), which is how a reviewer reads it too; comments are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read source folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The code of a file without comment lines (`//`, `//!`, `///`) and without its `#[cfg(test)]` module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source file");
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The top-level folder (concern) of a file under `src/`: `src/probe/x.rs` → `probe`.
fn concern(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src");
    let first = relative.components().next().expect("component").as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// Every `crate::<name>` a text mentions.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (index, _) in text.match_indices("crate::") {
        let boundary = text[..index].chars().last().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let name: String = text[index + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if boundary && !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// concern → the concerns it imports.
fn concern_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let from = concern(&src, &file);
        if from == "lib" || from == "main" {
            continue;
        }
        let edges = graph.entry(from.clone()).or_default();
        edges.extend(crate_paths(&code(&file)).into_iter().filter(|to| *to != from));
    }
    graph
}

#[test]
fn connrun_folders_have_no_import_circle() {
    if let Some(circle) = first_circle(&concern_graph()) {
        panic!("import circle between connrun's folders: {}", circle.join(" → "));
    }
}

#[test]
fn dependencies_point_the_documented_way() {
    // Each concern may import only the ones listed (ARCHITECTURE.md, "Dependencies").
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("cli", &["run", "plan", "probe", "audit", "evidence", "report", "compare", "redact", "notify"][..]),
        ("notify", &[][..]),
        ("run", &["plan", "probe", "audit", "evidence", "report", "compare", "redact"][..]),
        ("plan", &["probe", "audit", "evidence"][..]),
        ("probe", &["evidence", "redact"][..]),
        ("audit", &["evidence"][..]),
        ("report", &["compare", "evidence"][..]),
        ("compare", &["evidence"][..]),
        ("evidence", &["redact"][..]),
        ("redact", &[][..]),
    ]);
    for (from, imports) in concern_graph() {
        let permitted =
            allowed.get(from.as_str()).unwrap_or_else(|| panic!("src/{from}: a folder missing from the rules"));
        for to in imports {
            assert!(
                permitted.contains(&to.as_str()),
                "src/{from} imports crate::{to}, which the layout does not allow"
            );
        }
    }
}

#[test]
fn reports_and_comparisons_never_touch_the_probe_engine_or_the_network() {
    let src = root().join("src");
    for folder in ["report", "compare"] {
        for file in rust_files(&src.join(folder)) {
            let text = code(&file);
            for forbidden in ["crate::probe", "crate::run", "tokio::", "hyper::", "hyper_util::", "reqwest::"] {
                assert!(!text.contains(forbidden), "{} uses {forbidden}", file.display());
            }
        }
    }
}

#[test]
fn the_server_never_depends_on_the_harness() {
    let server = root().join("server");
    for file in rust_files(&server.join("src")).into_iter().chain(rust_files(&server.join("tests"))) {
        assert!(!code(&file).contains("connrun"), "{} names the harness", file.display());
    }
    let manifest = std::fs::read_to_string(server.join("Cargo.toml")).expect("server/Cargo.toml");
    assert!(!manifest.contains("connrun"), "server/Cargo.toml depends on the harness");
}

/// The check itself must be able to fail: a planted circle and a planted forbidden import are found.
#[test]
fn the_checks_see_what_they_look_for() {
    assert_eq!(
        crate_paths("use crate::probe::X;\nlet a = crate::report::y();"),
        BTreeSet::from(["probe".to_owned(), "report".to_owned()])
    );
    assert!(crate_paths("use mycrate::probe::X;").is_empty());
    let src = root().join("src");
    assert_eq!(concern(&src, &src.join("probe/capture.rs")), "probe");
    assert_eq!(concern(&src, &src.join("lib.rs")), "lib");
}

#[test]
fn ring_is_not_in_the_dependency_tree() {
    // rustls, jsonwebtoken, rcgen and sqlx all use aws-lc-rs; `ring` must not come back through a feature.
    let output = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--workspace", "--offline", "--locked", "-e", "normal,build,dev", "-i", "ring"])
        .current_dir(root())
        .output()
        .expect("run cargo tree");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.trim().is_empty(), "ring is in the dependency tree:\n{stdout}");
}

/// Module path (`probe::capture`) of every file under `src`, `lib.rs` and `main.rs` left out.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut modules = BTreeMap::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("under src").with_extension("");
        let mut parts: Vec<String> =
            relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["lib"] || parts == ["main"] {
            continue;
        }
        modules.insert(parts.join("::"), file);
    }
    modules
}

/// Every module a file names (`crate::a::b::{c, d}`, `super::x`), resolved to the longest module path that
/// exists; a file's own ancestors are not counted (a child naming its parent's items is not a circle).
fn file_edges(modules: &BTreeMap<String, PathBuf>) -> BTreeMap<String, BTreeSet<String>> {
    let resolve = |path: &str| {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len()).rev().map(|n| parts[..n].join("::")).find(|candidate| modules.contains_key(candidate))
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in modules {
        let text = code(file);
        // `super::` is the parent module, for `a/b.rs` and `a/b/mod.rs` alike.
        let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
        let mut named = Vec::new();
        for (prefix, base) in [("crate::", String::new()), ("super::", parent.to_owned())] {
            for (index, _) in text.match_indices(prefix) {
                if text[..index].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let rest = &text[index + prefix.len()..];
                let path: String =
                    rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
                let path = path.trim_end_matches(':');
                let full = if base.is_empty() { path.to_owned() } else { format!("{base}::{path}") };
                named.push(full.clone());
                // `crate::a::{b, c::d}` names a::b and a::c too.
                if rest[path.len()..].starts_with("::{") {
                    let group: String = rest[path.len() + 3..].chars().take_while(|c| *c != '}').collect();
                    named.extend(
                        group.split(',').map(|item| format!("{full}::{}", item.trim().split(' ').next().unwrap_or(""))),
                    );
                }
            }
        }
        let targets =
            named.iter().filter_map(|n| resolve(n)).filter(|t| t != module && !module.starts_with(&format!("{t}::")));
        edges.entry(module.clone()).or_default().extend(targets);
    }
    edges
}

/// The first circle in `edges`, if any, as the path around it.
fn first_circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if !done.insert(node.to_owned()) {
            return None;
        }
        path.push(node.to_owned());
        let found = edges.get(node).into_iter().flatten().find_map(|next| visit(next, edges, path, done));
        path.pop();
        found
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_file_imports_itself_through_a_circle_in_either_crate() {
    for src in [root().join("src"), root().join("server/src")] {
        let edges = file_edges(&modules(&src));
        assert!(edges.len() > 20, "{}: the module map came out empty", src.display());
        if let Some(circle) = first_circle(&edges) {
            panic!("import circle in {}: {}", src.display(), circle.join(" → "));
        }
    }
}

#[test]
fn the_file_circle_check_finds_a_planted_circle() {
    let edges = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(first_circle(&edges), Some(vec!["a", "b", "c", "a"].into_iter().map(str::to_owned).collect()));
}
