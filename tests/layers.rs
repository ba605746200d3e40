//! The layers of `src/`, as the compiler cannot enforce them inside one crate: data flows one
//! way (util -> dataset -> quality -> train -> ui/cli), only the engine's modules touch
//! libtorch, only the window's touch egui, and the `loupe` binary does not link libtorch.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, with its code lines (comments left out).
fn sources(dir: &str) -> Vec<(PathBuf, Vec<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let files: Vec<PathBuf> = if root.is_file() {
        vec![root.clone()]
    } else {
        walkdir::WalkDir::new(&root)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
            .map(|e| e.into_path())
            .collect()
    };
    assert!(!files.is_empty(), "no sources under {}", root.display());
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            let code = text
                .lines()
                .map(|l| l.split("//").next().unwrap_or("").to_string())
                .collect();
            (f, code)
        })
        .collect()
}

/// Whether `line` names `word` as a whole word (`tch::` in `use tch::nn`, not in `Batch::`).
fn names(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(at, _)| {
        !line[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// The lines of `dir` that mention any of `forbidden`, as `file:line: text`.
fn offences(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (file, lines) in sources(dir) {
        for (n, line) in lines.iter().enumerate() {
            if forbidden.iter().any(|f| names(line, f)) {
                out.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    out
}

const TCH: [&str; 2] = ["tch::", "use tch"];
const EGUI: [&str; 4] = ["egui::", "use egui", "eframe", "rfd::"];

#[test]
fn a_name_counts_only_as_a_whole_word() {
    assert!(names("use tch::nn;", "tch::"));
    assert!(names("let t = tch::Tensor::zeros(..);", "tch::"));
    assert!(!names("let b = Batch::start(..);", "tch::"));
    assert!(!names("Watch::new(dir)", "tch::"));
}

#[test]
fn util_imports_nothing_of_loupe() {
    let found = offences("util.rs", &["crate::"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn dataset_imports_nothing_above_it() {
    let mut forbidden = vec!["crate::quality", "crate::train", "crate::ui", "crate::cli"];
    forbidden.extend(TCH);
    forbidden.extend(EGUI);
    let found = offences("dataset", &forbidden);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn quality_is_pure() {
    let mut forbidden = vec!["crate::train", "crate::ui", "crate::cli"];
    forbidden.extend(TCH);
    forbidden.extend(EGUI);
    let found = offences("quality", &forbidden);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn train_links_no_libtorch_and_knows_no_window() {
    let mut forbidden = vec!["crate::ui", "crate::cli"];
    forbidden.extend(TCH);
    forbidden.extend(EGUI);
    let found = offences("train", &forbidden);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_window_and_the_commands_link_no_libtorch() {
    for dir in ["ui", "cli", "main.rs", "lib.rs"] {
        let found = offences(dir, &TCH);
        assert!(found.is_empty(), "{found:#?}");
    }
    let found = offences("cli", &EGUI);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_engine_uses_the_library_below_the_window() {
    let mut forbidden = vec!["loupe::ui", "loupe::cli"];
    forbidden.extend(EGUI);
    let found = offences("engine", &forbidden);
    assert!(found.is_empty(), "{found:#?}");
}

/// The shared libraries an ELF binary asks for, from `readelf -d` (binutils, beside gcc).
fn needed(binary: &str) -> Vec<String> {
    let out = std::process::Command::new("readelf")
        .args(["-d", binary])
        .output()
        .expect("readelf (binutils) is there wherever the project builds");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next().map(str::to_string))
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn loupe_does_not_link_libtorch_and_the_engine_does() {
    let app = needed(env!("CARGO_BIN_EXE_loupe"));
    assert!(
        !app.iter().any(|l| l.contains("torch") || l.contains("c10")),
        "loupe links {app:?}"
    );
    let engine = needed(env!("CARGO_BIN_EXE_loupe-engine"));
    assert!(
        engine.iter().any(|l| l.starts_with("libtorch_cpu")),
        "the engine links {engine:?}"
    );
}
