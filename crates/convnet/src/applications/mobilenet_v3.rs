//! keras.applications' MobileNetV3Small and MobileNetV3Large
//! (keras/src/applications/mobilenet_v3.py): inverted residual blocks with
//! squeeze-and-excitation and hard-swish (ReLU, 3x3 kernels and no squeeze-and-excitation
//! when minimalistic), widths scaled by `alpha`, a 1x1-convolution classifier. The model
//! rescales its own input by default (a Rescaling to [-1, 1]), so it takes pixels in
//! [0, 255] ([`super::PreprocessMode::Identity`]: Keras's `mobilenet_v3.preprocess_input`
//! passes its input through).

use super::mobilenet_v2::{correct_pad, make_divisible};
use super::{check_classes, input, pooling, python_tuple, Options};
use crate::activations::ActivationFn;
use crate::error::{Error, Result};
use crate::kernels::Padding;
use crate::layers::{
    Activation, Add, BatchNormalization, Conv2D, DepthwiseConv2D, Dropout, Flatten,
    GlobalAveragePooling2D, Layer, Multiply, NumpyOp, OpKind, ReLU, Rescaling, ZeroPadding2D,
};
use crate::model::{Call, Model, SymbolicTensor};

/// MobileNetV3's arguments besides [`Options`]; [`MobileNetV3Options::default`] is
/// Keras's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MobileNetV3Options {
    /// Keras's `alpha`, the width multiplier: every block has `_depth(filters * alpha)`
    /// filters, a multiple of 8 (default 1.0). It must be positive and finite.
    pub alpha: f64,
    /// Keras's `minimalistic`: ReLU everywhere, 3x3 depthwise kernels and no
    /// squeeze-and-excitation (default false).
    pub minimalistic: bool,
    /// Keras's `dropout_rate`, the rate of the Dropout before the logits; none at 0
    /// (default 0.2).
    pub dropout_rate: f64,
    /// Keras's `include_preprocessing`: the Rescaling of [0, 255] pixels to [-1, 1] at
    /// the bottom of the network (default true); without it the model takes [-1, 1].
    pub include_preprocessing: bool,
}

impl Default for MobileNetV3Options {
    fn default() -> Self {
        MobileNetV3Options {
            alpha: 1.0,
            minimalistic: false,
            dropout_rate: 0.2,
            include_preprocessing: true,
        }
    }
}

/// Keras's `_depth(v)`: `v` rounded to a multiple of 8, as `_make_divisible`.
fn depth(v: f64) -> usize {
    make_divisible(v, 8)
}

/// The block activations: Keras's `relu` (an auto-named ReLU) and `hard_swish` (an
/// auto-named Activation `hard_silu`).
#[derive(Clone, Copy)]
enum Act {
    Relu,
    HardSwish,
}

fn activation(x: &SymbolicTensor, act: Act) -> SymbolicTensor {
    match act {
        Act::Relu => ReLU::new().call(x),
        Act::HardSwish => Activation::new(ActivationFn::HardSilu).call(x),
    }
}

/// Keras's `hard_sigmoid(x)`: `layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)`, the two
/// arithmetic steps Keras operations (`keras.src.ops.numpy` Add and Multiply).
fn hard_sigmoid(x: &SymbolicTensor) -> SymbolicTensor {
    let x = NumpyOp::with_constant(OpKind::Add, 1, 3.0).call(x);
    let x = ReLU::new().max_value(6.0).call(&x);
    NumpyOp::with_constant(OpKind::Multiply, 1, 1.0 / 6.0).call(&x)
}

fn batch_norm(name: &str) -> BatchNormalization {
    BatchNormalization::new()
        .axis(-1)
        .epsilon(1e-3)
        .momentum(0.999)
        .named(name)
}

