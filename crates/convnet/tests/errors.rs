//! Every way a config, a shape or a file can be wrong gives an error whose message names
//! the layer (or file) and the problem — never a panic.

use convnet::initializers::rng_from_seed;
use convnet::layers::*;
use convnet::{ActivationFn, Padding, Tensor};
use serde_json::{json, Value};

fn shape(dims: &[usize]) -> Shape {
    std::iter::once(None)
        .chain(dims.iter().map(|&d| Some(d)))
        .collect()
}

/// The error from building `class` with `config`, as text.
fn config_error(class: &str, config: Value) -> String {
    match layer_from_keras(&json!({"class_name": class, "config": config})) {
        Ok(layer) => panic!("{class} {config} was accepted: {layer:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "error message {message:?} does not mention {part:?}"
        );
    }
}

#[test]
fn kernel_larger_than_a_valid_input() {
    let e = Conv2D::new(4, (5, 5))
        .named("edges")
        .output_shape(&[shape(&[3, 3, 1])])
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["'edges'", "Conv2D", "larger than", "valid"]);
    let e = MaxPooling2D::new((3, 3))
        .output_shape(&[shape(&[2, 8, 1])])
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["max_pooling2d", "larger than"]);
}

#[test]
fn channels_not_divisible_by_groups() {
    let e = Conv2D::new(6, (3, 3))
        .groups(4)
        .output_shape(&[shape(&[8, 8, 6])])
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["conv2d", "groups = 4", "input channels (6)"]);
}

#[test]
fn mismatched_merge_shapes() {
    let e = Add::new()
        .output_shape(&[shape(&[4, 4, 3]), shape(&[4, 4, 2])])
        .unwrap_err()
        .to_string();
    assert_mentions(
        &e,
        &[
            "'add'",
            "incompatible shapes",
            "(None, 4, 4, 3)",
            "(None, 4, 4, 2)",
        ],
    );
    let e = Concatenate::new()
        .output_shape(&[shape(&[4, 4, 3]), shape(&[5, 4, 2])])
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["'concatenate'", "must match"]);
    let e = Multiply::new()
        .output_shape(&[shape(&[4])])
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["multiply", "at least 2 inputs"]);
}

#[test]
fn negative_and_impossible_sizes() {
    let e = config_error(
        "Conv2D",
        json!({"name": "c", "filters": -3, "kernel_size": 3}),
    );
    assert_mentions(&e, &["'c'", "Conv2D", "'filters'", "at least 1", "-3"]);
    let e = config_error("Reshape", json!({"name": "r", "target_shape": [-2, 3]}));
    assert!(e.contains("'r'"), "{e}");
    let e = Reshape::new(&[-2, 3])
        .output_shape(&[shape(&[6])])
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["reshape", "positive sizes"]);
    let e = Reshape::new(&[5])
        .output_shape(&[shape(&[2, 3])])
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["reshape", "6 values per sample"]);
    let e = Cropping2D::new([[2, 2], [0, 0]])
        .output_shape(&[shape(&[4, 4, 1])])
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["cropping2d", "leaves nothing"]);
    let e = config_error(
        "ZeroPadding2D",
        json!({"name": "z", "padding": [[1, -1], [0, 0]]}),
    );
    assert_mentions(&e, &["'z'", "'padding'", "non-negative"]);
    let e = config_error("Dropout", json!({"name": "d", "rate": 1.5}));
    assert_mentions(&e, &["'d'", "'rate'", "between 0 and 1"]);
}

