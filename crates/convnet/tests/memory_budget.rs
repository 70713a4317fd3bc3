//! The memory plan and budget: what a call needs is known from shape inference, and a
//! call over the budget is refused in one line naming the layer and the sizes, before
//! anything is allocated. (Its own test binary: the budget is process-wide.)

use convnet::layers::*;
use convnet::model::{set_memory_limit, Call, Input, Model};
use convnet::train::{FitOptions, Optimizer};
use convnet::{Padding, Tensor};

/// Input 32x32x3 → Conv2D 8 → Conv2D 16 (the largest output) → GlobalAveragePooling2D.
fn model() -> Model {
    let x = Input::new([32, 32, 3]);
    let a = Conv2D::new(8, (3, 3))
        .padding(Padding::Same)
        .named("small")
        .call(&x);
    let b = Conv2D::new(16, (3, 3))
        .padding(Padding::Same)
        .named("large")
        .call(&a);
    let y = GlobalAveragePooling2D::new().call(&b);
    Model::new(&x, &y).unwrap()
}

#[test]
fn plans_follow_shapes_and_the_budget_refuses_before_running() {
    let model = model();
    let plan = model.memory_plan(&[vec![10, 32, 32, 3]]).unwrap();
    let (input, small, large) = (
        10 * 32 * 32 * 3 * 4,
        10 * 32 * 32 * 8 * 4,
        10 * 32 * 32 * 16 * 4,
    );
    assert_eq!(plan.largest.layer, "large");
    assert_eq!(plan.largest.shape, [10, 32, 32, 16]);
    assert_eq!(plan.largest.bytes, large);
    // The input is freed after the first convolution, so the peak is both convolutions'
    // outputs, while the second one is computed.
    assert_eq!(plan.inference_peak, (input + small).max(small + large));
    assert_eq!(plan.peak_layer, "large");
    assert_eq!(plan.activations.len(), 3);
    assert!(plan.training_peak >= input + small + large);

    let x = Tensor::zeros([10, 32, 32, 3]);
    set_memory_limit(Some(plan.inference_peak - 1));
    let e = model
        .predict(std::slice::from_ref(&x), 10)
        .unwrap_err()
        .to_string();
    for part in [
        "batch 10",
        "'large'",
        "[10, 32, 32, 16]",
        "set_memory_limit",
    ] {
        assert!(e.contains(part), "{e:?} should mention {part:?}");
    }
    // A smaller batch fits.
    set_memory_limit(Some(plan.inference_peak));
    model.predict(std::slice::from_ref(&x), 5).unwrap();
    // Training holds its larger plan to the same budget.
    let model = model;
    let mut model = model
        .compile_named(Optimizer::sgd(0.01), "mse", &[])
        .unwrap();
    let y = Tensor::zeros([10, 16]);
    let options = FitOptions {
        batch_size: 10,
        epochs: 1,
        verbose: 0,
        ..FitOptions::default()
    };
    let e = model.fit(&[x], &[y], options).unwrap_err().to_string();
    assert!(e.contains("training at batch 10"), "{e}");
    set_memory_limit(None);
}
