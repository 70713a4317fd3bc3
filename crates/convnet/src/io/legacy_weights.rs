//! The legacy HDF5 weight layout that tf.keras 2 and Keras 3 write in `.h5` files: the
//! root (or a model file's `model_weights` group) lists `layer_names`, and each layer's
//! group lists its `weight_names` (`conv1_conv/kernel:0`, …) with one dataset each. It
//! is the layout of the ImageNet weight files Keras distributes
//! (`resnet50_weights_tf_dim_ordering_tf_kernels.h5`, `*_notop.h5`), of
//! `save_weights("x.h5")`, and of a legacy model file's weights.
//!
//! Loading follows Keras's `legacy_h5_format`: in order, the saved layers that have
//! weights go to the model's layers that have weights, one for one; or by name, where
//! `skip_mismatch` leaves a layer whose weights do not fit as it is (a new head).

use super::weights::check_finite;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::tensor::Tensor;
use hdf5_pure::{AttrValue, File, Group};
use std::path::Path;

/// One saved layer: its name and its weights in the file's order.
pub(crate) struct SavedLayer {
    pub name: String,
    pub weights: Vec<(String, Tensor)>,
}

/// Whether an HDF5 file is in the legacy layout (rather than Keras 3's weight store).
pub(crate) fn is_legacy(file: &File) -> bool {
    file.group("model_weights").is_ok()
        || file
            .root()
            .attrs()
            .is_ok_and(|attrs| attrs.contains_key("layer_names"))
}

/// Every saved layer, with its weights, from the root or `model_weights`.
pub(crate) fn read_layers(file: &File, path: &Path) -> Result<Vec<SavedLayer>> {
    let group = match file.group("model_weights") {
        Ok(group) => group,
        Err(_) => file.root(),
    };
    let where_ = if file.group("model_weights").is_ok() {
        "model_weights/"
    } else {
        ""
    };
    let attrs = group.attrs().map_err(|e| Error::file(path, e))?;
    let names = attrs
        .get("layer_names")
        .and_then(attr_strings)
        .ok_or_else(|| Error::file(path, format!("{where_}: no 'layer_names' attribute")))?;
    names
        .into_iter()
        .map(|name| {
            let layer = group
                .group(&name)
                .map_err(|_| Error::file(path, format!("{where_}: no group for layer '{name}'")))?;
            let weights = read_layer(&layer, &format!("{where_}{name}"), path)?;
            Ok(SavedLayer { name, weights })
        })
        .collect()
}

fn read_layer(group: &Group, at: &str, path: &Path) -> Result<Vec<(String, Tensor)>> {
    let attrs = group.attrs().map_err(|e| Error::file(path, e))?;
    let names = attrs
        .get("weight_names")
        .and_then(attr_strings)
        .unwrap_or_default();
    names
        .into_iter()
        .map(|w| {
            let bad = |e: &dyn std::fmt::Display| Error::file(path, format!("{at}/{w}: {e}"));
            let ds = group.dataset(&w).map_err(|e| bad(&e))?;
            let shape: Vec<usize> = ds
                .shape()
                .map_err(|e| bad(&e))?
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
                .collect();
            let data = ds.read_f32().map_err(|e| bad(&e))?;
            let t = Tensor::new(shape, data).map_err(|e| bad(&e))?;
            check_finite(&t, path, &format!("weight '{w}' of {at}"))?;
            Ok((w, t))
        })
        .collect()
}

/// The layers of `model` that have weights, in order, with their weight counts.
fn weighted_layers(model: &Model) -> Vec<(String, usize)> {
    model
        .layers()
        .filter(|l| !l.weights().is_empty())
        .map(|l| (l.name().to_string(), l.weights().len()))
        .collect()
}

fn values(saved: SavedLayer) -> Vec<Tensor> {
    saved.weights.into_iter().map(|(_, t)| t).collect()
}

/// Keras's `load_weights_from_hdf5_group`: the saved layers with weights, in order, into
/// the model's layers with weights.
pub(crate) fn load_in_order(model: &mut Model, saved: Vec<SavedLayer>, path: &Path) -> Result<()> {
    let saved: Vec<SavedLayer> = saved
        .into_iter()
        .filter(|s| !s.weights.is_empty())
        .collect();
    let layers = weighted_layers(model);
    if saved.len() != layers.len() {
        return Err(Error::file(
            path,
            format!(
                "layer count mismatch when loading weights from file: the model expects {} layers with weights, the file has {} saved layers (load by name to match them by name)",
                layers.len(),
                saved.len()
            ),
        ));
    }
    for ((name, _), layer) in layers.iter().zip(saved) {
        let from = layer.name.clone();
        model
            .get_layer_mut(name)?
            .set_weights(values(layer))
            .map_err(|e| {
                Error::file(
                    path,
                    format!("saved layer '{from}' into layer '{name}': {e}"),
                )
            })?;
    }
    Ok(())
}

/// Keras's `load_weights_from_hdf5_group_by_name`: each saved layer into the model's
/// layer of that name; saved layers the model lacks are ignored. A layer whose weights
/// differ in count or shape is an error, or with `skip_mismatch` left as it is, with a
/// warning in the returned list.
pub(crate) fn load_by_name(
    model: &mut Model,
    saved: Vec<SavedLayer>,
    skip_mismatch: bool,
    path: &Path,
) -> Result<Vec<String>> {
    let mut skipped = Vec::new();
    for layer in saved {
        let Ok(target) = model.get_layer_mut(&layer.name) else {
            continue;
        };
        let expected: Vec<(String, Vec<usize>)> = target
            .weights()
            .iter()
            .map(|w| (w.name.clone(), w.value.shape().to_vec()))
            .collect();
        let name = layer.name.clone();
        let mismatch = if expected.len() != layer.weights.len() {
            Some(format!(
                "layer '{name}' expects {} weight(s), the file has {}",
                expected.len(),
                layer.weights.len()
            ))
        } else {
            expected
                .iter()
                .zip(&layer.weights)
                .find(|((_, want), (_, got))| want.as_slice() != got.shape())
                .map(|((w, want), (_, got))| {
                    format!(
                        "layer '{name}': weight '{w}' has shape {want:?}, the file's has {:?}",
                        got.shape()
                    )
                })
        };
        match mismatch {
            Some(why) if skip_mismatch => skipped.push(format!("skipped loading {why}")),
            Some(why) => {
                return Err(Error::file(
                    path,
                    format!("{why} (skip_mismatch leaves such layers as they are)"),
                ))
            }
            None => target
                .set_weights(values(layer))
                .map_err(|e| Error::file(path, format!("layer '{name}': {e}")))?,
        }
    }
    Ok(skipped)
}

pub(crate) fn attr_string(value: &AttrValue) -> Option<String> {
    use AttrValue::*;
    match value {
        String(s) | AsciiString(s) | VarLenString(s) | VarLenAsciiString(s) => Some(s.clone()),
        _ => None,
    }
}

pub(crate) fn attr_strings(value: &AttrValue) -> Option<Vec<String>> {
    use AttrValue::*;
    match value {
        StringArray(v)
        | AsciiStringArray(v)
        | VarLenStringArray(v)
        | VarLenAsciiStringArray(v)
        | VarLenAsciiCharArray(v) => Some(v.clone()),
        F64Array(v) if v.is_empty() => Some(vec![]),
        other => attr_string(other).map(|s| vec![s]),
    }
}
