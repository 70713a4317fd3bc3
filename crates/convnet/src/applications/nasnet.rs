//! keras.applications' NASNet (keras/src/applications/nasnet.py): the NASNet-A cells
//! found by architecture search. A strided stem convolution, two reduction cells, then
//! three stacks of `num_blocks` normal cells with a reduction cell between them; each
//! cell takes the two previous cells' outputs (`ip`, the last, and `p`, the one before),
//! `p` first adjusted to `ip`'s size and width by `_adjust_block`.

use super::mobilenet_v2::correct_pad;
use super::{check_classes, input, obtain_input_shape, top, Options};
use crate::activations::ActivationFn;
use crate::error::Result;
use crate::initializers::Initializer;
use crate::kernels::Padding;
use crate::layers::{
    Activation, Add, AveragePooling2D, BatchNormalization, Concatenate, Conv2D, Cropping2D, Layer,
    MaxPooling2D, SeparableConv2D, ZeroPadding2D,
};
use crate::model::{Call, Model, SymbolicTensor};

/// The arguments of Keras's `NASNet(…)` that NASNetMobile and NASNetLarge fix.
struct NasNetArgs {
    penultimate_filters: usize,
    num_blocks: usize,
    stem_block_filters: usize,
    skip_reduction: bool,
    filter_multiplier: usize,
    default_size: usize,
    name: &'static str,
}

/// NASNet's `kernel_initializer="he_normal"`.
fn he_normal() -> Initializer {
    Initializer::new("he_normal").expect("a built-in initializer")
}

/// NASNet's BatchNormalization: last axis, momentum 0.9997, epsilon 1e-3.
fn batch_norm(name: &str) -> BatchNormalization {
    BatchNormalization::new()
        .axis(-1)
        .momentum(0.9997)
        .epsilon(1e-3)
        .named(name)
}

/// An auto-named ReLU Activation.
fn relu(x: &SymbolicTensor) -> SymbolicTensor {
    Activation::new(ActivationFn::Relu).call(x)
}

/// A bias-free `same` 1x1 convolution of `filters` with the He-normal initializer.
fn pointwise(x: &SymbolicTensor, filters: usize, name: &str) -> SymbolicTensor {
    Conv2D::new(filters, (1, 1))
        .padding(Padding::Same)
        .use_bias(false)
        .kernel_initializer(he_normal())
        .named(name)
        .call(x)
}

fn add(inputs: [SymbolicTensor; 2], name: Option<&str>) -> SymbolicTensor {
    super::named(Add::new(), name).call(&inputs)
}

/// A 3x3 pooling made by `new` (MaxPooling2D or AveragePooling2D), `valid` and
/// strided by 2, or `same` with stride 1.
fn pool3(
    new: fn((usize, usize)) -> crate::layers::Pooling2D,
    x: &SymbolicTensor,
    strided: bool,
    name: &str,
) -> SymbolicTensor {
    let (strides, padding) = if strided {
        ((2, 2), Padding::Valid)
    } else {
        ((1, 1), Padding::Same)
    };
    new((3, 3))
        .strides(strides)
        .padding(padding)
        .named(name)
        .call(x)
}

/// Keras's `_separable_conv_block`: twice ReLU, separable convolution of `kernel`
/// (`separable_conv_{1,2}_{block_id}`) and batch norm; the first convolution strided by
/// 2 when `strided`, on the input zero-padded by `correct_pad` and with `valid` padding.
fn separable_conv_block(
    ip: &SymbolicTensor,
    filters: usize,
    kernel: usize,
    strided: bool,
    block_id: &str,
) -> Result<SymbolicTensor> {
    let mut x = relu(ip);
    let (strides, padding) = if strided {
        x = ZeroPadding2D::new(correct_pad(&x, kernel)?)
            .named(&format!("separable_conv_1_pad_{block_id}"))
            .call(&x);
        ((2, 2), Padding::Valid)
    } else {
        ((1, 1), Padding::Same)
    };
    let x = SeparableConv2D::new(filters, (kernel, kernel))
        .strides(strides)
        .padding(padding)
        .use_bias(false)
        .named(&format!("separable_conv_1_{block_id}"))
        .call(&x);
    let x = batch_norm(&format!("separable_conv_1_bn_{block_id}")).call(&x);
    let x = relu(&x);
    let x = SeparableConv2D::new(filters, (kernel, kernel))
        .padding(Padding::Same)
        .use_bias(false)
        .named(&format!("separable_conv_2_{block_id}"))
        .call(&x);
    Ok(batch_norm(&format!("separable_conv_2_bn_{block_id}")).call(&x))
}

