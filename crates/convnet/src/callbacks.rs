//! Every callback, in one place as Keras's `keras.callbacks`: the training loop's own
//! ([`crate::train`]) and those that write model files ([`crate::io`]).

pub use crate::io::{BackupAndRestore, ModelCheckpoint, SaveFreq};
pub use crate::train::tensorboard::{TensorBoard, UpdateFreq};
pub use crate::train::{
    CSVLogger, Callback, EarlyStopping, LambdaCallback, LearningRateScheduler, Logs, Mode,
    ReduceLROnPlateau, TerminateOnNaN, TrainContext,
};
