//! keras.applications' ConvNeXt Tiny, Small, Base, Large and XLarge
//! (keras/src/applications/convnext.py): a patchify stem and three downsampling layers
//! (each a nested Sequential, as Keras builds them), and stages of ConvNeXt blocks (7x7
//! depthwise convolution, layer normalization, an inverted bottleneck of Dense layers
//! with GELU, LayerScale, and the residual sum). The sizes differ only in depths and
//! widths. The model normalises its own input by default (the ImageNet mean and
//! standard deviation of pixels in [0, 255]), so it takes pixels in [0, 255]
//! ([`super::PreprocessMode::Identity`]: Keras's `convnext.preprocess_input` passes its
//! input through).

use super::{check_classes, input, obtain_input_shape, pooling, Options};
use crate::activations::ActivationFn;
use crate::error::Result;
use crate::kernels::Padding;
use crate::layers::{
    Activation, Conv2D, Dense, GlobalAveragePooling2D, Layer, LayerNormalization, LayerScale,
    Normalization, NumpyOp, OpKind,
};
use crate::model::{Call, Model, Sequential, SequentialItem, SymbolicTensor};

/// Keras's `layers.LayerNormalization(epsilon=1e-6)`, as every ConvNeXt layer norm.
fn layer_norm() -> LayerNormalization {
    LayerNormalization::new().epsilon(1e-6)
}

/// A Keras `Sequential(layers, name=name)` called on `x`: Keras builds it on `x`'s
/// shape, with an auto-named InputLayer of its own.
fn sequential(
    x: &SymbolicTensor,
    layers: Vec<SequentialItem>,
    name: &str,
) -> Result<SymbolicTensor> {
    let shape = x.shape()?;
    let mut items = vec![SequentialItem::from(input(&shape[1..]))];
    items.extend(layers);
    let model = Sequential::new(items)?.named(name);
    Ok(model.as_layer().call(x))
}

/// Keras's `ConvNeXtBlock(projection_dim, drop_path_rate=0.0,
/// layer_scale_init_value=1e-6, name=name)`: with no stochastic depth, the residual
/// branch ends in the Activation `{name}_identity`, and the sum is a Keras operation
/// (`inputs + x`, an auto-named `keras.src.ops.numpy` Add).
fn convnext_block(inputs: &SymbolicTensor, projection_dim: usize, name: &str) -> SymbolicTensor {
    let x = Conv2D::new(projection_dim, (7, 7))
        .padding(Padding::Same)
        .groups(projection_dim)
        .named(&format!("{name}_depthwise_conv"))
        .call(inputs);
    let x = layer_norm().named(&format!("{name}_layernorm")).call(&x);
    let x = Dense::new(4 * projection_dim)
        .named(&format!("{name}_pointwise_conv_1"))
        .call(&x);
    let x = Activation::new(ActivationFn::Gelu)
        .named(&format!("{name}_gelu"))
        .call(&x);
    let x = Dense::new(projection_dim)
        .named(&format!("{name}_pointwise_conv_2"))
        .call(&x);
    let x = LayerScale::new(1e-6, projection_dim)
        .named(&format!("{name}_layer_scale"))
        .call(&x);
    let x = Activation::new(ActivationFn::Linear)
        .named(&format!("{name}_identity"))
        .call(&x);
    NumpyOp::new(OpKind::Add).call(&[inputs.clone(), x])
}