/// Keras's `_adjust_block`: `p` matched to `ip`. None (the first cell) is `ip` itself;
/// a `p` of another width (Keras compares the columns, `shape[-2]`, an unknown size
/// equal to an unknown size) is halved by two strided 1x1 average poolings, the second
/// on `p` shifted by one pixel (zero-padded bottom-right, cropped top-left), each
/// projected to `filters / 2` and concatenated; a `p` of other channels is projected by
/// a 1x1 convolution.
fn adjust_block(
    p: Option<&SymbolicTensor>,
    ip: &SymbolicTensor,
    filters: usize,
    block_id: &str,
) -> Result<SymbolicTensor> {
    let Some(p) = p else {
        return Ok(ip.clone());
    };
    let (p_shape, ip_shape) = (p.shape()?, ip.shape()?);
    if p_shape[2] != ip_shape[2] {
        let p = Activation::new(ActivationFn::Relu)
            .named(&format!("adjust_relu_1_{block_id}"))
            .call(p);
        let avg_pool = |x: &SymbolicTensor, name: String| {
            AveragePooling2D::new((1, 1))
                .strides((2, 2))
                .padding(Padding::Valid)
                .named(&name)
                .call(x)
        };
        let p1 = avg_pool(&p, format!("adjust_avg_pool_1_{block_id}"));
        let p1 = pointwise(&p1, filters / 2, &format!("adjust_conv_1_{block_id}"));
        let p2 = ZeroPadding2D::new([[0, 1], [0, 1]]).call(&p);
        let p2 = Cropping2D::new([[1, 0], [1, 0]]).call(&p2);
        let p2 = avg_pool(&p2, format!("adjust_avg_pool_2_{block_id}"));
        let p2 = pointwise(&p2, filters / 2, &format!("adjust_conv_2_{block_id}"));
        let p = Concatenate::new().axis(-1).call(&[p1, p2]);
        Ok(batch_norm(&format!("adjust_bn_{block_id}")).call(&p))
    } else if p_shape[3] != Some(filters) {
        let p = relu(p);
        let p = pointwise(&p, filters, &format!("adjust_conv_projection_{block_id}"));
        Ok(batch_norm(&format!("adjust_bn_{block_id}")).call(&p))
    } else {
        Ok(p.clone())
    }
}

/// ReLU, the cell's 1x1 convolution `{kind}_conv_1_{block_id}` and batch norm
/// `{kind}_bn_1_{block_id}`, on a cell's input `ip`.
fn cell_input(ip: &SymbolicTensor, filters: usize, kind: &str, block_id: &str) -> SymbolicTensor {
    let h = relu(ip);
    let h = pointwise(&h, filters, &format!("{kind}_conv_1_{block_id}"));
    batch_norm(&format!("{kind}_bn_1_{block_id}")).call(&h)
}

