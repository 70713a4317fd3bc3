#![warn(missing_docs)]
//! convnet: Keras-style convolutional neural networks in Rust, on a convolution engine
//! of its own.
//!
//! The data path: [`Tensor`]s (f32, NHWC) flow through [`layers`] (Keras's classes,
//! configs and weights), which call [`kernels`] (convolution, depthwise, pooling,
//! normalisation, matrix products) for the arithmetic, forward and backward.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod activations;
pub mod applications;
mod buffers;
pub mod callbacks;
pub mod collective;
pub mod constraints;
pub mod data;
pub mod error;
pub mod explain;
pub mod initializers;
pub mod io;
mod keras_object;
pub mod kernels;
pub mod layers;
pub mod model;
pub mod perf;
mod pool;
pub mod regularizers;
#[cfg(feature = "images")]
pub mod show;
pub mod tensor;
pub mod train;
mod zipped;
pub mod zoo;

pub use activations::ActivationFn;
pub use error::{Error, Result};
pub use initializers::{Initializer, Rng};
pub use kernels::Padding;
pub use layers::{Layer, Shape, Weight};
pub use model::{Call, Input, Model, Sequential, SymbolicTensor};
pub use tensor::Tensor;
