//! `convnet train` over MPI (a build with the `mpi` feature, `mpirun` from MPICH on the
//! PATH): ranks started by `mpirun -np N`, one thread each, train as one process does
//! on the whole global batch; a rank that dies or cannot read its data ends every rank
//! with an error, soon. Run with `cargo test --release -p convnet-cli --features mpi
//! --test distributed` (CI does).
#![cfg(feature = "mpi")]

use convnet::model::Model;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn convnet() -> &'static str {
    env!("CARGO_BIN_EXE_convnet")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convnet-mpi-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The first `n` images of the built-in Fashion-MNIST sample, scaled to [0, 1], as
/// `dir/x{n}.npy` and `dir/y{n}.npy`: the `--data` and `--labels` arguments.
fn subset(dir: &Path, n: usize) -> [String; 4] {
    let data = convnet::data::fashion_mnist_sample().unwrap();
    let x = data.x_train.slice_rows(0, n).unwrap();
    let scaled = x.data().iter().map(|v| v / 255.0).collect();
    let (xs, ys) = (dir.join(format!("x{n}.npy")), dir.join(format!("y{n}.npy")));
    convnet::Tensor::new(x.shape().to_vec(), scaled)
        .unwrap()
        .write_npy(&xs)
        .unwrap();
    data.y_train
        .slice_rows(0, n)
        .unwrap()
        .write_npy(&ys)
        .unwrap();
    [
        "--data".into(),
        xs.to_str().unwrap().into(),
        "--labels".into(),
        ys.to_str().unwrap().into(),
    ]
}

/// `convnet train` of the reference CNN, one epoch in global batches of 128; under
/// `mpirun -np ranks` unless `ranks` is 1, which runs one process with two threads.
fn train(ranks: usize, dir: &Path, name: &str, extra: &[&str]) -> Output {
    train_model(ranks, dir, name, "fmnist-cnn", extra)
}

