//! The HDF5 weight store of a `.keras` file (`model.weights.h5`), read and written with
//! the pure-Rust `hdf5-pure` crate: `layers/<store name>/vars/<i>` for each layer's
//! weights in Keras's order, `vars` (attribute `name`: the model's name) and
//! `optimizer/vars/<i>` (the step count, the learning rate, then each slot).
//!
//! Store names are not layer names: Keras names each layer's group after its class,
//! numbered per class in `model.layers` order (`conv2d`, `conv2d_1`, …), whatever the
//! layer is called.

use crate::error::{Error, Result};
use crate::layers::{default_name, Layer};
use crate::model::{nested_model, nested_model_mut, Model};
use crate::tensor::{checked_len, Tensor};
use crate::train::Optimizer;
use hdf5_pure::{AttrValue, File, FileBuilder};
use std::collections::HashMap;
use std::path::Path;

/// The store group name of each layer, in `layers` order.
pub fn store_names<'a>(layers: impl Iterator<Item = &'a dyn Layer>) -> Vec<String> {
    let mut counters: HashMap<String, usize> = HashMap::new();
    layers
        .map(|layer| {
            let base = default_name(layer.class_name());
            let count = counters.entry(base.clone()).or_insert(0);
            let name = if *count == 0 {
                base
            } else {
                format!("{base}_{count}")
            };
            *count += 1;
            name
        })
        .collect()
}

/// Reads one dataset as f32 values with its shape, checking the two agree.
fn read_dataset(file: &File, path: &str, origin: &Path) -> Result<Tensor> {
    let bad = |m: String| Error::file(origin, format!("{path}: {m}"));
    let ds = file.dataset(path).map_err(|e| bad(e.to_string()))?;
    let shape: Vec<usize> = ds
        .shape()
        .map_err(|e| bad(e.to_string()))?
        .iter()
        .map(|&d| d as usize)
        .collect();
    let expected =
        checked_len(&shape).ok_or_else(|| bad(format!("declared shape {shape:?} is too large")))?;
    // Integer weights (Normalization's count) are stored as int64.
    let data = match ds.read_f32() {
        Ok(data) => data,
        Err(e) => match ds.read_i64() {
            Ok(ints) => ints.iter().map(|&i| i as f32).collect(),
            Err(_) => return Err(bad(format!("cannot read as float32: {e}"))),
        },
    };
    if data.len() != expected {
        return Err(bad(format!(
            "declared shape {shape:?} needs {expected} values but {} are stored",
            data.len()
        )));
    }
    Tensor::new(shape, data).map_err(|e| bad(e.to_string()))
}

/// Rejects NaN and infinite weights, naming where they are.
pub(crate) fn check_finite(t: &Tensor, origin: &Path, what: &str) -> Result<()> {
    match t.data().iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::file(
            origin,
            format!(
                "{what} holds a non-finite value ({}) at index {i}",
                t.data()[i]
            ),
        )),
    }
}

/// Loads every layer's weights from a Keras 3 weight store (the bytes of
/// `model.weights.h5`, or a `.weights.h5` file). Returns the optimizer variables found.
pub fn load_weights(model: &mut Model, bytes: Vec<u8>, origin: &Path) -> Result<Vec<Tensor>> {
    load_weight_store(model, &read_hdf5(bytes, origin)?, origin)
}

/// The HDF5 file in `bytes`, or an error naming `origin`.
pub(crate) fn read_hdf5(bytes: Vec<u8>, origin: &Path) -> Result<File> {
    File::from_bytes(bytes)
        .map_err(|e| Error::file(origin, format!("not a readable HDF5 weight store: {e}")))
}

/// [`load_weights`] from the opened file.
pub(crate) fn load_weight_store(
    model: &mut Model,
    file: &File,
    origin: &Path,
) -> Result<Vec<Tensor>> {
    load_layers(file, "", model, origin)?;
    let mut optimizer = Vec::new();
    while let Ok(ds) = file.dataset(&format!("optimizer/vars/{}", optimizer.len())) {
        let value = match ds.read_f32() {
            Ok(v) if v.len() == 1 && ds.shape().map(|s| s.is_empty()).unwrap_or(false) => {
                Tensor::new(Vec::<usize>::new(), v)
            }
            _ => read_dataset(file, &format!("optimizer/vars/{}", optimizer.len()), origin),
        };
        let value = match value {
            Ok(v) => v,
            // The step count is stored as int64.
            Err(_) => {
                let ints = ds.read_i64().map_err(|e| {
                    Error::file(origin, format!("optimizer/vars/{}: {e}", optimizer.len()))
                })?;
                Tensor::new(
                    Vec::<usize>::new(),
                    ints.iter().map(|&i| i as f32).collect(),
                )
                .map_err(|e| Error::file(origin, e))?
            }
        };
        optimizer.push(value);
    }
    Ok(optimizer)
}

