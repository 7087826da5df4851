//! The crate's structure, checked: no two source files import each other, directly or
//! through others, and no layer imports one above it (the layers are `lib.rs`'s table).
//!
//! Every `.rs` file under `src/` is read: its `use` declarations (braces expanded) and every
//! path in its code that starts with `crate::`, `super::`, `self::` or a child module's
//! name — comments, doc comments and string literals left out — are resolved to the file
//! that defines the module they reach. The library (`lib.rs`) and the binary (`main.rs`)
//! are two module trees; a path into the library from the binary (`outbox_relay::...`) is
//! not an edge, since the library cannot import the binary back.

#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly by design

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The library's layers, bottom up, and the layers each may import besides itself.
const LAYERS: [(&str, &[&str]); 6] = [
    ("foundation", &[]),
    ("engine", &[]),
    ("store", &["foundation", "engine"]),
    ("broker", &["foundation", "engine"]),
    ("service", &["foundation", "engine", "store", "broker"]),
    ("ops", &["foundation", "engine", "store", "service"]),
];

/// Imports that point up a layer and are known: (file, the layer it imports). Each is
/// debt, listed so that no other creeps in; an entry that is no longer needed fails the
/// test, so the list only shrinks.
const KNOWN_UPWARD: [(&str, &str); 0] = [];

