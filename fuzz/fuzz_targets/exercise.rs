//! What the fuzz targets do with a model a file gave them: summarize it and, when its
//! input sizes are known and its plan fits the budget, run it once on zeros with a
//! batch of 1. Shared by the targets and by crates/convnet/tests/fuzz_regressions.rs,
//! which replays their finds.
use convnet::model::Model;
use convnet::Tensor;

/// The budget activations are held to (so that a legitimate refusal is an error, not
/// an out-of-memory finding under `-rss_limit_mb=2048`).
pub const BUDGET: usize = 512 << 20;
/// Multiply-adds above which a model is summarized but not run: a large model
/// computing for a long time is not a bug.
pub const MAX_MACS: usize = 2_000_000_000;

/// Summarizes `model` and runs it on zeros where it may; the first error.
pub fn exercise(model: &Model) -> convnet::Result<()> {
    let summary = model.summary_string();
    assert!(summary.contains(model.name()), "{summary}");
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
        return Ok(());
    };
    // The plan is checked here too, so that the inputs themselves fit before they are
    // made; predict holds the call to the same budget.
    let plan = model.memory_plan(&shapes)?;
    if plan.inference_peak > BUDGET || model.forward_macs(1) > MAX_MACS {
        return Ok(());
    }
    let inputs: Vec<Tensor> = shapes.into_iter().map(Tensor::zeros).collect();
    model.predict(&inputs, 1).map(|_| ())
}
