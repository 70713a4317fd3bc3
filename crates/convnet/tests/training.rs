//! fit, evaluate, predict and the callbacks, on small problems a few steps solve.

use convnet::callbacks::ModelCheckpoint;
use convnet::initializers::{rng_from_seed, set_random_seed};
use convnet::layers::*;
use convnet::model::{Call, Input, Model, SymbolicTensor};
use convnet::regularizers::Regularizer;
use convnet::train::*;
use convnet::{sequential, Tensor};
use convnet::{ActivationFn, Padding};
use rand::RngExt;
use std::sync::{Arc, Mutex};

/// Two Gaussian blobs in 4-D, labels 0 and 1.
fn blobs(n: usize, seed: u64) -> (Tensor, Tensor) {
    let mut rng = rng_from_seed(seed);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let label = i % 2;
        for _ in 0..4 {
            x.push(rng.random::<f32>() - 0.5 + if label == 1 { 1.0 } else { -1.0 });
        }
        y.push(label as f32);
    }
    (
        Tensor::new([n, 4], x).unwrap(),
        Tensor::new([n], y).unwrap(),
    )
}

fn classifier() -> CompiledModel {
    let mut model = sequential![
        Input::new([4]),
        Dense::new(8).activation(ActivationFn::Relu),
        Dense::new(2).activation(ActivationFn::Softmax)
    ]
    .unwrap();
    model.initialize_weights(7).unwrap();
    model
        .compile_named(
            Optimizer::adam(0.05),
            "sparse_categorical_crossentropy",
            &["accuracy"],
        )
        .unwrap()
}

fn quiet(epochs: usize) -> FitOptions {
    FitOptions {
        epochs,
        verbose: 0,
        seed: Some(3),
        ..FitOptions::default()
    }
}

#[test]
fn fit_learns_and_reports_keras_logs() {
    let (x, y) = blobs(64, 1);
    let mut model = classifier();
    let history = model
        .fit(
            std::slice::from_ref(&x),
            std::slice::from_ref(&y),
            FitOptions {
                validation_split: 0.25,
                ..quiet(10)
            },
        )
        .unwrap();
    let keys: Vec<&String> = history.history.keys().collect();
    assert_eq!(keys, ["accuracy", "loss", "val_accuracy", "val_loss"]);
    let loss = history.get("loss").unwrap();
    assert!(loss.last() < loss.first(), "loss fell: {loss:?}");
    assert!(history.get("val_accuracy").unwrap().last().unwrap() > &0.95);
    let scores = model
        .evaluate(std::slice::from_ref(&x), std::slice::from_ref(&y), 16)
        .unwrap();
    assert!(scores["accuracy"] > 0.95, "{scores:?}");
    let predictions = model
        .predict(std::slice::from_ref(&x), 10)
        .unwrap()
        .remove(0);
    assert_eq!(predictions.shape(), &[64, 2]);
    // predict in batches equals one call on everything.
    assert_eq!(predictions, model.apply(&[&x]).unwrap().remove(0));
    let logs = model
        .train_on_batch(
            &[x.slice_rows(0, 8).unwrap()],
            &[y.slice_rows(0, 8).unwrap()],
        )
        .unwrap();
    assert!(logs.contains_key("loss") && logs.contains_key("accuracy"));
}

#[test]
fn the_same_seed_gives_bit_identical_weights() {
    let train = || {
        set_random_seed(11);
        let (x, y) = blobs(48, 2);
        let x0 = Input::new([4]);
        let h = Dense::new(6).activation(ActivationFn::Tanh).call(&x0);
        let h = Dropout::new(0.3).call(&h);
        let out = Dense::new(2).activation(ActivationFn::Softmax).call(&h);
        let mut model = Model::new(&x0, &out).unwrap();
        model.initialize_weights(5).unwrap();
        let mut model = model
            .compile_named(
                Optimizer::sgd(0.1).momentum(0.9),
                "sparse_categorical_crossentropy",
                &[],
            )
            .unwrap();
        model
            .fit(
                &[x],
                &[y],
                FitOptions {
                    batch_size: 8,
                    ..quiet(3)
                },
            )
            .unwrap();
        model.get_weights()
    };
    let (a, b) = (train(), train());
    assert_eq!(a, b);
}

