//! Every layer against Keras 3 itself: the cases in tests/golden/layers (or the directory
//! named by CONVNET_GOLDEN_LAYERS) were computed by Keras in float64. Each case builds
//! the layer from the config Keras wrote, loads Keras's weights, runs forward in the
//! recorded mode and backward with the recorded upstream gradient r, and compares the
//! output, every input gradient, every trainable weight's gradient and the updated
//! non-trainable weights. A case that cannot run fails; none is skipped.

use convnet::layers::{layer_from_keras, zero_grads, Shape};
use convnet::{initializers, Tensor};
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::NpzReader;
use serde_json::Value;
use std::path::{Path, PathBuf};

const TOLERANCE: f64 = 1e-4;

fn golden_dir() -> PathBuf {
    match std::env::var_os("CONVNET_GOLDEN_LAYERS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/layers"),
    }
}

/// ‖a − b‖ / ‖b‖ in f64 (the absolute norm when the reference is zero).
fn relative_error(got: &Tensor, want: &ArrayD<f64>) -> f64 {
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (&g, &w) in got.data().iter().zip(want.iter()) {
        diff += (g as f64 - w).powi(2);
        norm += w * w;
    }
    if norm == 0.0 {
        diff.sqrt()
    } else {
        (diff / norm).sqrt()
    }
}

struct Arrays(NpzReader<std::fs::File>);

impl Arrays {
    fn get(&mut self, name: &str) -> Result<ArrayD<f64>, String> {
        self.0
            .by_name::<ndarray::OwnedRepr<f64>, IxDyn>(name)
            .map_err(|e| format!("array {name}: {e}"))
    }

    fn tensor(&mut self, name: &str) -> Result<Tensor, String> {
        Ok(Tensor::from_ndarray(self.get(name)?.mapv(|v| v as f32)))
    }

    fn has(&mut self, name: &str) -> bool {
        self.0
            .names()
            .is_ok_and(|names| names.iter().any(|n| n == name))
    }
}

fn compare(what: &str, got: &Tensor, want: &ArrayD<f64>) -> Result<(), String> {
    if got.shape() != want.shape() {
        return Err(format!(
            "{what}: shape {:?}, Keras has {:?}",
            got.shape(),
            want.shape()
        ));
    }
    let err = relative_error(got, want);
    if err.is_nan() || err > TOLERANCE {
        return Err(format!("{what}: relative error {err:.3e} > {TOLERANCE:e}"));
    }
    Ok(())
}

fn run_case(dir: &Path, case: &Value) -> Result<(), String> {
    let keras_layer = &case["layer"];
    let mut layer = layer_from_keras(keras_layer).map_err(|e| e.to_string())?;

    // The config must come back exactly as Keras wrote it.
    let config = layer.config();
    if config != keras_layer["config"] {
        return Err(format!(
            "config round trip differs:\n  keras:   {}\n  convnet: {}",
            keras_layer["config"], config
        ));
    }

    let input_shapes: Vec<Shape> = case["input_shapes"]
        .as_array()
        .ok_or("input_shapes missing")?
        .iter()
        .map(|s| {
            s.as_array()
                .map(|dims| {
                    dims.iter()
                        .map(|d| d.as_u64().map(|d| d as usize))
                        .collect()
                })
                .ok_or("bad input shape")
        })
        .collect::<Result<_, _>>()?;
    let mut rng = initializers::rng_from_seed(0);
    layer
        .build(&input_shapes, &mut rng)
        .map_err(|e| e.to_string())?;

    // Weight names, shapes and trainability in Keras's order.
    let expected_weights = case["weights"].as_array().ok_or("weights missing")?;
    let ours: Vec<(String, Vec<usize>, bool)> = layer
        .weights()
        .iter()
        .map(|w| (w.name.clone(), w.value.shape().to_vec(), w.trainable))
        .collect();
    let theirs: Vec<(String, Vec<usize>, bool)> = expected_weights
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap_or("?").to_string(),
                w["shape"].as_array().map_or(vec![], |s| {
                    s.iter()
                        .filter_map(|d| d.as_u64())
                        .map(|d| d as usize)
                        .collect()
                }),
                w["trainable"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    if ours != theirs {
        return Err(format!(
            "weights differ: convnet {ours:?}, keras {theirs:?}"
        ));
    }

    let file = dir.join(case["file"].as_str().ok_or("file missing")?);
    let reader = std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut arrays =
        Arrays(NpzReader::new(reader).map_err(|e| format!("{}: {e}", file.display()))?);

    let weights: Vec<Tensor> = (0..theirs.len())
        .map(|i| arrays.tensor(&format!("w{i}")))
        .collect::<Result<_, _>>()?;
    layer.set_weights(weights).map_err(|e| e.to_string())?;
    let inputs: Vec<Tensor> = (0..input_shapes.len())
        .map(|i| arrays.tensor(&format!("x{i}")))
        .collect::<Result<_, _>>()?;
    let input_refs: Vec<&Tensor> = inputs.iter().collect();
    let training = case["training"].as_bool().unwrap_or(false);

    // The inference path must agree with Keras in inference mode.
    if !training {
        let y = layer.apply(&input_refs).map_err(|e| e.to_string())?;
        compare("apply() output", &y, &arrays.get("y")?)?;
    }

    let (y, saved) = layer
        .forward(&input_refs, training)
        .map_err(|e| e.to_string())?;
    compare("output", &y, &arrays.get("y")?)?;

    let r = arrays.tensor("r")?;
    let mut dweights = zero_grads(layer.as_ref());
    let dx = layer
        .backward(&input_refs, &y, &saved, &r, &mut dweights)
        .map_err(|e| e.to_string())?;
    if dx.len() != inputs.len() {
        return Err(format!(
            "{} input gradients for {} inputs",
            dx.len(),
            inputs.len()
        ));
    }
    for (i, g) in dx.iter().enumerate() {
        compare(&format!("dx{i}"), g, &arrays.get(&format!("dx{i}"))?)?;
    }
    for (i, (w, dw)) in layer.weights().iter().zip(&dweights).enumerate() {
        if w.trainable {
            compare(
                &format!("dw{i} ({})", w.name),
                dw,
                &arrays.get(&format!("dw{i}"))?,
            )?;
        } else if arrays.has(&format!("w{i}_after")) {
            compare(
                &format!("w{i}_after ({})", w.name),
                &w.value,
                &arrays.get(&format!("w{i}_after"))?,
            )?;
        } else {
            return Err(format!(
                "non-trainable weight {i} has no w{i}_after in the case file"
            ));
        }
    }
    Ok(())
}

#[test]
fn every_golden_layer_case_matches_keras() {
    let dir = golden_dir();
    let cases_path = dir.join("cases.json");
    let text = std::fs::read_to_string(&cases_path)
        .unwrap_or_else(|e| panic!("{}: {e}", cases_path.display()));
    let cases: Value = serde_json::from_str(&text).expect("cases.json is JSON");
    let cases = cases["cases"]
        .as_array()
        .expect("cases.json has a 'cases' list");
    assert!(!cases.is_empty(), "no cases in {}", cases_path.display());

    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let name = case["name"].as_str().unwrap_or("<unnamed>");
            run_case(&dir, case).err().map(|e| format!("{name}: {e}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} golden cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} golden layer cases match Keras", cases.len());
}
