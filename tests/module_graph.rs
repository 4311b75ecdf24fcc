//! No module imports from a module that imports it back (issue 20). Reads `src/**/*.rs`,
//! follows every `crate::…`, `super::…` and `self::…` path (in `use` trees and in code,
//! `#[cfg(test)]` code included) and every path through a name a `use` brought in, and
//! builds the import graph twice: between file modules (`store::writer`) and between
//! top-level modules (`store`, `model`, `config`). Each cycle is printed with the line that
//! makes each step of it.
//!
//! One rule: a module's references to its own descendants do not count (a folder's
//! `mod.rs` declares, re-exports and routes to what it contains); its children's
//! references to it do, like any other. The binary (`src/main.rs`) is a crate of its own.
//!
//! Run it alone: `cargo nextest run --test module_graph` (no database needed).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::Path;

/// One `.rs` file: where it is (for messages), its module path, its text.
struct SourceFile {
    display: String,
    module: Vec<String>,
    text: String,
}

/// Where an edge was seen first.
#[derive(Clone, Debug)]
struct Evidence {
    file: String,
    line: usize,
    path: String,
}

/// Module → module it imports from → where (the first line in each file that does).
type Graph = BTreeMap<String, BTreeMap<String, Vec<Evidence>>>;

fn add(graph: &mut Graph, from: String, to: String, evidence: Evidence) {
    let places = graph.entry(from).or_default().entry(to).or_default();
    if !places.iter().any(|e| e.file == evidence.file) {
        places.push(evidence);
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Open,
    Close,
    Comma,
    Semi,
    Star,
    Other,
}

/// Rust tokens that matter for paths, with their lines; comments, strings, chars and
/// lifetimes are skipped, so a path in a doc comment or a string is not an import.
fn lex(text: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    while i < c.len() {
        let ch = c[i];
        let start_line = line;
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_string(&c, i + 1, &mut line);
            out.push((Tok::Other, start_line));
        } else if (ch == 'r' || ch == 'b') && is_raw_or_byte_string(&c, i) {
            i = skip_prefixed_string(&c, i, &mut line);
            out.push((Tok::Other, start_line));
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                // A lifetime or label.
                i += 1;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
            }
            out.push((Tok::Other, start_line));
        } else if ch.is_alphabetic() || ch == '_' {
            if ch == 'r' && at(i + 1) == '#' {
                i += 2; // raw identifier
            }
            let s = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[s..i].iter().collect()), start_line));
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Other, start_line));
        } else {
            let tok = match ch {
                ':' if at(i + 1) == ':' => {
                    i += 1;
                    Tok::Sep
                }
                '{' => Tok::Open,
                '}' => Tok::Close,
                ',' => Tok::Comma,
                ';' => Tok::Semi,
                '*' => Tok::Star,
                _ => Tok::Other,
            };
            i += 1;
            out.push((tok, start_line));
        }
    }
    out
}

/// Past the closing quote of a string whose opening quote is before `i`.
fn skip_string(c: &[char], mut i: usize, line: &mut usize) -> usize {
    while i < c.len() && c[i] != '"' {
        if c[i] == '\\' {
            i += 1;
        }
        if c.get(i) == Some(&'\n') {
            *line += 1;
        }
        i += 1;
    }
    i + 1
}

/// `b"…"`, `br"…"`, `r"…"`, `r#"…"#` (not `r#ident`, not an identifier starting with r or b).
fn is_raw_or_byte_string(c: &[char], i: usize) -> bool {
    let mut j = i;
    if c.get(j) == Some(&'b') {
        j += 1;
        if c.get(j) == Some(&'"') || c.get(j) == Some(&'\'') {
            return true;
        }
    }
    if c.get(j) != Some(&'r') {
        return false;
    }
    j += 1;
    while c.get(j) == Some(&'#') {
        j += 1;
    }
    c.get(j) == Some(&'"')
}

fn skip_prefixed_string(c: &[char], mut i: usize, line: &mut usize) -> usize {
    if c[i] == 'b' {
        i += 1;
        match c.get(i) {
            Some('"') => return skip_string(c, i + 1, line),
            Some('\'') => {
                i += 1;
                while i < c.len() && c[i] != '\'' {
                    i += 1 + usize::from(c[i] == '\\');
                }
                return i + 1;
            }
            _ => {}
        }
    }
    i += 1; // the r
    let mut hashes = 0;
    while c.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    i += 1; // the opening quote
    while i < c.len() {
        if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
            return i + 1 + hashes;
        }
        if c[i] == '\n' {
            *line += 1;
        }
        i += 1;
    }
    i
}

