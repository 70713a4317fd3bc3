//! Callbacks: code that runs at the edges of training, with Keras's names and defaults.
//! A callback sees the model (its weights, its optimizer's learning rate) and the epoch's
//! logs, and can stop training.

use super::compiled::CompiledModel;
use super::state::TrainingState;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// The metrics of an epoch or batch by name: `loss`, `accuracy`, `val_loss`, …
pub type Logs = BTreeMap<String, f64>;

/// What a callback may touch while training runs.
pub struct TrainContext<'a> {
    /// The model being trained, with its optimizer.
    pub model: &'a mut CompiledModel,
    /// Where the run stands: epoch, step, generator, running metrics, history.
    pub state: &'a mut TrainingState,
    /// Set to stop training after this epoch (or batch).
    pub stop_training: bool,
    /// Set by [`TrainContext::interrupt`].
    pub(crate) interrupted: bool,
}

impl TrainContext<'_> {
    /// Stops training at once, after this batch, without ending the epoch: every
    /// callback's [`Callback::on_interrupt`] runs (a `BackupAndRestore` saves the state
    /// there), then `fit` returns [`Error::Interrupted`]. For Ctrl-C.
    pub fn interrupt(&mut self) {
        self.interrupted = true;
    }

    /// The optimizer's current learning rate.
    pub fn learning_rate(&self) -> f64 {
        self.model.optimizer().current_learning_rate()
    }

    /// Sets the optimizer's learning rate to the constant `lr`.
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.model.optimizer_mut().set_learning_rate(lr);
    }
}

/// Keras's `Callback`: hooks called at the edges of training; each does nothing unless
/// overridden.
pub trait Callback: Send {
    /// Called once, before the first epoch.
    fn on_train_begin(&mut self, _ctx: &mut TrainContext) -> Result<()> {
        Ok(())
    }
    /// Called at the start of each epoch (`epoch` counts from 0).
    fn on_epoch_begin(&mut self, _epoch: usize, _ctx: &mut TrainContext) -> Result<()> {
        Ok(())
    }
    /// Called after each training batch, with that batch's logs.
    fn on_batch_end(&mut self, _batch: usize, _logs: &Logs, _ctx: &mut TrainContext) -> Result<()> {
        Ok(())
    }
    /// Called at the end of each epoch, with its logs (validation entries included).
    fn on_epoch_end(&mut self, _epoch: usize, _logs: &Logs, _ctx: &mut TrainContext) -> Result<()> {
        Ok(())
    }
    /// Called once, when training ends.
    fn on_train_end(&mut self, _ctx: &mut TrainContext) -> Result<()> {
        Ok(())
    }
    /// Called after the batch in which a callback called [`TrainContext::interrupt`],
    /// before `fit` returns [`Error::Interrupted`] (`on_train_end` is not called then).
    fn on_interrupt(&mut self, _ctx: &mut TrainContext) -> Result<()> {
        Ok(())
    }
    /// Whether the callback writes files (checkpoints, logs): in a data-parallel run
    /// only rank 0 runs those, as in Horovod.
    fn writes_files(&self) -> bool {
        false
    }
    /// Whether the callback puts back an earlier run's state (BackupAndRestore), which
    /// a data-parallel run cannot do yet: only rank 0 would.
    fn restores_state(&self) -> bool {
        false
    }
}

/// Whether a monitored quantity improves by going down or up; `Auto` is Keras's rule
/// (up for names containing "acc", down otherwise).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Keras's `"auto"`: `Max` for names containing "acc", `Min` otherwise.
    Auto,
    /// Lower is better (a loss).
    Min,
    /// Higher is better (an accuracy).
    Max,
}

/// Tracks the best value of a monitored log entry.
#[derive(Clone, Debug)]
pub(crate) struct Monitor {
    pub(crate) key: String,
    higher_is_better: bool,
    min_delta: f64,
    pub(crate) best: Option<f64>,
}

impl Monitor {
    pub(crate) fn new(key: &str, mode: Mode, min_delta: f64) -> Self {
        let higher_is_better = match mode {
            Mode::Max => true,
            Mode::Min => false,
            Mode::Auto => key.contains("acc") || key.starts_with("fmeasure"),
        };
        Monitor {
            key: key.to_string(),
            higher_is_better,
            min_delta: min_delta.abs(),
            best: None,
        }
    }

