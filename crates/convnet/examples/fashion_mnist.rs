//! The reference CNN of the design notes' training walk-through on Fashion-MNIST:
//! Conv2D 32 → MaxPooling2D → Conv2D 64 → MaxPooling2D → Flatten → Dropout 0.5 →
//! Dense 10 softmax, Adam 1e-3, batch 128, 10 epochs; then the test accuracy.
//!
//!     cargo run --release --example fashion_mnist [-- EPOCHS]
//!
//! Needs Fashion-MNIST (`apt-get install dataset-fashion-mnist`, or $CONVNET_DATA).

use convnet::data::fashion_mnist;
use convnet::train::{FitOptions, Optimizer};

fn main() -> convnet::Result<()> {
    let epochs = std::env::args()
        .nth(1)
        .and_then(|e| e.parse().ok())
        .unwrap_or(10);
    convnet::initializers::set_random_seed(42);
    let data = fashion_mnist()?;
    let scale = |mut t: convnet::Tensor| {
        t.map_inplace(|v| v / 255.0);
        t
    };
    let (x_train, x_test) = (scale(data.x_train), scale(data.x_test));

    let model = convnet::zoo::fmnist_cnn()?;
    model.summary();
    let mut model = model.compile_named(
        Optimizer::adam(1e-3),
        "sparse_categorical_crossentropy",
        &["accuracy"],
    )?;
    let options = FitOptions {
        batch_size: 128,
        epochs,
        ..FitOptions::default()
    };
    model.fit(&[x_train], &[data.y_train], options)?;
    let scores = model.evaluate(&[x_test], &[data.y_test], 256)?;
    println!(
        "test accuracy: {:.4} - test loss: {:.4}",
        scores["accuracy"], scores["loss"]
    );
    Ok(())
}
