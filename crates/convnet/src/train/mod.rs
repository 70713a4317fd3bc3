//! Training, as the design notes walk through it: a forward pass, a loss, gradients by
//! backpropagation, an optimizer's update, repeated over batches and epochs — with
//! Keras's `compile` / `fit` / `evaluate` / `predict`, losses, optimizers, metrics,
//! callbacks and progress display.

pub mod callbacks;
mod compiled;
pub mod distributed;
mod fit;
pub mod losses;
pub mod metrics;
pub mod optimizers;
mod penalties;
#[cfg(feature = "plots")]
pub(crate) mod plot;
mod progress;
pub mod schedules;
mod state;
pub mod tensorboard;

pub(crate) use callbacks::Monitor;
pub use callbacks::{
    CSVLogger, Callback, EarlyStopping, LambdaCallback, LearningRateScheduler, Logs, Mode,
    ReduceLROnPlateau, TerminateOnNaN, TrainContext,
};
pub use compiled::{Compiled, CompiledModel};
#[cfg(feature = "mpi")]
pub use distributed::MpiCommunicator;
pub use distributed::{Communicator, SingleProcess};
pub use fit::{FitOptions, History};
pub use losses::{Loss, LossFn};
pub use metrics::Metric;
pub use optimizers::Optimizer;
pub use schedules::LearningRate;
pub use state::TrainingState;
pub use tensorboard::{TensorBoard, UpdateFreq};
