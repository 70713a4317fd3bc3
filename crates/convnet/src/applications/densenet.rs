//! keras.applications' DenseNet family (keras/src/applications/densenet.py): dense
//! blocks, each layer's 32 new channels concatenated to all before, and transition
//! blocks halving channels and size.

use super::{check_classes, input, obtain_input_shape, top, Options};
use crate::activations::ActivationFn;
use crate::error::{Error, Result};
use crate::kernels::Padding;
use crate::layers::{
    Activation, AveragePooling2D, BatchNormalization, Concatenate, Conv2D, Layer, MaxPooling2D,
    ZeroPadding2D,
};
use crate::model::{Call, Model, SymbolicTensor};

fn batch_norm(name: &str) -> BatchNormalization {
    BatchNormalization::new()
        .axis(3)
        .epsilon(1.001e-5)
        .named(name)
}

fn relu(name: &str) -> Activation {
    Activation::new(ActivationFn::Relu).named(name)
}

/// Keras's `conv_block`: BN, ReLU, 1x1 convolution of 4 × `growth_rate`, BN, ReLU,
/// 3x3 convolution of `growth_rate`, concatenated to the input.
fn conv_block(x: &SymbolicTensor, growth_rate: usize, name: &str) -> SymbolicTensor {
    let x1 = batch_norm(&format!("{name}_0_bn")).call(x);
    let x1 = relu(&format!("{name}_0_relu")).call(&x1);
    let x1 = Conv2D::new(4 * growth_rate, (1, 1))
        .use_bias(false)
        .named(&format!("{name}_1_conv"))
        .call(&x1);
    let x1 = batch_norm(&format!("{name}_1_bn")).call(&x1);
    let x1 = relu(&format!("{name}_1_relu")).call(&x1);
    let x1 = Conv2D::new(growth_rate, (3, 3))
        .padding(Padding::Same)
        .use_bias(false)
        .named(&format!("{name}_2_conv"))
        .call(&x1);
    Concatenate::new()
        .axis(3)
        .named(&format!("{name}_concat"))
        .call(&[x.clone(), x1])
}

fn dense_block(mut x: SymbolicTensor, blocks: usize, name: &str) -> SymbolicTensor {
    for i in 1..=blocks {
        x = conv_block(&x, 32, &format!("{name}_block{i}"));
    }
    x
}

/// Keras's `transition_block`: BN, ReLU, 1x1 convolution to `int(channels * 0.5)`,
/// 2x2 average pooling.
fn transition_block(x: &SymbolicTensor, name: &str) -> Result<SymbolicTensor> {
    let x = batch_norm(&format!("{name}_bn")).call(x);
    let x = relu(&format!("{name}_relu")).call(&x);
    let channels = x.shape()?[3]
        .ok_or_else(|| Error::invalid("input_shape", "DenseNet needs the input channels known"))?;
    let x = Conv2D::new((channels as f64 * 0.5).trunc() as usize, (1, 1))
        .use_bias(false)
        .named(&format!("{name}_conv"))
        .call(&x);
    Ok(AveragePooling2D::new((2, 2))
        .strides((2, 2))
        .named(&format!("{name}_pool"))
        .call(&x))
}

/// Keras's `DenseNet(blocks, …)`.
fn densenet(options: &Options, name: &str, blocks: [usize; 4]) -> Result<Model> {
    check_classes(options)?;
    let shape = obtain_input_shape(options, 224, 32)?;
    let img_input = input(&shape);
    let x = ZeroPadding2D::new([[3, 3], [3, 3]]).call(&img_input);
    let x = Conv2D::new(64, (7, 7))
        .strides((2, 2))
        .use_bias(false)
        .named("conv1_conv")
        .call(&x);
    let x = batch_norm("conv1_bn").call(&x);
    let x = relu("conv1_relu").call(&x);
    let x = ZeroPadding2D::new([[1, 1], [1, 1]]).call(&x);
    let x = MaxPooling2D::new((3, 3))
        .strides((2, 2))
        .named("pool1")
        .call(&x);
    let x = dense_block(x, blocks[0], "conv2");
    let x = transition_block(&x, "pool2")?;
    let x = dense_block(x, blocks[1], "conv3");
    let x = transition_block(&x, "pool3")?;
    let x = dense_block(x, blocks[2], "conv4");
    let x = transition_block(&x, "pool4")?;
    let x = dense_block(x, blocks[3], "conv5");
    let x = batch_norm("bn").call(&x);
    let x = relu("relu").call(&x);
    let y = top(
        &x,
        options,
        Some("avg_pool"),
        Some("avg_pool"),
        Some("max_pool"),
    );
    Ok(Model::new(&img_input, &y)?.named(name))
}

/// `keras.applications.DenseNet121(weights=None, …)`: model `densenet121`, 8,062,504
/// parameters with the default top; expects [`super::PreprocessMode::Torch`] input.
pub fn densenet121(options: &Options) -> Result<Model> {
    densenet(options, "densenet121", [6, 12, 24, 16])
}

/// `keras.applications.DenseNet169(weights=None, …)`: model `densenet169`, 14,307,880
/// parameters with the default top; expects [`super::PreprocessMode::Torch`] input.
pub fn densenet169(options: &Options) -> Result<Model> {
    densenet(options, "densenet169", [6, 12, 32, 32])
}

/// `keras.applications.DenseNet201(weights=None, …)`: model `densenet201`, 20,242,984
/// parameters with the default top; expects [`super::PreprocessMode::Torch`] input.
pub fn densenet201(options: &Options) -> Result<Model> {
    densenet(options, "densenet201", [6, 12, 48, 32])
}
