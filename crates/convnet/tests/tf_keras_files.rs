//! Files written by tf.keras 2 (the legacy `.h5` most existing Keras CNN files are),
//! made by scripts/make_tf_keras_corpus.py with the `tf_keras` package: each loads, with
//! its compile state where it has one, and predicts as tf.keras did.

use convnet::io::read_npz;
use convnet::Tensor;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn corpus(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/tf_keras")
        .join(file)
}

fn max_relative_error(got: &Tensor, want: &Tensor) -> f32 {
    let scale = want
        .data()
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(1e-6);
    let worst = got
        .data()
        .iter()
        .zip(want.data())
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    worst / scale
}

#[test]
fn every_tf_keras_2_file_loads_and_predicts_as_tf_keras() {
    let list: Value =
        serde_json::from_str(&std::fs::read_to_string(corpus("corpus.json")).unwrap()).unwrap();
    let entries = list.as_array().unwrap();
    assert!(
        entries.len() >= 5,
        "the corpus lists {} files",
        entries.len()
    );
    for entry in entries {
        let name = entry["name"].as_str().unwrap();
        let (model, compiled) = convnet::io::load_model_parts(&corpus(&format!("{name}.h5")))
            .unwrap_or_else(|e| panic!("{name}.h5 does not load: {e}"));
        assert_eq!(
            compiled.is_some(),
            entry["compiled"].as_bool().unwrap(),
            "{name}: the compile state"
        );
        let arrays = read_npz(corpus(&format!("{name}.npz"))).unwrap();
        let get = |key: &str| arrays.iter().find(|(k, _)| k == key).unwrap().1.clone();
        let (x, want) = (get("x"), get("y"));
        let got = model.apply(&[&x]).unwrap();
        assert_eq!(got[0].shape(), want.shape(), "{name}: output shape");
        let error = max_relative_error(&got[0], &want);
        assert!(
            error < 1e-5,
            "{name}: predictions differ from tf.keras's by {error:.2e}"
        );
    }
}

#[test]
fn legacy_fields_beyond_what_tf_keras_wrote_are_refused_by_name() {
    // groups = 1 is what tf.keras 2 writes on DepthwiseConv2D; anything else has no
    // meaning there, in Keras 3 or convnet.
    let e = convnet::layers::layer_from_config(
        "DepthwiseConv2D",
        &serde_json::json!({"name": "dw", "kernel_size": 3, "groups": 2}),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("'dw'") && e.contains("'groups'") && e.contains("groups = 2"),
        "{e}"
    );
    // LeakyReLU's tf.keras 2 name `alpha` reads as Keras 3's `negative_slope`.
    let layer = convnet::layers::layer_from_config(
        "LeakyReLU",
        &serde_json::json!({"name": "lr", "alpha": 0.1}),
    )
    .unwrap();
    assert_eq!(layer.config()["negative_slope"], serde_json::json!(0.1));
}
