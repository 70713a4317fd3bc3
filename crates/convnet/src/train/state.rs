//! Where a `fit` call stands: the epoch and step, the generator that shuffles and
//! augments, the epoch's running loss and metrics, and the history so far. Callbacks see
//! it through [`TrainContext::state`](super::TrainContext); `BackupAndRestore` writes it
//! with [`TrainingState::to_json`] and puts it back with [`TrainingState::restore_json`]
//! before the first epoch, so that a resumed run ends bit for bit where an uninterrupted
//! one ends.

use super::compiled::CompiledModel;
use super::fit::History;
use super::metrics::Metric;
use crate::error::{Error, Result};
use crate::initializers::Rng;
use serde::{Deserialize, Serialize};

/// The running loss of an epoch: the total, and each output's.
#[derive(Clone, Debug)]
pub(crate) struct Trackers {
    pub(crate) total: Metric,
    pub(crate) outputs: Vec<Metric>,
}

impl Trackers {
    pub(crate) fn new(outputs: usize) -> Self {
        Trackers {
            total: Metric::mean("loss"),
            outputs: (0..outputs).map(|_| Metric::mean("loss")).collect(),
        }
    }
}

/// A `fit` call's progress: what a restarted run needs, beside the weights and the
/// optimizer's state, to go on as if it had never stopped.
#[derive(Clone, Debug)]
pub struct TrainingState {
    /// The epoch running, or the next to run once one ends (from 0).
    pub epoch: usize,
    /// The steps of `epoch` done.
    pub step: usize,
    /// The steps done since the run began, over every epoch.
    pub steps_done: u64,
    /// The log entries of the epochs that ended.
    pub history: History,
    /// The shuffling and augmentation generator as `epoch` began (its order is drawn
    /// from it again when a run resumes part way through the epoch).
    pub(crate) epoch_rng: Rng,
    /// The same generator now.
    pub(crate) rng: Rng,
    pub(crate) trackers: Trackers,
}

/// What [`TrainingState::to_json`] writes: the state, the running totals of the
/// trackers and metrics, and the generators of the model's random layers.
#[derive(Serialize, Deserialize)]
struct Saved {
    epoch: usize,
    step: usize,
    steps_done: u64,
    epochs: Vec<usize>,
    history: Vec<(String, Vec<f64>)>,
    epoch_rng: Rng,
    rng: Rng,
    /// (total, count) of the loss trackers (total, then each output's), then of each
    /// output's metrics in order.
    running: Vec<(f64, f64)>,
    /// Each random layer's generator, in [`crate::model::Model::random_generators`] order.
    generators: Vec<Option<Rng>>,
}

impl TrainingState {
    pub(crate) fn new(epoch: usize, rng: Rng, outputs: usize) -> Self {
        TrainingState {
            epoch,
            step: 0,
            steps_done: 0,
            history: History::default(),
            epoch_rng: rng.clone(),
            rng,
            trackers: Trackers::new(outputs),
        }
    }

    /// The state, with `model`'s running metrics and its random layers' generators, as
    /// JSON.
    pub fn to_json(&self, model: &mut CompiledModel) -> Result<Vec<u8>> {
        let trackers = std::iter::once(&self.trackers.total).chain(&self.trackers.outputs);
        let metrics = model.compiled.metrics.iter().flatten();
        let saved = Saved {
            epoch: self.epoch,
            step: self.step,
            steps_done: self.steps_done,
            epochs: self.history.epochs.clone(),
            history: self
                .history
                .history
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            epoch_rng: self.epoch_rng.clone(),
            rng: self.rng.clone(),
            running: trackers.chain(metrics).map(Metric::running).collect(),
            generators: model
                .model
                .random_generators()
                .into_iter()
                .map(|g| g.clone())
                .collect(),
        };
        serde_json::to_vec(&saved).map_err(|e| Error::data(format!("training state: {e}")))
    }

    /// Puts back a state [`TrainingState::to_json`] wrote for this model: this state's
    /// fields, the model's running metrics and its random layers' generators. An error
    /// says what does not fit the model.
    pub fn restore_json(&mut self, bytes: &[u8], model: &mut CompiledModel) -> Result<()> {
        let saved: Saved = serde_json::from_slice(bytes)
            .map_err(|e| Error::format(format!("training state: {e}")))?;
        let mut generators = model.model.random_generators();
        let metric_count: usize = model.compiled.metrics.iter().map(Vec::len).sum();
        let tracker_count = 1 + self.trackers.outputs.len();
        if saved.generators.len() != generators.len()
            || saved.running.len() != tracker_count + metric_count
        {
            return Err(Error::format(format!(
                "training state: it has {} random layers and {} running metrics; the model has {} and {}",
                saved.generators.len(),
                saved.running.len(),
                generators.len(),
                tracker_count + metric_count
            )));
        }
        for (slot, generator) in generators.iter_mut().zip(saved.generators) {
            **slot = generator;
        }
        let trackers = std::iter::once(&mut self.trackers.total).chain(&mut self.trackers.outputs);
        let metrics = model.compiled.metrics.iter_mut().flatten();
        for (metric, running) in trackers.chain(metrics).zip(saved.running) {
            metric.set_running(running);
        }
        self.epoch = saved.epoch;
        self.step = saved.step;
        self.steps_done = saved.steps_done;
        self.history = History {
            epochs: saved.epochs,
            history: saved.history.into_iter().collect(),
        };
        self.epoch_rng = saved.epoch_rng;
        self.rng = saved.rng;
        Ok(())
    }
}
