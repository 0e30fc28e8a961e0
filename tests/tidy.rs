//! Tidy: the layers of `docs/architecture.md`, checked by reading `src/`.
//!
//! Fails when a module imports across a forbidden boundary or when an
//! import circle appears, so that reviewers need not catch either by eye
//! (rust-analyzer keeps such checks in its own test suite). A module's
//! imports are the `crate::…`, `super::…` and `self::…` paths in its code,
//! comments, strings and test modules left out.
//!
//! The layers, lowest first; a module may use its own layer and those
//! below it, never those above:
//! 0. leaves: `ids`, `draw`, `diagnostic`, `shutdown`, `clients`, `networks`,
//!    `challenges`;
//! 1. inputs: `icecast`, `health`, `grants`, `zones`, `tls`, `issued`, `config`;
//! 2. `snapshot`;
//! 3. `select`;
//! 4. the sides: the read side (`http`, `dns`, `report`, `metrics`,
//!    `history`) and the write sides (`poll`, `acme`, `peers`);
//! 5. wiring: `serve`, `reload`, `admin`, `demo`.
//!
//! Besides: the read side never imports a write side; `poll` uses only
//! `metrics` of the read side (its poll counters); `acme` none of it
//! (nor `poll`); nothing below the
//! sides does network I/O; no two modules import each other, directly or
//! through others, at the top level or among the children of one module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layer of each top-level module.
const LAYERS: &[(&str, u8)] = &[
    ("ids", 0),
    ("draw", 0),
    ("diagnostic", 0),
    ("shutdown", 0),
    ("clients", 0),
    ("networks", 0),
    ("challenges", 0),
    ("icecast", 1),
    ("health", 1),
    ("grants", 1),
    ("shares", 1),
    ("zones", 1),
    ("tls", 1),
    ("issued", 1),
    ("config", 1),
    ("snapshot", 2),
    ("select", 3),
    ("http", 4),
    ("dns", 4),
    ("report", 4),
    ("metrics", 4),
    ("history", 4),
    ("poll", 4),
    ("acme", 4),
    ("peers", 4),
    ("serve", 5),
    ("reload", 5),
    ("admin", 5),
    ("demo", 5),
];

const READ_SIDE: &[&str] = &["http", "dns", "report", "metrics", "history"];

/// The write sides: they do network I/O and write what the read side
/// serves (snapshots; challenges and obtained certificates).
const WRITE_SIDE: &[&str] = &["poll", "acme", "peers"];

/// Words that mean network I/O.
const NETWORK: &[&str] = &[
    "reqwest",
    "hyper",
    "socket2",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "tokio::net",
];

/// A module path, e.g. `["dns", "answer"]`.
type Module = Vec<String>;

