//! The design notes' Sequential model. Keras's `Sequential` takes its layers as one list
//! — `Sequential([layer, layer])`, not `Sequential(layer, layer)` — and so does convnet:
//! `sequential![…]` (or `Sequential::new(vec![…])`), then `add` for more.
//!
//!     cargo run --release --example sequential

use convnet::layers::{Conv2D, Dense, Flatten, MaxPooling2D};
use convnet::model::Input;
use convnet::ActivationFn;

fn main() -> convnet::Result<()> {
    let mut model = convnet::sequential![
        Input::new([28, 28, 1]),
        Conv2D::new(32, (3, 3)).activation(ActivationFn::Relu),
        MaxPooling2D::new((2, 2)),
        Flatten::new(),
    ]?;
    model.add(Dense::new(10).activation(ActivationFn::Softmax))?;
    model.summary();
    Ok(())
}
