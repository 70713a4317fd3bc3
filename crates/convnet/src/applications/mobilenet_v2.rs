//! keras.applications' MobileNetV2 (keras/src/applications/mobilenet_v2.py): inverted
//! residual blocks with linear bottlenecks, widths scaled by `alpha`.

use super::{check_classes, input, obtain_input_shape, top, Options};
use crate::error::{Error, Result};
use crate::kernels::Padding;
use crate::layers::{Add, BatchNormalization, Conv2D, DepthwiseConv2D, Layer, ReLU, ZeroPadding2D};
use crate::model::{Call, Model, SymbolicTensor};

/// Keras's `_make_divisible(v, divisor)`: `v` rounded to a multiple of `divisor` (at
/// least `divisor`), never more than 10% below `v`; Python's arithmetic, in f64.
pub(super) fn make_divisible(v: f64, divisor: i64) -> usize {
    // Python's int() truncates; its // floors.
    let rounded = ((v + divisor as f64 / 2.0).trunc() as i64).div_euclid(divisor) * divisor;
    let mut new_v = divisor.max(rounded);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v as usize
}

/// BatchNormalization as MobileNetV2 configures it.
fn batch_norm(name: &str) -> BatchNormalization {
    BatchNormalization::new()
        .axis(-1)
        .epsilon(1e-3)
        .momentum(0.999)
        .named(name)
}

fn relu6(name: &str) -> ReLU {
    ReLU::new().max_value(6.0).named(name)
}

/// Keras's `correct_pad(x, 3)` for channels-last data: the ZeroPadding2D before a
/// strided 3x3 depthwise convolution.
pub(super) fn correct_pad(x: &SymbolicTensor, kernel: usize) -> Result<[[usize; 2]; 2]> {
    let shape = x.shape()?;
    let correct = kernel / 2;
    let adjust = |d: Option<usize>| d.map_or(1, |d| 1 - d % 2);
    let (adjust_rows, adjust_cols) = match shape[1] {
        None => (1, 1),
        rows => (adjust(rows), adjust(shape[2])),
    };
    Ok([
        [correct - adjust_rows, correct],
        [correct - adjust_cols, correct],
    ])
}

/// Keras's `_inverted_res_block`: 1x1 expansion (not in block 0), 3x3 depthwise
/// (zero-padded and valid when strided), 1x1 linear projection, and the residual Add
/// when the shape allows.
fn inverted_res_block(
    inputs: &SymbolicTensor,
    expansion: usize,
    stride: usize,
    alpha: f64,
    filters: usize,
    block_id: usize,
) -> Result<SymbolicTensor> {
    let in_channels = inputs.shape()?.last().copied().flatten().ok_or_else(|| {
        Error::invalid("input_shape", "MobileNetV2 needs the input channels known")
    })?;
    let pointwise_conv_filters = (filters as f64 * alpha).trunc();
    let pointwise_filters = make_divisible(pointwise_conv_filters, 8);
    let mut x = inputs.clone();
    let prefix = if block_id > 0 {
        let prefix = format!("block_{block_id}_");
        x = Conv2D::new(expansion * in_channels, (1, 1))
            .padding(Padding::Same)
            .use_bias(false)
            .named(&format!("{prefix}expand"))
            .call(&x);
        x = batch_norm(&format!("{prefix}expand_BN")).call(&x);
        x = relu6(&format!("{prefix}expand_relu")).call(&x);
        prefix
    } else {
        "expanded_conv_".to_string()
    };
    if stride == 2 {
        x = ZeroPadding2D::new(correct_pad(&x, 3)?)
            .named(&format!("{prefix}pad"))
            .call(&x);
    }
    let x = DepthwiseConv2D::new((3, 3))
        .strides((stride, stride))
        .use_bias(false)
        .padding(if stride == 1 {
            Padding::Same
        } else {
            Padding::Valid
        })
        .named(&format!("{prefix}depthwise"))
        .call(&x);
    let x = batch_norm(&format!("{prefix}depthwise_BN")).call(&x);
    let x = relu6(&format!("{prefix}depthwise_relu")).call(&x);
    let x = Conv2D::new(pointwise_filters, (1, 1))
        .padding(Padding::Same)
        .use_bias(false)
        .named(&format!("{prefix}project"))
        .call(&x);
    let x = batch_norm(&format!("{prefix}project_BN")).call(&x);
    if in_channels == pointwise_filters && stride == 1 {
        return Ok(Add::new()
            .named(&format!("{prefix}add"))
            .call(&[inputs.clone(), x]));
    }
    Ok(x)
}

/// `keras.applications.MobileNetV2(weights=None, alpha=alpha, …)` (Keras's default alpha
/// is 1.0): model `mobilenetv2_{alpha:.2f}_{rows}` (`mobilenetv2_1.00_224` by default;
/// rows `None` without the top and without `input_shape`), 3,538,984 parameters with
/// the default top at 224x224x3; expects [`super::PreprocessMode::Tf`] input. `alpha`
/// scales every block's width as Keras's Python floats do; it must be finite.
pub fn mobilenet_v2(options: &Options, alpha: f64) -> Result<Model> {
    if !alpha.is_finite() {
        return Err(Error::invalid(
            "alpha",
            format!(
                "`alpha` must be a finite number (the width multiplier); Received: alpha={alpha}"
            ),
        ));
    }
    check_classes(options)?;
    let shape = obtain_input_shape(options, 224, 32)?;
    let rows = shape[0].map_or_else(|| "None".to_string(), |r| r.to_string());
    let img_input = input(&shape);

    let first_block_filters = make_divisible(32.0 * alpha, 8);
    let x = Conv2D::new(first_block_filters, (3, 3))
        .strides((2, 2))
        .padding(Padding::Same)
        .use_bias(false)
        .named("Conv1")
        .call(&img_input);
    let x = batch_norm("bn_Conv1").call(&x);
    let mut x = relu6("Conv1_relu").call(&x);
    // (filters, stride, expansion) of blocks 0 to 16.
    const BLOCKS: [(usize, usize, usize); 17] = [
        (16, 1, 1),
        (24, 2, 6),
        (24, 1, 6),
        (32, 2, 6),
        (32, 1, 6),
        (32, 1, 6),
        (64, 2, 6),
        (64, 1, 6),
        (64, 1, 6),
        (64, 1, 6),
        (96, 1, 6),
        (96, 1, 6),
        (96, 1, 6),
        (160, 2, 6),
        (160, 1, 6),
        (160, 1, 6),
        (320, 1, 6),
    ];
    for (block_id, &(filters, stride, expansion)) in BLOCKS.iter().enumerate() {
        x = inverted_res_block(&x, expansion, stride, alpha, filters, block_id)?;
    }
    // No alpha on the last convolution unless it widens the network.
    let last_block_filters = if alpha > 1.0 {
        make_divisible(1280.0 * alpha, 8)
    } else {
        1280
    };
    let x = Conv2D::new(last_block_filters, (1, 1))
        .use_bias(false)
        .named("Conv_1")
        .call(&x);
    let x = batch_norm("Conv_1_bn").call(&x);
    let x = relu6("out_relu").call(&x);
    let y = top(&x, options, None, None, None);
    Ok(Model::new(&img_input, &y)?.named(&format!("mobilenetv2_{alpha:.2}_{rows}")))
}
