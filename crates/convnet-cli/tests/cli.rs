//! The `convnet` binary end to end: the edge-detection example of the design notes run
//! through `convnet apply`, and errors that exit non-zero with one clear line.

use convnet::Tensor;
use std::path::{Path, PathBuf};
use std::process::Command;

fn convnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_convnet"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convnet-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn apply_runs_a_keras_layer_config_on_npy_files() {
    let dir = scratch("apply");
    let layer = dir.join("edge.json");
    std::fs::write(
        &layer,
        r#"{"class_name": "Conv2D", "config": {"name": "edges", "filters": 1, "kernel_size": [3, 3], "use_bias": false}}"#,
    )
    .unwrap();
    Tensor::new([1, 4, 4, 1], (1..=16).map(|v| v as f32).collect())
        .unwrap()
        .write_npy(dir.join("x.npy"))
        .unwrap();
    Tensor::new(
        [3, 3, 1, 1],
        vec![-1.0, 0.0, 1.0, -1.0, 0.0, 1.0, -1.0, 0.0, 1.0],
    )
    .unwrap()
    .write_npy(dir.join("k.npy"))
    .unwrap();
    let out = convnet()
        .arg("apply")
        .arg(&layer)
        .args(["--input", dir.join("x.npy").to_str().unwrap()])
        .args(["--weights", dir.join("k.npy").to_str().unwrap()])
        .args(["--output", dir.join("y.npy").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Conv2D 'edges'"));
    let y = Tensor::read_npy(dir.join("y.npy")).unwrap();
    assert_eq!(y.shape(), &[1, 2, 2, 1]);
    assert_eq!(y.data(), &[6.0, 6.0, 6.0, 6.0]);

    // The same layer on an input too small for its kernel: one line, non-zero exit.
    Tensor::zeros([1, 2, 2, 1])
        .write_npy(dir.join("small.npy"))
        .unwrap();
    let out = convnet()
        .arg("apply")
        .arg(&layer)
        .args(["--input", dir.join("small.npy").to_str().unwrap()])
        .args(["--output", dir.join("z.npy").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("convnet: layer 'edges' (Conv2D)") && stderr.contains("larger than"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_broken_layer_file_names_the_file() {
    let dir = scratch("broken");
    let layer = dir.join("bad.json");
    std::fs::write(
        &layer,
        r#"{"class_name": "Conv2D", "config": {"name": "c", "kernel_size": 3}}"#,
    )
    .unwrap();
    Tensor::zeros([1, 4, 4, 1])
        .write_npy(dir.join("x.npy"))
        .unwrap();
    let out = convnet()
        .arg("apply")
        .arg(&layer)
        .args([
            "--input",
            dir.join("x.npy").to_str().unwrap(),
            "--output",
            "/dev/null",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.json") && stderr.contains("'filters': missing"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn layers_lists_every_class() {
    let out = convnet().arg("layers").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for class in convnet::layers::layer_classes() {
        assert!(text.contains(class), "{class} missing from:\n{text}");
    }
}

fn golden(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../convnet/tests/golden")
        .join(path)
}

fn run(args: &[&str]) -> std::process::Output {
    convnet().args(args).output().unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn relative_error(a: &Tensor, b: &Tensor) -> f64 {
    let diff: f64 = a
        .data()
        .iter()
        .zip(b.data())
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    let norm: f64 = b.data().iter().map(|&y| (y as f64).powi(2)).sum();
    (diff / norm.max(1e-30)).sqrt()
}

/// Runs `convnet` expecting success; its standard output.
fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "convnet {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// One line on stderr, non-zero exit, no panic.
fn assert_clean_failure(out: &std::process::Output, expected: &[&str]) {
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("convnet: ") && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    for e in expected {
        assert!(stderr.contains(e), "{stderr:?} should mention {e:?}");
    }
}

#[test]
fn summary_and_predict_agree_with_keras_on_every_golden_model() {
    let dir = scratch("golden");
    let models: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden("models/models.json")).unwrap())
            .unwrap();
    for entry in models["models"].as_array().unwrap() {
        let file = golden(&format!("models/{}", entry["keras"].as_str().unwrap()));
        let out = run(&["summary", path(&file)]);
        let want = std::fs::read_to_string(golden(&format!(
            "models/{}",
            entry["summary"].as_str().unwrap()
        )))
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            want,
            "{}",
            file.display()
        );
        let Some(inputs) = entry["inputs"].as_array() else {
            continue;
        };
        let output = dir.join("y.npy");
        let input = golden(&format!("models/{}", inputs[0].as_str().unwrap()));
        run_ok(&[
            "predict",
            path(&file),
            "--input",
            path(&input),
            "--output",
            path(&output),
        ]);
        let want = Tensor::read_npy(golden(&format!(
            "models/{}",
            entry["outputs"][0].as_str().unwrap()
        )))
        .unwrap();
        let error = relative_error(&Tensor::read_npy(&output).unwrap(), &want);
        assert!(error < 1e-5, "{}: {error:.2e}", file.display());
    }
}

#[test]
fn train_reproduces_the_golden_keras_fits() {
    let dir = scratch("fits");
    for name in ["sgd", "adam"] {
        let trained = dir.join(format!("{name}.keras"));
        run_ok(&[
            "train",
            path(&golden(&format!("train/fit_{name}.initial.keras"))),
            "--data",
            path(&golden("train/fit_x.npy")),
            "--labels",
            path(&golden("train/fit_y.npy")),
            "--batch-size",
            "8",
            "--epochs",
            "2",
            "--no-shuffle",
            "--verbose",
            "0",
            "--output",
            path(&trained),
        ]);
        let predictions = dir.join(format!("{name}.npy"));
        run_ok(&[
            "predict",
            path(&trained),
            "--input",
            path(&golden("train/fit_x.npy")),
            "--output",
            path(&predictions),
        ]);
        let want =
            Tensor::read_npy(golden(&format!("train/fit_{name}.trained_predictions.npy"))).unwrap();
        let error = relative_error(&Tensor::read_npy(&predictions).unwrap(), &want);
        assert!(error < 1e-4, "{name}: {error:.2e}");
    }
}

#[test]
fn the_default_training_runs_on_the_built_in_sample() {
    let dir = scratch("default");
    let model = dir.join("m.keras");
    let csv = dir.join("log.csv");
    let stdout = run_ok(&[
        "train",
        "--data",
        "fashion-mnist-sample",
        "--epochs",
        "1",
        "--verbose",
        "2",
        "--output",
        path(&model),
        "--csv",
        path(&csv),
    ]);
    assert!(
        stdout.contains("Data: the built-in Fashion-MNIST sample"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Model: \"sequential\"")
            && stdout.contains("Epoch 1/1")
            && stdout.contains("test accuracy: "),
        "{stdout}"
    );
    assert!(std::fs::read_to_string(&csv)
        .unwrap()
        .starts_with("epoch,accuracy,loss"));
    let out = run(&["evaluate", path(&model), "--data", "fashion-mnist-sample"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("accuracy: "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn models_summary_and_convert() {
    let out = run(&["models"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("fmnist-cnn"));
    let out = run(&["summary", "seed-inception"]);
    let want = std::fs::read_to_string(golden("models/seed_inception.summary.txt")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    let dir = scratch("convert");
    let converted = dir.join("resnet.keras");
    run_ok(&[
        "convert",
        path(&golden("models/resnet_block.h5")),
        path(&converted),
    ]);
    let out = run(&["summary", path(&converted)]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(golden("models/resnet_block.summary.txt")).unwrap()
    );
    let out = run(&["convert", path(&converted), path(&dir.join("back.h5"))]);
    assert_clean_failure(&out, &["back.h5", "not supported"]);
}

#[test]
fn errors_a_user_can_hit_are_one_clear_line() {
    let dir = scratch("errors");
    // A missing file.
    assert_clean_failure(
        &run(&["summary", "no-such-model.keras"]),
        &["no-such-model.keras", "no such file"],
    );
    // Data whose shape the model cannot take.
    let x = dir.join("x.npy");
    let y = dir.join("y.npy");
    Tensor::zeros([4, 5, 5, 1]).write_npy(&x).unwrap();
    Tensor::zeros([4]).write_npy(&y).unwrap();
    let out = run(&[
        "train",
        "fmnist-cnn",
        "--data",
        path(&x),
        "--labels",
        path(&y),
        "--epochs",
        "1",
        "--output",
        path(&dir.join("m.keras")),
    ]);
    assert_clean_failure(&out, &["input_layer", "(None, 28, 28, 1)", "(4, 5, 5, 1)"]);
    // Labels out of range.
    Tensor::zeros([4, 28, 28, 1]).write_npy(&x).unwrap();
    Tensor::full([4], 12.0).write_npy(&y).unwrap();
    let out = run(&[
        "train",
        "fmnist-cnn",
        "--data",
        path(&x),
        "--labels",
        path(&y),
        "--epochs",
        "1",
        "--verbose",
        "0",
        "--output",
        path(&dir.join("m.keras")),
    ]);
    assert_clean_failure(&out, &["label 12", "below 10"]);
    // An unwritable output path.
    let out = run(&[
        "train",
        "--data",
        "fashion-mnist-sample",
        "--epochs",
        "1",
        "--output",
        "/no/such/folder/m.keras",
    ]);
    assert_clean_failure(&out, &["/no/such/folder/m.keras", "cannot write"]);
    // predict with the wrong number of inputs.
    let out = run(&[
        "predict",
        "fmnist-cnn",
        "--input",
        path(&x),
        "--input",
        path(&x),
        "--output",
        path(&y),
    ]);
    assert_clean_failure(&out, &["1 inputs but 2"]);
}

#[test]
fn explain_conv_works_the_design_notes_example() {
    let text = run_ok(&[
        "explain",
        "conv",
        "--input",
        "1 2 3 4; 5 6 7 8; 9 10 11 12; 13 14 15 16",
        "--kernel",
        "-1 0 1; -1 0 1; -1 0 1",
    ]);
    assert!(
        text.contains(
            "S(0,0) = 1·(-1) + 2·0 + 3·1 + 5·(-1) + 6·0 + 7·1 + 9·(-1) + 10·0 + 11·1 = 6"
        ),
        "{text}"
    );
    assert!(text.contains("cross-correlation"));
    assert!(text.ends_with("Output (2x2):\n  6 6\n  6 6\n"), "{text}");
    let out = run(&["explain", "conv", "--input", "1 2; 3", "--kernel", "1"]);
    assert_clean_failure(&out, &["--input", "row 2 has 1 values"]);
}

#[test]
fn explain_conv_animates_the_sliding_kernel() {
    use image::AnimationDecoder;
    let dir = scratch("animate");
    let gif = dir.join("sliding.gif");
    let text = run_ok(&[
        "explain",
        "conv",
        "--input",
        "1 2 3 4; 5 6 7 8; 9 10 11 12; 13 14 15 16",
        "--kernel",
        "-1 0 1; -1 0 1; -1 0 1",
        "--animate",
        path(&gif),
    ]);
    // Four output positions and the whole output.
    assert!(text.contains("(5 frames, "), "{text}");
    let frames = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(
        std::fs::File::open(&gif).unwrap(),
    ))
    .unwrap()
    .into_frames()
    .collect_frames()
    .unwrap();
    assert_eq!(frames.len(), 5);
    let size = text.rsplit_once(", ").unwrap().1.trim_end_matches(")\n");
    let (w, h) = frames[0].buffer().dimensions();
    assert_eq!(size, format!("{w}x{h}"));
    let out = run(&[
        "explain",
        "conv",
        "--input",
        "1 2; 3 4",
        "--kernel",
        "1 1; 1 1",
        "--stride",
        "2",
        "--dilation",
        "2",
        "--padding",
        "2",
        "--animate",
        path(&gif),
    ]);
    assert_clean_failure(
        &out,
        &["strides > 1 cannot be combined with dilation_rate > 1"],
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn explain_separable_compares_the_three_layers() {
    let text = run_ok(&[
        "explain",
        "separable",
        "--input",
        "56,56,32",
        "--filters",
        "64",
        "--kernel",
        "3",
    ]);
    for line in [
        "Conv2D                 3·3·32·64 + 64 = 18,496",
        "SeparableConv2D        3·3·32 + 32·64 + 64 = 2,400",
        "1/N + 1/K² = 1/64 + 1/9 = 0.1267",
        "Conv2D                 56·56·3·3·32·64 = 57,802,752",
        "x the Conv2D's time",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    assert_eq!(text.matches("(None, 56, 56, 64)").count(), 3, "{text}");
    for (args, expected) in [
        (
            vec!["--input", "56,56", "--filters", "8", "--kernel", "3"],
            "H,W,C",
        ),
        (
            vec!["--input", "5,5,x", "--filters", "8", "--kernel", "3"],
            "'x' is not a whole number",
        ),
        (
            vec![
                "--input",
                "5,5,3",
                "--filters",
                "8",
                "--kernel",
                "3",
                "--padding",
                "full",
            ],
            "same or valid",
        ),
        (
            vec![
                "--input",
                "2,2,3",
                "--filters",
                "8",
                "--kernel",
                "3",
                "--padding",
                "valid",
            ],
            "larger than",
        ),
    ] {
        let mut all = vec!["explain", "separable"];
        all.extend(args);
        assert_clean_failure(&run(&all), &[expected]);
    }
}

#[test]
fn explain_inception_counts_the_notes_block() {
    let dir = scratch("inception");
    let png = dir.join("inception.png");
    let text = run_ok(&["explain", "inception", "--plot", path(&png)]);
    assert!(text.contains("→ (None, 224, 224, 192)"), "{text}");
    assert!(text.contains("256 + 1,792 + 4,864 = 6,912"), "{text}");
    assert!(image::open(&png).unwrap().width() > 0);
    assert_clean_failure(
        &run(&[
            "explain",
            "inception",
            "--filters",
            "64,64",
            "--kernels",
            "1,3,5",
        ]),
        &["one of each per branch"],
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn explain_model_shows_each_layers_arithmetic() {
    let text = run_ok(&["explain", "seed-inception"]);
    assert!(
        text.contains("(224 − 5 + 2·2) / 1 + 1 = 224") && text.contains("5·5·3·64 + 64 = 4,864"),
        "{text}"
    );
    assert_clean_failure(&run(&["explain"]), &["explain what?"]);
}

#[test]
fn train_on_a_folder_of_images_and_on_an_npz_file() {
    let dir = scratch("images");
    // Two classes of 28x28 pictures: dark on the left half, or on the right half.
    for (class, left) in [("left", true), ("right", false)] {
        std::fs::create_dir_all(dir.join("pictures").join(class)).unwrap();
        for i in 0..8 {
            let values: Vec<f32> = (0..32 * 30)
                .map(|p| {
                    if ((p % 30) < 15) == left {
                        10.0 + i as f32
                    } else {
                        240.0
                    }
                })
                .collect();
            convnet::data::write_png(
                dir.join("pictures").join(class).join(format!("{i}.png")),
                &values,
                32,
                30,
                1,
            )
            .unwrap();
        }
    }
    let model = dir.join("m.keras");
    let stdout = run_ok(&[
        "train",
        "--data",
        path(&dir.join("pictures")),
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--verbose",
        "0",
        "--output",
        path(&model),
    ]);
    assert!(
        stdout.contains("16 images of 2 classes (left, right)")
            && stdout.contains("resized to 28x28"),
        "{stdout}"
    );

    let npz = dir.join("data.npz");
    let x = Tensor::full([6, 28, 28, 1], 0.5);
    let y = Tensor::new([6], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    convnet::io::write_npz(
        &npz,
        &[
            ("x_train", &x),
            ("y_train", &y),
            ("x_test", &x),
            ("y_test", &y),
        ],
    )
    .unwrap();
    let stdout = run_ok(&[
        "train",
        "--data",
        path(&npz),
        "--epochs",
        "1",
        "--verbose",
        "0",
        "--output",
        path(&model),
    ]);
    assert!(
        stdout.contains("x_test/y_test") && stdout.contains("test accuracy"),
        "{stdout}"
    );
    let bad = dir.join("bad.npz");
    convnet::io::write_npz(&bad, &[("images", &x)]).unwrap();
    let out = run(&[
        "train",
        "--data",
        path(&bad),
        "--epochs",
        "1",
        "--output",
        path(&model),
    ]);
    assert_clean_failure(&out, &["bad.npz", "x_train and y_train", "images"]);
}

#[test]
fn filter_and_visualize_write_the_pictures_they_compute() {
    let dir = scratch("pictures");
    // A vertical edge: dark left half, bright right half.
    let values: Vec<f32> = (0..20 * 20)
        .map(|p| if p % 20 < 10 { 0.0 } else { 200.0 })
        .collect();
    let image = dir.join("edge.png");
    convnet::data::write_png_range(&image, &values, 20, 20, 1, (0.0, 255.0)).unwrap();
    let out_png = dir.join("sobel.png");
    run_ok(&[
        "filter",
        path(&image),
        "--kernel",
        "sobel-x",
        "-o",
        path(&out_png),
    ]);
    // The PNG holds the computed feature map, scaled to 0–255.
    let written = convnet::data::read_image(&out_png, None, 1).unwrap();
    assert_eq!(written.shape(), &[1, 20, 20, 1]);
    let input = convnet::data::read_image(&image, None, 1).unwrap();
    let expected =
        convnet::show::filter_image(&input, &convnet::show::kernel("sobel-x").unwrap()).unwrap();
    let (lo, hi) = expected
        .data()
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    for (w, e) in written.data().iter().zip(expected.data()) {
        assert!((w - ((e - lo) / (hi - lo) * 255.0).round()).abs() <= 1.0);
    }
    // The edge is where the response peaks: columns 9 and 10.
    assert_eq!(written.data()[10 * 20 + 9], 255.0);
    assert_clean_failure(
        &run(&[
            "filter",
            path(&image),
            "--kernel",
            "blurry",
            "-o",
            path(&out_png),
        ]),
        &["'blurry'", "sobel-x"],
    );

    run_ok(&[
        "visualize",
        "fmnist-cnn",
        "--image",
        path(&image),
        "-o",
        path(&dir.join("viz")),
    ]);
    let kernels = convnet::data::read_image(dir.join("viz/kernels.png"), None, 1).unwrap();
    assert_eq!(
        kernels.shape(),
        &[1, 6 * 37 + 1, 6 * 37 + 1, 1],
        "32 kernels of 3x3 at 12x: a 6x6 grid of 37-pixel cells"
    );
    let maps = convnet::data::read_image(dir.join("viz/conv2d.png"), None, 1).unwrap();
    assert_eq!(
        maps.shape()[1],
        6 * (26 * 2 + 1) + 1,
        "32 maps of 26x26 at 2x"
    );
    assert!(dir.join("viz/conv2d_1.png").exists());
}

#[test]
fn train_plots_its_curves() {
    let dir = scratch("plot");
    let plot = dir.join("curves.png");
    run_ok(&[
        "train",
        "--data",
        "fashion-mnist-sample",
        "--epochs",
        "2",
        "--validation-split",
        "0.2",
        "--verbose",
        "0",
        "--output",
        path(&dir.join("m.keras")),
        "--plot",
        path(&plot),
    ]);
    let image = convnet::data::read_image(&plot, None, 3).unwrap();
    assert_eq!(
        image.shape(),
        &[1, 360, 2 * 480, 3],
        "two panels: accuracy and loss"
    );
    // Blue (training) and orange (validation) lines are drawn.
    let pixels: Vec<&[f32]> = image.data().chunks(3).collect();
    assert!(
        pixels.iter().any(|p| p[2] > 200.0 && p[0] < 60.0),
        "a blue line"
    );
    assert!(
        pixels
            .iter()
            .any(|p| p[0] > 200.0 && (100.0..150.0).contains(&p[1]) && p[2] < 60.0),
        "an orange line"
    );
}

#[test]
fn train_with_augmentation() {
    let dir = scratch("augment");
    let out = run(&[
        "train",
        "--data",
        "fashion-mnist-sample",
        "--epochs",
        "1",
        "--augment",
        "flip,translate=2",
        "--verbose",
        "0",
        "--output",
        path(&dir.join("m.keras")),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("test accuracy"));
    let out = run(&[
        "train",
        "--data",
        "fashion-mnist-sample",
        "--epochs",
        "1",
        "--augment",
        "rotate",
        "--output",
        path(&dir.join("m.keras")),
    ]);
    assert_clean_failure(&out, &["--augment", "'rotate'"]);
}

#[test]
fn bench_times_a_model_and_refuses_unknown_workloads() {
    let dir = scratch("bench");
    let json = dir.join("results.jsonl");
    let out = run_ok(&[
        "bench",
        "seed-sequential",
        "--batch-size",
        "4",
        "--threads",
        "1",
        "--json",
        path(&json),
    ]);
    assert!(out.contains("peak f32 (FMA loop)"), "{out}");
    for what in [
        "training step, batch 4",
        "inference, batch 1",
        "inference, batch 4",
        "peak memory",
    ] {
        assert!(out.contains(what), "no '{what}' in {out}");
    }
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines
        .iter()
        .all(|l| l["engine"] == "convnet" && l["ms"].as_f64().unwrap() > 0.0 && l["threads"] == 1));
    assert_clean_failure(
        &run(&["bench", "--workload", "W12"]),
        &["no workload 'W12'"],
    );
    assert_clean_failure(&run(&["bench", "no-such-model"]), &["no-such-model"]);
}

/// `convnet summary` and `convnet explain` on every Keras program and application of the
/// library's corpora, given the config.json Keras wrote: the summary is Keras's.
#[test]
fn summary_and_explain_run_on_every_keras_corpus_model() {
    use std::io::Read;
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../convnet/tests/golden");
    let dir = scratch("corpus");
    let mut checked = 0;
    for corpus in ["programs", "applications"] {
        let listing: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(golden.join(corpus).join(format!("{corpus}.json"))).unwrap(),
        )
        .unwrap();
        for name in listing.as_object().unwrap().keys() {
            let archive = std::fs::File::open(golden.join(corpus).join(format!("{name}.zip")));
            let mut zip = zip::ZipArchive::new(archive.unwrap()).unwrap();
            let mut member = |file: &str| {
                let mut text = String::new();
                zip.by_name(file)
                    .unwrap()
                    .read_to_string(&mut text)
                    .unwrap();
                text
            };
            let (config, summary) = (member("config.json"), member("summary.txt"));
            let path = dir.join(format!("{name}.json"));
            std::fs::write(&path, config).unwrap();
            let out = convnet().arg("summary").arg(&path).output().unwrap();
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                summary,
                "{name}: summary"
            );
            let out = convnet().arg("explain").arg(&path).output().unwrap();
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 47, "{checked} models");
}

/// `(class, score)` of each ranked line `  1.    4 [name] 0.218228` of `predict --image`.
fn ranked(text: &str) -> Vec<(usize, f32)> {
    text.lines()
        .filter(|l| {
            l.trim_start()
                .split('.')
                .next()
                .is_some_and(|r| r.parse::<usize>().is_ok())
        })
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (
                words[1].parse().unwrap(),
                words.last().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

fn read_npz(path: &Path, key: &str) -> Tensor {
    convnet::io::read_npz(path)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == key)
        .unwrap()
        .1
}

#[test]
fn predict_image_reads_resizes_and_preprocesses_as_keras() {
    let dir = golden("legacy_weights");
    let out = run_ok(&[
        "predict",
        "MobileNetV2(alpha=0.35, classes=5, input_shape=(32, 32, 3))",
        "--weights",
        path(&dir.join("mobilenet_v2_035_top5.h5")),
        "--image",
        path(&dir.join("mobilenet_v2_035.png")),
        "--top",
        "3",
    ]);
    let keras = read_npz(&dir.join("mobilenet_v2_035.npz"), "image_scores");
    let scores = keras.data();
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let got = ranked(&out);
    assert_eq!(got.len(), 3, "{out}");
    for ((class, score), want) in got.iter().zip(&order) {
        assert_eq!(class, want, "{out}");
        assert!((score - scores[*want]).abs() < 1e-4, "{out}");
    }
}

/// `python scripts/make_legacy_weights.py DIR resnet50_imagenet`, then
/// `CONVNET_LEGACY_WEIGHTS=DIR cargo test --release -p convnet-cli -- --ignored resnet50`.
#[test]
#[ignore = "needs the ImageNet-layout ResNet50 file scripts/make_legacy_weights.py writes"]
fn predict_resnet50_with_imagenet_weights_prints_keras_top_five() {
    let dir = PathBuf::from(
        std::env::var_os("CONVNET_LEGACY_WEIGHTS")
            .expect("CONVNET_LEGACY_WEIGHTS names the folder"),
    );
    let out = run_ok(&[
        "predict",
        "resnet50",
        "--weights",
        path(&dir.join("resnet50_weights_tf_dim_ordering_tf_kernels.h5")),
        "--image",
        path(&dir.join("resnet50_imagenet.png")),
        "--top",
        "5",
    ]);
    let npz = dir.join("resnet50_imagenet.npz");
    let classes = read_npz(&npz, "top_classes");
    let scores = read_npz(&npz, "top_scores");
    let got = ranked(&out);
    assert_eq!(got.len(), 5, "{out}");
    let names = convnet::applications::imagenet_class_names();
    for (i, (class, score)) in got.iter().enumerate() {
        assert_eq!(*class, classes.data()[i] as usize, "{out}");
        assert!((score - scores.data()[i]).abs() < 1e-4, "{out}");
        assert!(out.contains(names[*class]), "{out}");
    }
}

#[test]
fn applications_resolve_by_name_and_by_keras_call() {
    let out = run_ok(&["models"]);
    assert!(
        out.contains("resnet50") && out.contains("mobilenet_v2"),
        "{out}"
    );
    let out = run_ok(&[
        "summary",
        "ResNet50(include_top=False, input_shape=(64, 64, 3), pooling='avg')",
    ]);
    assert!(out.contains("Model: \"resnet50\""), "{out}");
    assert!(out.contains("Total params: 23,587,712"), "{out}");
    assert!(!out.contains("predictions"), "{out}");
    let out = run(&["summary", "ResNet50(pooling='mean')"]);
    assert_clean_failure(&out, &["pooling", "'avg'"]);
    let out = run(&["summary", "ResNet50(weights='imagenet')"]);
    assert_clean_failure(&out, &["weights", "--weights"]);
    let out = run(&["summary", "resnet50(alpha=0.5)"]);
    assert_clean_failure(&out, &["alpha"]);
}

#[test]
fn a_model_trained_on_an_image_folder_keeps_its_class_names() {
    let dir = scratch("class-folders");
    for (class, shade) in [("cats", 30u8), ("dogs", 220u8)] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..4 {
            image::GrayImage::from_pixel(8, 8, image::Luma([shade + i]))
                .save(dir.join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let config = dir.join("config.json");
    let model = convnet::sequential![
        convnet::Input::new([8, 8, 1]),
        convnet::layers::Flatten::new(),
        convnet::layers::Dense::new(2).activation(convnet::ActivationFn::Softmax),
    ]
    .unwrap();
    std::fs::write(&config, convnet::io::config_json(&model).to_string()).unwrap();
    let trained = dir.join("trained.keras");
    run_ok(&[
        "train",
        path(&config),
        "--data",
        path(&dir),
        "--epochs",
        "1",
        "--verbose",
        "0",
        "--output",
        path(&trained),
    ]);
    let loaded = convnet::Model::load(&trained).unwrap();
    assert_eq!(loaded.class_names().unwrap(), ["cats", "dogs"]);
    let out = run_ok(&[
        "predict",
        path(&trained),
        "--image",
        path(&dir.join("dogs/0.png")),
        "--top",
        "2",
    ]);
    assert!(out.contains("cats") && out.contains("dogs"), "{out}");
}

#[test]
fn train_freezes_and_unfreezes_layers_by_name_or_prefix() {
    let dir = scratch("freeze");
    let class_dir = dir.join("data");
    for (class, shade) in [("a", 40u8), ("b", 200u8)] {
        std::fs::create_dir_all(class_dir.join(class)).unwrap();
        for i in 0..4 {
            image::GrayImage::from_pixel(6, 6, image::Luma([shade + 3 * i]))
                .save(class_dir.join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let model = convnet::sequential![
        convnet::Input::new([6, 6, 1]),
        convnet::layers::Flatten::new(),
        convnet::layers::Layer::named(convnet::layers::Dense::new(4), "hidden_1"),
        convnet::layers::Layer::named(convnet::layers::Dense::new(3), "hidden_2"),
        convnet::layers::Layer::named(
            convnet::layers::Dense::new(2).activation(convnet::ActivationFn::Softmax),
            "out"
        ),
    ]
    .unwrap();
    let initial = dir.join("initial.keras");
    model.save(&initial).unwrap();
    let trained = dir.join("trained.keras");
    let out = run_ok(&[
        "train",
        path(&initial),
        "--data",
        path(&class_dir),
        "--epochs",
        "2",
        "--verbose",
        "0",
        "--freeze",
        "hidden_*",
        "--unfreeze",
        "hidden_2",
        "--tensorboard",
        path(&dir.join("logs")),
        "--output",
        path(&trained),
    ]);
    let events = std::fs::read_dir(dir.join("logs/train"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let events = convnet::train::tensorboard::read_events(&events).unwrap();
    let tags: Vec<&str> = events
        .iter()
        .filter_map(|e| e.summary.as_ref())
        .flat_map(|s| s.value.iter().map(|v| v.tag.as_str()))
        .collect();
    assert!(
        tags.contains(&"epoch_loss") && tags.contains(&"out/kernel/histogram"),
        "{tags:?}"
    );
    assert!(
        out.contains("Froze hidden_1, hidden_2") && out.contains("Unfroze hidden_2"),
        "{out}"
    );
    let loaded = convnet::Model::load(&trained).unwrap();
    let weights =
        |m: &convnet::Model, name: &str| m.get_layer(name).unwrap().weights()[0].value.clone();
    assert_eq!(
        weights(&loaded, "hidden_1").data(),
        weights(&model, "hidden_1").data()
    );
    assert_ne!(
        weights(&loaded, "hidden_2").data(),
        weights(&model, "hidden_2").data()
    );
    assert_ne!(
        weights(&loaded, "out").data(),
        weights(&model, "out").data()
    );
    assert!(!loaded.get_layer("hidden_1").unwrap().base().trainable);
    let out = run(&[
        "train",
        path(&initial),
        "--data",
        path(&class_dir),
        "--freeze",
        "conv*",
        "--output",
        path(&trained),
    ]);
    assert_clean_failure(&out, &["no layer matching 'conv*'", "hidden_1"]);
}

#[test]
fn train_adapts_the_input_normalization_to_the_data() {
    let dir = scratch("adapt");
    let x = Tensor::new(
        vec![6, 2, 2, 1],
        (0..24).map(|i| (i % 7) as f32 * 10.0).collect(),
    )
    .unwrap();
    let y = Tensor::new(vec![6], vec![0.0, 1.0, 0.0, 1.0, 0.0, 1.0]).unwrap();
    x.write_npy(dir.join("x.npy")).unwrap();
    y.write_npy(dir.join("y.npy")).unwrap();
    let model = convnet::sequential![
        convnet::Input::new([2, 2, 1]),
        convnet::layers::Normalization::new(),
        convnet::layers::Flatten::new(),
        convnet::layers::Dense::new(2).activation(convnet::ActivationFn::Softmax),
    ]
    .unwrap();
    let initial = dir.join("initial.keras");
    model.save(&initial).unwrap();
    let trained = dir.join("trained.keras");
    let (x_path, y_path) = (dir.join("x.npy"), dir.join("y.npy"));
    let args = |adapt: bool| {
        let mut args = vec![
            "train",
            path(&initial),
            "--data",
            path(&x_path),
            "--labels",
            path(&y_path),
            "--epochs",
            "1",
            "--verbose",
            "0",
            "--output",
            path(&trained),
        ];
        if adapt {
            args.push("--adapt");
        }
        args
    };
    let out = run_ok(&args(true));
    assert!(
        out.contains("Adapted normalization to the 6 training samples"),
        "{out}"
    );
    let loaded = convnet::Model::load(&trained).unwrap();
    let weights = loaded.get_layer("normalization").unwrap().weights();
    let mean = f64::from(weights[0].value.data()[0]);
    let want = x.data().iter().map(|&v| f64::from(v)).sum::<f64>() / 24.0;
    assert!((mean - want).abs() < 1e-4, "{mean} vs {want}");
    let variance = f64::from(weights[1].value.data()[0]);
    let want_var = x
        .data()
        .iter()
        .map(|&v| (f64::from(v) - want).powi(2))
        .sum::<f64>()
        / 24.0;
    assert!(
        (variance - want_var).abs() < 1e-2,
        "{variance} vs {want_var}"
    );
    let no_normalization = convnet::sequential![
        convnet::Input::new([2, 2, 1]),
        convnet::layers::Flatten::new(),
        convnet::layers::Dense::new(2),
    ]
    .unwrap();
    no_normalization.save(&initial).unwrap();
    assert_clean_failure(
        &run(&args(true)),
        &["no Normalization layer reading its input"],
    );
}

#[test]
fn hostile_configs_fail_in_one_line_in_summary_and_predict() {
    let dir = scratch("hostile");
    let x = dir.join("x.npy");
    Tensor::zeros([1, 8, 8, 2]).write_npy(&x).unwrap();
    let big = 1u64 << 40;
    for (name, layer) in [
        (
            "upsampling",
            serde_json::json!({"class_name": "UpSampling2D", "config": {"name": "up", "size": [big, big]}}),
        ),
        (
            "huge_output",
            serde_json::json!({"class_name": "UpSampling2D", "config": {"name": "up", "size": [16384, 16384]}}),
        ),
        (
            "padding",
            serde_json::json!({"class_name": "ZeroPadding2D", "config": {"name": "up", "padding": 1u64 << 62}}),
        ),
    ] {
        let config = serde_json::json!({"class_name": "Sequential", "config": {"name": "s", "layers": [
            {"class_name": "InputLayer", "config": {"batch_shape": [null, 8, 8, 2], "name": "input_layer"}},
            layer,
        ]}});
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, config.to_string()).unwrap();
        assert_clean_failure(&run(&["summary", path(&file)]), &["'up'"]);
        let y = dir.join("y.npy");
        assert_clean_failure(
            &run(&[
                "predict",
                path(&file),
                "--input",
                path(&x),
                "--output",
                path(&y),
            ]),
            &["'up'"],
        );
    }
}

#[test]
fn explain_prints_the_memory_plan_of_a_batch() {
    let out = run_ok(&["explain", "fmnist-cnn", "--batch", "128"]);
    for part in [
        "Memory at batch 128",
        "conv2d                           [128, 26, 26, 32]",
        "largest output: 'conv2d' [128, 26, 26, 32], 10.56 MB",
        "inference peak: 13.20 MB (at 'max_pooling2d')",
        "budget:",
    ] {
        assert!(out.contains(part), "{out}\nshould contain {part:?}");
    }
}

#[test]
fn export_writes_onnx_and_names_what_it_refuses() {
    let dir = scratch("export");
    let onnx = dir.join("fmnist.onnx");
    let stdout = run_ok(&[
        "export",
        path(&golden("models/fmnist_cnn.keras")),
        path(&onnx),
        "--batch",
        "1",
    ]);
    assert!(stdout.contains("ONNX opset 17"), "{stdout}");
    let bytes = std::fs::read(&onnx).unwrap();
    // The weights are in the file: at least the model's 4-byte floats.
    assert!(bytes.len() > 4 * 30_000, "{} bytes", bytes.len());
    let out = run(&["export", "fmnist-cnn", path(&dir.join("m.txt"))]);
    assert_clean_failure(&out, &["m.txt", ".onnx"]);
    let out = run(&["export", "fmnist-cnn", path(&onnx), "--opset", "12"]);
    assert_clean_failure(&out, &["opset 12", "17 to 21"]);
    let out = run(&["export", "fmnist-cnn", path(&onnx), "--batch", "0"]);
    assert_clean_failure(&out, &["--batch", "'0'"]);
}

/// A PyTorch CNN's ONNX file goes through the subcommands like a Keras file: summary,
/// predict (NHWC input), convert to .keras (which predicts the same), export back to
/// ONNX; a broken one is one clear line naming it.
#[test]
fn onnx_files_work_in_every_subcommand() {
    let dir = scratch("onnx-import");
    let onnx = golden("onnx_import/custom_cnn.onnx");
    let summary = run_ok(&["summary", path(&onnx)]);
    assert!(
        summary.contains("DepthwiseConv2D") && summary.contains("(None, 16, 16, 3)"),
        "{summary}"
    );
    let x = Tensor::read_npy(golden("onnx_import/custom_cnn_input.npy")).unwrap();
    // NCHW (1, 3, 16, 16) to NHWC.
    let d = x.data();
    let nhwc: Vec<f32> = (0..16 * 16 * 3).map(|i| d[(i % 3) * 256 + i / 3]).collect();
    let input = dir.join("x.npy");
    Tensor::new(vec![1, 16, 16, 3], nhwc)
        .unwrap()
        .write_npy(&input)
        .unwrap();
    let predicted = |model: &Path, name: &str| {
        let out = dir.join(name);
        run_ok(&[
            "predict",
            path(model),
            "--input",
            path(&input),
            "--output",
            path(&out),
        ]);
        Tensor::read_npy(&out).unwrap()
    };
    let from_onnx = predicted(&onnx, "onnx.npy");
    let torch = Tensor::read_npy(golden("onnx_import/custom_cnn_torch.npy")).unwrap();
    assert!(relative_error(&from_onnx, &torch) < 1e-5);
    let keras = dir.join("custom_cnn.keras");
    run_ok(&["convert", path(&onnx), path(&keras)]);
    assert_eq!(predicted(&keras, "keras.npy").data(), from_onnx.data());
    let back = dir.join("back.onnx");
    run_ok(&["export", path(&keras), path(&back)]);
    assert!(relative_error(&predicted(&back, "back.npy"), &torch) < 1e-5);
    let broken = dir.join("broken.onnx");
    std::fs::write(&broken, &std::fs::read(&onnx).unwrap()[..1000]).unwrap();
    assert_clean_failure(&run(&["summary", path(&broken)]), &["broken.onnx"]);
}

/// A build without the `mpi` feature refuses a distributed run, saying how to get one.
#[cfg(not(feature = "mpi"))]
#[test]
fn distributed_training_needs_the_mpi_feature() {
    let out = run(&[
        "train",
        "fmnist-cnn",
        "--data",
        "fashion-mnist-sample",
        "--distributed",
    ]);
    assert_clean_failure(&out, &["--distributed", "--features mpi"]);
}
