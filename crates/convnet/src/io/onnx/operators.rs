//! Each ONNX operator of a CNN as the Keras layers that compute it on NHWC tensors:
//! Conv as Conv2D, DepthwiseConv2D or a grouped Conv2D (padding that Keras's `same`
//! does not give as a ZeroPadding2D before it), ConvTranspose as Conv2DTranspose, Gemm
//! and MatMul as Dense, the poolings and global reductions, BatchNormalization and
//! LayerNormalization, the activations (Clip as a capped ReLU), the elementwise
//! operations (a per-channel constant as a 1x1 DepthwiseConv2D), Concat, Flatten and
//! Reshape (a Permute first where the NCHW order of a flattened image matters), Pad,
//! Slice as Cropping2D, Resize as UpSampling2D or Resizing, and Transposes between NCHW
//! and NHWC, which only change the order a value's ONNX axes stand for. The weights are
//! turned into Keras's layouts (OIHW kernels to HWIO). An operator or an attribute
//! outside this set is refused, and the error names it.

use super::import::{constant_of, is_to_nchw, Constant, Importer, Layout, Runtime, Value};
use super::proto::{AttributeProto, NodeProto};
use crate::activations::ActivationFn;
use crate::error::{Error, Result};
use crate::kernels::conv::output_length;
use crate::kernels::Padding;
use crate::layers::{
    Activation, Add, Average, AveragePooling2D, Axes, BatchNormalization, Concatenate, Conv2D,
    Conv2DTranspose, Cropping2D, Dense, DepthwiseConv2D, Flatten, GlobalPooling2D, Layer,
    LayerNormalization, LeakyReLU, MaxPooling2D, Maximum, Minimum, Multiply, NumpyOp, OpKind,
    PReLU, Permute, PoolKind, ReLU, Reshape, Resizing, Softmax, Subtract, UpSampling, UpSampling2D,
    ZeroPadding2D,
};
use crate::model::{Call, SymbolicTensor};
use crate::tensor::Tensor;

fn refuse<T>(message: impl std::fmt::Display) -> Result<T> {
    Err(Error::format(message))
}

/// The Keras layers for `node`, called on its inputs; one value for each output.
pub(super) fn translate(im: &mut Importer, node: &NodeProto) -> Result<Vec<Value>> {
    if !matches!(node.domain.as_deref(), None | Some("") | Some("ai.onnx")) {
        return refuse(format!(
            "operator domain '{}' is not ONNX's own",
            node.domain.as_deref().unwrap_or("")
        ));
    }
    let op = node.op_type.as_deref().unwrap_or("");
    let base = node
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| op.to_string());
    let mut n = NodeImport { im, node, base };
    let value = match op {
        "Conv" => n.conv()?,
        "Gemm" => n.gemm()?,
        "MatMul" => n.matmul()?,
        "BatchNormalization" => n.batch_normalization()?,
        "MaxPool" | "AveragePool" => n.pool(op == "MaxPool")?,
        "GlobalAveragePool" | "GlobalMaxPool" => n.global_pool(op == "GlobalMaxPool")?,
        "ReduceMean" | "ReduceMax" => n.reduce(op == "ReduceMax")?,
        "Relu" => n.activation(ActivationFn::Relu, true)?,
        "Sigmoid" => n.sigmoid()?,
        "Swish" if n.float_attr("alpha", 1.0) == 1.0 => n.activation(ActivationFn::Silu, false)?,
        "Tanh" => n.activation(ActivationFn::Tanh, false)?,
        "Softplus" => n.activation(ActivationFn::Softplus, true)?,
        "Softsign" => n.activation(ActivationFn::Softsign, false)?,
        "HardSwish" => n.activation(ActivationFn::HardSilu, false)?,
        "Mish" => n.activation(ActivationFn::Mish, false)?,
        "Elu" if n.float_attr("alpha", 1.0) == 1.0 => n.activation(ActivationFn::Elu, false)?,
        "Gelu" if n.string_attr("approximate", "none") == "none" => {
            n.activation(ActivationFn::Gelu, false)?
        }
        "HardSigmoid" => n.hard_sigmoid()?,
        "LeakyRelu" => n.leaky_relu()?,
        "Clip" => n.clip()?,
        "Softmax" => n.softmax()?,
        "Mul" => match n.silu_input() {
            Some(x) => n.silu(x)?,
            None => n.arithmetic(op)?,
        },
        "Add" | "Sub" | "Div" => n.arithmetic(op)?,
        "Sum" | "Mean" | "Max" | "Min" => n.variadic(op)?,
        "PRelu" => n.prelu()?,
        "LayerNormalization" => n.layer_normalization()?,
        "ConvTranspose" => n.conv_transpose()?,
        "Resize" | "Upsample" => n.resize()?,
        "Slice" => n.slice()?,
        "Concat" => n.concat()?,
        "Flatten" => n.flatten()?,
        "Reshape" => n.reshape()?,
        "Pad" => n.pad()?,
        "Identity" | "Dropout" => n.pass_through()?,
        "Transpose" => n.transpose()?,
        "Constant" => Value::Constant(n.constant_node()?),
        _ => {
            return refuse(format!(
                "operator {op} has no Keras layer convnet imports it as"
            ))
        }
    };
    if node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return refuse(format!(
            "{op}'s second output is used; convnet imports the first only"
        ));
    }
    Ok(vec![value])
}

/// One node being imported: its inputs and attributes, and the layers it adds.
struct NodeImport<'a> {
    im: &'a mut Importer,
    node: &'a NodeProto,
    base: String,
}

/// Keras's `same` padding of one axis for a window of `window` (dilation included):
/// (before, after).
fn same_pads(input: usize, window: usize, stride: usize) -> (usize, usize) {
    let (_, before, after) = output_length(input, window, stride, 1, Padding::Same)
        .expect("'same' always has an output");
    (before, after)
}

/// How a window's ONNX padding is done in Keras.
enum Pads {
    /// No padding, or exactly Keras's `same`.
    Keras(Padding),
    /// Explicit zeros ([[top, bottom], [left, right]]) before a `valid` window.
    Zeros([[usize; 2]; 2]),
}

