//! Built-in architectures: the models of the design notes and the reference CNN.

use crate::activations::ActivationFn;
use crate::error::Result;
use crate::kernels::Padding;
use crate::layers::{
    Activation, Add, AveragePooling2D, BatchNormalization, Concatenate, Conv2D, Dense,
    DepthwiseConv2D, Dropout, Flatten, GlobalAveragePooling2D, MaxPooling2D, ReLU, SeparableConv2D,
};
use crate::model::{Call, Input, Model, Sequential, SequentialItem, SymbolicTensor};

/// The reference Fashion-MNIST CNN: Conv2D 32 → MaxPooling2D → Conv2D 64 →
/// MaxPooling2D → Flatten → Dropout 0.5 → Dense 10 softmax (34,826 parameters).
pub fn fmnist_cnn() -> Result<Model> {
    crate::sequential![
        Input::new([28, 28, 1]),
        Conv2D::new(32, (3, 3)).activation(ActivationFn::Relu),
        MaxPooling2D::new((2, 2)),
        Conv2D::new(64, (3, 3)).activation(ActivationFn::Relu),
        MaxPooling2D::new((2, 2)),
        Flatten::new(),
        Dropout::new(0.5),
        Dense::new(10).activation(ActivationFn::Softmax),
    ]
}

/// The deeper Fashion-MNIST CNN (`examples/fashion_mnist_deep.rs`): two blocks of
/// (Conv2D → BatchNormalization → ReLU) x2 → MaxPooling2D → Dropout 0.25, of 32 then
/// 64 filters, then Dense 256 → BatchNormalization → ReLU → Dropout 0.5 → Dense 10
/// softmax.
pub fn fmnist_deep() -> Result<Model> {
    let mut items: Vec<SequentialItem> = vec![Input::new([28, 28, 1]).into()];
    for filters in [32, 64] {
        for _ in 0..2 {
            items.push(
                Conv2D::new(filters, (3, 3))
                    .padding(Padding::Same)
                    .use_bias(false)
                    .into(),
            );
            items.push(BatchNormalization::new().into());
            items.push(Activation::new(ActivationFn::Relu).into());
        }
        items.push(MaxPooling2D::new((2, 2)).into());
        items.push(Dropout::new(0.25).into());
    }
    items.extend([
        Flatten::new().into(),
        Dense::new(256).use_bias(false).into(),
        BatchNormalization::new().into(),
        Activation::new(ActivationFn::Relu).into(),
        Dropout::new(0.5).into(),
        Dense::new(10).activation(ActivationFn::Softmax).into(),
    ]);
    Sequential::new(items)
}

/// The design notes' parallel-convolution block: 1x1, 3x3 and 5x5 branches of 64
/// filters with 'same' padding, concatenated on depth.
pub fn parallel_convolution(x: &SymbolicTensor) -> SymbolicTensor {
    let a = Conv2D::new(64, (1, 1))
        .padding(Padding::Same)
        .activation(ActivationFn::Relu)
        .call(x);
    let b = Conv2D::new(64, (3, 3))
        .padding(Padding::Same)
        .activation(ActivationFn::Relu)
        .call(x);
    let c = Conv2D::new(64, (5, 5))
        .padding(Padding::Same)
        .activation(ActivationFn::Relu)
        .call(x);
    Concatenate::new().call(&[a, b, c])
}

/// The seed's Inception model on `size`x`size`x3 images (224 in the design notes).
pub fn seed_inception(size: usize) -> Result<Model> {
    let input = Input::new([size, size, 3]);
    Model::new(&input, parallel_convolution(&input))
}

/// The design notes' Sequential example: Conv2D 32 → MaxPooling2D → Flatten → Dense 10.
pub fn seed_sequential() -> Result<Model> {
    crate::sequential![
        Input::new([28, 28, 1]),
        Conv2D::new(32, (3, 3)).activation(ActivationFn::Relu),
        MaxPooling2D::new((2, 2)),
        Flatten::new(),
        Dense::new(10).activation(ActivationFn::Softmax),
    ]
}

