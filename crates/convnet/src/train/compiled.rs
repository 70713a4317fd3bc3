//! What Keras's `model.compile(optimizer, loss, metrics)` sets up, kept beside the model
//! rather than inside it: a [`Model`] is a graph and its executor, and a
//! [`CompiledModel`] is that model with the optimizer, losses and metrics that train it.
//!
//! ```
//! use convnet::layers::Dense;
//! use convnet::train::{FitOptions, Optimizer};
//! use convnet::{sequential, Input, Tensor};
//!
//! let model = sequential![Input::new([4]), Dense::new(3)]?;
//! let mut model = model.compile_named(Optimizer::sgd(0.1), "mse", &[])?;
//! let x = Tensor::full([8, 4], 0.5);
//! let y = Tensor::zeros([8, 3]);
//! let history = model.fit(&[x], &[y], FitOptions { epochs: 2, verbose: 0, ..FitOptions::default() })?;
//! assert_eq!(history.get("loss").map(<[f64]>::len), Some(2));
//! # Ok::<(), convnet::Error>(())
//! ```

use super::losses::{Loss, LossFn};
use super::metrics::Metric;
use super::optimizers::Optimizer;
use crate::error::{Error, Result};
use crate::model::Model;
use std::ops::{Deref, DerefMut};

/// What `compile` fixed: the optimizer, one loss per output, the metrics per output.
#[derive(Debug)]
pub struct Compiled {
    /// The optimizer, with its state.
    pub optimizer: Optimizer,
    /// One loss per output, in output order.
    pub losses: Vec<Box<dyn Loss>>,
    /// The metrics of each output, in output order.
    pub metrics: Vec<Vec<Metric>>,
}

impl Clone for Compiled {
    fn clone(&self) -> Self {
        Compiled {
            optimizer: self.optimizer.clone(),
            losses: self.losses.iter().map(|l| l.clone_loss()).collect(),
            metrics: self.metrics.clone(),
        }
    }
}

impl Compiled {
    /// The compile state for `model`: one loss for every output, or one per output,
    /// and the metrics by Keras name for each output.
    pub fn new(
        model: &Model,
        optimizer: Optimizer,
        losses: Vec<Box<dyn Loss>>,
        metrics: &[&str],
    ) -> Result<Compiled> {
        let outputs = model.outputs().len();
        let losses: Vec<Box<dyn Loss>> = match losses.len() {
            1 => (0..outputs).map(|_| losses[0].clone_loss()).collect(),
            n if n == outputs => losses,
            n => {
                return Err(Error::Model {
                    model: model.name().to_string(),
                    message: format!("has {outputs} outputs but {n} losses were given"),
                });
            }
        };
        let metrics = (0..outputs)
            .map(|_| {
                metrics
                    .iter()
                    .map(|m| Metric::new(m))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Compiled {
            optimizer,
            losses,
            metrics,
        })
    }
}

/// A model compiled for training: [`Model::compile`]'s result. It reads and runs as
/// the model it wraps (it dereferences to [`Model`]), and adds `fit`, `evaluate`,
/// `train_on_batch`, the optimizer, and a summary with the optimizer's variables.
#[derive(Clone, Debug)]
pub struct CompiledModel {
    pub(crate) model: Model,
    pub(crate) compiled: Compiled,
}

impl Deref for CompiledModel {
    type Target = Model;
    fn deref(&self) -> &Model {
        &self.model
    }
}

impl DerefMut for CompiledModel {
    fn deref_mut(&mut self) -> &mut Model {
        &mut self.model
    }
}

impl Model {
    /// Keras's `model.compile(optimizer, loss, metrics)`: one loss for every output, or
    /// one per output; metrics by Keras name (`accuracy`, `mae`, …).
    pub fn compile(
        self,
        optimizer: Optimizer,
        losses: Vec<Box<dyn Loss>>,
        metrics: &[&str],
    ) -> Result<CompiledModel> {
        let compiled = Compiled::new(&self, optimizer, losses, metrics)?;
        Ok(CompiledModel {
            model: self,
            compiled,
        })
    }

    /// `compile` with the loss by Keras name: `model.compile_named(Optimizer::adam(1e-3),
    /// "sparse_categorical_crossentropy", &["accuracy"])`.
    pub fn compile_named(
        self,
        optimizer: Optimizer,
        loss: &str,
        metrics: &[&str],
    ) -> Result<CompiledModel> {
        self.compile(optimizer, vec![Box::new(LossFn::from_name(loss)?)], metrics)
    }
}

impl CompiledModel {
    /// A model with a compile state made for it (as [`Compiled::new`] makes one); an
    /// error names the model when the state has another number of outputs.
    pub fn from_parts(model: Model, compiled: Compiled) -> Result<CompiledModel> {
        let outputs = model.outputs().len();
        if compiled.losses.len() != outputs || compiled.metrics.len() != outputs {
            return Err(Error::Model {
                model: model.name().to_string(),
                message: format!(
                    "has {outputs} outputs but the compile state has {} losses",
                    compiled.losses.len()
                ),
            });
        }
        Ok(CompiledModel { model, compiled })
    }

    /// Keras's `model.compile(...)` again, as after changing which layers train: the
    /// new optimizer, losses and metrics replace the old ones, state and all.
    pub fn compile(
        self,
        optimizer: Optimizer,
        losses: Vec<Box<dyn Loss>>,
        metrics: &[&str],
    ) -> Result<CompiledModel> {
        self.model.compile(optimizer, losses, metrics)
    }

    /// [`CompiledModel::compile`] with the loss by Keras name.
    pub fn compile_named(
        self,
        optimizer: Optimizer,
        loss: &str,
        metrics: &[&str],
    ) -> Result<CompiledModel> {
        self.model.compile_named(optimizer, loss, metrics)
    }

    /// The model, without its compile state.
    pub fn into_model(self) -> Model {
        self.model
    }

    /// The model and its compile state, apart.
    pub fn into_parts(self) -> (Model, Compiled) {
        (self.model, self.compiled)
    }

    /// What `compile` fixed.
    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// The optimizer, with its state.
    pub fn optimizer(&self) -> &Optimizer {
        &self.compiled.optimizer
    }

    /// The optimizer, mutably (to change its learning rate or state).
    pub fn optimizer_mut(&mut self) -> &mut Optimizer {
        &mut self.compiled.optimizer
    }

    /// Prints the summary to standard output, with the optimizer's variables once it
    /// has stepped, as Keras prints a compiled model's.
    pub fn summary(&self) {
        print!("{}", self.summary_string());
    }

    /// The summary for the width standard output has now (see [`Model::summary_string`]).
    pub fn summary_string(&self) -> String {
        self.summary_for_columns(crate::model::terminal_columns())
    }

    /// The summary as Keras prints it on a terminal `columns` wide: a compiled model
    /// whose optimizer has variables lists them and counts them in the total.
    pub fn summary_for_columns(&self, columns: usize) -> String {
        self.model
            .summary_with_optimizer(columns, self.compiled.optimizer.variable_counts())
    }
}
