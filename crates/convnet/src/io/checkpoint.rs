//! Callbacks that write model files while training runs: Keras's `ModelCheckpoint`.
//! They sit in `io`, above `train`, because writing a `.keras` file is io's job.

use crate::error::Result;
use crate::train::{Callback, Logs, Mode, Monitor, TrainContext};
use std::path::PathBuf;

/// Keras's `ModelCheckpoint(filepath, monitor="val_loss", save_best_only=False,
/// save_weights_only=False)`: saves the model (a `.keras` file) or its weights (a
/// `.weights.h5` file) after each epoch, or only when the monitored value improves.
/// `{epoch}` in the path becomes the epoch number (from 1, as in Keras). Every save is
/// atomic: written beside the destination, then renamed, so a crash mid-save leaves the
/// previous checkpoint whole.
pub struct ModelCheckpoint {
    path: String,
    monitor: Monitor,
    /// Save only when the monitored value improves (Keras's default false).
    pub save_best_only: bool,
    /// Save only the weights (`save_weights`), not the whole model (`save`) (Keras's
    /// default false).
    pub save_weights_only: bool,
}

impl ModelCheckpoint {
    /// Keras's `ModelCheckpoint(filepath)`: saves the whole model to `path` after every
    /// epoch.
    pub fn new(path: impl Into<String>) -> Self {
        ModelCheckpoint {
            path: path.into(),
            monitor: Monitor::new("val_loss", Mode::Auto, 0.0),
            save_best_only: false,
            save_weights_only: false,
        }
    }

    /// Sets `monitor`: the log entry that decides which checkpoint is best (Keras's default
    /// `val_loss`).
    pub fn monitor(mut self, key: &str) -> Self {
        self.monitor = Monitor::new(key, Mode::Auto, 0.0);
        self
    }

    /// Sets `mode`: whether the monitored value should go down or up (Keras's default
    /// `Auto`).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.monitor = Monitor::new(&self.monitor.key, mode, 0.0);
        self
    }

    /// Sets `save_best_only` (Keras's default false).
    pub fn save_best_only(mut self, value: bool) -> Self {
        self.save_best_only = value;
        self
    }

    /// Sets `save_weights_only` (Keras's default false).
    pub fn save_weights_only(mut self, value: bool) -> Self {
        self.save_weights_only = value;
        self
    }

    /// The file for `epoch` (0-based): `{epoch}` and `{epoch:02d}`-style fields filled in.
    pub fn path_for(&self, epoch: usize) -> PathBuf {
        let number = epoch + 1;
        let mut path = self.path.clone();
        while let Some(start) = path.find("{epoch") {
            let Some(len) = path[start..].find('}') else {
                break;
            };
            let field = &path[start..start + len + 1];
            let width: usize = field
                .trim_start_matches("{epoch")
                .trim_start_matches(":0")
                .trim_end_matches("d}")
                .parse()
                .unwrap_or(0);
            path = path.replacen(field, &format!("{number:0width$}"), 1);
        }
        PathBuf::from(path)
    }
}

impl Callback for ModelCheckpoint {
    fn on_train_begin(&mut self, _ctx: &mut TrainContext) -> Result<()> {
        self.monitor.best = None;
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, ctx: &mut TrainContext) -> Result<()> {
        if self.save_best_only && !self.monitor.improved(self.monitor.value(logs)?) {
            return Ok(());
        }
        let path = self.path_for(epoch);
        if self.save_weights_only {
            ctx.model.save_weights(&path)
        } else {
            ctx.model.save(&path)
        }
    }
}
