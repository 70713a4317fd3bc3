//! Any bytes as an `.onnx` file (what `Model::load` and every subcommand read): the
//! protobuf is decoded, the graph put in order and built as Keras layers, summarized
//! and, when its input sizes are known and its plan fits the budget, run once on zeros.
//! The file lies in an empty folder, so external data names nothing that exists. Errors
//! are fine; a panic, an abort or a runaway allocation is a finding. Seed corpus:
//! convnet's exports of the golden models and PyTorch's small CNN (see README.md).
#![no_main]
use convnet::model::set_memory_limit;
use convnet::Tensor;
use libfuzzer_sys::fuzz_target;

/// The budget activations are held to (a refusal is an error, not an out-of-memory
/// finding under `-rss_limit_mb=2048`).
const BUDGET: usize = 512 << 20;
/// Multiply-adds above which a model is built and summarized but not run.
const MAX_MACS: usize = 2_000_000_000;

fuzz_target!(|data: &[u8]| {
    set_memory_limit(Some(BUDGET));
    let origin = std::env::temp_dir().join("convnet-fuzz-onnx-empty").join("fuzz.onnx");
    let Ok(model) = convnet::io::onnx::load_onnx_bytes(data, &origin) else {
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
    let fits = model
        .memory_plan(&shapes)
        .is_ok_and(|plan| plan.inference_peak <= BUDGET);
    if !fits || model.forward_macs(1) > MAX_MACS {
        return;
    }
    let inputs: Vec<Tensor> = shapes.into_iter().map(Tensor::zeros).collect();
    let _ = model.predict(&inputs, 1);
});