/// Keras's `_se_block`: keep-dims average pooling, a 1x1 convolution to
/// `_depth(filters * se_ratio)`, ReLU, a 1x1 convolution back to `filters`, the hard
/// sigmoid, and the product with the block's input.
fn se_block(
    inputs: &SymbolicTensor,
    filters: usize,
    se_ratio: f64,
    prefix: &str,
) -> SymbolicTensor {
    let x = GlobalAveragePooling2D::new()
        .keepdims(true)
        .named(&format!("{prefix}squeeze_excite_avg_pool"))
        .call(inputs);
    let x = Conv2D::new(depth(filters as f64 * se_ratio), (1, 1))
        .padding(Padding::Same)
        .named(&format!("{prefix}squeeze_excite_conv"))
        .call(&x);
    let x = ReLU::new()
        .named(&format!("{prefix}squeeze_excite_relu"))
        .call(&x);
    let x = Conv2D::new(filters, (1, 1))
        .padding(Padding::Same)
        .named(&format!("{prefix}squeeze_excite_conv_1"))
        .call(&x);
    let x = hard_sigmoid(&x);
    Multiply::new()
        .named(&format!("{prefix}squeeze_excite_mul"))
        .call(&[inputs.clone(), x])
}

/// One block of a stack: Keras's `_inverted_res_block` arguments but the input.
struct Block {
    expansion: f64,
    filters: usize,
    kernel_size: usize,
    stride: usize,
    se_ratio: Option<f64>,
    activation: Act,
}

/// Keras's `_inverted_res_block`: 1x1 expansion to `_depth(in * expansion)` (not in
/// block 0), depthwise convolution (zero-padded and valid when strided), the optional
/// squeeze-and-excitation, 1x1 linear projection, and the residual Add when the shape
/// allows.
fn inverted_res_block(
    x: &SymbolicTensor,
    block: &Block,
    block_id: usize,
) -> Result<SymbolicTensor> {
    let shortcut = x.clone();
    let infilters = x.shape()?.last().copied().flatten().ok_or_else(|| {
        Error::invalid("input_shape", "MobileNetV3 needs the input channels known")
    })?;
    let expanded = depth(infilters as f64 * block.expansion);
    let mut x = x.clone();
    let prefix = if block_id > 0 {
        let prefix = format!("expanded_conv_{block_id}_");
        x = Conv2D::new(expanded, (1, 1))
            .padding(Padding::Same)
            .use_bias(false)
            .named(&format!("{prefix}expand"))
            .call(&x);
        x = batch_norm(&format!("{prefix}expand_bn")).call(&x);
        x = activation(&x, block.activation);
        prefix
    } else {
        "expanded_conv_".to_string()
    };
    if block.stride == 2 {
        x = ZeroPadding2D::new(correct_pad(&x, block.kernel_size)?)
            .named(&format!("{prefix}depthwise_pad"))
            .call(&x);
    }
    let x = DepthwiseConv2D::new((block.kernel_size, block.kernel_size))
        .strides((block.stride, block.stride))
        .padding(if block.stride == 1 {
            Padding::Same
        } else {
            Padding::Valid
        })
        .use_bias(false)
        .named(&format!("{prefix}depthwise"))
        .call(&x);
    let x = batch_norm(&format!("{prefix}depthwise_bn")).call(&x);
    let mut x = activation(&x, block.activation);
    if let Some(se_ratio) = block.se_ratio.filter(|r| *r != 0.0) {
        x = se_block(&x, expanded, se_ratio, &prefix);
    }
    let x = Conv2D::new(block.filters, (1, 1))
        .padding(Padding::Same)
        .use_bias(false)
        .named(&format!("{prefix}project"))
        .call(&x);
    let x = batch_norm(&format!("{prefix}project_bn")).call(&x);
    if block.stride == 1 && infilters == block.filters {
        return Ok(Add::new()
            .named(&format!("{prefix}add"))
            .call(&[shortcut, x]));
    }
    Ok(x)
}

