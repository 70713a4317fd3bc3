//! Keras model files: every golden `.keras` and legacy `.h5` loads with Keras's summary
//! and predictions; what convnet saves loads back identically; resumed training equals
//! uninterrupted training; broken and hostile files give errors naming the file.

use convnet::initializers::set_random_seed;
use convnet::io::{load_model_parts, save_model_parts};
use convnet::model::Model;
use convnet::train::{CompiledModel, FitOptions, Optimizer};
use convnet::Tensor;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

fn golden(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(path)
}

fn relative_error(got: &Tensor, want: &Tensor) -> f64 {
    let diff: f64 = got
        .data()
        .iter()
        .zip(want.data())
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    let norm: f64 = want.data().iter().map(|&b| (b as f64).powi(2)).sum();
    (diff / norm.max(1e-30)).sqrt()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convnet-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn check_predictions(model: &Model, entry: &Value, what: &str) {
    let Some(inputs) = entry["inputs"].as_array() else {
        return;
    };
    let xs: Vec<Tensor> = inputs
        .iter()
        .map(|p| Tensor::read_npy(golden(&format!("models/{}", p.as_str().unwrap()))).unwrap())
        .collect();
    let refs: Vec<&Tensor> = xs.iter().collect();
    let ys = model.apply(&refs).unwrap();
    for (y, p) in ys.iter().zip(entry["outputs"].as_array().unwrap()) {
        let want = Tensor::read_npy(golden(&format!("models/{}", p.as_str().unwrap()))).unwrap();
        let error = relative_error(y, &want);
        assert!(
            error < 1e-5,
            "{what}: predictions differ from Keras's by {error:.2e}"
        );
    }
}

#[test]
fn every_golden_model_file_loads_with_keras_summary_and_predictions() {
    let models: Value =
        serde_json::from_str(&std::fs::read_to_string(golden("models/models.json")).unwrap())
            .unwrap();
    for entry in models["models"].as_array().unwrap() {
        let summary = std::fs::read_to_string(golden(&format!(
            "models/{}",
            entry["summary"].as_str().unwrap()
        )))
        .unwrap();
        let mut files = vec![entry["keras"].as_str().unwrap()];
        if let Some(h5) = entry["legacy_h5"].as_str() {
            files.push(h5);
        }
        for file in files {
            let model = Model::load(golden(&format!("models/{file}")))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(
                model.summary_for_columns(80),
                summary,
                "{file}: summary differs from Keras's"
            );
            assert_eq!(
                model.count_params() as u64,
                entry["params"].as_u64().unwrap(),
                "{file}"
            );
            check_predictions(&model, entry, file);
        }
    }
}

#[test]
fn trained_keras_files_restore_weights_and_optimizer_state() {
    let x = Tensor::read_npy(golden("train/fit_x.npy")).unwrap();
    for (name, class) in [("sgd", "SGD"), ("adam", "Adam")] {
        let model =
            CompiledModel::load(golden(&format!("train/fit_{name}.trained.keras"))).unwrap();
        let want =
            Tensor::read_npy(golden(&format!("train/fit_{name}.trained_predictions.npy"))).unwrap();
        let got = model
            .predict(std::slice::from_ref(&x), 16)
            .unwrap()
            .remove(0);
        assert!(
            relative_error(&got, &want) < 1e-5,
            "fit_{name}.trained.keras"
        );
        let optimizer = model.optimizer();
        assert_eq!(optimizer.to_config()["class_name"], class);
        assert_eq!(optimizer.state().0, 10, "2 epochs of 5 steps");
        assert_eq!(optimizer.state().1.len(), model.trainable_weights().count());
        Model::load(golden(&format!("train/fit_{name}.initial.keras"))).unwrap();
    }
}

fn member(path: &Path, name: &str) -> Vec<u8> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut bytes = Vec::new();
    zip.by_name(name).unwrap().read_to_end(&mut bytes).unwrap();
    bytes
}

#[test]
fn save_load_save_is_byte_identical() {
    for file in [
        "models/resnet_block.keras",
        "models/fmnist_cnn.keras",
        "train/fit_adam.trained.keras",
        "models/inception_v1_module.keras",
    ] {
        // The trained file keeps its compile state and optimizer slots through both saves.
        let (model, compiled) = load_model_parts(&golden(file)).unwrap();
        assert_eq!(compiled.is_some(), file.starts_with("train/"), "{file}");
        let first = scratch("first.keras");
        let second = scratch("second.keras");
        save_model_parts(&model, compiled.as_ref(), &first).unwrap();
        let (again, compiled_again) = load_model_parts(&first).unwrap();
        assert_eq!(
            again.summary_for_columns(80),
            model.summary_for_columns(80),
            "{file}"
        );
        assert_eq!(again.get_weights(), model.get_weights(), "{file}");
        save_model_parts(&again, compiled_again.as_ref(), &second).unwrap();
        for name in ["config.json", "model.weights.h5"] {
            assert!(
                member(&first, name) == member(&second, name),
                "{file}: {name} changed between saves"
            );
        }
    }
}

