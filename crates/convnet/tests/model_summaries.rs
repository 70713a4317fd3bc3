//! The seven golden Keras models written in Rust, each as its Keras source reads (see
//! tests/golden/models/*.py), and their summaries compared byte for byte with what
//! Keras 3 printed (80-column terminal, as when standard output is not a terminal).

use convnet::layers::*;
use convnet::model::{Input, Model};
use convnet::sequential;
use convnet::ActivationFn;

fn golden(name: &str) -> String {
    let path = format!(
        "{}/tests/golden/models/{name}.summary.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn assert_summary(model: &Model, name: &str) {
    let ours = model.summary_for_columns(80);
    let theirs = golden(name);
    if ours != theirs {
        panic!("summary of {name} differs from Keras's.\n--- keras\n{theirs}\n--- convnet\n{ours}");
    }
}

#[test]
fn seed_inception_has_keras_params_and_shape() {
    let model = convnet::zoo::seed_inception(224).unwrap();
    assert_eq!(model.count_params(), 6_912);
    assert_eq!(
        model.output_shapes(),
        vec![vec![None, Some(224), Some(224), Some(192)]]
    );
}

#[test]
fn seed_sequential() {
    let model = sequential![
        Input::new([28, 28, 1]),
        Conv2D::new(32, (3, 3)).activation(ActivationFn::Relu),
        MaxPooling2D::new((2, 2)),
        Flatten::new(),
        Dense::new(10).activation(ActivationFn::Softmax),
    ]
    .unwrap();
    assert_eq!(model.count_params(), 54_410);
    assert_summary(&model, "seed_sequential");
}

/// The other golden architectures live in `convnet::zoo`, written as their Keras
/// sources read (see tests/golden/models/*.py).
#[test]
fn zoo_models() {
    use convnet::zoo;
    for (model, golden_name) in [
        (zoo::fmnist_cnn(), "fmnist_cnn"),
        (zoo::seed_sequential(), "seed_sequential"),
        (zoo::inception_v1_module(), "inception_v1_module"),
        (zoo::mobilenet_block(), "mobilenet_block"),
        (zoo::resnet_block(), "resnet_block"),
        (zoo::seed_inception(224), "seed_inception"),
        (zoo::seed_inception(32), "seed_inception_32"),
    ] {
        assert_summary(&model.unwrap(), golden_name);
    }
}