/// Keras's `ConvNeXt(depths, projection_dims, drop_path_rate=0.0,
/// layer_scale_init_value=1e-6, default_size=224, name, include_preprocessing, …)` for
/// weights `None`.
fn convnext(
    options: &Options,
    depths: [usize; 4],
    projection_dims: [usize; 4],
    name: &str,
    include_preprocessing: bool,
) -> Result<Model> {
    check_classes(options)?;
    let shape = obtain_input_shape(options, 224, 32)?;
    let img_input = input(&shape);
    let mut x = img_input.clone();
    // Keras's PreStem, only on three channels.
    if include_preprocessing && shape[2] == Some(3) {
        let mean = [0.485, 0.456, 0.406].map(|m: f64| m * 255.0).to_vec();
        let variance = [0.229, 0.224, 0.225]
            .map(|s: f64| (s * 255.0) * (s * 255.0))
            .to_vec();
        x = Normalization::with_statistics(mean, variance)
            .named(&format!("{name}_prestem_normalization"))
            .call(&x);
    }
    for (i, (&depth, &dim)) in depths.iter().zip(&projection_dims).enumerate() {
        x = if i == 0 {
            sequential(
                &x,
                vec![
                    Conv2D::new(dim, (4, 4))
                        .strides((4, 4))
                        .named(&format!("{name}_stem_conv"))
                        .into(),
                    layer_norm().named(&format!("{name}_stem_layernorm")).into(),
                ],
                &format!("{name}_stem"),
            )?
        } else {
            let j = i - 1;
            sequential(
                &x,
                vec![
                    layer_norm()
                        .named(&format!("{name}_downsampling_layernorm_{j}"))
                        .into(),
                    Conv2D::new(dim, (2, 2))
                        .strides((2, 2))
                        .named(&format!("{name}_downsampling_conv_{j}"))
                        .into(),
                ],
                &format!("{name}_downsampling_block_{j}"),
            )?
        };
        for block in 0..depth {
            x = convnext_block(&x, dim, &format!("{name}_stage_{i}_block_{block}"));
        }
    }
    let y = if options.include_top {
        let x = GlobalAveragePooling2D::new()
            .named(&format!("{name}_head_gap"))
            .call(&x);
        let x = layer_norm()
            .named(&format!("{name}_head_layernorm"))
            .call(&x);
        Dense::new(options.classes)
            .activation(options.classifier_activation)
            .named(&format!("{name}_head_dense"))
            .call(&x)
    } else {
        // Without the top Keras normalises the (pooled or not) features, always.
        let x = pooling(&x, options, None, None);
        layer_norm().call(&x)
    };
    Ok(Model::new(&img_input, &y)?.named(name))
}

/// `keras.applications.ConvNeXtTiny(weights=None, include_preprocessing=…, …)`: model
/// `convnext_tiny`, depths 3, 3, 9, 3 and widths 96 to 768, 28,589,128 parameters with
/// the default top; expects [`super::PreprocessMode::Identity`] input (pixels in
/// [0, 255]; without `include_preprocessing`, or with other than three channels,
/// pixels already normalised).
pub fn convnext_tiny(options: &Options, include_preprocessing: bool) -> Result<Model> {
    convnext(
        options,
        [3, 3, 9, 3],
        [96, 192, 384, 768],
        "convnext_tiny",
        include_preprocessing,
    )
}

/// `keras.applications.ConvNeXtSmall(weights=None, …)`: model `convnext_small`, depths
/// 3, 3, 27, 3 and widths 96 to 768; as [`convnext_tiny`] otherwise.
pub fn convnext_small(options: &Options, include_preprocessing: bool) -> Result<Model> {
    convnext(
        options,
        [3, 3, 27, 3],
        [96, 192, 384, 768],
        "convnext_small",
        include_preprocessing,
    )
}

/// `keras.applications.ConvNeXtBase(weights=None, …)`: model `convnext_base`, depths 3,
/// 3, 27, 3 and widths 128 to 1024; as [`convnext_tiny`] otherwise.
pub fn convnext_base(options: &Options, include_preprocessing: bool) -> Result<Model> {
    convnext(
        options,
        [3, 3, 27, 3],
        [128, 256, 512, 1024],
        "convnext_base",
        include_preprocessing,
    )
}

/// `keras.applications.ConvNeXtLarge(weights=None, …)`: model `convnext_large`, depths
/// 3, 3, 27, 3 and widths 192 to 1536; as [`convnext_tiny`] otherwise.
pub fn convnext_large(options: &Options, include_preprocessing: bool) -> Result<Model> {
    convnext(
        options,
        [3, 3, 27, 3],
        [192, 384, 768, 1536],
        "convnext_large",
        include_preprocessing,
    )
}

/// `keras.applications.ConvNeXtXLarge(weights=None, …)`: model `convnext_xlarge`,
/// depths 3, 3, 27, 3 and widths 256 to 2048; as [`convnext_tiny`] otherwise.
pub fn convnext_xlarge(options: &Options, include_preprocessing: bool) -> Result<Model> {
    convnext(
        options,
        [3, 3, 27, 3],
        [256, 512, 1024, 2048],
        "convnext_xlarge",
        include_preprocessing,
    )
}
