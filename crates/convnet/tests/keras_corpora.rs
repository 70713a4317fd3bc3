//! Keras's own CNNs as Keras 3 writes them: every keras.applications model
//! (tests/golden/applications, made by scripts/make_applications.py with `weights=None`
//! at small input sizes) and CNN programs written as keras.io's examples write them
//! (tests/golden/programs, scripts/make_programs.py). convnet reads each config, writes
//! it back as Keras wrote it, prints Keras's summary byte for byte and, with every weight
//! set by the scripts' integer recipe, predicts within 1e-4 of Keras. The ignored test
//! does the same through the full `.keras` files make_applications.py writes with
//! `--keras DIR`.

use std::io::Read;
use std::path::{Path, PathBuf};

use convnet::{Model, Tensor};
use serde_json::Value;

const APPLICATIONS: &str = "applications";
const PROGRAMS: &str = "programs";

fn corpus(which: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(which)
}

fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811C_9DC5, |h: u32, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The script's `recipe_uniform`: `count` values in [-1, 1), exact in f32.
fn recipe_uniform(name: &str, index: usize, count: usize) -> Vec<f32> {
    let seed = fnv1a(name) ^ ((index as u32 + 1).wrapping_mul(0x9E37_79B9));
    (0..count)
        .map(|i| {
            let mut x = (i as u32).wrapping_mul(0x85EB_CA6B).wrapping_add(seed);
            x ^= x >> 16;
            x = x.wrapping_mul(0x7FEB_352D);
            x ^= x >> 15;
            x = x.wrapping_mul(0x846C_A68B);
            x ^= x >> 16;
            ((f64::from(x >> 8) / f64::from(1u32 << 23)) - 1.0) as f32
        })
        .collect()
}

/// The script's `recipe_weight`.
fn recipe_weight(layer: &str, index: usize, weight: &str, shape: &[usize]) -> Tensor {
    let count = shape.iter().product();
    let u = recipe_uniform(layer, index, count);
    let data = if matches!(weight, "gamma" | "moving_variance" | "variance") {
        u.iter().map(|u| 1.0 + 0.25 * u).collect()
    } else if shape.len() >= 2 {
        let fan_in: usize = if weight == "depthwise_kernel" {
            shape[..2].iter().product()
        } else {
            shape[..shape.len() - 1].iter().product()
        };
        let scale = (3.0 / fan_in as f64).sqrt() as f32;
        u.iter().map(|u| u * scale).collect()
    } else {
        u.iter().map(|u| 0.1 * u).collect()
    };
    Tensor::new(shape.to_vec(), data).unwrap()
}

fn set_recipe_weights(model: &mut Model) {
    let names: Vec<String> = model.layers().map(|l| l.name().to_string()).collect();
    for name in names {
        let layer = model.get_layer_mut(&name).unwrap();
        let values: Vec<Tensor> = layer
            .weights()
            .iter()
            .enumerate()
            .map(|(j, w)| {
                if w.name == "count" {
                    w.value.clone()
                } else {
                    recipe_weight(&name, j, &w.name, w.value.shape())
                }
            })
            .collect();
        if !values.is_empty() {
            layer.set_weights(values).unwrap();
        }
    }
}

fn relative_difference(ours: &Tensor, theirs: &Tensor) -> f64 {
    let (mut diff, mut norm) = (0f64, 0f64);
    for (a, b) in ours.data().iter().zip(theirs.data()) {
        diff += f64::from(a - b).powi(2);
        norm += f64::from(*b).powi(2);
    }
    (diff / norm.max(1e-60)).sqrt()
}

/// The members of one corpus archive: config.json, summary.txt, x.npy, y.npy.
struct Case {
    config: Value,
    summary: String,
    x: Tensor,
    y: Tensor,
}

fn read_case(which: &str, name: &str) -> Result<Case, String> {
    let path = corpus(which).join(format!("{name}.zip"));
    let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| e.to_string())?;
    let mut member = |member: &str| -> Result<Vec<u8>, String> {
        let mut bytes = Vec::new();
        zip.by_name(member)
            .map_err(|e| format!("{name}.zip: {member}: {e}"))?
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        Ok(bytes)
    };
    let tensor = |bytes: Vec<u8>| Tensor::from_npy_bytes(&bytes).map_err(|e| e.to_string());
    Ok(Case {
        config: serde_json::from_slice(&member("config.json")?).map_err(|e| e.to_string())?,
        summary: String::from_utf8(member("summary.txt")?).map_err(|e| e.to_string())?,
        x: tensor(member("x.npy")?)?,
        y: tensor(member("y.npy")?)?,
    })
}