    pub(crate) fn value(&self, logs: &Logs) -> Result<f64> {
        logs.get(&self.key).copied().ok_or_else(|| {
            Error::invalid(
                "monitor",
                format!(
                    "callback monitors '{}', which is not in the logs (available: {})",
                    self.key,
                    logs.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    /// Whether `value` beats the best by more than min_delta; records it if so.
    pub(crate) fn improved(&mut self, value: f64) -> bool {
        let better = match self.best {
            None => true,
            Some(best) if self.higher_is_better => value - self.min_delta > best,
            Some(best) => value + self.min_delta < best,
        };
        if better {
            self.best = Some(value);
        }
        better
    }
}

/// Keras's `EarlyStopping(monitor="val_loss", min_delta=0, patience=0,
/// restore_best_weights=False)`.
pub struct EarlyStopping {
    monitor: Monitor,
    /// Epochs without improvement after which training stops, at the end of the
    /// `patience`-th such epoch as in Keras (default 0: at the first one, from epoch 1 on).
    pub patience: usize,
    /// Whether to put back the best epoch's weights when training stops early (Keras's
    /// default false).
    pub restore_best_weights: bool,
    wait: usize,
    best_weights: Option<Vec<Tensor>>,
    /// The epoch training stopped at, if it did.
    pub stopped_epoch: Option<usize>,
}

impl EarlyStopping {
    /// Keras's `EarlyStopping(monitor)`, the other arguments at Keras's defaults.
    pub fn new(monitor: &str) -> Self {
        EarlyStopping {
            monitor: Monitor::new(monitor, Mode::Auto, 0.0),
            patience: 0,
            restore_best_weights: false,
            wait: 0,
            best_weights: None,
            stopped_epoch: None,
        }
    }

    /// Sets `patience` (Keras's default 0).
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }

    /// Sets `min_delta`: the least change of the monitored value that counts as an
    /// improvement (Keras's default 0).
    pub fn min_delta(mut self, min_delta: f64) -> Self {
        self.monitor.min_delta = min_delta.abs();
        self
    }

    /// Sets `mode`: whether the monitored value should go down or up (Keras's default
    /// `Auto`).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.monitor = Monitor::new(&self.monitor.key, mode, self.monitor.min_delta);
        self
    }

    /// Sets `restore_best_weights` (Keras's default false).
    pub fn restore_best_weights(mut self, restore: bool) -> Self {
        self.restore_best_weights = restore;
        self
    }
}

impl Callback for EarlyStopping {
    fn on_train_begin(&mut self, _ctx: &mut TrainContext) -> Result<()> {
        self.wait = 0;
        self.monitor.best = None;
        self.best_weights = None;
        self.stopped_epoch = None;
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, ctx: &mut TrainContext) -> Result<()> {
        let value = self.monitor.value(logs)?;
        if self.monitor.improved(value) {
            self.wait = 0;
            if self.restore_best_weights {
                self.best_weights = Some(ctx.model.get_weights());
            }
            return Ok(());
        }
        self.wait += 1;
        if self.wait >= self.patience && epoch > 0 {
            self.stopped_epoch = Some(epoch);
            ctx.stop_training = true;
            if let Some(best) = self.best_weights.take() {
                ctx.model.set_weights(best)?;
            }
        }
        Ok(())
    }
}

/// Keras's `ReduceLROnPlateau(monitor="val_loss", factor=0.1, patience=10,
/// min_delta=1e-4, cooldown=0, min_lr=0)`.
pub struct ReduceLROnPlateau {
    monitor: Monitor,
    /// What the learning rate is multiplied by on a plateau (Keras's default 0.1).
    pub factor: f64,
    /// Epochs without improvement before the learning rate is reduced (Keras's default 10).
    pub patience: usize,
    /// Epochs to wait after a reduction before counting epochs without improvement again
    /// (Keras's default 0).
    pub cooldown: usize,
    /// The lowest the learning rate is reduced to (Keras's default 0).
    pub min_lr: f64,
    wait: usize,
    cooldown_left: usize,
}

impl ReduceLROnPlateau {
    /// Keras's `ReduceLROnPlateau(monitor)`, the other arguments at Keras's defaults.
    pub fn new(monitor: &str) -> Self {
        ReduceLROnPlateau {
            monitor: Monitor::new(monitor, Mode::Auto, 1e-4),
            factor: 0.1,
            patience: 10,
            cooldown: 0,
            min_lr: 0.0,
            wait: 0,
            cooldown_left: 0,
        }
    }

    /// Sets `factor` (Keras's default 0.1).
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// Sets `patience` (Keras's default 10).
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }

    /// Sets `min_delta`: the least change of the monitored value that counts as an
    /// improvement (Keras's default 1e-4).
    pub fn min_delta(mut self, min_delta: f64) -> Self {
        self.monitor.min_delta = min_delta.abs();
        self
    }

    /// Sets `cooldown` (Keras's default 0).
    pub fn cooldown(mut self, cooldown: usize) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Sets `min_lr` (Keras's default 0).
    pub fn min_lr(mut self, min_lr: f64) -> Self {
        self.min_lr = min_lr;
        self
    }
}

impl Callback for ReduceLROnPlateau {
    fn on_epoch_end(&mut self, _epoch: usize, logs: &Logs, ctx: &mut TrainContext) -> Result<()> {
        let value = self.monitor.value(logs)?;
        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
            self.wait = 0;
        }
        if self.monitor.improved(value) {
            self.wait = 0;
        } else if self.cooldown_left == 0 {
            self.wait += 1;
            if self.wait >= self.patience {
                let lr = ctx.learning_rate();
                if lr > self.min_lr {
                    ctx.set_learning_rate((lr * self.factor).max(self.min_lr));
                }
                self.cooldown_left = self.cooldown;
                self.wait = 0;
            }
        }
        Ok(())
    }
}

/// Keras's `CSVLogger(filename, separator=",", append=False)`: one row per epoch, the
/// epoch number then every log entry in name order.
pub struct CSVLogger {
    path: PathBuf,
    separator: char,
    append: bool,
    columns: Option<Vec<String>>,
}

impl CSVLogger {
    /// Keras's `CSVLogger(filename)`: writes to `path`, comma-separated, overwriting it.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CSVLogger {
            path: path.into(),
            separator: ',',
            append: false,
            columns: None,
        }
    }