/// `src/a/b.rs` → `a::b`, `src/a/mod.rs` → `a`, `src/lib.rs` → the crate root.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] {
        parts.clear();
    }
    parts
}

fn read_sources(src: &Path) -> Vec<SourceFile> {
    fn walk(dir: &Path, src: &Path, out: &mut Vec<SourceFile>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, src, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).expect("under src");
                if rel == Path::new("main.rs") {
                    continue;
                }
                out.push(SourceFile {
                    display: format!("src/{}", rel.display()),
                    module: module_of(rel),
                    text: std::fs::read_to_string(&path)
                        .unwrap_or_else(|e| panic!("read {}: {e}", path.display())),
                });
            }
        }
    }
    let mut out = Vec::new();
    walk(src, src, &mut out);
    out
}

/// Resolves paths in one file and records the edges they make.
struct FileScan<'a> {
    file: &'a SourceFile,
    modules: &'a BTreeSet<Vec<String>>,
    /// Names a `use` bound to a module.
    aliases: HashMap<String, Vec<String>>,
    /// Modules declared with `mod name;` or `mod name {` in this file, by the module they are in.
    children: BTreeSet<Vec<String>>,
    edges: Vec<(Vec<String>, Evidence)>,
}

impl FileScan<'_> {
    /// The absolute path a path starting with `head` names, from inside module `scope`.
    fn absolute(&self, scope: &[String], segs: &[String]) -> Option<Vec<String>> {
        let (head, rest) = segs.split_first()?;
        let mut base: Vec<String> = match head.as_str() {
            "crate" => Vec::new(),
            "self" => scope.to_vec(),
            "super" => {
                let mut b = scope.to_vec();
                b.pop()?;
                let mut rest = rest;
                while rest.first().is_some_and(|s| s == "super") {
                    b.pop()?;
                    rest = &rest[1..];
                }
                b.extend(rest.iter().cloned());
                return Some(b);
            }
            name => {
                let mut child = scope.to_vec();
                child.push(name.to_owned());
                if let Some(a) = self.aliases.get(name) {
                    a.clone()
                } else if self.children.contains(&child)
                    || (scope.is_empty() && self.is_module(&child))
                {
                    child
                } else {
                    return None; // another crate, or a local item
                }
            }
        };
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn is_module(&self, path: &[String]) -> bool {
        self.modules.contains(path) || self.children.contains(path)
    }

    /// Records the file module that `path` lands in.
    fn record(&mut self, path: &[String], line: usize, text: String) {
        let Some(target) = (0..=path.len())
            .rev()
            .map(|n| &path[..n])
            .find(|p| self.modules.contains(*p))
        else {
            return;
        };
        // Itself, or one of its own descendants: containment, not an import.
        if target.starts_with(&self.file.module) {
            return;
        }
        self.edges.push((
            target.to_vec(),
            Evidence {
                file: self.file.display.clone(),
                line,
                path: text,
            },
        ));
    }

    /// A `use` tree from `toks[i]` (after `use`) to its `;`; returns the index after it.
    fn use_tree(&mut self, toks: &[(Tok, usize)], mut i: usize, scope: &[String]) -> usize {
        let mut leaves = Vec::new();
        i = parse_tree(toks, i, &mut Vec::new(), &mut leaves);
        for (segs, alias, line) in leaves {
            let Some(abs) = self.absolute(scope, &segs) else {
                continue;
            };
            if let Some(alias) = alias {
                if self.is_module(&abs) {
                    self.aliases.insert(alias, abs.clone());
                }
            }
            self.record(&abs, line, segs.join("::"));
        }
        while i < toks.len() && toks[i].0 != Tok::Semi {
            i += 1;
        }
        i + 1
    }

    fn scan(&mut self, toks: &[(Tok, usize)]) {
        // First the declared child modules (their names resolve like paths).
        let mut inline = InlineModules::default();
        for i in 0..toks.len() {
            let mut child = inline.path(&self.file.module);
            if let Some(name) = inline.step(toks, i) {
                child.push(name);
                self.children.insert(child);
            }
        }
        // Then every path, with the inline module it is written in.
        let (mut inline, mut i) = (InlineModules::default(), 0);
        while i < toks.len() {
            inline.step(toks, i);
            let scope = inline.path(&self.file.module);
            let (tok, line) = &toks[i];
            match tok {
                Tok::Ident(k) if k == "use" => {
                    i = self.use_tree(toks, i + 1, &scope);
                    continue;
                }
                Tok::Ident(head)
                    if toks.get(i + 1).is_some_and(|t| t.0 == Tok::Sep)
                        && (i == 0 || toks[i - 1].0 != Tok::Sep) =>
                {
                    let mut segs = vec![head.clone()];
                    let mut j = i + 1;
                    while let (Some((Tok::Sep, _)), Some((Tok::Ident(s), _))) =
                        (toks.get(j), toks.get(j + 1))
                    {
                        segs.push(s.clone());
                        j += 2;
                    }
                    if let Some(abs) = self.absolute(&scope, &segs) {
                        self.record(&abs, *line, segs.join("::"));
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// The inline modules (`mod tests { … }`) a token is inside, followed token by token.
#[derive(Default)]
struct InlineModules {
    depth: usize,
    /// Each open inline module: the brace depth inside it, and its name.
    open: Vec<(usize, String)>,
}

impl InlineModules {
    /// Follows `toks[i]`; returns the name when it declares a module (`mod name;` or
    /// `mod name {`, which it also enters).
    fn step(&mut self, toks: &[(Tok, usize)], i: usize) -> Option<String> {
        match &toks[i].0 {
            Tok::Open => self.depth += 1,
            Tok::Close => {
                if self.open.last().is_some_and(|(d, _)| *d == self.depth) {
                    self.open.pop();
                }
                self.depth = self.depth.saturating_sub(1);
            }
            Tok::Ident(k) if k == "mod" => {
                if let (Some((Tok::Ident(name), _)), Some((next, _))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    if *next == Tok::Open {
                        self.open.push((self.depth + 1, name.clone()));
                    }
                    return Some(name.clone());
                }
            }
            _ => {}
        }
        None
    }

    /// The module path at this point of a file whose module is `file`.
    fn path(&self, file: &[String]) -> Vec<String> {
        let mut p = file.to_vec();
        p.extend(self.open.iter().map(|(_, n)| n.clone()));
        p
    }
}

/// Flattens a `use` tree into its leaves: (path, the name it binds, line).
fn parse_tree(
    toks: &[(Tok, usize)],
    mut i: usize,
    prefix: &mut Vec<String>,
    leaves: &mut Vec<(Vec<String>, Option<String>, usize)>,
) -> usize {
    let depth = prefix.len();
    if toks.get(i).is_some_and(|t| t.0 == Tok::Sep) {
        i += 1; // a leading `::`
    }
    loop {
        match toks.get(i) {
            Some((Tok::Ident(s), line)) => {
                let line = *line;
                if s == "self" && depth > 0 && !toks.get(i + 1).is_some_and(|t| t.0 == Tok::Sep) {
                    // `{self, …}`: the prefix itself.
                    let alias = alias_after(toks, i + 1).or_else(|| prefix.last().cloned());
                    leaves.push((prefix.clone(), alias, line));
                    i = skip_alias(toks, i + 1);
                    break;
                }
                prefix.push(s.clone());
                i += 1;
                if toks.get(i).is_some_and(|t| t.0 == Tok::Sep) {
                    i += 1;
                    continue;
                }
                let alias = alias_after(toks, i).or_else(|| prefix.last().cloned());
                leaves.push((prefix.clone(), alias, line));
                i = skip_alias(toks, i);
                break;
            }
            Some((Tok::Star, line)) => {
                leaves.push((prefix.clone(), None, *line));
                i += 1;
                break;
            }
            Some((Tok::Open, _)) => {
                i += 1;
                loop {
                    match toks.get(i) {
                        Some((Tok::Close, _)) => {
                            i += 1;
                            break;
                        }
                        Some((Tok::Comma, _)) => i += 1,
                        Some(_) => {
                            let mut sub = prefix.clone();
                            i = parse_tree(toks, i, &mut sub, leaves);
                        }
                        None => break,
                    }
                }
                break;
            }
            _ => break,
        }
    }
    prefix.truncate(depth);
    i
}

fn alias_after(toks: &[(Tok, usize)], i: usize) -> Option<String> {
    match (toks.get(i), toks.get(i + 1)) {
        (Some((Tok::Ident(a), _)), Some((Tok::Ident(name), _))) if a == "as" && name != "_" => {
            Some(name.clone())
        }
        _ => None,
    }
}

fn skip_alias(toks: &[(Tok, usize)], i: usize) -> usize {
    match toks.get(i) {
        Some((Tok::Ident(a), _)) if a == "as" => i + 2,
        _ => i,
    }
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

/// The import graph between file modules.
fn file_graph(files: &[SourceFile]) -> Graph {
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    let mut graph = Graph::new();
    for f in files {
        let mut scan = FileScan {
            file: f,
            modules: &modules,
            aliases: HashMap::new(),
            children: BTreeSet::new(),
            edges: Vec::new(),
        };
        scan.scan(&lex(&f.text));
        graph.entry(name(&f.module)).or_default();
        for (target, evidence) in scan.edges {
            add(&mut graph, name(&f.module), name(&target), evidence);
        }
    }
    graph
}

/// The same graph between top-level modules (`store::writer` counts as `store`).
fn top_level_graph(files: &Graph) -> Graph {
    let top = |m: &str| m.split("::").next().unwrap_or(m).to_owned();
    let mut graph = Graph::new();
    for (from, edges) in files {
        graph.entry(top(from)).or_default();
        for (to, places) in edges {
            if top(to) != top(from) {
                for e in places {
                    add(&mut graph, top(from), top(to), e.clone());
                }
            }
        }
    }
    graph
}

/// Strongly connected components of more than one module (Tarjan).
fn knots(graph: &Graph) -> Vec<BTreeSet<String>> {
    struct State<'g> {
        graph: &'g Graph,
        index: HashMap<&'g str, usize>,
        low: HashMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        out: Vec<BTreeSet<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flat_map(|e| e.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut knot = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                knot.insert(w.to_owned());
                if w == v {
                    break;
                }
            }
            if knot.len() > 1 {
                s.out.push(knot);
            }
        }
    }
    let mut s = State {
        graph,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// For every edge inside a knot, the shortest cycle through it; each cycle once, starting
/// at its least module.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let mut found = BTreeSet::new();
    for knot in knots(graph) {
        for u in &knot {
            for v in graph[u].keys().filter(|v| knot.contains(*v)) {
                // Shortest path v ⇝ u inside the knot.
                let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
                let mut queue = VecDeque::from([v.as_str()]);
                while let Some(x) = queue.pop_front() {
                    if x == u {
                        break;
                    }
                    for y in graph[x].keys().filter(|y| knot.contains(*y)) {
                        if y != v && !prev.contains_key(y.as_str()) {
                            prev.insert(y, x);
                            queue.push_back(y);
                        }
                    }
                }
                let mut path = vec![u.clone()];
                let mut x = u.as_str();
                while x != v {
                    x = prev[x];
                    path.push(x.to_owned());
                }
                path.reverse(); // v … u
                path.insert(0, u.clone()); // u → v … → u
                path.pop();
                let least = (0..path.len()).min_by_key(|&k| &path[k]).unwrap_or(0);
                path.rotate_left(least);
                found.insert(path);
            }
        }
    }
    found.into_iter().collect()
}

fn report(graph: &Graph, level: &str) -> String {
    let cycles = cycles(graph);
    let mut out = String::new();
    if cycles.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "{} import cycle(s) between {level}; each step with the first line in each file that makes it:",
        cycles.len()
    );
    for cycle in &cycles {
        let mut ring = cycle.clone();
        ring.push(cycle[0].clone());
        let _ = writeln!(out, "\n  {}", ring.join(" → "));
        for pair in ring.windows(2) {
            let places: Vec<String> = graph[&pair[0]][&pair[1]]
                .iter()
                .map(|e| format!("{}:{} `{}`", e.file, e.line, e.path))
                .collect();
            let _ = writeln!(out, "    {} → {}: {}", pair[0], pair[1], places.join(", "));
        }
    }
    out
}

fn crate_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read_sources(&src);
    let graph = file_graph(&files);
    // Guards against a check that passes because it read nothing.
    let edges: usize = graph.values().map(BTreeMap::len).sum();
    assert!(
        files.len() > 50 && edges > 100,
        "{} files, {edges} edges",
        files.len()
    );
    graph
}

#[test]
fn no_import_cycle_between_file_modules() {
    let report = report(&crate_graph(), "file modules");
    assert!(report.is_empty(), "{report}");
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let report = report(&top_level_graph(&crate_graph()), "top-level modules");
    assert!(report.is_empty(), "{report}");
}

fn planted(files: &[(&str, &str)]) -> Vec<SourceFile> {
    files
        .iter()
        .map(|(path, text)| SourceFile {
            display: format!("src/{path}"),
            module: module_of(Path::new(path)),
            text: (*text).to_owned(),
        })
        .collect()
}

fn edges(graph: &Graph) -> BTreeSet<(String, String)> {
    graph
        .iter()
        .flat_map(|(a, out)| out.keys().map(move |b| (a.clone(), b.clone())))
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

/// The checker itself: every form of path it must follow, and what it must not take for an
/// import.
#[test]
fn paths_resolve_as_rustc_resolves_them() {
    let files = planted(&[
        ("lib.rs", "pub mod a; pub mod b; pub mod c; pub mod d;"),
        (
            "a/mod.rs",
            "pub mod x; pub mod y; pub use x::Thing; pub struct Error; fn f() { y::g(); }",
        ),
        // `super` from the file, grouped `use` with `self`, and an alias used later.
        (
            "a/x.rs",
            "use super::Error;\nuse crate::{b::{self as bee}, c};\npub struct Thing;\n\
             fn f() { bee::h(); }",
        ),
        // `super::super` inside an inline test module names the file's parent.
        (
            "a/y.rs",
            "pub fn g() {}\n#[cfg(test)]\nmod tests {\n    use super::super::x::Thing;\n}",
        ),
        // Paths in comments, strings, raw strings and chars are not imports; a lifetime
        // does not start a char.
        (
            "b.rs",
            "// crate::d::X\n/* crate::d::Y */\nfn h<'a>(s: &'a str) -> &'a str { \
             let _ = \"crate::d::Z\"; let _ = r#\"crate::d::W\"#; let _ = '\"'; s }",
        ),
        // A path in an attribute and in an expression.
        (
            "c.rs",
            "#[schema(value_type = Vec<crate::d::Factor>)]\nstruct S;\n\
             fn k() { crate::a::x::Thing; }",
        ),
        ("d.rs", "pub struct Factor;"),
    ]);
    let graph = file_graph(&files);
    assert_eq!(
        edges(&graph),
        BTreeSet::from([
            pair("a::x", "a"),
            pair("a::x", "b"),
            pair("a::x", "c"),
            pair("a::y", "a::x"),
            pair("c", "a::x"),
            pair("c", "d"),
        ]),
        "a's own `pub use x::…` and `y::g()` are containment, b's comments and strings nothing"
    );
    assert_eq!(graph["c"]["d"][0].line, 1);
    assert_eq!(graph["a::y"]["a::x"][0].line, 4);
    assert_eq!(
        edges(&top_level_graph(&graph)),
        BTreeSet::from([
            pair("a", "b"),
            pair("a", "c"),
            pair("c", "a"),
            pair("c", "d")
        ])
    );
}

/// A planted knot is reported with every cycle in it and the line of every step.
#[test]
fn planted_cycles_are_reported_step_by_step() {
    let files = planted(&[
        ("lib.rs", "mod p; mod q; mod r; mod s;"),
        ("p.rs", "use crate::q::Q;\npub struct P;"),
        ("q.rs", "pub struct Q;\nfn f() { crate::r::R; }"),
        ("r.rs", "pub struct R;\nuse crate::p::P;\nuse crate::q::Q;"),
        ("s.rs", "use crate::p::P;"),
    ]);
    let graph = file_graph(&files);
    assert_eq!(
        cycles(&graph),
        vec![
            vec!["p".to_owned(), "q".to_owned(), "r".to_owned()],
            vec!["q".to_owned(), "r".to_owned()],
        ]
    );
    let text = report(&graph, "file modules");
    assert!(
        text.starts_with("2 import cycle(s) between file modules"),
        "{text}"
    );
    assert!(text.contains("p → q → r → p"), "{text}");
    assert!(text.contains("q → r: src/q.rs:2 `crate::r::R`"), "{text}");
    assert!(text.contains("r → p: src/r.rs:2 `crate::p::P`"), "{text}");
    assert!(!text.contains("s →"), "s is on no cycle: {text}");
    assert!(knots(&top_level_graph(&graph)).len() == 1);
}
