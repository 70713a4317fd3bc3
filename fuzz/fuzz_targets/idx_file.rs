//! Any bytes as an IDX (MNIST-style) file, plain or gzip.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = convnet::data::parse_idx_bytes(data);
});
