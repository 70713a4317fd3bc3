//! Models: Keras's two ways to build one. [`Sequential`] takes one list of layers; the
//! functional API calls layers on symbolic tensors from [`Input`] and cuts a [`Model`]
//! out of the result, with branches, merges, several inputs and outputs, and shared
//! layers. Both give the same [`Model`], which runs, trains and prints its summary.

mod fusion;
mod graph;
mod memory;
mod nested;
mod placement;
mod predict;
mod sequential;
mod summary;
mod symbolic;

pub use graph::Model;
pub use memory::{memory_limit, set_memory_limit, Activation, MemoryPlan};
pub use nested::{nested_model, nested_model_mut, set_trainable, weights_in_training, NestedModel};
pub(crate) use predict::{batch_shapes, sample_count, slice_rows};
pub use sequential::{Sequential, SequentialItem};
pub(crate) use summary::terminal_columns;
pub use summary::{readable_size, thousands};
pub use symbolic::{Call, Input, SharedLayer, SymbolicInputs, SymbolicTensor};