#[test]
fn unknown_class_and_fields() {
    let e = config_error("Conv4D", json!({"name": "vol"}));
    assert_mentions(&e, &["'vol'", "unknown layer class 'Conv4D'"]);
    let e = config_error("Conv2D", json!({"name": "c", "kernel_size": 3}));
    assert_mentions(&e, &["'c'", "'filters'", "missing"]);
    let e = config_error(
        "Conv2D",
        json!({"name": "c", "filters": 2, "kernel_size": "big"}),
    );
    assert_mentions(&e, &["'kernel_size'", "\"big\""]);
    let e = config_error(
        "Conv2D",
        json!({"name": "c", "filters": 2, "kernel_size": 3, "kernel_sise": 3}),
    );
    assert_mentions(&e, &["'kernel_sise'", "unknown field"]);
    let e = config_error(
        "Dense",
        json!({"name": "d", "units": 2, "activation": "rleu"}),
    );
    assert_mentions(&e, &["'d'", "'activation'", "unknown activation 'rleu'"]);
    let e = config_error(
        "Dense",
        json!({"name": "d", "units": 2, "kernel_regularizer": {"class_name": "L3", "config": {"l3": 0.01}}}),
    );
    assert_mentions(
        &e,
        &["'d'", "'kernel_regularizer'", "unknown regularizer 'L3'"],
    );
    let e = config_error(
        "Conv2D",
        json!({"name": "c", "filters": 2, "kernel_size": 3, "activity_regularizer": {"class_name": "L2", "config": {"l2": -1.0}}}),
    );
    assert_mentions(&e, &["'c'", "'activity_regularizer'", "-1"]);
    let e = config_error(
        "Dense",
        json!({"name": "d", "units": 2, "kernel_constraint": {"class_name": "MaxNorm", "config": {"max_value": 2, "axes": 0}}}),
    );
    assert_mentions(&e, &["'d'", "'kernel_constraint'", "axes"]);
    let e = config_error(
        "Conv2D",
        json!({"name": "c", "filters": 2, "kernel_size": 3, "data_format": "channels_middle"}),
    );
    assert_mentions(&e, &["'c'", "'data_format'", "channels_middle"]);
    // channels_first is read on the conv, pooling and shape layers; elsewhere refused.
    let e = config_error(
        "Resizing",
        json!({"name": "r", "height": 2, "width": 2, "data_format": "channels_first"}),
    );
    assert_mentions(&e, &["'r'", "'data_format'", "channels_first"]);
    let e = config_error(
        "Conv2D",
        json!({"name": "c", "filters": 2, "kernel_size": 3, "padding": "causal"}),
    );
    assert_mentions(&e, &["'padding'", "causal"]);
    let e = config_error(
        "Dense",
        json!({"name": "d", "units": 2, "kernel_initializer": "orthogonal"}),
    );
    assert_mentions(&e, &["'kernel_initializer'", "orthogonal"]);
    let e = config_error(
        "UpSampling2D",
        json!({"name": "u", "interpolation": "bicubic"}),
    );
    assert_mentions(&e, &["'interpolation'", "bicubic"]);
    let e = config_error("BatchNormalization", json!({"name": "bn", "renorm": true}));
    assert_mentions(&e, &["'bn'", "'renorm'"]);
    let e = layer_from_keras(&json!({"config": {"name": "x"}}))
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["'x'", "class_name"]);
}

#[test]
fn wrong_inputs_at_run_time() {
    let mut rng = rng_from_seed(0);
    let mut dense = Dense::new(3).named("head");
    let e = dense.output_shape(&[vec![None]]).unwrap_err().to_string();
    assert_mentions(&e, &["'head'", "rank 2"]);
    // Called before it has weights.
    let x = Tensor::zeros([2, 4]);
    let e = dense.apply(&[&x]).unwrap_err().to_string();
    assert_mentions(&e, &["'head'", "no weights"]);
    dense.build(&[shape(&[4])], &mut rng).unwrap();
    // Built for 4 features, given 5.
    let e = dense
        .apply(&[&Tensor::zeros([2, 5])])
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["'head'", "built for 4", "has 5"]);
    // Two inputs to a one-input layer.
    let e = dense.apply(&[&x, &x]).unwrap_err().to_string();
    assert_mentions(&e, &["'head'", "expects 1 input"]);
    // A conv layer given a matrix instead of an image batch.
    let e = Conv2D::new(2, (3, 3)).apply(&[&x]).unwrap_err().to_string();
    assert_mentions(&e, &["conv2d", "4-D input"]);
    // Weights of the wrong shape.
    let e = dense
        .set_weights(vec![Tensor::zeros([3, 3]), Tensor::zeros([3])])
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["'head'", "kernel", "[4, 3]", "[3, 3]"]);
    // A gradient of the wrong shape.
    let (y, saved) = dense.forward(&[&x], true).unwrap();
    let mut grads = zero_grads(&dense);
    let e = dense
        .backward(&[&x], &y, &saved, &Tensor::zeros([2, 4]), &mut grads)
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["'head'", "output gradient"]);
}

#[test]
fn invalid_builder_arguments_surface_when_used() {
    // Activations are typed values: a bad name is refused when it is parsed, before any
    // layer holds it.
    let e = "rleu".parse::<ActivationFn>().unwrap_err().to_string();
    assert_mentions(&e, &["activation", "rleu", "known: linear, relu"]);
    let conv = Conv2D::new(2, (3, 3))
        .activation("relu".parse().unwrap())
        .padding(Padding::Same);
    assert_eq!(conv.activation, ActivationFn::Relu);
    let e = Conv2D::new(2, (0, 3))
        .output_shape(&[shape(&[8, 8, 1])])
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["conv2d", "kernel_size must be positive"]);
    let e = Conv2D::new(2, (3, 3))
        .strides((2, 2))
        .dilation_rate((2, 2))
        .output_shape(&[shape(&[8, 8, 1])])
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["conv2d", "dilation_rate"]);
    let e = BatchNormalization::new()
        .axis(5)
        .output_shape(&[shape(&[4, 4, 2])])
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["batch_normalization", "axis 5"]);
    let e = Dropout::new(2.0)
        .output_shape(&[shape(&[4])])
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["dropout", "rate"]);
}