#[test]
fn no_source_files_import_each_other_in_a_circle() {
    let graph = Graph::of(&read_sources());
    let cycles = graph.cycles();
    assert!(
        cycles.is_empty(),
        "import cycles between source files (each must be broken: move the shared item down a layer):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn no_layer_imports_one_above_it() {
    let graph = Graph::of(&read_sources());
    let mut violations = Vec::new();
    let mut used_exceptions = BTreeSet::new();
    for ((from, to), evidence) in &graph.edges {
        let Some(from_layer) = layer_of(from) else {
            continue;
        };
        if to == "lib.rs" {
            violations.push(format!(
                "  {from} ({from_layer}) imports the crate root's re-export ({evidence}): name the item by its own module"
            ));
            continue;
        }
        let Some(to_layer) = layer_of(to) else {
            continue;
        };
        if from_layer == to_layer || allowed(from_layer).contains(&to_layer) {
            continue;
        }
        if KNOWN_UPWARD.contains(&(from.as_str(), to_layer)) {
            used_exceptions.insert((from.as_str(), to_layer));
            continue;
        }
        violations.push(format!(
            "  {from} ({from_layer}) imports {to} ({to_layer}): {evidence}"
        ));
    }
    assert!(
        violations.is_empty(),
        "imports that point up a layer (a layer imports only those below it; see lib.rs):\n{}",
        violations.join("\n")
    );
    let stale: Vec<_> = KNOWN_UPWARD
        .iter()
        .filter(|known| !used_exceptions.contains(known))
        .collect();
    assert!(
        stale.is_empty(),
        "these known upward imports are gone: remove them from KNOWN_UPWARD: {stale:?}"
    );
}

/// The checks above would pass vacuously if the parser found nothing: some imports every
/// reader of this crate knows of must be among the edges.
#[test]
fn the_graph_holds_the_imports_it_should() {
    let graph = Graph::of(&read_sources());
    for (from, to) in [
        ("service/relay.rs", "engine/waves.rs"),
        ("service/relay.rs", "broker/publishing.rs"),
        ("service/relay.rs", "service/probe.rs"),
        ("broker/message.rs", "engine/event.rs"),
        ("store/claim.rs", "foundation/db.rs"),
        ("store/claim.rs", "store/feed/mod.rs"),
        ("store/feed/read.rs", "engine/feed_claim.rs"),
        ("store/feed/read.rs", "store/feed/claimed.rs"),
        ("foundation/db.rs", "foundation/diagnosis.rs"),
        ("lib.rs", "service/relay.rs"),
        ("ops/mod.rs", "engine/filter.rs"),
        ("store/operator.rs", "engine/filter.rs"),
        ("cmd/ops.rs", "cmd/mod.rs"),
        ("cmd/run.rs", "cli.rs"),
        ("main.rs", "cmd/run.rs"),
    ] {
        assert!(
            graph.edges.contains_key(&(from.to_owned(), to.to_owned())),
            "{from} -> {to} not found; edges: {:#?}",
            graph.edges.keys().collect::<Vec<_>>()
        );
    }
}

#[test]
fn the_parser_finds_paths_in_code_only_and_reports_a_cycle_by_its_files() {
    let files = BTreeMap::from([
        (
            "lib.rs".to_owned(),
            "pub mod a;\npub mod b;\nmod c;\npub use a::Thing;\n".to_owned(),
        ),
        (
            "a.rs".to_owned(),
            concat!(
                "//! Not an import: [`crate::c`], nor `use crate::c::X;`.\n",
                "use crate::{b::{self, Other}, a as _};\n",
                "const TEXT: &str = \"crate::c::not_code\"; // crate::c too\n",
                "/* crate::c::block */\n",
                "fn f<'a>(x: &'a str) -> char { let _ = x; '\"' }\n",
                "#[cfg(test)]\nmod tests {\n    use super::*;\n    use std::fmt;\n}\n",
            )
            .to_owned(),
        ),
        (
            "b.rs".to_owned(),
            "pub fn g() { let _ = crate::c::h(); }\n".to_owned(),
        ),
        (
            "c.rs".to_owned(),
            "pub fn h() { super::a::f(\"x\"); }\n".to_owned(),
        ),
    ]);
    let graph = Graph::of(&files);
    let edges: BTreeSet<(&str, &str)> = graph
        .edges
        .keys()
        .map(|(from, to)| (from.as_str(), to.as_str()))
        .collect();
    assert_eq!(
        edges,
        BTreeSet::from([
            ("lib.rs", "a.rs"),
            ("a.rs", "b.rs"),
            ("b.rs", "c.rs"),
            ("c.rs", "a.rs"),
        ])
    );
    let cycles = graph.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(
        cycles[0].starts_with("  a.rs -> b.rs (line 2: crate::b) -> c.rs (line 1: crate::c::h) -> a.rs (line 1: super::a::f)"),
        "{}",
        cycles[0]
    );
}

/// Every `.rs` file under `src/`, by its path relative to `src/` (with `/`).
fn read_sources() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(&root).unwrap();
                let name = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                files.insert(name, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    assert!(files.contains_key("lib.rs"), "no src/lib.rs under {root:?}");
    files
}

/// The library layer of a file (`None` for the crate roots and the binary's files).
fn layer_of(file: &str) -> Option<&'static str> {
    let top = file.split('/').next()?;
    LAYERS
        .iter()
        .map(|(layer, _)| *layer)
        .find(|layer| *layer == top && file.contains('/'))
}

fn allowed(layer: &str) -> &'static [&'static str] {
    LAYERS
        .iter()
        .find(|(name, _)| *name == layer)
        .map_or(&[], |(_, below)| below)
}

/// Which file imports which, with the first place each import is made.
struct Graph {
    /// (from, to) -> "line N: path".
    edges: BTreeMap<(String, String), String>,
}

