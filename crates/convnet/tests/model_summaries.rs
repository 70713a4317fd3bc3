//! The seven golden Keras models written in Rust, each as its Keras source reads (see
//! tests/golden/models/*.py), and their summaries compared byte for byte with what
//! Keras 3 printed (80-column terminal, as when standard output is not a terminal).

use convnet::layers::*;
use convnet::model::{Call, Input, Model, SymbolicTensor};
use convnet::{sequential, Padding};

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

fn parallel_convolution(x: &SymbolicTensor) -> SymbolicTensor {
    let a = Conv2D::new(64, (1, 1))
        .padding(Padding::Same)
        .activation("relu")
        .call(x);
    let b = Conv2D::new(64, (3, 3))
        .padding(Padding::Same)
        .activation("relu")
        .call(x);
    let c = Conv2D::new(64, (5, 5))
        .padding(Padding::Same)
        .activation("relu")
        .call(x);
    Concatenate::new().call(&[a, b, c])
}

#[test]
fn seed_inception() {
    let input = Input::new([224, 224, 3]);
    let model = Model::new(&input, parallel_convolution(&input)).unwrap();
    assert_eq!(model.count_params(), 6_912);
    assert_eq!(
        model.output_shapes(),
        vec![vec![None, Some(224), Some(224), Some(192)]]
    );
    assert_summary(&model, "seed_inception");
}

#[test]
fn seed_inception_32() {
    let input = Input::new([32, 32, 3]);
    let model = Model::new(&input, parallel_convolution(&input)).unwrap();
    assert_summary(&model, "seed_inception_32");
}

#[test]
fn seed_sequential() {
    let model = sequential![
        Input::new([28, 28, 1]),
        Conv2D::new(32, (3, 3)).activation("relu"),
        MaxPooling2D::new((2, 2)),
        Flatten::new(),
        Dense::new(10).activation("softmax"),
    ]
    .unwrap();
    assert_eq!(model.count_params(), 54_410);
    assert_summary(&model, "seed_sequential");
}

#[test]
fn fmnist_cnn() {
    let model = sequential![
        Input::new([28, 28, 1]),
        Conv2D::new(32, (3, 3)).activation("relu"),
        MaxPooling2D::new((2, 2)),
        Conv2D::new(64, (3, 3)).activation("relu"),
        MaxPooling2D::new((2, 2)),
        Flatten::new(),
        Dropout::new(0.5),
        Dense::new(10).activation("softmax"),
    ]
    .unwrap();
    assert_summary(&model, "fmnist_cnn");
}

#[test]
fn inception_v1_module() {
    let x0 = Input::new([28, 28, 32]);
    let b1 = Conv2D::new(16, (1, 1)).activation("relu").call(&x0);
    let b2 = Conv2D::new(12, (1, 1)).activation("relu").call(&x0);
    let b2 = Conv2D::new(24, (3, 3))
        .padding(Padding::Same)
        .activation("relu")
        .call(&b2);
    let b3 = Conv2D::new(4, (1, 1)).activation("relu").call(&x0);
    let b3 = Conv2D::new(8, (5, 5))
        .padding(Padding::Same)
        .activation("relu")
        .call(&b3);
    let b4 = MaxPooling2D::new((3, 3))
        .strides((1, 1))
        .padding(Padding::Same)
        .call(&x0);
    let b4 = Conv2D::new(8, (1, 1)).activation("relu").call(&b4);
    let y = Concatenate::new().call(&[b1, b2, b3, b4]);
    let model = Model::new(&x0, &y).unwrap().named("inception_module");
    assert_summary(&model, "inception_v1_module");
}

#[test]
fn mobilenet_block() {
    let x0 = Input::new([32, 32, 3]);
    let x = Conv2D::new(16, (3, 3))
        .strides((2, 2))
        .padding(Padding::Same)
        .use_bias(false)
        .call(&x0);
    let x = BatchNormalization::new().call(&x);
    let x = ReLU::new().max_value(6.0).call(&x);
    let x = DepthwiseConv2D::new((3, 3))
        .padding(Padding::Same)
        .use_bias(false)
        .call(&x);
    let x = BatchNormalization::new().call(&x);
    let x = ReLU::new().call(&x);
    let x = Conv2D::new(24, (1, 1)).use_bias(false).call(&x);
    let x = BatchNormalization::new().call(&x);
    let x = SeparableConv2D::new(32, (3, 3))
        .strides((2, 2))
        .padding(Padding::Same)
        .activation("relu")
        .call(&x);
    let x = GlobalAveragePooling2D::new().call(&x);
    let x = Dropout::new(0.2).call(&x);
    let y = Dense::new(10).activation("softmax").call(&x);
    let model = Model::new(&x0, &y).unwrap().named("mobilenet_block");
    assert_summary(&model, "mobilenet_block");
}

#[test]
fn resnet_block() {
    let x0 = Input::new([16, 16, 8]);
    let a = Conv2D::new(16, (3, 3))
        .strides((2, 2))
        .padding(Padding::Same)
        .call(&x0);
    let a = BatchNormalization::new().call(&a);
    let a = Activation::new("relu").call(&a);
    let a = Conv2D::new(16, (3, 3)).padding(Padding::Same).call(&a);
    let a = BatchNormalization::new().call(&a);
    let s = Conv2D::new(16, (1, 1)).strides((2, 2)).call(&x0);
    let y = Add::new().call(&[a, s]);
    let y = Activation::new("relu").call(&y);
    let y = AveragePooling2D::new((2, 2)).call(&y);
    let y = Flatten::new().call(&y);
    let y = Dense::new(4).call(&y);
    let model = Model::new(&x0, &y).unwrap().named("resnet_block");
    assert_summary(&model, "resnet_block");
}
