//! keras.applications' EfficientNetV2 B0 to B3, S, M and L
//! (keras/src/applications/efficientnet_v2.py): a stem, stages of Fused-MBConv blocks
//! (one full convolution in place of the expansion and depthwise convolutions) then of
//! MBConv blocks with squeeze-and-excitation, and a 1x1 top convolution. Unlike
//! EfficientNet (V1) every convolution pads `same` (no ZeroPadding2D), the
//! BatchNormalizations have momentum 0.9, and the stochastic-depth rate grows with the
//! block's index over the unscaled number of blocks. With `include_preprocessing` (Keras's
//! default) the model rescales its own input, so it takes pixels in [0, 255]
//! ([`super::PreprocessMode::Identity`]).

use super::efficientnet::{conv_initializer, dense_initializer, pointwise, swish};
use super::{check_classes, input, obtain_input_shape, pooling, Options};
use crate::error::Result;
use crate::initializers::Initializer;
use crate::kernels::Padding;
use crate::layers::{
    Add, Axes, BatchNormalization, Conv2D, Dense, DepthwiseConv2D, Dropout, GlobalAveragePooling2D,
    Layer, Normalization, Rescaling,
};
use crate::model::{Call, Model, SymbolicTensor};
use serde_json::json;

/// One stage of Keras's `DEFAULT_BLOCKS_ARGS`: `fused` is its `conv_type` 1
/// (FusedMBConvBlock), otherwise MBConvBlock.
struct Stage {
    kernel_size: usize,
    repeats: usize,
    filters_in: usize,
    filters_out: usize,
    expand_ratio: usize,
    se_ratio: f64,
    strides: usize,
    fused: bool,
}

const fn stage(
    fused: bool,
    repeats: usize,
    filters_in: usize,
    filters_out: usize,
    expand_ratio: usize,
    se_ratio: f64,
    strides: usize,
) -> Stage {
    Stage {
        kernel_size: 3,
        repeats,
        filters_in,
        filters_out,
        expand_ratio,
        se_ratio,
        strides,
        fused,
    }
}

/// `efficientnetv2-b0` to `-b3`, which Keras gives the same table (every kernel 3x3).
const STAGES_B: [Stage; 6] = [
    stage(true, 1, 32, 16, 1, 0.0, 1),
    stage(true, 2, 16, 32, 4, 0.0, 2),
    stage(true, 2, 32, 48, 4, 0.0, 2),
    stage(false, 3, 48, 96, 4, 0.25, 2),
    stage(false, 5, 96, 112, 6, 0.25, 1),
    stage(false, 8, 112, 192, 6, 0.25, 2),
];

/// `efficientnetv2-s`.
const STAGES_S: [Stage; 6] = [
    stage(true, 2, 24, 24, 1, 0.0, 1),
    stage(true, 4, 24, 48, 4, 0.0, 2),
    stage(true, 4, 48, 64, 4, 0.0, 2),
    stage(false, 6, 64, 128, 4, 0.25, 2),
    stage(false, 9, 128, 160, 6, 0.25, 1),
    stage(false, 15, 160, 256, 6, 0.25, 2),
];

/// `efficientnetv2-m`.
const STAGES_M: [Stage; 7] = [
    stage(true, 3, 24, 24, 1, 0.0, 1),
    stage(true, 5, 24, 48, 4, 0.0, 2),
    stage(true, 5, 48, 80, 4, 0.0, 2),
    stage(false, 7, 80, 160, 4, 0.25, 2),
    stage(false, 14, 160, 176, 6, 0.25, 1),
    stage(false, 18, 176, 304, 6, 0.25, 2),
    stage(false, 5, 304, 512, 6, 0.25, 1),
];

/// `efficientnetv2-l`.
const STAGES_L: [Stage; 7] = [
    stage(true, 4, 32, 32, 1, 0.0, 1),
    stage(true, 7, 32, 64, 4, 0.0, 2),
    stage(true, 7, 64, 96, 4, 0.0, 2),
    stage(false, 10, 96, 192, 4, 0.25, 2),
    stage(false, 19, 192, 224, 6, 0.25, 1),
    stage(false, 25, 224, 384, 6, 0.25, 2),
    stage(false, 7, 384, 640, 6, 0.25, 1),
];

const DROP_CONNECT_RATE: f64 = 0.2;
const DROPOUT_RATE: f64 = 0.2;
const BN_MOMENTUM: f64 = 0.9;

