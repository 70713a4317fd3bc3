//! Any bytes as a `.keras` file: an error or a model, never a panic or a runaway
//! allocation. Seed corpus: the golden .keras files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = b"PK\x03\x04".to_vec();
    bytes.extend_from_slice(data.strip_prefix(b"PK\x03\x04").unwrap_or(data));
    let _ = convnet::io::load_model_bytes(bytes, std::path::Path::new("fuzz.keras"));
});
