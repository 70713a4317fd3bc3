//! convnet::applications against Keras: each application built in Rust writes the
//! config.json Keras writes for `keras.applications.<Name>(weights=None, …)` (every
//! layer's config, build config and inbound connections, in Keras's order), has Keras's
//! parameter count, prints Keras's summary byte for byte and, with the corpus's recipe
//! weights, predicts as Keras does (tests/golden/applications, made by
//! scripts/make_applications.py). Other arguments (no top, pooling, classes, classifier
//! activation, open and odd input shapes, MobileNetV2 widths) and `preprocess_input` are
//! checked against references made by scripts/make_application_options.py
//! (tests/golden/applications/options).

use std::io::Read;
use std::path::{Path, PathBuf};

use convnet::applications::{self, MobileNetOptions, Options, Pooling, PreprocessMode};
use convnet::{ActivationFn, Error, Model, Tensor};
use serde_json::Value;

fn golden(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/applications")
        .join(path)
}

fn read_json(path: &str) -> Value {
    let path = golden(path);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

// ---------------------------------------------------------------------------------
// The corpus: config.json, summary.txt, x.npy and y.npy of each application.

/// The members of one corpus archive.
struct Case {
    config: Value,
    summary: String,
    x: Tensor,
    y: Tensor,
}

fn read_case(name: &str) -> Case {
    let path = golden(&format!("{name}.zip"));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let mut member = |member: &str| -> Vec<u8> {
        let mut bytes = Vec::new();
        zip.by_name(member)
            .unwrap_or_else(|e| panic!("{name}.zip: {member}: {e}"))
            .read_to_end(&mut bytes)
            .unwrap();
        bytes
    };
    Case {
        config: serde_json::from_slice(&member("config.json")).unwrap(),
        summary: String::from_utf8(member("summary.txt")).unwrap(),
        x: Tensor::from_npy_bytes(&member("x.npy")).unwrap(),
        y: Tensor::from_npy_bytes(&member("y.npy")).unwrap(),
    }
}

/// The first place two JSON values differ, as a path. Keras's `shared_object_id`, which
/// its saver adds to an object it writes twice (the dtype policy), is not part of the
/// object.
fn first_difference(ours: &Value, theirs: &Value, path: &str) -> Option<String> {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let keys = |m: &serde_json::Map<String, Value>| -> Vec<String> {
                m.keys()
                    .filter(|k| *k != "shared_object_id")
                    .cloned()
                    .collect()
            };
            let (keys_a, keys_b) = (keys(a), keys(b));
            if keys_a != keys_b {
                return Some(format!("{path}: keys {keys_a:?}, Keras's {keys_b:?}"));
            }
            keys_a
                .iter()
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

/// What convnet's writer leaves out or adds around a layer of a model built in code,
/// which Keras reads either way: Keras writes no `build_config` for the layers without a
/// `build` of their own (Activation, ReLU, the poolings, Dropout, …), records
/// `"mask": null` in the call kwargs of the layers whose `call` takes a mask
/// (BatchNormalization) and `"training": false` in those of Dropout; convnet writes a
/// build config for every layer and empty kwargs. These are taken out of the comparison
/// here (a `build_config` Keras does write must still be equal).
fn without_writer_differences(ours: &Value, theirs: &Value) -> (Value, Value) {
    let (mut ours, mut theirs) = (ours.clone(), theirs.clone());
    if theirs.get("build_config").is_none() {
        ours.as_object_mut().map(|o| o.shift_remove("build_config"));
    }
    if let Some(nodes) = theirs["inbound_nodes"].as_array_mut() {
        for node in nodes {
            if node["kwargs"]["mask"].is_null() {
                node["kwargs"]
                    .as_object_mut()
                    .map(|k| k.shift_remove("mask"));
            }
            if node["kwargs"]["training"] == Value::Bool(false) {
                node["kwargs"]
                    .as_object_mut()
                    .map(|k| k.shift_remove("training"));
            }
        }
    }
    (ours, theirs)
}

/// The first difference between two lists of layer objects as config.json holds them.
fn layers_difference(ours: &[Value], theirs: &[Value], path: &str) -> Option<String> {
    if ours.len() != theirs.len() {
        return Some(format!(
            "{path}: {} layers, Keras's {}",
            ours.len(),
            theirs.len()
        ));
    }
    ours.iter().zip(theirs).enumerate().find_map(|(i, (a, b))| {
        let (a, b) = without_writer_differences(a, b);
        let name = b["name"].as_str().unwrap_or("?");
        first_difference(&a, &b, &format!("{path}[{i}] ({name})"))
    })
}

/// `name` less a trailing `_<number>`: Keras numbers auto-named layers across the whole
/// process (the corpus was made in one), convnet within the model.
fn stem(name: &str) -> &str {
    match name.rsplit_once('_') {
        Some((stem, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => stem,
        _ => name,
    }
}

/// Gives the model's auto-named layers the names the corpus's process gave them
/// (`input_layer` → `input_layer_2`), after checking that the two are one name
/// numbered differently, and that ours is what a fresh process would give.
fn adopt_corpus_names(model: &mut Model, corpus: &Value) -> Result<(), String> {
    // The layers as config.json lists them (a Sequential's InputLayer too); a
    // Sequential's layers have their name in their config only.
    let names = |config: &Value| -> Vec<String> {
        config["config"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                l["name"]
                    .as_str()
                    .or(l["config"]["name"].as_str())
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let theirs = names(corpus);
    let ours: Vec<(String, bool)> = names(&convnet::io::config_json(model))
        .into_iter()
        .map(|name| {
            let auto = model.get_layer(&name).unwrap().base().auto_named;
            (name, auto)
        })
        .collect();
    if ours.len() != theirs.len() {
        return Err(format!("{} layers, Keras's {}", ours.len(), theirs.len()));
    }
    // Through a provisional name first, since Keras's numbers can be ours for another
    // layer (its `re_lu_14` our `re_lu`, while our `re_lu_14` is its `re_lu_28`).
    let mut renamed = Vec::new();
    for ((name, auto), keras) in ours.iter().zip(&theirs) {
        if name == keras {
            continue;
        }
        if !*auto || stem(name) != stem(keras) {
            return Err(format!("layer '{name}' where Keras has '{keras}'"));
        }
        let provisional = format!("\u{0}{keras}");
        model.get_layer_mut(name).unwrap().base_mut().name = provisional.clone();
        renamed.push((provisional, keras));
    }
    for (provisional, keras) in renamed {
        model.get_layer_mut(&provisional).unwrap().base_mut().name = keras.clone();
    }
    // The layers of nested models (ConvNeXt's Sequential stem: its `input_layer_33`).
    for (i, keras) in theirs.iter().enumerate() {
        let inner_corpus = &corpus["config"]["layers"][i];
        if !inner_corpus["config"]["layers"].is_array() {
            continue;
        }
        let layer = model.get_layer_mut(keras).unwrap();
        let inner = convnet::model::nested_model_mut(layer.as_mut())
            .ok_or_else(|| format!("layer '{keras}' is a nested model in Keras's"))?;
        adopt_corpus_names(inner, inner_corpus)
            .map_err(|e| format!("in nested model '{keras}': {e}"))?;
    }
    Ok(())
}

fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811C_9DC5, |h: u32, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// scripts/make_applications.py's `recipe_uniform`: `count` values in [-1, 1), exact in
/// f32.
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
            .map(|(j, w)| recipe_weight(&name, j, &w.name, w.value.shape()))
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

/// The first line where two texts differ.
fn text_difference(ours: &str, theirs: &str) -> Option<String> {
    if ours == theirs {
        return None;
    }
    let (line, (a, b)) = ours
        .lines()
        .chain(std::iter::repeat(""))
        .zip(theirs.lines().chain(std::iter::repeat("")))
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .unwrap_or((0, ("", "")));
    Some(format!(
        "line {}:\n  keras:   {b}\n  convnet: {a}",
        line + 1
    ))
}

/// Builds application `name` as the corpus did (its input shape,
/// `classifier_activation=None`) and checks config, parameters and summary against
/// Keras's, and with `predict` the recipe weights' predictions.
fn check_corpus(name: &str, predict: bool) -> Result<(), String> {
    let listing = read_json("applications.json");
    let entry = &listing[name];
    let input_shape: Vec<usize> = serde_json::from_value(entry["input_shape"].clone()).unwrap();
    let case = read_case(name);
    let options = Options {
        input_shape: Some(input_shape),
        classifier_activation: ActivationFn::Linear,
        ..Options::default()
    };
    let mut model = applications::by_name(name, &options).map_err(|e| e.to_string())?;
    adopt_corpus_names(&mut model, &case.config)?;
    let ours = convnet::io::config_json(&model);
    let layers = |config: &Value| config["config"]["layers"].as_array().unwrap().clone();
    if let Some(d) = layers_difference(&layers(&ours), &layers(&case.config), "layers") {
        return Err(format!("config.json differs: {d}"));
    }
    let own = |config: &Value| {
        let mut own = config["config"].clone();
        own.as_object_mut().map(|o| o.shift_remove("layers"));
        own
    };
    if let Some(d) = first_difference(&own(&ours), &own(&case.config), "config") {
        return Err(format!("config.json differs: {d}"));
    }
    for key in ["module", "class_name", "registered_name", "build_config"] {
        if let Some(d) = first_difference(&ours[key], &case.config[key], key) {
            return Err(format!("config.json differs: {d}"));
        }
    }
    let params = entry["params"].as_u64().unwrap() as usize;
    if model.count_params() != params {
        return Err(format!(
            "{} parameters, Keras's {params}",
            model.count_params()
        ));
    }
    if let Some(d) = text_difference(&model.summary_for_columns(80), &case.summary) {
        return Err(format!("summary differs from Keras's at {d}"));
    }
    if predict {
        set_recipe_weights(&mut model);
        let y = model
            .predict(std::slice::from_ref(&case.x), 2)
            .map_err(|e| e.to_string())?;
        let difference = relative_difference(&y[0], &case.y);
        if y[0].shape() != case.y.shape() || difference.is_nan() || difference > 1e-4 {
            return Err(format!(
                "predictions differ from Keras's: shape {:?} vs {:?}, relative difference \
                 {difference:.3e}",
                y[0].shape(),
                case.y.shape()
            ));
        }
    }
    Ok(())
}

#[test]
fn resnet50_and_mobilenet_v2_build_as_keras_builds_them() {
    let failures: Vec<String> = ["resnet50", "mobilenet_v2"]
        .iter()
        .filter_map(|name| {
            check_corpus(name, true)
                .err()
                .map(|e| format!("{name}: {e}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_resnet_builds_as_keras_builds_it() {
    let failures: Vec<String> = [
        "resnet101",
        "resnet152",
        "resnet50v2",
        "resnet101v2",
        "resnet152v2",
    ]
    .iter()
    .filter_map(|name| {
        check_corpus(name, false)
            .err()
            .map(|e| format!("{name}: {e}"))
    })
    .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Checks each `(name, predict)` against the corpus, reporting every failure.
fn check_corpus_all(cases: &[(&str, bool)]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|&(name, predict)| {
            check_corpus(name, predict)
                .err()
                .map(|e| format!("{name}: {e}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn vgg_builds_as_keras_builds_it() {
    check_corpus_all(&[("vgg16", true), ("vgg19", false)]);
}

#[test]
fn mobilenet_builds_as_keras_builds_it() {
    check_corpus_all(&[("mobilenet", true)]);
}

#[test]
fn every_densenet_builds_as_keras_builds_it() {
    check_corpus_all(&[
        ("densenet121", true),
        ("densenet169", false),
        ("densenet201", false),
    ]);
}

#[test]
fn xception_and_inception_v3_build_as_keras_builds_them() {
    check_corpus_all(&[("xception", true), ("inception_v3", true)]);
}

#[test]
fn efficientnet_b0_builds_as_keras_builds_it() {
    check_corpus_all(&[("efficientnet_b0", true)]);
}

#[test]
fn every_efficientnet_builds_as_keras_builds_it() {
    check_corpus_all(&[
        ("efficientnet_b1", false),
        ("efficientnet_b2", false),
        ("efficientnet_b3", true),
        ("efficientnet_b4", false),
        ("efficientnet_b5", false),
        ("efficientnet_b6", false),
        ("efficientnet_b7", false),
    ]);
}

#[test]
fn every_application_is_listed_and_in_the_corpus() {
    let listing = read_json("applications.json");
    for (name, description) in applications::APPLICATIONS {
        assert!(listing.get(*name).is_some(), "{name} is not in the corpus");
        assert!(!description.is_empty());
        assert!(
            applications::preprocess_mode(name).is_some(),
            "{name} has no preprocessing mode"
        );
    }
    assert_eq!(
        applications::preprocess_mode("resnet50"),
        Some(PreprocessMode::Caffe)
    );
    assert_eq!(
        applications::preprocess_mode("mobilenet_v2"),
        Some(PreprocessMode::Tf)
    );
    assert_eq!(
        applications::preprocess_mode("resnet50v2"),
        Some(PreprocessMode::Tf)
    );
    for (name, mode) in [
        ("vgg16", PreprocessMode::Caffe),
        ("vgg19", PreprocessMode::Caffe),
        ("mobilenet", PreprocessMode::Tf),
        ("densenet121", PreprocessMode::Torch),
        ("densenet201", PreprocessMode::Torch),
        ("xception", PreprocessMode::Tf),
        ("inception_v3", PreprocessMode::Tf),
        ("efficientnet_b0", PreprocessMode::Identity),
        ("efficientnet_v2_b0", PreprocessMode::Identity),
        ("efficientnet_v2_s", PreprocessMode::Identity),
        ("mobilenet_v3_small", PreprocessMode::Identity),
        ("mobilenet_v3_large", PreprocessMode::Identity),
        ("convnext_tiny", PreprocessMode::Identity),
        ("inception_resnet_v2", PreprocessMode::Tf),
    ] {
        assert_eq!(applications::preprocess_mode(name), Some(mode), "{name}");
    }
    assert_eq!(
        applications::preprocess_mode("nasnet_mobile"),
        Some(PreprocessMode::Tf)
    );
}

// ---------------------------------------------------------------------------------
// Other arguments, against scripts/make_application_options.py's references.

/// The Options a reference case's Keras arguments mean.
fn options_of(args: &Value) -> Options {
    let defaults = Options::default();
    Options {
        include_top: args["include_top"]
            .as_bool()
            .unwrap_or(defaults.include_top),
        input_shape: args
            .get("input_shape")
            .map(|s| serde_json::from_value(s.clone()).unwrap()),
        pooling: match args["pooling"].as_str() {
            Some("avg") => Some(Pooling::Avg),
            Some("max") => Some(Pooling::Max),
            None => None,
            Some(other) => panic!("pooling {other}"),
        },
        classes: args["classes"]
            .as_u64()
            .map_or(defaults.classes, |c| c as usize),
        classifier_activation: match args.get("classifier_activation") {
            None => defaults.classifier_activation,
            Some(Value::Null) => ActivationFn::Linear,
            Some(name) => name.as_str().unwrap().parse().unwrap(),
        },
    }
}

/// A layer as the references list it: `name Class sizes`.
fn layer_line(name: &str, class: &str, shape: &[Option<usize>]) -> String {
    let sizes: Vec<String> = shape[1..]
        .iter()
        .map(|d| d.map_or_else(|| "None".to_string(), |d| d.to_string()))
        .collect();
    format!("{name} {class} {}", sizes.join(","))
}

fn check_options_case(case: &Value) -> Result<(), String> {
    let options = options_of(&case["args"]);
    let application = case["application"].as_str().unwrap();
    let args = &case["args"];
    let model = match (application, case["alpha"].as_f64()) {
        ("mobilenet", Some(alpha)) => {
            let defaults = MobileNetOptions::default();
            applications::mobilenet(
                &options,
                &MobileNetOptions {
                    alpha,
                    depth_multiplier: args["depth_multiplier"]
                        .as_u64()
                        .map_or(defaults.depth_multiplier, |d| d as usize),
                    dropout: args["dropout"].as_f64().unwrap_or(defaults.dropout),
                },
            )
        }
        (_, Some(alpha)) => applications::mobilenet_v2(&options, alpha),
        (_, None) => applications::by_name(application, &options),
    }
    .map_err(|e| e.to_string())?;
    let expect = |what: &str, ours: Value, theirs: &Value| {
        if ours == *theirs {
            Ok(())
        } else {
            Err(format!("{what} {ours}, Keras's {theirs}"))
        }
    };
    expect("name", model.name().into(), &case["name"])?;
    expect("params", model.count_params().into(), &case["params"])?;
    expect(
        "input shape",
        serde_json::to_value(&model.input_shapes()[0]).unwrap(),
        &case["input_shape"],
    )?;
    expect(
        "output shape",
        serde_json::to_value(&model.output_shapes()[0]).unwrap(),
        &case["output_shape"],
    )?;
    let ours: Vec<String> = model
        .layers()
        .zip(model.layer_output_shapes())
        .map(|(l, (name, shape))| layer_line(&name, l.class_name(), &shape))
        .collect();
    let theirs: Vec<String> = serde_json::from_value(case["layers"].clone()).unwrap();
    if let Some(d) = text_difference(&ours.join("\n"), &theirs.join("\n")) {
        return Err(format!("layers differ from Keras's at {d}"));
    }
    let config = convnet::io::config_json(&model);
    let layers = config["config"]["layers"].as_array().unwrap();
    let tail = case["tail"].as_array().unwrap();
    if let Some(d) = layers_difference(&layers[layers.len() - tail.len()..], tail, "tail") {
        return Err(format!("the last layers' configs differ: {d}"));
    }
    Ok(())
}

fn check_options(file: &str) {
    let document = read_json(&format!("options/{file}.json"));
    let cases = document[file].as_array().unwrap();
    assert!(cases.len() >= 7, "{file}.json has {} cases", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            check_options_case(case).err().map(|e| {
                format!(
                    "{} (alpha {}) {}: {e}",
                    case["application"], case["alpha"], case["args"]
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Keras:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn resnet_options_build_as_keras_builds_them() {
    check_options("resnet");
}

#[test]
fn mobilenet_v2_options_build_as_keras_builds_them() {
    check_options("mobilenet_v2");
}

#[test]
fn vgg_options_build_as_keras_builds_them() {
    check_options("vgg");
}

#[test]
fn mobilenet_options_build_as_keras_builds_them() {
    check_options("mobilenet");
}

#[test]
fn densenet_options_build_as_keras_builds_them() {
    check_options("densenet");
}

#[test]
fn xception_and_inception_v3_options_build_as_keras_builds_them() {
    check_options("inception");
}

#[test]
fn an_open_input_shape_takes_any_image_size() {
    let model = applications::resnet50(&Options {
        include_top: false,
        pooling: Some(Pooling::Avg),
        ..Options::default()
    })
    .unwrap();
    for size in [32, 45] {
        let x = Tensor::full([1, size, size, 3], 0.5);
        let y = model.predict(&[x], 1).unwrap();
        assert_eq!(y[0].shape(), [1, 2048]);
    }
}

#[test]
fn preprocess_input_computes_as_keras() {
    let document = read_json("options/preprocess.json");
    let reference = &document["preprocess"];
    let shape: Vec<usize> = serde_json::from_value(reference["x"]["shape"].clone()).unwrap();
    let data: Vec<f32> = serde_json::from_value(reference["x"]["data"].clone()).unwrap();
    let x = Tensor::new(shape.clone(), data).unwrap();
    for (mode, key) in [
        (PreprocessMode::Caffe, "caffe"),
        (PreprocessMode::Tf, "tf"),
        (PreprocessMode::Torch, "torch"),
    ] {
        let expected: Vec<f32> = serde_json::from_value(reference[key].clone()).unwrap();
        let y = applications::preprocess_input(&x, mode).unwrap();
        assert_eq!(y.shape(), &shape[..], "{key}");
        for (i, (a, b)) in y.data().iter().zip(&expected).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{key}: element {i} is {a}, Keras's {b}"
            );
        }
    }
    // EfficientNet's preprocess_input is the identity, on any number of channels.
    let grey = Tensor::new(vec![1, 1, 2, 1], vec![0.0, 255.0]).unwrap();
    let y = applications::preprocess_input(&grey, PreprocessMode::Identity).unwrap();
    assert_eq!(y, grey);
    // One image (no batch axis) works too.
    let image = Tensor::full([2, 2, 3], 255.0);
    let y = applications::preprocess_input(&image, PreprocessMode::Tf).unwrap();
    assert!(y.data().iter().all(|&v| v == 1.0));
}

// ---------------------------------------------------------------------------------
// Errors, named by the argument.

/// The argument an error names, and its message.
fn invalid(result: convnet::Result<impl std::fmt::Debug>) -> (String, String) {
    match result {
        Err(Error::InvalidArgument { argument, message }) => (argument, message),
        other => panic!("expected an invalid argument, got {other:?}"),
    }
}

#[test]
fn invalid_arguments_are_refused_by_name() {
    let (argument, message) = invalid(applications::by_name("resnet51", &Options::default()));
    assert_eq!(argument, "application");
    assert!(
        message.contains("resnet51")
            && message.contains("resnet50")
            && message.contains("mobilenet_v2"),
        "{message}"
    );

    let shaped = |shape: &[usize], include_top: bool| Options {
        include_top,
        input_shape: Some(shape.to_vec()),
        ..Options::default()
    };
    for include_top in [true, false] {
        let (argument, message) =
            invalid(applications::resnet50(&shaped(&[31, 32, 3], include_top)));
        assert_eq!(argument, "input_shape");
        assert_eq!(
            message,
            "Input size must be at least 32x32; Received: input_shape=(31, 32, 3)"
        );
        let (argument, message) = invalid(applications::mobilenet_v2(
            &shaped(&[64, 16, 3], include_top),
            1.0,
        ));
        assert_eq!(argument, "input_shape");
        assert!(
            message.starts_with("Input size must be at least 32x32"),
            "{message}"
        );
    }
    let (argument, message) = invalid(applications::resnet50(&shaped(&[32, 32], false)));
    assert_eq!(argument, "input_shape");
    assert!(
        message.contains("`input_shape` must be a tuple of three integers"),
        "{message}"
    );
    let (argument, message) = invalid(applications::mobilenet_v2(&shaped(&[32, 32, 0], true), 1.0));
    assert_eq!(argument, "input_shape");
    assert!(message.contains("channel"), "{message}");

    let (argument, message) = invalid(applications::resnet50(&Options {
        classes: 0,
        ..shaped(&[32, 32, 3], true)
    }));
    assert_eq!(argument, "classes");
    assert!(message.contains("classes=0"), "{message}");

    let (argument, message) = invalid(applications::mobilenet_v2(
        &shaped(&[32, 32, 3], true),
        f64::NAN,
    ));
    assert_eq!(argument, "alpha");
    assert!(message.contains("alpha"), "{message}");

    let grey = Tensor::full([1, 2, 2, 1], 1.0);
    for mode in [PreprocessMode::Caffe, PreprocessMode::Torch] {
        let (argument, message) = invalid(applications::preprocess_input(&grey, mode));
        assert_eq!(argument, "x");
        assert!(message.contains("3 channels"), "{message}");
    }
}

/// Keras builds on one channel (grey images) with `weights=None`, and so does convnet.
#[test]
fn one_channel_builds_as_keras_builds_it() {
    let model = applications::resnet50(&Options {
        input_shape: Some(vec![32, 32, 1]),
        ..Options::default()
    })
    .unwrap();
    // keras.applications.ResNet50(weights=None, input_shape=(32, 32, 1)).count_params()
    assert_eq!(model.count_params(), 25_630_440);
}

/// Xception's and InceptionV3's minimum sizes, MobileNet's own arguments.
#[test]
fn new_applications_refuse_invalid_arguments_by_name() {
    let shaped = |shape: &[usize]| Options {
        input_shape: Some(shape.to_vec()),
        ..Options::default()
    };
    let (argument, message) = invalid(applications::xception(&shaped(&[70, 71, 3])));
    assert_eq!(argument, "input_shape");
    assert_eq!(
        message,
        "Input size must be at least 71x71; Received: input_shape=(70, 71, 3)"
    );
    let (argument, message) = invalid(applications::inception_v3(&shaped(&[75, 74, 3])));
    assert_eq!(argument, "input_shape");
    assert_eq!(
        message,
        "Input size must be at least 75x75; Received: input_shape=(75, 74, 3)"
    );
    for name in ["vgg16", "densenet121", "mobilenet"] {
        let (argument, _) = invalid(applications::by_name(name, &shaped(&[31, 32, 3])));
        assert_eq!(argument, "input_shape", "{name}");
        let (argument, _) = invalid(applications::by_name(
            name,
            &Options {
                classes: 0,
                ..shaped(&[32, 32, 3])
            },
        ));
        assert_eq!(argument, "classes", "{name}");
    }
    let mobilenet = |args: MobileNetOptions| applications::mobilenet(&shaped(&[32, 32, 3]), &args);
    for (args, name) in [
        (
            MobileNetOptions {
                alpha: f64::NAN,
                ..MobileNetOptions::default()
            },
            "alpha",
        ),
        (
            MobileNetOptions {
                alpha: 0.01,
                ..MobileNetOptions::default()
            },
            "alpha",
        ),
        (
            MobileNetOptions {
                depth_multiplier: 0,
                ..MobileNetOptions::default()
            },
            "depth_multiplier",
        ),
        (
            MobileNetOptions {
                dropout: 1.5,
                ..MobileNetOptions::default()
            },
            "dropout",
        ),
    ] {
        let (argument, message) = invalid(mobilenet(args));
        assert_eq!(argument, name);
        assert!(message.contains(name), "{message}");
    }
}

#[test]
fn every_efficientnet_v2_builds_as_keras_builds_it() {
    check_corpus_all(&[
        ("efficientnet_v2_b0", true),
        ("efficientnet_v2_b1", true),
        ("efficientnet_v2_b2", true),
        ("efficientnet_v2_b3", true),
        ("efficientnet_v2_s", true),
    ]);
}

#[test]
fn inception_resnet_v2_builds_as_keras_builds_it() {
    check_corpus_all(&[("inception_resnet_v2", true)]);
}

#[test]
fn nasnet_mobile_builds_as_keras_builds_it() {
    check_corpus_all(&[("nasnet_mobile", true)]);
}

#[test]
fn mobilenet_v3_builds_as_keras_builds_it() {
    check_corpus_all(&[("mobilenet_v3_small", true), ("mobilenet_v3_large", false)]);
}

#[test]
fn convnext_tiny_builds_as_keras_builds_it() {
    check_corpus_all(&[("convnext_tiny", true)]);
}

#[test]
fn nasnet_and_inception_resnet_v2_take_keras_arguments() {
    // Keras 3.15's counts and shapes for these arguments (weights=None).
    let build = |name: &str, options: Options| {
        let model = match name {
            "nasnet_large" => applications::nasnet_large(&options),
            "nasnet_mobile" => applications::nasnet_mobile(&options),
            _ => applications::inception_resnet_v2(&options),
        }
        .unwrap();
        let shape = |s: &[Option<usize>]| s.to_vec();
        (
            model.count_params(),
            shape(&model.input_shapes()[0]),
            shape(&model.output_shapes()[0]),
        )
    };
    let no_top = Options {
        include_top: false,
        ..Options::default()
    };
    assert_eq!(
        build("nasnet_large", Options::default()),
        (
            88_949_818,
            vec![None, Some(331), Some(331), Some(3)],
            vec![None, Some(1000)]
        )
    );
    assert_eq!(
        build("nasnet_large", no_top.clone()),
        (
            84_887_922,
            vec![None, None, None, Some(3)],
            vec![None, None, None, Some(4032)]
        )
    );
    // NASNetMobile without the top and an input shape is built at 224x224, not open.
    assert_eq!(
        build(
            "nasnet_mobile",
            Options {
                pooling: Some(Pooling::Avg),
                ..no_top.clone()
            }
        ),
        (
            4_269_716,
            vec![None, Some(224), Some(224), Some(3)],
            vec![None, Some(1056)]
        )
    );
    assert_eq!(
        build(
            "nasnet_mobile",
            Options {
                input_shape: Some(vec![33, 45, 3]),
                classes: 10,
                ..Options::default()
            }
        ),
        (
            4_280_286,
            vec![None, Some(33), Some(45), Some(3)],
            vec![None, Some(10)]
        )
    );
    assert_eq!(
        build("inception_resnet_v2", no_top),
        (
            54_336_736,
            vec![None, None, None, Some(3)],
            vec![None, None, None, Some(1536)]
        )
    );
    for shape in [vec![31, 32, 3], vec![32, 31, 3]] {
        let e = applications::nasnet_mobile(&Options {
            input_shape: Some(shape.clone()),
            ..Options::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(&format!(
                "Input size must be at least 32x32; Received: input_shape=({}, {}, 3)",
                shape[0], shape[1]
            )),
            "{e}"
        );
    }
}

/// MobileNetV3's own arguments and ConvNeXt's other sizes and options, against the
/// parameter counts and shapes Keras 3.15 gives them (`weights=None`).
#[test]
fn mobilenet_v3_and_convnext_arguments_build_as_keras_builds_them() {
    use applications::MobileNetV3Options;
    let small = applications::mobilenet_v3_small(
        &Options {
            input_shape: Some(vec![64, 64, 3]),
            ..Options::default()
        },
        &MobileNetV3Options {
            alpha: 0.75,
            minimalistic: true,
            ..MobileNetV3Options::default()
        },
    )
    .unwrap();
    assert_eq!(small.count_params(), 1_742_192);
    let large = applications::mobilenet_v3_large(
        &Options {
            include_top: false,
            pooling: Some(Pooling::Avg),
            ..Options::default()
        },
        &MobileNetV3Options {
            alpha: 1.25,
            include_preprocessing: false,
            ..MobileNetV3Options::default()
        },
    )
    .unwrap();
    assert_eq!(large.count_params(), 4_764_160);
    assert_eq!(large.output_shapes(), vec![vec![None, Some(1200)]]);
    assert_eq!(large.layers().nth(1).unwrap().name(), "conv");
    let grey = applications::convnext_tiny(
        &Options {
            include_top: false,
            input_shape: Some(vec![32, 32, 1]),
            ..Options::default()
        },
        true,
    )
    .unwrap();
    assert_eq!(grey.count_params(), 27_817_056);
    let small = applications::convnext_small(&Options::default(), true).unwrap();
    assert_eq!(small.count_params(), 50_223_688);
    assert_eq!(small.name(), "convnext_small");
}
