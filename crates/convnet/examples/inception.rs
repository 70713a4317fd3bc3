//! The design notes' parallel-convolution (Inception) block, written as the Keras program
//! in the notes reads: three branches of 1x1, 3x3 and 5x5 convolutions with 'same'
//! padding over one 224x224x3 input, concatenated on depth into 224x224x192.
//!
//!     cargo run --release --example inception

use convnet::layers::{Concatenate, Conv2D};
use convnet::model::{Call, Input, Model, SymbolicTensor};
use convnet::ActivationFn;
use convnet::Padding;

fn parallel_convolution(x: &SymbolicTensor) -> SymbolicTensor {
    let a = Conv2D::new(64, (1, 1))
        .padding(Padding::Same)
        .activation(ActivationFn::Relu)
        .call(x);
    let b = Conv2D::new(64, (3, 3))
        .padding(Padding::Same)
        .activation(ActivationFn::Relu)
        .call(x);
    let c = Conv2D::new(64, (5, 5))
        .padding(Padding::Same)
        .activation(ActivationFn::Relu)
        .call(x);
    Concatenate::new().call(&[a, b, c])
}

fn main() -> convnet::Result<()> {
    let input = Input::new([224, 224, 3]);
    let model = Model::new(&input, parallel_convolution(&input))?;
    model.summary();
    Ok(())
}
