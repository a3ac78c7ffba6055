//! The shape of `src/`, checked: no `use` cycle between files, controller files of a readable size,
//! and one writer of a CertificateRequest's status. These read the source as text; they run no code.
//!
//! A file's dependencies are the modules its paths name (`crate::…`, `super::…`, `self::…`, and in a
//! `mod.rs` its own child modules). A path to an ancestor module that names one of its re-exports
//! (`pub use child::Item`) counts as a dependency on the file that defines the item, so a facade
//! `mod.rs` does not make every child depend on every other; an item defined in an ancestor's own
//! file does count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, by module path (`lib.rs` and `main.rs` are the root).
fn modules() -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src is readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = src_dir();
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .filter(|p| !p.ends_with("main.rs"))
        .map(|p| {
            let rel = p.strip_prefix(&root).expect("under src");
            let mut module: Module = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            (module, p)
        })
        .collect()
}

/// The source without comments and without the trailing unit-test module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("source is readable");
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_dir_module(path: &Path) -> bool {
    path.ends_with("mod.rs") || path.ends_with("lib.rs")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths that follow `prefix::` in `text`: `a::b::c`, with one level of `{x, y::z}` expanded.
fn paths_after(text: &str, prefix: &str) -> Vec<Vec<String>> {
    let needle = format!("{prefix}::");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(&needle) {
        let start = from + at;
        from = start + needle.len();
        let before = text[..start].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        let mut rest = &text[from..];
        let mut base = Vec::new();
        loop {
            let len = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
            if len == 0 {
                break;
            }
            base.push(rest[..len].to_string());
            rest = &rest[len..];
            match rest.strip_prefix("::") {
                Some(r) => rest = r,
                None => break,
            }
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let item = item.split(" as ").next().unwrap_or_default();
                let mut path = base.clone();
                path.extend(
                    item.split("::")
                        .map(|s| s.trim().trim_start_matches('{').to_string())
                        .filter(|s| !s.is_empty() && s != "self"),
                );
                out.push(path);
            }
        } else {
            out.push(base);
        }
    }
    out
}

/// The longest module that `path` starts with.
fn resolve(modules: &BTreeMap<Module, PathBuf>, path: &[String]) -> Option<Module> {
    (0..=path.len())
        .rev()
        .map(|i| path[..i].to_vec())
        .find(|m| modules.contains_key(m))
}

/// Where an ancestor module's re-export of `item` comes from, as a path from the crate root.
fn reexport_source(ancestor: &Module, ancestor_code: &str, item: &str) -> Option<Vec<String>> {
    for stmt in ancestor_code.split(';') {
        let Some(used) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let used = used.replace(char::is_whitespace, "");
        let (base, names) = match used.split_once("::{") {
            Some((base, group)) => (base.to_string(), group.trim_end_matches('}').to_string()),
            None => match used.rsplit_once("::") {
                Some((base, name)) => (base.to_string(), name.to_string()),
                None => continue,
            },
        };
        let named = names
            .split(',')
            .any(|n| n.split("as").next().unwrap_or_default() == item);
        if !named {
            continue;
        }
        let segs: Vec<String> = base.split("::").map(str::to_string).collect();
        let mut from_root = match segs.first().map(String::as_str) {
            Some("crate") => Vec::new(),
            Some("super") => ancestor[..ancestor.len().saturating_sub(1)].to_vec(),
            Some("self") => ancestor.clone(),
            _ => {
                let mut m = ancestor.clone();
                m.push(segs[0].clone());
                m
            }
        };
        from_root.extend(segs.into_iter().skip(1));
        return Some(from_root);
    }
    None
}

