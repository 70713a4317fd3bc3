//! ONNX import. The fast tests read PyTorch's exports of a small CNN (grouped, dilated
//! and depthwise convolutions, BatchNormalization, ReLU6, SiLU, padded pooling, a
//! flatten of a 4x4 map), written by both of `torch.onnx.export`'s exporters
//! (`scripts/make_torch_onnx.py`), and check convnet's predictions against PyTorch's;
//! then files that are broken or hostile, each an error naming the file. The ignored
//! test does the same for torchvision's ResNet18 and MobileNetV2, written by the same
//! script into `CONVNET_TORCH_ONNX` (too big to commit), and saves each as `.keras`
//! for `EXPECT=torch scripts/keras_check_exports.sh` to load in Keras 3.

use convnet::io::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TypeProto,
    ValueInfoProto, FLOAT,
};
use convnet::io::onnx::{load_onnx, load_onnx_bytes};
use convnet::model::Model;
use convnet::train::{FitOptions, Optimizer};
use convnet::Tensor;
use prost::Message;
use std::path::{Path, PathBuf};

mod common;
use common::max_relative;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/onnx_import")
        .join(name)
}

/// An NCHW tensor as NHWC.
fn to_nhwc(x: &Tensor) -> Tensor {
    let &[n, c, h, w] = x.shape() else {
        panic!("not NCHW: {:?}", x.shape())
    };
    let d = x.data();
    let mut out = Vec::with_capacity(d.len());
    for b in 0..n {
        for y in 0..h {
            for z in 0..w {
                for k in 0..c {
                    out.push(d[((b * c + k) * h + y) * w + z]);
                }
            }
        }
    }
    Tensor::new(vec![n, h, w, c], out).unwrap()
}

/// Loads `dir/NAME.onnx` and checks its prediction on PyTorch's input against
/// PyTorch's output.
fn check_against_torch(dir: &Path, file: &str, case: &str, tolerance: f32) -> Model {
    let model = Model::load(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let x = to_nhwc(&Tensor::read_npy(dir.join(format!("{case}_input.npy"))).unwrap());
    let want = Tensor::read_npy(dir.join(format!("{case}_torch.npy"))).unwrap();
    let got = model.predict(&[x], 8).unwrap().remove(0);
    let error = max_relative(&got, &want);
    println!("{file}: {error:e} from PyTorch");
    assert!(
        error <= tolerance,
        "{file}: predictions differ from PyTorch's by {error:e} relative"
    );
    model
}

#[test]
fn a_small_pytorch_cnn_predicts_as_in_pytorch() {
    let dir = golden("");
    for file in ["custom_cnn.onnx", "custom_cnn_legacy.onnx"] {
        let model = check_against_torch(&dir, file, "custom_cnn", 1e-5);
        let classes: Vec<String> = model.layers().map(|l| l.class_name().to_string()).collect();
        for class in [
            "Conv2D",
            "DepthwiseConv2D",
            "BatchNormalization",
            "ZeroPadding2D",
            "MaxPooling2D",
            "AveragePooling2D",
            "Concatenate",
            "Permute",
            "Dense",
        ] {
            assert!(
                classes.iter().any(|c| c == class),
                "{file}: no {class} in {classes:?}"
            );
        }
        let grouped = model
            .layers()
            .filter(|l| l.class_name() == "Conv2D")
            .filter_map(|l| l.config().get("groups").and_then(|g| g.as_u64()))
            .max();
        assert_eq!(grouped, Some(4), "{file}: the grouped convolution");
        let dilated = model
            .layers()
            .any(|l| l.config().get("dilation_rate") == Some(&serde_json::json!([2, 2])));
        assert!(dilated, "{file}: the dilated convolution");
    }
}

/// The operators PyTorch's CNNs above leave out (`scripts/make_onnx_operator_cases.py`),
/// each graph against ONNX Runtime's output. Inputs and outputs are in the graph's own
/// layout: NCHW ones are turned to NHWC for convnet.
#[test]
fn each_imported_operator_computes_as_in_onnx_runtime() {
    let dir = golden("operators");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".onnx").map(str::to_string)
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "{names:?}");
    for name in names {
        let model = Model::load(dir.join(format!("{name}.onnx"))).unwrap_or_else(|e| panic!("{e}"));
        let x = Tensor::read_npy(dir.join(format!("{name}_input.npy"))).unwrap();
        let keras_input: Vec<usize> = model.input_shapes()[0]
            .iter()
            .skip(1)
            .map(|d| d.unwrap())
            .collect();
        let x = if x.shape()[1..] == keras_input[..] {
            x
        } else {
            to_nhwc(&x)
        };
        let want = Tensor::read_npy(dir.join(format!("{name}_onnxruntime.npy"))).unwrap();
        let got = model.predict(&[x], 8).unwrap().remove(0);
        let want = if got.shape() == want.shape() {
            want
        } else {
            to_nhwc(&want)
        };
        let error = max_relative(&got, &want);
        assert!(error <= 1e-5, "{name}: {error:e} from ONNX Runtime");
        if name == "sigmoid_products_swish" {
            // x·sigmoid(x) is one SiLU layer, not a product.
            let classes: Vec<&str> = model.layers().map(|l| l.class_name()).collect();
            assert!(!classes.contains(&"Multiply"), "{classes:?}");
        }
    }
}

