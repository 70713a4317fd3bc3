//! Reading ONNX CNNs (what `torch.onnx.export` writes: NCHW, weights as initializers,
//! in the file or in a data file beside it) as Keras models: each operator becomes the
//! Keras layer that computes it (`operators.rs`), on NHWC tensors, so the model takes
//! NHWC input like any Keras CNN and `summary`, `explain`, `predict`, `fit` and saving
//! as `.keras` work on it.
//!
//! The file is checked as it is read: prost bounds every length-delimited field by the
//! bytes left, each tensor's declared dims must multiply (without overflow) to the
//! values it holds, external data must lie inside its file beside the model, the graph
//! is put in order by its edges (a cycle, or a value read before anything writes it, is
//! an error naming the node), and every error names the file.

use super::operators::translate;
use super::proto::{
    GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto, EXTERNAL, FLOAT, INT32, INT64,
};
use crate::error::{Error, Result};
use crate::io::weights::check_finite;
use crate::model::{Input, Model, SymbolicTensor};
use crate::tensor::Tensor;
use prost::Message;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

/// The most axes a tensor in an imported file may declare.
const MAX_RANK: usize = 8;
/// The most values one sample of a graph input may hold (a 16k x 16k RGB image is
/// 768M).
const MAX_INPUT_VALUES: usize = 1 << 30;

/// Reads the ONNX file at `path` as a Keras model (NHWC input).
pub fn load_onnx(path: &Path) -> Result<Model> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, e))?;
    load_onnx_bytes(&bytes, path)
}

/// Reads an ONNX model from its bytes; `origin` names it in errors, and the external
/// data files its tensors name are read from `origin`'s folder.
pub fn load_onnx_bytes(bytes: &[u8], origin: &Path) -> Result<Model> {
    let proto = ModelProto::decode(bytes)
        .map_err(|e| Error::file(origin, format!("not a valid ONNX protobuf: {e}")))?;
    let folder = origin.parent().unwrap_or(Path::new("")).to_path_buf();
    import(&proto, &folder, origin).map_err(|e| e.in_file(origin))
}

/// A value of the graph as the import holds it.
#[derive(Clone)]
pub(super) enum Value {
    /// A tensor computed at run time.
    Runtime(Runtime),
    /// A constant: an initializer, or a `Constant` node's value.
    Constant(Constant),
}

/// A tensor computed at run time: the Keras model's symbolic tensor, always NHWC for
/// an image, whichever order the ONNX value's axes are in.
#[derive(Clone)]
pub(super) struct Runtime {
    pub tensor: SymbolicTensor,
    /// The tensor is never negative (a ReLU's output), so zero padding a max pooling
    /// of it is the same as ONNX's padding, which no window ever picks.
    pub non_negative: bool,
    /// The order of an image's axes in the ONNX graph.
    pub layout: Layout,
}

/// The order of an image's axes in the ONNX graph: NCHW as PyTorch's exports and the
/// ONNX operators have them, or NHWC between the edge transposes of a Keras model's
/// export (convnet's own, tf2onnx's).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Layout {
    Nchw,
    Nhwc,
}

impl Runtime {
    /// ONNX's axis `axis` of this rank-`rank` value as the Keras tensor's axis.
    pub(super) fn keras_axis(&self, axis: i64, rank: usize) -> Result<usize> {
        let normalized = if axis < 0 { axis + rank as i64 } else { axis };
        let axis = usize::try_from(normalized)
            .ok()
            .filter(|&a| a < rank)
            .ok_or_else(|| Error::format(format!("axis {axis} is outside a rank-{rank} tensor")))?;
        Ok(if rank == 4 && self.layout == Layout::Nchw {
            [0, 3, 1, 2][axis]
        } else {
            axis
        })
    }
}

/// A constant tensor's values (integers widened to i64).
#[derive(Clone, Debug)]
pub(super) enum Constant {
    Float { dims: Vec<usize>, values: Vec<f32> },
    Int { dims: Vec<usize>, values: Vec<i64> },
}

impl Constant {
    pub(super) fn dims(&self) -> &[usize] {
        match self {
            Constant::Float { dims, .. } | Constant::Int { dims, .. } => dims,
        }
    }