#[test]
fn broken_npy_files() {
    let dir = std::env::temp_dir().join(format!("convnet-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.npy");
    let t = Tensor::new([2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    t.write_npy(&good).unwrap();
    assert_eq!(Tensor::read_npy(&good).unwrap(), t);
    let bytes = std::fs::read(&good).unwrap();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated.npy",
            bytes[..bytes.len() - 4].to_vec(),
            "holds 20",
        ),
        (
            "magic.npy",
            b"PK\x03\x04 not numpy at all".to_vec(),
            "magic",
        ),
        ("empty.npy", vec![], "magic"),
        ("header.npy", bytes[..20].to_vec(), "truncated"),
        // A header declaring a huge shape over a few bytes of data: refused before any
        // buffer of that size is allocated.
        ("huge.npy", huge_declared_npy(), "needs"),
    ];
    for (name, data, expected) in cases {
        let path = dir.join(name);
        std::fs::write(&path, data).unwrap();
        let e = Tensor::read_npy(&path).unwrap_err().to_string();
        assert_mentions(&e, &[name, expected]);
    }
    let e = Tensor::read_npy(dir.join("missing.npy"))
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["missing.npy"]);
    std::fs::remove_dir_all(&dir).ok();
}

fn huge_declared_npy() -> Vec<u8> {
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000, 1000), }";
    let mut padded = header.to_string();
    while !(10 + padded.len() + 1).is_multiple_of(64) {
        padded.push(' ');
    }
    padded.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(padded.len() as u16).to_le_bytes());
    out.extend_from_slice(padded.as_bytes());
    out.extend_from_slice(&[0u8; 16]);
    out
}

#[test]
fn embedding_indices_out_of_range_or_fractional_are_named() {
    let mut layer = Embedding::new(7, 3).named("tokens");
    layer.build(&[shape(&[2])], &mut rng_from_seed(1)).unwrap();
    for bad in [7.0, -1.0, 2.5, f32::NAN] {
        let x = Tensor::new(vec![1, 2], vec![1.0, bad]).unwrap();
        let e = layer.apply(&[&x]).unwrap_err().to_string();
        assert_mentions(
            &e,
            &[
                "'tokens'",
                "Embedding",
                &format!("index {bad}"),
                "input_dim 7",
            ],
        );
    }
    let x = Tensor::new(vec![1, 2], vec![0.0, 6.0]).unwrap();
    assert_eq!(layer.apply(&[&x]).unwrap().shape(), &[1, 2, 3]);
}

#[test]
fn one_d_configs_name_the_field() {
    let e = config_error(
        "Conv1D",
        json!({"name": "c", "filters": 2, "kernel_size": [3, 3]}),
    );
    assert_mentions(&e, &["'c'", "Conv1D", "'kernel_size'"]);
    let e = config_error(
        "MaxPooling1D",
        json!({"name": "p", "pool_size": 2, "interpolation": "x"}),
    );
    assert_mentions(
        &e,
        &["'p'", "MaxPooling1D", "'interpolation'", "unknown field"],
    );
    let e = config_error(
        "SeparableConv1D",
        json!({"name": "s", "filters": 2, "kernel_size": 3, "padding": "causal"}),
    );
    assert_mentions(&e, &["'s'", "SeparableConv1D", "'padding'"]);
    let layer = OneD::new(
        "Conv1D",
        json!({"name": "c", "filters": 2, "kernel_size": 5}),
    )
    .unwrap();
    let e = layer
        .output_shape(&[shape(&[3, 1])])
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["'c'", "Conv1D"]);
    let e = layer
        .output_shape(&[shape(&[4, 4, 1])])
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["'c'", "rank 3"]);
}

/// A Sequential config of an input of `shape` (None for open sizes) and one layer.
fn one_layer_model(shape: &[Option<u64>], class: &str, config: Value) -> Value {
    let mut config = config;
    config["name"] = json!("hostile");
    let batch_shape: Vec<Value> = std::iter::once(Value::Null)
        .chain(shape.iter().map(|d| d.map_or(Value::Null, Value::from)))
        .collect();
    json!({"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": batch_shape, "name": "input_layer"}},
        {"class_name": class, "config": config},
    ]}})
}