#[test]
fn an_imported_cnn_saves_as_keras_and_reads_back_the_same() {
    let dir = golden("");
    let model = Model::load(dir.join("custom_cnn.onnx")).unwrap();
    let out =
        std::env::temp_dir().join(format!("convnet-onnx-import-{}.keras", std::process::id()));
    model.save(&out).unwrap();
    let again = Model::load(&out).unwrap();
    std::fs::remove_file(&out).ok();
    let x = to_nhwc(&Tensor::read_npy(dir.join("custom_cnn_input.npy")).unwrap());
    let a = model
        .predict(std::slice::from_ref(&x), 8)
        .unwrap()
        .remove(0);
    let b = again.predict(&[x], 8).unwrap().remove(0);
    assert_eq!(a.data(), b.data());
}

#[test]
fn an_imported_cnn_trains() {
    let model = Model::load(golden("custom_cnn_legacy.onnx")).unwrap();
    let x = to_nhwc(&Tensor::read_npy(golden("custom_cnn_input.npy")).unwrap());
    let y = Tensor::new(vec![1, 10], (0..10).map(|i| f32::from(i == 3)).collect()).unwrap();
    let mut compiled = model
        .compile_named(Optimizer::sgd(0.5), "categorical_crossentropy", &[])
        .unwrap();
    let options = FitOptions {
        epochs: 5,
        batch_size: 1,
        verbose: 0,
        ..FitOptions::default()
    };
    let history = compiled.fit(&[x], &[y], options).unwrap();
    let loss = history.get("loss").unwrap();
    assert!(loss[4] < loss[0], "loss {loss:?}");
}

/// A minimal ONNX model around `nodes`: input `x` (N, 3, 8, 8), output `y`.
fn tiny(nodes: Vec<NodeProto>, initializers: Vec<TensorProto>) -> ModelProto {
    let image = |name: &str| ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(convnet::io::onnx::proto::TensorTypeProto {
                elem_type: Some(FLOAT),
                shape: Some(convnet::io::onnx::proto::TensorShapeProto {
                    dim: [None, Some(3), Some(8), Some(8)]
                        .into_iter()
                        .map(|v| convnet::io::onnx::proto::Dimension {
                            dim_value: v,
                            dim_param: v.is_none().then(|| "batch".into()),
                        })
                        .collect(),
                }),
            }),
        }),
    };
    ModelProto {
        ir_version: Some(8),
        producer_name: Some("test".into()),
        producer_version: None,
        graph: Some(GraphProto {
            node: nodes,
            name: Some("tiny".into()),
            initializer: initializers,
            input: vec![image("x")],
            output: vec![image("y")],
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
    }
}

fn node(op: &str, name: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: Some(name.into()),
        op_type: Some(op.into()),
        attribute: vec![],
        domain: None,
    }
}