/// A GoogLeNet-style Inception module on 28x28x32: 1x1, 1x1→3x3, 1x1→5x5 and
/// pool→1x1 branches.
pub fn inception_v1_module() -> Result<Model> {
    let x0 = Input::new([28, 28, 32]);
    let b1 = Conv2D::new(16, (1, 1))
        .activation(ActivationFn::Relu)
        .call(&x0);
    let b2 = Conv2D::new(12, (1, 1))
        .activation(ActivationFn::Relu)
        .call(&x0);
    let b2 = Conv2D::new(24, (3, 3))
        .padding(Padding::Same)
        .activation(ActivationFn::Relu)
        .call(&b2);
    let b3 = Conv2D::new(4, (1, 1))
        .activation(ActivationFn::Relu)
        .call(&x0);
    let b3 = Conv2D::new(8, (5, 5))
        .padding(Padding::Same)
        .activation(ActivationFn::Relu)
        .call(&b3);
    let b4 = MaxPooling2D::new((3, 3))
        .strides((1, 1))
        .padding(Padding::Same)
        .call(&x0);
    let b4 = Conv2D::new(8, (1, 1))
        .activation(ActivationFn::Relu)
        .call(&b4);
    let y = Concatenate::new().call(&[b1, b2, b3, b4]);
    Ok(Model::new(&x0, &y)?.named("inception_module"))
}

/// A MobileNet-style stack: strided conv, depthwise separable blocks with
/// BatchNormalization and ReLU6, global pooling, classifier, on 32x32x3.
pub fn mobilenet_block() -> Result<Model> {
    mobilenet_block_sized(32)
}

/// [`mobilenet_block`] on `size`x`size`x3 images (224 for the benchmarks' W6).
pub fn mobilenet_block_sized(size: usize) -> Result<Model> {
    let x0 = Input::new([size, size, 3]);
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
        .activation(ActivationFn::Relu)
        .call(&x);
    let x = GlobalAveragePooling2D::new().call(&x);
    let x = Dropout::new(0.2).call(&x);
    let y = Dense::new(10).activation(ActivationFn::Softmax).call(&x);
    Ok(Model::new(&x0, &y)?.named("mobilenet_block"))
}

/// A ResNet basic block with a strided 1x1 shortcut, then a small head.
pub fn resnet_block() -> Result<Model> {
    let x0 = Input::new([16, 16, 8]);
    let a = Conv2D::new(16, (3, 3))
        .strides((2, 2))
        .padding(Padding::Same)
        .call(&x0);
    let a = BatchNormalization::new().call(&a);
    let a = Activation::new(ActivationFn::Relu).call(&a);
    let a = Conv2D::new(16, (3, 3)).padding(Padding::Same).call(&a);
    let a = BatchNormalization::new().call(&a);
    let s = Conv2D::new(16, (1, 1)).strides((2, 2)).call(&x0);
    let y = Add::new().call(&[a, s]);
    let y = Activation::new(ActivationFn::Relu).call(&y);
    let y = AveragePooling2D::new((2, 2)).call(&y);
    let y = Flatten::new().call(&y);
    let y = Dense::new(4).call(&y);
    Ok(Model::new(&x0, &y)?.named("resnet_block"))
}

/// Every built-in architecture by name, as `convnet models` lists them.
pub const MODELS: &[(&str, &str)] = &[
    (
        "fmnist-cnn",
        "the reference Fashion-MNIST CNN (28x28x1, 10 classes)",
    ),
    (
        "fmnist-deep",
        "the deeper Fashion-MNIST CNN: BatchNormalization, 32 and 64 filters (28x28x1)",
    ),
    (
        "seed-inception",
        "the design notes' parallel 1x1/3x3/5x5 block on 224x224x3",
    ),
    (
        "seed-sequential",
        "the design notes' Sequential example (28x28x1)",
    ),
    (
        "inception-v1-module",
        "a GoogLeNet Inception module on 28x28x32",
    ),
    (
        "mobilenet-block",
        "a MobileNet-style depthwise separable stack on 32x32x3",
    ),
    ("resnet-block", "a ResNet basic block on 16x16x8"),
];

/// A built-in architecture by its name in [`MODELS`], with fresh weights.
pub fn by_name(name: &str) -> Result<Model> {
    match name {
        "fmnist-cnn" => fmnist_cnn(),
        "fmnist-deep" => fmnist_deep(),
        "seed-inception" => seed_inception(224),
        "seed-sequential" => seed_sequential(),
        "inception-v1-module" => inception_v1_module(),
        "mobilenet-block" => mobilenet_block(),
        "resnet-block" => resnet_block(),
        other => Err(crate::error::Error::invalid(
            "model",
            format!(
                "no built-in model '{other}' (known: {})",
                MODELS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}
