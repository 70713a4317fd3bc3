//! Model files: Keras 3's `.keras` (a zip of `metadata.json`, `config.json` and
//! `model.weights.h5`), legacy Keras `.h5` model files (`model_config` attribute and
//! `model_weights/<layer>/…` datasets), weights-only `.weights.h5` files, and bare
//! `config.json` files (fresh weights). `.keras` is also convnet's own format.
//!
//! Everything read from a file is checked before it is trusted: zip members are read up
//! to their declared size (which itself is bounded), HDF5 datasets must hold the values
//! their shape declares, weights must be finite, and every error names the file.

use super::config::{compile_config, compiled_from_config, model_from_config, model_to_config};
use super::legacy_weights::{self, attr_string};
use super::weights::{check_finite, load_weight_store, load_weights, read_hdf5, weight_store};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::tensor::Tensor;
use crate::train::{Compiled, CompiledModel, Optimizer};
use crate::zipped::{open_zip, read_member};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The Keras version whose format convnet writes (and was checked against).
pub const KERAS_VERSION: &str = "3.15.1";

impl Model {
    /// Loads a model file: `.keras`, legacy `.h5`, a Keras `config.json`, or an ONNX
    /// CNN (`.onnx`, read as Keras layers with NHWC input): the architecture and
    /// weights. [`CompiledModel::load`] also restores the compile
    /// configuration and optimizer state.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        load_model(path.as_ref())
    }

    /// Saves the model as a Keras 3 `.keras` file that Keras opens with
    /// `keras.saving.load_model` (uncompiled; [`CompiledModel::save`] keeps the compile
    /// state). The file is written next to its destination and renamed into place, so a
    /// crash never leaves a broken file at `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        save_model_parts(self, None, path.as_ref())
    }

    /// Saves the weights alone as a Keras 3 weights file (`.weights.h5`, what
    /// `model.save_weights` writes), atomically.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        save_weight_file(self, None, path.as_ref())
    }

    /// Loads weights into a model of the same architecture, as Keras's
    /// `model.load_weights(path)`: from a Keras 3 weights file (`.weights.h5`), the
    /// weights of a `.keras` file, or a legacy `.h5` (tf.keras 2's `save_weights`, a
    /// legacy model file, the ImageNet weight files Keras distributes), whose saved
    /// layers with weights go to the model's in order.
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::file(path, e))?;
        let weights = if bytes.starts_with(ZIP_MAGIC) {
            read_member(&mut open_zip(&bytes, path)?, path, "model.weights.h5")?
        } else {
            bytes
        };
        let file = read_hdf5(weights, path)?;
        if legacy_weights::is_legacy(&file) {
            let saved = legacy_weights::read_layers(&file, path)?;
            return legacy_weights::load_in_order(self, saved, path);
        }
        load_weight_store(self, &file, path).map(|_| ())
    }

    /// Keras's `model.load_weights(path, by_name=True, skip_mismatch=...)` on a legacy
    /// `.h5` weight file: each saved layer into the model's layer of the same name (an
    /// application's ImageNet weights into a model with a new head). With
    /// `skip_mismatch`, layers whose weights differ in count or shape keep theirs; the
    /// returned lines say which. Without it they are an error naming the layer.
    pub fn load_weights_by_name(
        &mut self,
        path: impl AsRef<Path>,
        skip_mismatch: bool,
    ) -> Result<Vec<String>> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::file(path, e))?;
        let is_hdf5 = bytes.starts_with(HDF5_MAGIC);
        let file = is_hdf5.then(|| read_hdf5(bytes, path)).transpose()?;
        let Some(file) = file.filter(legacy_weights::is_legacy) else {
            return Err(Error::file(
                path,
                "loading by name reads legacy .h5 weight files (layer_names and weight_names); this is not one",
            ));
        };
        let saved = legacy_weights::read_layers(&file, path)?;
        legacy_weights::load_by_name(self, saved, skip_mismatch, path)
    }
}

