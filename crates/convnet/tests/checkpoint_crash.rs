//! A process killed while ModelCheckpoint is writing leaves the previous checkpoint
//! whole. The test runs itself as a child that trains and checkpoints without pause,
//! kills it at staggered moments, and loads the checkpoint after every kill.

use convnet::callbacks::ModelCheckpoint;
use convnet::layers::Dense;
use convnet::model::{Input, Model};
use convnet::train::{FitOptions, Optimizer};
use convnet::Tensor;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const CHILD: &str = "CONVNET_CHECKPOINT_CHILD";

/// The child: a model with ~4 MB of weights (so each save takes a while), one tiny
/// epoch after another, a checkpoint after each.
fn train_forever(path: PathBuf) {
    let model = convnet::sequential![Input::new([1000]), Dense::new(1000), Dense::new(1)].unwrap();
    let mut model = model
        .compile_named(Optimizer::sgd(1e-6), "mse", &[])
        .unwrap();
    let x = Tensor::full([2, 1000], 0.01);
    let y = Tensor::zeros([2, 1]);
    let checkpoint = ModelCheckpoint::new(path.to_string_lossy());
    model
        .fit(
            &[x],
            &[y],
            FitOptions {
                epochs: usize::MAX,
                verbose: 0,
                callbacks: vec![Box::new(checkpoint)],
                ..FitOptions::default()
            },
        )
        .unwrap();
}

#[test]
fn a_kill_mid_checkpoint_leaves_the_last_good_file() {
    if let Some(path) = std::env::var_os(CHILD) {
        train_forever(PathBuf::from(path));
        return;
    }
    let dir = std::env::temp_dir().join(format!("convnet-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("checkpoint.keras");
    let mut interrupted_writes = 0;
    for round in 0..6u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "a_kill_mid_checkpoint_leaves_the_last_good_file",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD, &path)
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !path.exists() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Kill at staggered moments so some kills land inside a write.
        std::thread::sleep(Duration::from_millis(37 * round + 11));
        child.kill().unwrap();
        child.wait().unwrap();
        let leftovers = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count();
        interrupted_writes += leftovers;
        let model = Model::load(&path)
            .unwrap_or_else(|e| panic!("after kill {round}: the checkpoint is broken: {e}"));
        assert_eq!(model.count_params(), 1000 * 1000 + 1000 + 1000 + 1);
        // Clear the half-written temporary files for the next round.
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
    }
    eprintln!("{interrupted_writes} of 6 kills interrupted a write; every checkpoint loaded");
    std::fs::remove_dir_all(&dir).ok();
}
