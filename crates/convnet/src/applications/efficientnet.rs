//! keras.applications' EfficientNet B0 to B7 (keras/src/applications/efficientnet.py):
//! MBConv blocks (expansion, depthwise convolution, squeeze-and-excitation, projection,
//! stochastic-depth Dropout on the residual), widths and depths scaled per variant. The
//! model rescales and normalises its own input, so it takes pixels in [0, 255]
//! ([`super::PreprocessMode::Identity`]).

use super::mobilenet_v2::{correct_pad, make_divisible};
use super::{check_classes, input, obtain_input_shape, pooling, Options};
use crate::activations::ActivationFn;
use crate::error::Result;
use crate::initializers::Initializer;
use crate::kernels::Padding;
use crate::layers::{
    Activation, Add, Axes, BatchNormalization, Conv2D, Dense, DepthwiseConv2D, Dropout,
    GlobalAveragePooling2D, Layer, Multiply, Normalization, Rescaling, Reshape, ZeroPadding2D,
};
use crate::model::{Call, Model, SymbolicTensor};
use serde_json::json;

/// One stage of Keras's `DEFAULT_BLOCKS_ARGS` (every stage has `id_skip` and
/// `se_ratio` 0.25).
struct Stage {
    kernel_size: usize,
    repeats: usize,
    filters_in: usize,
    filters_out: usize,
    expand_ratio: usize,
    strides: usize,
}

const STAGES: [Stage; 7] = [
    Stage {
        kernel_size: 3,
        repeats: 1,
        filters_in: 32,
        filters_out: 16,
        expand_ratio: 1,
        strides: 1,
    },
    Stage {
        kernel_size: 3,
        repeats: 2,
        filters_in: 16,
        filters_out: 24,
        expand_ratio: 6,
        strides: 2,
    },
    Stage {
        kernel_size: 5,
        repeats: 2,
        filters_in: 24,
        filters_out: 40,
        expand_ratio: 6,
        strides: 2,
    },
    Stage {
        kernel_size: 3,
        repeats: 3,
        filters_in: 40,
        filters_out: 80,
        expand_ratio: 6,
        strides: 2,
    },
    Stage {
        kernel_size: 5,
        repeats: 3,
        filters_in: 80,
        filters_out: 112,
        expand_ratio: 6,
        strides: 1,
    },
    Stage {
        kernel_size: 5,
        repeats: 4,
        filters_in: 112,
        filters_out: 192,
        expand_ratio: 6,
        strides: 2,
    },
    Stage {
        kernel_size: 3,
        repeats: 1,
        filters_in: 192,
        filters_out: 320,
        expand_ratio: 6,
        strides: 1,
    },
];

const SE_RATIO: f64 = 0.25;
const DROP_CONNECT_RATE: f64 = 0.2;

/// Keras's `CONV_KERNEL_INITIALIZER`, as config.json writes it.
pub(super) fn conv_initializer() -> Initializer {
    variance_scaling(2.0, "truncated_normal")
}

/// Keras's `DENSE_KERNEL_INITIALIZER`.
pub(super) fn dense_initializer() -> Initializer {
    variance_scaling(1.0 / 3.0, "uniform")
}

fn variance_scaling(scale: f64, distribution: &str) -> Initializer {
    Initializer::from_config(&json!({
        "class_name": "VarianceScaling",
        "config": {"seed": null, "scale": scale, "mode": "fan_out",
                   "distribution": distribution, "input_axes": null, "output_axes": null},
    }))
    .expect("a valid VarianceScaling")
}

/// A bias-free `same` 1x1 convolution with the conv initializer.
pub(super) fn pointwise(filters: usize, name: &str) -> Conv2D {
    Conv2D::new(filters, (1, 1))
        .padding(Padding::Same)
        .use_bias(false)
        .kernel_initializer(conv_initializer())
        .named(name)
}

fn batch_norm(name: &str) -> BatchNormalization {
    BatchNormalization::new().axis(3).named(name)
}

pub(super) fn swish(name: &str) -> Activation {
    Activation::new(ActivationFn::Silu).named(name)
}

/// The arguments of one call of Keras's `block`.
struct BlockArgs {
    filters_in: usize,
    filters_out: usize,
    kernel_size: usize,
    strides: usize,
    expand_ratio: usize,
    drop_rate: f64,
}

