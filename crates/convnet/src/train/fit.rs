//! `compile`, `fit`, `evaluate`, `predict` and `train_on_batch`, with Keras's semantics:
//! batches of 32 by default, the validation split taken from the end before shuffling,
//! the loss as the mean over the batch (weighted by class weights when given), metrics
//! as running means over the epoch, callbacks at the epoch and batch edges.

use super::callbacks::{Callback, Logs, TrainContext};
use super::compiled::{Compiled, CompiledModel};
use super::distributed::{self, local_slice, Communicator, SingleProcess};
use super::losses::reduce;
use super::metrics::Metric;
use super::penalties::Penalties;
use super::progress::Progress;
use super::state::{Trackers, TrainingState};
use crate::error::{Error, Result};
use crate::initializers::{next_rng, rng_from_seed};
use crate::model::{batch_shapes, sample_count, slice_rows};
use crate::tensor::Tensor;
use rand::RngExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Keras's `fit` arguments, with Keras's defaults.
pub struct FitOptions {
    /// Samples per gradient step (Keras's default 32).
    pub batch_size: usize,
    /// The epoch to stop before: training runs from `initial_epoch` up to it (Keras's
    /// default 1).
    pub epochs: usize,
    /// 0 silent, 1 progress bar, 2 one line per epoch.
    pub verbose: u8,
    /// Fraction of the samples, taken from the end before shuffling, kept for validation.
    pub validation_split: f64,
    /// Inputs and targets evaluated after each epoch; when given, `validation_split` is
    /// ignored.
    pub validation_data: Option<(Vec<Tensor>, Vec<Tensor>)>,
    /// Whether to shuffle the training samples before each epoch (Keras's default true).
    pub shuffle: bool,
    /// Seed of the shuffling; without it the generator set by `set_random_seed` is used.
    pub seed: Option<u64>,
    /// The epoch to start at (0-based), to resume an earlier run (Keras's default 0).
    pub initial_epoch: usize,
    /// Weight of each class's samples in the loss (targets must be class indices or one-hot).
    pub class_weight: Option<HashMap<usize, f32>>,
    /// Callbacks run during training, in order.
    pub callbacks: Vec<Box<dyn Callback>>,
    /// Random flips and shifts of the training images (first input), seeded like the
    /// shuffling.
    pub augment: crate::data::Augmentation,
    /// The ranks of a data-parallel run ([`distributed`]): each rank takes its slice of
    /// every global batch of `batch_size` (from the same seeded shuffle), the gradients
    /// are summed over the ranks, and the logs are the whole batch's. None trains alone.
    pub communicator: Option<Arc<dyn Communicator>>,
    /// In a data-parallel run, BatchNormalization normalizes by the statistics of the
    /// whole global batch (allreduced) instead of each rank's slice (Keras's
    /// MirroredStrategy's default, and this one's).
    pub sync_batch_norm: bool,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            batch_size: 32,
            epochs: 1,
            verbose: 1,
            validation_split: 0.0,
            validation_data: None,
            shuffle: true,
            seed: None,
            initial_epoch: 0,
            class_weight: None,
            callbacks: Vec::new(),
            augment: crate::data::Augmentation::default(),
            communicator: None,
            sync_batch_norm: false,
        }
    }
}

/// Refuses a data-parallel run whose batches (the last one included) have fewer
/// samples than there are ranks: a rank would have nothing to compute its share on.
fn check_batches_split(samples: usize, batch_size: usize, ranks: usize) -> Result<()> {
    let last = match samples % batch_size {
        0 => batch_size.min(samples),
        rest => rest,
    };
    if last < ranks {
        return Err(Error::invalid(
            "batch_size",
            format!(
                "{samples} samples in batches of {batch_size} leave a batch of {last}, fewer than the {ranks} ranks: \
                 choose a batch size whose batches all have at least one sample per rank"
            ),
        ));
    }
    Ok(())
}

/// What `fit` returns: each log entry's value per epoch.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// The epochs that ran (0-based), in order.
    pub epochs: Vec<usize>,
    /// Each log entry's values (`loss`, `val_accuracy`, …), one per epoch.
    pub history: BTreeMap<String, Vec<f64>>,
}

impl History {
    /// The values of the log entry `key`, one per epoch, if it was logged.
    pub fn get(&self, key: &str) -> Option<&[f64]> {
        self.history.get(key).map(Vec::as_slice)
    }
}

fn gather(tensors: &[Tensor], indices: &[usize]) -> Result<Vec<Tensor>> {
    tensors.iter().map(|t| t.gather_rows(indices)).collect()
}