/// Loads the weights of `model`'s layers from the groups under `prefix` (a nested
/// model's layers sit under `layers/<its store name>/layers/…`).
fn load_layers(file: &File, prefix: &str, model: &mut Model, origin: &Path) -> Result<()> {
    let names = store_names(model.layers());
    let layer_names: Vec<String> = model.layers().map(|l| l.name().to_string()).collect();
    for (store, layer_name) in names.iter().zip(&layer_names) {
        // Keras 3.0 and 3.1 stored layers under `_layer_checkpoint_dependencies`.
        let group = ["layers", "_layer_checkpoint_dependencies"]
            .iter()
            .map(|top| format!("{prefix}{top}/{store}"))
            .find(|g| file.group(g).is_ok())
            .unwrap_or_else(|| format!("{prefix}layers/{store}"));
        let layer = model.get_layer_mut(layer_name)?;
        if let Some(inner) = nested_model_mut(layer.as_mut()) {
            load_layers(file, &format!("{group}/"), inner, origin)?;
            continue;
        }
        let values = (0..layer.weights().len())
            .map(|i| {
                let path = format!("{group}/vars/{i}");
                let t = read_dataset(file, &path, origin)?;
                check_finite(&t, origin, &format!("weight {i} of layer '{layer_name}'"))?;
                Ok(t)
            })
            .collect::<Result<Vec<_>>>()?;
        layer
            .set_weights(values)
            .map_err(|e| Error::file(origin, format!("{group}: {e}")))?;
    }
    Ok(())
}

/// The groups of `model`'s layers, with their weights, into `parent` (`layers/…`).
fn store_layers(parent: &mut hdf5_pure::GroupBuilder, model: &Model) {
    for (layer, store) in model.layers().zip(store_names(model.layers())) {
        let mut group = parent.create_group(&store);
        if let Some(inner) = nested_model(layer) {
            let mut inner_layers = group.create_group("layers");
            store_layers(&mut inner_layers, inner);
            group.add_group(inner_layers.finish());
        }
        let mut vars = group.create_group("vars");
        vars.set_attr("name", AttrValue::String(layer.name().to_string()));
        if nested_model(layer).is_none() {
            for (i, w) in layer.weights().iter().enumerate() {
                let dataset = vars.create_dataset(&i.to_string());
                let dataset = if w.integer {
                    let ints: Vec<i64> = w.value.data().iter().map(|&v| v as i64).collect();
                    dataset.with_i64_data(&ints)
                } else {
                    dataset.with_f32_data(w.value.data())
                };
                dataset.with_shape(&shape_u64(&w.value));
            }
        }
        group.add_group(vars.finish());
        parent.add_group(group.finish());
    }
}

fn shape_u64(t: &Tensor) -> Vec<u64> {
    t.shape().iter().map(|&d| d as u64).collect()
}

/// The bytes of a Keras 3 weight store for `model` (and its optimizer's state, when
/// given).
pub fn weight_store(model: &Model, optimizer: Option<&Optimizer>) -> Result<Vec<u8>> {
    let mut builder = FileBuilder::new();
    let mut layers_group = builder.create_group("layers");
    store_layers(&mut layers_group, model);
    builder.add_group(layers_group.finish());
    let mut vars = builder.create_group("vars");
    vars.set_attr("name", AttrValue::String(model.name().to_string()));
    builder.add_group(vars.finish());
    if let Some(optimizer) = optimizer {
        let mut group = builder.create_group("optimizer");
        let mut vars = group.create_group("vars");
        let (iterations, slots) = optimizer.state();
        vars.create_dataset("0")
            .with_i64_data(&[iterations as i64])
            .with_shape(&[]);
        vars.create_dataset("1")
            .with_f32_data(&[optimizer.current_learning_rate() as f32])
            .with_shape(&[]);
        for (i, slot) in slots.iter().flatten().enumerate() {
            vars.create_dataset(&(i + 2).to_string())
                .with_f32_data(slot.data())
                .with_shape(&shape_u64(slot));
        }
        group.add_group(vars.finish());
        builder.add_group(group.finish());
    }
    builder
        .finish()
        .map_err(|e| Error::format(format!("writing the HDF5 weight store: {e}")))
}
