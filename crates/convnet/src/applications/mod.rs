//! keras.applications in Rust: Keras's own CNNs built layer by layer as Keras 3.15 builds
//! them with `weights=None` (fresh weights; convnet downloads nothing), with Keras's
//! arguments, layer names and model names, so that a model built here writes the same
//! config.json as `keras.applications.ResNet50(weights=None, …)` in a fresh Python
//! process and takes the same weights file.
//!
//! ```no_run
//! use convnet::applications::{self, Options, Pooling};
//!
//! let features = applications::resnet50(&Options {
//!     include_top: false,
//!     input_shape: Some(vec![64, 64, 3]),
//!     pooling: Some(Pooling::Avg),
//!     ..Options::default()
//! })?;
//! # Ok::<(), convnet::Error>(())
//! ```
//!
//! Auto-named layers (the input, MobileNetV2's global pooling, ResNetV2's shortcut
//! poolings) are numbered per model, as Keras numbers them in a process that has built
//! nothing else (`input_layer`, not Keras's `input_layer_2` for the third model built).

mod convnext;
mod densenet;
mod efficientnet;
mod efficientnet_v2;
mod imagenet;
mod inception_resnet_v2;
mod inception_v3;
mod mobilenet;
mod mobilenet_v2;
mod mobilenet_v3;
mod nasnet;
mod resnet;
mod vgg;
mod xception;

pub use convnext::{convnext_base, convnext_large, convnext_small, convnext_tiny, convnext_xlarge};
pub use densenet::{densenet121, densenet169, densenet201};
pub use efficientnet::{
    efficientnet_b0, efficientnet_b1, efficientnet_b2, efficientnet_b3, efficientnet_b4,
    efficientnet_b5, efficientnet_b6, efficientnet_b7,
};
pub use efficientnet_v2::{
    efficientnet_v2_b0, efficientnet_v2_b1, efficientnet_v2_b2, efficientnet_v2_b3,
    efficientnet_v2_l, efficientnet_v2_m, efficientnet_v2_s,
};
pub use imagenet::{
    decode_predictions, imagenet_class_names, top_classes, Decoded, IMAGENET_CLASSES,
};
pub use inception_resnet_v2::inception_resnet_v2;
pub use inception_v3::inception_v3;
pub use mobilenet::{mobilenet, MobileNetOptions};
pub use mobilenet_v2::mobilenet_v2;
pub use mobilenet_v3::{mobilenet_v3_large, mobilenet_v3_small, MobileNetV3Options};
pub use nasnet::{nasnet_large, nasnet_mobile};
pub use resnet::{resnet101, resnet101_v2, resnet152, resnet152_v2, resnet50, resnet50_v2};
pub use vgg::{vgg16, vgg19};
pub use xception::xception;

use crate::activations::ActivationFn;
use crate::error::{Error, Result};
use crate::layers::{Dense, GlobalAveragePooling2D, GlobalMaxPooling2D, InputLayer, Layer};
use crate::model::{Call, Model, SymbolicTensor};
use crate::tensor::Tensor;

/// The arguments every keras.applications constructor takes (less `weights`, always
/// `None` here, and `input_tensor`). [`Options::default`] is Keras's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Keras's `include_top`: the classifier (global average pooling and a Dense of
    /// `classes`) on top of the convolutional base (default true).
    pub include_top: bool,
    /// Keras's `input_shape`, (rows, columns, channels): by default 224x224x3 with the
    /// top, and (None, None, 3) — any image size — without it. Rows and columns must be
    /// at least the application's minimum (32 for ResNet and MobileNetV2).
    pub input_shape: Option<Vec<usize>>,
    /// Keras's `pooling` on the base when `include_top` is false: `None` keeps the 4-D
    /// feature map (default); ignored with the top.
    pub pooling: Option<Pooling>,
    /// Keras's `classes`: the classifier's units when `include_top` is true (default 1000).
    pub classes: usize,
    /// Keras's `classifier_activation`, the classifier's activation (default softmax;
    /// Keras's `None` is [`ActivationFn::Linear`]).
    pub classifier_activation: ActivationFn,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            include_top: true,
            input_shape: None,
            pooling: None,
            classes: 1000,
            classifier_activation: ActivationFn::Softmax,
        }
    }
}

