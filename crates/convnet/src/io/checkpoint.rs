//! Callbacks that write model files while training runs: Keras's `ModelCheckpoint` and
//! `BackupAndRestore`. They sit in `io`, above `train`, because writing a `.keras` file
//! is io's job.

use super::keras::{load_parts, save_keras};
use crate::error::{Error, Result};
use crate::train::{Callback, Logs, Mode, Monitor, TrainContext};
use crate::zipped::{open_zip, read_member};
use std::path::{Path, PathBuf};

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
    fn writes_files(&self) -> bool {
        true
    }

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

/// When [`BackupAndRestore`] saves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveFreq {
    /// At the end of every epoch (Keras's `save_freq="epoch"`).
    Epoch,
    /// Every this many steps, counted over the whole run (Keras's `save_freq=N`).
    Steps(u64),
}

/// Keras's `BackupAndRestore(backup_dir, save_freq="epoch", delete_checkpoint=True)`:
/// saves the whole training state to `backup_dir` as training runs, and a `fit` that
/// finds a backup there starts from it instead of from the beginning. The state is the
/// weights, the optimizer and its slots, the epoch and step, the generators of the
/// shuffle, augmentation, dropout and noise, the epoch's running metrics and the
/// history: a run resumed with the same data and options ends bit for bit where an
/// uninterrupted one ends. Each save is atomic (one file, written beside and renamed),
/// an interrupted run ([`TrainContext::interrupt`]) saves where it stopped, and a
/// finished run deletes its backup.
///
/// The state of the other callbacks (EarlyStopping's patience, ReduceLROnPlateau's wait)
/// is not part of it, as in Keras.
pub struct BackupAndRestore {
    dir: PathBuf,
    /// When to save (Keras's default: every epoch).
    pub save_freq: SaveFreq,
    /// Whether a finished run deletes its backup (Keras's default true).
    pub delete_checkpoint: bool,
}

/// The zip member of the backup that holds the training state.
const STATE_MEMBER: &str = "training_state.json";

impl BackupAndRestore {
    /// Keras's `BackupAndRestore(backup_dir)`: a backup at every epoch's end, in
    /// `backup_dir/backup.keras`.
    pub fn new(backup_dir: impl Into<PathBuf>) -> Self {
        BackupAndRestore {
            dir: backup_dir.into(),
            save_freq: SaveFreq::Epoch,
            delete_checkpoint: true,
        }
    }

    /// Sets when to save.
    pub fn save_freq(mut self, save_freq: SaveFreq) -> Self {
        self.save_freq = save_freq;
        self
    }

    /// Sets whether a finished run deletes its backup.
    pub fn delete_checkpoint(mut self, delete: bool) -> Self {
        self.delete_checkpoint = delete;
        self
    }

    /// The backup file: `backup.keras` in the backup folder. A `.keras` file with one
    /// more member, so Keras and `convnet` read its model too.
    pub fn path(&self) -> PathBuf {
        self.dir.join("backup.keras")
    }

    fn save(&self, ctx: &mut TrainContext) -> Result<()> {
        let path = self.path();
        let state = ctx.state.to_json(ctx.model).map_err(|e| e.in_file(&path))?;
        save_keras(
            &ctx.model.model,
            Some(&ctx.model.compiled),
            Some((STATE_MEMBER, &state)),
            &path,
        )
    }

    fn restore(&self, path: &Path, ctx: &mut TrainContext) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let state = read_member(&mut open_zip(&bytes, path)?, path, STATE_MEMBER)?;
        let (saved, compiled) = load_parts(bytes, path)?;
        let compiled =
            compiled.ok_or_else(|| Error::file(path, "the backup has no compile state"))?;
        ctx.model
            .set_weights(saved.get_weights())
            .map_err(|e| e.in_file(path))?;
        *ctx.model.optimizer_mut() = compiled.optimizer;
        ctx.state
            .restore_json(&state, ctx.model)
            .map_err(|e| e.in_file(path))
    }
}

impl Callback for BackupAndRestore {
    fn writes_files(&self) -> bool {
        true
    }

    fn restores_state(&self) -> bool {
        true
    }

    fn on_train_begin(&mut self, ctx: &mut TrainContext) -> Result<()> {
        if self.save_freq == SaveFreq::Steps(0) {
            return Err(Error::invalid(
                "save_freq",
                "BackupAndRestore: save_freq must be 'epoch' or a positive number of steps",
            ));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        // A run killed while saving leaves its half-written file beside the backup.
        for entry in std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))? {
            let name = entry.map_err(|e| Error::io(&self.dir, e))?.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".backup.keras.") && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(self.dir.join(name.as_ref()));
            }
        }
        let path = self.path();
        if path.exists() {
            self.restore(&path, ctx)?;
        }
        Ok(())
    }

    fn on_batch_end(&mut self, _batch: usize, _logs: &Logs, ctx: &mut TrainContext) -> Result<()> {
        match self.save_freq {
            SaveFreq::Steps(n) if ctx.state.steps_done.is_multiple_of(n) => self.save(ctx),
            _ => Ok(()),
        }
    }

    fn on_epoch_end(&mut self, _epoch: usize, _logs: &Logs, ctx: &mut TrainContext) -> Result<()> {
        match self.save_freq {
            SaveFreq::Epoch => self.save(ctx),
            SaveFreq::Steps(_) => Ok(()),
        }
    }

    fn on_interrupt(&mut self, ctx: &mut TrainContext) -> Result<()> {
        self.save(ctx)
    }

    fn on_train_end(&mut self, _ctx: &mut TrainContext) -> Result<()> {
        let path = self.path();
        if self.delete_checkpoint && path.exists() {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }
}