/// Keras's `round_filters` with depth divisor and minimum depth 8: `filters ·
/// width_coefficient` rounded to the nearest multiple of 8 (halves up), at least 8.
/// Unlike V1's `make_divisible` it never rounds up to stay within 10%.
fn round_filters(filters: usize, width_coefficient: f64) -> usize {
    ((filters as f64 * width_coefficient + 4.0) as usize / 8 * 8).max(8)
}

/// Keras's `round_repeats`: `ceil(depth_coefficient · repeats)`.
fn round_repeats(repeats: usize, depth_coefficient: f64) -> usize {
    (depth_coefficient * repeats as f64).ceil() as usize
}

fn batch_norm(name: &str) -> BatchNormalization {
    BatchNormalization::new()
        .axis(3)
        .momentum(BN_MOMENTUM)
        .named(name)
}

/// A bias-free `same` convolution with the conv initializer.
fn conv(filters: usize, kernel_size: usize, strides: usize, name: &str) -> Conv2D {
    Conv2D::new(filters, (kernel_size, kernel_size))
        .strides((strides, strides))
        .padding(Padding::Same)
        .use_bias(false)
        .kernel_initializer(conv_initializer())
        .named(name)
}

/// The arguments of one block, as Keras's `EfficientNetV2` passes them.
struct BlockArgs {
    filters_in: usize,
    filters_out: usize,
    kernel_size: usize,
    strides: usize,
    expand_ratio: usize,
    se_ratio: f64,
    /// Keras's misnamed `survival_probability`: the residual Dropout's rate.
    drop_rate: f64,
}

/// The squeeze-and-excitation both blocks share, when `0 < se_ratio <= 1`: global
/// pooling, a swish 1x1 reduction to `filters_in · se_ratio` (at least 1), a sigmoid 1x1
/// expansion back to `filters`, multiplied into `x`.
fn squeeze_excite(
    x: SymbolicTensor,
    filters: usize,
    args: &BlockArgs,
    name: &str,
) -> SymbolicTensor {
    if !(args.se_ratio > 0.0 && args.se_ratio <= 1.0) {
        return x;
    }
    let filters_se = 1.max((args.filters_in as f64 * args.se_ratio).trunc() as usize);
    super::efficientnet::squeeze_excite(x, filters, filters_se, name)
}

/// The residual both blocks end with when the shape allows it: a per-sample Dropout of
/// `drop_rate` (none at rate 0) and the Add.
fn residual(
    x: SymbolicTensor,
    inputs: &SymbolicTensor,
    args: &BlockArgs,
    name: &str,
) -> SymbolicTensor {
    if args.strides != 1 || args.filters_in != args.filters_out {
        return x;
    }
    let mut x = x;
    if args.drop_rate != 0.0 {
        let mut drop = Dropout::new(args.drop_rate).named(&format!("{name}drop"));
        drop.noise_shape = Some(vec![None, Some(1), Some(1), Some(1)]);
        x = drop.call(&x);
    }
    Add::new()
        .named(&format!("{name}add"))
        .call(&[x, inputs.clone()])
}

/// Keras's `MBConvBlock`: 1x1 expansion (unless `expand_ratio` is 1), `same` depthwise
/// convolution `dwconv2`, squeeze-and-excitation, 1x1 projection, residual.
fn mb_conv_block(inputs: &SymbolicTensor, args: &BlockArgs, name: &str) -> SymbolicTensor {
    let filters = args.filters_in * args.expand_ratio;
    let mut x = inputs.clone();
    if args.expand_ratio != 1 {
        x = pointwise(filters, &format!("{name}expand_conv")).call(&x);
        x = batch_norm(&format!("{name}expand_bn")).call(&x);
        x = swish(&format!("{name}expand_activation")).call(&x);
    }
    let mut dwconv = DepthwiseConv2D::new((args.kernel_size, args.kernel_size))
        .strides((args.strides, args.strides))
        .padding(Padding::Same)
        .use_bias(false)
        .named(&format!("{name}dwconv2"));
    dwconv.depthwise_initializer = conv_initializer();
    let x = dwconv.call(&x);
    let x = batch_norm(&format!("{name}bn")).call(&x);
    let x = swish(&format!("{name}activation")).call(&x);
    let x = squeeze_excite(x, filters, args, name);
    let x = pointwise(args.filters_out, &format!("{name}project_conv")).call(&x);
    let x = batch_norm(&format!("{name}project_bn")).call(&x);
    residual(x, inputs, args, name)
}

