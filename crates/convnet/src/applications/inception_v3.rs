//! keras.applications' InceptionV3 (keras/src/applications/inception_v3.py): a stem of
//! convolutions and eleven Inception modules `mixed0` to `mixed10` of parallel branches
//! concatenated on the channels.

use super::{check_classes, input, obtain_input_shape, top, Options};
use crate::activations::ActivationFn;
use crate::error::Result;
use crate::kernels::Padding;
use crate::layers::{
    Activation, AveragePooling2D, BatchNormalization, Concatenate, Conv2D, MaxPooling2D,
};
use crate::model::{Call, Model, SymbolicTensor};

/// Keras's `conv2d_bn` with its defaults `use_bias=False`, `activation="relu"`: a
/// bias-free convolution, BatchNormalization without `scale` (`{name}_bn`) and ReLU
/// (`{name}_ac`); unnamed, all three are auto-named. (InceptionResNetV2's blocks also call it
/// biased and linear, which is only its convolution.)
pub(super) fn conv2d_bn(
    x: &SymbolicTensor,
    filters: usize,
    kernel: (usize, usize),
    strides: usize,
    padding: Padding,
    name: Option<&str>,
) -> SymbolicTensor {
    let conv = Conv2D::new(filters, kernel)
        .strides((strides, strides))
        .padding(padding)
        .use_bias(false);
    let x = super::named(conv, name).call(x);
    let bn_name = name.map(|n| format!("{n}_bn"));
    let bn = BatchNormalization::new().axis(3).scale(false);
    let x = super::named(bn, bn_name.as_deref()).call(&x);
    let ac_name = name.map(|n| format!("{n}_ac"));
    super::named(Activation::new(ActivationFn::Relu), ac_name.as_deref()).call(&x)
}

/// `conv2d_bn` with `same` padding and stride 1, as most branches call it.
pub(super) fn conv(x: &SymbolicTensor, filters: usize, rows: usize, cols: usize) -> SymbolicTensor {
    conv2d_bn(x, filters, (rows, cols), 1, Padding::Same, None)
}

/// `conv2d_bn` strided by 2 with `valid` padding.
fn conv_reduce(x: &SymbolicTensor, filters: usize, rows: usize, cols: usize) -> SymbolicTensor {
    conv2d_bn(x, filters, (rows, cols), 2, Padding::Valid, None)
}

/// The average-pooled branch: 3x3 average pooling (stride 1, `same`), 1x1 `conv2d_bn`.
fn pool_branch(x: &SymbolicTensor, filters: usize) -> SymbolicTensor {
    let p = AveragePooling2D::new((3, 3))
        .strides((1, 1))
        .padding(Padding::Same)
        .call(x);
    conv(&p, filters, 1, 1)
}

fn concatenate(branches: &[SymbolicTensor], name: Option<&str>) -> SymbolicTensor {
    super::named(Concatenate::new().axis(3), name).call(branches)
}

/// `mixed0` to `mixed2`: 1x1, 5x5, double 3x3 and pooled branches.
fn module_a(x: &SymbolicTensor, pool_filters: usize, name: &str) -> SymbolicTensor {
    let branch1x1 = conv(x, 64, 1, 1);
    let branch5x5 = conv(x, 48, 1, 1);
    let branch5x5 = conv(&branch5x5, 64, 5, 5);
    let branch3x3dbl = conv(x, 64, 1, 1);
    let branch3x3dbl = conv(&branch3x3dbl, 96, 3, 3);
    let branch3x3dbl = conv(&branch3x3dbl, 96, 3, 3);
    let branch_pool = pool_branch(x, pool_filters);
    concatenate(
        &[branch1x1, branch5x5, branch3x3dbl, branch_pool],
        Some(name),
    )
}

/// `mixed4` to `mixed7`: 1x1, factorised 7x7, double factorised 7x7 and pooled
/// branches, the 7x7 branches `width` wide inside.
fn module_c(x: &SymbolicTensor, width: usize, name: &str) -> SymbolicTensor {
    let branch1x1 = conv(x, 192, 1, 1);
    let branch7x7 = conv(x, width, 1, 1);
    let branch7x7 = conv(&branch7x7, width, 1, 7);
    let branch7x7 = conv(&branch7x7, 192, 7, 1);
    let branch7x7dbl = conv(x, width, 1, 1);
    let branch7x7dbl = conv(&branch7x7dbl, width, 7, 1);
    let branch7x7dbl = conv(&branch7x7dbl, width, 1, 7);
    let branch7x7dbl = conv(&branch7x7dbl, width, 7, 1);
    let branch7x7dbl = conv(&branch7x7dbl, 192, 1, 7);
    let branch_pool = pool_branch(x, 192);
    concatenate(
        &[branch1x1, branch7x7, branch7x7dbl, branch_pool],
        Some(name),
    )
}