/// The hostile configs of the issue "Nothing a file declares can crash convnet": sizes
/// that overflowed, or asked for tens of gigabytes, are errors naming the layer and the
/// field, when the model is read and when it runs on inputs of open size.
#[test]
fn hostile_sizes_are_refused_naming_the_layer() {
    let origin = std::path::Path::new("hostile.json");
    let big = 1u64 << 40;
    for (class, config, field) in [
        ("UpSampling2D", json!({"size": [big, big]}), "size"),
        (
            "ZeroPadding2D",
            json!({"padding": [[1u64 << 62, 1u64 << 62], [1, 1]]}),
            "padding",
        ),
        (
            "Conv2DTranspose",
            json!({"filters": 2, "kernel_size": 3, "strides": [big, big]}),
            "strides",
        ),
        ("Dense", json!({"units": 1_000_000_000_000u64}), "units"),
        (
            "Reshape",
            json!({"target_shape": [big, big, big]}),
            "target_shape",
        ),
        (
            "UpSampling2D",
            json!({"size": [16384, 16384]}),
            "its output",
        ),
    ] {
        let config = one_layer_model(&[Some(8), Some(8), Some(2)], class, config);
        let e = convnet::io::model_from_config(&config, origin)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert_mentions(&e, &["'hostile'", class, field]);
    }
    let config = one_layer_model(&[Some(1 << 62), Some(1 << 62)], "Flatten", json!({}));
    let e = convnet::io::model_from_config(&config, origin)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["'input_layer'", "batch_shape"]);
    // Open sizes: the model reads, and a call whose output would be too big is refused
    // before anything is allocated.
    let config = one_layer_model(
        &[None, None, Some(2)],
        "UpSampling2D",
        json!({"size": [16384, 16384]}),
    );
    let model = convnet::io::model_from_config(&config, origin).unwrap();
    let x = Tensor::zeros([1, 8, 8, 2]);
    let e = model
        .predict(std::slice::from_ref(&x), 1)
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["'hostile'", "(1, 131072, 131072, 2)", "2147483648"]);
    let mut model = model;
    let e = model
        .forward(&[&x], true)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["'hostile'", "2147483648"]);
}

/// Every integer a golden layer config declares (sizes, strides, padding, units, …),
/// replaced by hostile values — negative, zero, fractional, huge — gives a layer that
/// is refused, or one that builds and runs on a small input; never a panic. The configs
/// are the 145 Keras wrote for tests/golden/layers, so every layer family is covered.
#[test]
fn hostile_integers_in_every_golden_config_never_panic() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/layers/cases.json"
    );
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let hostile = [
        json!(-1),
        json!(0),
        json!(1.5),
        json!(1u64 << 40),
        json!(1u64 << 62),
    ];
    let mut panics = Vec::new();
    let mut tried = 0;
    for case in cases["cases"].as_array().unwrap() {
        let layer = &case["layer"];
        let shapes: Vec<Shape> = case["input_shapes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let dims: Vec<usize> = serde_json::from_value(s.clone()).unwrap();
                std::iter::once(None)
                    .chain(dims[1..].iter().map(|&d| Some(d)))
                    .collect()
            })
            .collect();
        let fields: Vec<String> = layer["config"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| {
                v.is_u64()
                    || v.as_array().is_some_and(|a| {
                        !a.is_empty() && a.iter().all(|x| x.is_u64() || x.is_array())
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for field in &fields {
            for value in &hostile {
                let mut object = layer.clone();
                let original = object["config"][field].clone();
                object["config"][field] = match &original {
                    Value::Array(items) => Value::Array(vec![value.clone(); items.len()]),
                    _ => value.clone(),
                };
                tried += 1;
                let shapes = shapes.clone();
                let outcome = std::panic::catch_unwind(move || {
                    let Ok(mut layer) = layer_from_keras(&object) else {
                        return;
                    };
                    if layer.build(&shapes, &mut rng_from_seed(1)).is_err() {
                        return;
                    }
                    let Ok(out) = layer.output_shape(&shapes) else {
                        return;
                    };
                    if check_output_size(layer.as_ref(), &out).is_err() {
                        return;
                    }
                    let inputs: Vec<Tensor> = shapes
                        .iter()
                        .map(|s| {
                            Tensor::zeros(s.iter().map(|d| d.unwrap_or(1)).collect::<Vec<_>>())
                        })
                        .collect();
                    let refs: Vec<&Tensor> = inputs.iter().collect();
                    let _ = layer.apply(&refs);
                });
                if outcome.is_err() {
                    panics.push(format!("{} {field}={value}", case["name"]));
                }
            }
        }
    }
    assert!(tried > 300, "only {tried} hostile configs tried");
    assert!(panics.is_empty(), "panicked on:\n{}", panics.join("\n"));
}
