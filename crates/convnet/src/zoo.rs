//! Built-in architectures: the models of the design notes and the reference CNN.

use crate::error::Result;
use crate::kernels::Padding;
use crate::layers::{Concatenate, Conv2D, Dense, Dropout, Flatten, MaxPooling2D};
use crate::model::{Call, Input, Model, SymbolicTensor};

/// The reference Fashion-MNIST CNN: Conv2D 32 → MaxPooling2D → Conv2D 64 →
/// MaxPooling2D → Flatten → Dropout 0.5 → Dense 10 softmax (34,826 parameters).
pub fn fmnist_cnn() -> Result<Model> {
    crate::sequential![
        Input::new([28, 28, 1]),
        Conv2D::new(32, (3, 3)).activation("relu"),
        MaxPooling2D::new((2, 2)),
        Conv2D::new(64, (3, 3)).activation("relu"),
        MaxPooling2D::new((2, 2)),
        Flatten::new(),
        Dropout::new(0.5),
        Dense::new(10).activation("softmax"),
    ]
}

/// The design notes' parallel-convolution block: 1x1, 3x3 and 5x5 branches of 64
/// filters with 'same' padding, concatenated on depth.
pub fn parallel_convolution(x: &SymbolicTensor) -> SymbolicTensor {
    let a = Conv2D::new(64, (1, 1))
        .padding(Padding::Same)
        .activation("relu")
        .call(x);
    let b = Conv2D::new(64, (3, 3))
        .padding(Padding::Same)
        .activation("relu")
        .call(x);
    let c = Conv2D::new(64, (5, 5))
        .padding(Padding::Same)
        .activation("relu")
        .call(x);
    Concatenate::new().call(&[a, b, c])
}

/// The seed's Inception model on `size`x`size`x3 images (224 in the design notes).
pub fn seed_inception(size: usize) -> Result<Model> {
    let input = Input::new([size, size, 3]);
    Model::new(&input, &parallel_convolution(&input))
}
