//! The inputs the `config_json` fuzz target (fuzz/fuzz_targets/config_json.rs) found to
//! crash convnet, kept in tests/fuzz_regressions/ and run through the same path: the
//! config is read, the model summarized and, when its input has known sizes and fits
//! the budget, run once on zeros. Each must give an error naming what is wrong, or a
//! model; never a panic.

use convnet::model::{set_memory_limit, Model};
use std::path::Path;

#[path = "../../../fuzz/fuzz_targets/exercise.rs"]
mod exercise;
use exercise::{exercise, BUDGET};

/// What the fuzz target does with `bytes`: the error of the first step that refuses
/// them, or the model when it is built, summarized and (if it fits) run.
fn run_config(bytes: &[u8], origin: &Path) -> Result<Option<Model>, String> {
    let config: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let model = convnet::io::model_from_config(&config, origin).map_err(|e| e.to_string())?;
    exercise(&model).map_err(|e| e.to_string())?;
    Ok(Some(model))
}

/// Each file under tests/fuzz_regressions/ is `NAME.json` with, beside it,
/// `NAME.expect`: `ok`, or the parts the error message must contain, one a line.
#[test]
fn fuzz_findings_give_errors_not_crashes() {
    set_memory_limit(Some(BUDGET));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no findings in {}", dir.display());
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let expect = std::fs::read_to_string(file.with_extension("expect"))
            .unwrap_or_else(|e| panic!("{}: no .expect beside it: {e}", file.display()));
        let outcome = run_config(&bytes, Path::new("config.json"));
        match (expect.trim(), outcome) {
            ("ok", Ok(_)) => {}
            ("ok", Err(e)) => panic!("{}: expected a model, got: {e}", file.display()),
            (_, Ok(_)) => panic!("{}: expected an error, got a model", file.display()),
            (parts, Err(e)) => {
                for part in parts.lines().map(str::trim).filter(|p| !p.is_empty()) {
                    assert!(
                        e.contains(part),
                        "{}: the error {e:?} should mention {part:?}",
                        file.display()
                    );
                }
            }
        }
    }
}