/// Keras's `block`: 1x1 expansion (unless `expand_ratio` is 1), depthwise convolution
/// (zero-padded and valid when strided), squeeze-and-excitation, 1x1 projection, and
/// when the shape allows the residual Add behind a per-sample Dropout of `drop_rate`.
fn block(inputs: &SymbolicTensor, args: &BlockArgs, name: &str) -> Result<SymbolicTensor> {
    let filters = args.filters_in * args.expand_ratio;
    let mut x = inputs.clone();
    if args.expand_ratio != 1 {
        x = pointwise(filters, &format!("{name}expand_conv")).call(&x);
        x = batch_norm(&format!("{name}expand_bn")).call(&x);
        x = swish(&format!("{name}expand_activation")).call(&x);
    }
    let conv_pad = if args.strides == 2 {
        x = ZeroPadding2D::new(correct_pad(&x, args.kernel_size)?)
            .named(&format!("{name}dwconv_pad"))
            .call(&x);
        Padding::Valid
    } else {
        Padding::Same
    };
    let mut dwconv = DepthwiseConv2D::new((args.kernel_size, args.kernel_size))
        .strides((args.strides, args.strides))
        .padding(conv_pad)
        .use_bias(false)
        .named(&format!("{name}dwconv"));
    dwconv.depthwise_initializer = conv_initializer();
    let x = dwconv.call(&x);
    let x = batch_norm(&format!("{name}bn")).call(&x);
    let x = swish(&format!("{name}activation")).call(&x);

    let filters_se = 1.max((args.filters_in as f64 * SE_RATIO).trunc() as usize);
    let x = squeeze_excite(x, filters, filters_se, name);

    let x = pointwise(args.filters_out, &format!("{name}project_conv")).call(&x);
    let mut x = batch_norm(&format!("{name}project_bn")).call(&x);
    if args.strides == 1 && args.filters_in == args.filters_out {
        if args.drop_rate > 0.0 {
            let mut drop = Dropout::new(args.drop_rate).named(&format!("{name}drop"));
            drop.noise_shape = Some(vec![None, Some(1), Some(1), Some(1)]);
            x = drop.call(&x);
        }
        x = Add::new()
            .named(&format!("{name}add"))
            .call(&[x, inputs.clone()]);
    }
    Ok(x)
}

/// Squeeze-and-excitation, as both EfficientNets write it: the channels' global
/// average, a 1x1 swish convolution to `filters_se`, a 1x1 sigmoid one back to
/// `filters`, and `x` scaled by the result (`{name}se_squeeze` … `{name}se_excite`).
pub(super) fn squeeze_excite(
    x: SymbolicTensor,
    filters: usize,
    filters_se: usize,
    name: &str,
) -> SymbolicTensor {
    let se = GlobalAveragePooling2D::new()
        .named(&format!("{name}se_squeeze"))
        .call(&x);
    let se = Reshape::new(&[1, 1, filters as i64])
        .named(&format!("{name}se_reshape"))
        .call(&se);
    let se = Conv2D::new(filters_se, (1, 1))
        .padding(Padding::Same)
        .activation(ActivationFn::Silu)
        .kernel_initializer(conv_initializer())
        .named(&format!("{name}se_reduce"))
        .call(&se);
    let se = Conv2D::new(filters, (1, 1))
        .padding(Padding::Same)
        .activation(ActivationFn::Sigmoid)
        .kernel_initializer(conv_initializer())
        .named(&format!("{name}se_expand"))
        .call(&se);
    Multiply::new()
        .named(&format!("{name}se_excite"))
        .call(&[x, se])
}