/// MobileNetV3's input shape: unlike the other applications it does not use
/// `obtain_input_shape`, so the default is (None, None, 3) with the top too, and only a
/// given size under 32 is refused.
fn input_shape(options: &Options) -> Result<Vec<Option<usize>>> {
    match options.input_shape.as_deref() {
        None => Ok(vec![None, None, Some(3)]),
        Some(&[rows, cols, channels]) => {
            if rows < 32 || cols < 32 {
                return Err(Error::invalid(
                    "input_shape",
                    format!(
                        "Input size must be at least 32x32; Received `input_shape={}`",
                        python_tuple(&[rows, cols, channels])
                    ),
                ));
            }
            if channels == 0 {
                return Err(Error::invalid(
                    "input_shape",
                    format!(
                        "The input must have at least 1 channel; Received: input_shape={}",
                        python_tuple(&[rows, cols, channels])
                    ),
                ));
            }
            Ok(vec![Some(rows), Some(cols), Some(channels)])
        }
        Some(shape) => Err(Error::invalid(
            "input_shape",
            format!(
                "`input_shape` must be a tuple of three integers; Received: input_shape={}",
                python_tuple(shape)
            ),
        )),
    }
}

/// (expansion, filters before alpha, kernel, stride, squeeze-and-excitation,
/// activation) of each block; `None` kernel and activation are the model's (5 and
/// hard-swish, or 3 and ReLU when minimalistic), `true` squeeze-and-excitation is the
/// model's (0.25, or none when minimalistic).
type BlockSpec = (f64, f64, Option<usize>, usize, bool, Option<Act>);

const SMALL: [BlockSpec; 11] = [
    (1.0, 16.0, Some(3), 2, true, Some(Act::Relu)),
    (72.0 / 16.0, 24.0, Some(3), 2, false, Some(Act::Relu)),
    (88.0 / 24.0, 24.0, Some(3), 1, false, Some(Act::Relu)),
    (4.0, 40.0, None, 2, true, None),
    (6.0, 40.0, None, 1, true, None),
    (6.0, 40.0, None, 1, true, None),
    (3.0, 48.0, None, 1, true, None),
    (3.0, 48.0, None, 1, true, None),
    (6.0, 96.0, None, 2, true, None),
    (6.0, 96.0, None, 1, true, None),
    (6.0, 96.0, None, 1, true, None),
];

const LARGE: [BlockSpec; 15] = [
    (1.0, 16.0, Some(3), 1, false, Some(Act::Relu)),
    (4.0, 24.0, Some(3), 2, false, Some(Act::Relu)),
    (3.0, 24.0, Some(3), 1, false, Some(Act::Relu)),
    (3.0, 40.0, None, 2, true, Some(Act::Relu)),
    (3.0, 40.0, None, 1, true, Some(Act::Relu)),
    (3.0, 40.0, None, 1, true, Some(Act::Relu)),
    (6.0, 80.0, Some(3), 2, false, None),
    (2.5, 80.0, Some(3), 1, false, None),
    (2.3, 80.0, Some(3), 1, false, None),
    (2.3, 80.0, Some(3), 1, false, None),
    (6.0, 112.0, Some(3), 1, true, None),
    (6.0, 112.0, Some(3), 1, true, None),
    (6.0, 160.0, None, 2, true, None),
    (6.0, 160.0, None, 1, true, None),
    (6.0, 160.0, None, 1, true, None),
];