/// Keras's `pooling` argument: global pooling on the convolutional base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// `"avg"`: GlobalAveragePooling2D.
    Avg,
    /// `"max"`: GlobalMaxPooling2D.
    Max,
}

/// Every application [`by_name`] builds, with a one-line description.
pub const APPLICATIONS: &[(&str, &str)] = &[
    (
        "resnet50",
        "keras.applications.ResNet50: 50-layer residual network (25.6M parameters at 224x224)",
    ),
    (
        "resnet101",
        "keras.applications.ResNet101: 101-layer residual network (44.7M parameters)",
    ),
    (
        "resnet152",
        "keras.applications.ResNet152: 152-layer residual network (60.4M parameters)",
    ),
    (
        "resnet50v2",
        "keras.applications.ResNet50V2: pre-activation residual network (25.6M parameters)",
    ),
    (
        "resnet101v2",
        "keras.applications.ResNet101V2: pre-activation residual network (44.7M parameters)",
    ),
    (
        "resnet152v2",
        "keras.applications.ResNet152V2: pre-activation residual network (60.4M parameters)",
    ),
    (
        "mobilenet_v2",
        "keras.applications.MobileNetV2 (alpha 1.0): inverted residual blocks (3.5M parameters)",
    ),
    (
        "vgg16",
        "keras.applications.VGG16: 16 layers of 3x3 convolutions and Dense (138.4M parameters)",
    ),
    (
        "vgg19",
        "keras.applications.VGG19: 19 layers of 3x3 convolutions and Dense (143.7M parameters)",
    ),
    (
        "mobilenet",
        "keras.applications.MobileNet (alpha 1.0): depthwise separable convolutions (4.3M parameters)",
    ),
    (
        "densenet121",
        "keras.applications.DenseNet121: densely connected blocks (8.1M parameters)",
    ),
    (
        "densenet169",
        "keras.applications.DenseNet169: densely connected blocks (14.3M parameters)",
    ),
    (
        "densenet201",
        "keras.applications.DenseNet201: densely connected blocks (20.2M parameters)",
    ),
    (
        "xception",
        "keras.applications.Xception: depthwise separable residual network (22.9M parameters at 299x299, at least 71x71)",
    ),
    (
        "inception_v3",
        "keras.applications.InceptionV3: Inception modules (23.9M parameters at 299x299, at least 75x75)",
    ),
    (
        "efficientnet_b0",
        "keras.applications.EfficientNetB0: MBConv blocks, own rescaling (5.3M parameters at 224x224)",
    ),
    (
        "efficientnet_b1",
        "keras.applications.EfficientNetB1: EfficientNetB0 scaled wider and deeper (7.9M parameters at 240x240)",
    ),
    (
        "efficientnet_b2",
        "keras.applications.EfficientNetB2: EfficientNetB0 scaled wider and deeper (9.2M parameters at 260x260)",
    ),
    (
        "efficientnet_b3",
        "keras.applications.EfficientNetB3: EfficientNetB0 scaled wider and deeper (12.3M parameters at 300x300)",
    ),
    (
        "efficientnet_b4",
        "keras.applications.EfficientNetB4: EfficientNetB0 scaled wider and deeper (19.5M parameters at 380x380)",
    ),
    (
        "efficientnet_b5",
        "keras.applications.EfficientNetB5: EfficientNetB0 scaled wider and deeper (30.6M parameters at 456x456)",
    ),
    (
        "efficientnet_b6",
        "keras.applications.EfficientNetB6: EfficientNetB0 scaled wider and deeper (43.3M parameters at 528x528)",
    ),
    (
        "efficientnet_b7",
        "keras.applications.EfficientNetB7: EfficientNetB0 scaled wider and deeper (66.7M parameters at 600x600)",
    ),
    (
        "mobilenet_v3_small",
        "keras.applications.MobileNetV3Small (alpha 1.0): inverted residual blocks with squeeze-and-excitation and hard-swish, own rescaling (2.6M parameters)",
    ),
    (
        "mobilenet_v3_large",
        "keras.applications.MobileNetV3Large (alpha 1.0): inverted residual blocks with squeeze-and-excitation and hard-swish, own rescaling (5.5M parameters)",
    ),
    (
        "convnext_tiny",
        "keras.applications.ConvNeXtTiny: 7x7 depthwise blocks with layer normalization and layer scale, own normalization (28.6M parameters)",
    ),
    (
        "efficientnet_v2_b0",
        "keras.applications.EfficientNetV2B0: Fused-MBConv and MBConv blocks, own rescaling (7.2M parameters at 224x224)",
    ),
    (
        "efficientnet_v2_b1",
        "keras.applications.EfficientNetV2B1: Fused-MBConv and MBConv blocks, own rescaling (8.2M parameters at 240x240)",
    ),
    (
        "efficientnet_v2_b2",
        "keras.applications.EfficientNetV2B2: Fused-MBConv and MBConv blocks, own rescaling (10.2M parameters at 260x260)",
    ),
    (
        "efficientnet_v2_b3",
        "keras.applications.EfficientNetV2B3: Fused-MBConv and MBConv blocks, own rescaling (14.5M parameters at 300x300)",
    ),
    (
        "efficientnet_v2_s",
        "keras.applications.EfficientNetV2S: Fused-MBConv and MBConv blocks, own rescaling (21.6M parameters at 384x384)",
    ),
    (
        "inception_resnet_v2",
        "keras.applications.InceptionResNetV2: Inception modules with scaled residual connections (55.9M parameters at 299x299, at least 75x75)",
    ),
    (
        "nasnet_mobile",
        "keras.applications.NASNetMobile: NASNet-A (4 @ 1056) cells found by architecture search (5.3M parameters at 224x224, at least 32x32)",
    ),
];