/// Keras's `EfficientNet(width_coefficient, depth_coefficient, default_size,
/// dropout_rate, …)` with the default blocks, swish, drop-connect rate 0.2 and depth
/// divisor 8.
fn efficientnet(
    options: &Options,
    name: &str,
    width_coefficient: f64,
    depth_coefficient: f64,
    default_size: usize,
    dropout_rate: f64,
) -> Result<Model> {
    check_classes(options)?;
    let shape = obtain_input_shape(options, default_size, 32)?;
    let round_filters = |filters: usize| make_divisible(filters as f64 * width_coefficient, 8);
    let round_repeats = |repeats: usize| (depth_coefficient * repeats as f64).ceil() as usize;

    let img_input = input(&shape);
    let x = Rescaling::new(1.0 / 255.0, 0.0).call(&img_input);
    let x = Normalization::new().axis(Axes::Many(vec![3])).call(&x);
    let x = ZeroPadding2D::new(correct_pad(&x, 3)?)
        .named("stem_conv_pad")
        .call(&x);
    let x = Conv2D::new(round_filters(32), (3, 3))
        .strides((2, 2))
        .padding(Padding::Valid)
        .use_bias(false)
        .kernel_initializer(conv_initializer())
        .named("stem_conv")
        .call(&x);
    let x = batch_norm("stem_bn").call(&x);
    let mut x = swish("stem_activation").call(&x);

    let blocks = STAGES
        .iter()
        .map(|s| round_repeats(s.repeats))
        .sum::<usize>() as f64;
    let mut b = 0usize;
    for (i, stage) in STAGES.iter().enumerate() {
        let mut args = BlockArgs {
            filters_in: round_filters(stage.filters_in),
            filters_out: round_filters(stage.filters_out),
            kernel_size: stage.kernel_size,
            strides: stage.strides,
            expand_ratio: stage.expand_ratio,
            drop_rate: 0.0,
        };
        for j in 0..round_repeats(stage.repeats) {
            if j > 0 {
                args.strides = 1;
                args.filters_in = args.filters_out;
            }
            // Python's `drop_connect_rate * b / blocks`, left to right.
            args.drop_rate = DROP_CONNECT_RATE * b as f64 / blocks;
            let letter = char::from(b'a' + j as u8);
            x = block(&x, &args, &format!("block{}{letter}_", i + 1))?;
            b += 1;
        }
    }

    let x = pointwise(round_filters(1280), "top_conv").call(&x);
    let x = batch_norm("top_bn").call(&x);
    let x = swish("top_activation").call(&x);
    let y = if options.include_top {
        let mut x = GlobalAveragePooling2D::new().named("avg_pool").call(&x);
        if dropout_rate > 0.0 {
            x = Dropout::new(dropout_rate).named("top_dropout").call(&x);
        }
        Dense::new(options.classes)
            .activation(options.classifier_activation)
            .kernel_initializer(dense_initializer())
            .named("predictions")
            .call(&x)
    } else {
        pooling(&x, options, Some("avg_pool"), Some("max_pool"))
    };
    Ok(Model::new(&img_input, &y)?.named(name))
}

/// `keras.applications.EfficientNetB0(weights=None, …)`: model `efficientnetb0`,
/// 5,330,571 parameters with the default top at 224x224x3; takes pixels in [0, 255]
/// ([`super::PreprocessMode::Identity`]). With `weights=None` Keras adds no third
/// Rescaling by the ImageNet standard deviations (it does only for its own weights),
/// and the Normalization is left unadapted: its mean and variance are weights to load
/// (or to set), 0 and 1 as built.
pub fn efficientnet_b0(options: &Options) -> Result<Model> {
    efficientnet(options, "efficientnetb0", 1.0, 1.0, 224, 0.2)
}

/// `keras.applications.EfficientNetB1(weights=None, …)`: model `efficientnetb1`,
/// default size 240x240 (width 1.0, depth 1.1, top dropout 0.2).
pub fn efficientnet_b1(options: &Options) -> Result<Model> {
    efficientnet(options, "efficientnetb1", 1.0, 1.1, 240, 0.2)
}

/// `keras.applications.EfficientNetB2(weights=None, …)`: model `efficientnetb2`,
/// default size 260x260 (width 1.1, depth 1.2, top dropout 0.3).
pub fn efficientnet_b2(options: &Options) -> Result<Model> {
    efficientnet(options, "efficientnetb2", 1.1, 1.2, 260, 0.3)
}

/// `keras.applications.EfficientNetB3(weights=None, …)`: model `efficientnetb3`,
/// default size 300x300 (width 1.2, depth 1.4, top dropout 0.3).
pub fn efficientnet_b3(options: &Options) -> Result<Model> {
    efficientnet(options, "efficientnetb3", 1.2, 1.4, 300, 0.3)
}

/// `keras.applications.EfficientNetB4(weights=None, …)`: model `efficientnetb4`,
/// default size 380x380 (width 1.4, depth 1.8, top dropout 0.4).
pub fn efficientnet_b4(options: &Options) -> Result<Model> {
    efficientnet(options, "efficientnetb4", 1.4, 1.8, 380, 0.4)
}

/// `keras.applications.EfficientNetB5(weights=None, …)`: model `efficientnetb5`,
/// default size 456x456 (width 1.6, depth 2.2, top dropout 0.4).
pub fn efficientnet_b5(options: &Options) -> Result<Model> {
    efficientnet(options, "efficientnetb5", 1.6, 2.2, 456, 0.4)
}

/// `keras.applications.EfficientNetB6(weights=None, …)`: model `efficientnetb6`,
/// default size 528x528 (width 1.8, depth 2.6, top dropout 0.5).
pub fn efficientnet_b6(options: &Options) -> Result<Model> {
    efficientnet(options, "efficientnetb6", 1.8, 2.6, 528, 0.5)
}

/// `keras.applications.EfficientNetB7(weights=None, …)`: model `efficientnetb7`,
/// default size 600x600 (width 2.0, depth 3.1, top dropout 0.5).
pub fn efficientnet_b7(options: &Options) -> Result<Model> {
    efficientnet(options, "efficientnetb7", 2.0, 3.1, 600, 0.5)
}
