//! The walls between the engine, the families and the CPU reference, read from the sources:
//! no file under `src/engine/` names a family, a family names the engine, its own reference and
//! only the family edges listed here, and a reference file names no GPU file.

use std::collections::BTreeSet;
use std::path::Path;

/// The modules a `crate::…` path names in `source`, comments left out.
fn crate_paths(source: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (i, _) in code.match_indices("crate::") {
            let before = code[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `$crate::` or part of a longer name.
            }
            let rest = &code[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names
}

fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read the source directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (
                name,
                std::fs::read_to_string(&p).expect("read a source file"),
            )
        })
        .collect();
    files.sort();
    files
}

/// The walls: no file under `src/engine/` names a family (only the engine itself, the error
/// type and the table of shader codes); a family names the engine, its own reference and only
/// the family edges listed here; a reference file names no GPU file.
#[test]
fn engine_names_no_family() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let engine = sources(&src.join("engine"));
    assert!(engine.len() >= 7, "found {} engine files", engine.len());
    for (file, text) in &engine {
        for name in crate_paths(text) {
            assert!(
                ["engine", "error", "codes"].contains(&name.as_str()),
                "src/engine/{file}.rs names crate::{name}"
            );
        }
    }

    // Which other family each family may use: the row family's public op and parts, the
    // losses under their gradients, the mixture under its fit.
    let edges: &[(&str, &[&str])] = &[
        ("logsumexp", &[]),
        ("likelihood", &["logsumexp"]),
        ("gradients", &["likelihood", "logsumexp"]),
        ("gmm", &["logsumexp"]),
        ("fit", &["gmm"]),
        ("masked", &["logsumexp"]),
        ("weighted", &["logsumexp"]),
        ("transform", &[]),
        ("linear", &["likelihood"]),
        ("stability", &["logsumexp"]),
        ("bandwidth", &[]),
    ];
    let shared = ["engine", "error", "codes", "reference"];
    // A family's submodules (`src/<family>/*.rs`) are the family's too.
    let mut top = sources(&src);
    let families: Vec<String> = top.iter().map(|(f, _)| f.clone()).collect();
    for family in families {
        let dir = src.join(&family);
        if dir.is_dir() {
            top.extend(
                sources(&dir)
                    .into_iter()
                    .map(|(_, text)| (family.clone(), text)),
            );
        }
    }
    assert!(
        top.iter().filter(|(f, _)| f == "logsumexp").count() >= 2,
        "src/logsumexp/axes.rs is read as the family's"
    );
    for (file, text) in &top {
        let Some((_, allowed)) = edges.iter().find(|(f, _)| f == file) else {
            assert!(
                ["lib", "main", "error", "codes"].contains(&file.as_str()),
                "src/{file}.rs is neither a listed family nor a known shared file"
            );
            continue;
        };
        for name in crate_paths(text) {
            assert!(
                shared.contains(&name.as_str()) || allowed.contains(&name.as_str()),
                "src/{file}.rs names crate::{name}; its allowed families are {allowed:?}"
            );
        }
        // The only reference a family reads is its own (or the row family's, which every
        // reduction's reference builds on).
        let code: String = text
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        for (i, _) in code.match_indices("crate::reference::") {
            let rest = &code[i + "crate::reference::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            assert!(
                name == *file || name == "logsumexp",
                "src/{file}.rs reads the reference of {name}"
            );
        }
    }
    for (file, text) in &sources(&src.join("reference")) {
        for name in crate_paths(text) {
            assert_eq!(
                name, "reference",
                "src/reference/{file}.rs names crate::{name}: a reference reads only references"
            );
        }
    }
}