impl CompiledModel {
    /// Keras's `keras.saving.load_model` of a compiled model: a `.keras` or legacy `.h5`
    /// file with its compile configuration, the optimizer's state restored. A file saved
    /// uncompiled is an error naming it (load it with [`Model::load`] and compile it).
    pub fn load(path: impl AsRef<Path>) -> Result<CompiledModel> {
        let path = path.as_ref();
        match load_model_parts(path)? {
            (model, Some(compiled)) => CompiledModel::from_parts(model, compiled),
            (_, None) => Err(Error::file(
                path,
                "was saved without a compile configuration: load it with Model::load and compile it",
            )),
        }
    }

    /// Saves the model, its compile configuration and its optimizer's state as a Keras 3
    /// `.keras` file, atomically (see [`Model::save`]).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        save_model_parts(&self.model, Some(&self.compiled), path.as_ref())
    }

    /// Saves the weights and the optimizer's state as a Keras 3 weights file
    /// (`.weights.h5`), atomically.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        save_weight_file(&self.model, Some(&self.compiled.optimizer), path.as_ref())
    }

    /// The config.json convnet writes for the model, its `compile_config` included.
    pub fn config_json(&self) -> Value {
        file_config(&self.model, Some(&self.compiled))
    }
}

fn save_weight_file(model: &Model, optimizer: Option<&Optimizer>, path: &Path) -> Result<()> {
    let bytes = weight_store(model, optimizer).map_err(|e| Error::file(path, e))?;
    write_atomically(path, |file| file.write_all(&bytes))
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const HDF5_MAGIC: &[u8] = b"\x89HDF\r\n\x1a\n";

/// Loads any model file convnet reads: the architecture and weights.
pub fn load_model(path: &Path) -> Result<Model> {
    load_model_parts(path).map(|(model, _)| model)
}

/// Loads any model file convnet reads, and the compile state it was saved with (its
/// optimizer's state restored), when it has one.
pub fn load_model_parts(path: &Path) -> Result<(Model, Option<Compiled>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, e))?;
    load_parts(bytes, path)
}

/// Loads a model from the bytes of a model file; `origin` names it in errors.
pub fn load_model_bytes(bytes: Vec<u8>, origin: &Path) -> Result<Model> {
    load_parts(bytes, origin).map(|(model, _)| model)
}

pub(crate) fn load_parts(bytes: Vec<u8>, origin: &Path) -> Result<(Model, Option<Compiled>)> {
    let onnx_extension = origin
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    // An ONNX file is a protobuf whose first field is usually ir_version (tag 1, varint).
    if onnx_extension || bytes.first() == Some(&0x08) {
        Ok((super::onnx::load_onnx_bytes(&bytes, origin)?, None))
    } else if bytes.starts_with(ZIP_MAGIC) {
        load_keras(&bytes, origin)
    } else if bytes.starts_with(HDF5_MAGIC) {
        load_legacy_h5(bytes, origin)
    } else if bytes
        .first()
        .is_some_and(|&b| b == b'{' || b.is_ascii_whitespace())
    {
        let config: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::file(origin, format!("not valid JSON: {e}")))?;
        Ok((model_from_config(&config, origin)?, None))
    } else {
        Err(Error::file(
            origin,
            "not a model file: expected a .keras (zip), a legacy .h5 (HDF5), a config.json or an .onnx file",
        ))
    }
}

