//! House rules the compiler does not check, read from the source tree: every Rust file opens
//! with a `//!` header; each layer imports only what ARCHITECTURE.md's codemap lets it; and
//! no comment or document cites a file the repository does not hold. (That stages cannot
//! reach an adapter is checked by the compiler: `.ci/run` builds withdraw-core with the
//! `stages` feature only, where `crate::adapters` does not exist.)

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Every file under the repository's root that is part of the project: no build output, no
/// VCS or tool state (hidden directories other than `.ci`), no installed packages.
fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable directory") {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if path.is_dir() {
                let skip = name == "target" || name == "node_modules" || (name.starts_with('.') && name != ".ci");
                if !skip {
                    dirs.push(path);
                }
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/")
}

/// The part of a Rust file that ships: everything before its `#[cfg(test)]` module.
fn shipped(text: &str) -> &str {
    text.find("\n#[cfg(test)]").map_or(text, |at| &text[..at])
}

/// Imports and paths a file uses, one `use` tree or qualified path per line, with comments
/// removed, so a rule matches code and not prose.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l.split("//").next().unwrap_or_default())).filter(|(_, l)| !l.trim().is_empty())
}

#[test]
fn every_rust_file_opens_with_a_header() {
    let root = root();
    let missing: Vec<String> = files(&root)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .filter(|p| {
            let text = std::fs::read_to_string(p).expect("utf-8 source");
            !text.trim_start().starts_with("//!")
        })
        .map(|p| rel(&root, &p))
        .collect();
    assert!(missing.is_empty(), "files without a `//!` header saying what they are: {missing:#?}");
}

/// (files under this path, may not use any of these paths in shipped code, why).
const LAYERS: &[(&str, &[&str], &str)] = &[
    (
        "core/src/domain/",
        &["crate::adapters", "crate::stages", "tokio::", "serde::", "std::fs", "std::net"],
        "the domain does no I/O and knows no serde",
    ),
    ("core/src/machine.rs", &["crate::adapters", "crate::stages", "tokio::", "std::fs", "std::net"], "the state machine does no I/O"),
    ("core/src/fees.rs", &["crate::adapters", "crate::stages", "tokio::"], "the fee rule is pure"),
    ("core/src/tx.rs", &["crate::adapters", "crate::stages", "tokio::", "std::fs", "std::net"], "transaction building is pure"),
    ("core/src/wire.rs", &["crate::adapters", "crate::stages", "tokio::"], "wire shapes are data"),
    ("core/src/ports/", &["crate::adapters", "crate::stages", "diesel::", "reqwest::", "redis::", "aws_sdk_"], "ports name no adapter"),
    ("core/src/stages/", &["crate::adapters", "diesel::", "reqwest::", "axum::", "redis::", "aws_sdk_"], "stages touch no SQL or HTTP"),
    ("core/src/adapters/", &["crate::stages"], "adapters implement ports; they never call a stage"),
    ("tui/src/app.rs", &["tokio::", "reqwest::", "std::fs", "std::net", "crossterm::terminal"], "the console's model does no I/O"),
    ("tui/src/view.rs", &["tokio::", "reqwest::", "std::fs", "std::net"], "rendering does no I/O"),
    ("tui/src/", &["withdraw_core::adapters", "withdraw_core::stages"], "the console talks to the admin API only"),
];

#[test]
fn each_layer_imports_only_what_the_codemap_allows() {
    let root = root();
    let mut broken = Vec::new();
    for p in files(&root).into_iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
        let path = rel(&root, &p);
        let text = std::fs::read_to_string(&p).expect("utf-8 source");
        for (_, forbidden, why) in LAYERS.iter().filter(|(under, _, _)| path.starts_with(under)) {
            for (line, code) in code_lines(shipped(&text)) {
                for f in forbidden.iter().filter(|f| code.contains(**f)) {
                    broken.push(format!("{path}:{line} uses `{f}` ({why})"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

/// Words in `text` that name a file: something with a known extension, made of path
/// characters.
fn file_references(text: &str) -> Vec<String> {
    const EXTS: &[&str] = &[".md", ".rs", ".toml", ".sh", ".yaml", ".yml", ".patch", ".sql", ".service"];
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "._-/".contains(c)))
        .map(|w| w.trim_matches(|c| c == '.' || c == '/'))
        .filter(|w| EXTS.iter().any(|e| w.ends_with(e) && w.len() > e.len()))
        .map(str::to_owned)
        .collect()
}

/// Top-level folders of this repository: a reference that starts with one is a path in it.
const OURS: &[&str] =
    &["core/", "daemon/", "tui/", "sim/", "scripts/", "k8s/", "deploy/", "migrations/", "systemd/", "docs/", ".ci/", "grafana/"];

#[test]
fn no_comment_or_document_cites_a_missing_file() {
    let root = root();
    let all = files(&root);
    let paths: Vec<String> = all.iter().map(|p| rel(&root, p)).collect();
    let exists = |r: &str| {
        // A path from the root, or the name of some file (a codemap names `schema.rs`);
        // documents name our own files, which is all this checks.
        paths.iter().any(|p| p == r || p.ends_with(&format!("/{r}")) || p.rsplit('/').next() == Some(r))
            || Path::new(&root).join(r).is_dir()
    };
    let mut missing = Vec::new();
    for (p, path) in all.iter().zip(&paths) {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if !matches!(ext, "rs" | "md" | "sh" | "toml" | "yaml" | "yml") || path.starts_with("sim/holes/") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(p) else { continue };
        for (line, l) in text.lines().enumerate() {
            for r in file_references(l) {
                // Names of markdown documents are ours by convention; other extensions only
                // when the reference is a path into one of our folders.
                let ours = r.ends_with(".md") || OURS.iter().any(|o| r.starts_with(o));
                if ours && !exists(&r) {
                    missing.push(format!("{path}:{} cites `{r}`", line + 1));
                }
            }
        }
    }
    assert!(missing.is_empty(), "references to files the repository does not hold:\n{}", missing.join("\n"));
}

#[test]
fn the_reference_finder_finds_references() {
    // The check above is only as good as this: it must see the shapes the tree uses.
    // Spelled in two halves, so the citation check does not read this line as one.
    let doc = concat!("NOTES", ".md");
    assert_eq!(file_references(&format!("see {doc} §5.")), vec![doc]);
    assert_eq!(file_references("(`core/src/adapters/schema.rs`)"), vec!["core/src/adapters/schema.rs"]);
    assert_eq!(file_references("scripts/test.sh, then .ci/run"), vec!["scripts/test.sh"]);
    assert!(file_references("a 0.25 ETH amount, v1.2").is_empty());
}
