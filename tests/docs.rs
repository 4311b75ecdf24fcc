//! The documentation stays a front door with the depth behind it (issue 20): README.md under
//! 250 lines and linking every page of `docs/`; every relative link in README.md, `docs/*.md`
//! and `models/README.md` resolves to a file in the repository, and every `#anchor` to a
//! heading of its target (GitHub's slugs); `src/lib.rs`'s map and docs/architecture.md place
//! every top-level module. No database needed: `cargo nextest run --test docs`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

const README_MAX_LINES: usize = 250;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The Markdown files whose links are checked, relative to the repository.
fn checked_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![
        PathBuf::from("README.md"),
        PathBuf::from("models/README.md"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(root).expect("under the root").to_path_buf())
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// Lines outside fenced code blocks, with their numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(f), Some(m)) if f == m => fence = None,
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// A line with its inline code spans blanked (a code span is never a link).
fn without_code(line: &str) -> String {
    let mut out = String::new();
    let mut parts = line.split('`');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for (i, part) in parts.enumerate() {
        if i % 2 == 1 {
            out.push_str(part);
        } else {
            out.push_str("code");
        }
    }
    out
}

/// Link targets on a line: inline links and images `[text](target "title")` and reference
/// definitions `[label]: target`.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code(line);
    let mut out = Vec::new();
    let trimmed = line.trim_start();
    if trimmed.starts_with('[') {
        if let Some(end) = trimmed.find("]:") {
            if let Some(target) = trimmed[end + 2..].split_whitespace().next() {
                out.push(target.trim_matches(['<', '>']).to_owned());
            }
        }
    }
    let mut rest = line.as_str();
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let mut depth = 0;
        let mut end = after.len();
        for (j, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = j;
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let inside = after[..end].trim();
        let target = inside.split_whitespace().next().unwrap_or("");
        out.push(target.trim_matches(['<', '>']).to_owned());
        rest = &after[end.min(after.len())..];
    }
    out
}

/// GitHub's anchor for a heading: its text as rendered, lower-cased, without punctuation but
/// hyphens and underscores, spaces turned into hyphens.
fn slug(heading: &str) -> String {
    // Links keep their text; code spans and emphasis keep their content.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        match (rest[open..].find("]("), rest[open..].find(')')) {
            (Some(mid), Some(close)) if mid < close => {
                text.push_str(&rest[..open]);
                text.push_str(&rest[open + 1..open + mid]);
                rest = &rest[open + close + 1..];
            }
            _ => break,
        }
    }
    text.push_str(rest);
    text.chars()
        .filter(|c| !matches!(c, '`' | '*'))
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor a Markdown file offers: its headings' slugs, duplicates numbered as GitHub
/// numbers them (`x`, `x-1`, `x-2`).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(line[hashes..].trim().trim_end_matches('#').trim());
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// `a/b/../c` → `a/c`, without touching the file system; `None` when it leaves the root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Every relative link in `files` (paths relative to `root`) that does not resolve, as
/// `file:line: target (why)`.
fn broken_links(root: &Path, files: &[PathBuf]) -> Vec<String> {
    let mut errors = Vec::new();
    for file in files {
        let text = read(&root.join(file));
        for (line_no, line) in prose_lines(&text) {
            for target in link_targets(line) {
                let external = target.contains("://") || target.starts_with("mailto:");
                if external {
                    continue;
                }
                let (path, anchor) = match target.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (target.as_str(), None),
                };
                let mut fail = |why: String| {
                    errors.push(format!("{}:{line_no}: {target} ({why})", file.display()))
                };
                if path.is_empty() && anchor.is_none() {
                    fail("empty link".into());
                    continue;
                }
                let resolved = if path.is_empty() {
                    Some(file.clone())
                } else {
                    normalize(&file.parent().unwrap_or(Path::new("")).join(path))
                };
                let Some(resolved) = resolved else {
                    fail("points outside the repository".into());
                    continue;
                };
                let full = root.join(&resolved);
                if !full.exists() {
                    fail(format!("{} does not exist", resolved.display()));
                    continue;
                }
                if let Some(anchor) = anchor {
                    if resolved.extension().is_none_or(|e| e != "md") {
                        fail("an anchor into a file that is not Markdown".into());
                    } else if !anchors(&read(&full)).contains(anchor) {
                        fail(format!(
                            "no heading with that anchor in {}",
                            resolved.display()
                        ));
                    }
                }
            }
        }
    }
    errors
}

