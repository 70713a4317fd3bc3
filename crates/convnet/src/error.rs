//! One error type for the library. Every variant names what is wrong — the layer, the
//! field, the file — because a user who hands convnet a Keras config or a file must be
//! able to fix it from the message alone.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// A layer's Keras config is missing a field, has a field of the wrong type or value,
    /// or names something convnet does not support.
    #[error("layer '{layer}' ({class}): field '{field}': {message}")]
    Config {
        layer: String,
        class: String,
        field: String,
        message: String,
    },

    /// A Keras class name that convnet does not implement.
    #[error("layer '{layer}': unknown layer class '{class}'")]
    UnknownClass { layer: String, class: String },

    /// Shapes that cannot work together: a kernel larger than its input, mismatched
    /// merge inputs, channels not divisible by groups, …
    #[error("layer '{layer}' ({class}): {message}")]
    Shape {
        layer: String,
        class: String,
        message: String,
    },

    /// An argument given in Rust code that cannot work (an unknown activation name, …),
    /// refused when the value is made rather than kept for later.
    #[error("invalid {argument}: {message}")]
    InvalidArgument { argument: String, message: String },

    /// A tensor-level misuse that is not tied to one layer (wrong data length, …).
    #[error("{0}")]
    Tensor(String),

    /// A model graph that cannot work: an output not reachable from the inputs, an
    /// input never used, two layers with one name, …
    #[error("model '{model}': {message}")]
    Model { model: String, message: String },

    /// Reading or writing a file failed; the message says what was wrong with it.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

impl Error {
    pub fn file(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::File {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