/// Keras's `MobileNetV3(stack_fn, last_point_ch, …)` for weights `None`.
fn mobilenet_v3(
    options: &Options,
    args: &MobileNetV3Options,
    stack: &[BlockSpec],
    last_point_ch: usize,
    name: &str,
) -> Result<Model> {
    if !args.alpha.is_finite() || args.alpha <= 0.0 {
        return Err(Error::invalid(
            "alpha",
            format!(
                "`alpha` must be a positive finite number (the width multiplier); \
                 Received: alpha={}",
                args.alpha
            ),
        ));
    }
    if !(0.0..=1.0).contains(&args.dropout_rate) {
        return Err(Error::invalid(
            "dropout_rate",
            format!(
                "`dropout_rate` must be a rate in [0, 1]; Received: dropout_rate={}",
                args.dropout_rate
            ),
        ));
    }
    check_classes(options)?;
    let shape = input_shape(options)?;
    let img_input = input(&shape);
    let (kernel, model_activation, se_ratio) = if args.minimalistic {
        (3, Act::Relu, None)
    } else {
        (5, Act::HardSwish, Some(0.25))
    };

    let mut x = img_input.clone();
    if args.include_preprocessing {
        x = Rescaling::new(1.0 / 127.5, -1.0).call(&x);
    }
    let x = Conv2D::new(16, (3, 3))
        .strides((2, 2))
        .padding(Padding::Same)
        .use_bias(false)
        .named("conv")
        .call(&x);
    let x = batch_norm("conv_bn").call(&x);
    let mut x = activation(&x, model_activation);
    for (block_id, &(expansion, filters, kernel_size, stride, se, act)) in stack.iter().enumerate()
    {
        let block = Block {
            expansion,
            filters: depth(filters * args.alpha),
            kernel_size: kernel_size.unwrap_or(kernel),
            stride,
            se_ratio: if se { se_ratio } else { None },
            activation: act.unwrap_or(model_activation),
        };
        x = inverted_res_block(&x, &block, block_id)?;
    }
    let channels = x.shape()?.last().copied().flatten().unwrap_or(0);
    let last_conv_ch = depth((channels * 6) as f64);
    // Only a width multiplier above 1 widens the last point-wise convolution.
    let last_point_ch = if args.alpha > 1.0 {
        depth(last_point_ch as f64 * args.alpha)
    } else {
        last_point_ch
    };
    let x = Conv2D::new(last_conv_ch, (1, 1))
        .padding(Padding::Same)
        .use_bias(false)
        .named("conv_1")
        .call(&x);
    let x = batch_norm("conv_1_bn").call(&x);
    let x = activation(&x, model_activation);
    let y = if options.include_top {
        let x = GlobalAveragePooling2D::new().keepdims(true).call(&x);
        let x = Conv2D::new(last_point_ch, (1, 1))
            .padding(Padding::Same)
            .named("conv_2")
            .call(&x);
        let mut x = activation(&x, model_activation);
        if args.dropout_rate > 0.0 {
            x = Dropout::new(args.dropout_rate).call(&x);
        }
        let x = Conv2D::new(options.classes, (1, 1))
            .padding(Padding::Same)
            .named("logits")
            .call(&x);
        let x = Flatten::new().call(&x);
        Activation::new(options.classifier_activation)
            .named("predictions")
            .call(&x)
    } else {
        pooling(&x, options, Some("avg_pool"), Some("max_pool"))
    };
    Ok(Model::new(&img_input, &y)?.named(name))
}

/// `keras.applications.MobileNetV3Small(weights=None, alpha=…, minimalistic=…,
/// dropout_rate=…, include_preprocessing=…, …)`: model `MobileNetV3Small`, 2,554,968
/// parameters with the default top; expects [`super::PreprocessMode::Identity`] input
/// (pixels in [0, 255]; [-1, 1] without `include_preprocessing`). As in Keras, the
/// default input shape is (None, None, 3) even with the top.
pub fn mobilenet_v3_small(options: &Options, args: &MobileNetV3Options) -> Result<Model> {
    mobilenet_v3(options, args, &SMALL, 1024, "MobileNetV3Small")
}

/// `keras.applications.MobileNetV3Large(weights=None, alpha=…, minimalistic=…,
/// dropout_rate=…, include_preprocessing=…, …)`: model `MobileNetV3Large`, 5,507,432
/// parameters with the default top; expects [`super::PreprocessMode::Identity`] input
/// (pixels in [0, 255]; [-1, 1] without `include_preprocessing`). As in Keras, the
/// default input shape is (None, None, 3) even with the top.
pub fn mobilenet_v3_large(options: &Options, args: &MobileNetV3Options) -> Result<Model> {
    mobilenet_v3(options, args, &LARGE, 1280, "MobileNetV3Large")
}