/// `keras.applications.InceptionV3(weights=None, …)`: model `inception_v3`, 23,851,784
/// parameters with the default top at 299x299x3 (at least 75x75); expects
/// [`super::PreprocessMode::Tf`] input. Its convolutions, batch norms and ReLUs are
/// auto-named, as Keras leaves them (`conv2d`, `batch_normalization_93`, …).
pub fn inception_v3(options: &Options) -> Result<Model> {
    check_classes(options)?;
    let shape = obtain_input_shape(options, 299, 75)?;
    let img_input = input(&shape);
    let x = conv_reduce(&img_input, 32, 3, 3);
    let x = conv2d_bn(&x, 32, (3, 3), 1, Padding::Valid, None);
    let x = conv(&x, 64, 3, 3);
    let x = MaxPooling2D::new((3, 3)).strides((2, 2)).call(&x);
    let x = conv2d_bn(&x, 80, (1, 1), 1, Padding::Valid, None);
    let x = conv2d_bn(&x, 192, (3, 3), 1, Padding::Valid, None);
    let x = MaxPooling2D::new((3, 3)).strides((2, 2)).call(&x);

    let x = module_a(&x, 32, "mixed0");
    let x = module_a(&x, 64, "mixed1");
    let x = module_a(&x, 64, "mixed2");

    // mixed3: strided 3x3, strided double 3x3 and max-pooled branches.
    let branch3x3 = conv_reduce(&x, 384, 3, 3);
    let branch3x3dbl = conv(&x, 64, 1, 1);
    let branch3x3dbl = conv(&branch3x3dbl, 96, 3, 3);
    let branch3x3dbl = conv_reduce(&branch3x3dbl, 96, 3, 3);
    let branch_pool = MaxPooling2D::new((3, 3)).strides((2, 2)).call(&x);
    let x = concatenate(&[branch3x3, branch3x3dbl, branch_pool], Some("mixed3"));

    let x = module_c(&x, 128, "mixed4");
    let x = module_c(&x, 160, "mixed5");
    let x = module_c(&x, 160, "mixed6");
    let x = module_c(&x, 192, "mixed7");

    // mixed8: strided 3x3 and 7x7x3 branches and max pooling.
    let branch3x3 = conv(&x, 192, 1, 1);
    let branch3x3 = conv_reduce(&branch3x3, 320, 3, 3);
    let branch7x7x3 = conv(&x, 192, 1, 1);
    let branch7x7x3 = conv(&branch7x7x3, 192, 1, 7);
    let branch7x7x3 = conv(&branch7x7x3, 192, 7, 1);
    let branch7x7x3 = conv_reduce(&branch7x7x3, 192, 3, 3);
    let branch_pool = MaxPooling2D::new((3, 3)).strides((2, 2)).call(&x);
    let mut x = concatenate(&[branch3x3, branch7x7x3, branch_pool], Some("mixed8"));

    // mixed9 and mixed10: expanded filter banks.
    for i in 0..2 {
        let branch1x1 = conv(&x, 320, 1, 1);
        let branch3x3 = conv(&x, 384, 1, 1);
        let branch3x3_1 = conv(&branch3x3, 384, 1, 3);
        let branch3x3_2 = conv(&branch3x3, 384, 3, 1);
        let branch3x3 = concatenate(&[branch3x3_1, branch3x3_2], Some(&format!("mixed9_{i}")));
        let branch3x3dbl = conv(&x, 448, 1, 1);
        let branch3x3dbl = conv(&branch3x3dbl, 384, 3, 3);
        let branch3x3dbl_1 = conv(&branch3x3dbl, 384, 1, 3);
        let branch3x3dbl_2 = conv(&branch3x3dbl, 384, 3, 1);
        let branch3x3dbl = concatenate(&[branch3x3dbl_1, branch3x3dbl_2], None);
        let branch_pool = pool_branch(&x, 192);
        x = concatenate(
            &[branch1x1, branch3x3, branch3x3dbl, branch_pool],
            Some(&format!("mixed{}", 9 + i)),
        );
    }
    let y = top(&x, options, Some("avg_pool"), None, None);
    Ok(Model::new(&img_input, &y)?.named("inception_v3"))
}