fn weight(name: &str, dims: &[i64], bytes: usize) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: Some(FLOAT),
        name: Some(name.into()),
        raw_data: Some(vec![0; bytes]),
        ..Default::default()
    }
}

fn load_error(proto: &ModelProto) -> String {
    let origin = std::env::temp_dir().join("hostile.onnx");
    match load_onnx_bytes(&proto.encode_to_vec(), &origin) {
        Ok(_) => panic!("a broken file loaded"),
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("hostile.onnx"),
                "the error names no file: {message}"
            );
            message
        }
    }
}

#[test]
fn the_tiny_model_loads() {
    // The frame the hostile cases below break: it must load, or they prove nothing.
    let proto = tiny(vec![node("Relu", "relu", &["x"], "y")], vec![]);
    let origin = std::env::temp_dir().join("tiny.onnx");
    let model = load_onnx_bytes(&proto.encode_to_vec(), &origin).unwrap();
    assert_eq!(
        model.input_shapes(),
        vec![vec![None, Some(8), Some(8), Some(3)]]
    );
}

#[test]
fn truncated_and_foreign_bytes_are_errors_naming_the_file() {
    let bytes = std::fs::read(golden("custom_cnn_legacy.onnx")).unwrap();
    let dir = std::env::temp_dir().join(format!("convnet-onnx-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("half.onnx", bytes[..bytes.len() / 2].to_vec()),
        ("one_byte_short.onnx", bytes[..bytes.len() - 1].to_vec()),
        ("png.onnx", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec()),
        ("zip_magic.onnx", b"PK\x03\x04garbage".to_vec()),
        ("empty.onnx", vec![]),
    ];
    for (name, contents) in cases {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        let error = Model::load(&path)
            .err()
            .unwrap_or_else(|| panic!("{name} loaded"));
        assert!(error.to_string().contains(name), "{name}: {error}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn declared_sizes_are_checked_against_the_bytes() {
    let conv = |w: TensorProto| tiny(vec![node("Conv", "conv", &["x", "w"], "y")], vec![w]);
    let error = load_error(&conv(weight("w", &[3, 3, 3, 3], 4 * 81 - 4)));
    assert!(
        error.contains("tensor 'w'") && error.contains("324"),
        "{error}"
    );
    let error = load_error(&conv(weight("w", &[1 << 40, 1 << 40, 3, 3], 16)));
    assert!(
        error.contains("tensor 'w'") && error.contains("overflow"),
        "{error}"
    );
    let error = load_error(&conv(weight("w", &[-3, 3, 3, 3], 16)));
    assert!(error.contains("negative"), "{error}");
    let mut external = weight("w", &[3, 3, 3, 3], 0);
    external.raw_data = None;
    external.data_location = Some(convnet::io::onnx::proto::EXTERNAL);
    external.external_data = vec![convnet::io::onnx::proto::StringStringEntryProto {
        key: Some("location".into()),
        value: Some("../../etc/passwd".into()),
    }];
    let error = load_error(&conv(external));
    assert!(error.contains("beside the model"), "{error}");
    let mut proto = tiny(vec![node("Relu", "relu", &["x"], "y")], vec![]);
    let input = &mut proto.graph.as_mut().unwrap().input[0];
    let dims = &mut input.r#type.as_mut().unwrap().tensor_type.as_mut().unwrap();
    for d in &mut dims.shape.as_mut().unwrap().dim[1..] {
        d.dim_value = Some(1 << 40);
    }
    let error = load_error(&proto);
    assert!(error.contains("graph input 'x'"), "{error}");
}

#[test]
fn cycles_and_undefined_values_are_errors_naming_the_node() {
    let cyclic = tiny(
        vec![
            node("Relu", "first", &["x2"], "x1"),
            node("Relu", "second", &["x1"], "x2"),
            node("Relu", "out", &["x2"], "y"),
        ],
        vec![],
    );
    let error = load_error(&cyclic);
    assert!(error.contains("cycle"), "{error}");
    let undefined = tiny(vec![node("Relu", "relu", &["nowhere"], "y")], vec![]);
    let error = load_error(&undefined);
    assert!(
        error.contains("'relu'") && error.contains("nowhere"),
        "{error}"
    );
    let twice = tiny(
        vec![
            node("Relu", "a", &["x"], "y"),
            node("Relu", "b", &["x"], "y"),
        ],
        vec![],
    );
    assert!(load_error(&twice).contains("written twice"));
}

#[test]
fn operators_without_a_keras_form_are_refused_by_name() {
    let unknown = tiny(vec![node("NonMaxSuppression", "nms", &["x"], "y")], vec![]);
    let error = load_error(&unknown);
    assert!(
        error.contains("'nms'") && error.contains("NonMaxSuppression"),
        "{error}"
    );
    let mut pool = node("MaxPool", "pool", &["x"], "y");
    pool.attribute = vec![
        AttributeProto {
            name: Some("kernel_shape".into()),
            ints: vec![3, 3],
            ..Default::default()
        },
        AttributeProto {
            name: Some("pads".into()),
            ints: vec![1, 1, 1, 1],
            ..Default::default()
        },
        AttributeProto {
            name: Some("strides".into()),
            ints: vec![2, 2],
            ..Default::default()
        },
    ];
    // Padding (1, 1) at stride 2 is not Keras's `same` (0, 1), and zeros could win the
    // max of a raw input (which may be negative): no Keras form.
    let error = load_error(&tiny(vec![pool.clone()], vec![]));
    assert!(
        error.contains("'pool'") && error.contains("negative"),
        "{error}"
    );
    // After a ReLU the zeros can never win, and it imports.
    let relu_then_pool = tiny(
        vec![
            node("Relu", "relu", &["x"], "r"),
            NodeProto {
                input: vec!["r".into()],
                ..pool
            },
        ],
        vec![],
    );
    let origin = std::env::temp_dir().join("pool.onnx");
    load_onnx_bytes(&relu_then_pool.encode_to_vec(), &origin).unwrap();
}

/// torchvision's ResNet18 and MobileNetV2 from `scripts/make_torch_onnx.py OUT_DIR`, run
/// with `CONVNET_TORCH_ONNX=OUT_DIR`: each predicts as in PyTorch, and is saved as
/// `OUT_DIR/NAME.keras` (with `NAME.input.npy`, NHWC, and `NAME.torch.npy`) for Keras 3
/// to check.
#[test]
#[ignore = "needs the torchvision exports: CONVNET_TORCH_ONNX=DIR from scripts/make_torch_onnx.py DIR"]
fn torchvision_cnns_predict_as_in_pytorch() {
    let dir = PathBuf::from(
        std::env::var("CONVNET_TORCH_ONNX").expect("CONVNET_TORCH_ONNX names the exports' folder"),
    );
    for case in ["custom_cnn", "resnet18", "mobilenet_v2"] {
        for file in [format!("{case}.onnx"), format!("{case}_legacy.onnx")] {
            let model = check_against_torch(&dir, &file, case, 1e-5);
            println!(
                "{file}: {} layers, {} params",
                model.layers().count(),
                model.count_params()
            );
        }
        // For `EXPECT=torch scripts/keras_check_exports.sh DIR`.
        let model = load_onnx(&dir.join(format!("{case}.onnx"))).unwrap();
        model.save(dir.join(format!("{case}.keras"))).unwrap();
        let x = to_nhwc(&Tensor::read_npy(dir.join(format!("{case}_input.npy"))).unwrap());
        x.write_npy(dir.join(format!("{case}.input.npy"))).unwrap();
        let y = Tensor::read_npy(dir.join(format!("{case}_torch.npy"))).unwrap();
        y.write_npy(dir.join(format!("{case}.torch.npy"))).unwrap();
    }
}