fn load_keras(bytes: &[u8], path: &Path) -> Result<(Model, Option<Compiled>)> {
    let mut zip = open_zip(bytes, path)?;
    let config_bytes = read_member(&mut zip, path, "config.json")?;
    let config: Value = serde_json::from_slice(&config_bytes)
        .map_err(|e| Error::file(path, format!("'config.json' is not valid JSON: {e}")))?;
    let mut model = model_from_config(&config, path)?;
    if zip.by_name("metadata.json").is_ok() {
        let metadata = read_member(&mut zip, path, "metadata.json")?;
        let metadata: Value = serde_json::from_slice(&metadata)
            .map_err(|e| Error::file(path, format!("'metadata.json' is not valid JSON: {e}")))?;
        if let Some(names) = metadata.get("class_names").filter(|n| !n.is_null()) {
            let names: Vec<String> = serde_json::from_value(names.clone()).map_err(|e| {
                Error::file(
                    path,
                    format!("metadata.json: class_names is not a list of names: {e}"),
                )
            })?;
            model
                .set_class_names(names)
                .map_err(|e| Error::file(path, format!("metadata.json: {e}")))?;
        }
    }
    if zip.by_name("model.weights.h5").is_err() && zip.by_name("model.weights.npz").is_ok() {
        return Err(Error::file(path, "holds its weights as model.weights.npz (Keras's pickled npz store), which convnet does not read: re-save it with Keras's default .h5 weight store"));
    }
    let weights = read_member(&mut zip, path, "model.weights.h5")?;
    let optimizer_vars = load_weights(&mut model, weights, path)?;
    let compiled = match config
        .get("compile_config")
        .filter(|c| c.as_object().is_some_and(|o| !o.is_empty()))
    {
        Some(compile) => {
            let mut compiled = compiled_from_config(&model, compile, path)?;
            restore_optimizer(&model, &mut compiled.optimizer, optimizer_vars, path)?;
            Some(compiled)
        }
        None => None,
    };
    Ok((model, compiled))
}

/// Puts the optimizer's saved variables (step count, learning rate, slots) back.
fn restore_optimizer(
    model: &Model,
    optimizer: &mut Optimizer,
    vars: Vec<Tensor>,
    path: &Path,
) -> Result<()> {
    if vars.len() < 2 {
        return Ok(());
    }
    let shapes: Vec<Vec<usize>> = model
        .trainable_weights()
        .map(|w| w.value.shape().to_vec())
        .collect();
    let per_variable = optimizer.slots_per_variable();
    let slots = &vars[2..];
    if slots.is_empty() {
        // Keras saves no slots before the first step.
    } else if slots.len() != per_variable * shapes.len() {
        return Err(Error::file(path, format!(
            "the optimizer state holds {} slot variables; {} trainable weights with {per_variable} slots each need {}",
            slots.len(), shapes.len(), per_variable * shapes.len()
        )));
    }
    let mut grouped = Vec::new();
    for (i, chunk) in slots.chunks(per_variable.max(1)).enumerate() {
        for t in chunk {
            if t.shape() != shapes[i].as_slice() {
                return Err(Error::file(
                    path,
                    format!(
                        "optimizer slot for weight {i} has shape {:?}, the weight {:?}",
                        t.shape(),
                        shapes[i]
                    ),
                ));
            }
            check_finite(t, path, "an optimizer slot")?;
        }
        grouped.push(chunk.to_vec());
    }
    let iterations = vars[0].data().first().copied().unwrap_or(0.0).max(0.0) as u64;
    let learning_rate = vars[1].data().first().copied().unwrap_or(0.0) as f64;
    // Keras keeps the rate as a float32 variable: a callback may have changed it since
    // the config was written. Where it is just the config's value rounded, keep the
    // config's (so configs survive save/load unchanged).
    if let crate::train::LearningRate::Constant(configured) = optimizer.learning_rate {
        if configured as f32 as f64 != learning_rate {
            optimizer.set_learning_rate(learning_rate);
        }
    }
    optimizer.set_state(iterations, grouped);
    Ok(())
}

