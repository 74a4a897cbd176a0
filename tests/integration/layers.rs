//! The layer rule of `src/lib.rs`, checked on the source: every `crate::<module>` path in a
//! top-level module's code (comments aside) must name its own module or one of a lower layer.
//! Modules of one layer are peers and may not use each other, so the top-level modules form a
//! stack with no import cycle. The crates beside tubesum are used only by the modules named for
//! each (and, as dev-dependencies, by unit tests).
//!
//! Run it alone with `cargo test --test integration layers`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

/// Lowest first; a module may use the modules of the layers before its own.
const LAYERS: &[&[&str]] =
    &[&["domain"], &["ports"], &["adapters", "stages"], &["actors"], &["observability"], &["app"], &["api"], &["cli"]];

/// Crates beside tubesum and the modules that may use them: the stand-in is the command line's
/// (the demo); Whisper's model files are the command line's (`models fetch`, `import-ct2`) and
/// transcription's (the CTranslate2 engine reads the vocabulary and computes the spectrogram).
const TOOL_CRATES: &[(&str, &[&str])] = &[("whisper_models", &["cli", "stages"]), ("youtube_standin", &["cli"])];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/actors/job.rs` → `actors`, `src/cli/mod.rs` → `cli`).
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src()).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" => None,
        name => Some(name.trim_end_matches(".rs").to_owned()),
    }
}

/// The top-level modules and tool crates a file's code names, with the line of each use.
fn uses(text: &str) -> Vec<(String, usize)> {
    let path = Regex::new(r"\bcrate::([a-z_][a-z0-9_]*)").unwrap();
    let group = Regex::new(r"\bcrate::\{([^}]*)\}").unwrap();
    let tools = Regex::new(r"\b(whisper_models|youtube_standin)::").unwrap();
    let mut found = Vec::new();
    // Multi-line `use crate::{a, b::c};` groups: joined, then split on their items.
    let code: String = text
        .lines()
        .map(|line| if line.trim_start().starts_with("//") { "" } else { line })
        .collect::<Vec<_>>()
        .join("\n");
    for caps in group.captures_iter(&code) {
        let line = code[..caps.get(0).unwrap().start()].lines().count().max(1);
        for item in caps[1].split(',') {
            let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name != "self" {
                found.push((name, line));
            }
        }
    }
    for (index, line) in code.lines().enumerate() {
        for caps in path.captures_iter(line) {
            found.push((caps[1].to_owned(), index + 1));
        }
        for caps in tools.captures_iter(line) {
            found.push((caps[1].to_owned(), index + 1));
        }
    }
    found
}

#[test]
fn layers_name_every_top_level_module() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let declared: BTreeSet<String> =
        Regex::new(r"(?m)^pub mod ([a-z_]+);").unwrap().captures_iter(&lib).map(|c| c[1].to_owned()).collect();
    let layered: BTreeSet<String> = LAYERS.iter().flat_map(|l| l.iter().map(|m| (*m).to_owned())).collect();
    assert_eq!(declared, layered, "src/lib.rs's modules and this test's LAYERS differ: place the new module");
}

#[test]
fn each_module_uses_only_the_layers_below_it() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut violations = Vec::new();
    let test_module = Regex::new(r"(?m)^#\[cfg\(test\)\]\s*\nmod tests \{").unwrap();
    for file in &files {
        let Some(module) = module_of(file) else { continue };
        let own = layer_of(&module).unwrap_or_else(|| panic!("{module} is in no layer (see LAYERS)"));
        let text = std::fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(src().parent().unwrap()).unwrap().display().to_string();
        // Unit tests (`#[cfg(test)] mod tests` at the end of a file) may use the dev-dependencies.
        let tests_from = test_module.find(&text).map_or(usize::MAX, |m| text[..m.start()].lines().count() + 1);
        for (used, line) in uses(&text) {
            if let Some((_, allowed)) = TOOL_CRATES.iter().find(|(name, _)| *name == used) {
                if !allowed.contains(&module.as_str()) && line < tests_from {
                    let allowed = allowed.join(", ");
                    violations
                        .push(format!("{shown}:{line}: {module} uses the tool crate {used} (only {allowed} may)"));
                }
                continue;
            }
            if used == module {
                continue;
            }
            let Some(theirs) = layer_of(&used) else { continue };
            graph.entry(module.clone()).or_default().insert(used.clone());
            if theirs >= own {
                let how = if theirs == own { "a peer of its layer" } else { "a higher layer" };
                violations.push(format!("{shown}:{line}: {module} uses {used}, {how}"));
            }
        }
    }
    assert!(violations.is_empty(), "layering broken:\n{}\n\nuses: {graph:#?}", violations.join("\n"));
    // The rule above makes the graph acyclic; say so in terms of what was found.
    for (from, to) in &graph {
        for used in to {
            assert!(layer_of(used) < layer_of(from), "{from} → {used}");
        }
    }
}

#[test]
fn the_checker_sees_grouped_and_nested_paths() {
    let text = "use crate::{domain::Stage, ports::{JobStore, PortError}};\n// crate::cli in a comment\nlet x = crate::app::Settings::load();\nyoutube_standin::StandIn::start();";
    let found: Vec<String> = uses(text).into_iter().map(|(m, _)| m).collect();
    assert!(found.contains(&"domain".to_owned()) && found.contains(&"ports".to_owned()), "{found:?}");
    assert!(found.contains(&"app".to_owned()) && found.contains(&"youtube_standin".to_owned()), "{found:?}");
    assert!(!found.contains(&"cli".to_owned()), "comments are not code: {found:?}");
}