impl Graph {
    fn of(files: &BTreeMap<String, String>) -> Graph {
        let parsed: BTreeMap<&str, Parsed> = files
            .iter()
            .map(|(name, text)| (name.as_str(), parse(text)))
            .collect();
        // The module trees: module path -> file, from each crate root.
        let mut modules: BTreeMap<(String, Vec<String>), String> = BTreeMap::new();
        let mut module_of: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
        for root in ["lib.rs", "main.rs"] {
            if !files.contains_key(root) {
                continue;
            }
            let mut pending = vec![(root.to_owned(), Vec::<String>::new())];
            while let Some((file, path)) = pending.pop() {
                modules.insert((root.to_owned(), path.clone()), file.clone());
                module_of.insert(file.clone(), (root.to_owned(), path.clone()));
                let Some(own) = parsed.get(file.as_str()) else {
                    continue;
                };
                for child in &own.declared {
                    let dir = children_dir(&file);
                    let candidates = [format!("{dir}{child}.rs"), format!("{dir}{child}/mod.rs")];
                    if let Some(found) = candidates.iter().find(|c| files.contains_key(*c)) {
                        let mut child_path = path.clone();
                        child_path.push(child.clone());
                        pending.push((found.clone(), child_path));
                    }
                }
            }
        }
        let mut edges = BTreeMap::new();
        for (file, own) in &parsed {
            let Some((root, module)) = module_of.get(*file) else {
                continue;
            };
            for reference in &own.references {
                let Some(target) = resolve(&modules, root, module, reference) else {
                    continue;
                };
                if target != *file {
                    edges
                        .entry(((*file).to_owned(), target))
                        .or_insert_with(|| {
                            format!("line {}: {}", reference.line, reference.segments.join("::"))
                        });
                }
            }
        }
        Graph { edges }
    }

    /// One line per cycle (a strongly connected set of files), naming a circle through it
    /// with the import that makes each step.
    fn cycles(&self) -> Vec<String> {
        let nodes: BTreeSet<&str> = self
            .edges
            .keys()
            .flat_map(|(a, b)| [a.as_str(), b.as_str()])
            .collect();
        let next = |node: &str| -> Vec<&str> {
            self.edges
                .keys()
                .filter(|(from, _)| from == node)
                .map(|(_, to)| to.as_str())
                .collect()
        };
        let reaches = |from: &str| -> BTreeSet<&str> {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from];
            while let Some(node) = todo.pop() {
                for to in next(node) {
                    if seen.insert(to) {
                        todo.push(to);
                    }
                }
            }
            seen
        };
        let reach: BTreeMap<&str, BTreeSet<&str>> =
            nodes.iter().map(|&node| (node, reaches(node))).collect();
        let mut reported: BTreeSet<&str> = BTreeSet::new();
        let mut cycles = Vec::new();
        for &start in &nodes {
            if reported.contains(start) || !reach[start].contains(start) {
                continue;
            }
            // The files on a circle with `start`, and a shortest circle through them.
            let component: BTreeSet<&str> = reach[start]
                .iter()
                .copied()
                .filter(|&other| reach[other].contains(start))
                .collect();
            reported.extend(component.iter().copied());
            let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([start]);
            'search: while let Some(node) = queue.pop_front() {
                for to in next(node) {
                    if !component.contains(to) || came_from.contains_key(to) {
                        continue;
                    }
                    came_from.insert(to, node);
                    if to == start {
                        break 'search;
                    }
                    queue.push_back(to);
                }
            }
            let mut behind = Vec::new();
            let mut at = came_from[start];
            while at != start {
                behind.push(at);
                at = came_from[at];
            }
            behind.reverse();
            let circle: Vec<&str> = [start].into_iter().chain(behind).chain([start]).collect();
            let mut text = format!("  {start}");
            for step in circle.windows(2) {
                let evidence = &self.edges[&(step[0].to_owned(), step[1].to_owned())];
                text.push_str(&format!(" -> {} ({evidence})", step[1]));
            }
            if component.len() > circle.len() - 1 {
                text.push_str(&format!(
                    "; the circle's component holds {} files: {component:?}",
                    component.len()
                ));
            }
            cycles.push(text);
        }
        cycles
    }
}

/// The directory (with a trailing `/`, or empty) where the files of a file's child modules
/// are: beside a crate root or a `mod.rs`, in a folder named after any other file.
fn children_dir(file: &str) -> String {
    let (parent, name) = file.rsplit_once('/').unwrap_or(("", file));
    let stem = name.strip_suffix(".rs").unwrap_or(name);
    let dir = if stem == "mod" || (parent.is_empty() && matches!(stem, "lib" | "main")) {
        parent.to_owned()
    } else if parent.is_empty() {
        stem.to_owned()
    } else {
        format!("{parent}/{stem}")
    };
    if dir.is_empty() {
        dir
    } else {
        format!("{dir}/")
    }
}