    /// Sets `separator`, the character between columns (Keras's default `,`).
    pub fn separator(mut self, separator: char) -> Self {
        self.separator = separator;
        self
    }

    /// Sets `append`: add rows to an existing file instead of overwriting it (Keras's
    /// default false). Rows of the epochs a resumed run redoes are dropped first.
    pub fn append(mut self, append: bool) -> Self {
        self.append = append;
        self
    }

    fn write(&self, line: &str, truncate: bool) -> Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(!truncate)
            .write(true)
            .truncate(truncate)
            .open(&self.path)
            .map_err(|e| Error::file(&self.path, e))?;
        writeln!(file, "{line}").map_err(|e| Error::file(&self.path, e))
    }
}

impl Callback for CSVLogger {
    fn writes_files(&self) -> bool {
        true
    }

    fn on_train_begin(&mut self, ctx: &mut TrainContext) -> Result<()> {
        self.columns = None;
        if !self.append {
            return std::fs::write(&self.path, "").map_err(|e| Error::file(&self.path, e));
        }
        // A run resumed from a backup (restored by a BackupAndRestore listed before
        // this logger) redoes the epochs from `state.epoch`: their rows from the run
        // that stopped go, so that each epoch is logged once.
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Ok(());
        };
        let sep = self.separator;
        let kept: Vec<&str> = text
            .lines()
            .enumerate()
            .filter(|(i, line)| {
                let epoch = line.split(sep).next().and_then(|e| e.parse::<usize>().ok());
                *i == 0 || epoch.is_none_or(|e| e < ctx.state.epoch)
            })
            .map(|(_, line)| line)
            .collect();
        if kept.len() < text.lines().count() {
            let mut rows = kept.join("\n");
            rows.push('\n');
            std::fs::write(&self.path, rows).map_err(|e| Error::file(&self.path, e))?;
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, _ctx: &mut TrainContext) -> Result<()> {
        let sep = self.separator.to_string();
        if self.columns.is_none() {
            let columns: Vec<String> = logs.keys().cloned().collect();
            let empty = std::fs::metadata(&self.path).map_or(true, |m| m.len() == 0);
            if empty {
                self.write(&format!("epoch{sep}{}", columns.join(&sep)), false)?;
            }
            self.columns = Some(columns);
        }
        let columns = self.columns.as_ref().expect("set above");
        let values: Vec<String> = columns
            .iter()
            .map(|c| logs.get(c).map_or(String::new(), |v| v.to_string()))
            .collect();
        self.write(&format!("{epoch}{sep}{}", values.join(&sep)), false)
    }
}

/// Keras's `TerminateOnNaN()`: stops as soon as a batch's loss is NaN or infinite.
#[derive(Default)]
pub struct TerminateOnNaN;