/// Keras's `_normal_a_cell` (Fig. 4 of the paper): five pairs of separable convolutions,
/// average poolings and identities on `h` (the input, projected) and the adjusted `p`,
/// added pairwise and concatenated with `p`. Returns the cell's output and its input,
/// the next cell's `p`.
fn normal_a_cell(
    ip: &SymbolicTensor,
    p: Option<&SymbolicTensor>,
    filters: usize,
    block_id: &str,
) -> Result<(SymbolicTensor, SymbolicTensor)> {
    let p = adjust_block(p, ip, filters, block_id)?;
    let h = cell_input(ip, filters, "normal", block_id);
    let id = |what: &str| format!("normal_{what}_{block_id}");

    let x1_1 = separable_conv_block(&h, filters, 5, false, &id("left1"))?;
    let x1_2 = separable_conv_block(&p, filters, 3, false, &id("right1"))?;
    let x1 = add([x1_1, x1_2], Some(&id("add_1")));

    let x2_1 = separable_conv_block(&p, filters, 5, false, &id("left2"))?;
    let x2_2 = separable_conv_block(&p, filters, 3, false, &id("right2"))?;
    let x2 = add([x2_1, x2_2], Some(&id("add_2")));

    let x3 = pool3(AveragePooling2D::new, &h, false, &id("left3"));
    let x3 = add([x3, p.clone()], Some(&id("add_3")));

    let x4_1 = pool3(AveragePooling2D::new, &p, false, &id("left4"));
    let x4_2 = pool3(AveragePooling2D::new, &p, false, &id("right4"));
    let x4 = add([x4_1, x4_2], Some(&id("add_4")));

    let x5 = separable_conv_block(&h, filters, 3, false, &id("left5"))?;
    let x5 = add([x5, h], Some(&id("add_5")));

    let x = Concatenate::new()
        .axis(-1)
        .named(&id("concat"))
        .call(&[p, x1, x2, x3, x4, x5]);
    Ok((x, ip.clone()))
}

/// Keras's `_reduction_a_cell` (Fig. 4 of the paper): strided separable convolutions
/// and poolings (on `h` zero-padded by `correct_pad`, `reduction_pad_1_{block_id}`)
/// halving the size, added pairwise and concatenated. Keras's names are irregular
/// (`reduction_add_1`, `reduction_add_2`, then `reduction_add3`, an auto-named `add`,
/// `reduction_add4`; the fifth pair's separable block reuses `reduction_left4`), and
/// kept. Returns the cell's output and its input.
fn reduction_a_cell(
    ip: &SymbolicTensor,
    p: Option<&SymbolicTensor>,
    filters: usize,
    block_id: &str,
) -> Result<(SymbolicTensor, SymbolicTensor)> {
    let p = adjust_block(p, ip, filters, block_id)?;
    let h = cell_input(ip, filters, "reduction", block_id);
    let h3 = ZeroPadding2D::new(correct_pad(&h, 3)?)
        .named(&format!("reduction_pad_1_{block_id}"))
        .call(&h);
    let id = |what: &str| format!("reduction_{what}_{block_id}");

    let x1_1 = separable_conv_block(&h, filters, 5, true, &id("left1"))?;
    let x1_2 = separable_conv_block(&p, filters, 7, true, &id("right1"))?;
    let x1 = add([x1_1, x1_2], Some(&id("add_1")));

    let x2_1 = pool3(MaxPooling2D::new, &h3, true, &id("left2"));
    let x2_2 = separable_conv_block(&p, filters, 7, true, &id("right2"))?;
    let x2 = add([x2_1, x2_2], Some(&id("add_2")));

    let x3_1 = pool3(AveragePooling2D::new, &h3, true, &id("left3"));
    let x3_2 = separable_conv_block(&p, filters, 5, true, &id("right3"))?;
    let x3 = add([x3_1, x3_2], Some(&id("add3")));

    let x4 = pool3(AveragePooling2D::new, &x1, false, &id("left4"));
    let x4 = add([x2.clone(), x4], None);

    let x5_1 = separable_conv_block(&x1, filters, 3, false, &id("left4"))?;
    let x5_2 = pool3(MaxPooling2D::new, &h3, true, &id("right5"));
    let x5 = add([x5_1, x5_2], Some(&id("add4")));

    let x = Concatenate::new()
        .axis(-1)
        .named(&id("concat"))
        .call(&[x2, x3, x4, x5]);
    Ok((x, ip.clone()))
}