/// Keras's `FusedMBConvBlock`: the expansion is one strided `kernel_size` convolution
/// (unless `expand_ratio` is 1), then squeeze-and-excitation and a 1x1 projection; with
/// `expand_ratio` 1 the projection itself is the strided `kernel_size` convolution,
/// followed by a swish `project_activation`. Then the residual.
fn fused_mb_conv_block(inputs: &SymbolicTensor, args: &BlockArgs, name: &str) -> SymbolicTensor {
    let filters = args.filters_in * args.expand_ratio;
    let mut x = inputs.clone();
    if args.expand_ratio != 1 {
        x = conv(
            filters,
            args.kernel_size,
            args.strides,
            &format!("{name}expand_conv"),
        )
        .call(&x);
        x = batch_norm(&format!("{name}expand_bn")).call(&x);
        x = swish(&format!("{name}expand_activation")).call(&x);
    }
    let x = squeeze_excite(x, filters, args, name);
    let (kernel_size, strides) = if args.expand_ratio != 1 {
        (1, 1)
    } else {
        (args.kernel_size, args.strides)
    };
    let x = conv(
        args.filters_out,
        kernel_size,
        strides,
        &format!("{name}project_conv"),
    )
    .call(&x);
    let mut x = batch_norm(&format!("{name}project_bn")).call(&x);
    if args.expand_ratio == 1 {
        x = swish(&format!("{name}project_activation")).call(&x);
    }
    residual(x, inputs, args, name)
}

/// Keras's `EfficientNetV2(width_coefficient, depth_coefficient, default_size, …)` with
/// its defaults: top dropout 0.2, drop-connect rate 0.2, depth divisor and minimum depth
/// 8, momentum 0.9, swish.
fn efficientnet_v2(
    options: &Options,
    include_preprocessing: bool,
    name: &str,
    stages: &[Stage],
    width_coefficient: f64,
    depth_coefficient: f64,
    default_size: usize,
) -> Result<Model> {
    check_classes(options)?;
    let shape = obtain_input_shape(options, default_size, 32)?;
    let img_input = input(&shape);
    let mut x = img_input.clone();
    if include_preprocessing {
        // Keras: "Apply original V1 preprocessing for Bx variants if number of channels
        // allows it".
        let b_variant = name.rsplit('-').next().is_some_and(|v| v.starts_with('b'));
        if b_variant && shape[2] == Some(3) {
            x = Rescaling::new(1.0 / 255.0, 0.0).call(&x);
            let variance = [0.229f64, 0.224, 0.225].map(|s| s * s).to_vec();
            x = Normalization::with_statistics(vec![0.485, 0.456, 0.406], variance)
                .axis(Axes::Many(vec![3]))
                .call(&x);
        } else {
            let mut rescaling = Rescaling::new(1.0 / 128.0, 0.0);
            // Keras passes the Python int `offset=-1`, and writes it back as such.
            rescaling.offset = serde_json::from_value(json!(-1)).expect("a valid offset");
            x = rescaling.call(&x);
        }
    }

    let x = conv(
        round_filters(stages[0].filters_in, width_coefficient),
        3,
        2,
        "stem_conv",
    )
    .call(&x);
    let x = batch_norm("stem_bn").call(&x);
    let mut x = swish("stem_activation").call(&x);

    // Keras divides by the number of blocks before depth scaling.
    let blocks = stages.iter().map(|s| s.repeats).sum::<usize>() as f64;
    let mut b = 0usize;
    for (i, stage) in stages.iter().enumerate() {
        let mut args = BlockArgs {
            filters_in: round_filters(stage.filters_in, width_coefficient),
            filters_out: round_filters(stage.filters_out, width_coefficient),
            kernel_size: stage.kernel_size,
            strides: stage.strides,
            expand_ratio: stage.expand_ratio,
            se_ratio: stage.se_ratio,
            drop_rate: 0.0,
        };
        for j in 0..round_repeats(stage.repeats, depth_coefficient) {
            if j > 0 {
                args.strides = 1;
                args.filters_in = args.filters_out;
            }
            // Python's `drop_connect_rate * b / blocks`, left to right.
            args.drop_rate = DROP_CONNECT_RATE * b as f64 / blocks;
            let letter = char::from(b'a' + j as u8);
            let block_name = format!("block{}{letter}_", i + 1);
            x = if stage.fused {
                fused_mb_conv_block(&x, &args, &block_name)
            } else {
                mb_conv_block(&x, &args, &block_name)
            };
            b += 1;
        }
    }

    let x = pointwise(round_filters(1280, width_coefficient), "top_conv").call(&x);
    let x = batch_norm("top_bn").call(&x);
    let x = swish("top_activation").call(&x);
    let y = if options.include_top {
        let x = GlobalAveragePooling2D::new().named("avg_pool").call(&x);
        let x = Dropout::new(DROPOUT_RATE).named("top_dropout").call(&x);
        let mut dense = Dense::new(options.classes)
            .activation(options.classifier_activation)
            .kernel_initializer(dense_initializer())
            .named("predictions");
        dense.bias_initializer = Initializer::new("constant").expect("a built-in initializer");
        dense.call(&x)
    } else {
        pooling(&x, options, Some("avg_pool"), Some("max_pool"))
    };
    Ok(Model::new(&img_input, &y)?.named(name))
}