impl CompiledModel {
    /// The log names of an output's loss and metric (`loss`, `accuracy` for one output;
    /// `dense_loss`, `dense_accuracy` for several).
    fn output_prefix(&self, output: usize) -> String {
        let model = &self.model;
        if model.outputs.len() == 1 {
            String::new()
        } else {
            format!(
                "{}_",
                model.layers[model.nodes[model.outputs[output]].layer].name()
            )
        }
    }

    /// The running loss and metrics as log entries, in name order.
    pub(super) fn collect_logs(&self, trackers: &Trackers, prefix: &str) -> Vec<(String, f64)> {
        let mut logs = BTreeMap::new();
        logs.insert(format!("{prefix}loss"), trackers.total.result());
        for (o, metrics) in self.compiled.metrics.iter().enumerate() {
            let p = self.output_prefix(o);
            if !p.is_empty() {
                logs.insert(format!("{prefix}{p}loss"), trackers.outputs[o].result());
            }
            for m in metrics {
                logs.insert(format!("{prefix}{p}{}", m.name), m.result());
            }
        }
        logs.into_iter().collect()
    }

    /// Losses of `predictions` against `targets` (plus `penalty` in the total): updates
    /// the trackers and metrics, and returns dL/d(prediction) for each output.
    fn score(
        compiled: &mut Compiled,
        predictions: &[&Tensor],
        targets: &[Tensor],
        weights: Option<&[f32]>,
        penalty: f64,
        trackers: &mut Trackers,
    ) -> Result<Vec<Tensor>> {
        let mut grads = Vec::with_capacity(predictions.len());
        // The total loss is the outputs' losses and the regularizers' penalties.
        let mut total = penalty;
        for (o, (pred, target)) in predictions.iter().zip(targets).enumerate() {
            let (value, grad) = reduce(compiled.losses[o].as_ref(), target, pred, weights)?;
            total += value;
            trackers.outputs[o].add(value, pred.batch_len() as f64);
            grads.push(grad);
            for m in &mut compiled.metrics[o] {
                m.update(target, pred, None)?;
            }
        }
        trackers.total.add(total, predictions[0].batch_len() as f64);
        Ok(grads)
    }

    /// One optimisation step on one batch; updates the running loss and metrics.
    /// `penalties` are the model's regularizers and constraints ([`Penalties::of`]).
    /// In a data-parallel run, `ranks` is the communicator and this rank's share of the
    /// global batch: the gradients are scaled by it and summed over the ranks before
    /// the update.
    fn step(
        &mut self,
        x: &[Tensor],
        y: &[Tensor],
        weights: Option<&[f32]>,
        penalties: &Penalties,
        trackers: &mut Trackers,
        ranks: Option<(&dyn Communicator, f32)>,
    ) -> Result<()> {
        let refs: Vec<&Tensor> = x.iter().collect();
        let CompiledModel { model, compiled } = self;
        crate::pool::on_pool(|| {
            let penalty = penalties.loss(model);
            model.forward(&refs, true)?;
            let penalty = penalty + model.tape.activity_loss;
            // The predictions stay on the tape (borrowed, not copied) while they are scored.
            let predictions = model.tape.values(&model.outputs);
            let grads = Self::score(compiled, &predictions, y, weights, penalty, trackers)?;
            model.backward_weights(&grads)?;
            penalties.add_gradients(model);
            Ok(())
        })?;
        if let Some((comm, share)) = ranks {
            distributed::allreduce_gradients(model, comm, share)?;
        }
        crate::pool::on_pool(|| {
            let (mut variables, gradients) = model.weights_and_gradients();
            compiled.optimizer.apply(&mut variables, &gradients)?;
            penalties.constrain(model)
        })
    }

    fn reset_metrics(&mut self) -> Trackers {
        self.compiled
            .metrics
            .iter_mut()
            .flatten()
            .for_each(Metric::reset);
        Trackers::new(self.model.outputs.len())
    }

    /// Per-sample weights from `class_weight`, for targets that are class indices or one-hot.
    fn sample_weights(class_weight: &HashMap<usize, f32>, y: &Tensor) -> Vec<f32> {
        let batch = y.batch_len();
        let per = y.len().checked_div(batch).unwrap_or(0);
        (0..batch)
            .map(|i| {
                let row = &y.data()[i * per..(i + 1) * per];
                let class = if per == 1 {
                    row[0] as usize
                } else {
                    row.iter()
                        .enumerate()
                        .fold(0, |b, (j, &v)| if v > row[b] { j } else { b })
                };
                class_weight.get(&class).copied().unwrap_or(1.0)
            })
            .collect()
    }