impl Callback for TerminateOnNaN {
    fn on_batch_end(&mut self, batch: usize, logs: &Logs, ctx: &mut TrainContext) -> Result<()> {
        if logs.get("loss").is_some_and(|l| !l.is_finite()) {
            eprintln!("Batch {batch}: Invalid loss, terminating training");
            ctx.stop_training = true;
        }
        Ok(())
    }
}

/// Keras's `LearningRateScheduler(schedule)`: `schedule(epoch, lr)` gives the learning
/// rate for each epoch.
pub struct LearningRateScheduler {
    schedule: Box<dyn FnMut(usize, f64) -> f64 + Send>,
}

impl LearningRateScheduler {
    /// A scheduler that calls `schedule(epoch, lr)` at the start of each epoch, with the
    /// 0-based epoch and the current learning rate.
    pub fn new(schedule: impl FnMut(usize, f64) -> f64 + Send + 'static) -> Self {
        LearningRateScheduler {
            schedule: Box::new(schedule),
        }
    }
}

impl Callback for LearningRateScheduler {
    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut TrainContext) -> Result<()> {
        let next = (self.schedule)(epoch, ctx.learning_rate());
        if !next.is_finite() {
            return Err(Error::invalid(
                "schedule",
                format!("LearningRateScheduler gave {next} for epoch {epoch}"),
            ));
        }
        ctx.set_learning_rate(next);
        Ok(())
    }
}

/// A closure a [`LambdaCallback`] runs with an epoch or batch index and the logs.
type Hook = Box<dyn FnMut(usize, &Logs) + Send>;

/// Keras's `LambdaCallback(on_epoch_begin=…, on_epoch_end=…, on_train_batch_end=…,
/// on_train_begin=…, on_train_end=…)`: closures run at those points.
///
/// ```
/// use convnet::train::LambdaCallback;
/// let print = LambdaCallback::new().on_epoch_end(|epoch, logs| {
///     println!("epoch {epoch}: loss {:?}", logs.get("loss"));
/// });
/// # let _ = print;
/// ```
#[derive(Default)]
pub struct LambdaCallback {
    epoch_begin: Option<Box<dyn FnMut(usize) + Send>>,
    epoch_end: Option<Hook>,
    batch_end: Option<Hook>,
    train_begin: Option<Box<dyn FnMut() + Send>>,
    train_end: Option<Box<dyn FnMut() + Send>>,
}

impl LambdaCallback {
    /// A callback that does nothing until given closures.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f(epoch)` as each epoch begins.
    pub fn on_epoch_begin(mut self, f: impl FnMut(usize) + Send + 'static) -> Self {
        self.epoch_begin = Some(Box::new(f));
        self
    }

    /// Runs `f(epoch, logs)` as each epoch ends.
    pub fn on_epoch_end(mut self, f: impl FnMut(usize, &Logs) + Send + 'static) -> Self {
        self.epoch_end = Some(Box::new(f));
        self
    }

    /// Runs `f(batch, logs)` after each training batch (Keras's `on_train_batch_end`).
    pub fn on_batch_end(mut self, f: impl FnMut(usize, &Logs) + Send + 'static) -> Self {
        self.batch_end = Some(Box::new(f));
        self
    }

    /// Runs `f()` before training.
    pub fn on_train_begin(mut self, f: impl FnMut() + Send + 'static) -> Self {
        self.train_begin = Some(Box::new(f));
        self
    }

    /// Runs `f()` after training.
    pub fn on_train_end(mut self, f: impl FnMut() + Send + 'static) -> Self {
        self.train_end = Some(Box::new(f));
        self
    }
}

impl Callback for LambdaCallback {
    fn on_train_begin(&mut self, _: &mut TrainContext) -> Result<()> {
        if let Some(f) = &mut self.train_begin {
            f();
        }
        Ok(())
    }
    fn on_epoch_begin(&mut self, epoch: usize, _: &mut TrainContext) -> Result<()> {
        if let Some(f) = &mut self.epoch_begin {
            f(epoch);
        }
        Ok(())
    }
    fn on_batch_end(&mut self, batch: usize, logs: &Logs, _: &mut TrainContext) -> Result<()> {
        if let Some(f) = &mut self.batch_end {
            f(batch, logs);
        }
        Ok(())
    }
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, _: &mut TrainContext) -> Result<()> {
        if let Some(f) = &mut self.epoch_end {
            f(epoch, logs);
        }
        Ok(())
    }
    fn on_train_end(&mut self, _: &mut TrainContext) -> Result<()> {
        if let Some(f) = &mut self.train_end {
            f();
        }
        Ok(())
    }
}
