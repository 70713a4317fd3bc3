//! Any bytes as a Keras `config.json` (what `convnet summary config.json` reads): the
//! model is built, summarized and, when its input has known sizes, run once on zeros
//! with a batch of 1. Errors are fine; a panic, an abort or a runaway allocation is a
//! finding. Seed corpus: every config in the golden files (`seed_config_json.py`).
#![no_main]
use convnet::model::set_memory_limit;
use convnet::Tensor;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

/// The budget activations are held to (so that a legitimate refusal is an error, not
/// an out-of-memory finding under `-rss_limit_mb=2048`).
const BUDGET: usize = 512 << 20;
/// Multiply-adds above which a model is built and summarized but not run: a large
/// model computing for a long time is not a bug.
const MAX_MACS: usize = 2_000_000_000;

fuzz_target!(|data: &[u8]| {
    set_memory_limit(Some(BUDGET));
    let Ok(config) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(model) = convnet::io::model_from_config(&config, Path::new("config.json")) else {
        return;
    };
    let _ = model.summary_string();
    let shapes: Option<Vec<Vec<usize>>> = model
        .input_shapes()
        .iter()
        .map(|shape| {
            let mut dims = vec![1];
            for d in shape.iter().skip(1) {
                dims.push((*d)?);
            }
            Some(dims)
        })
        .collect();
    let Some(shapes) = shapes else {
        return;
    };
    // The plan is checked here too, so that the inputs themselves fit before they are
    // made; predict holds the call to the same budget.
    let fits = model
        .memory_plan(&shapes)
        .is_ok_and(|plan| plan.inference_peak <= BUDGET);
    if !fits || model.forward_macs(1) > MAX_MACS {
        return;
    }
    let inputs: Vec<Tensor> = shapes.into_iter().map(Tensor::zeros).collect();
    let _ = model.predict(&inputs, 1);
});