#[test]
fn resumed_training_equals_uninterrupted_training() {
    let x = Tensor::read_npy(golden("train/fit_x.npy")).unwrap();
    let y = Tensor::read_npy(golden("train/fit_y.npy")).unwrap();
    let options = |epochs, initial_epoch| FitOptions {
        batch_size: 8,
        epochs,
        initial_epoch,
        shuffle: false,
        verbose: 0,
        ..FitOptions::default()
    };
    let start = || {
        Model::load(golden("train/fit_adam.initial.keras"))
            .unwrap()
            .compile_named(
                Optimizer::adam(0.01),
                "sparse_categorical_crossentropy",
                &["accuracy"],
            )
            .unwrap()
    };
    let mut straight = start();
    straight
        .fit(
            std::slice::from_ref(&x),
            std::slice::from_ref(&y),
            options(3, 0),
        )
        .unwrap();

    let mut first = start();
    first
        .fit(
            std::slice::from_ref(&x),
            std::slice::from_ref(&y),
            options(1, 0),
        )
        .unwrap();
    let checkpoint = scratch("resume.keras");
    first.save(&checkpoint).unwrap();
    let mut resumed = CompiledModel::load(&checkpoint).unwrap();
    resumed.fit(&[x], &[y], options(3, 1)).unwrap();
    assert_eq!(resumed.get_weights(), straight.get_weights(), "bit for bit");
}

#[test]
fn a_model_built_in_rust_round_trips() {
    set_random_seed(3);
    let model = convnet::zoo::seed_inception(16).unwrap();
    let model = model
        .compile_named(Optimizer::sgd(0.1).momentum(0.9), "mse", &["mae"])
        .unwrap();
    let path = scratch("inception.keras");
    model.save(&path).unwrap();
    let loaded = CompiledModel::load(&path).unwrap();
    assert_eq!(
        loaded.summary_for_columns(80),
        model.summary_for_columns(80)
    );
    let x = Tensor::full([1, 16, 16, 3], 0.5);
    assert_eq!(loaded.apply(&[&x]).unwrap(), model.apply(&[&x]).unwrap());
    assert_eq!(
        loaded.optimizer().to_config(),
        model.optimizer().to_config()
    );
}

fn load_error(bytes: &[u8], name: &str) -> String {
    let path = scratch(name);
    std::fs::write(&path, bytes).unwrap();
    match Model::load(&path) {
        Ok(_) => panic!("{name} loaded"),
        Err(e) => e.to_string(),
    }
}

/// A copy of a golden .keras with one member replaced.
fn with_member(source: &str, name: &str, contents: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(golden(source)).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).unwrap();
        let member_name = file.name().to_string();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        out.start_file(member_name.as_str(), options).unwrap();
        std::io::Write::write_all(
            &mut out,
            if member_name == name {
                contents
            } else {
                &bytes
            },
        )
        .unwrap();
    }
    out.finish().unwrap().into_inner()
}