/// The file a reference reaches: the deepest module its path names, or `None` for a path
/// outside the crate.
fn resolve(
    modules: &BTreeMap<(String, Vec<String>), String>,
    root: &str,
    file_module: &[String],
    reference: &Reference,
) -> Option<String> {
    let is_module = |path: &[String]| modules.contains_key(&(root.to_owned(), path.to_vec()));
    // Inline modules (`mod tests { ... }`) are part of their file: `super` from within
    // one is the file's own module.
    let mut here: Vec<String> = file_module.to_vec();
    let mut depth_inline = reference.inline_depth;
    let mut segments = reference.segments.iter().peekable();
    match segments.peek().map(|s| s.as_str()) {
        Some("crate") => {
            here.clear();
            depth_inline = 0;
            segments.next();
        }
        Some("self") => {
            segments.next();
        }
        Some("super") => {
            while segments.peek().map(|s| s.as_str()) == Some("super") {
                segments.next();
                if depth_inline > 0 {
                    depth_inline -= 1;
                } else {
                    here.pop()?;
                }
            }
        }
        // A path relative to the module: its first segment names a child module.
        Some(first) if depth_inline == 0 => {
            let mut child = here.clone();
            child.push(first.to_owned());
            if !is_module(&child) {
                return None;
            }
        }
        _ => return None,
    }
    if depth_inline > 0 {
        // A path relative to an inline module stays within the file.
        return modules
            .get(&(root.to_owned(), file_module.to_vec()))
            .cloned();
    }
    for segment in segments {
        let mut deeper = here.clone();
        deeper.push(segment.clone());
        if !is_module(&deeper) {
            break;
        }
        here = deeper;
    }
    modules.get(&(root.to_owned(), here)).cloned()
}

/// A path a file names, where it names it.
#[derive(Debug)]
struct Reference {
    segments: Vec<String>,
    line: usize,
    /// How many inline modules (`mod name { ... }`) it sits in.
    inline_depth: usize,
}