#[test]
fn errors_name_what_is_wrong() {
    let (x, y) = blobs(8, 3);
    // Fitting a model that was never compiled does not type-check: `fit` is a
    // method of `CompiledModel`, which only `compile` makes.
    let model = sequential![Input::new([4]), Dense::new(2)].unwrap();
    let mut model = model
        .compile_named(Optimizer::sgd(0.1), "sparse_categorical_crossentropy", &[])
        .unwrap();
    let e = model
        .fit(
            std::slice::from_ref(&x),
            &[y.slice_rows(0, 5).unwrap()],
            quiet(1),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("same number of samples"), "{e}");
    let bad_labels = Tensor::full([8], 7.0);
    let e = model
        .fit(std::slice::from_ref(&x), &[bad_labels], quiet(1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("label 7") && e.contains("below 2"), "{e}");
    let e = model
        .clone()
        .compile_named(Optimizer::sgd(0.1), "hinge_of_doom", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown loss 'hinge_of_doom'"), "{e}");
    let e = model
        .compile_named(Optimizer::sgd(0.1), "mse", &["accuracy", "f1"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown metric 'f1'"), "{e}");
    assert!(Optimizer::from_name("lion")
        .unwrap_err()
        .to_string()
        .contains("unknown optimizer 'lion'"));
}

#[test]
fn early_stopping_stops_and_restores_the_best_weights() {
    let (x, y) = blobs(32, 4);
    let mut model = classifier();
    // With no validation data the monitor must exist: a clear error otherwise.
    let e = model
        .fit(
            std::slice::from_ref(&x),
            std::slice::from_ref(&y),
            FitOptions {
                callbacks: vec![Box::new(EarlyStopping::new("val_loss"))],
                ..quiet(2)
            },
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'val_loss'") && e.contains("available: accuracy, loss"),
        "{e}"
    );

    // A learning rate so high the loss climbs: stop after patience, restore the best.
    let model = classifier();
    let mut model = model
        .compile_named(Optimizer::sgd(50.0), "sparse_categorical_crossentropy", &[])
        .unwrap();
    let stopper = EarlyStopping::new("loss")
        .patience(1)
        .restore_best_weights(true);
    let history = model
        .fit(
            std::slice::from_ref(&x),
            std::slice::from_ref(&y),
            FitOptions {
                callbacks: vec![Box::new(stopper)],
                ..quiet(30)
            },
        )
        .unwrap();
    let losses = history.get("loss").unwrap();
    assert!(losses.len() < 30, "stopped early: {losses:?}");
    let best = losses.iter().cloned().fold(f64::INFINITY, f64::min);
    let best_epoch = losses.iter().position(|&l| l == best).unwrap();
    // Keras stops at the epoch that makes `patience` epochs without improvement (its
    // `wait >= patience`): the best epoch, then one more.
    assert_eq!(
        losses.len(),
        best_epoch + 2,
        "stops once patience runs out after the best epoch"
    );
}

/// Records the learning rate at every epoch's end.
struct LrLog(Arc<Mutex<Vec<f64>>>);

impl Callback for LrLog {
    fn on_epoch_end(&mut self, _: usize, _: &Logs, ctx: &mut TrainContext) -> convnet::Result<()> {
        self.0.lock().unwrap().push(ctx.learning_rate());
        Ok(())
    }
}

#[test]
fn reduce_lr_on_plateau_and_the_scheduler_change_the_learning_rate() {
    let (x, y) = blobs(16, 5);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let model = classifier();
    // A learning rate too small to move the loss by min_delta = 1: no epoch after the
    // first improves, so every second epoch the rate is halved.
    let mut model = model
        .compile_named(Optimizer::sgd(1e-9), "sparse_categorical_crossentropy", &[])
        .unwrap();
    let plateau = ReduceLROnPlateau::new("loss")
        .patience(2)
        .factor(0.5)
        .min_delta(1.0);
    model
        .fit(
            std::slice::from_ref(&x),
            std::slice::from_ref(&y),
            FitOptions {
                callbacks: vec![Box::new(plateau), Box::new(LrLog(seen.clone()))],
                ..quiet(5)
            },
        )
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![1e-9, 1e-9, 5e-10, 5e-10, 2.5e-10]
    );

    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut model = classifier();
    let schedule = LearningRateScheduler::new(|epoch, lr| if epoch == 0 { lr } else { lr * 0.5 });
    model
        .fit(
            &[x],
            &[y],
            FitOptions {
                callbacks: vec![Box::new(schedule), Box::new(LrLog(seen.clone()))],
                ..quiet(3)
            },
        )
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![0.05, 0.025, 0.0125]);
}

#[test]
fn csv_logger_writes_one_row_per_epoch() {
    let (x, y) = blobs(16, 6);
    let path = std::env::temp_dir().join(format!("convnet-csv-{}.csv", std::process::id()));
    let mut model = classifier();
    model
        .fit(
            &[x],
            &[y],
            FitOptions {
                callbacks: vec![Box::new(CSVLogger::new(&path))],
                ..quiet(3)
            },
        )
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "epoch,accuracy,loss");
    assert_eq!(lines.len(), 4);
    assert!(lines[3].starts_with("2,"));
    std::fs::remove_file(&path).ok();
}

#[test]
fn terminate_on_nan_stops_at_the_first_bad_batch() {
    let (x, y) = blobs(32, 7);
    let model = sequential![Input::new([4]), Dense::new(1)].unwrap();
    let mut model = model
        .compile_named(Optimizer::sgd(1e6), "mse", &[])
        .unwrap();
    let history = model
        .fit(
            &[x],
            &[y.reshape([32, 1]).unwrap()],
            FitOptions {
                batch_size: 4,
                callbacks: vec![Box::new(TerminateOnNaN)],
                ..quiet(50)
            },
        )
        .unwrap();
    assert_eq!(history.epochs.len(), 1, "stopped in the first epoch");
    assert!(!history.get("loss").unwrap()[0].is_finite());
}

#[test]
fn class_weights_scale_the_loss() {
    let (x, y) = blobs(16, 8);
    let mut plain = classifier();
    let mut weighted = plain.clone();
    let base = plain
        .fit(
            std::slice::from_ref(&x),
            std::slice::from_ref(&y),
            FitOptions {
                shuffle: false,
                ..quiet(1)
            },
        )
        .unwrap();
    let weights = [(0usize, 3.0f32), (1, 3.0)].into_iter().collect();
    let tripled = weighted
        .fit(
            &[x],
            &[y],
            FitOptions {
                shuffle: false,
                class_weight: Some(weights),
                ..quiet(1)
            },
        )
        .unwrap();
    // The first batch's loss is the same samples' loss times 3; the epoch mean is close.
    assert!(tripled.get("loss").unwrap()[0] > 2.0 * base.get("loss").unwrap()[0]);
}

#[test]
fn several_outputs_each_with_a_loss() {
    let (x, y) = blobs(32, 9);
    let input = Input::new([4]);
    let h = Dense::new(8).activation(ActivationFn::Relu).call(&input);
    let class = Dense::new(2)
        .activation(ActivationFn::Softmax)
        .named("class")
        .call(&h);
    let value = Dense::new(1).named("value").call(&h);
    let model = Model::new(&input, &[class, value]).unwrap();
    let losses: Vec<Box<dyn Loss>> = vec![
        Box::new(LossFn::from_name("sparse_categorical_crossentropy").unwrap()),
        Box::new(LossFn::MeanSquaredError),
    ];
    let mut model = model
        .compile(Optimizer::adam(0.01), losses, &["accuracy"])
        .unwrap();
    let target = y.clone().reshape([32, 1]).unwrap();
    let history = model.fit(&[x], &[y, target], quiet(2)).unwrap();
    for key in ["loss", "class_loss", "value_loss", "class_accuracy"] {
        assert!(
            history.get(key).is_some(),
            "{key} missing from {:?}",
            history.history.keys()
        );
    }
    let total = history.get("loss").unwrap()[1];
    let parts = history.get("class_loss").unwrap()[1] + history.get("value_loss").unwrap()[1];
    assert!(
        (total - parts).abs() < 1e-9,
        "the loss is the sum of the outputs' losses"
    );
}

#[test]
fn model_checkpoint_saves_every_epoch_or_only_the_best() {
    let dir = std::env::temp_dir().join(format!("convnet-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (x, y) = blobs(32, 10);
    let pattern = dir
        .join("model-{epoch:02d}.keras")
        .to_string_lossy()
        .to_string();
    let mut model = classifier();
    model
        .fit(
            std::slice::from_ref(&x),
            std::slice::from_ref(&y),
            FitOptions {
                callbacks: vec![Box::new(ModelCheckpoint::new(pattern))],
                ..quiet(3)
            },
        )
        .unwrap();
    for epoch in 1..=3 {
        let path = dir.join(format!("model-{epoch:02}.keras"));
        let loaded = CompiledModel::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            loaded.optimizer().state().0,
            epoch as u64,
            "one step an epoch, saved with epoch {epoch}"
        );
    }
    assert_eq!(
        Model::load(dir.join("model-03.keras"))
            .unwrap()
            .get_weights(),
        model.get_weights()
    );

    // save_best_only with SGD far too fast: the file holds the weights of the epoch
    // with the lowest loss, not the last.
    struct EveryEpoch(Arc<Mutex<Vec<Vec<Tensor>>>>);
    impl Callback for EveryEpoch {
        fn on_epoch_end(
            &mut self,
            _: usize,
            _: &Logs,
            ctx: &mut TrainContext,
        ) -> convnet::Result<()> {
            self.0.lock().unwrap().push(ctx.model.get_weights());
            Ok(())
        }
    }
    let best = dir.join("best.weights.h5");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let diverging = classifier();
    let mut diverging = diverging
        .compile_named(Optimizer::sgd(50.0), "sparse_categorical_crossentropy", &[])
        .unwrap();
    let checkpoint = ModelCheckpoint::new(best.to_string_lossy())
        .monitor("loss")
        .save_best_only(true)
        .save_weights_only(true);
    let callbacks: Vec<Box<dyn Callback>> =
        vec![Box::new(checkpoint), Box::new(EveryEpoch(seen.clone()))];
    let history = diverging
        .fit(
            &[x],
            &[y],
            FitOptions {
                callbacks,
                ..quiet(5)
            },
        )
        .unwrap();
    let losses = history.get("loss").unwrap();
    let best_epoch = (0..losses.len()).fold(0, |b, i| if losses[i] < losses[b] { i } else { b });
    let mut restored = classifier();
    restored.load_weights(&best).unwrap();
    assert_eq!(
        restored.get_weights(),
        seen.lock().unwrap()[best_epoch],
        "losses {losses:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Convolution kernel gradients are summed over parallel tiles; the sum must not
/// depend on which thread finished first.
#[test]
fn convolution_training_is_bit_identical_run_to_run() {
    let train = || {
        set_random_seed(21);
        let mut model = sequential![
            Input::new([12, 12, 3]),
            Conv2D::new(8, (3, 3))
                .padding(convnet::Padding::Same)
                .activation(ActivationFn::Relu),
            DepthwiseConv2D::new((3, 3)).depth_multiplier(2),
            GlobalAveragePooling2D::new(),
            Dense::new(3).activation(ActivationFn::Softmax),
        ]
        .unwrap();
        // The global generator is shared with tests running alongside: fix the weights
        // from a seed of this test's own.
        model.initialize_weights(21).unwrap();
        let mut model = model
            .compile_named(
                Optimizer::adam(0.01),
                "sparse_categorical_crossentropy",
                &[],
            )
            .unwrap();
        let mut rng = rng_from_seed(5);
        let x = Tensor::new(
            [64, 12, 12, 3],
            (0..64 * 12 * 12 * 3).map(|_| rng.random::<f32>()).collect(),
        )
        .unwrap();
        let y = Tensor::new([64], (0..64).map(|i| (i % 3) as f32).collect()).unwrap();
        model
            .fit(
                &[x],
                &[y],
                FitOptions {
                    batch_size: 32,
                    seed: Some(1),
                    ..quiet(2)
                },
            )
            .unwrap();
        model.get_weights()
    };
    let first = train();
    for _ in 0..3 {
        assert_eq!(train(), first);
    }
}

/// The scalars of one event file, as (tag, step, value).
fn scalars(dir: &std::path::Path) -> Vec<(String, i64, f32)> {
    let file = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("events.out.tfevents.")
        })
        .unwrap_or_else(|| panic!("no event file in {}", dir.display()));
    let events = convnet::train::tensorboard::read_events(&file).unwrap();
    assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
    events
        .iter()
        .filter_map(|e| e.summary.as_ref().map(|s| (e.step, s)))
        .flat_map(|(step, s)| {
            s.value
                .iter()
                .filter_map(move |v| v.simple_value.map(|x| (v.tag.clone(), step, x)))
        })
        .collect()
}

#[test]
fn tensorboard_writes_the_event_files_keras_writes() {
    let (x, y) = blobs(40, 2);
    let mut model = classifier();
    let dir = std::env::temp_dir().join(format!("convnet-tensorboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = FitOptions {
        epochs: 3,
        batch_size: 8,
        validation_split: 0.25,
        callbacks: vec![Box::new(
            TensorBoard::new(&dir)
                .histogram_freq(1)
                .update_freq(UpdateFreq::Batch),
        )],
        ..quiet(3)
    };
    let history = model.fit(&[x], &[y], options).unwrap();
    let train = scalars(&dir.join("train"));
    for (key, tag) in [("loss", "epoch_loss"), ("accuracy", "epoch_accuracy")] {
        let logged: Vec<f32> = train.iter().filter(|t| t.0 == tag).map(|t| t.2).collect();
        let want: Vec<f32> = history
            .get(key)
            .unwrap()
            .iter()
            .map(|&v| v as f32)
            .collect();
        assert_eq!(logged, want, "{tag}");
    }
    let rates: Vec<&(String, i64, f32)> = train
        .iter()
        .filter(|t| t.0 == "epoch_learning_rate")
        .collect();
    assert_eq!(rates.len(), 3);
    assert!((rates[0].2 - 0.05).abs() < 1e-7);
    // 30 training samples in batches of 8: 4 steps an epoch, numbered across epochs.
    let batch_steps: Vec<i64> = train
        .iter()
        .filter(|t| t.0 == "batch_loss")
        .map(|t| t.1)
        .collect();
    assert_eq!(batch_steps, (1..=12).collect::<Vec<i64>>());
    let validation = scalars(&dir.join("validation"));
    let logged: Vec<f32> = validation
        .iter()
        .filter(|t| t.0 == "epoch_loss")
        .map(|t| t.2)
        .collect();
    let want: Vec<f32> = history
        .get("val_loss")
        .unwrap()
        .iter()
        .map(|&v| v as f32)
        .collect();
    assert_eq!(logged, want);
    // One histogram a weight an epoch, counting every value.
    let file = std::fs::read_dir(dir.join("train"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let events = convnet::train::tensorboard::read_events(&file).unwrap();
    let histograms: Vec<(String, f64)> = events
        .iter()
        .filter_map(|e| e.summary.as_ref())
        .flat_map(|s| s.value.iter())
        .filter_map(|v| v.histo.as_ref().map(|h| (v.tag.clone(), h.num)))
        .collect();
    assert_eq!(histograms.len(), 3 * 4);
    assert!(
        histograms.contains(&("dense/kernel/histogram".to_string(), 32.0)),
        "{histograms:?}"
    );
    // A damaged record is an error naming the file, not a panic.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let e = convnet::train::tensorboard::read_events(&file)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("CRC") && e.contains("events.out.tfevents"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lambda_callback_runs_its_closures() {
    let (x, y) = blobs(16, 3);
    let mut model = classifier();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (a, b, c) = (seen.clone(), seen.clone(), seen.clone());
    let callback = LambdaCallback::new()
        .on_train_begin(move || a.lock().unwrap().push("begin".to_string()))
        .on_epoch_end(move |epoch, logs| {
            b.lock()
                .unwrap()
                .push(format!("epoch {epoch} {}", logs.contains_key("loss")))
        })
        .on_batch_end(move |batch, _| c.lock().unwrap().push(format!("batch {batch}")));
    let options = FitOptions {
        batch_size: 8,
        callbacks: vec![Box::new(callback)],
        ..quiet(2)
    };
    model.fit(&[x], &[y], options).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "begin",
            "batch 0",
            "batch 1",
            "epoch 0 true",
            "batch 0",
            "batch 1",
            "epoch 1 true"
        ]
    );
}

/// TensorBoard's own reader (the `tensorboard` Python package, run by
/// scripts/check_tensorboard.py with the Python in `CONVNET_PYTHON`) finds the scalars
/// and histograms convnet wrote, with their values.
#[test]
#[ignore = "needs CONVNET_PYTHON, a Python with the tensorboard package"]
fn tensorboard_reads_the_event_files() {
    let python = std::env::var("CONVNET_PYTHON").expect("CONVNET_PYTHON names a Python");
    let (x, y) = blobs(40, 4);
    let mut model = classifier();
    let dir = std::env::temp_dir().join(format!("convnet-tensorboard-py-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = FitOptions {
        batch_size: 8,
        validation_split: 0.25,
        callbacks: vec![Box::new(TensorBoard::new(&dir).histogram_freq(1))],
        ..quiet(2)
    };
    let history = model.fit(&[x], &[y], options).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/check_tensorboard.py"
    );
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (run, tag, key) in [
        ("train", "epoch_loss", "loss"),
        ("train", "epoch_accuracy", "accuracy"),
        ("validation", "epoch_loss", "val_loss"),
    ] {
        let values: Vec<f64> = read["scalars"][run][tag]
            .as_array()
            .unwrap_or_else(|| panic!("{run}/{tag} not read: {read}"))
            .iter()
            .map(|p| p[1].as_f64().unwrap())
            .collect();
        let want = history.get(key).unwrap();
        assert_eq!(values.len(), want.len(), "{run}/{tag}");
        for (v, w) in values.iter().zip(want) {
            assert!(
                (v - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{run}/{tag}: {v} vs {w}"
            );
        }
    }
    assert_eq!(
        read["histograms"]["train"]["dense/kernel/histogram"][1][1],
        32.0
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The training pass writes an activation over its input where the layer before does
/// not read its own output back (BatchNormalization, a residual Add); after a layer that
/// does (max pooling, a convolution with its own tanh) or whose output carries an
/// activity penalty it must not. Each is checked
/// against the same network whose activations' inputs are also model outputs (given a
/// zero gradient), which the pass never writes over: the same output and gradients.
#[test]
fn activations_written_over_their_inputs_give_the_same_gradients() {
    let network = || {
        let mut exposed = Vec::new();
        let mut activate = |f: ActivationFn, x: SymbolicTensor| {
            exposed.push(x.clone());
            Activation::new(f).call(&x)
        };
        let x = Input::new([8, 8, 2]);
        let y = Conv2D::new(4, (3, 3)).padding(Padding::Same).call(&x);
        let y = activate(ActivationFn::Relu, BatchNormalization::new().call(&y));
        let y = activate(ActivationFn::Sigmoid, MaxPooling2D::new((2, 2)).call(&y));
        let branch = Conv2D::new(4, (1, 1))
            .activation(ActivationFn::Tanh)
            .call(&y);
        let branch = activate(ActivationFn::Sigmoid, branch);
        let y = activate(ActivationFn::Relu, Add::new().call(&[y, branch]));
        // A penalty on BN's output: its gradient is taken from that output.
        let mut penalized = BatchNormalization::new();
        penalized.base_mut().activity_regularizer = Some(Regularizer::l2(0.1));
        let y = activate(ActivationFn::Relu, penalized.call(&y));
        let y = Flatten::new().call(&y);
        let y = Dense::new(3).activation(ActivationFn::Softmax).call(&y);
        (x, y, exposed)
    };
    same_with_and_without_exposing(network, [4, 8, 8, 2], 3);
}

/// A ReLU before a max pooling is applied to the pooling's gradient, and the layer that
/// ends in it (a convolution, an Activation, a ReLU layer; before a pooling and a global
/// pooling) then passes its gradient on as it comes: the same gradients as when each
/// ReLU's output is also a model output, which keeps the ReLU's derivative where it is.
#[test]
fn relus_applied_after_max_pooling_give_the_same_gradients() {
    let network = || {
        let mut exposed = Vec::new();
        let mut expose_it = |x: SymbolicTensor| {
            exposed.push(x.clone());
            x
        };
        let x = Input::new([12, 12, 2]);
        let y = Conv2D::new(4, (3, 3))
            .padding(Padding::Same)
            .activation(ActivationFn::Relu)
            .call(&x);
        let y = MaxPooling2D::new((2, 2)).call(expose_it(y));
        let y = BatchNormalization::new().call(Conv2D::new(6, (3, 3)).call(&y));
        let y = expose_it(Activation::new(ActivationFn::Relu).call(&y));
        let y = MaxPooling2D::new((2, 2)).call(&y);
        let y = ReLU::new().call(Conv2D::new(5, (1, 1)).call(&y));
        let y = GlobalMaxPooling2D::new().call(expose_it(y));
        let y = Dense::new(3).activation(ActivationFn::Softmax).call(&y);
        (x, y, exposed)
    };
    same_with_and_without_exposing(network, [4, 12, 12, 2], 3);
}

/// Builds `network()` (its input, its output and the intermediate tensors to expose)
/// twice: as it is, and with those tensors as extra outputs, whose gradients are zero.
/// Runs both forward and backward on the same random input and output gradient, and
/// checks that the output, the input gradient and every weight gradient agree.
fn same_with_and_without_exposing(
    network: impl Fn() -> (SymbolicTensor, SymbolicTensor, Vec<SymbolicTensor>),
    input: [usize; 4],
    classes: usize,
) {
    let mut rng = rng_from_seed(5);
    let mut draw = |shape: &[usize]| {
        let n = shape.iter().product();
        let values = (0..n).map(|_| rng.random::<f32>() - 0.5).collect();
        Tensor::new(shape.to_vec(), values).unwrap()
    };
    let x = draw(&input);
    let dy = draw(&[input[0], classes]);
    let mut runs = Vec::new();
    for expose in [false, true] {
        let (x_in, y, exposed) = network();
        let mut outputs = vec![y];
        if expose {
            outputs.extend(exposed);
        }
        let mut model = Model::new(&x_in, &outputs).unwrap();
        model.initialize_weights(7).unwrap();
        let outputs = model.forward(&[&x], true).unwrap();
        let y = outputs[0].clone();
        let mut grads = vec![dy.clone()];
        grads.extend(outputs[1..].iter().map(|o| o.zeros_like()));
        let dx = model.backward(&grads).unwrap();
        runs.push((y, dx, model.gradients().concat()));
    }
    let close = |a: &Tensor, b: &Tensor| {
        let pairs = a.data().iter().zip(b.data());
        pairs
            .into_iter()
            .all(|(a, b)| (a - b).abs() <= 1e-6 * (1.0 + b.abs()))
    };
    let ((y, dx, grads), (want_y, want_dx, want_grads)) = (&runs[0], &runs[1]);
    assert!(close(y, want_y), "outputs differ");
    assert!(close(&dx[0], &want_dx[0]), "input gradients differ");
    assert_eq!(grads.len(), want_grads.len());
    for (k, (g, w)) in grads.iter().zip(want_grads).enumerate() {
        assert!(close(g, w), "weight gradient {k} differs");
    }
}