/// Legacy Keras HDF5 model files, as Keras 3 and tf.keras 2 wrote them.
fn load_legacy_h5(bytes: Vec<u8>, path: &Path) -> Result<(Model, Option<Compiled>)> {
    use hdf5_pure::File;
    let file = File::from_bytes(bytes)
        .map_err(|e| Error::file(path, format!("not a readable HDF5 file: {e}")))?;
    let root_attrs = file.root().attrs().map_err(|e| Error::file(path, e))?;
    let config_text = root_attrs
        .get("model_config")
        .and_then(attr_string)
        .ok_or_else(|| Error::file(path, "has no 'model_config' attribute: it holds weights only (use load_weights on a model)"))?;
    let config: Value = serde_json::from_str(&config_text)
        .map_err(|e| Error::file(path, format!("model_config is not valid JSON: {e}")))?;
    let mut model = model_from_config(&config, path)?;
    let saved = legacy_weights::read_layers(&file, path)?;
    legacy_weights::load_in_order(&mut model, saved, path)?;
    let mut compiled = None;
    if let Some(training) = root_attrs.get("training_config").and_then(attr_string) {
        if let Ok(config) = serde_json::from_str::<Value>(&training) {
            // tf.keras's training_config names the optimizer under optimizer_config.
            let compile = json!({
                "optimizer": config.get("optimizer_config").cloned().unwrap_or(Value::Null),
                "loss": config.get("loss").cloned().unwrap_or(Value::Null),
                "metrics": config.get("metrics").cloned().unwrap_or(Value::Null),
            });
            // tf.keras 2 wrote its own loss and metric objects: a training config that
            // convnet cannot read leaves the model loaded and uncompiled, as predict,
            // summary and convert need no compile state.
            match compiled_from_config(&model, &compile, path) {
                Ok(state) => compiled = Some(state),
                Err(e) => eprintln!("warning: the compile state was skipped ({e})"),
            }
        }
    }
    Ok((model, compiled))
}

/// The config.json convnet writes for an uncompiled `model`: `"compile_config": null`,
/// as Keras writes it ([`CompiledModel::config_json`] for a compiled one).
pub fn config_json(model: &Model) -> Value {
    file_config(model, None)
}

fn file_config(model: &Model, compiled: Option<&Compiled>) -> Value {
    let mut config = model_to_config(model);
    config["compile_config"] = compiled.map_or(Value::Null, compile_config);
    config
}

/// Saves a model and, when given, the compile state it goes with, as a Keras 3 `.keras`
/// file, atomically: what [`load_model_parts`] reads back.
pub fn save_model_parts(model: &Model, compiled: Option<&Compiled>, path: &Path) -> Result<()> {
    save_keras(model, compiled, None, path)
}

/// [`save_model_parts`] with one more zip member, `(name, bytes)`, in the same atomic
/// write (a training backup's state).
pub(crate) fn save_keras(
    model: &Model,
    compiled: Option<&Compiled>,
    extra: Option<(&str, &[u8])>,
    path: &Path,
) -> Result<()> {
    let config = file_config(model, compiled);
    let config = serde_json::to_vec(&config).map_err(|e| Error::file(path, e))?;
    let mut metadata = json!({"keras_version": KERAS_VERSION, "date_saved": date_saved(), "convnet_version": env!("CARGO_PKG_VERSION")});
    if let Some(names) = model.class_names() {
        metadata["class_names"] = json!(names);
    }
    let metadata = serde_json::to_vec(&metadata).map_err(|e| Error::file(path, e))?;
    let optimizer = compiled.map(|c| &c.optimizer);
    let weights = weight_store(model, optimizer).map_err(|e| Error::file(path, e))?;
    write_atomically(path, |file| {
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let members = [
            ("metadata.json", metadata.as_slice()),
            ("config.json", config.as_slice()),
            ("model.weights.h5", weights.as_slice()),
        ];
        for (name, bytes) in members.into_iter().chain(extra) {
            zip.start_file(name, options)?;
            zip.write_all(bytes)?;
        }
        zip.finish()?;
        Ok(())
    })
}

/// Writes a file beside `path`, flushes it to disk, then renames it onto `path`: a
/// reader (or a crash) sees the old file or the new one, never half of one.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = temporary_path(path);
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        write(&mut file)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::file(path, format!("cannot write: {e}"))
    })
}

/// Where a file is written before it is renamed to `path`: the same folder, so the
/// rename is atomic.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "model.keras".into());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Keras's `date_saved` format, `YYYY-MM-DD@HH:MM:SS` (UTC).
fn date_saved() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{year:04}-{month:02}-{day:02}@{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
