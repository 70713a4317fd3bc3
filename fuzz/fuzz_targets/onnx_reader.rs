//! Any bytes as an `.onnx` file (what `Model::load` and every subcommand read): the
//! protobuf is decoded, the graph put in order and built as Keras layers, summarized
//! and, when its input sizes are known and its plan fits the budget, run once on zeros.
//! The file lies in an empty folder, so external data names nothing that exists. Errors
//! are fine; a panic, an abort or a runaway allocation is a finding. Seed corpus: the
//! operator graphs of crates/convnet/tests/golden/onnx_import/operators (see README.md).
#![no_main]
use convnet::model::set_memory_limit;
use libfuzzer_sys::fuzz_target;

mod exercise;

fuzz_target!(|data: &[u8]| {
    set_memory_limit(Some(exercise::BUDGET));
    let origin = std::env::temp_dir()
        .join("convnet-fuzz-onnx-empty")
        .join("fuzz.onnx");
    if let Ok(model) = convnet::io::onnx::load_onnx_bytes(data, &origin) {
        let _ = exercise::exercise(&model);
    }
});