struct Source {
    module: Module,
    file: PathBuf,
    /// The code with comments, string contents and test modules blanked.
    code: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every library source file, test files left out.
fn sources() -> Vec<Source> {
    let mut files = Vec::new();
    walk(&src_dir(), &mut files);
    files
        .into_iter()
        .filter_map(|file| {
            let rel = file.strip_prefix(src_dir()).ok()?.with_extension("");
            let mut module: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|l| l == "mod") {
                module.pop();
            }
            if module == ["lib"] || module == ["main"] || module.iter().any(|s| s == "tests") {
                return None;
            }
            let text = std::fs::read_to_string(&file).ok()?;
            let code = without_tests(&blank_comments_and_strings(&text));
            Some(Source { module, file, code })
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `text` with comments removed and the contents of string and char
/// literals blanked (so a URL in a string is not a comment and a path in a
/// string is not an import).
fn blank_comments_and_strings(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&b, i) {
            // Raw string: r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            while j < b.len() {
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (b.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A char literal ('x', '\n', '\''); a lifetime has no closing quote.
            let mut j = i + 1;
            if b.get(j) == Some(&'\\') {
                j += 2;
            } else {
                j += 1;
            }
            while j < b.len() && b[j] != '\'' {
                j += 1;
            }
            out.push_str("' '");
            i = j + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

/// `code` without its inline test module (`#[cfg(test)] mod … { … }`).
fn without_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = rest[at + "#[cfg(test)]".len()..].trim_start();
        let Some(body) = after.strip_prefix("mod ") else {
            out.push_str("#[cfg(test)]");
            rest = &rest[at + "#[cfg(test)]".len()..];
            continue;
        };
        match body.find(['{', ';']) {
            Some(p) if body.as_bytes()[p] == b'{' => {
                let mut depth = 0;
                let mut end = body.len();
                for (k, ch) in body[p..].char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = p + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &body[end..];
            }
            Some(p) => rest = &body[p + 1..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}

/// The module paths `code` (of `module`) refers to through `crate::`,
/// `super::` and `self::` paths, brace groups included; each as written,
/// not yet resolved to a module.
fn paths(module: &Module, code: &str) -> Vec<Module> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let ident_start = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        let base: Option<(Module, usize)> = if !ident_start {
            None
        } else if code[i..].starts_with("crate::") {
            Some((Vec::new(), "crate::".len()))
        } else if code[i..].starts_with("super::") {
            // In `a/b.rs` and in `a/b/mod.rs` (module a::b), super is `a`.
            Some((
                module[..module.len().saturating_sub(1)].to_vec(),
                "super::".len(),
            ))
        } else if code[i..].starts_with("self::") {
            Some((module.clone(), "self::".len()))
        } else {
            None
        };
        let Some((base, skip)) = base else {
            i += 1;
            continue;
        };
        i += skip;
        let (found, end) = tree(code, i, &base);
        out.extend(found);
        i = end;
    }
    out
}

/// Parses a use tree at `at` (`a::b::c`, `a::{b, c::d}`, `{a, b}`) under
/// `prefix`: every path it names, and where it ends.
fn tree(code: &str, at: usize, prefix: &Module) -> (Vec<Module>, usize) {
    let b = code.as_bytes();
    let mut i = at;
    let mut path = prefix.clone();
    let mut out = Vec::new();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'{' {
            i += 1;
            loop {
                let (found, end) = tree(code, i, &path);
                out.extend(found);
                i = end;
                while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                    i += 1;
                }
                if i >= b.len() || b[i] == b'}' {
                    return (out, i + 1);
                }
            }
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if start == i {
            break;
        }
        let segment = &code[start..i];
        if segment != "self" {
            path.push(segment.to_string());
        }
        if code[i..].starts_with("::") {
            i += 2;
        } else {
            break;
        }
    }
    out.push(path);
    (out, i)
}

/// The longest prefix of `path` that is a module of `modules`.
fn resolve(path: &Module, modules: &BTreeSet<Module>) -> Option<Module> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
}

/// Module -> the modules it imports (resolved, itself excluded).
fn imports(sources: &[Source]) -> BTreeMap<Module, BTreeSet<Module>> {
    let modules: BTreeSet<Module> = sources.iter().map(|s| s.module.clone()).collect();
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for s in sources {
        let entry = graph.entry(s.module.clone()).or_default();
        for p in paths(&s.module, &s.code) {
            if let Some(target) = resolve(&p, &modules)
                && target != s.module
            {
                entry.insert(target);
            }
        }
    }
    graph
}

/// The strongly connected components of more than one node (the circles).
fn circles<N: Ord + Clone>(graph: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    // Kosaraju: order by finish time, then walk the reversed graph.
    fn finish<N: Ord + Clone>(
        n: &N,
        g: &BTreeMap<N, BTreeSet<N>>,
        seen: &mut BTreeSet<N>,
        order: &mut Vec<N>,
    ) {
        if !seen.insert(n.clone()) {
            return;
        }
        for m in g.get(n).into_iter().flatten() {
            finish(m, g, seen, order);
        }
        order.push(n.clone());
    }
    let mut nodes: BTreeSet<N> = graph.keys().cloned().collect();
    nodes.extend(graph.values().flatten().cloned());
    let mut reversed: BTreeMap<N, BTreeSet<N>> = BTreeMap::new();
    for (a, bs) in graph {
        for b in bs {
            reversed.entry(b.clone()).or_default().insert(a.clone());
        }
    }
    let (mut seen, mut order) = (BTreeSet::new(), Vec::new());
    for n in &nodes {
        finish(n, graph, &mut seen, &mut order);
    }
    let mut assigned = BTreeSet::new();
    let mut out = Vec::new();
    for n in order.iter().rev() {
        let mut component = Vec::new();
        finish(n, &reversed, &mut assigned, &mut component);
        if component.len() > 1 {
            component.sort();
            out.push(component);
        }
    }
    out
}

fn name(m: &Module) -> String {
    m.join("::")
}

fn layer(top: &str) -> Option<u8> {
    LAYERS.iter().find(|(n, _)| *n == top).map(|&(_, l)| l)
}

#[test]
fn every_top_level_module_has_a_layer() {
    let tops: BTreeSet<String> = sources().iter().map(|s| s.module[0].clone()).collect();
    let missing: Vec<&String> = tops.iter().filter(|t| layer(t).is_none()).collect();
    assert!(
        missing.is_empty(),
        "modules without a layer in tests/tidy.rs (and docs/architecture.md): {missing:?}"
    );
}

#[test]
fn imports_respect_the_layers() {
    let mut wrong = Vec::new();
    for (from, tos) in imports(&sources()) {
        let (a, Some(la)) = (&from[0], layer(&from[0])) else {
            continue;
        };
        for to in tos {
            let b = &to[0];
            let Some(lb) = layer(b) else { continue };
            if a == b {
                continue;
            }
            let why = if lb > la {
                Some("a lower layer imports a higher one")
            } else if READ_SIDE.contains(&a.as_str()) && WRITE_SIDE.contains(&b.as_str()) {
                Some("the read side imports a write side")
            } else if a == "poll" && READ_SIDE.contains(&b.as_str()) && b != "metrics" {
                Some("the poller imports the read side")
            } else if a == "acme" && (READ_SIDE.contains(&b.as_str()) || b == "poll") {
                Some("the ACME client imports the read side or the poller")
            } else if a == "peers" && READ_SIDE.contains(&b.as_str()) {
                Some("the peer exchange imports the read side")
            } else {
                None
            };
            if let Some(why) = why {
                wrong.push(format!("{} -> {}: {why}", name(&from), name(&to)));
            }
        }
    }
    assert!(wrong.is_empty(), "forbidden imports:\n{}", wrong.join("\n"));
}

#[test]
fn nothing_below_the_sides_does_network_io() {
    let mut wrong = Vec::new();
    for s in sources() {
        if layer(&s.module[0]).is_some_and(|l| l < 4) {
            for word in NETWORK {
                if s.code.contains(word) {
                    wrong.push(format!("{}: {word}", s.file.display()));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "network I/O below the sides:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_import_circles() {
    let graph = imports(&sources());
    // Top level: each module by its first segment.
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Among siblings: each pair of modules under one parent, by the child
    // of the common parent each one is in (a parent using its own children
    // is not a circle).
    let mut siblings: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (from, tos) in &graph {
        for to in tos {
            if from[0] != to[0] {
                top.entry(from[0].clone())
                    .or_default()
                    .insert(to[0].clone());
                continue;
            }
            let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            if common < from.len() && common < to.len() {
                siblings
                    .entry(from[..=common].to_vec())
                    .or_default()
                    .insert(to[..=common].to_vec());
            }
        }
    }
    let mut found: Vec<String> = circles(&top).iter().map(|c| c.join(" <-> ")).collect();
    found.extend(
        circles(&siblings)
            .iter()
            .map(|c| c.iter().map(name).collect::<Vec<_>>().join(" <-> ")),
    );
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_checks_see_what_they_check() {
    // The scanner itself: a circle, group imports, super paths, and
    // comments and strings that must not count.
    let code = blank_comments_and_strings(
        "use crate::{a::X, b};\n// crate::c::Y in a comment\nlet s = \"crate::d\";\nuse super::{e, f::G};\nfn f<'a>(x: &'a str) -> char { 'x' }\nuse crate::g;",
    );
    let m: Module = vec!["h".into(), "i".into()];
    let found: BTreeSet<String> = paths(&m, &code).iter().map(name).collect();
    let want: BTreeSet<String> = ["a::X", "b", "h::e", "h::f::G", "g"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(found, want);
    let mut g: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    g.entry("a").or_default().insert("b");
    g.entry("b").or_default().insert("c");
    g.entry("c").or_default().insert("a");
    g.entry("c").or_default().insert("d");
    assert_eq!(circles(&g), vec![vec!["a", "b", "c"]]);
    assert_eq!(
        without_tests(
            "fn a() {}\n#[cfg(test)]\nmod tests {\n fn b() { crate::x(); }\n}\nfn c() {}"
        ),
        "fn a() {}\n\nfn c() {}"
    );
    // The real tree has the modules the layers name.
    let modules: BTreeSet<String> = sources().iter().map(|s| name(&s.module)).collect();
    for m in [
        "select",
        "snapshot",
        "dns::answer",
        "dns::fast",
        "metrics::scrape",
    ] {
        assert!(modules.contains(m), "{m} not found in src/");
    }
}