/// Keras's `NASNet(…)` with `weights=None` for channels-last data.
fn nasnet(options: &Options, args: &NasNetArgs) -> Result<Model> {
    check_classes(options)?;
    let shape = obtain_input_shape(options, args.default_size, 32)?;
    let img_input = input(&shape);
    let multiplier = args.filter_multiplier;
    let filters = args.penultimate_filters / 24;
    let num_blocks = args.num_blocks;

    let x = Conv2D::new(args.stem_block_filters, (3, 3))
        .strides((2, 2))
        .use_bias(false)
        .kernel_initializer(he_normal())
        .named("stem_conv1")
        .call(&img_input);
    let x = batch_norm("stem_bn1").call(&x);

    let (x, p) = reduction_a_cell(&x, None, filters / (multiplier * multiplier), "stem_1")?;
    let (mut x, mut p) = reduction_a_cell(&x, Some(&p), filters / multiplier, "stem_2")?;

    for i in 0..num_blocks {
        (x, p) = normal_a_cell(&x, Some(&p), filters, &i.to_string())?;
    }

    // Reduction cells return their input as the next `p`; with `skip_reduction` the
    // normal cells after them take the last normal cell's input instead.
    let widths = [filters * multiplier, filters * multiplier * multiplier];
    for (stack, width) in (1..=2).zip(widths) {
        let p0;
        (x, p0) = reduction_a_cell(
            &x,
            Some(&p),
            width,
            &format!("reduce_{}", stack * num_blocks),
        )?;
        if !args.skip_reduction {
            p = p0;
        }
        for i in 0..num_blocks {
            let block_id = (stack * num_blocks + i + 1).to_string();
            (x, p) = normal_a_cell(&x, Some(&p), width, &block_id)?;
        }
    }

    let x = relu(&x);
    let y = top(&x, options, None, None, None);
    Ok(Model::new(&img_input, &y)?.named(args.name))
}

/// `keras.applications.NASNetMobile(weights=None, …)`: model `nasnet_mobile`, NASNet-A
/// (4 @ 1056), 5,326,716 parameters with the default top at 224x224x3 (at least 32x32);
/// expects [`super::PreprocessMode::Tf`] input. Without the top and without
/// `input_shape` Keras builds it at 224x224x3 too, not on an open size. Any size from
/// 32x32 builds with fresh weights (Keras asks for 224x224 only with its ImageNet
/// weights).
pub fn nasnet_mobile(options: &Options) -> Result<Model> {
    let mut options = options.clone();
    // Keras: `if not include_top and input_shape is None: input_shape = (224, 224, 3)`.
    if !options.include_top && options.input_shape.is_none() {
        options.input_shape = Some(vec![224, 224, 3]);
    }
    nasnet(
        &options,
        &NasNetArgs {
            penultimate_filters: 1056,
            num_blocks: 4,
            stem_block_filters: 32,
            skip_reduction: false,
            filter_multiplier: 2,
            default_size: 224,
            name: "nasnet_mobile",
        },
    )
}

/// `keras.applications.NASNetLarge(weights=None, …)`: model `nasnet_large`, NASNet-A
/// (6 @ 4032), 88,949,818 parameters with the default top at 331x331x3 (at least
/// 32x32; without the top any size); expects [`super::PreprocessMode::Tf`] input.
pub fn nasnet_large(options: &Options) -> Result<Model> {
    nasnet(
        options,
        &NasNetArgs {
            penultimate_filters: 4032,
            num_blocks: 6,
            stem_block_filters: 96,
            skip_reduction: true,
            filter_multiplier: 2,
            default_size: 331,
            name: "nasnet_large",
        },
    )
}