/// [`train`] of the model file or name `model`.
fn train_model(ranks: usize, dir: &Path, name: &str, model: &str, extra: &[&str]) -> Output {
    let csv = dir.join(format!("{name}.csv"));
    let output = dir.join(format!("{name}.keras"));
    let mut args: Vec<String> = [
        "train",
        model,
        "--epochs",
        "1",
        "--batch-size",
        "128",
        "--verbose",
        "0",
        "--csv",
        csv.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut command = if ranks == 1 {
        let mut c = Command::new(convnet());
        c.env("RAYON_NUM_THREADS", "2");
        c
    } else {
        let mut c = Command::new("mpirun");
        c.args(["-np", &ranks.to_string(), convnet()]);
        c.env("RAYON_NUM_THREADS", "1");
        c
    };
    command.args(&args).output().unwrap()
}

fn read_csv(path: &Path) -> Vec<(String, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let values: Vec<&str> = lines.next().unwrap().split(',').collect();
    header
        .iter()
        .zip(values)
        .skip(1)
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

fn assert_ran(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The ranks' run equals one process's: its logs and its saved weights.
fn assert_same_run(dir: &Path, single: &str, ranks: &str) {
    let (a, b) = (
        read_csv(&dir.join(format!("{single}.csv"))),
        read_csv(&dir.join(format!("{ranks}.csv"))),
    );
    assert_eq!(a.len(), b.len());
    for ((key, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            (x - y).abs() <= 1e-5 * x.abs(),
            "{key}: {y} from {ranks}, {x} alone"
        );
    }
    let one = Model::load(dir.join(format!("{single}.keras"))).unwrap();
    let many = Model::load(dir.join(format!("{ranks}.keras"))).unwrap();
    let mut worst = 0f64;
    for (w, v) in one.weights().zip(many.weights()) {
        let (p, q) = (w.value.data(), v.value.data());
        let diff: f64 = p.iter().zip(q).map(|(a, b)| f64::from(a - b).powi(2)).sum();
        let norm: f64 = p.iter().map(|a| f64::from(*a).powi(2)).sum();
        let error = (diff / norm.max(1e-30)).sqrt();
        assert!(error <= 1e-5, "{}: {error:e} apart", w.name);
        worst = worst.max(error);
    }
    println!("{ranks}: weights at most {worst:e} from one process's");
}

/// Plain SGD: the ranks' sums differ from one process's in order only, and SGD keeps
/// those differences at rounding size for the steps of these runs (Adam divides
/// near-zero gradients by their own size and turns their rounding into steps of the
/// full learning rate; over hundreds of steps, a ReLU or a max pooling that switches
/// on a rounding difference parts any two runs: see docs/DISTRIBUTED.md).
const SGD: [&str; 4] = ["--optimizer", "sgd", "--learning-rate", "0.1"];

#[test]
fn two_and_three_ranks_train_as_one_process() {
    let dir = scratch("match");
    let with = |data: &[String; 4]| -> Vec<String> {
        SGD.iter()
            .map(|s| s.to_string())
            .chain(data.iter().cloned())
            .collect()
    };
    // 1,280 samples: ten batches of 128, split 64/64.
    let even = with(&subset(&dir, 1280));
    let even: Vec<&str> = even.iter().map(String::as_str).collect();
    assert_ran(&train(1, &dir, "single", &even), "one process");
    assert_ran(&train(2, &dir, "two", &even), "mpirun -np 2");
    assert_same_run(&dir, "single", "two");
    // 1,000 samples: seven batches of 128 split 43/43/42, the last of 104 split
    // 35/35/34.
    let uneven = with(&subset(&dir, 1000));
    let uneven: Vec<&str> = uneven.iter().map(String::as_str).collect();
    assert_ran(&train(1, &dir, "single1000", &uneven), "one process");
    assert_ran(&train(3, &dir, "three", &uneven), "mpirun -np 3");
    assert_same_run(&dir, "single1000", "three");
    // Only rank 0 wrote: one CSV header, one model.
    let csv = std::fs::read_to_string(dir.join("three.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
}

#[test]
fn synchronized_batch_normalization_over_two_ranks_is_one_process() {
    use convnet::layers::{Activation, BatchNormalization, Conv2D, Dense, Flatten, MaxPooling2D};
    use convnet::model::Input;
    use convnet::ActivationFn;
    let dir = scratch("sync-bn");
    // No bias before BatchNormalization: its gradient is zero up to rounding.
    let mut model = convnet::sequential![
        Input::new([28, 28, 1]),
        Conv2D::new(8, (3, 3)).use_bias(false),
        BatchNormalization::new(),
        Activation::new(ActivationFn::Relu),
        MaxPooling2D::new((2, 2)),
        Flatten::new(),
        Dense::new(10).activation(ActivationFn::Softmax)
    ]
    .unwrap();
    model.initialize_weights(1).unwrap();
    let file = dir.join("bn.keras");
    model.save(&file).unwrap();
    let data = subset(&dir, 1280);
    let mut compile = vec![
        "--optimizer",
        "sgd",
        "--learning-rate",
        "0.02",
        "--loss",
        "sparse_categorical_crossentropy",
    ];
    compile.extend(data.iter().map(String::as_str));
    let run = |ranks: usize, name: &str, extra: &[&str]| {
        let mut args = compile.clone();
        args.extend_from_slice(extra);
        assert_ran(
            &train_model(ranks, &dir, name, file.to_str().unwrap(), &args),
            name,
        );
    };
    run(1, "single", &[]);
    run(2, "synced", &["--sync-batch-norm"]);
    assert_same_run(&dir, "single", "synced");
}

#[test]
fn a_killed_rank_ends_every_rank_with_an_error() {
    let dir = scratch("killed");
    let marker = dir.join("killed.keras");
    let start = Instant::now();
    let mut run = Command::new("mpirun")
        .args([
            "-np",
            "2",
            convnet(),
            "train",
            "fmnist-cnn",
            "--data",
            "fashion-mnist-sample",
        ])
        .args([
            "--epochs",
            "100",
            "--verbose",
            "0",
            "--output",
            marker.to_str().unwrap(),
        ])
        .env("RAYON_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Rank 1, found by its environment and its command line, once it is training.
    std::thread::sleep(Duration::from_secs(3));
    let rank1 = rank_process(1, marker.to_str().unwrap()).expect("rank 1 is running");
    unsafe { libc::kill(rank1, libc::SIGKILL) };
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "mpirun still runs a minute later"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !status.success(),
        "mpirun succeeded after a rank was killed"
    );
    assert!(
        rank_process(0, marker.to_str().unwrap()).is_none(),
        "rank 0 outlived its peer"
    );
    assert!(!marker.exists(), "a model was saved");
}

#[test]
fn a_rank_that_cannot_read_its_data_ends_every_rank() {
    let dir = scratch("unreadable");
    let missing = dir.join("missing.npy");
    let out_file = dir.join("never.keras");
    let common = [
        "train",
        "fmnist-cnn",
        "--epochs",
        "1",
        "--verbose",
        "0",
        "--output",
    ];
    let start = Instant::now();
    // MPMD: rank 0 has the data, rank 1 is given a file that does not exist.
    let out = Command::new("mpirun")
        .args(["-np", "1", convnet()])
        .args(common)
        .args([out_file.to_str().unwrap(), "--data", "fashion-mnist-sample"])
        .args([":", "-np", "1", convnet()])
        .args(common)
        .args([
            out_file.to_str().unwrap(),
            "--data",
            missing.to_str().unwrap(),
        ])
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(start.elapsed() < Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rank 1") && stderr.contains("missing.npy"),
        "{stderr}"
    );
    assert!(!out_file.exists());
}

/// The pid of the rank `rank` process whose command line holds `marker`.
fn rank_process(rank: usize, marker: &str) -> Option<i32> {
    let want = format!("PMI_RANK={rank}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            let has =
                |bytes: &[u8], s: &str| bytes.split(|&b| b == 0).any(|part| part == s.as_bytes());
            let is_convnet = cmdline.split(|&b| b == 0).next()? == convnet().as_bytes();
            (is_convnet && has(&cmdline, marker) && has(&environ, &want)).then_some(pid)
        })
}
