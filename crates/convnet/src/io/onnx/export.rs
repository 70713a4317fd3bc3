//! A model as an ONNX graph. Each layer call becomes the standard operators that compute
//! it, read from the layer's Keras config and weights. The graph takes and returns NHWC
//! tensors like the Keras model, and runs channels-first inside: a value is moved
//! between the two layouts only where an operator needs the other one (at the inputs,
//! before Flatten, Reshape and Dense on images, at the outputs), so a runtime sees a
//! plain NCHW network. Training-only layers (dropout, noise, augmentation) leave no node.

use super::proto::*;
use crate::error::{Error, Result};
use crate::layers::{NumpyOp, Shape};
use crate::model::{nested_model, Model};
use crate::tensor::Tensor;
use std::collections::{HashMap, HashSet};

/// What [`to_onnx`] writes besides the graph.
#[derive(Clone, Debug)]
pub struct OnnxOptions {
    /// The ONNX opset (17 or newer; default 17, which today's runtimes all run).
    pub opset: i64,
    /// A fixed batch size for the inputs and outputs, or None for an open `batch` axis.
    pub batch: Option<usize>,
}

impl Default for OnnxOptions {
    fn default() -> Self {
        OnnxOptions {
            opset: 17,
            batch: None,
        }
    }
}

/// The lowest and highest opsets convnet writes.
const OPSETS: (i64, i64) = (17, 21);

/// Where a value's channel axis is: last, as Keras holds it, or second (ONNX's NCHW).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Layout {
    Keras,
    ChannelsFirst,
}

/// A value of the graph: its name, layout and Keras shape (batch first, channels last).
#[derive(Clone, Debug)]
pub(super) struct Val {
    pub(super) name: String,
    pub(super) layout: Layout,
    pub(super) shape: Shape,
}

impl Val {
    pub(super) fn new(name: String, layout: Layout, shape: &Shape) -> Val {
        Val {
            name,
            layout,
            shape: shape.clone(),
        }
    }

    pub(super) fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Images and other values with spatial axes: kept channels-first inside the graph.
    pub(super) fn spatial(&self) -> bool {
        self.rank() >= 3
    }
}

/// The graph being written.
pub(super) struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    used: HashSet<String>,
    /// Values already moved to the other layout: (name, layout) → the moved value.
    moved: HashMap<(String, Layout), Val>,
}

pub(super) fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(value),
        r#type: Some(attribute_type::INT),
        ..Default::default()
    }
}

pub(super) fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: values.to_vec(),
        r#type: Some(attribute_type::INTS),
        ..Default::default()
    }
}

pub(super) fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        f: Some(value),
        r#type: Some(attribute_type::FLOAT),
        ..Default::default()
    }
}

pub(super) fn string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        s: Some(value.as_bytes().to_vec()),
        r#type: Some(attribute_type::STRING),
        ..Default::default()
    }
}

/// The permutation from Keras's layout to channels-first, for `rank` axes.
fn to_channels_first(rank: usize) -> Vec<i64> {
    let mut perm = vec![0, rank as i64 - 1];
    perm.extend(1..rank as i64 - 1);
    perm
}

/// The permutation from channels-first back to Keras's layout.
fn to_channels_last(rank: usize) -> Vec<i64> {
    let mut perm = vec![0];
    perm.extend(2..rank as i64);
    perm.push(1);
    perm
}