impl<'a> NodeImport<'a> {
    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
    }

    fn int_attr(&self, name: &str, default: i64) -> i64 {
        self.attr(name).and_then(|a| a.i).unwrap_or(default)
    }

    fn float_attr(&self, name: &str, default: f32) -> f32 {
        self.attr(name).and_then(|a| a.f).unwrap_or(default)
    }

    fn string_attr(&self, name: &str, default: &str) -> String {
        self.attr(name)
            .and_then(|a| a.s.as_ref())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .unwrap_or_else(|| default.to_string())
    }

    /// A list of two sizes (`strides`, `dilations`, `kernel_shape`), each ≥ 1.
    fn pair_attr(&self, name: &str, default: usize) -> Result<(usize, usize)> {
        let Some(a) = self.attr(name) else {
            return Ok((default, default));
        };
        match a.ints.as_slice() {
            &[h, w] if (1..=1 << 16).contains(&h) && (1..=1 << 16).contains(&w) => {
                Ok((h as usize, w as usize))
            }
            other => refuse(format!(
                "{name} {other:?} must be two sizes from 1 to 65536 (convnet imports 2-D windows)"
            )),
        }
    }

    fn input(&self, i: usize) -> Result<&Value> {
        let name = self
            .node
            .input
            .get(i)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::format(format!("input {i} is missing")))?;
        self.im
            .values
            .get(name)
            .ok_or_else(|| Error::format(format!("input '{name}' is not defined")))
    }

    fn has_input(&self, i: usize) -> bool {
        self.node.input.get(i).is_some_and(|n| !n.is_empty())
    }

    fn runtime(&self, i: usize) -> Result<Runtime> {
        match self.input(i)? {
            Value::Runtime(r) => Ok(r.clone()),
            Value::Constant(_) => refuse(format!(
                "input {i} ('{}') is a constant; convnet imports constants only as weights and arguments",
                self.node.input[i]
            )),
        }
    }

    fn constant(&self, i: usize) -> Result<&Constant> {
        match self.input(i)? {
            Value::Constant(c) => Ok(c),
            Value::Runtime(_) => refuse(format!(
                "input {i} ('{}') is computed at run time; convnet needs it as a constant (an initializer)",
                self.node.input[i]
            )),
        }
    }

    /// A constant of exactly `dims`, as a float vector.
    fn weight(&self, i: usize, dims: &[usize], what: &str) -> Result<Vec<f32>> {
        let c = self.constant(i)?;
        if c.dims() != dims {
            return refuse(format!(
                "{what} (input {i}) has dims {:?}, expected {dims:?}",
                c.dims()
            ));
        }
        Ok(c.floats())
    }

    /// A constant with one value (a scalar, or any shape holding one value).
    fn scalar(&self, i: usize, what: &str) -> Result<f32> {
        match self.constant(i)?.floats().as_slice() {
            [v] => Ok(*v),
            other => refuse(format!(
                "{what} (input {i}) holds {} values; convnet takes one here",
                other.len()
            )),
        }
    }

    /// The shape of a run-time value: NHWC (rank 4) or (N, F).
    fn shape_of(r: &Runtime) -> Result<Vec<usize>> {
        Ok(r.tensor
            .shape()?
            .iter()
            .skip(1)
            .map(|d| d.unwrap_or(0))
            .collect())
    }

    /// An NCHW image input: the tensor and (H, W, C).
    fn image(&self, i: usize) -> Result<(Runtime, [usize; 3])> {
        let r = self.runtime(i)?;
        match Self::shape_of(&r)?.as_slice() {
            &[h, w, c] if r.layout == Layout::Nchw => Ok((r, [h, w, c])),
            [_, _, _] => refuse(format!(
                "input {i} is an image with its channels last (NHWC); the ONNX operator reads NCHW"
            )),
            other => refuse(format!(
                "input {i} has {} axes; this operator takes images (N, C, H, W)",
                other.len() + 1
            )),
        }
    }

    /// Calls `layer`, named after the node (`suffix` told apart), on `inputs`.
    fn call(
        &mut self,
        layer: impl Layer + 'static,
        suffix: &str,
        inputs: &[SymbolicTensor],
    ) -> Result<(String, SymbolicTensor)> {
        let name = self.im.layer_name(&format!("{}{suffix}", self.base));
        let tensor = layer.named(&name).call(inputs);
        tensor.shape()?;
        Ok((name, tensor))
    }

    /// The weights the layer `name` gets once the model is built: its kernel, and its
    /// bias (one value per output) when it has one.
    fn keep_weights(&mut self, name: String, kernel: Tensor, bias: Option<Vec<f32>>) -> Result<()> {
        let mut weights = vec![kernel];
        if let Some(bias) = bias {
            weights.push(Tensor::new(vec![bias.len()], bias)?);
        }
        self.im.weights.push((name, weights));
        Ok(())
    }

    /// A new NCHW (or rank-2) value.
    fn output(tensor: SymbolicTensor, non_negative: bool) -> Value {
        Self::output_in(tensor, non_negative, Layout::Nchw)
    }

    fn output_in(tensor: SymbolicTensor, non_negative: bool, layout: Layout) -> Value {
        Value::Runtime(Runtime {
            tensor,
            non_negative,
            layout,
        })
    }

    /// ONNX's padding of a window over (h, w): [top, left, bottom, right].
    fn onnx_pads(
        &self,
        hw: (usize, usize),
        window: (usize, usize),
        strides: (usize, usize),
    ) -> Result<[usize; 4]> {
        let auto_pad = self.string_attr("auto_pad", "NOTSET");
        match auto_pad.as_str() {
            "NOTSET" => match self.attr("pads").map(|a| a.ints.as_slice()) {
                None => Ok([0; 4]),
                Some(&[t, l, b, r]) => {
                    let ok = |p: i64| usize::try_from(p).ok().filter(|&p| p <= 1 << 16);
                    match (ok(t), ok(l), ok(b), ok(r)) {
                        (Some(t), Some(l), Some(b), Some(r)) => Ok([t, l, b, r]),
                        _ => refuse(format!(
                            "pads {:?} must be sizes from 0 to 65536",
                            [t, l, b, r]
                        )),
                    }
                }
                Some(other) => refuse(format!(
                    "pads {other:?} must be four sizes for a 2-D window"
                )),
            },
            "VALID" => Ok([0; 4]),
            "SAME_UPPER" | "SAME_LOWER" => {
                let (t, b) = same_pads(hw.0, window.0, strides.0);
                let (l, r) = same_pads(hw.1, window.1, strides.1);
                Ok(if auto_pad == "SAME_UPPER" {
                    [t, l, b, r]
                } else {
                    [b, r, t, l]
                })
            }
            other => refuse(format!("auto_pad '{other}' is not one of ONNX's")),
        }
    }

    /// The Keras form of ONNX's padding: none, `same`, or explicit zeros first.
    fn keras_pads(
        pads: [usize; 4],
        hw: (usize, usize),
        window: (usize, usize),
        strides: (usize, usize),
    ) -> Pads {
        let [t, l, b, r] = pads;
        if pads == [0; 4] {
            Pads::Keras(Padding::Valid)
        } else if (t, b) == same_pads(hw.0, window.0, strides.0)
            && (l, r) == same_pads(hw.1, window.1, strides.1)
        {
            Pads::Keras(Padding::Same)
        } else {
            Pads::Zeros([[t, b], [l, r]])
        }
    }

    /// Adds a ZeroPadding2D for explicit pads; the window then runs `valid`.
    fn padded(&mut self, x: SymbolicTensor, pads: Pads) -> Result<(SymbolicTensor, Padding)> {
        match pads {
            Pads::Keras(padding) => Ok((x, padding)),
            Pads::Zeros(zeros) => {
                let (_, y) = self.call(ZeroPadding2D::new(zeros), "_pad", &[x])?;
                Ok((y, Padding::Valid))
            }
        }
    }

    fn conv(&mut self) -> Result<Value> {
        let (x, [h, w, c]) = self.image(0)?;
        let kernel = self.constant(1)?;
        let &[m, ci, kh, kw] = kernel.dims() else {
            return refuse(format!(
                "weight has dims {:?}; convnet imports 2-D convolutions (M, C/group, kH, kW)",
                kernel.dims()
            ));
        };
        let group = usize::try_from(self.int_attr("group", 1))
            .ok()
            .filter(|&g| g >= 1 && c % g == 0 && m % g == 0 && ci * g == c)
            .ok_or_else(|| {
                Error::format(format!(
                    "group {} does not split {c} input channels into the weight's {ci} per group and {m} outputs",
                    self.int_attr("group", 1)
                ))
            })?;
        let declared = self.pair_attr("kernel_shape", 0)?;
        if self.attr("kernel_shape").is_some() && declared != (kh, kw) {
            return refuse(format!(
                "kernel_shape {declared:?} differs from the weight's ({kh}, {kw})"
            ));
        }
        let strides = self.pair_attr("strides", 1)?;
        let dilations = self.pair_attr("dilations", 1)?;
        let window = ((kh - 1) * dilations.0 + 1, (kw - 1) * dilations.1 + 1);
        let pads = self.onnx_pads((h, w), window, strides)?;
        let bias = if self.has_input(2) {
            Some(self.weight(2, &[m], "bias")?)
        } else {
            None
        };
        // ONNX's (M, C/group, kH, kW) as Keras's (kH, kW, C/group, M).
        let hwio = kernel.tensor()?.permute_axes(&[2, 3, 1, 0])?;
        let pads = Self::keras_pads(pads, (h, w), window, strides);
        let (x, padding) = self.padded(x.tensor, pads)?;
        let (name, y) = if group == c && group > 1 {
            let layer = DepthwiseConv2D::new((kh, kw))
                .depth_multiplier(m / c)
                .strides(strides)
                .dilation_rate(dilations)
                .padding(padding)
                .use_bias(bias.is_some());
            self.call(layer, "", &[x])?
        } else {
            let layer = Conv2D::new(m, (kh, kw))
                .groups(group)
                .strides(strides)
                .dilation_rate(dilations)
                .padding(padding)
                .use_bias(bias.is_some());
            self.call(layer, "", &[x])?
        };
        // A depthwise kernel is the same values as (kH, kW, C, M / C).
        let hwio = if group == c && group > 1 {
            hwio.reshape([kh, kw, c, m / c])?
        } else {
            hwio
        };
        self.keep_weights(name, hwio, bias)?;
        Ok(Self::output(y, false))
    }

    /// A dense layer on a rank-2 input: `kernel` is (K, M), row-major.
    fn dense(
        &mut self,
        kernel: Vec<f32>,
        k: usize,
        m: usize,
        bias: Option<Vec<f32>>,
    ) -> Result<Value> {
        let x = self.runtime(0)?;
        let features = match Self::shape_of(&x)?.as_slice() {
            &[f] => f,
            // Keras's Dense on an image's channels, exported as it is.
            &[_, _, f] if x.layout == Layout::Nhwc => f,
            other => {
                return refuse(format!(
                    "input has {} axes; convnet imports products of (N, K) inputs and of NHWC images' channels",
                    other.len() + 1
                ))
            }
        };
        if features != k {
            return refuse(format!("input has {features} features, the weight {k}"));
        }
        let layer = Dense::new(m).use_bias(bias.is_some());
        let layout = x.layout;
        let (name, y) = self.call(layer, "", &[x.tensor])?;
        self.keep_weights(name, Tensor::new(vec![k, m], kernel)?, bias)?;
        Ok(Self::output_in(y, false, layout))
    }

    fn gemm(&mut self) -> Result<Value> {
        if self.int_attr("transA", 0) != 0 {
            return refuse("transA = 1 (a transposed input) has no Dense form");
        }
        let b = self.constant(1)?;
        let &[rows, cols] = b.dims() else {
            return refuse(format!("B has dims {:?}; a matrix is needed", b.dims()));
        };
        let trans_b = self.int_attr("transB", 0) != 0;
        let (k, m) = if trans_b { (cols, rows) } else { (rows, cols) };
        let alpha = self.float_attr("alpha", 1.0);
        let beta = self.float_attr("beta", 1.0);
        let values = b.floats();
        let kernel: Vec<f32> = if trans_b {
            (0..k * m)
                .map(|i| alpha * values[(i % m) * k + i / m])
                .collect()
        } else {
            values.iter().map(|v| alpha * v).collect()
        };
        let bias = if self.has_input(2) {
            let c = self.constant(2)?;
            let values = c.floats();
            let bias: Vec<f32> = match values.len() {
                1 => vec![beta * values[0]; m],
                n if n == m && c.dims().iter().rev().skip(1).all(|&d| d == 1) => {
                    values.iter().map(|v| beta * v).collect()
                }
                _ => {
                    return refuse(format!(
                        "C has dims {:?}; convnet imports a bias of one value per output ({m})",
                        c.dims()
                    ))
                }
            };
            Some(bias)
        } else {
            None
        };
        self.dense(kernel, k, m, bias)
    }

    fn matmul(&mut self) -> Result<Value> {
        let b = self.constant(1)?;
        let &[k, m] = b.dims() else {
            return refuse(format!(
                "B has dims {:?}; convnet imports a product with a constant matrix",
                b.dims()
            ));
        };
        self.dense(b.floats(), k, m, None)
    }

    fn batch_normalization(&mut self) -> Result<Value> {
        if self.int_attr("training_mode", 0) != 0 {
            return refuse("training_mode = 1 is a training graph; export the model in eval mode");
        }
        let x = self.runtime(0)?;
        let shape = Self::shape_of(&x)?;
        if shape.len() == 3 && x.layout == Layout::Nhwc {
            return refuse("normalizes axis 1 of an image with its channels last (NHWC)");
        }
        let channels = *shape.last().unwrap_or(&0);
        let mut weights = Vec::new();
        for (i, what) in [(1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")] {
            weights.push(Tensor::new(
                vec![channels],
                self.weight(i, &[channels], what)?,
            )?);
        }
        let layer = BatchNormalization::new()
            .axis(-1)
            .epsilon(self.float_attr("epsilon", 1e-5) as f64)
            .momentum(self.float_attr("momentum", 0.9) as f64);
        let (name, y) = self.call(layer, "", &[x.tensor])?;
        self.im.weights.push((name, weights));
        Ok(Self::output(y, false))
    }

    fn pool(&mut self, max: bool) -> Result<Value> {
        let (x, [h, w, _]) = self.image(0)?;
        if self.attr("kernel_shape").is_none() {
            return refuse("kernel_shape is missing");
        }
        let window = self.pair_attr("kernel_shape", 1)?;
        let strides = self.pair_attr("strides", 1)?;
        if self.pair_attr("dilations", 1)? != (1, 1) {
            return refuse("dilated pooling has no Keras layer");
        }
        if self.int_attr("storage_order", 0) != 0 {
            return refuse("storage_order = 1 (column-major indices) is not imported");
        }
        let pads = self.onnx_pads((h, w), window, strides)?;
        if self.int_attr("ceil_mode", 0) != 0 {
            let [t, l, b, r] = pads;
            let rounds = |size: usize, before: usize, after: usize, k: usize, s: usize| {
                !(size + before + after).saturating_sub(k).is_multiple_of(s)
            };
            if rounds(h, t, b, window.0, strides.0) || rounds(w, l, r, window.1, strides.1) {
                return refuse("ceil_mode = 1 adds a partial window here, which Keras's pooling has no form for");
            }
        }
        let count_include_pad = !max && self.int_attr("count_include_pad", 0) != 0;
        let pads = match Self::keras_pads(pads, (h, w), window, strides) {
            // Keras's `same` pooling leaves the padding out, as ONNX's max pooling and
            // average pooling without count_include_pad do.
            Pads::Keras(Padding::Same) if count_include_pad => {
                let [t, l, b, r] = pads;
                Pads::Zeros([[t, b], [l, r]])
            }
            Pads::Zeros(_) if max && !x.non_negative => {
                return refuse(
                    "pads a max pooling of values that may be negative, and Keras pads only as 'same'; \
                     convnet zero-pads where the input is never negative (after a ReLU)",
                )
            }
            Pads::Zeros(_) if !max && !count_include_pad => {
                return refuse("pads an average pooling that leaves the padding out of its count, which Keras does only as 'same'")
            }
            pads => pads,
        };
        let (y, padding) = self.padded(x.tensor, pads)?;
        let (_, y) = if max {
            let layer = MaxPooling2D::new(window).strides(strides).padding(padding);
            self.call(layer, "", &[y])?
        } else {
            let layer = AveragePooling2D::new(window)
                .strides(strides)
                .padding(padding);
            self.call(layer, "", &[y])?
        };
        Ok(Self::output(y, x.non_negative))
    }

    fn global_pool(&mut self, max: bool) -> Result<Value> {
        let (x, _) = self.image(0)?;
        self.global(x, max, true)
    }

    /// ReduceMean or ReduceMax over an image's two spatial axes: global pooling.
    fn reduce(&mut self, max: bool) -> Result<Value> {
        let axes = if self.has_input(1) {
            self.constant(1)?.ints().map_err(Error::format)?
        } else {
            self.attr("axes")
                .map(|a| a.ints.clone())
                .unwrap_or_default()
        };
        let (x, _) = self.image(0)?;
        let mut axes = axes
            .iter()
            .map(|&a| x.keras_axis(a, 4))
            .collect::<Result<Vec<_>>>()?;
        axes.sort_unstable();
        if axes != [1, 2] {
            return refuse(
                "convnet imports reductions over an image's two spatial axes (global pooling)",
            );
        }
        let keepdims = self.int_attr("keepdims", 1) != 0;
        self.global(x, max, keepdims)
    }

    /// Global max or average pooling of an image, its 1x1 map kept or not.
    fn global(&mut self, x: Runtime, max: bool, keepdims: bool) -> Result<Value> {
        let kind = if max {
            PoolKind::Max
        } else {
            PoolKind::Average
        };
        let layer = GlobalPooling2D::new(kind).keepdims(keepdims);
        let (_, y) = self.call(layer, "", &[x.tensor])?;
        Ok(Self::output(y, x.non_negative))
    }

    fn activation(&mut self, f: ActivationFn, non_negative: bool) -> Result<Value> {
        let x = self.runtime(0)?;
        let (_, y) = self.call(Activation::new(f), "", &[x.tensor])?;
        Ok(Self::output_in(y, non_negative, x.layout))
    }

    /// A Sigmoid, remembered by its output so that a `Mul` of it with its own input
    /// becomes one SiLU (how exporters before ONNX's `Swish` write PyTorch's `SiLU`).
    fn sigmoid(&mut self) -> Result<Value> {
        if let (Some(x), Some(y)) = (self.node.input.first(), self.node.output.first()) {
            self.im.sigmoid_inputs.insert(y.clone(), x.clone());
        }
        self.activation(ActivationFn::Sigmoid, true)
    }

    /// Which input is x when this node computes x·sigmoid(x), in either order.
    fn silu_input(&self) -> Option<usize> {
        let [a, b] = self.node.input.as_slice() else {
            return None;
        };
        let sigmoid_of = |s: &String| self.im.sigmoid_inputs.get(s);
        if sigmoid_of(b) == Some(a) {
            Some(0)
        } else if sigmoid_of(a) == Some(b) {
            Some(1)
        } else {
            None
        }
    }

    /// x·sigmoid(x) as one SiLU of input `x`; the Sigmoid's layer stays only if
    /// something else reads it.
    fn silu(&mut self, x: usize) -> Result<Value> {
        let x = self.runtime(x)?;
        let (_, y) = self.call(Activation::new(ActivationFn::Silu), "", &[x.tensor])?;
        Ok(Self::output_in(y, false, x.layout))
    }

    fn hard_sigmoid(&mut self) -> Result<Value> {
        let (alpha, beta) = (self.float_attr("alpha", 0.2), self.float_attr("beta", 0.5));
        if (alpha - 1.0 / 6.0).abs() > 1e-6 || beta != 0.5 {
            return refuse(format!(
                "alpha {alpha} and beta {beta}: Keras's hard_sigmoid is alpha 1/6, beta 0.5"
            ));
        }
        self.activation(ActivationFn::HardSigmoid, true)
    }

    fn leaky_relu(&mut self) -> Result<Value> {
        let x = self.runtime(0)?;
        let alpha = self.float_attr("alpha", 0.01);
        if alpha < 0.0 {
            return refuse(format!("alpha {alpha} < 0 has no LeakyReLU form"));
        }
        let layer = LeakyReLU::new().negative_slope(alpha as f64);
        let (_, y) = self.call(layer, "", &[x.tensor])?;
        Ok(Self::output_in(y, false, x.layout))
    }

    /// Clip(x, 0, max) as a ReLU with a cap (ReLU6), Clip(x, -1, 1) as hard_tanh.
    fn clip(&mut self) -> Result<Value> {
        let x = self.runtime(0)?;
        let layout = x.layout;
        let (low, high) = if self.im.opset >= 11 {
            let bound =
                |i: usize, what| self.has_input(i).then(|| self.scalar(i, what)).transpose();
            (bound(1, "min")?, bound(2, "max")?)
        } else {
            (
                self.attr("min").and_then(|a| a.f),
                self.attr("max").and_then(|a| a.f),
            )
        };
        let (y, non_negative) = match (low, high) {
            (Some(low), high) if low == 0.0 && high.is_none_or(|h| h > 0.0) => {
                let relu = match high {
                    Some(h) => ReLU::new().max_value(h as f64),
                    None => ReLU::new(),
                };
                (self.call(relu, "", &[x.tensor])?.1, true)
            }
            (Some(-1.0), Some(1.0)) => {
                let hard_tanh = Activation::new(ActivationFn::HardTanh);
                (self.call(hard_tanh, "", &[x.tensor])?.1, false)
            }
            _ => {
                return refuse(format!(
                    "Clip to [{low:?}, {high:?}]: convnet imports [0, max] (ReLU, ReLU6) and [-1, 1] (hard_tanh)"
                ))
            }
        };
        Ok(Self::output_in(y, non_negative, layout))
    }

    fn softmax(&mut self) -> Result<Value> {
        let x = self.runtime(0)?;
        let rank = Self::shape_of(&x)?.len() + 1;
        let default = if self.im.opset >= 13 { -1 } else { 1 };
        let axis = self.int_attr("axis", default);
        if self.im.opset < 13 && x.keras_axis(axis, rank)? != x.keras_axis(-1, rank)? {
            return refuse(
                "before opset 13 Softmax flattens from its axis; only the last axis is imported",
            );
        }
        let axis = x.keras_axis(axis, rank)?;
        let keras = if axis == rank - 1 { -1 } else { axis as i64 };
        let layout = x.layout;
        let (_, y) = self.call(Softmax::new().axis(keras), "", &[x.tensor])?;
        Ok(Self::output_in(y, true, layout))
    }

    /// Add, Sub, Mul and Div: of two run-time tensors (a merge layer where the shapes
    /// are equal, a broadcasting operation where not), or of one and a number.
    fn arithmetic(&mut self, op: &str) -> Result<Value> {
        let kind = match op {
            "Add" => OpKind::Add,
            "Sub" => OpKind::Subtract,
            "Mul" => OpKind::Multiply,
            _ => OpKind::TrueDivide,
        };
        let (a, b) = (self.input(0)?.clone(), self.input(1)?.clone());
        match (a, b) {
            (Value::Runtime(a), Value::Runtime(b)) => {
                let (sa, sb) = (Self::shape_of(&a)?, Self::shape_of(&b)?);
                if sa.len() != sb.len() || (sa.len() == 3 && a.layout != b.layout) {
                    return refuse(format!(
                        "inputs of ranks {} and {} (or images with their axes in different orders) do not broadcast the same way in NHWC",
                        sa.len() + 1,
                        sb.len() + 1
                    ));
                }
                let layout = a.layout;
                let inputs = [a.tensor, b.tensor];
                let non_negative = a.non_negative
                    && b.non_negative
                    && matches!(kind, OpKind::Add | OpKind::Multiply | OpKind::TrueDivide);
                let (_, y) = match kind {
                    OpKind::Add if sa == sb => self.call(Add::new(), "", &inputs)?,
                    OpKind::Subtract if sa == sb => self.call(Subtract::new(), "", &inputs)?,
                    OpKind::Multiply if sa == sb => self.call(Multiply::new(), "", &inputs)?,
                    _ => self.call(NumpyOp::new(kind), "", &inputs)?,
                };
                Ok(Self::output_in(y, non_negative, layout))
            }
            (Value::Runtime(x), Value::Constant(_)) | (Value::Constant(_), Value::Runtime(x)) => {
                let position = usize::from(matches!(self.input(0)?, Value::Runtime(_)));
                let c = self.constant(position)?;
                if c.dims().iter().product::<usize>() != 1 {
                    let c = c.clone();
                    return self.channel_arithmetic(x, kind, position, &c);
                }
                let c = c.floats()[0];
                let non_negative = x.non_negative
                    && c >= 0.0
                    && matches!(kind, OpKind::Add | OpKind::Multiply)
                    || (x.non_negative && c > 0.0 && kind == OpKind::TrueDivide && position == 1);
                let layer = NumpyOp::with_constant(kind, position, c as f64);
                let (_, y) = self.call(layer, "", &[x.tensor])?;
                Ok(Self::output_in(y, non_negative, x.layout))
            }
            (Value::Constant(_), Value::Constant(_)) => {
                refuse("both inputs are constants; convnet does not fold constant arithmetic")
            }
        }
    }

    /// The channel axis's values of a constant that broadcasts along an image's
    /// channels (NCHW: (C, 1, 1); NHWC: (C)), or None.
    fn per_channel(x: &Runtime, c: &Constant, channels: usize) -> Option<Vec<f32>> {
        let mut dims = c.dims().to_vec();
        while dims.len() < 4 {
            dims.insert(0, 1);
        }
        let axis = if x.layout == Layout::Nchw { 1 } else { 3 };
        let fits = dims.len() == 4
            && dims[axis] == channels
            && dims.iter().enumerate().all(|(i, &d)| i == axis || d == 1);
        fits.then(|| c.floats())
    }

    /// An image and a per-channel constant (Keras's Normalization as exported, a
    /// PyTorch module's `x * scale + shift`): a 1x1 DepthwiseConv2D whose kernel and
    /// bias are the constant.
    fn channel_arithmetic(
        &mut self,
        x: Runtime,
        kind: OpKind,
        position: usize,
        c: &Constant,
    ) -> Result<Value> {
        let shape = Self::shape_of(&x)?;
        let channels = *shape.last().unwrap_or(&0);
        let values = match shape.len() {
            3 => Self::per_channel(&x, c, channels),
            _ => None,
        };
        let Some(values) = values else {
            return refuse(format!(
                "the constant (input {position}) has dims {:?}; convnet imports one value, or one per channel of an image",
                c.dims()
            ));
        };
        let ones = vec![1.0; channels];
        let (kernel, bias): (Vec<f32>, Option<Vec<f32>>) = match (kind, position) {
            (OpKind::Add, _) => (ones, Some(values)),
            (OpKind::Subtract, 1) => (ones, Some(values.iter().map(|v| -v).collect())),
            (OpKind::Subtract, _) => (vec![-1.0; channels], Some(values)),
            (OpKind::Multiply, _) => (values, None),
            (OpKind::TrueDivide, 1) => (values.iter().map(|v| 1.0 / v).collect(), None),
            (OpKind::TrueDivide, _) => {
                return refuse("divides a constant by an image, which has no Keras layer")
            }
        };
        let layer = DepthwiseConv2D::new((1, 1)).use_bias(bias.is_some());
        let (name, y) = self.call(layer, "", &[x.tensor])?;
        let kernel = Tensor::new(vec![1, 1, channels, 1], kernel)?;
        self.keep_weights(name, kernel, bias)?;
        Ok(Self::output_in(y, false, x.layout))
    }

    /// Sum, Mean, Max and Min of run-time tensors (the merge layers), and Max(x, 0)
    /// and Min(x, c) of a never-negative x (ReLU, capped).
    fn variadic(&mut self, op: &str) -> Result<Value> {
        let values = (0..self.node.input.len())
            .map(|i| self.input(i).cloned())
            .collect::<Result<Vec<_>>>()?;
        let runtime: Vec<Runtime> = values
            .iter()
            .filter_map(|v| match v {
                Value::Runtime(r) => Some(r.clone()),
                Value::Constant(_) => None,
            })
            .collect();
        let Some(first) = runtime.first().cloned() else {
            return refuse("has no run-time input");
        };
        if runtime.len() < values.len() {
            let bound = match values.as_slice() {
                [Value::Runtime(_), Value::Constant(c)]
                | [Value::Constant(c), Value::Runtime(_)] => match c.floats().as_slice() {
                    [v] => Some(*v),
                    _ => None,
                },
                _ => None,
            };
            let relu = match (op, bound) {
                ("Max", Some(0.0)) => Some(ReLU::new()),
                ("Min", Some(b)) if b > 0.0 && first.non_negative => {
                    Some(ReLU::new().max_value(b as f64))
                }
                _ => None,
            };
            let Some(relu) = relu else {
                return refuse(format!(
                    "{op} of a tensor and a constant: convnet imports Max(x, 0) and Min(x, c > 0) of a never-negative x"
                ));
            };
            let (_, y) = self.call(relu, "", &[first.tensor])?;
            return Ok(Self::output_in(y, true, first.layout));
        }
        if runtime.iter().any(|r| r.layout != first.layout) {
            return refuse("combines images with their axes in different orders");
        }
        if runtime.len() == 1 {
            return Ok(Value::Runtime(first));
        }
        let tensors: Vec<SymbolicTensor> = runtime.iter().map(|r| r.tensor.clone()).collect();
        let non_negative = runtime.iter().all(|r| r.non_negative);
        let (_, y) = match op {
            "Sum" => self.call(Add::new(), "", &tensors)?,
            "Mean" => self.call(Average::new(), "", &tensors)?,
            "Max" => self.call(Maximum::new(), "", &tensors)?,
            _ => self.call(Minimum::new(), "", &tensors)?,
        };
        Ok(Self::output_in(y, non_negative, first.layout))
    }

    /// PRelu with one slope, one per channel, or one per value: Keras's PReLU.
    fn prelu(&mut self) -> Result<Value> {
        let x = self.runtime(0)?;
        let slope = self.constant(1)?;
        let shape = Self::shape_of(&x)?;
        let values = slope.floats();
        let channels = *shape.last().unwrap_or(&0);
        let (alpha_shape, shared, alpha): (Vec<usize>, Option<Vec<i64>>, Vec<f32>) =
            if values.len() == 1 {
                (
                    vec![1; shape.len()],
                    Some((1..=shape.len() as i64).collect()),
                    values,
                )
            } else if let Some(per_channel) = (shape.len() == 3)
                .then(|| Self::per_channel(&x, slope, channels))
                .flatten()
            {
                (vec![1, 1, channels], Some(vec![1, 2]), per_channel)
            } else if shape.len() == 1 && slope.dims().last() == Some(&channels) {
                (vec![channels], None, values)
            } else if x.layout == Layout::Nhwc && slope.dims() == shape.as_slice() {
                (shape.clone(), None, values)
            } else {
                return refuse(format!(
                    "slope dims {:?}: convnet imports one slope, or one per channel",
                    slope.dims()
                ));
            };
        let mut layer = PReLU::new();
        layer.shared_axes = shared;
        let (name, y) = self.call(layer, "", &[x.tensor])?;
        self.im
            .weights
            .push((name, vec![Tensor::new(alpha_shape, alpha)?]));
        Ok(Self::output_in(y, false, x.layout))
    }

    /// LayerNormalization over the last Keras axis (the channels of an NHWC image, the
    /// features of a vector).
    fn layer_normalization(&mut self) -> Result<Value> {
        let x = self.runtime(0)?;
        let shape = Self::shape_of(&x)?;
        let rank = shape.len() + 1;
        let axis = x.keras_axis(self.int_attr("axis", -1), rank)?;
        if axis != rank - 1 || (rank == 4 && x.layout == Layout::Nchw) {
            return refuse(
                "convnet imports LayerNormalization over the last axis of NHWC images and vectors",
            );
        }
        let features = shape[shape.len() - 1];
        let gamma = self.weight(1, &[features], "Scale")?;
        let mut weights = vec![Tensor::new(vec![features], gamma)?];
        let center = self.has_input(2);
        if center {
            weights.push(Tensor::new(
                vec![features],
                self.weight(2, &[features], "B")?,
            )?);
        }
        let layer = LayerNormalization::new()
            .axis(Axes::One(-1))
            .epsilon(self.float_attr("epsilon", 1e-5) as f64)
            .center(center);
        let (name, y) = self.call(layer, "", &[x.tensor])?;
        self.im.weights.push((name, weights));
        Ok(Self::output_in(y, false, x.layout))
    }

    /// ConvTranspose with no padding (Keras's `valid`) or the padding that gives
    /// `input × stride` outputs (Keras's `same`).
    fn conv_transpose(&mut self) -> Result<Value> {
        let (x, [h, w, c]) = self.image(0)?;
        let kernel = self.constant(1)?;
        let &[ci, m, kh, kw] = kernel.dims() else {
            return refuse(format!(
                "weight has dims {:?}; convnet imports 2-D transposed convolutions (C, M, kH, kW)",
                kernel.dims()
            ));
        };
        if ci != c || self.int_attr("group", 1) != 1 {
            return refuse(format!(
                "the weight's {ci} input channels (group {}) do not fit the input's {c}: convnet imports group 1",
                self.int_attr("group", 1)
            ));
        }
        let strides = self.pair_attr("strides", 1)?;
        let dilations = self.pair_attr("dilations", 1)?;
        let output_padding = self.pair_attr_or_zero("output_padding")?;
        if self.attr("output_shape").is_some() {
            return refuse("output_shape is not imported; give pads instead");
        }
        let window = ((kh - 1) * dilations.0 + 1, (kw - 1) * dilations.1 + 1);
        let pads = match self.string_attr("auto_pad", "NOTSET").as_str() {
            "NOTSET" | "VALID" => self.onnx_pads((h, w), window, strides)?,
            other => return refuse(format!("auto_pad '{other}' is not imported")),
        };
        // Keras's `same`: the gradient of a `same` convolution over an input × stride
        // image, whose padding is window − stride, the smaller half first.
        let same = |k: usize, s: usize| {
            let total = k.saturating_sub(s);
            (total / 2, total - total / 2)
        };
        let [t, l, b, r] = pads;
        let padding = if pads == [0; 4] && output_padding == (0, 0) {
            Padding::Valid
        } else if (t, b) == same(window.0, strides.0)
            && (l, r) == same(window.1, strides.1)
            && window.0 >= strides.0
            && window.1 >= strides.1
            && output_padding == (0, 0)
        {
            Padding::Same
        } else {
            return refuse(format!(
                "pads {pads:?} with output_padding {output_padding:?}: convnet imports Keras's 'valid' and 'same'"
            ));
        };
        let bias = if self.has_input(2) {
            Some(self.weight(2, &[m], "bias")?)
        } else {
            None
        };
        let layer = Conv2DTranspose::new(m, (kh, kw))
            .strides(strides)
            .dilation_rate(dilations)
            .padding(padding)
            .use_bias(bias.is_some());
        // ONNX's (C, M, kH, kW) as Keras's (kH, kW, M, C).
        let hwoi = kernel.tensor()?.permute_axes(&[2, 3, 1, 0])?;
        let (name, y) = self.call(layer, "", &[x.tensor])?;
        self.keep_weights(name, hwoi, bias)?;
        Ok(Self::output(y, false))
    }

    fn pair_attr_or_zero(&self, name: &str) -> Result<(usize, usize)> {
        match self.attr(name).map(|a| a.ints.as_slice()) {
            None => Ok((0, 0)),
            Some(&[h, w]) if (0..1 << 16).contains(&h) && (0..1 << 16).contains(&w) => {
                Ok((h as usize, w as usize))
            }
            Some(other) => refuse(format!("{name} {other:?} must be two sizes")),
        }
    }

    /// Resize of an image's height and width: whole-number factors as UpSampling2D
    /// (nearest or bilinear), other sizes bilinear as Resizing.
    fn resize(&mut self) -> Result<Value> {
        let (x, [h, w, _]) = self.image(0)?;
        let op = self.node.op_type.as_deref().unwrap_or("");
        // Upsample (before opset 10) and Resize 10 take the scales second; Resize 11+
        // takes (roi, scales, sizes).
        let (scales_at, sizes_at) = if op == "Upsample" || self.im.opset < 11 {
            (1, None)
        } else {
            (2, Some(3))
        };
        let out = if let Some(i) = sizes_at.filter(|&i| self.has_input(i)) {
            let sizes = self.constant(i)?.ints().map_err(Error::format)?;
            match sizes.as_slice() {
                &[_, _, oh, ow] if oh > 0 && ow > 0 && oh <= 1 << 16 && ow <= 1 << 16 => {
                    (oh as usize, ow as usize)
                }
                other => return refuse(format!("sizes {other:?} must be four sizes, NCHW")),
            }
        } else if self.has_input(scales_at) {
            let scales = self.constant(scales_at)?.floats();
            match scales.as_slice() {
                &[1.0, 1.0, sh, sw] if sh > 0.0 && sw > 0.0 && sh <= 1024.0 && sw <= 1024.0 => {
                    ((h as f32 * sh).floor() as usize, (w as f32 * sw).floor() as usize)
                }
                other => {
                    return refuse(format!(
                        "scales {other:?}: convnet imports resizing of height and width (scales 1, 1, sh, sw)"
                    ))
                }
            }
        } else {
            return refuse("has neither scales nor sizes");
        };
        let mode = self.string_attr("mode", "nearest");
        let coordinates = self.string_attr("coordinate_transformation_mode", "half_pixel");
        let nearest_mode = self.string_attr("nearest_mode", "round_prefer_floor");
        let half_pixel = matches!(coordinates.as_str(), "half_pixel" | "pytorch_half_pixel");
        let whole = out.0 % h == 0 && out.1 % w == 0 && out.0 >= h && out.1 >= w;
        let layer_for = |interpolation| {
            let mut layer = UpSampling2D::new((out.0 / h, out.1 / w));
            layer.interpolation = interpolation;
            layer
        };
        let (_, y) = match mode.as_str() {
            // Whole factors repeat each pixel under each of these rules.
            "nearest"
                if whole
                    && ((coordinates == "asymmetric" && nearest_mode == "floor")
                        || (half_pixel && nearest_mode.starts_with("round_prefer"))) =>
            {
                self.call(layer_for(UpSampling::Nearest), "", &[x.tensor])?
            }
            "linear" if half_pixel && whole => {
                self.call(layer_for(UpSampling::Bilinear), "", &[x.tensor])?
            }
            "linear" if half_pixel && self.int_attr("antialias", 0) == 0 => {
                self.call(Resizing::new(out.0, out.1), "", &[x.tensor])?
            }
            _ => {
                return refuse(format!(
                    "mode '{mode}' with coordinate_transformation_mode '{coordinates}' to {out:?} from ({h}, {w}):                      convnet imports nearest by whole factors and bilinear with half-pixel centres"
                ))
            }
        };
        Ok(Self::output(y, x.non_negative))
    }

    /// Slice of an image's height and width, step 1: Cropping2D.
    fn slice(&mut self) -> Result<Value> {
        let x = self.runtime(0)?;
        let shape = Self::shape_of(&x)?;
        if shape.len() != 3 {
            return refuse("convnet imports slices of an image's height and width");
        }
        let list = |i: usize, attr: &str| -> Result<Option<Vec<i64>>> {
            if self.im.opset >= 10 {
                if self.has_input(i) {
                    return self.constant(i)?.ints().map(Some).map_err(Error::format);
                }
                Ok(None)
            } else {
                Ok(self.attr(attr).map(|a| a.ints.clone()))
            }
        };
        let starts = list(1, "starts")?.unwrap_or_default();
        let ends = list(2, "ends")?.unwrap_or_default();
        let axes = list(3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = list(4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
        if starts.len() != ends.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return refuse("starts, ends, axes and steps differ in length");
        }
        // Keras axes 1 and 2 (height, width): [before, after] cropped.
        let mut crop = [[0usize; 2]; 2];
        for i in 0..starts.len() {
            let axis = x.keras_axis(axes[i], 4)?;
            let size = if axis == 0 {
                usize::MAX
            } else {
                shape[axis - 1]
            };
            let clamp = |v: i64| -> usize {
                let v = if v < 0 {
                    v.saturating_add(size.min(i64::MAX as usize) as i64)
                } else {
                    v
                };
                (v.max(0) as u64).min(size as u64) as usize
            };
            let (start, end) = (clamp(starts[i]), clamp(ends[i]));
            let whole = start == 0 && end == size;
            match axis {
                _ if whole && steps[i] == 1 => {}
                1 | 2 if steps[i] == 1 && start < end => crop[axis - 1] = [start, size - end],
                _ => {
                    return refuse(format!(
                        "slices axis {} from {} to {} by {}: convnet imports slices of height and width, step 1",
                        axes[i], starts[i], ends[i], steps[i]
                    ))
                }
            }
        }
        let (_, y) = self.call(Cropping2D::new(crop), "", &[x.tensor])?;
        Ok(Self::output_in(y, x.non_negative, x.layout))
    }

    fn concat(&mut self) -> Result<Value> {
        let inputs = (0..self.node.input.len())
            .map(|i| self.runtime(i))
            .collect::<Result<Vec<_>>>()?;
        let Some(first) = inputs.first() else {
            return refuse("has no inputs");
        };
        let rank = Self::shape_of(first)?.len() + 1;
        let Some(axis) = self.attr("axis").and_then(|a| a.i) else {
            return refuse("axis is missing");
        };
        if inputs.iter().any(|r| r.layout != first.layout) {
            return refuse("joins images with their axes in different orders");
        }
        let axis = first.keras_axis(axis, rank)?;
        let keras = if axis == rank - 1 { -1 } else { axis as i64 };
        let layout = first.layout;
        let non_negative = inputs.iter().all(|r| r.non_negative);
        let tensors: Vec<SymbolicTensor> = inputs.into_iter().map(|r| r.tensor).collect();
        let (_, y) = self.call(Concatenate::new().axis(keras), "", &tensors)?;
        Ok(Self::output_in(y, non_negative, layout))
    }

    /// An image flattened to (N, C·H·W) in its ONNX order: a Permute to (C, H, W)
    /// first when that is NCHW, unless the image is one pixel.
    fn flatten_image(&mut self, x: Runtime, [h, w, _]: [usize; 3]) -> Result<Value> {
        let mut tensor = x.tensor;
        if h * w > 1 && x.layout == Layout::Nchw {
            tensor = self
                .call(Permute::new(&[3, 1, 2]), "_to_nchw", &[tensor])?
                .1;
        }
        let (_, y) = self.call(Flatten::new(), "", &[tensor])?;
        Ok(Self::output(y, x.non_negative))
    }

    fn flatten(&mut self) -> Result<Value> {
        let x = self.runtime(0)?;
        let shape = Self::shape_of(&x)?;
        if self.int_attr("axis", 1) != 1 {
            return refuse("convnet imports Flatten from axis 1 (the batch axis kept)");
        }
        match shape.as_slice() {
            &[h, w, c] => self.flatten_image(x, [h, w, c]),
            [_] => Ok(Value::Runtime(x)),
            _ => refuse(format!("input has {} axes", shape.len() + 1)),
        }
    }

    /// Reshape that flattens an image, puts a vector back as a 1x1 image, or keeps
    /// the shape; the first target axis must be the batch (0, -1, or the graph's fixed
    /// batch size).
    fn reshape(&mut self) -> Result<Value> {
        let x = self.runtime(0)?;
        let shape = Self::shape_of(&x)?;
        let target = self.constant(1)?.ints().map_err(Error::format)?;
        let allow_zero = self.int_attr("allowzero", 0) != 0;
        let onnx_shape: Vec<usize> = match shape.as_slice() {
            &[h, w, c] if x.layout == Layout::Nchw => vec![c, h, w],
            other => other.to_vec(),
        };
        let values: usize = onnx_shape.iter().product();
        let batch_kept = match target.first() {
            Some(0) => !allow_zero,
            Some(-1) => target.len() > 1 && target[1..].iter().all(|&d| d > 0),
            Some(&b) => self.im.batch.is_some_and(|batch| b as usize == batch),
            None => false,
        };
        if !batch_kept {
            return refuse(format!(
                "target shape {target:?} does not keep the batch axis first"
            ));
        }
        let mut rest = Vec::new();
        let mut infer = None;
        for (i, &d) in target.iter().enumerate().skip(1) {
            match d {
                0 if !allow_zero => rest.push(*onnx_shape.get(i - 1).unwrap_or(&0)),
                -1 if infer.is_none() => {
                    infer = Some(rest.len());
                    rest.push(1);
                }
                d if d > 0 => rest.push(d as usize),
                d => return refuse(format!("target shape {target:?} has an axis {d}")),
            }
        }
        let known: usize = rest
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .unwrap_or(0);
        if let Some(i) = infer {
            if known == 0 || !values.is_multiple_of(known) {
                return refuse(format!(
                    "target shape {target:?} does not fit {values} values"
                ));
            }
            rest[i] = values / known;
        } else if known != values {
            return refuse(format!(
                "target shape {target:?} does not fit {values} values"
            ));
        }
        let keras_reshape = |n: &mut Self, dims: &[usize], layout: Layout| -> Result<Value> {
            let target: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
            let (_, y) = n.call(Reshape::new(&target), "", std::slice::from_ref(&x.tensor))?;
            Ok(Self::output_in(y, x.non_negative, layout))
        };
        match (shape.as_slice(), rest.as_slice()) {
            _ if rest == onnx_shape => Ok(Value::Runtime(x)),
            (&[h, w, c], [_]) => self.flatten_image(x.clone(), [h, w, c]),
            // A vector as a 1x1 NCHW image is the same values as a 1x1 NHWC one.
            ([_], &[c, 1, 1]) => keras_reshape(self, &[1, 1, c], Layout::Nchw),
            // Keras's own reshapes, exported between the edge transposes, keep NHWC.
            (_, [_, _, _]) if shape.len() == 1 || x.layout == Layout::Nhwc => {
                keras_reshape(self, &rest, Layout::Nhwc)
            }
            _ => refuse(format!(
                "reshaping {onnx_shape:?} to {rest:?} (per sample) is not imported: convnet imports flattening an image, \
                 a vector as an image, and reshapes of NHWC images"
            )),
        }
    }

    /// Pad with zeros on the spatial axes: ZeroPadding2D.
    fn pad(&mut self) -> Result<Value> {
        let (x, _) = self.image(0)?;
        let mode = self.string_attr("mode", "constant");
        if mode != "constant" {
            return refuse(format!(
                "mode '{mode}' is not imported; convnet pads with zeros"
            ));
        }
        let (pads, value) = if self.im.opset >= 11 {
            let pads = self.constant(1)?.ints().map_err(Error::format)?;
            let value = if self.has_input(2) {
                self.scalar(2, "constant_value")?
            } else {
                0.0
            };
            if self.has_input(3) {
                return refuse("padding chosen axes (the axes input) is not imported");
            }
            (pads, value)
        } else {
            (
                self.attr("pads")
                    .map(|a| a.ints.clone())
                    .unwrap_or_default(),
                self.float_attr("value", 0.0),
            )
        };
        if value != 0.0 {
            return refuse(format!("pads with {value}; convnet pads with zeros"));
        }
        let &[0, 0, t, l, 0, 0, b, r] = pads.as_slice() else {
            return refuse(format!(
                "pads {pads:?}: convnet imports zero padding of an image's height and width"
            ));
        };
        let size = |p: i64| {
            usize::try_from(p)
                .ok()
                .filter(|&p| p <= 1 << 16)
                .ok_or_else(|| Error::format(format!("pad {p} must be from 0 to 65536")))
        };
        let zeros = [[size(t)?, size(b)?], [size(l)?, size(r)?]];
        let (_, y) = self.call(ZeroPadding2D::new(zeros), "", &[x.tensor])?;
        Ok(Self::output(y, x.non_negative))
    }

    fn pass_through(&mut self) -> Result<Value> {
        self.input(0).cloned()
    }

    /// A Transpose between NCHW and NHWC: the Keras tensor stays NHWC, only the ONNX
    /// order it stands for changes.
    fn transpose(&mut self) -> Result<Value> {
        let mut x = self.runtime(0)?;
        let rank = Self::shape_of(&x)?.len() + 1;
        let perm = self.attr("perm").map(|a| a.ints.as_slice()).unwrap_or(&[]);
        x.layout = match (rank, x.layout, perm) {
            (4, Layout::Nchw, [0, 2, 3, 1]) => Layout::Nhwc,
            (4, Layout::Nhwc, _) if is_to_nchw(self.node) => Layout::Nchw,
            _ => {
                return refuse(format!(
                    "perm {perm:?} of a rank-{rank} tensor: convnet imports transposes between NCHW and NHWC"
                ))
            }
        };
        Ok(Value::Runtime(x))
    }

    fn constant_node(&self) -> Result<Constant> {
        let Some(a) = self.node.attribute.first() else {
            return refuse("has no value");
        };
        let one = |values: Vec<f32>| Constant::Float {
            dims: vec![],
            values,
        };
        match a.name.as_deref() {
            Some("value") => match &a.t {
                Some(t) => constant_of(t),
                None => refuse("value is not a tensor"),
            },
            Some("value_float") => Ok(one(vec![a.f.unwrap_or(0.0)])),
            Some("value_floats") => Ok(Constant::Float {
                dims: vec![a.floats.len()],
                values: a.floats.clone(),
            }),
            Some("value_int") => Ok(Constant::Int {
                dims: vec![],
                values: vec![a.i.unwrap_or(0)],
            }),
            Some("value_ints") => Ok(Constant::Int {
                dims: vec![a.ints.len()],
                values: a.ints.clone(),
            }),
            other => refuse(format!("value attribute {other:?} is not imported")),
        }
    }
}