/// Keras's summary and predictions against the model's.
fn compare(model: &Model, case: &Case) -> Result<(), String> {
    let summary = model.summary_for_columns(80);
    if summary != case.summary {
        let (line, (theirs, ours)) = case
            .summary
            .lines()
            .chain(std::iter::repeat(""))
            .zip(summary.lines().chain(std::iter::repeat("")))
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .unwrap_or((0, ("", "")));
        return Err(format!(
            "summary differs from Keras's at line {}:\n  keras:   {theirs}\n  convnet: {ours}",
            line + 1
        ));
    }
    let ours = model
        .predict(std::slice::from_ref(&case.x), 2)
        .map_err(|e| e.to_string())?;
    let difference = relative_difference(&ours[0], &case.y);
    if ours[0].shape() != case.y.shape() || difference.is_nan() || difference > 1e-4 {
        return Err(format!(
            "predictions differ from Keras's: shape {:?} vs {:?}, relative difference {difference:.3e}",
            ours[0].shape(),
            case.y.shape()
        ));
    }
    Ok(())
}

/// The first place two JSON values differ, as a path.
/// Keras's `shared_object_id`, which its saver adds to an object it writes twice (an
/// activity regularizer, a nested model's dtype policy), is not part of the object.
fn first_difference<'a>(ours: &'a Value, theirs: &'a Value, path: &str) -> Option<String> {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let keys = |m: &'a serde_json::Map<String, Value>| -> Vec<&'a String> {
                m.keys().filter(|k| *k != "shared_object_id").collect()
            };
            let (keys_a, keys_b) = (keys(a), keys(b));
            if keys_a != keys_b {
                return Some(format!("{path}: keys {keys_a:?}, Keras's {keys_b:?}"));
            }
            keys_a
                .into_iter()
                .find_map(|k| first_difference(&a[k], &b[k], &format!("{path}.{k}")))
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]"))),
        _ if ours == theirs => None,
        _ => Some(format!("{path}: {ours}, Keras's {theirs}")),
    }
}