#[test]
fn broken_and_hostile_files_give_errors_naming_the_file() {
    let good = std::fs::read(golden("models/resnet_block.keras")).unwrap();
    let e = load_error(&good[..good.len() / 2], "truncated.keras");
    assert!(e.contains("truncated.keras"), "{e}");
    let e = load_error(b"GIF89a not a model", "magic.keras");
    assert!(
        e.contains("magic.keras") && e.contains("not a model file"),
        "{e}"
    );
    let h5 = std::fs::read(golden("models/fmnist_cnn.h5")).unwrap();
    let e = load_error(&h5[..h5.len() / 3], "truncated.h5");
    assert!(e.contains("truncated.h5"), "{e}");

    // A member that inflates 10 MB of zeros from a few kilobytes.
    let mut bomb = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    bomb.start_file("config.json", deflated).unwrap();
    std::io::Write::write_all(&mut bomb, &vec![b' '; 10 << 20]).unwrap();
    let e = load_error(&bomb.finish().unwrap().into_inner(), "bomb.keras");
    assert!(
        e.contains("bomb.keras") && e.contains("refusing to inflate"),
        "{e}"
    );

    // A config that refers to a layer it does not define.
    let config: String =
        String::from_utf8(member(&golden("models/resnet_block.keras"), "config.json")).unwrap();
    let broken = config.replacen("[\"conv2d\", 0, 0]", "[\"conv2d_9\", 0, 0]", 1);
    let e = load_error(
        &with_member(
            "models/resnet_block.keras",
            "config.json",
            broken.as_bytes(),
        ),
        "missing.keras",
    );
    assert!(
        e.contains("missing.keras") && e.contains("'conv2d_9'"),
        "{e}"
    );

    // A layer class convnet does not know.
    let unknown = config.replacen(
        "\"class_name\": \"Add\"",
        "\"class_name\": \"Frobnicate\"",
        1,
    );
    let e = load_error(
        &with_member(
            "models/resnet_block.keras",
            "config.json",
            unknown.as_bytes(),
        ),
        "unknown.keras",
    );
    assert!(
        e.contains("unknown.keras")
            && e.contains("unknown layer class 'Frobnicate'")
            && e.contains("'add'"),
        "{e}"
    );

    // NaN weights.
    let mut model = Model::load(golden("models/resnet_block.keras")).unwrap();
    let mut weights = model.get_weights();
    weights[0].data_mut()[3] = f32::NAN;
    model.set_weights(weights).unwrap();
    let path = scratch("nan.keras");
    model.save(&path).unwrap();
    let e = Model::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("nan.keras") && e.contains("non-finite") && e.contains("conv2d"),
        "{e}"
    );

    // A dataset whose declared shape (4e9 x 10) far exceeds the data stored for it: the
    // dense kernel's dimensions patched in a legacy .h5 (whose headers carry no checksum).
    let mut liar = std::fs::read(golden("models/fmnist_cnn.h5")).unwrap();
    let needle: Vec<u8> = [1600u64.to_le_bytes(), 10u64.to_le_bytes()].concat();
    let at: Vec<usize> = (0..liar.len() - 16)
        .filter(|&i| liar[i..i + 16] == needle[..])
        .collect();
    assert!(!at.is_empty());
    for i in at {
        liar[i..i + 8].copy_from_slice(&4_000_000_000u64.to_le_bytes());
    }
    let e = load_error(&liar, "liar.h5");
    assert!(e.contains("liar.h5") && e.contains("dense"), "{e}");

    // Weights of the wrong shape for the architecture.
    let mut small = Model::load(golden("models/fmnist_cnn.keras")).unwrap();
    let e = small
        .load_weights(golden("models/resnet_block.keras"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("resnet_block.keras"), "{e}");
}

#[test]
fn the_older_checkpoint_dependencies_layout_loads() {
    use hdf5_pure::{AttrValue, FileBuilder};
    let model = Model::load(golden("models/fmnist_cnn.keras")).unwrap();
    let mut builder = FileBuilder::new();
    let mut top = builder.create_group("_layer_checkpoint_dependencies");
    for (layer, store) in model.layers().zip(convnet::io::store_names(model.layers())) {
        let mut group = top.create_group(&store);
        let mut vars = group.create_group("vars");
        vars.set_attr("name", AttrValue::String(layer.name().into()));
        for (i, w) in layer.weights().iter().enumerate() {
            let shape: Vec<u64> = w.value.shape().iter().map(|&d| d as u64).collect();
            vars.create_dataset(&i.to_string())
                .with_f32_data(w.value.data())
                .with_shape(&shape);
        }
        group.add_group(vars.finish());
        top.add_group(group.finish());
    }
    builder.add_group(top.finish());
    let path = scratch("old.weights.h5");
    std::fs::write(&path, builder.finish().unwrap()).unwrap();
    let mut fresh = convnet::zoo::fmnist_cnn().unwrap();
    fresh.load_weights(&path).unwrap();
    assert_eq!(fresh.get_weights(), model.get_weights());
}

#[test]
fn models_nested_as_layers_load_predict_and_round_trip() {
    let x = Tensor::read_npy(golden("nested/nested_functional.input0.npy")).unwrap();
    for name in ["nested_functional", "nested_sequential"] {
        let file = golden(&format!("nested/{name}.keras"));
        let model = Model::load(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
        let summary =
            std::fs::read_to_string(golden(&format!("nested/{name}.summary.txt"))).unwrap();
        assert_eq!(model.summary_for_columns(80), summary, "{name}");
        let want = Tensor::read_npy(golden(&format!("nested/{name}.output0.npy"))).unwrap();
        let got = model.apply(&[&x]).unwrap().remove(0);
        assert!(relative_error(&got, &want) < 1e-5, "{name}");
        let first = scratch(&format!("{name}-1.keras"));
        let second = scratch(&format!("{name}-2.keras"));
        model.save(&first).unwrap();
        let again = Model::load(&first).unwrap();
        assert_eq!(again.apply(&[&x]).unwrap(), model.apply(&[&x]).unwrap());
        again.save(&second).unwrap();
        for part in ["config.json", "model.weights.h5"] {
            assert!(
                member(&first, part) == member(&second, part),
                "{name}: {part}"
            );
        }
    }
}
