//! keras.applications' Xception (keras/src/applications/xception.py): separable
//! convolutions in an entry flow, eight middle-flow residual blocks and an exit flow.

use super::{check_classes, input, obtain_input_shape, top, Options};
use crate::activations::ActivationFn;
use crate::error::Result;
use crate::kernels::Padding;
use crate::layers::{
    Activation, Add, BatchNormalization, Conv2D, Layer, MaxPooling2D, SeparableConv2D,
};
use crate::model::{Call, Model, SymbolicTensor};

/// Xception's BatchNormalization: Keras's defaults on the last axis, `name` or
/// auto-named.
fn batch_norm(name: Option<&str>) -> BatchNormalization {
    super::named(BatchNormalization::new().axis(-1), name)
}

fn relu(name: &str) -> Activation {
    Activation::new(ActivationFn::Relu).named(name)
}

fn sepconv(filters: usize, name: &str) -> crate::layers::SeparableConv2D {
    SeparableConv2D::new(filters, (3, 3))
        .padding(Padding::Same)
        .use_bias(false)
        .named(name)
}

/// The auto-named strided 1x1 convolution and batch norm of a residual branch.
fn residual(x: &SymbolicTensor, filters: usize) -> SymbolicTensor {
    let r = Conv2D::new(filters, (1, 1))
        .strides((2, 2))
        .padding(Padding::Same)
        .use_bias(false)
        .call(x);
    batch_norm(None).call(&r)
}

/// An entry- or exit-flow block `block`: (ReLU unless `first`), separable convolution
/// of `filters.0`, BN, ReLU, separable convolution of `filters.1`, BN, a strided 3x3
/// max pooling, added to the residual branch of `filters.1`.
fn strided_block(
    x: &SymbolicTensor,
    block: usize,
    filters: (usize, usize),
    first: bool,
) -> SymbolicTensor {
    let r = residual(x, filters.1);
    let mut x = x.clone();
    if !first {
        x = relu(&format!("block{block}_sepconv1_act")).call(&x);
    }
    let x = sepconv(filters.0, &format!("block{block}_sepconv1")).call(&x);
    let x = batch_norm(Some(&format!("block{block}_sepconv1_bn"))).call(&x);
    let x = relu(&format!("block{block}_sepconv2_act")).call(&x);
    let x = sepconv(filters.1, &format!("block{block}_sepconv2")).call(&x);
    let x = batch_norm(Some(&format!("block{block}_sepconv2_bn"))).call(&x);
    let x = MaxPooling2D::new((3, 3))
        .strides((2, 2))
        .padding(Padding::Same)
        .named(&format!("block{block}_pool"))
        .call(&x);
    Add::new().call(&[x, r])
}

/// `keras.applications.Xception(weights=None, …)`: model `xception`, 22,910,480
/// parameters with the default top at 299x299x3 (at least 71x71); expects
/// [`super::PreprocessMode::Tf`] input.
pub fn xception(options: &Options) -> Result<Model> {
    check_classes(options)?;
    let shape = obtain_input_shape(options, 299, 71)?;
    let img_input = input(&shape);
    let x = Conv2D::new(32, (3, 3))
        .strides((2, 2))
        .use_bias(false)
        .named("block1_conv1")
        .call(&img_input);
    let x = batch_norm(Some("block1_conv1_bn")).call(&x);
    let x = relu("block1_conv1_act").call(&x);
    let x = Conv2D::new(64, (3, 3))
        .use_bias(false)
        .named("block1_conv2")
        .call(&x);
    let x = batch_norm(Some("block1_conv2_bn")).call(&x);
    let x = relu("block1_conv2_act").call(&x);

    let x = strided_block(&x, 2, (128, 128), true);
    let x = strided_block(&x, 3, (256, 256), false);
    let mut x = strided_block(&x, 4, (728, 728), false);

    for block in 5..=12 {
        let residual = x.clone();
        for conv in 1..=3 {
            x = relu(&format!("block{block}_sepconv{conv}_act")).call(&x);
            x = sepconv(728, &format!("block{block}_sepconv{conv}")).call(&x);
            x = batch_norm(Some(&format!("block{block}_sepconv{conv}_bn"))).call(&x);
        }
        x = Add::new().call(&[x, residual]);
    }

    let x = strided_block(&x, 13, (728, 1024), false);
    let x = sepconv(1536, "block14_sepconv1").call(&x);
    let x = batch_norm(Some("block14_sepconv1_bn")).call(&x);
    let x = relu("block14_sepconv1_act").call(&x);
    let x = sepconv(2048, "block14_sepconv2").call(&x);
    let x = batch_norm(Some("block14_sepconv2_bn")).call(&x);
    let x = relu("block14_sepconv2_act").call(&x);
    let y = top(&x, options, Some("avg_pool"), None, None);
    Ok(Model::new(&img_input, &y)?.named("xception"))
}