/// What a file declares and references.
#[derive(Debug, Default)]
struct Parsed {
    /// `mod name;` at the file's top level: child modules in files of their own.
    declared: Vec<String>,
    references: Vec<Reference>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

fn parse(text: &str) -> Parsed {
    let tokens = tokenize(&strip_comments_and_literals(text));
    let mut parsed = Parsed::default();
    let mut depth = 0usize;
    // Brace depths at which inline modules were opened.
    let mut inline: Vec<usize> = Vec::new();
    let mut i = 0;
    let ident = |i: usize| match tokens.get(i) {
        Some((Token::Ident(name), _)) => Some(name.as_str()),
        _ => None,
    };
    let is = |i: usize, token: &Token| tokens.get(i).is_some_and(|(t, _)| t == token);
    while let Some((token, line)) = tokens.get(i) {
        match token {
            Token::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Token::Punct('}') => {
                depth = depth.saturating_sub(1);
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
                i += 1;
            }
            Token::Ident(word) if word == "mod" => {
                match (ident(i + 1), tokens.get(i + 2).map(|(t, _)| t)) {
                    (Some(name), Some(Token::Punct(';'))) => {
                        if inline.is_empty() {
                            parsed.declared.push(name.to_owned());
                        }
                        i += 3;
                    }
                    (Some(_), Some(Token::Punct('{'))) => {
                        inline.push(depth);
                        depth += 1;
                        i += 3;
                    }
                    _ => i += 1,
                }
            }
            Token::Ident(word) if word == "use" => {
                let mut paths = Vec::new();
                i = use_tree(&tokens, i + 1, Vec::new(), &mut paths);
                parsed
                    .references
                    .extend(paths.into_iter().map(|segments| Reference {
                        segments,
                        line: *line,
                        inline_depth: inline.len(),
                    }));
            }
            // The start of a path in code (not the middle of one: `a::b::c` once).
            Token::Ident(word)
                if is(i + 1, &Token::PathSep) && (i == 0 || !is(i - 1, &Token::PathSep)) =>
            {
                let mut segments = vec![word.clone()];
                let mut j = i + 1;
                while is(j, &Token::PathSep) {
                    match ident(j + 1) {
                        Some(next) => {
                            segments.push(next.to_owned());
                            j += 2;
                        }
                        None => break,
                    }
                }
                parsed.references.push(Reference {
                    segments,
                    line: *line,
                    inline_depth: inline.len(),
                });
                i = j;
            }
            _ => i += 1,
        }
    }
    parsed
}

/// Parses a use tree from `i` (after `use`, or inside braces), adding each full path to
/// `paths`; returns the index after it (after the `;` at the top level).
fn use_tree(
    tokens: &[(Token, usize)],
    mut i: usize,
    prefix: Vec<String>,
    paths: &mut Vec<Vec<String>>,
) -> usize {
    let mut path = prefix;
    loop {
        match tokens.get(i).map(|(t, _)| t) {
            Some(Token::PathSep) => i += 1,
            Some(Token::Ident(word)) if word == "as" => i += 2,
            Some(Token::Ident(word)) => {
                if word != "self" || path.is_empty() {
                    path.push(word.clone());
                }
                i += 1;
            }
            Some(Token::Punct('*')) => i += 1,
            Some(Token::Punct('{')) => {
                i += 1;
                loop {
                    i = use_tree(tokens, i, path.clone(), paths);
                    match tokens.get(i).map(|(t, _)| t) {
                        Some(Token::Punct(',')) => i += 1,
                        Some(Token::Punct('}')) => {
                            i += 1;
                            break;
                        }
                        _ => return i,
                    }
                    if tokens.get(i).map(|(t, _)| t) == Some(&Token::Punct('}')) {
                        i += 1;
                        break;
                    }
                }
                // After a group: the tree ends here.
                if tokens.get(i).map(|(t, _)| t) == Some(&Token::Punct(';')) {
                    return i + 1;
                }
                return i;
            }
            Some(Token::Punct(';')) => {
                paths.push(path);
                return i + 1;
            }
            Some(Token::Punct(',' | '}')) | None => {
                paths.push(path);
                return i;
            }
            Some(_) => i += 1,
        }
    }
}

/// The text with comments, string literals and character literals blanked out (newlines
/// kept, so line numbers stay right).
fn strip_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut nesting = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    nesting += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    nesting -= 1;
                    out.push_str("  ");
                    i += 2;
                    if nesting == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r')))
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
            && {
                let start = if c == 'b' { i + 2 } else { i + 1 };
                let hashes = chars[start.min(chars.len())..]
                    .iter()
                    .take_while(|&&h| h == '#')
                    .count();
                chars.get(start + hashes) == Some(&'"')
            }
        {
            // A raw string: r"..." or r#"..."# (b as well).
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let hashes = chars[start..].iter().take_while(|&&h| h == '#').count();
            let body = start + hashes + 1;
            for _ in i..body {
                out.push(' ');
            }
            i = body;
            while i < chars.len() {
                if chars[i] == '"'
                    && chars[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == '#')
                        .count()
                        == hashes
                {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if let Some(&escaped) = chars.get(i) {
                    out.push(blank(escaped));
                }
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}', '\''), or a lifetime ('a).
            if next == Some('\\') {
                // The quote, the backslash and the escaped character, then to the close.
                out.push_str("   ");
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    out.push(' ');
                    i += 1;
                }
                out.push_str("  ");
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                out.push_str("   ");
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn tokenize(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push((Token::PathSep, line));
            i += 2;
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let word = word.trim_start_matches('$').to_owned();
            // `r#ident` is the identifier `ident`.
            if word == "r" && chars.get(i) == Some(&'#') {
                i += 1;
                continue;
            }
            tokens.push((Token::Ident(word), line));
        } else {
            tokens.push((Token::Punct(c), line));
            i += 1;
        }
    }
    tokens
}