/// The first layer whose config (what its declaration reads and writes) differs from
/// Keras's, looking inside nested models. How the graph is written around the layers
/// (node arguments, build configs) is left to the file tests.
fn layer_config_difference(ours: &Value, theirs: &Value) -> Option<String> {
    let layers = |model: &Value| {
        model["config"]["layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let (ours, theirs) = (layers(ours), layers(theirs));
    if ours.len() != theirs.len() {
        return Some(format!("{} layers, Keras's {}", ours.len(), theirs.len()));
    }
    ours.iter().zip(&theirs).find_map(|(a, b)| {
        let name = b["config"]["name"].as_str().unwrap_or("?");
        if b["config"]["layers"].is_array() {
            // A nested model: its own fields here, its layers one by one.
            let own = |model: &Value| {
                let mut config = model["config"].clone();
                for graph in [
                    "layers",
                    "input_layers",
                    "output_layers",
                    "build_input_shape",
                ] {
                    config.as_object_mut().map(|c| c.remove(graph));
                }
                config
            };
            first_difference(&own(a), &own(b), name).or_else(|| layer_config_difference(a, b))
        } else {
            first_difference(&a["config"], &b["config"], name)
        }
    })
}

/// Builds one model from its config, checks the config convnet writes back, sets the
/// recipe weights and compares.
fn check(which: &str, name: &str) -> Result<(), String> {
    let case = read_case(which, name)?;
    let origin = corpus(which).join(format!("{name}.zip"));
    let mut model =
        convnet::io::model_from_config(&case.config, &origin).map_err(|e| e.to_string())?;
    if let Some(difference) =
        layer_config_difference(&convnet::io::config_json(&model), &case.config)
    {
        return Err(format!(
            "a layer's config written back differs: {difference}"
        ));
    }
    set_recipe_weights(&mut model);
    compare(&model, &case)
}

/// The models a corpus lists.
fn names(which: &str) -> Vec<String> {
    let listing = corpus(which).join(format!("{which}.json"));
    let listing: Value = serde_json::from_str(&std::fs::read_to_string(listing).unwrap()).unwrap();
    listing.as_object().unwrap().keys().cloned().collect()
}

fn assert_all(names: &[String], check: impl Fn(&str) -> Result<(), String>) {
    let failures: Vec<String> = names
        .iter()
        .filter_map(|name| check(name).err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} models fail:\n{}",
        failures.len(),
        names.len(),
        failures.join("\n")
    );
}

#[test]
fn every_keras_application_loads_summarises_and_predicts_as_keras() {
    let names = names(APPLICATIONS);
    assert!(
        names.len() >= 33,
        "the corpus lists {} applications",
        names.len()
    );
    assert_all(&names, |name| check(APPLICATIONS, name));
}

#[test]
fn every_keras_program_loads_summarises_and_predicts_as_keras() {
    let names = names(PROGRAMS);
    assert!(
        names.len() >= 14,
        "the corpus lists {} programs",
        names.len()
    );
    assert_all(&names, |name| check(PROGRAMS, name));
}

/// The `.keras` files themselves, weights included (about 3 GB, so not in git):
/// `python scripts/make_applications.py /tmp/corpus --keras DIR`, then
/// `CONVNET_APPLICATIONS_KERAS=DIR cargo test --release --test keras_corpora -- --ignored`.
#[test]
#[ignore = "needs the .keras files scripts/make_applications.py --keras writes"]
fn every_keras_application_file_loads_and_predicts_as_keras() {
    let dir = PathBuf::from(
        std::env::var_os("CONVNET_APPLICATIONS_KERAS")
            .expect("CONVNET_APPLICATIONS_KERAS names the folder of .keras files"),
    );
    assert_all(&names(APPLICATIONS), |name| {
        let model = convnet::io::load_model(&dir.join(format!("{name}.keras")))
            .map_err(|e| e.to_string())?;
        compare(&model, &read_case(APPLICATIONS, name)?)
    });
}

/// The programs with regularizers and constraints train: the CIFAR ResNet's L2 kernel
/// penalties join its loss (so the loss `evaluate` reports is above the outputs' own).
/// The max-norm program puts an OrthogonalRegularizer on a 4-D pointwise kernel, which
/// Keras's fit refuses too (it takes rank-2 weights): training or evaluating it is
/// refused, naming the layer and the field.
#[test]
fn programs_with_regularizers_train_and_a_4d_orthogonal_is_refused_by_name() {
    let load = |program: &str| {
        let case = read_case(PROGRAMS, program).unwrap();
        let origin = corpus(PROGRAMS).join(format!("{program}.zip"));
        let model = convnet::io::model_from_config(&case.config, &origin).unwrap();
        let model = model
            .compile_named(convnet::train::Optimizer::sgd(0.01), "mse", &[])
            .unwrap();
        (model, case)
    };
    let (mut model, case) = load("cifar_resnet_l2");
    let (x, y) = (std::slice::from_ref(&case.x), std::slice::from_ref(&case.y));
    let options = convnet::train::FitOptions {
        epochs: 1,
        verbose: 0,
        ..convnet::train::FitOptions::default()
    };
    let history = model.fit(x, y, options).unwrap();
    assert!(history.history["loss"][0].is_finite());
    let loss = model.evaluate(x, y, 2).unwrap()["loss"];
    let predictions = model.predict(x, 2).unwrap();
    let mse = predictions[0]
        .data()
        .iter()
        .zip(case.y.data())
        .map(|(p, t)| f64::from(p - t).powi(2))
        .sum::<f64>()
        / case.y.len() as f64;
    assert!(
        loss > mse * (1.0 + 1e-3),
        "loss {loss} includes the L2 penalties over mse {mse}"
    );

    let (mut model, case) = load("dropout_maxnorm_cnn");
    let (x, y) = (std::slice::from_ref(&case.x), std::slice::from_ref(&case.y));
    for error in [
        model
            .fit(x, y, convnet::train::FitOptions::default())
            .unwrap_err(),
        model.evaluate(x, y, 2).unwrap_err(),
    ] {
        let e = error.to_string();
        assert!(
            e.contains("'separable_conv2d_9'")
                && e.contains("pointwise_regularizer")
                && e.contains("OrthogonalRegularizer must have rank 2"),
            "{e}"
        );
    }
}

/// keras.io's augmentation block trains: each training batch goes through its random
/// flips and rotations (the nested Sequential). Another epoch from the same weights
/// draws anew (flips, rotations and the top's Dropout).
#[test]
fn training_runs_through_the_augmentation_block() {
    let case = read_case(PROGRAMS, "image_classification_from_scratch").unwrap();
    let origin = corpus(PROGRAMS).join("image_classification_from_scratch.zip");
    let model = convnet::io::model_from_config(&case.config, &origin).unwrap();
    let mut model = model
        .compile_named(convnet::train::Optimizer::sgd(0.0), "mse", &[])
        .unwrap();
    let history = model
        .fit(
            std::slice::from_ref(&case.x),
            std::slice::from_ref(&case.y),
            convnet::train::FitOptions {
                epochs: 2,
                shuffle: false,
                verbose: 0,
                ..convnet::train::FitOptions::default()
            },
        )
        .unwrap();
    let losses = &history.history["loss"];
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    // A learning rate of 0 leaves the weights: only the random layers differ.
    assert_ne!(losses[0], losses[1], "each epoch draws anew");
}