/// An application by its name in [`APPLICATIONS`] (MobileNet and MobileNetV2 with Keras's
/// default alpha, depth multiplier and dropout, EfficientNetV2 with Keras's default
/// `include_preprocessing`), with fresh weights.
pub fn by_name(name: &str, options: &Options) -> Result<Model> {
    match name {
        "resnet50" => resnet50(options),
        "resnet101" => resnet101(options),
        "resnet152" => resnet152(options),
        "resnet50v2" => resnet50_v2(options),
        "resnet101v2" => resnet101_v2(options),
        "resnet152v2" => resnet152_v2(options),
        "mobilenet_v2" => mobilenet_v2(options, 1.0),
        "vgg16" => vgg16(options),
        "vgg19" => vgg19(options),
        "mobilenet" => mobilenet(options, &MobileNetOptions::default()),
        "densenet121" => densenet121(options),
        "densenet169" => densenet169(options),
        "densenet201" => densenet201(options),
        "xception" => xception(options),
        "inception_v3" => inception_v3(options),
        "efficientnet_b0" => efficientnet_b0(options),
        "efficientnet_b1" => efficientnet_b1(options),
        "efficientnet_b2" => efficientnet_b2(options),
        "efficientnet_b3" => efficientnet_b3(options),
        "efficientnet_b4" => efficientnet_b4(options),
        "efficientnet_b5" => efficientnet_b5(options),
        "efficientnet_b6" => efficientnet_b6(options),
        "efficientnet_b7" => efficientnet_b7(options),
        "mobilenet_v3_small" => mobilenet_v3_small(options, &MobileNetV3Options::default()),
        "mobilenet_v3_large" => mobilenet_v3_large(options, &MobileNetV3Options::default()),
        "convnext_tiny" => convnext_tiny(options, true),
        "efficientnet_v2_b0" => efficientnet_v2_b0(options, true),
        "efficientnet_v2_b1" => efficientnet_v2_b1(options, true),
        "efficientnet_v2_b2" => efficientnet_v2_b2(options, true),
        "efficientnet_v2_b3" => efficientnet_v2_b3(options, true),
        "efficientnet_v2_s" => efficientnet_v2_s(options, true),
        "inception_resnet_v2" => inception_resnet_v2(options),
        "nasnet_mobile" => nasnet_mobile(options),
        other => Err(Error::invalid(
            "application",
            format!(
                "no application '{other}' (known: {})",
                APPLICATIONS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// The `mode` of Keras's `imagenet_utils.preprocess_input`, which each application's
/// own `preprocess_input` fixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreprocessMode {
    /// `"caffe"`: RGB to BGR, then each channel less its ImageNet mean
    /// (103.939, 116.779, 123.68 in BGR order), without scaling (ResNet, VGG).
    Caffe,
    /// `"tf"`: scaled to [-1, 1], `x / 127.5 - 1` (MobileNet, MobileNetV2, ResNetV2,
    /// Xception, InceptionV3).
    Tf,
    /// `"torch"`: scaled to [0, 1], then each channel less the ImageNet mean
    /// (0.485, 0.456, 0.406) over its standard deviation (0.229, 0.224, 0.225)
    /// (DenseNet).
    Torch,
    /// No preprocessing: EfficientNet's `preprocess_input` returns its input unchanged,
    /// since the model rescales and normalises pixels in [0, 255] itself (its Rescaling
    /// and Normalization layers). Not a mode of Keras's `imagenet_utils`.
    Identity,
}

/// The preprocessing the application `name` (as in [`APPLICATIONS`]) expects, as its
/// Keras module's `preprocess_input` does it; `None` for an unknown name.
pub fn preprocess_mode(name: &str) -> Option<PreprocessMode> {
    match name {
        "resnet50" | "resnet101" | "resnet152" | "vgg16" | "vgg19" => Some(PreprocessMode::Caffe),
        "resnet50v2" | "resnet101v2" | "resnet152v2" | "mobilenet_v2" | "mobilenet"
        | "xception" | "inception_v3" => Some(PreprocessMode::Tf),
        "densenet121" | "densenet169" | "densenet201" => Some(PreprocessMode::Torch),
        "efficientnet_b0" | "efficientnet_b1" | "efficientnet_b2" | "efficientnet_b3"
        | "efficientnet_b4" | "efficientnet_b5" | "efficientnet_b6" | "efficientnet_b7" => {
            Some(PreprocessMode::Identity)
        }
        "mobilenet_v3_small" | "mobilenet_v3_large" | "convnext_tiny" => {
            Some(PreprocessMode::Identity)
        }
        "efficientnet_v2_b0" | "efficientnet_v2_b1" | "efficientnet_v2_b2"
        | "efficientnet_v2_b3" | "efficientnet_v2_s" => Some(PreprocessMode::Identity),
        "inception_resnet_v2" | "nasnet_mobile" => Some(PreprocessMode::Tf),
        _ => None,
    }
}

/// Keras's `imagenet_utils.preprocess_input(x, mode=…)` on channels-last RGB images with
/// values in [0, 255] (a batch or one image: the last axis is the channels), computed in
/// f32 as Keras computes it on a float32 array (for [`PreprocessMode::Identity`], a
/// copy of `x`). `caffe` and `torch` need 3 channels.
pub fn preprocess_input(x: &Tensor, mode: PreprocessMode) -> Result<Tensor> {
    let channels = x.shape().last().copied().unwrap_or(0);
    if matches!(mode, PreprocessMode::Caffe | PreprocessMode::Torch) && channels != 3 {
        return Err(Error::invalid(
            "x",
            format!(
                "preprocess_input in mode {:?} expects RGB images with 3 channels on the \
                 last axis; received x of shape {:?}",
                mode,
                x.shape()
            ),
        ));
    }
    let mut y = x.clone();
    match mode {
        PreprocessMode::Identity => {}
        PreprocessMode::Tf => y.map_inplace(|v| v / 127.5 - 1.0),
        PreprocessMode::Caffe => {
            const MEAN: [f32; 3] = [103.939, 116.779, 123.68];
            for pixel in y.data_mut().chunks_exact_mut(3) {
                pixel.reverse();
                for (v, mean) in pixel.iter_mut().zip(MEAN) {
                    *v -= mean;
                }
            }
        }
        PreprocessMode::Torch => {
            const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
            const STD: [f32; 3] = [0.229, 0.224, 0.225];
            for pixel in y.data_mut().chunks_exact_mut(3) {
                for ((v, mean), std) in pixel.iter_mut().zip(MEAN).zip(STD) {
                    *v = (*v / 255.0 - mean) / std;
                }
            }
        }
    }
    Ok(y)
}

/// A shape as Python prints the tuple: `(31, 32, 3)`, `(32,)`.
fn python_tuple(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Keras's `imagenet_utils.obtain_input_shape` for channels-last data and
/// `weights=None`: the model's input shape (rows and columns `None` when not given
/// without the top), or Keras's error for a shape that is not three sizes or is smaller
/// than `min_size`. Zero channels, which Keras builds on, are refused.
fn obtain_input_shape(
    options: &Options,
    default_size: usize,
    min_size: usize,
) -> Result<Vec<Option<usize>>> {
    // Keras tests `if input_shape:`, so an empty shape counts as none given.
    match options.input_shape.as_deref() {
        None | Some([]) => Ok(if options.include_top {
            vec![Some(default_size), Some(default_size), Some(3)]
        } else {
            vec![None, None, Some(3)]
        }),
        Some(shape) => {
            let &[rows, cols, channels] = shape else {
                return Err(Error::invalid(
                    "input_shape",
                    format!(
                        "`input_shape` must be a tuple of three integers; Received: \
                         input_shape={}",
                        python_tuple(shape)
                    ),
                ));
            };
            if rows < min_size || cols < min_size {
                return Err(Error::invalid(
                    "input_shape",
                    format!(
                        "Input size must be at least {min_size}x{min_size}; Received: \
                         input_shape={}",
                        python_tuple(shape)
                    ),
                ));
            }
            if channels == 0 {
                return Err(Error::invalid(
                    "input_shape",
                    format!(
                        "The input must have at least 1 channel; Received: input_shape={}",
                        python_tuple(shape)
                    ),
                ));
            }
            Ok(vec![Some(rows), Some(cols), Some(channels)])
        }
    }
}

/// Keras's `layers.Input(shape=shape)`, auto-named `input_layer`; `None` sizes are
/// unknown until the model is called.
fn input(shape: &[Option<usize>]) -> SymbolicTensor {
    let mut layer = InputLayer::new(&[]);
    layer.batch_shape = std::iter::once(None).chain(shape.iter().copied()).collect();
    layer.call(Vec::<SymbolicTensor>::new())
}

/// Keras's checks on the classifier arguments: Dense refuses 0 units.
fn check_classes(options: &Options) -> Result<()> {
    if options.include_top && options.classes == 0 {
        return Err(Error::invalid(
            "classes",
            "Received an invalid value for `classes` (the units of the `predictions` Dense), \
             expected a positive integer. Received: classes=0",
        ));
    }
    Ok(())
}

/// The top most applications share: with `include_top`, global average pooling (named
/// `classifier_pool`) and the `predictions` Dense; without it, the optional `pooling`,
/// named `avg_name` or `max_name`. A `None` name leaves the layer auto-named
/// (`global_average_pooling2d`), as Keras leaves it.
fn top(
    x: &SymbolicTensor,
    options: &Options,
    classifier_pool: Option<&str>,
    avg_name: Option<&str>,
    max_name: Option<&str>,
) -> SymbolicTensor {
    if options.include_top {
        let x = named(GlobalAveragePooling2D::new(), classifier_pool).call(x);
        Dense::new(options.classes)
            .activation(options.classifier_activation)
            .named("predictions")
            .call(&x)
    } else {
        pooling(x, options, avg_name, max_name)
    }
}

/// The optional `pooling` on a base without its top.
fn pooling(
    x: &SymbolicTensor,
    options: &Options,
    avg_name: Option<&str>,
    max_name: Option<&str>,
) -> SymbolicTensor {
    match options.pooling {
        Some(Pooling::Avg) => named(GlobalAveragePooling2D::new(), avg_name).call(x),
        Some(Pooling::Max) => named(GlobalMaxPooling2D::new(), max_name).call(x),
        None => x.clone(),
    }
}

/// A layer named `name`, or left auto-named.
fn named<L: Layer>(layer: L, name: Option<&str>) -> L {
    match name {
        Some(name) => layer.named(name),
        None => layer,
    }
}
