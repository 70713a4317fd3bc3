//! The `convnet` binary end to end: the edge-detection example of the design notes run
//! through `convnet apply`, and errors that exit non-zero with one clear line.

use convnet::Tensor;
use std::path::PathBuf;
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
