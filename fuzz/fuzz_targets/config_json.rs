//! Any bytes as a Keras `config.json` (what `convnet summary config.json` reads): the
//! model is built, summarized and, when its input has known sizes, run once on zeros
//! with a batch of 1. Errors are fine; a panic, an abort or a runaway allocation is a
//! finding. Seed corpus: every config in the golden files (`seed_config_json.py`).
#![no_main]
use convnet::model::set_memory_limit;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

mod exercise;

fuzz_target!(|data: &[u8]| {
    set_memory_limit(Some(exercise::BUDGET));
    let Ok(config) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(model) = convnet::io::model_from_config(&config, Path::new("config.json")) {
        let _ = exercise::exercise(&model);
    }
});