impl Graph {
    /// A fresh value name from `base`.
    pub(super) fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while !self.used.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        name
    }

    pub(super) fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) -> String {
        let output = self.fresh(name);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            name: Some(output.clone()),
            op_type: Some(op.into()),
            attribute: attributes,
            domain: None,
        });
        output
    }

    pub(super) fn constant(&mut self, name: &str, tensor: &Tensor) -> String {
        let name = self.fresh(name);
        let bytes: Vec<u8> = tensor.data().iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            dims: tensor.shape().iter().map(|&d| d as i64).collect(),
            data_type: Some(FLOAT),
            name: Some(name.clone()),
            raw_data: Some(bytes),
            ..Default::default()
        });
        name
    }

    pub(super) fn int64s(&mut self, name: &str, values: &[i64]) -> String {
        let name = self.fresh(name);
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: Some(INT64),
            name: Some(name.clone()),
            raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ..Default::default()
        });
        name
    }

    pub(super) fn scalar(&mut self, name: &str, value: f32) -> String {
        self.constant(
            name,
            &Tensor::new(Vec::<usize>::new(), vec![value]).expect("a scalar"),
        )
    }

    /// `value` in `layout`, with a Transpose node the first time it is asked for.
    pub(super) fn in_layout(&mut self, value: &Val, layout: Layout) -> Val {
        if value.layout == layout || !value.spatial() {
            return value.clone();
        }
        if let Some(moved) = self.moved.get(&(value.name.clone(), layout)) {
            return moved.clone();
        }
        let (perm, suffix) = match layout {
            Layout::ChannelsFirst => (to_channels_first(value.rank()), "nchw"),
            Layout::Keras => (to_channels_last(value.rank()), "nhwc"),
        };
        let name = self.node(
            "Transpose",
            &format!("{}_{suffix}", value.name),
            &[&value.name],
            vec![ints("perm", &perm)],
        );
        let moved = Val {
            name,
            layout,
            shape: value.shape.clone(),
        };
        self.moved
            .insert((value.name.clone(), layout), moved.clone());
        moved
    }

    /// Channels-first for values with spatial axes.
    pub(super) fn inner(&mut self, value: &Val) -> Val {
        self.in_layout(value, Layout::ChannelsFirst)
    }

    /// The model's nodes in execution order, given its input values; its output values.
    /// A model used as a layer is written in place, its layers' names kept.
    fn model(&mut self, model: &Model, inputs: &[Val]) -> Result<Vec<Val>> {
        let mut values: Vec<Option<Val>> = vec![None; model.nodes.len()];
        for (&node, input) in model.inputs.iter().zip(inputs) {
            values[node] = Some(input.clone());
        }
        for (n, node) in model.nodes.iter().enumerate() {
            if values[n].is_some() {
                continue;
            }
            let layer = model.layers[node.layer].as_ref();
            let xs: Vec<Val> = node
                .inputs
                .iter()
                .map(|&i| {
                    values[i]
                        .clone()
                        .expect("inputs come first in execution order")
                })
                .collect();
            let y = match nested_model(layer) {
                Some(inner) => {
                    let outputs = self.model(inner, &xs)?;
                    outputs.into_iter().next().ok_or_else(|| {
                        Error::unsupported(format!("nested model '{}' has no output", layer.name()))
                    })?
                }
                None => match layer.as_any().downcast_ref::<NumpyOp>() {
                    Some(op) => self.operation(op, &xs, &node.shape)?,
                    None => self.layer(layer, &xs, &node.shape)?,
                },
            };
            values[n] = Some(Val {
                shape: node.shape.clone(),
                ..y
            });
        }
        Ok(model
            .outputs
            .iter()
            .map(|&o| values[o].clone().expect("every node is computed"))
            .collect())
    }
}

fn value_info(name: &str, shape: &Shape, batch: Option<usize>) -> ValueInfoProto {
    let dim = shape
        .iter()
        .enumerate()
        .map(|(axis, d)| match (axis, d, batch) {
            (0, _, Some(b)) => Dimension {
                dim_value: Some(b as i64),
                dim_param: None,
            },
            (0, _, None) => Dimension {
                dim_value: None,
                dim_param: Some("batch".into()),
            },
            (_, Some(d), _) => Dimension {
                dim_value: Some(*d as i64),
                dim_param: None,
            },
            (_, None, _) => Dimension {
                dim_value: None,
                dim_param: Some(format!("{name}_{axis}")),
            },
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: Some(FLOAT),
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

/// The model as an ONNX model: NHWC inputs and outputs named as the Keras model's,
/// weights as initializers. A layer without a faithful ONNX form is an error naming it.
pub fn to_onnx(model: &Model, options: &OnnxOptions) -> Result<ModelProto> {
    if !(OPSETS.0..=OPSETS.1).contains(&options.opset) {
        return Err(Error::invalid(
            "opset",
            format!(
                "opset {} is not one convnet writes ({} to {})",
                options.opset, OPSETS.0, OPSETS.1
            ),
        ));
    }
    if options.batch == Some(0) {
        return Err(Error::invalid("batch", "the batch size must be positive"));
    }
    let mut graph = Graph {
        nodes: Vec::new(),
        initializers: Vec::new(),
        used: HashSet::new(),
        moved: HashMap::new(),
    };
    let mut inputs = Vec::new();
    let mut input_infos = Vec::new();
    for &node in &model.inputs {
        let shape = model.nodes[node].shape.clone();
        let name = graph.fresh(model.layers[model.nodes[node].layer].name());
        input_infos.push(value_info(&name, &shape, options.batch));
        inputs.push(Val {
            name,
            layout: Layout::Keras,
            shape,
        });
    }
    let outputs = graph.model(model, &inputs)?;
    let mut output_infos = Vec::new();
    for (k, output) in outputs.iter().enumerate() {
        let keras = graph.in_layout(output, Layout::Keras);
        // Graph outputs get names of their own, so that an output that is also an
        // input or another output's value still has one producer.
        let layer = model.layers[model.nodes[model.outputs[k]].layer].name();
        let name = graph.node(
            "Identity",
            &format!("{layer}_output"),
            &[&keras.name],
            vec![],
        );
        output_infos.push(value_info(&name, &output.shape, options.batch));
    }
    // IR versions by opset: 17–18 → 8, 19–20 → 9, 21 → 10.
    let ir_version = match options.opset {
        17 | 18 => 8,
        19 | 20 => 9,
        _ => 10,
    };
    Ok(ModelProto {
        ir_version: Some(ir_version),
        producer_name: Some("convnet".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(GraphProto {
            node: graph.nodes,
            name: Some(model.name().to_string()),
            initializer: graph.initializers,
            input: input_infos,
            output: output_infos,
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(options.opset),
        }],
    })
}
