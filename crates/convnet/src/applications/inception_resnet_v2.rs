//! keras.applications' InceptionResNetV2 (keras/src/applications/inception_resnet_v2.py):
//! InceptionV3's stem, then Inception modules whose branches, concatenated and projected
//! back to the block's width by a 1x1 convolution, are added to the block's input at a
//! fixed scale (a `CustomScaleLayer`): ten `block35`, twenty `block17` and ten `block8`
//! blocks, between the reduction modules `mixed_6a` and `mixed_7a`.

use super::inception_v3::{conv, conv2d_bn};
use super::{check_classes, input, obtain_input_shape, top, Options};
use crate::activations::ActivationFn;
use crate::error::Result;
use crate::kernels::Padding;
use crate::layers::{
    Activation, AveragePooling2D, Concatenate, Conv2D, CustomScaleLayer, Layer, MaxPooling2D,
};
use crate::model::{Call, Model, SymbolicTensor};

/// `conv2d_bn(x, filters, size, padding="valid")`, stride `strides`.
fn conv_valid(x: &SymbolicTensor, filters: usize, size: usize, strides: usize) -> SymbolicTensor {
    conv2d_bn(x, filters, (size, size), strides, Padding::Valid, None)
}

/// The strided 3x3 max pooling of the stem and the reduction modules.
fn max_pool(x: &SymbolicTensor) -> SymbolicTensor {
    MaxPooling2D::new((3, 3)).strides((2, 2)).call(x)
}

fn concatenate(branches: &[SymbolicTensor], name: &str) -> SymbolicTensor {
    Concatenate::new().axis(3).named(name).call(branches)
}

/// The kinds of Keras's `inception_resnet_block`.
#[derive(Clone, Copy)]
enum BlockType {
    /// Inception-ResNet-A, 35x35 at 299x299: 1x1, 3x3 and double 3x3 branches.
    Block35,
    /// Inception-ResNet-B, 17x17: 1x1 and factorised 7x7 branches.
    Block17,
    /// Inception-ResNet-C, 8x8: 1x1 and factorised 3x3 branches.
    Block8,
}

/// Keras's `inception_resnet_block`: the branches, concatenated (`{block}_mixed`), a
/// biased 1x1 convolution back to the input's channels (`{block}_conv`), the
/// auto-named `CustomScaleLayer` adding it times `scale` to the input, and with `relu`
/// an Activation (`{block}_ac`).
fn inception_resnet_block(
    x: &SymbolicTensor,
    scale: f64,
    block_type: BlockType,
    block_idx: usize,
    relu: bool,
) -> Result<SymbolicTensor> {
    let (branches, prefix) = match block_type {
        BlockType::Block35 => {
            let branch_0 = conv(x, 32, 1, 1);
            let branch_1 = conv(x, 32, 1, 1);
            let branch_1 = conv(&branch_1, 32, 3, 3);
            let branch_2 = conv(x, 32, 1, 1);
            let branch_2 = conv(&branch_2, 48, 3, 3);
            let branch_2 = conv(&branch_2, 64, 3, 3);
            (vec![branch_0, branch_1, branch_2], "block35")
        }
        BlockType::Block17 => {
            let branch_0 = conv(x, 192, 1, 1);
            let branch_1 = conv(x, 128, 1, 1);
            let branch_1 = conv(&branch_1, 160, 1, 7);
            let branch_1 = conv(&branch_1, 192, 7, 1);
            (vec![branch_0, branch_1], "block17")
        }
        BlockType::Block8 => {
            let branch_0 = conv(x, 192, 1, 1);
            let branch_1 = conv(x, 192, 1, 1);
            let branch_1 = conv(&branch_1, 224, 1, 3);
            let branch_1 = conv(&branch_1, 256, 3, 1);
            (vec![branch_0, branch_1], "block8")
        }
    };
    let block_name = format!("{prefix}_{block_idx}");
    let mixed = concatenate(&branches, &format!("{block_name}_mixed"));
    // `x.shape[channel_axis]`: the channels are known whatever the image size.
    let channels = x.shape()?[3].unwrap_or(0);
    // `conv2d_bn(mixed, channels, 1, activation=None, use_bias=True)`: with a bias
    // Keras's conv2d_bn adds no batch norm, so this is its convolution alone.
    let up = Conv2D::new(channels, (1, 1))
        .padding(Padding::Same)
        .named(&format!("{block_name}_conv"))
        .call(&mixed);
    let mut x = CustomScaleLayer::new(scale).call(&[x.clone(), up]);
    if relu {
        x = Activation::new(ActivationFn::Relu)
            .named(&format!("{block_name}_ac"))
            .call(&x);
    }
    Ok(x)
}