#[test]
fn readme_is_a_front_door_under_250_lines() {
    let lines = read(&root().join("README.md")).lines().count();
    assert!(
        lines < README_MAX_LINES,
        "README.md has {lines} lines; move depth into docs/ (the limit is {README_MAX_LINES})"
    );
}

#[test]
fn every_relative_link_resolves() {
    let root = root();
    let files = checked_files(&root);
    assert!(files.len() >= 8, "checked: {files:?}");
    let errors = broken_links(&root, &files);
    assert!(
        errors.is_empty(),
        "{} broken link(s):\n{}",
        errors.len(),
        errors.join("\n")
    );
}

#[test]
fn the_readme_links_every_docs_page() {
    let root = root();
    let readme = read(&root.join("README.md"));
    let linked: BTreeSet<String> = prose_lines(&readme)
        .into_iter()
        .flat_map(|(_, l)| link_targets(l))
        .map(|t| t.split('#').next().unwrap_or("").to_owned())
        .collect();
    let missing: Vec<String> = checked_files(&root)
        .into_iter()
        .filter(|f| f.starts_with("docs"))
        .map(|f| f.display().to_string())
        .filter(|f| !linked.contains(f))
        .collect();
    assert!(missing.is_empty(), "not linked from README.md: {missing:?}");
}

/// `src/lib.rs`'s map and the architecture page each name every top-level module.
#[test]
fn every_module_is_placed_by_role() {
    let root = root();
    let lib = read(&root.join("src/lib.rs"));
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert!(modules.len() > 10, "{modules:?}");
    let map: String = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let architecture = read(&root.join("docs/architecture.md"));
    for m in modules {
        let name = format!("`{m}`");
        assert!(
            map.contains(&name),
            "src/lib.rs's map does not place {name}"
        );
        assert!(
            architecture.contains(&name),
            "docs/architecture.md does not place {name}"
        );
    }
}

#[test]
fn slugs_are_githubs() {
    assert_eq!(slug("Ingest end to end"), "ingest-end-to-end");
    assert_eq!(
        slug("External check: NASA C-MAPSS FD001"),
        "external-check-nasa-c-mapss-fd001"
    );
    assert_eq!(
        slug("The `fast_load` path, **fast**"),
        "the-fast_load-path-fast"
    );
    assert_eq!(slug("See [the API](api.md) (v1)"), "see-the-api-v1");
    let text = "# A\n## Same\n```\n# not a heading\n```\n## Same\n### Same\n";
    assert_eq!(
        anchors(text),
        BTreeSet::from(["a".into(), "same".into(), "same-1".into(), "same-2".into()])
    );
}

/// The checker itself, on a planted tree: what it must find, and what is not a link.
#[test]
fn planted_broken_links_are_found() {
    let dir = std::env::temp_dir().join(format!("aftercare-docs-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("docs")).expect("temp dir");
    let write = |p: &str, t: &str| std::fs::write(dir.join(p), t).expect("write");
    write(
        "README.md",
        "# Top\n[ok](docs/a.md#part-two) [ok](#top) [web](https://example.com/x#y)\n\
         [gone](docs/missing.md) [bad anchor](docs/a.md#nope) `[code](docs/nowhere.md)`\n\
         ```\n[fenced](docs/nowhere.md)\n```\n[out](../elsewhere.md)\n\n[ref]: docs/a.md#part-3\n",
    );
    write("docs/a.md", "# A\n## Part two\n[back](../README.md#top)\n");
    let files = vec![PathBuf::from("README.md"), PathBuf::from("docs/a.md")];
    let errors = broken_links(&dir, &files);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        errors,
        vec![
            "README.md:3: docs/missing.md (docs/missing.md does not exist)".to_owned(),
            "README.md:3: docs/a.md#nope (no heading with that anchor in docs/a.md)".to_owned(),
            "README.md:7: ../elsewhere.md (points outside the repository)".to_owned(),
            "README.md:9: docs/a.md#part-3 (no heading with that anchor in docs/a.md)".to_owned(),
        ]
    );
}