/// The modules each module uses.
fn dependencies() -> BTreeMap<Module, BTreeSet<Module>> {
    let modules = modules();
    let codes: BTreeMap<Module, String> =
        modules.iter().map(|(m, p)| (m.clone(), code(p))).collect();
    let mut deps = BTreeMap::new();
    for (module, path) in &modules {
        let text = &codes[module];
        let dir = is_dir_module(path);
        let parent: Module = module[..module.len().saturating_sub(1)].to_vec();
        let mut absolute: Vec<Vec<String>> = Vec::new();
        for p in paths_after(text, "crate") {
            absolute.push(p);
        }
        for p in paths_after(text, "super") {
            let mut a = parent.clone();
            a.extend(p);
            absolute.push(a);
        }
        for p in paths_after(text, "self") {
            let mut a = module.clone();
            a.extend(p);
            absolute.push(a);
        }
        if dir {
            // Bare paths to the module's own children (`child::Item`).
            for (child, _) in modules.range(module.clone()..) {
                if child.len() != module.len() + 1 || child[..module.len()] != module[..] {
                    continue;
                }
                let name = child.last().expect("a child has a name");
                absolute.extend(paths_after(text, name).into_iter().map(|p| {
                    let mut a = child.clone();
                    a.extend(p);
                    a
                }));
            }
        }
        let mut mine = BTreeSet::new();
        for path in absolute {
            let Some(mut target) = resolve(&modules, &path) else {
                continue;
            };
            let is_ancestor = target.len() < module.len() && module[..target.len()] == target[..];
            if is_ancestor && path.len() > target.len() {
                let item = &path[target.len()];
                if let Some(source) = reexport_source(&target, &codes[&target], item)
                    && let Some(defining) = resolve(&modules, &source)
                {
                    target = defining;
                }
            }
            if &target != module && !target.is_empty() {
                mine.insert(target);
            }
        }
        deps.insert(module.clone(), mine);
    }
    deps
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(deps: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        deps: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        next: usize,
        out: Vec<Vec<Module>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.deps.get(v).into_iter().flatten() {
            let Some((w, _)) = s.deps.get_key_value(w) else {
                continue;
            };
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
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        deps,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in deps.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_use_cycle_between_files_under_src() {
    let deps = dependencies();
    let found: Vec<String> = cycles(&deps)
        .into_iter()
        .map(|c| {
            let names: BTreeSet<String> = c.iter().map(|m| m.join("::")).collect();
            let edges: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    deps[a]
                        .iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("{} -> {}", a.join("::"), b.join("::")))
                })
                .collect();
            format!("{names:?}: {}", edges.join(", "))
        })
        .collect();
    assert!(found.is_empty(), "use cycles:\n{}", found.join("\n"));
}

#[test]
fn the_checker_sees_a_cycle_when_there_is_one() {
    let mut deps = BTreeMap::new();
    let a: Module = vec!["a".into()];
    let b: Module = vec!["b".into()];
    let c: Module = vec!["c".into()];
    deps.insert(a.clone(), BTreeSet::from([b.clone()]));
    deps.insert(b, BTreeSet::from([a.clone()]));
    deps.insert(c, BTreeSet::from([a]));
    let found = cycles(&deps);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].len(), 2);
    assert!(
        paths_after("use super::{x::Y, z}; crate::q::r(1)", "super")
            == vec![vec!["x".to_string(), "Y".into()], vec!["z".to_string()]]
    );
}

#[test]
fn no_controller_file_is_over_450_lines() {
    let long: Vec<String> = modules()
        .into_iter()
        .filter(|(m, _)| m.first().is_some_and(|s| s == "controller"))
        .filter_map(|(_, p)| {
            let lines = std::fs::read_to_string(&p).ok()?.lines().count();
            (lines > 450).then(|| format!("{} ({lines} lines)", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "too long: {long:?}");
}

#[test]
fn a_certificate_request_status_is_written_from_one_function() {
    let dir = src_dir().join("controller/certificate_request");
    let writers: Vec<String> = std::fs::read_dir(&dir)
        .expect("readable")
        .filter_map(|e| {
            let p = e.ok()?.path();
            if p.is_dir() {
                return None;
            }
            let text = code(&p);
            let n = text.matches("patch_status(").count();
            (n > 0).then(|| format!("{} ({n})", p.display()))
        })
        .collect();
    assert_eq!(writers.len(), 1, "status writers: {writers:?}");
    assert!(writers[0].contains("status.rs (1)"), "{writers:?}");
}

// ---- Links in the documentation -------------------------------------------------------------

/// What a relative link in the documentation may point at.
enum LinkTarget {
    /// Nothing in the repository has that path.
    Missing,
    /// A file or directory that is not Markdown: it has no headings to anchor to.
    Other,
    /// A Markdown file, with its text.
    Markdown(String),
}

/// The text of a Markdown document outside fenced code blocks, with inline code spans removed.
fn prose(text: &str) -> Vec<String> {
    let mut in_fence = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        // Drop `code spans`: the odd-numbered pieces between backticks.
        let kept: String = line.split('`').step_by(2).collect();
        out.push(kept);
    }
    out
}

/// GitHub's anchor for a heading's text: the rendered text lowercased, punctuation dropped (except `-`
/// and `_`), spaces made hyphens.
fn heading_slug(heading: &str) -> String {
    // `[text](url)` renders as `text`.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        let Some(mid) = rest[open..].find("](") else {
            break;
        };
        let Some(close) = rest[open + mid..].find(')') else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..open + mid]);
        rest = &rest[open + mid + close + 1..];
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown document's headings, with GitHub's `-1`, `-2` … for repeated ones.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if in_fence || !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug = heading_slug(line[hashes..].trim().trim_end_matches('#'));
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 { slug } else { format!("{slug}-{n}") });
        *n += 1;
    }
    out
}

