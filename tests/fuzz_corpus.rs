//! The fuzz corpus, replayed: every target of `tests/fuzz/targets.rs` over
//! every file of its directory `tests/fuzz/corpus/<target>/` (the seeds and
//! every input a fuzz run found a bug with, kept as regressions). Runs
//! without AFL; `tests/fuzz/run` fuzzes the same targets.

#[path = "fuzz/targets.rs"]
mod targets;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

#[test]
fn every_target_passes_on_its_corpus() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus");
    let mut failures = Vec::new();
    for &(name, target) in targets::TARGETS {
        let dir = corpus.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no corpus for target {name} ({}): {e}", dir.display()))
            .map(|e| e.expect("a corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "the corpus of target {name} is empty");
        for file in files {
            let data = std::fs::read(&file).expect("a corpus file");
            if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "targets failed on:\n{}",
        failures.join("\n")
    );
}

#[test]
fn warming_up_builds_the_world() {
    targets::warm_up();
}

#[test]
fn every_corpus_directory_is_a_target() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus");
    for entry in std::fs::read_dir(&corpus).expect("tests/fuzz/corpus") {
        let name = entry.expect("an entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            targets::TARGETS.iter().any(|(t, _)| *t == name),
            "tests/fuzz/corpus/{name} belongs to no target"
        );
    }
}
