//! Any bytes as a legacy `.h5` model file. Seed corpus: the golden .h5 files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let magic = b"\x89HDF\r\n\x1a\n";
    let mut bytes = magic.to_vec();
    bytes.extend_from_slice(data.strip_prefix(&magic[..]).unwrap_or(data));
    let _ = convnet::io::load_model_bytes(bytes, std::path::Path::new("fuzz.h5"));
});
