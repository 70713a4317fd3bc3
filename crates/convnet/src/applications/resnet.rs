//! keras.applications' ResNet family (keras/src/applications/resnet.py and
//! resnet_v2.py): ResNet50, 101 and 152 (bottleneck blocks, post-activation) and their V2
//! (pre-activation) forms.

use super::{check_classes, input, obtain_input_shape, top, Options};
use crate::activations::ActivationFn;
use crate::error::Result;
use crate::kernels::Padding;
use crate::layers::{
    Activation, Add, BatchNormalization, Conv2D, Layer, MaxPooling2D, ZeroPadding2D,
};
use crate::model::{Call, Model, SymbolicTensor};

/// Keras's `bn_axis` for channels-last data and the epsilon every ResNet uses.
fn batch_norm(name: &str) -> BatchNormalization {
    BatchNormalization::new()
        .axis(3)
        .epsilon(1.001e-5)
        .named(name)
}

fn relu(name: &str) -> Activation {
    Activation::new(ActivationFn::Relu).named(name)
}

/// Keras's `ResNet(stack_fn, preact, use_bias, …)`: the stem, the stacks, the top.
fn resnet(
    options: &Options,
    name: &str,
    preact: bool,
    stack: impl FnOnce(SymbolicTensor) -> SymbolicTensor,
) -> Result<Model> {
    check_classes(options)?;
    let shape = obtain_input_shape(options, 224, 32)?;
    let img_input = input(&shape);
    let x = ZeroPadding2D::new([[3, 3], [3, 3]])
        .named("conv1_pad")
        .call(&img_input);
    let mut x = Conv2D::new(64, (7, 7))
        .strides((2, 2))
        .named("conv1_conv")
        .call(&x);
    if !preact {
        x = batch_norm("conv1_bn").call(&x);
        x = relu("conv1_relu").call(&x);
    }
    let x = ZeroPadding2D::new([[1, 1], [1, 1]])
        .named("pool1_pad")
        .call(&x);
    let x = MaxPooling2D::new((3, 3))
        .strides((2, 2))
        .named("pool1_pool")
        .call(&x);
    let mut x = stack(x);
    if preact {
        x = batch_norm("post_bn").call(&x);
        x = relu("post_relu").call(&x);
    }
    let y = top(
        &x,
        options,
        Some("avg_pool"),
        Some("avg_pool"),
        Some("max_pool"),
    );
    Ok(Model::new(&img_input, &y)?.named(name))
}

/// Keras's `residual_block_v1`: 1x1, 3x3, 1x1 convolutions, each batch-normalised, added
/// to the shortcut (a 1x1 convolution when `conv_shortcut`), then ReLU.
fn residual_block_v1(
    x: &SymbolicTensor,
    filters: usize,
    stride: usize,
    conv_shortcut: bool,
    name: &str,
) -> SymbolicTensor {
    let shortcut = if conv_shortcut {
        let s = Conv2D::new(4 * filters, (1, 1))
            .strides((stride, stride))
            .named(&format!("{name}_0_conv"))
            .call(x);
        batch_norm(&format!("{name}_0_bn")).call(&s)
    } else {
        x.clone()
    };
    let x = Conv2D::new(filters, (1, 1))
        .strides((stride, stride))
        .named(&format!("{name}_1_conv"))
        .call(x);
    let x = batch_norm(&format!("{name}_1_bn")).call(&x);
    let x = relu(&format!("{name}_1_relu")).call(&x);
    let x = Conv2D::new(filters, (3, 3))
        .padding(Padding::Same)
        .named(&format!("{name}_2_conv"))
        .call(&x);
    let x = batch_norm(&format!("{name}_2_bn")).call(&x);
    let x = relu(&format!("{name}_2_relu")).call(&x);
    let x = Conv2D::new(4 * filters, (1, 1))
        .named(&format!("{name}_3_conv"))
        .call(&x);
    let x = batch_norm(&format!("{name}_3_bn")).call(&x);
    let x = Add::new()
        .named(&format!("{name}_add"))
        .call(&[shortcut, x]);
    relu(&format!("{name}_out")).call(&x)
}

/// Keras's `stack_residual_blocks_v1`: `blocks` blocks, the first with a convolution
/// shortcut and stride `stride1`.
fn stack_v1(
    x: SymbolicTensor,
    filters: usize,
    blocks: usize,
    stride1: usize,
    name: &str,
) -> SymbolicTensor {
    let mut x = residual_block_v1(&x, filters, stride1, true, &format!("{name}_block1"));
    for i in 2..=blocks {
        x = residual_block_v1(&x, filters, 1, false, &format!("{name}_block{i}"));
    }
    x
}

