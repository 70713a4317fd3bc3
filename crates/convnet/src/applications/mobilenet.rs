//! keras.applications' MobileNet (keras/src/applications/mobilenet.py): depthwise
//! separable convolutions, widths scaled by `alpha`, with a 1x1-convolution classifier.

use super::{check_classes, input, obtain_input_shape, pooling, Options};
use crate::error::{Error, Result};
use crate::kernels::Padding;
use crate::layers::{
    Activation, BatchNormalization, Conv2D, DepthwiseConv2D, Dropout, GlobalAveragePooling2D,
    Layer, ReLU, Reshape, ZeroPadding2D,
};
use crate::model::{Call, Model, SymbolicTensor};

/// MobileNet's arguments besides [`Options`]; [`MobileNetOptions::default`] is Keras's
/// defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MobileNetOptions {
    /// Keras's `alpha`, the width multiplier: every layer has `int(filters * alpha)`
    /// filters (default 1.0). It must be finite and leave every layer a filter.
    pub alpha: f64,
    /// Keras's `depth_multiplier`, the depthwise convolutions' (default 1).
    pub depth_multiplier: usize,
    /// Keras's `dropout`, the rate of the Dropout before the classifier (default 1e-3).
    pub dropout: f64,
}

impl Default for MobileNetOptions {
    fn default() -> Self {
        MobileNetOptions {
            alpha: 1.0,
            depth_multiplier: 1,
            dropout: 1e-3,
        }
    }
}

fn relu6(name: &str) -> ReLU {
    ReLU::new().max_value(6.0).named(name)
}

/// Keras's `_depthwise_conv_block`: 3x3 depthwise (padded bottom-right and valid when
/// strided), batch norm, ReLU6, then the 1x1 pointwise convolution, batch norm, ReLU6.
fn depthwise_conv_block(
    x: &SymbolicTensor,
    pointwise_filters: usize,
    args: &MobileNetOptions,
    stride: usize,
    block_id: usize,
) -> SymbolicTensor {
    let filters = (pointwise_filters as f64 * args.alpha).trunc() as usize;
    let mut x = x.clone();
    if stride != 1 {
        x = ZeroPadding2D::new([[0, 1], [0, 1]])
            .named(&format!("conv_pad_{block_id}"))
            .call(&x);
    }
    let x = DepthwiseConv2D::new((3, 3))
        .padding(if stride == 1 {
            Padding::Same
        } else {
            Padding::Valid
        })
        .depth_multiplier(args.depth_multiplier)
        .strides((stride, stride))
        .use_bias(false)
        .named(&format!("conv_dw_{block_id}"))
        .call(&x);
    let x = BatchNormalization::new()
        .axis(-1)
        .named(&format!("conv_dw_{block_id}_bn"))
        .call(&x);
    let x = relu6(&format!("conv_dw_{block_id}_relu")).call(&x);
    let x = Conv2D::new(filters, (1, 1))
        .padding(Padding::Same)
        .use_bias(false)
        .named(&format!("conv_pw_{block_id}"))
        .call(&x);
    let x = BatchNormalization::new()
        .axis(-1)
        .named(&format!("conv_pw_{block_id}_bn"))
        .call(&x);
    relu6(&format!("conv_pw_{block_id}_relu")).call(&x)
}

/// `keras.applications.MobileNet(weights=None, alpha=…, depth_multiplier=…, dropout=…,
/// …)`: model `mobilenet_{alpha:.2f}_{rows}` (`mobilenet_1.00_224` by default; rows
/// `None` without the top and without `input_shape`), 4,253,864 parameters with the
/// default top at 224x224x3; expects [`super::PreprocessMode::Tf`] input. The classifier
/// is Keras's: keep-dims average pooling, `dropout`, a 1x1 convolution `conv_preds` of
/// `classes` filters, Reshape `reshape_2` and the Activation `predictions`.
pub fn mobilenet(options: &Options, args: &MobileNetOptions) -> Result<Model> {
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
    if (32.0 * args.alpha).trunc() < 1.0 {
        return Err(Error::invalid(
            "alpha",
            format!(
                "`alpha` leaves the first convolution no filters (int(32 * alpha) = 0); \
                 Received: alpha={}",
                args.alpha
            ),
        ));
    }
    if args.depth_multiplier == 0 {
        return Err(Error::invalid(
            "depth_multiplier",
            "`depth_multiplier` must be a positive integer; Received: depth_multiplier=0",
        ));
    }
    if !(0.0..=1.0).contains(&args.dropout) {
        return Err(Error::invalid(
            "dropout",
            format!(
                "`dropout` must be a rate in [0, 1]; Received: dropout={}",
                args.dropout
            ),
        ));
    }
    check_classes(options)?;
    let shape = obtain_input_shape(options, 224, 32)?;
    let rows = shape[0].map_or_else(|| "None".to_string(), |r| r.to_string());
    let img_input = input(&shape);

    let x = Conv2D::new((32.0 * args.alpha).trunc() as usize, (3, 3))
        .padding(Padding::Same)
        .use_bias(false)
        .strides((2, 2))
        .named("conv1")
        .call(&img_input);
    let x = BatchNormalization::new()
        .axis(-1)
        .named("conv1_bn")
        .call(&x);
    let mut x = relu6("conv1_relu").call(&x);
    // (pointwise filters, stride) of blocks 1 to 13.
    const BLOCKS: [(usize, usize); 13] = [
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (1024, 2),
        (1024, 1),
    ];
    for (i, &(filters, stride)) in BLOCKS.iter().enumerate() {
        x = depthwise_conv_block(&x, filters, args, stride, i + 1);
    }
    let y = if options.include_top {
        let x = GlobalAveragePooling2D::new().keepdims(true).call(&x);
        let x = Dropout::new(args.dropout).named("dropout").call(&x);
        let x = Conv2D::new(options.classes, (1, 1))
            .padding(Padding::Same)
            .named("conv_preds")
            .call(&x);
        let x = Reshape::new(&[options.classes as i64])
            .named("reshape_2")
            .call(&x);
        Activation::new(options.classifier_activation)
            .named("predictions")
            .call(&x)
    } else {
        pooling(&x, options, None, None)
    };
    let alpha = args.alpha;
    Ok(Model::new(&img_input, &y)?.named(&format!("mobilenet_{alpha:.2}_{rows}")))
}
