//! ONNX, the format runtimes share (ONNX Runtime, OpenVINO, TensorRT, browsers,
//! phones): a model written as a standard operator graph, NHWC at its edges like the
//! Keras model and NCHW inside; and ONNX CNNs (PyTorch's exports, NCHW) read as Keras
//! models with NHWC input.

mod export;
mod import;
mod layers;
mod operators;
pub mod proto;

pub use export::{to_onnx, OnnxOptions};
pub use import::{load_onnx, load_onnx_bytes};

use super::keras::write_atomically;
use crate::error::Result;
use crate::model::Model;
use prost::Message;
use std::io::Write;
use std::path::Path;

impl Model {
    /// Writes the model as an ONNX file (opset 17, an open batch axis), atomically; see
    /// [`save_onnx`] for the options.
    pub fn save_onnx(&self, path: impl AsRef<Path>) -> Result<()> {
        save_onnx(self, path.as_ref(), &OnnxOptions::default())
    }
}

/// Writes `model` as an ONNX file at `path`, atomically. A layer without a faithful ONNX
/// form is an error naming the layer, and nothing is written.
pub fn save_onnx(model: &Model, path: &Path, options: &OnnxOptions) -> Result<()> {
    let proto = to_onnx(model, options).map_err(|e| e.in_file(path))?;
    let bytes = proto.encode_to_vec();
    write_atomically(path, |file| file.write_all(&bytes))
}