    /// The values as a float tensor of the constant's dims.
    pub(super) fn tensor(&self) -> Result<Tensor> {
        Tensor::new(self.dims().to_vec(), self.floats())
    }

    /// The values as floats.
    pub(super) fn floats(&self) -> Vec<f32> {
        match self {
            Constant::Float { values, .. } => values.clone(),
            Constant::Int { values, .. } => values.iter().map(|&v| v as f32).collect(),
        }
    }

    /// The values as integers; floats that are not whole are an error.
    pub(super) fn ints(&self) -> std::result::Result<Vec<i64>, String> {
        match self {
            Constant::Int { values, .. } => Ok(values.clone()),
            Constant::Float { values, .. } => values
                .iter()
                .map(|&v| {
                    (v.fract() == 0.0 && v.abs() < 9e15)
                        .then_some(v as i64)
                        .ok_or_else(|| format!("{v} is not an integer"))
                })
                .collect(),
        }
    }
}

/// Where the import stands: the values by name, the layer names taken, and the weights
/// to set once the model is built.
pub(super) struct Importer {
    pub values: HashMap<String, Value>,
    pub opset: i64,
    /// The batch size the graph's inputs declare, when fixed (a `Reshape` to
    /// `[1, -1]` in a file exported at batch 1 keeps the batch axis).
    pub batch: Option<usize>,
    layer_names: HashSet<String>,
    pub weights: Vec<(String, Vec<Tensor>)>,
    /// The input of each Sigmoid node, by its output's name.
    pub sigmoid_inputs: HashMap<String, String>,
}

impl Importer {
    /// A Keras layer name for a node's layer: the node's name without the characters
    /// Keras refuses (`/`), made unique.
    pub(super) fn layer_name(&mut self, base: &str) -> String {
        let cleaned: String = base
            .trim_start_matches('/')
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let cleaned = if cleaned.is_empty() {
            "layer".to_string()
        } else {
            cleaned
        };
        let mut name = cleaned.clone();
        let mut n = 1;
        while !self.layer_names.insert(name.clone()) {
            name = format!("{cleaned}_{n}");
            n += 1;
        }
        name
    }
}

fn import(proto: &ModelProto, folder: &Path, origin: &Path) -> Result<Model> {
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| Error::format("not an ONNX model: it has no graph"))?;
    let opset = proto
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .ok_or_else(|| Error::format("the model imports no version of ONNX's operator set"))?;
    let mut importer = Importer {
        values: HashMap::new(),
        opset,
        batch: None,
        layer_names: HashSet::new(),
        weights: Vec::new(),
        sigmoid_inputs: HashMap::new(),
    };
    let mut external = ExternalData {
        folder: folder.to_path_buf(),
        files: HashMap::new(),
    };
    for tensor in &graph.initializer {
        let name = tensor.name.clone().unwrap_or_default();
        let constant = read_tensor(tensor, &mut external)?;
        if importer
            .values
            .insert(name.clone(), Value::Constant(constant))
            .is_some()
        {
            return Err(Error::format(format!(
                "initializer '{name}' is defined twice"
            )));
        }
    }
    let mut readers: HashMap<&str, Vec<&NodeProto>> = HashMap::new();
    for node in &graph.node {
        for input in &node.input {
            readers.entry(input.as_str()).or_default().push(node);
        }
    }
    let mut inputs = Vec::new();
    for info in &graph.input {
        let name = info.name.clone().unwrap_or_default();
        if importer.values.contains_key(&name) {
            continue; // an initializer listed among the inputs (older exporters)
        }
        let layout = input_layout(&readers, &name);
        let (shape, batch) = input_shape(info, &name, layout)?;
        importer.batch = importer.batch.or(batch);
        let layer_name = importer.layer_name(&name);
        let tensor = Input::named(&shape, &layer_name);
        importer.values.insert(
            name,
            Value::Runtime(Runtime {
                tensor: tensor.clone(),
                non_negative: false,
                layout,
            }),
        );
        inputs.push(tensor);
    }
    if inputs.is_empty() {
        return Err(Error::format(
            "the graph has no input that is not an initializer",
        ));
    }
    for node in in_order(graph, &importer.values)? {
        let outputs = translate(&mut importer, node)
            .map_err(|e| Error::format(format!("{}: {e}", describe(node))))?;
        for (name, value) in node.output.iter().zip(outputs) {
            if !name.is_empty() {
                importer.values.insert(name.clone(), value);
            }
        }
    }
    let mut outputs = Vec::new();
    for info in &graph.output {
        let name = info.name.clone().unwrap_or_default();
        match importer.values.get(&name) {
            Some(Value::Runtime(r)) => outputs.push(r.tensor.clone()),
            Some(Value::Constant(_)) => {
                return Err(Error::format(format!(
                    "graph output '{name}' is a constant; a Keras model's outputs are computed"
                )))
            }
            None => {
                return Err(Error::format(format!(
                    "graph output '{name}' is written by no node"
                )))
            }
        }
    }
    if outputs.is_empty() {
        return Err(Error::format("the graph has no outputs"));
    }
    // Exporters name their graphs generically (`main_graph`, `torch_jit`): the file's
    // name says more.
    let name = origin
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .or_else(|| graph.name.clone())
        .unwrap_or_else(|| "model".into());
    let model_name = importer.layer_name(&name);
    let mut model = Model::new(&inputs[..], &outputs[..])?.named(&model_name);
    for (layer, weights) in std::mem::take(&mut importer.weights) {
        for (i, w) in weights.iter().enumerate() {
            check_finite(w, origin, &format!("weight {i} of layer '{layer}'"))?;
        }
        model.get_layer_mut(&layer)?.set_weights(weights)?;
    }
    Ok(model)
}