/// `dir/../a/./b` as `a/b`; `None` when it leaves the repository.
fn normalise(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Every relative link (`](path)`, `](path#anchor)`, `](#anchor)`) in `docs` (repository path, text)
/// that does not resolve: to a path `lookup` knows, and for an anchor to a heading of that Markdown file.
fn broken_links(docs: &[(String, String)], lookup: &dyn Fn(&str) -> LinkTarget) -> Vec<String> {
    let mut broken = Vec::new();
    for (file, text) in docs {
        let dir = file.rsplit_once('/').map_or("", |(d, _)| d);
        for line in prose(text) {
            for piece in line.split("](").skip(1) {
                let Some(end) = piece.find(')') else {
                    continue;
                };
                let link = piece[..end].split_whitespace().next().unwrap_or_default();
                let link = link.trim_start_matches('<').trim_end_matches('>');
                if link.contains("://") || link.starts_with("mailto:") {
                    continue;
                }
                let (path, anchor) = match link.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (link, None),
                };
                let target = if path.is_empty() {
                    Some(file.clone())
                } else if let Some(from_root) = path.strip_prefix('/') {
                    normalise(from_root)
                } else {
                    normalise(&format!("{dir}/{path}"))
                };
                let ok = match target.map(|t| (lookup(&t), anchor)) {
                    None | Some((LinkTarget::Missing, _)) => false,
                    Some((_, None)) => true,
                    Some((LinkTarget::Markdown(md), Some(a))) => anchors(&md).contains(a),
                    Some((LinkTarget::Other, Some(_))) => false,
                };
                if !ok {
                    broken.push(format!("{file}: ]({link})"));
                }
            }
        }
    }
    broken
}

/// The Markdown files whose links are checked: README.md and the other top-level `.md` files,
/// `docs/*.md` and `tests/cluster/README.md`.
fn documentation() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = Vec::new();
    for dir in ["", "docs"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".md") && entry.path().is_file() {
                files.push(if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                });
            }
        }
    }
    files.push("tests/cluster/README.md".into());
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(root.join(&f)).expect("documentation is readable");
            (f, text)
        })
        .collect()
}

#[test]
fn every_relative_link_in_the_documentation_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = documentation();
    assert!(
        docs.iter().any(|(f, _)| f == "README.md"),
        "README.md is checked"
    );
    let lookup = |path: &str| {
        let p = root.join(path);
        if p.is_file() && path.ends_with(".md") {
            std::fs::read_to_string(&p).map_or(LinkTarget::Missing, LinkTarget::Markdown)
        } else if p.exists() {
            LinkTarget::Other
        } else {
            LinkTarget::Missing
        }
    };
    let broken = broken_links(&docs, &lookup);
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_checker_sees_a_broken_link() {
    let readme = "[a](docs/x.md#there) [b](docs/nope.md) [c](#missing) [d](#ok-heading)\n\
                  ```\n[e](inside-a-fence.md)\n```\n\
                  `[f](in-a-code-span.md)` [g](../outside.md) [h](https://example.com/x)\n\
                  [i](src) [j](src#x) [k](docs/x.md \"title\")\n\
                  ## OK heading\n";
    let x = "# There\n[back](../README.md#ok-heading) [bad](../README.md#nope)\n";
    let docs = vec![
        ("README.md".to_string(), readme.to_string()),
        ("docs/x.md".to_string(), x.to_string()),
    ];
    let lookup = |path: &str| match path {
        "README.md" => LinkTarget::Markdown(readme.to_string()),
        "docs/x.md" => LinkTarget::Markdown(x.to_string()),
        "src" => LinkTarget::Other,
        _ => LinkTarget::Missing,
    };
    assert_eq!(
        broken_links(&docs, &lookup),
        vec![
            "README.md: ](docs/nope.md)",
            "README.md: ](#missing)",
            "README.md: ](../outside.md)",
            "README.md: ](src#x)",
            "docs/x.md: ](../README.md#nope)",
        ]
    );
    assert_eq!(
        heading_slug("The API: `PrivateCA` and `ClusterPrivateCA`"),
        "the-api-privateca-and-clusterprivateca"
    );
    assert_eq!(
        heading_slug("Coming from NAVER's issuer (`privateca-issuer.ncloud.com`)"),
        "coming-from-navers-issuer-privateca-issuerncloudcom"
    );
    assert_eq!(heading_slug("See [the docs](x.md) now"), "see-the-docs-now");
    let repeated = anchors("# A\n## A\n```\n# not a heading\n```\n#nospace\n");
    assert_eq!(
        repeated,
        BTreeSet::from(["a".to_string(), "a-1".to_string()])
    );
}
