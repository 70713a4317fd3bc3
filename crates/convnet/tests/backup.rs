//! BackupAndRestore: a run stopped part way (interrupted, or failing as a crash would)
//! and started again with the same options ends bit for bit where an uninterrupted run
//! ends, with the same history; a finished run deletes its backup.

use convnet::callbacks::{BackupAndRestore, Callback, Logs, SaveFreq, TrainContext};
use convnet::data::Augmentation;
use convnet::initializers::rng_from_seed;
use convnet::layers::*;
use convnet::model::Input;
use convnet::train::{CompiledModel, FitOptions, History, Optimizer};
use convnet::{sequential, ActivationFn, Error, Padding, Tensor};
use rand::RngExt;
use std::path::PathBuf;

/// 40 8x8 one-channel images in 3 classes.
fn data() -> (Tensor, Tensor) {
    let mut rng = rng_from_seed(11);
    let n = 40;
    let x: Vec<f32> = (0..n * 64).map(|_| rng.random::<f32>()).collect();
    let y: Vec<f32> = (0..n).map(|i| (i % 3) as f32).collect();
    (
        Tensor::new([n, 8, 8, 1], x).unwrap(),
        Tensor::new([n], y).unwrap(),
    )
}

/// A CNN with every kind of random layer: augmentation, noise, dropout; and
/// BatchNormalization, whose moving statistics are state too.
fn model() -> CompiledModel {
    let mut model = sequential![
        Input::new([8, 8, 1]),
        RandomFlip::new(FlipMode::Horizontal),
        GaussianNoise::additive(0.1),
        Conv2D::new(4, (3, 3))
            .padding(Padding::Same)
            .activation(ActivationFn::Relu),
        BatchNormalization::new(),
        Flatten::new(),
        Dropout::new(0.3),
        Dense::new(3).activation(ActivationFn::Softmax)
    ]
    .unwrap();
    model.initialize_weights(5).unwrap();
    model
        .compile_named(
            Optimizer::adam(0.01),
            "sparse_categorical_crossentropy",
            &["accuracy"],
        )
        .unwrap()
}

fn options(callbacks: Vec<Box<dyn Callback>>) -> FitOptions {
    FitOptions {
        epochs: 4,
        batch_size: 8,
        verbose: 0,
        seed: Some(9),
        validation_split: 0.2,
        augment: Augmentation {
            flip: true,
            translate: 1,
        },
        callbacks,
        ..FitOptions::default()
    }
}

/// Stops the run after the `at`-th step of the run: by interrupting (as Ctrl-C does), or
/// by failing, as a crash would (no callback runs after it).
struct StopAt {
    at: u64,
    crash: bool,
}

impl Callback for StopAt {
    fn on_batch_end(&mut self, _: usize, _: &Logs, ctx: &mut TrainContext) -> convnet::Result<()> {
        if ctx.state.steps_done == self.at {
            if self.crash {
                return Err(Error::data("simulated crash"));
            }
            ctx.interrupt();
        }
        Ok(())
    }
}

fn bits(model: &CompiledModel) -> Vec<Vec<u32>> {
    model
        .get_weights()
        .iter()
        .map(|w| w.data().iter().map(|v| v.to_bits()).collect())
        .collect()
}

fn history_bits(history: &History) -> Vec<(String, Vec<u64>)> {
    history
        .history
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convnet-backup-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs `fit` in a fresh process's way (a new model each time) until it finishes,
/// stopping at each step in `stops` first; the final model and history.
fn resumed_run(
    dir: &PathBuf,
    save_freq: SaveFreq,
    stops: &[u64],
    crash: bool,
) -> (CompiledModel, History) {
    let (x, y) = data();
    let backup = || Box::new(BackupAndRestore::new(dir).save_freq(save_freq));
    for &at in stops {
        let mut model = model();
        let err = model
            .fit(
                std::slice::from_ref(&x),
                std::slice::from_ref(&y),
                options(vec![backup(), Box::new(StopAt { at, crash })]),
            )
            .unwrap_err();
        if crash {
            assert!(err.to_string().contains("simulated crash"), "{err}");
        } else {
            assert!(matches!(err, Error::Interrupted { .. }), "{err}");
        }
        assert!(
            dir.join("backup.keras").exists(),
            "no backup after step {at}"
        );
    }
    let mut model = model();
    let history = model.fit(&[x], &[y], options(vec![backup()])).unwrap();
    assert!(
        !dir.join("backup.keras").exists(),
        "a finished run deletes its backup"
    );
    (model, history)
}

fn straight_run() -> (CompiledModel, History) {
    let (x, y) = data();
    let mut model = model();
    let history = model.fit(&[x], &[y], options(Vec::new())).unwrap();
    (model, history)
}

#[test]
fn interrupted_runs_resume_bit_for_bit() {
    let (want, want_history) = straight_run();
    assert_eq!(want_history.epochs, [0, 1, 2, 3]);
    // 32 training samples in batches of 8: 4 steps an epoch. Interrupts mid-epoch
    // (steps 3, 6 and 13) and at an epoch's end (step 8); saves every 5 steps between.
    let dir = scratch("interrupt");
    let (got, history) = resumed_run(&dir, SaveFreq::Steps(5), &[3, 6, 8, 13], false);
    assert_eq!(
        bits(&got),
        bits(&want),
        "weights differ from the uninterrupted run"
    );
    assert_eq!(history.epochs, want_history.epochs);
    assert_eq!(history_bits(&history), history_bits(&want_history));
    assert_eq!(
        got.optimizer().state().0,
        want.optimizer().state().0,
        "optimizer steps"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn crashed_runs_resume_from_the_last_epoch_backup_bit_for_bit() {
    let (want, want_history) = straight_run();
    // A crash keeps the backup of the last epoch's end: the steps after it run again.
    let dir = scratch("crash");
    let (got, history) = resumed_run(&dir, SaveFreq::Epoch, &[6, 11, 15], true);
    assert_eq!(
        bits(&got),
        bits(&want),
        "weights differ from the uninterrupted run"
    );
    assert_eq!(history_bits(&history), history_bits(&want_history));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_backup_of_another_model_or_a_bad_setting_is_an_error_naming_it() {
    let (x, y) = data();
    let dir = scratch("mismatch");
    let mut model = model();
    model
        .fit(
            std::slice::from_ref(&x),
            std::slice::from_ref(&y),
            options(vec![
                Box::new(BackupAndRestore::new(&dir)),
                Box::new(StopAt {
                    at: 5,
                    crash: false,
                }),
            ]),
        )
        .unwrap_err();
    let other = sequential![Input::new([8, 8, 1]), Flatten::new(), Dense::new(3)]
        .unwrap()
        .compile_named(Optimizer::sgd(0.1), "sparse_categorical_crossentropy", &[])
        .unwrap();
    let mut other = other;
    let e = other
        .fit(
            std::slice::from_ref(&x),
            std::slice::from_ref(&y),
            options(vec![Box::new(BackupAndRestore::new(&dir))]),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("backup.keras") && e.contains("weights"), "{e}");
    let e = model
        .fit(
            &[x],
            &[y],
            options(vec![Box::new(
                BackupAndRestore::new(&dir).save_freq(SaveFreq::Steps(0)),
            )]),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("save_freq"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
