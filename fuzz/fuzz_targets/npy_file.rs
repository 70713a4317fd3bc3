//! Any bytes as a `.npy` file. Seed corpus: the golden .npy files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = convnet::Tensor::from_npy_bytes(data);
});
