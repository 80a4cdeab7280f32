//! Layers point down only. Reads every `crate::…` path (and `super::`
//! chains that climb to the crate root) in `brain/src` and fails on an
//! import of a module that is not strictly below the importer in the layer
//! table of `brain/ARCHITECTURE.md` — the one table the page documents and
//! this test enforces. A module missing from the table fails too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `module -> rank`, from the ```layers block of ARCHITECTURE.md.
fn layer_table(doc: &str) -> BTreeMap<String, usize> {
    let start = doc
        .find("```layers\n")
        .expect("ARCHITECTURE.md has a ```layers block");
    let body = &doc[start + "```layers\n".len()..];
    let body = &body[..body.find("```").expect("the layers block is closed")];
    let mut table = BTreeMap::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let rank: usize = words
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("layers line {line:?} starts with a rank"));
        for m in words {
            assert!(
                table.insert(m.to_owned(), rank).is_none(),
                "{m} listed twice"
            );
        }
    }
    table
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("readable src dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file below `src`, e.g. `http/hardening/hosts.rs`
/// -> ["http", "hardening", "hosts"]; `http/mod.rs` -> ["http"].
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

fn strip_comments(src: &str) -> String {
    src.lines()
        .map(|l| match l.find("//") {
            // `//` inside a string literal is rare enough in paths we scan.
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Top-level modules a file refers to through `crate::` or a `super::`
/// chain that reaches the crate root.
fn referenced(src: &str, depth: usize) -> BTreeSet<String> {
    let src = strip_comments(src);
    let mut out = BTreeSet::new();
    let bytes = src.as_bytes();
    let mut i = 0;
    while i < src.len() {
        let rest = &src[i..];
        let boundary = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b'$');
        if boundary && rest.starts_with("crate::") {
            let after = &rest["crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name = ident_at(item.trim());
                    if !name.is_empty() {
                        out.insert(name);
                    }
                }
            } else {
                out.insert(ident_at(after));
            }
            i += "crate::".len();
            continue;
        }
        if boundary && rest.starts_with("super::") {
            let mut n = 0;
            let mut tail = rest;
            while let Some(t) = tail.strip_prefix("super::") {
                n += 1;
                tail = t;
            }
            // `use super::*` in an inline test module names no module (an
            // inline module adds a level this scan does not count, so a
            // named item there shows up as an unlisted module: loud, not
            // silently allowed).
            let name = ident_at(tail);
            if n >= depth && !name.is_empty() {
                out.insert(name);
            }
            i += n * "super::".len();
            continue;
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    // The store's macros are exported at the crate root.
    for m in ["on_db", "on_read", "on_handle", "text_enum"] {
        if out.remove(m) {
            out.insert("store".to_owned());
        }
    }
    out
}

/// Every import that does not point strictly down, as readable lines.
fn violations(src_dir: &Path, table: &BTreeMap<String, usize>) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src_dir, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for f in files {
        let rel = f.strip_prefix(src_dir).expect("below src").to_path_buf();
        let path = module_path(&rel);
        let Some(top) = path.first().cloned() else {
            continue; // lib.rs declares the modules
        };
        if top == "main" {
            continue; // the binary uses the library, not `crate::`
        }
        let Some(&rank) = table.get(&top) else {
            bad.push(format!(
                "{}: module `{top}` has no layer in ARCHITECTURE.md",
                rel.display()
            ));
            continue;
        };
        let src = std::fs::read_to_string(&f).expect("readable source");
        for target in referenced(&src, path.len()) {
            if target == top {
                continue;
            }
            match table.get(&target) {
                None => bad.push(format!(
                    "{}: imports `{target}`, which has no layer in ARCHITECTURE.md",
                    rel.display()
                )),
                Some(&r) if r >= rank => bad.push(format!(
                    "{}: `{top}` (layer {rank}) imports `{target}` (layer {r}); layers point down only",
                    rel.display()
                )),
                Some(_) => {}
            }
        }
    }
    bad
}

#[test]
fn layers_point_down_only() {
    let brain = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc =
        std::fs::read_to_string(brain.join("ARCHITECTURE.md")).expect("brain/ARCHITECTURE.md");
    let table = layer_table(&doc);
    let bad = violations(&brain.join("src"), &table);
    assert!(
        bad.is_empty(),
        "upward or unlisted imports:\n{}",
        bad.join("\n")
    );
}

#[test]
fn every_listed_module_exists() {
    let brain = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc =
        std::fs::read_to_string(brain.join("ARCHITECTURE.md")).expect("brain/ARCHITECTURE.md");
    for m in layer_table(&doc).keys() {
        let src = brain.join("src");
        assert!(
            src.join(m).is_dir() || src.join(format!("{m}.rs")).is_file(),
            "ARCHITECTURE.md lists `{m}`, which is not a module of brain/src"
        );
    }
}

#[test]
fn the_scanner_sees_every_form_of_import() {
    let src = "use crate::{store, settings::Settings};\n\
               use crate::http::Shared; // crate::cli in a comment\n\
               fn f() { crate::on_db!(x); super::super::gateway::run(); super::local(); $crate::app }";
    let got = referenced(src, 2);
    let want: BTreeSet<String> = ["store", "settings", "http", "gateway"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(got, want);
    // From a top-level module file (`http/mod.rs`), one `super::` is the root.
    assert!(referenced("use super::gateway::Gateway;", 1).contains("gateway"));
}