    /// Runs every callback's `hook`; whether one asked to stop. When one interrupts,
    /// every callback's `on_interrupt` runs and the result is [`Error::Interrupted`].
    fn run_callbacks(
        &mut self,
        callbacks: &mut [Box<dyn Callback>],
        state: &mut TrainingState,
        mut hook: impl FnMut(&mut dyn Callback, &mut TrainContext) -> Result<()>,
    ) -> Result<bool> {
        let mut ctx = TrainContext {
            model: self,
            state,
            stop_training: false,
            interrupted: false,
        };
        for cb in callbacks.iter_mut() {
            hook(cb.as_mut(), &mut ctx)?;
        }
        if ctx.interrupted {
            for cb in callbacks.iter_mut() {
                cb.on_interrupt(&mut ctx)?;
            }
            return Err(Error::Interrupted {
                epoch: ctx.state.epoch + 1,
                steps: ctx.state.step,
            });
        }
        Ok(ctx.stop_training)
    }

    /// Keras's `model.fit(x, y, …)`: trains for `epochs` epochs and returns the history.
    /// `x` holds one tensor per model input, `y` one per output.
    pub fn fit(&mut self, x: &[Tensor], y: &[Tensor], mut options: FitOptions) -> Result<History> {
        let penalties = Penalties::of(&self.model)?;
        if y.len() != self.model.outputs.len() {
            return Err(Error::Model {
                model: self.model.name.clone(),
                message: format!(
                    "has {} outputs but {} targets were given",
                    self.model.outputs.len(),
                    y.len()
                ),
            });
        }
        if options.batch_size == 0 {
            return Err(Error::invalid("batch_size", "batch_size must be positive"));
        }
        let n = sample_count(x, y)?;
        self.model
            .check_memory(&batch_shapes(x, options.batch_size.min(n)), 1, true)?;
        let (train_count, validation) = match (&options.validation_data, options.validation_split) {
            (Some((vx, vy)), _) => (n, Some((vx.clone(), vy.clone()))),
            (None, split) if split > 0.0 => {
                if split >= 1.0 {
                    return Err(Error::invalid(
                        "validation_split",
                        format!("validation_split must be below 1, got {split}"),
                    ));
                }
                let at = (n as f64 * (1.0 - split)).floor() as usize;
                let rest: Vec<usize> = (at..n).collect();
                (at, Some((gather(x, &rest)?, gather(y, &rest)?)))
            }
            _ => (n, None),
        };
        let comm: Arc<dyn Communicator> = options
            .communicator
            .clone()
            .unwrap_or_else(|| Arc::new(SingleProcess));
        let parallel = comm.size() > 1;
        let mut callbacks = std::mem::take(&mut options.callbacks);
        if parallel {
            check_batches_split(train_count, options.batch_size, comm.size())?;
            if callbacks.iter().any(|cb| cb.restores_state()) {
                return Err(Error::invalid(
                    "callbacks",
                    "BackupAndRestore cannot resume a data-parallel run yet (only rank 0 would restore): train without it",
                ));
            }
            if comm.rank() != 0 {
                options.verbose = 0;
                callbacks.retain(|cb| !cb.writes_files());
            }
        }
        self.model
            .set_ranks(parallel.then_some(&comm), options.sync_batch_norm);
        let rng = options.seed.map_or_else(next_rng, rng_from_seed);
        let mut state = TrainingState::new(options.initial_epoch, rng, self.model.outputs.len());
        let steps = train_count.div_ceil(options.batch_size);
        // A callback may put back an earlier run's state here (BackupAndRestore).
        self.run_callbacks(&mut callbacks, &mut state, |cb, ctx| cb.on_train_begin(ctx))?;
        if parallel {
            distributed::broadcast_weights(&mut self.model, comm.as_ref())?;
        }
        while state.epoch < options.epochs {
            let epoch = state.epoch;
            let mut stop = self.run_callbacks(&mut callbacks, &mut state, |cb, ctx| {
                cb.on_epoch_begin(epoch, ctx)
            })?;
            if state.step == 0 {
                state.epoch_rng = state.rng.clone();
                state.trackers = self.reset_metrics();
            }
            // The order is drawn from the generator as the epoch began, so that an epoch
            // resumed part way through has the same order.
            let mut order: Vec<usize> = (0..train_count).collect();
            if options.shuffle {
                let mut rng = state.epoch_rng.clone();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.random_range(0..=i));
                }
                if state.step == 0 {
                    state.rng = rng;
                }
            }
            let mut progress = Progress::epoch(options.verbose, epoch, options.epochs, steps);
            let batches = order.chunks(options.batch_size).enumerate();
            for (b, batch) in batches.skip(state.step) {
                // This rank's slice of the global batch; augmentation draws for the
                // whole batch, so each sample's draw is the one a single process makes.
                let local = local_slice(batch.len(), comm.rank(), comm.size());
                let bx = if options.augment.is_active() {
                    let mut whole = gather(x, batch)?;
                    options.augment.apply(&mut whole[0], &mut state.rng);
                    if parallel {
                        slice_rows(&whole, local.start, local.end)?
                    } else {
                        whole
                    }
                } else {
                    gather(x, &batch[local.clone()])?
                };
                let by = gather(y, &batch[local.clone()])?;
                let weights = options
                    .class_weight
                    .as_ref()
                    .map(|cw| Self::sample_weights(cw, &by[0]));
                self.model.set_first_sample(local.start);
                let share = local.len() as f32 / batch.len() as f32;
                self.step(
                    &bx,
                    &by,
                    weights.as_deref(),
                    &penalties,
                    &mut state.trackers,
                    parallel.then_some((comm.as_ref() as &dyn Communicator, share)),
                )?;
                if parallel && !options.sync_batch_norm {
                    distributed::average_moving_statistics(&mut self.model, comm.as_ref())?;
                }
                state.step = b + 1;
                state.steps_done += 1;
                let logs = self.reduced_logs(&state.trackers, "", comm.as_ref())?;
                progress.step(b + 1, &logs);
                let logs: Logs = logs.into_iter().collect();
                stop |= self.run_callbacks(&mut callbacks, &mut state, |cb, ctx| {
                    cb.on_batch_end(b, &logs, ctx)
                })?;
                if stop {
                    break;
                }
            }
            let mut logs = self.reduced_logs(&state.trackers, "", comm.as_ref())?;
            if let Some((vx, vy)) = &validation {
                logs.extend(self.evaluate_logs(
                    vx,
                    vy,
                    options.batch_size,
                    "val_",
                    comm.as_ref(),
                )?);
            }
            if parallel {
                distributed::check_same_weights(&self.model, comm.as_ref(), epoch)?;
            }
            progress.finish(&logs);
            let logs: Logs = logs.into_iter().collect();
            for (k, v) in &logs {
                state.history.history.entry(k.clone()).or_default().push(*v);
            }
            state.history.epochs.push(epoch);
            // The epoch is done before its end's callbacks run: a backup made there
            // resumes at the next one.
            state.epoch += 1;
            state.step = 0;
            stop |= self.run_callbacks(&mut callbacks, &mut state, |cb, ctx| {
                cb.on_epoch_end(epoch, &logs, ctx)
            })?;
            if stop {
                break;
            }
        }
        self.run_callbacks(&mut callbacks, &mut state, |cb, ctx| cb.on_train_end(ctx))?;
        self.model.set_ranks(None, false);
        self.model.set_first_sample(0);
        Ok(state.history)
    }

    /// Loss and metrics over data, in inference mode, batch by batch; in a data-parallel
    /// run each rank scores its share of the data and the sums are reduced.
    fn evaluate_logs(
        &mut self,
        x: &[Tensor],
        y: &[Tensor],
        batch_size: usize,
        prefix: &str,
        comm: &dyn Communicator,
    ) -> Result<Vec<(String, f64)>> {
        let n = sample_count(x, y)?;
        let penalties = Penalties::of(&self.model)?;
        let mut trackers = self.reset_metrics();
        let share = local_slice(n, comm.rank(), comm.size());
        for start in share.clone().step_by(batch_size.max(1)) {
            let end = (start + batch_size).min(share.end);
            let bx = slice_rows(x, start, end)?;
            let by = slice_rows(y, start, end)?;
            let refs: Vec<&Tensor> = bx.iter().collect();
            let mut penalty = penalties.loss(&self.model);
            let predictions = self.model.apply_penalized(&refs, &mut penalty)?;
            let predictions: Vec<&Tensor> = predictions.iter().collect();
            Self::score(
                &mut self.compiled,
                &predictions,
                &by,
                None,
                penalty,
                &mut trackers,
            )?;
        }
        self.reduced_logs(&trackers, prefix, comm)
    }

    /// Keras's `model.evaluate(x, y)`: the loss and metrics, by name.
    pub fn evaluate(
        &mut self,
        x: &[Tensor],
        y: &[Tensor],
        batch_size: usize,
    ) -> Result<BTreeMap<String, f64>> {
        Ok(self
            .evaluate_logs(x, y, batch_size, "", &SingleProcess)?
            .into_iter()
            .collect())
    }

    /// Keras's `model.train_on_batch(x, y)`: one step, and the batch's loss and metrics.
    pub fn train_on_batch(&mut self, x: &[Tensor], y: &[Tensor]) -> Result<BTreeMap<String, f64>> {
        sample_count(x, y)?;
        let penalties = Penalties::of(&self.model)?;
        let mut trackers = self.reset_metrics();
        self.step(x, y, None, &penalties, &mut trackers, None)?;
        Ok(self.collect_logs(&trackers, "").into_iter().collect())
    }
}
