//! Training against Keras 3 itself (tests/golden/train): every loss's value and gradient,
//! every optimizer's first four steps, and two whole fits of a small CNN with
//! BatchNormalization and a depthwise convolution — the same initial weights, trained
//! the same way, must end where Keras ended. Fits of models with weight and activity
//! regularizers and constraints (tests/golden/train/penalties, made by
//! scripts/make_penalty_fits.py) start from the `.keras` file Keras saved before
//! training and must match Keras's history, evaluate and predictions. Keras's
//! transfer-learning recipe (tests/golden/train/fine_tuning, scripts/make_fine_tuning.py)
//! must train and count parameters as Keras: a frozen base, then its top unfrozen.

use convnet::layers::*;
use convnet::model::{Call, Input, Model};
use convnet::train::losses::reduce;
use convnet::train::{Compiled, CompiledModel, FitOptions, LossFn, Optimizer};
use convnet::ActivationFn;
use convnet::{Padding, Tensor};
use ndarray::{ArrayD, IxDyn};
use ndarray_npy::NpzReader;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/train")
}

fn cases() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("train.json")).unwrap()).unwrap()
}

fn npz(file: &str) -> NpzReader<std::fs::File> {
    NpzReader::new(std::fs::File::open(dir().join(file)).unwrap()).unwrap()
}