/// Operators whose meaning does not depend on the order of an image's axes (given
/// constants that broadcast in the same order).
const ANY_LAYOUT: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Sum",
    "Mean",
    "Max",
    "Min",
    "Relu",
    "Sigmoid",
    "Tanh",
    "Clip",
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Softplus",
    "Softsign",
    "HardSigmoid",
    "HardSwish",
    "Mish",
    "Gelu",
    "Identity",
    "Dropout",
];

/// The order of a graph input's axes: NHWC where its values reach a Transpose to NCHW
/// through operators of [`ANY_LAYOUT`] only (a Keras model's export: its rescaling
/// and normalization run before the edge transpose), NCHW otherwise.
fn input_layout(readers: &HashMap<&str, Vec<&NodeProto>>, name: &str) -> Layout {
    let mut seen: HashSet<&str> = HashSet::from([name]);
    let mut frontier = vec![name];
    let mut reaches_transpose = false;
    while let Some(value) = frontier.pop() {
        for node in readers.get(value).map(Vec::as_slice).unwrap_or(&[]) {
            let op = node.op_type.as_deref().unwrap_or("");
            if is_to_nchw(node) {
                reaches_transpose = true;
            } else if ANY_LAYOUT.contains(&op) {
                for out in &node.output {
                    if seen.insert(out.as_str()) {
                        frontier.push(out.as_str());
                    }
                }
            } else {
                return Layout::Nchw;
            }
        }
    }
    if reaches_transpose {
        Layout::Nhwc
    } else {
        Layout::Nchw
    }
}

/// A `Transpose` from NHWC to NCHW.
pub(super) fn is_to_nchw(node: &NodeProto) -> bool {
    node.op_type.as_deref() == Some("Transpose")
        && node
            .attribute
            .iter()
            .any(|a| a.name.as_deref() == Some("perm") && a.ints == [0, 3, 1, 2])
}

/// A node as errors name it: by its name, or by the value it writes when it has none.
pub(super) fn describe(node: &NodeProto) -> String {
    let op = node.op_type.as_deref().unwrap_or("");
    match node.name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => format!("node '{name}' ({op})"),
        None => format!(
            "the {op} node writing '{}'",
            node.output.first().map(String::as_str).unwrap_or("")
        ),
    }
}

