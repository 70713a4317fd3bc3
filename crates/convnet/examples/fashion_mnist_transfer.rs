//! Transfer learning the way Keras's guide does it, on Fashion-MNIST: a base (two
//! convolution blocks with BatchNormalization) trained on the first five classes, then
//! frozen inside a new model whose fresh head learns the other five, then its top
//! convolution unfrozen and fine-tuned at a low learning rate. The BatchNormalization
//! layers stay frozen, on their moving statistics: as Keras 3 overrides a nested call's
//! `training=False` in `fit`, freezing them is what keeps the features the head learned
//! on. Prints the test accuracy on the five new classes after each phase.
//!
//!     cargo run --release --example fashion_mnist_transfer [-- EPOCHS]
//!
//! Needs Fashion-MNIST (`apt-get install dataset-fashion-mnist`, or $CONVNET_DATA).

use convnet::data::fashion_mnist;
use convnet::layers::*;
use convnet::model::{Call, Input, Model, NestedModel};
use convnet::train::{CompiledModel, FitOptions, Optimizer};
use convnet::{ActivationFn, Padding, Tensor};

/// The samples of `x`, `y` whose class is in `classes`, relabelled from 0.
fn classes(x: &Tensor, y: &Tensor, classes: std::ops::Range<usize>) -> (Tensor, Tensor) {
    let keep: Vec<usize> = (0..y.len())
        .filter(|&i| classes.contains(&(y.data()[i] as usize)))
        .collect();
    let per = x.len() / x.batch_len();
    let mut data = Vec::with_capacity(keep.len() * per);
    for &i in &keep {
        data.extend_from_slice(&x.data()[i * per..(i + 1) * per]);
    }
    let mut shape = x.shape().to_vec();
    shape[0] = keep.len();
    let labels = keep
        .iter()
        .map(|&i| y.data()[i] - classes.start as f32)
        .collect();
    (
        Tensor::new(shape, data).expect("the kept rows"),
        Tensor::new(vec![keep.len()], labels).expect("one label a row"),
    )
}

/// Conv2D → BatchNormalization → ReLU → MaxPooling2D, named `<name>_…`.
fn block(
    x: &convnet::model::SymbolicTensor,
    filters: usize,
    name: &str,
) -> convnet::model::SymbolicTensor {
    let x = Conv2D::new(filters, (3, 3))
        .padding(Padding::Same)
        .named(&format!("{name}_conv"))
        .call(x);
    let x = BatchNormalization::new()
        .named(&format!("{name}_bn"))
        .call(&x);
    let x = Activation::new(ActivationFn::Relu).call(&x);
    MaxPooling2D::new((2, 2)).call(&x)
}

fn fit(model: &mut CompiledModel, x: &Tensor, y: &Tensor, epochs: usize) -> convnet::Result<()> {
    let options = FitOptions {
        batch_size: 128,
        epochs,
        ..FitOptions::default()
    };
    model.fit(std::slice::from_ref(x), std::slice::from_ref(y), options)?;
    Ok(())
}

fn main() -> convnet::Result<()> {
    let epochs = std::env::args()
        .nth(1)
        .and_then(|e| e.parse().ok())
        .unwrap_or(2);
    convnet::initializers::set_random_seed(42);
    let data = fashion_mnist()?;
    let scale = |mut t: Tensor| {
        t.map_inplace(|v| v / 255.0);
        t
    };
    let (x_train, x_test) = (scale(data.x_train), scale(data.x_test));
    let (old_x, old_y) = classes(&x_train, &data.y_train, 0..5);
    let (new_x, new_y) = classes(&x_train, &data.y_train, 5..10);
    let (test_x, test_y) = classes(&x_test, &data.y_test, 5..10);

    // 1. The base, trained on classes 0-4 with its own head.
    let input = Input::new([28, 28, 1]);
    let x = block(&input, 32, "block1");
    let x = block(&x, 64, "block2");
    let features = GlobalAveragePooling2D::new().call(&x);
    let base = Model::new(&input, &features)?.named("base");
    let input = Input::new([28, 28, 1]);
    let x = NestedModel::new(base).call(&input);
    let y = Dense::new(5).activation(ActivationFn::Softmax).call(&x);
    let pretraining = Model::new(&input, &y)?;
    let mut pretraining = pretraining.compile_named(
        Optimizer::adam(1e-3),
        "sparse_categorical_crossentropy",
        &["accuracy"],
    )?;
    fit(&mut pretraining, &old_x, &old_y, epochs)?;
    let trained_base = convnet::model::nested_model(pretraining.get_layer("base")?)
        .expect("the base is a nested model")
        .clone();

    // 2. Frozen, with a new head for classes 5-9.
    let input = Input::new([28, 28, 1]);
    let x = NestedModel::new(trained_base).call(&input);
    let y = Dense::new(5)
        .activation(ActivationFn::Softmax)
        .named("new_head")
        .call(&x);
    let mut model = Model::new(&input, &y)?.named("transfer");
    model.set_layer_trainable("base", false)?;
    model.summary();
    let mut model = model.compile_named(
        Optimizer::adam(1e-3),
        "sparse_categorical_crossentropy",
        &["accuracy"],
    )?;
    fit(&mut model, &new_x, &new_y, epochs)?;
    let frozen = model.evaluate(
        std::slice::from_ref(&test_x),
        std::slice::from_ref(&test_y),
        256,
    )?;
    println!(
        "classes 5-9, frozen base: test accuracy {:.4}",
        frozen["accuracy"]
    );

    // 3. The top convolution unfrozen, fine-tuned at 1e-5.
    let base = convnet::model::nested_model_mut(model.get_layer_mut("base")?.as_mut())
        .expect("the base is a nested model");
    base.set_layer_trainable("block2_conv", true)?;
    model.get_layer_mut("base")?.base_mut().trainable = true;
    model.summary();
    let mut model = model.compile_named(
        Optimizer::adam(1e-5),
        "sparse_categorical_crossentropy",
        &["accuracy"],
    )?;
    fit(&mut model, &new_x, &new_y, 1)?;
    let tuned = model.evaluate(&[test_x], &[test_y], 256)?;
    println!(
        "classes 5-9, top convolution fine-tuned: test accuracy {:.4}",
        tuned["accuracy"]
    );
    Ok(())
}
