//! Inference keeps a 3x3 layer's Winograd-transformed kernel between calls
//! (layers/prepared_kernel.rs). Whatever changes the kernel afterwards (set_weights, a
//! write in place, an optimizer step) must show in the next prediction: each is checked
//! against training's forward pass, which always transforms the kernel afresh.

use convnet::layers::*;
use convnet::model::{Call, Input, Model};
use convnet::train::Optimizer;
use convnet::{Padding, Tensor};

mod common;
use common::{max_relative, random};

/// A 3x3 layer with 16 channels in and out at stride 1: Winograd's route.
fn model() -> Model {
    let x = Input::new([6, 7, 16]);
    let y = Conv2D::new(16, (3, 3))
        .padding(Padding::Same)
        .named("conv")
        .call(&x);
    Model::new(&x, &y).unwrap()
}

/// `apply`'s output, checked against a fresh transform's (training's forward pass).
fn predict_as_fresh(model: &mut Model, x: &Tensor) -> Tensor {
    let kept = model.apply(&[x]).unwrap().remove(0);
    let fresh = model.forward(&[x], false).unwrap()[0].clone();
    let err = max_relative(&kept, &fresh);
    assert!(
        err < 1e-6,
        "prediction differs from a fresh transform by {err}"
    );
    kept
}

#[test]
fn a_kept_kernel_follows_every_change_to_the_weights() {
    let mut model = model();
    let x = random(&[2, 6, 7, 16], 1);
    let first = predict_as_fresh(&mut model, &x);
    // Twice: the second call reads the kept kernel.
    let again = predict_as_fresh(&mut model, &x);
    assert_eq!(first.data(), again.data());

    let weights: Vec<Tensor> = model
        .get_weights()
        .iter()
        .enumerate()
        .map(|(i, w)| random(w.shape(), 7 + i as u64))
        .collect();
    model.set_weights(weights).unwrap();
    let replaced = predict_as_fresh(&mut model, &x);
    assert!(max_relative(&replaced, &first) > 1e-2);

    let kernel = &mut model.get_layer_mut("conv").unwrap().weights_mut()[0].value;
    kernel.data_mut()[5] += 1.0;
    let written = predict_as_fresh(&mut model, &x);
    assert!(max_relative(&written, &replaced) > 1e-4);

    let mut compiled = model
        .compile_named(Optimizer::sgd(0.5), "mse", &[])
        .unwrap();
    let target = random(&[2, 6, 7, 16], 3);
    compiled
        .train_on_batch(std::slice::from_ref(&x), &[target])
        .unwrap();
    let mut model = compiled.into_model();
    let trained = predict_as_fresh(&mut model, &x);
    assert!(max_relative(&trained, &written) > 1e-4);
}