/// A graph input's Keras shape (NHWC for an image) and its batch size when fixed.
fn input_shape(
    info: &ValueInfoProto,
    name: &str,
    layout: Layout,
) -> Result<(Vec<usize>, Option<usize>)> {
    let dims = info
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .filter(|t| t.elem_type == Some(FLOAT))
        .and_then(|t| t.shape.as_ref())
        .ok_or_else(|| {
            Error::format(format!(
                "graph input '{name}' is not a float tensor of known rank"
            ))
        })?;
    let error = |what: &str| Error::format(format!("graph input '{name}': {what}"));
    let batch = dims
        .dim
        .first()
        .and_then(|d| d.dim_value)
        .and_then(|v| usize::try_from(v).ok());
    let sample: Vec<usize> = dims
        .dim
        .iter()
        .skip(1)
        .map(|d| {
            d.dim_value
                .and_then(|v| usize::try_from(v).ok())
                .filter(|&v| v > 0)
                .ok_or_else(|| error("every axis but the batch must have a fixed size"))
        })
        .collect::<Result<_>>()?;
    let values = sample
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_INPUT_VALUES);
    if values.is_none() {
        return Err(error(&format!(
            "a sample of shape {sample:?} holds more than {MAX_INPUT_VALUES} values"
        )));
    }
    match sample.as_slice() {
        [h, w, c] if layout == Layout::Nhwc => Ok((vec![*h, *w, *c], batch)),
        [c, h, w] => Ok((vec![*h, *w, *c], batch)),
        [f] => Ok((vec![*f], batch)),
        _ => Err(error(&format!(
            "has {} axes; convnet imports images (N, C, H, W) and vectors (N, F)",
            dims.dim.len()
        ))),
    }
}

/// The nodes in an order where each reads only values written before it (ONNX asks
/// files for that order; this does not trust them to keep it).
fn in_order<'g>(
    graph: &'g GraphProto,
    known: &HashMap<String, Value>,
) -> Result<Vec<&'g NodeProto>> {
    let mut writer: HashMap<&str, usize> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for out in node.output.iter().filter(|o| !o.is_empty()) {
            if known.contains_key(out) || writer.insert(out, i).is_some() {
                return Err(Error::format(format!(
                    "value '{out}' is written twice (again by {})",
                    describe(node)
                )));
            }
        }
    }
    let mut waiting = vec![0usize; graph.node.len()];
    let mut readers: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for input in node.input.iter().filter(|n| !n.is_empty()) {
            if let Some(&w) = writer.get(input.as_str()) {
                waiting[i] += 1;
                readers.entry(w).or_default().push(i);
            } else if !known.contains_key(input) {
                return Err(Error::format(format!(
                    "{} reads '{input}', which no node, input or initializer defines",
                    describe(node)
                )));
            }
        }
    }
    let mut ready: VecDeque<usize> = (0..graph.node.len()).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(graph.node.len());
    while let Some(i) = ready.pop_front() {
        order.push(&graph.node[i]);
        for &r in readers.get(&i).map(Vec::as_slice).unwrap_or(&[]) {
            waiting[r] -= 1;
            if waiting[r] == 0 {
                ready.push_back(r);
            }
        }
    }
    if let Some(stuck) = (0..graph.node.len()).find(|&i| waiting[i] > 0) {
        return Err(Error::format(format!(
            "the graph has a cycle: {} reads a value that depends on its own output",
            describe(&graph.node[stuck])
        )));
    }
    Ok(order)
}

/// The data files beside the model that its tensors point into, each read once.
struct ExternalData {
    folder: PathBuf,
    files: HashMap<String, Vec<u8>>,
}