/// Keras's `residual_block_v2`: batch norm and ReLU first, then 1x1, padded 3x3 (strided)
/// and 1x1 convolutions added to the shortcut (a 1x1 convolution of the pre-activation
/// when `conv_shortcut`, else the input, max-pooled 1x1 when strided).
fn residual_block_v2(
    x: &SymbolicTensor,
    filters: usize,
    stride: usize,
    conv_shortcut: bool,
    name: &str,
) -> SymbolicTensor {
    let preact = batch_norm(&format!("{name}_preact_bn")).call(x);
    let preact = relu(&format!("{name}_preact_relu")).call(&preact);
    let shortcut = if conv_shortcut {
        Conv2D::new(4 * filters, (1, 1))
            .strides((stride, stride))
            .named(&format!("{name}_0_conv"))
            .call(&preact)
    } else if stride > 1 {
        // Unnamed in Keras: `max_pooling2d`, `max_pooling2d_1`, …
        MaxPooling2D::new((1, 1)).strides((stride, stride)).call(x)
    } else {
        x.clone()
    };
    let x = Conv2D::new(filters, (1, 1))
        .use_bias(false)
        .named(&format!("{name}_1_conv"))
        .call(&preact);
    let x = batch_norm(&format!("{name}_1_bn")).call(&x);
    let x = relu(&format!("{name}_1_relu")).call(&x);
    let x = ZeroPadding2D::new([[1, 1], [1, 1]])
        .named(&format!("{name}_2_pad"))
        .call(&x);
    let x = Conv2D::new(filters, (3, 3))
        .strides((stride, stride))
        .use_bias(false)
        .named(&format!("{name}_2_conv"))
        .call(&x);
    let x = batch_norm(&format!("{name}_2_bn")).call(&x);
    let x = relu(&format!("{name}_2_relu")).call(&x);
    let x = Conv2D::new(4 * filters, (1, 1))
        .named(&format!("{name}_3_conv"))
        .call(&x);
    Add::new()
        .named(&format!("{name}_out"))
        .call(&[shortcut, x])
}

/// Keras's `stack_residual_blocks_v2`: a convolution-shortcut block, identity blocks,
/// and a last block of stride `stride1`.
fn stack_v2(
    x: SymbolicTensor,
    filters: usize,
    blocks: usize,
    stride1: usize,
    name: &str,
) -> SymbolicTensor {
    let mut x = residual_block_v2(&x, filters, 1, true, &format!("{name}_block1"));
    for i in 2..blocks {
        x = residual_block_v2(&x, filters, 1, false, &format!("{name}_block{i}"));
    }
    residual_block_v2(
        &x,
        filters,
        stride1,
        false,
        &format!("{name}_block{blocks}"),
    )
}

/// A V1 ResNet of `blocks` per stack (conv2 to conv5).
fn resnet_v1(options: &Options, name: &str, blocks: [usize; 4]) -> Result<Model> {
    resnet(options, name, false, |x| {
        let x = stack_v1(x, 64, blocks[0], 1, "conv2");
        let x = stack_v1(x, 128, blocks[1], 2, "conv3");
        let x = stack_v1(x, 256, blocks[2], 2, "conv4");
        stack_v1(x, 512, blocks[3], 2, "conv5")
    })
}

/// A V2 ResNet of `blocks` per stack (conv2 to conv5).
fn resnet_v2(options: &Options, name: &str, blocks: [usize; 4]) -> Result<Model> {
    resnet(options, name, true, |x| {
        let x = stack_v2(x, 64, blocks[0], 2, "conv2");
        let x = stack_v2(x, 128, blocks[1], 2, "conv3");
        let x = stack_v2(x, 256, blocks[2], 2, "conv4");
        stack_v2(x, 512, blocks[3], 1, "conv5")
    })
}

/// `keras.applications.ResNet50(weights=None, …)`: model `resnet50`, 25,636,712
/// parameters with the default top at 224x224x3; expects [`super::PreprocessMode::Caffe`]
/// input.
pub fn resnet50(options: &Options) -> Result<Model> {
    resnet_v1(options, "resnet50", [3, 4, 6, 3])
}

/// `keras.applications.ResNet101(weights=None, …)`: model `resnet101`.
pub fn resnet101(options: &Options) -> Result<Model> {
    resnet_v1(options, "resnet101", [3, 4, 23, 3])
}

/// `keras.applications.ResNet152(weights=None, …)`: model `resnet152`.
pub fn resnet152(options: &Options) -> Result<Model> {
    resnet_v1(options, "resnet152", [3, 8, 36, 3])
}

/// `keras.applications.ResNet50V2(weights=None, …)`: model `resnet50v2`; expects
/// [`super::PreprocessMode::Tf`] input.
pub fn resnet50_v2(options: &Options) -> Result<Model> {
    resnet_v2(options, "resnet50v2", [3, 4, 6, 3])
}

/// `keras.applications.ResNet101V2(weights=None, …)`: model `resnet101v2`.
pub fn resnet101_v2(options: &Options) -> Result<Model> {
    resnet_v2(options, "resnet101v2", [3, 4, 23, 3])
}

/// `keras.applications.ResNet152V2(weights=None, …)`: model `resnet152v2`.
pub fn resnet152_v2(options: &Options) -> Result<Model> {
    resnet_v2(options, "resnet152v2", [3, 8, 36, 3])
}