fn array(reader: &mut NpzReader<std::fs::File>, name: &str) -> ArrayD<f64> {
    reader
        .by_name::<ndarray::OwnedRepr<f64>, IxDyn>(name)
        .or_else(|_| {
            reader
                .by_name::<ndarray::OwnedRepr<f32>, IxDyn>(name)
                .map(|a| a.mapv(|v| v as f64))
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn tensor(a: &ArrayD<f64>) -> Tensor {
    Tensor::from_ndarray(a.mapv(|v| v as f32))
}

fn relative_error(got: &[f32], want: impl Iterator<Item = f64>) -> f64 {
    let (mut diff, mut norm) = (0.0, 0.0);
    for (&g, w) in got.iter().zip(want) {
        diff += (g as f64 - w).powi(2);
        norm += w * w;
    }
    (diff / norm.max(1e-30)).sqrt()
}

#[test]
fn losses_match_keras() {
    let mut failures = Vec::new();
    for case in cases()["losses"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut loss = LossFn::from_config(&case["loss"]).unwrap();
        let mut arrays = npz(case["file"].as_str().unwrap());
        let (y_true, y_pred) = (
            tensor(&array(&mut arrays, "y_true")),
            tensor(&array(&mut arrays, "y_pred")),
        );
        if let LossFn::Huber { delta } = &mut loss {
            // Keras 3's Huber.get_config() leaves `delta` out, so the case's config cannot
            // say which delta made it. Where the error exceeds delta the gradient is
            // ±delta / (number of values): the largest gradient gives delta back.
            assert!(case["loss"]["config"].get("delta").is_none());
            let grad = array(&mut arrays, "grad");
            *delta = grad.iter().fold(0.0f64, |m, g| m.max(g.abs())) * grad.len() as f64;
        }
        let (value, grad) = reduce(&loss, &y_true, &y_pred, None).unwrap();
        let want_value = array(&mut arrays, "value").iter().copied().next().unwrap();
        let want_grad = array(&mut arrays, "grad");
        let value_error = (value - want_value).abs() / want_value.abs();
        let grad_error = relative_error(grad.data(), want_grad.iter().copied());
        if value_error > 1e-5 || grad_error > 1e-5 {
            failures.push(format!("{name}: value {value} vs {want_value} ({value_error:.2e}), gradient error {grad_error:.2e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn optimizers_match_keras_over_four_steps() {
    let mut failures = Vec::new();
    for case in cases()["optimizers"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut optimizer = Optimizer::from_config(&case["optimizer"]).unwrap();
        let mut arrays = npz(case["file"].as_str().unwrap());
        let mut w = tensor(&array(&mut arrays, "w0"));
        let grads = array(&mut arrays, "grads");
        let after = array(&mut arrays, "after");
        for step in 0..grads.shape()[0] {
            let g = tensor(&grads.index_axis(ndarray::Axis(0), step).to_owned());
            optimizer.apply(&mut [&mut w], &[&g]).unwrap();
            let want = after.index_axis(ndarray::Axis(0), step);
            let error = relative_error(w.data(), want.iter().copied());
            if error > 1e-5 {
                failures.push(format!(
                    "{name}: step {}: relative error {error:.2e}",
                    step + 1
                ));
            }
        }
        // The config goes back out as Keras wrote it.
        assert_eq!(
            optimizer.to_config()["config"],
            case["optimizer"]["config"],
            "{name}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The fits' model, as the `.keras` files describe it.
fn fit_model() -> Model {
    let x = Input::new([8, 8, 2]);
    let y = Conv2D::new(4, (3, 3))
        .padding(Padding::Same)
        .activation(ActivationFn::Relu)
        .call(&x);
    let y = BatchNormalization::new().call(&y);
    let y = MaxPooling2D::new((2, 2)).call(&y);
    let y = DepthwiseConv2D::new((3, 3))
        .padding(Padding::Same)
        .activation(ActivationFn::Relu)
        .call(&y);
    let y = Flatten::new().call(&y);
    let y = Dense::new(3).activation(ActivationFn::Softmax).call(&y);
    Model::new(&x, &y).unwrap()
}

#[test]
fn fits_match_keras() {
    for case in cases()["fits"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut model = fit_model();
        let mut weights = npz(&format!("fit_{name}.initial_weights.npz"));
        let count = model.get_weights().len();
        let initial: Vec<Tensor> = (0..count)
            .map(|i| tensor(&array(&mut weights, &format!("w{i}"))))
            .collect();
        model.set_weights(initial).unwrap();
        let optimizer = Optimizer::from_config(&case["optimizer"]).unwrap();
        let mut model = model
            .compile_named(optimizer, case["loss"].as_str().unwrap(), &["accuracy"])
            .unwrap();
        let x = Tensor::read_npy(dir().join("fit_x.npy")).unwrap();
        let y = Tensor::read_npy(dir().join("fit_y.npy")).unwrap();
        let options = FitOptions {
            batch_size: case["batch_size"].as_u64().unwrap() as usize,
            epochs: case["epochs"].as_u64().unwrap() as usize,
            shuffle: case["shuffle"].as_bool().unwrap(),
            verbose: 0,
            ..FitOptions::default()
        };
        let history = model.fit(std::slice::from_ref(&x), &[y], options).unwrap();
        for key in ["loss", "accuracy"] {
            let want: Vec<f64> = case["history"][key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let got = history.get(key).unwrap();
            for (epoch, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-4 * w.abs().max(1e-3),
                    "{name}: {key} at epoch {epoch}: {g} vs Keras {w}"
                );
            }
        }
        let predictions = model.predict(&[x], 32).unwrap().remove(0);
        let want =
            Tensor::read_npy(dir().join(case["trained_predictions"].as_str().unwrap())).unwrap();
        let error = relative_error(predictions.data(), want.data().iter().map(|&v| v as f64));
        assert!(
            error < 1e-4,
            "{name}: predictions after training differ from Keras's by {error:.2e}"
        );
    }
}

/// Checks `got` against Keras's `want` within 1e-4 (relative, or 1e-7 absolute near 0).
fn close(what: &str, got: f64, want: f64) -> Result<(), String> {
    if (got - want).abs() <= 1e-4 * want.abs().max(1e-3) {
        Ok(())
    } else {
        Err(format!("{what}: {got} vs Keras {want}"))
    }
}

/// Compiles `model` with Keras's optimizer config and loss (accuracy as the metric),
/// as the golden fits were compiled, and fits it on `data` without shuffling, silently.
fn fit_unshuffled(
    model: Model,
    (optimizer, loss): (&Value, &str),
    (x, y): (&Tensor, &Tensor),
    batch_size: usize,
    epochs: usize,
) -> (CompiledModel, convnet::train::History) {
    let optimizer = Optimizer::from_config(optimizer).unwrap();
    let mut model = model.compile_named(optimizer, loss, &["accuracy"]).unwrap();
    let options = FitOptions {
        batch_size,
        epochs,
        shuffle: false,
        verbose: 0,
        ..FitOptions::default()
    };
    let history = model
        .fit(std::slice::from_ref(x), std::slice::from_ref(y), options)
        .unwrap();
    (model, history)
}

#[test]
fn fits_with_regularizers_and_constraints_match_keras() {
    let dir = dir().join("penalties");
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let x = Tensor::read_npy(dir.join("x.npy")).unwrap();
    let y = Tensor::read_npy(dir.join("y.npy")).unwrap();
    let mut failures = Vec::new();
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let model = Model::load(dir.join(case["model"].as_str().unwrap())).unwrap();
        let batch_size = case["batch_size"].as_u64().unwrap() as usize;
        let (mut model, history) = fit_unshuffled(
            model,
            (&case["optimizer"], case["loss"].as_str().unwrap()),
            (&x, &y),
            batch_size,
            case["epochs"].as_u64().unwrap() as usize,
        );
        for key in ["loss", "accuracy"] {
            for (epoch, (g, w)) in history
                .get(key)
                .unwrap()
                .iter()
                .zip(case["history"][key].as_array().unwrap())
                .enumerate()
            {
                if let Err(e) = close(
                    &format!("{name}: {key} at epoch {epoch}"),
                    *g,
                    w.as_f64().unwrap(),
                ) {
                    failures.push(e);
                }
            }
        }
        let evaluated = model
            .evaluate(
                std::slice::from_ref(&x),
                std::slice::from_ref(&y),
                batch_size,
            )
            .unwrap();
        for key in ["loss", "accuracy"] {
            let want = case["evaluate"][key].as_f64().unwrap();
            if let Err(e) = close(&format!("{name}: evaluate {key}"), evaluated[key], want) {
                failures.push(e);
            }
        }
        let predictions = model
            .predict(std::slice::from_ref(&x), 32)
            .unwrap()
            .remove(0);
        let want = Tensor::read_npy(dir.join(case["predictions"].as_str().unwrap())).unwrap();
        let error = relative_error(predictions.data(), want.data().iter().map(|&v| v as f64));
        if error > 1e-4 {
            failures.push(format!(
                "{name}: predictions after training differ by {error:.2e}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The summary's parameter lines (`Total params: …`).
fn parameter_lines(summary: String) -> Vec<String> {
    summary
        .lines()
        .filter(|l| l.contains("params:"))
        .map(str::to_string)
        .collect()
}

#[test]
fn fine_tuning_a_frozen_base_matches_keras() {
    let dir = dir().join("fine_tuning");
    let case: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let x = Tensor::read_npy(dir.join("x.npy")).unwrap();
    let y = Tensor::read_npy(dir.join("y.npy")).unwrap();
    let mut model = Model::load(dir.join("model.keras")).unwrap();
    // The last phase's compile state: Keras's summary lists its optimizer's variables.
    let mut compiled: Option<Compiled> = None;
    let mut previous: Option<Tensor> = None;
    for (p, phase) in case["phases"].as_array().unwrap().iter().enumerate() {
        if p == 1 {
            // Keras's `base.trainable = True`, then its first convolution and
            // BatchNormalization frozen again.
            model.set_layer_trainable("base", true).unwrap();
            let base =
                convnet::model::nested_model_mut(model.get_layer_mut("base").unwrap().as_mut())
                    .unwrap();
            base.set_layer_trainable("c1", false).unwrap();
            base.set_layer_trainable("bn1", false).unwrap();
        }
        let want: Vec<String> = serde_json::from_value(phase["summary"].clone()).unwrap();
        let summary = match compiled.take() {
            Some(state) => {
                let trained = CompiledModel::from_parts(model, state).unwrap();
                let summary = trained.summary_for_columns(80);
                model = trained.into_model();
                summary
            }
            None => model.summary_for_columns(80),
        };
        assert_eq!(
            parameter_lines(summary),
            want,
            "phase {p}: the summary's counts"
        );
        let (trained, history) = fit_unshuffled(
            model,
            (&phase["optimizer"], case["loss"].as_str().unwrap()),
            (&x, &y),
            case["batch_size"].as_u64().unwrap() as usize,
            1,
        );
        for key in ["loss", "accuracy"] {
            let want = phase["history"][key][0].as_f64().unwrap();
            close(
                &format!("phase {p}: {key}"),
                history.get(key).unwrap()[0],
                want,
            )
            .unwrap();
        }
        let predictions = trained
            .predict(std::slice::from_ref(&x), 32)
            .unwrap()
            .remove(0);
        let (trained, state) = trained.into_parts();
        (model, compiled) = (trained, Some(state));
        let want = Tensor::read_npy(dir.join(phase["predictions"].as_str().unwrap())).unwrap();
        let error = relative_error(predictions.data(), want.data().iter().map(|&v| v as f64));
        assert!(
            error < 1e-5,
            "phase {p}: predictions differ from Keras's by {error:.2e}"
        );
        // Each phase changes the predictions by more than the tolerance.
        if let Some(before) = previous {
            let moved = relative_error(before.data(), predictions.data().iter().map(|&v| v as f64));
            assert!(
                moved > 1e-4,
                "phase {p} moved the predictions by only {moved:.2e}"
            );
        }
        previous = Some(predictions);
    }
}