/// `keras.applications.InceptionResNetV2(weights=None, …)`: model
/// `inception_resnet_v2`, 55,873,736 parameters with the default top at 299x299x3 (at
/// least 75x75); expects [`super::PreprocessMode::Tf`] input. The branches'
/// convolutions, batch norms and ReLUs are auto-named, as Keras leaves them; the
/// blocks' projections, ReLUs and the final `conv_7b` are named.
pub fn inception_resnet_v2(options: &Options) -> Result<Model> {
    check_classes(options)?;
    let shape = obtain_input_shape(options, 299, 75)?;
    let img_input = input(&shape);

    // Stem block: 35 x 35 x 192.
    let x = conv_valid(&img_input, 32, 3, 2);
    let x = conv_valid(&x, 32, 3, 1);
    let x = conv(&x, 64, 3, 3);
    let x = max_pool(&x);
    let x = conv_valid(&x, 80, 1, 1);
    let x = conv_valid(&x, 192, 3, 1);
    let x = max_pool(&x);

    // Mixed 5b (Inception-A block): 35 x 35 x 320.
    let branch_0 = conv(&x, 96, 1, 1);
    let branch_1 = conv(&x, 48, 1, 1);
    let branch_1 = conv(&branch_1, 64, 5, 5);
    let branch_2 = conv(&x, 64, 1, 1);
    let branch_2 = conv(&branch_2, 96, 3, 3);
    let branch_2 = conv(&branch_2, 96, 3, 3);
    let branch_pool = AveragePooling2D::new((3, 3))
        .strides((1, 1))
        .padding(Padding::Same)
        .call(&x);
    let branch_pool = conv(&branch_pool, 64, 1, 1);
    let mut x = concatenate(&[branch_0, branch_1, branch_2, branch_pool], "mixed_5b");

    // 10x block35 (Inception-ResNet-A block): 35 x 35 x 320.
    for block_idx in 1..=10 {
        x = inception_resnet_block(&x, 0.17, BlockType::Block35, block_idx, true)?;
    }

    // Mixed 6a (Reduction-A block): 17 x 17 x 1088.
    let branch_0 = conv_valid(&x, 384, 3, 2);
    let branch_1 = conv(&x, 256, 1, 1);
    let branch_1 = conv(&branch_1, 256, 3, 3);
    let branch_1 = conv_valid(&branch_1, 384, 3, 2);
    let branch_pool = max_pool(&x);
    x = concatenate(&[branch_0, branch_1, branch_pool], "mixed_6a");

    // 20x block17 (Inception-ResNet-B block): 17 x 17 x 1088.
    for block_idx in 1..=20 {
        x = inception_resnet_block(&x, 0.1, BlockType::Block17, block_idx, true)?;
    }

    // Mixed 7a (Reduction-B block): 8 x 8 x 2080.
    let branch_0 = conv(&x, 256, 1, 1);
    let branch_0 = conv_valid(&branch_0, 384, 3, 2);
    let branch_1 = conv(&x, 256, 1, 1);
    let branch_1 = conv_valid(&branch_1, 288, 3, 2);
    let branch_2 = conv(&x, 256, 1, 1);
    let branch_2 = conv(&branch_2, 288, 3, 3);
    let branch_2 = conv_valid(&branch_2, 320, 3, 2);
    let branch_pool = max_pool(&x);
    x = concatenate(&[branch_0, branch_1, branch_2, branch_pool], "mixed_7a");

    // 10x block8 (Inception-ResNet-C block): 8 x 8 x 2080, the last without its ReLU
    // and at scale 1.
    for block_idx in 1..=9 {
        x = inception_resnet_block(&x, 0.2, BlockType::Block8, block_idx, true)?;
    }
    x = inception_resnet_block(&x, 1.0, BlockType::Block8, 10, false)?;

    // Final convolution block: 8 x 8 x 1536.
    let x = conv2d_bn(&x, 1536, (1, 1), 1, Padding::Same, Some("conv_7b"));
    let y = top(&x, options, Some("avg_pool"), None, None);
    Ok(Model::new(&img_input, &y)?.named("inception_resnet_v2"))
}