/// `keras.applications.EfficientNetV2B0(weights=None, include_preprocessing=…, …)`:
/// model `efficientnetv2-b0`, 7,200,312 parameters with the default top at 224x224x3.
/// With `include_preprocessing` (Keras's default) and 3 channels the model rescales by
/// 1/255 and normalises by the ImageNet mean and variance itself (a Normalization with
/// fixed statistics, no weights), so it takes pixels in [0, 255]
/// ([`super::PreprocessMode::Identity`]); with other channel counts it rescales to
/// [-1, 1] (`x / 128 - 1`). Without it the model expects inputs in [-1, 1].
pub fn efficientnet_v2_b0(options: &Options, include_preprocessing: bool) -> Result<Model> {
    efficientnet_v2(
        options,
        include_preprocessing,
        "efficientnetv2-b0",
        &STAGES_B,
        1.0,
        1.0,
        224,
    )
}

/// `keras.applications.EfficientNetV2B1(weights=None, …)`: model `efficientnetv2-b1`,
/// default size 240x240 (width 1.0, depth 1.1); preprocessing as
/// [`efficientnet_v2_b0`].
pub fn efficientnet_v2_b1(options: &Options, include_preprocessing: bool) -> Result<Model> {
    efficientnet_v2(
        options,
        include_preprocessing,
        "efficientnetv2-b1",
        &STAGES_B,
        1.0,
        1.1,
        240,
    )
}

/// `keras.applications.EfficientNetV2B2(weights=None, …)`: model `efficientnetv2-b2`,
/// default size 260x260 (width 1.1, depth 1.2); preprocessing as
/// [`efficientnet_v2_b0`].
pub fn efficientnet_v2_b2(options: &Options, include_preprocessing: bool) -> Result<Model> {
    efficientnet_v2(
        options,
        include_preprocessing,
        "efficientnetv2-b2",
        &STAGES_B,
        1.1,
        1.2,
        260,
    )
}

/// `keras.applications.EfficientNetV2B3(weights=None, …)`: model `efficientnetv2-b3`,
/// default size 300x300 (width 1.2, depth 1.4); preprocessing as
/// [`efficientnet_v2_b0`].
pub fn efficientnet_v2_b3(options: &Options, include_preprocessing: bool) -> Result<Model> {
    efficientnet_v2(
        options,
        include_preprocessing,
        "efficientnetv2-b3",
        &STAGES_B,
        1.2,
        1.4,
        300,
    )
}

/// `keras.applications.EfficientNetV2S(weights=None, …)`: model `efficientnetv2-s`,
/// default size 384x384. With `include_preprocessing` (Keras's default) the model
/// rescales pixels in [0, 255] to [-1, 1] itself (`x / 128 - 1`, a Rescaling only,
/// whatever the channels), so it takes pixels ([`super::PreprocessMode::Identity`]);
/// without it, inputs in [-1, 1].
pub fn efficientnet_v2_s(options: &Options, include_preprocessing: bool) -> Result<Model> {
    efficientnet_v2(
        options,
        include_preprocessing,
        "efficientnetv2-s",
        &STAGES_S,
        1.0,
        1.0,
        384,
    )
}

/// `keras.applications.EfficientNetV2M(weights=None, …)`: model `efficientnetv2-m`,
/// default size 480x480; preprocessing as [`efficientnet_v2_s`].
pub fn efficientnet_v2_m(options: &Options, include_preprocessing: bool) -> Result<Model> {
    efficientnet_v2(
        options,
        include_preprocessing,
        "efficientnetv2-m",
        &STAGES_M,
        1.0,
        1.0,
        480,
    )
}

/// `keras.applications.EfficientNetV2L(weights=None, …)`: model `efficientnetv2-l`,
/// default size 480x480; preprocessing as [`efficientnet_v2_s`].
pub fn efficientnet_v2_l(options: &Options, include_preprocessing: bool) -> Result<Model> {
    efficientnet_v2(
        options,
        include_preprocessing,
        "efficientnetv2-l",
        &STAGES_L,
        1.0,
        1.0,
        480,
    )
}
