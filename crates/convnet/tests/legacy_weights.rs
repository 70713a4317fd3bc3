//! Weight files in the legacy layout of Keras's ImageNet weights (tf.keras 2's
//! `save_weights` to `.h5`), written by `scripts/make_legacy_weights.py` from random
//! weights, loaded into `convnet::applications` in order and by name (with
//! `skip_mismatch` for a new head), and compared with Keras 3 after the same loads.

use convnet::applications::{self, Options, Pooling, PreprocessMode};
use convnet::{ActivationFn, Model, Tensor};
use std::path::{Path, PathBuf};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/legacy_weights")
        .join(name)
}

fn max_relative_error(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.shape(), want.shape());
    let scale = want.data().iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    got.data()
        .iter()
        .zip(want.data())
        .map(|(a, b)| (a - b).abs() / scale)
        .fold(0.0, f32::max)
}

fn options(include_top: bool) -> Options {
    Options {
        include_top,
        input_shape: Some(vec![32, 32, 3]),
        pooling: (!include_top).then_some(Pooling::Avg),
        classes: 5,
        classifier_activation: ActivationFn::Softmax,
    }
}

/// Checks one application against the golden `<app>.npz` and `<app>_top5.h5` in `dir`.
fn check(
    dir: &Path,
    app: &str,
    build: impl Fn(&Options) -> convnet::Result<Model>,
    mode: PreprocessMode,
) {
    let arrays = convnet::io::read_npz(dir.join(format!("{app}.npz"))).unwrap();
    let get = |key: &str| arrays.iter().find(|(k, _)| k == key).unwrap().1.clone();
    let x = applications::preprocess_input(&get("x"), mode).unwrap();
    let file = dir.join(format!("{app}_top5.h5"));

    // In order, as `model.load_weights(path)`: the 5-class model the file came from.
    let mut top5 = build(&options(true)).unwrap();
    top5.load_weights(&file).unwrap();
    let error = max_relative_error(
        &top5.predict(std::slice::from_ref(&x), 8).unwrap()[0],
        &get("top5"),
    );
    assert!(error < 1e-4, "{app} top5: {error}");

    // By name, into the feature extractor: the head's layers are not in it.
    let mut features = build(&options(false)).unwrap();
    let skipped = features.load_weights_by_name(&file, false).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    let error = max_relative_error(
        &features.predict(std::slice::from_ref(&x), 8).unwrap()[0],
        &get("features"),
    );
    assert!(error < 1e-4, "{app} features: {error}");

    // A new 10-class head: refused without skip_mismatch, naming the layer; skipped with
    // it, the rest loaded (the base's features equal the feature extractor's).
    let ten = Options {
        classes: 10,
        ..options(true)
    };
    let mut model = build(&ten).unwrap();
    let error = model
        .load_weights_by_name(&file, false)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("'predictions'") && error.contains("skip_mismatch"),
        "{error}"
    );
    let mut model = build(&ten).unwrap();
    let fresh = model.clone();
    let skipped = model.load_weights_by_name(&file, true).unwrap();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].contains("'predictions'"), "{skipped:?}");
    for (loaded, fresh) in model.layers().zip(fresh.layers()) {
        let same = loaded
            .weights()
            .iter()
            .zip(fresh.weights())
            .all(|(a, b)| a.value.data() == b.value.data());
        // Only the head keeps its fresh weights.
        assert_eq!(
            same,
            loaded.name() == "predictions" || loaded.weights().is_empty(),
            "{}",
            loaded.name()
        );
    }
}

#[test]
fn a_mobilenet_v2_legacy_weight_file_loads_in_order_and_by_name_as_in_keras() {
    check(
        &golden(""),
        "mobilenet_v2_035",
        |o| applications::mobilenet_v2(o, 0.35),
        PreprocessMode::Tf,
    );
}

/// `python scripts/make_legacy_weights.py DIR resnet50` (a 100 MB file), then
/// `CONVNET_LEGACY_WEIGHTS=DIR cargo test --release --test legacy_weights -- --ignored`.
#[test]
#[ignore = "needs the ResNet50 file scripts/make_legacy_weights.py writes"]
fn a_resnet50_legacy_weight_file_loads_in_order_and_by_name_as_in_keras() {
    let dir = PathBuf::from(
        std::env::var_os("CONVNET_LEGACY_WEIGHTS")
            .expect("CONVNET_LEGACY_WEIGHTS names the folder"),
    );
    check(
        &dir,
        "resnet50",
        applications::resnet50,
        PreprocessMode::Caffe,
    );
}

#[test]
fn a_legacy_file_for_another_architecture_is_refused_naming_what_differs() {
    let file = golden("mobilenet_v2_035_top5.h5");
    let mut resnet = applications::resnet50(&options(true)).unwrap();
    let error = resnet.load_weights(&file).unwrap_err().to_string();
    assert!(error.contains("layer count mismatch"), "{error}");
    // By name only 'predictions' is shared, and it differs in shape (1280 vs 2048 in).
    let error = resnet
        .load_weights_by_name(&file, false)
        .unwrap_err()
        .to_string();
    assert!(error.contains("'predictions'"), "{error}");
}

#[cfg(feature = "images")]
#[test]
fn load_img_resizes_as_keras_and_pillow_do() {
    let arrays = convnet::io::read_npz(golden("mobilenet_v2_035.npz")).unwrap();
    let want = &arrays.iter().find(|(k, _)| k == "image_35x42").unwrap().1;
    let got = convnet::data::load_img(golden("mobilenet_v2_035.png"), Some((35, 42)), 3).unwrap();
    assert_eq!(got.shape(), want.shape());
    assert_eq!(got.data(), want.data());
}
