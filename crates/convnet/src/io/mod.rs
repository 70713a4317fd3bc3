//! Files: Keras model files (`.keras`, legacy `.h5`, `.weights.h5`, `config.json`).

mod checkpoint;
mod config;
mod keras;
mod legacy_weights;
pub mod onnx;
mod weights;

pub use crate::zipped::{read_npz, write_npz};
pub use checkpoint::{BackupAndRestore, ModelCheckpoint, SaveFreq};
pub use config::{model_from_config, model_to_config};
pub use keras::{
    config_json, load_model, load_model_bytes, load_model_parts, save_model_parts, KERAS_VERSION,
};
pub use weights::store_names;
