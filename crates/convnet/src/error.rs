//! One error type for the library. Every variant names what is wrong — the layer, the
//! field, the file, the argument — because a user who hands convnet a Keras config or a
//! file must be able to fix it from the message alone. Callers match on the kind; the
//! enum is `#[non_exhaustive]` so that new kinds can come without breaking them.

use std::path::PathBuf;
use std::sync::Arc;

/// `Result` with convnet's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, by kind.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system could not read or write a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: Arc<std::io::Error>,
    },

    /// A file's contents are not what its format says (a truncated archive, a tensor
    /// whose declared size does not match its bytes, …). The file's path is attached
    /// around it as [`Error::InFile`] where the file is opened.
    #[error("{message}")]
    Format {
        /// What is wrong with the contents.
        message: String,
    },

    /// A layer's Keras config is missing a field, has a field of the wrong type or value,
    /// or names something convnet does not support.
    #[error("layer '{layer}' ({class}): field '{field}': {message}")]
    Config {
        /// The layer's name.
        layer: String,
        /// Its Keras class.
        class: String,
        /// The config field.
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// A Keras class name that convnet does not implement.
    #[error("layer '{layer}': unknown layer class '{class}'")]
    UnknownClass {
        /// The layer's name.
        layer: String,
        /// The class convnet does not know.
        class: String,
    },

    /// Shapes that cannot work together in a layer: a kernel larger than its input,
    /// mismatched merge inputs, channels not divisible by groups, …
    #[error("layer '{layer}' ({class}): {message}")]
    Shape {
        /// The layer's name.
        layer: String,
        /// Its Keras class.
        class: String,
        /// What does not fit.
        message: String,
    },

    /// A model graph that cannot work: an output not reachable from the inputs, an
    /// input never used, two layers with one name, …
    #[error("model '{model}': {message}")]
    Model {
        /// The model's name.
        model: String,
        /// What is wrong with the graph or its use.
        message: String,
    },

    /// Data that does not fit what it is given to: a tensor's values and shape, inputs
    /// and targets with different sample counts, a label outside the classes, …
    #[error("{message}")]
    Data {
        /// What does not fit.
        message: String,
    },

    /// An argument given in code or on the command line that cannot work (an unknown
    /// activation name, a batch size of 0, …), refused where it is given.
    #[error("{message}")]
    InvalidArgument {
        /// The argument (`activation`, `batch_size`, `--input`, …).
        argument: String,
        /// What is wrong with it.
        message: String,
    },

    /// Something Keras can do and this build of convnet cannot (yet).
    #[error("{message}")]
    Unsupported {
        /// What is not supported, and what to do instead where there is a way.
        message: String,
    },

    /// Training stopped part way because a callback asked it to stop at once
    /// ([`crate::train::TrainContext::interrupt`]: Ctrl-C in `convnet train`), after the
    /// callbacks' `on_interrupt` ran (a backup written).
    #[error("training was interrupted in epoch {epoch} after {steps} steps")]
    Interrupted {
        /// The epoch that was running, from 1 as the progress line counts.
        epoch: usize,
        /// The steps of that epoch that were done.
        steps: usize,
    },

    /// A dataset could not be downloaded.
    #[error("could not download {url}: {message}")]
    Download {
        /// Where it was downloaded from.
        url: String,
        /// Why it failed.
        message: String,
    },

    /// An error about a file's contents, with the file.
    #[error("{path}: {source}")]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        source: Box<Error>,
    },
}

impl Error {
    /// A format error in the file at `path`.
    pub fn file(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::format(message).in_file(path)
    }

    /// A file's contents are not what its format says.
    pub fn format(message: impl std::fmt::Display) -> Self {
        Error::Format {
            message: message.to_string(),
        }
    }

    /// Data that does not fit what it is given to.
    pub fn data(message: impl std::fmt::Display) -> Self {
        Error::Data {
            message: message.to_string(),
        }
    }

    /// An argument that cannot work.
    pub fn invalid(argument: &str, message: impl std::fmt::Display) -> Self {
        Error::InvalidArgument {
            argument: argument.to_string(),
            message: message.to_string(),
        }
    }

    /// Something this build of convnet cannot do.
    pub fn unsupported(message: impl std::fmt::Display) -> Self {
        Error::Unsupported {
            message: message.to_string(),
        }
    }

    /// An operating-system error on the file at `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// This error, about the file at `path`: the context added once, where the file is
    /// opened. Errors that already name a file keep their own.
    pub fn in_file(self, path: impl Into<PathBuf>) -> Self {
        match self {
            named @ (Error::Io { .. } | Error::InFile { .. }) => named,
            other => Error::InFile {
                path: path.into(),
                source: Box::new(other),
            },
        }
    }
}