impl ExternalData {
    /// The `length` bytes at `offset` of `location`, which must name a file in the
    /// model's folder (or below it).
    fn bytes(&mut self, tensor: &TensorProto, name: &str, length: usize) -> Result<&[u8]> {
        let entry = |key: &str| {
            tensor
                .external_data
                .iter()
                .find(|e| e.key.as_deref() == Some(key))
                .and_then(|e| e.value.as_deref())
        };
        let error = |what: String| Error::format(format!("tensor '{name}': {what}"));
        let location = entry("location")
            .ok_or_else(|| error("is stored externally but names no location".into()))?;
        let relative = Path::new(location);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(error(format!(
                "external data location '{location}' must be a file beside the model"
            )));
        }
        let number = |key: &str| -> Result<usize> {
            entry(key).map_or(Ok(0), |v| {
                v.parse()
                    .map_err(|_| error(format!("external data {key} '{v}' is not a size")))
            })
        };
        let offset = number("offset")?;
        if let Some(declared) = entry("length") {
            if number("length")? != length {
                return Err(error(format!(
                    "external data length {declared} differs from the {length} bytes its dims declare"
                )));
            }
        }
        if !self.files.contains_key(location) {
            let path = self.folder.join(relative);
            let bytes = std::fs::read(&path).map_err(|e| Error::file(&path, e))?;
            self.files.insert(location.to_string(), bytes);
        }
        let file = &self.files[location];
        offset
            .checked_add(length)
            .and_then(|end| file.get(offset..end))
            .ok_or_else(|| {
                error(format!(
                    "external data {location} holds {} bytes, fewer than offset {offset} + length {length}",
                    file.len()
                ))
            })
    }
}

/// A tensor's values, checked against its declared dims.
fn read_tensor(tensor: &TensorProto, external: &mut ExternalData) -> Result<Constant> {
    let name = tensor.name.as_deref().unwrap_or("");
    let error = |what: String| Error::format(format!("tensor '{name}': {what}"));
    if tensor.dims.len() > MAX_RANK {
        return Err(error(format!(
            "declares {} axes, more than {MAX_RANK}",
            tensor.dims.len()
        )));
    }
    let dims: Vec<usize> = tensor
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| error(format!("declares a negative axis {d}"))))
        .collect::<Result<_>>()?;
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| error(format!("dims {dims:?} overflow")))?;
    let data_type = tensor.data_type.unwrap_or(0);
    let width = match data_type {
        FLOAT | INT32 => 4,
        INT64 => 8,
        other => {
            return Err(error(format!(
                "has element type {other}; convnet reads float32 (1), int32 (6) and int64 (7)"
            )))
        }
    };
    let bytes_declared = count
        .checked_mul(width)
        .ok_or_else(|| error(format!("dims {dims:?} overflow")))?;
    let raw: Option<&[u8]> = if tensor.data_location == Some(EXTERNAL) {
        Some(external.bytes(tensor, name, bytes_declared)?)
    } else {
        tensor.raw_data.as_deref()
    };
    let shown = format!("{dims:?}");
    let held = |n: usize, unit: &str| {
        error(format!(
            "dims {shown} declare {count} values ({bytes_declared} bytes) but it holds {n} {unit}"
        ))
    };
    if let Some(raw) = raw {
        if raw.len() != bytes_declared {
            return Err(held(raw.len(), "bytes"));
        }
        return Ok(match data_type {
            FLOAT => Constant::Float {
                dims,
                values: raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            },
            INT32 => Constant::Int {
                dims,
                values: raw
                    .chunks_exact(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                    .collect(),
            },
            _ => Constant::Int {
                dims,
                values: raw
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().expect("chunks of 8")))
                    .collect(),
            },
        });
    }
    let (n, constant) = match data_type {
        FLOAT => (
            tensor.float_data.len(),
            Constant::Float {
                dims,
                values: tensor.float_data.clone(),
            },
        ),
        INT32 => (
            tensor.int32_data.len(),
            Constant::Int {
                dims,
                values: tensor.int32_data.iter().map(|&v| v as i64).collect(),
            },
        ),
        _ => (
            tensor.int64_data.len(),
            Constant::Int {
                dims,
                values: tensor.int64_data.clone(),
            },
        ),
    };
    if n != count {
        return Err(held(n, "values"));
    }
    Ok(constant)
}

/// A tensor proto's values (a `Constant` node's `value`), with no external data.
pub(super) fn constant_of(tensor: &TensorProto) -> Result<Constant> {
    if tensor.data_location == Some(EXTERNAL) {
        return Err(Error::format(
            "a Constant node's value is stored externally",
        ));
    }
    read_tensor(
        tensor,
        &mut ExternalData {
            folder: PathBuf::new(),
            files: HashMap::new(),
        },
    )
}
