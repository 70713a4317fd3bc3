//! Each Keras layer as ONNX operators: what a layer's config and weights say, written
//! with the graph builder of `export.rs` (values channels-first inside the graph).

use super::export::{float, int, ints, string, Graph, Layout, Val};
use super::proto::{AttributeProto, INT64};
use crate::error::{Error, Result};
use crate::kernels::conv::output_length;
use crate::kernels::Padding;
use crate::layers::{Layer, Normalization, NumpyOp, OpKind, Shape};
use crate::tensor::Tensor;
use serde_json::Value;

/// A size from a config: a number, or a list of numbers.
fn sizes(layer: &dyn Layer, config: &Value, field: &str, count: usize) -> Result<Vec<i64>> {
    let bad = || unsupported_field(layer, field, config.get(field));
    match config.get(field) {
        Some(Value::Number(n)) => Ok(vec![n.as_i64().ok_or_else(bad)?; count]),
        Some(Value::Array(items)) if items.len() == count => {
            items.iter().map(|v| v.as_i64().ok_or_else(bad)).collect()
        }
        _ => Err(bad()),
    }
}

/// An error naming `axis` unless the config's `axis` (a number or a list of one; Keras's
/// −1 when absent) is the last of `rank` axes: the normalizations and Softmax are
/// exported over the channels only.
fn require_last_axis(layer: &dyn Layer, config: &Value, rank: usize) -> Result<()> {
    let axis = match config.get("axis") {
        None => Some(-1),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::Array(a)) if a.len() == 1 => a[0].as_i64(),
        _ => None,
    };
    match axis {
        Some(a) if a == -1 || a == rank as i64 - 1 => Ok(()),
        _ => Err(unsupported_field(layer, "axis", config.get("axis"))),
    }
}

/// A normalization's `gamma` and `beta` over `channels`, ones and zeros where the config
/// turns `scale` or `center` off (Keras then has no such weight).
fn scale_and_offset(
    layer: &dyn Layer,
    config: &Value,
    channels: usize,
) -> Result<(Tensor, Tensor)> {
    let flag = |f: &str| config.get(f).and_then(Value::as_bool).unwrap_or(true);
    let gamma = match flag("scale") {
        true => Graph::weight(layer, "gamma")?,
        false => Tensor::full([channels], 1.0),
    };
    let beta = match flag("center") {
        true => Graph::weight(layer, "beta")?,
        false => Tensor::zeros([channels]),
    };
    Ok((gamma, beta))
}

fn unsupported_field(layer: &dyn Layer, field: &str, value: Option<&Value>) -> Error {
    Error::unsupported(format!(
        "layer '{}' ({}): field '{field}' = {} has no ONNX form in convnet's export",
        layer.name(),
        layer.class_name(),
        value.map_or("missing".to_string(), Value::to_string)
    ))
}

/// (before, after) per spatial axis from a padding or cropping config: `[a, b]` for one
/// axis, `[[a, b], …]` for several.
fn pairs(config: &Value, field: &str, rank: usize) -> Option<Vec<(i64, i64)>> {
    let items = config.get(field)?.as_array()?;
    let pair = |v: &Value| -> Option<(i64, i64)> {
        let a = v.as_array()?;
        Some((a.first()?.as_i64()?, a.get(1)?.as_i64()?))
    };
    if rank == 1 && items.iter().all(Value::is_number) {
        return pair(config.get(field)?).map(|p| vec![p]);
    }
    let sides: Option<Vec<_>> = items.iter().map(pair).collect();
    sides.filter(|s| s.len() == rank)
}

fn text<'a>(config: &'a Value, field: &str) -> &'a str {
    config.get(field).and_then(Value::as_str).unwrap_or("")
}

/// Keras's `padding="same"` (TensorFlow's SAME: any odd pixel goes at the end) as ONNX
/// pads (begin for each axis, then end for each axis), for known input sizes.
fn same_pads(
    input: &[Option<usize>],
    kernel: &[i64],
    strides: &[i64],
    dilations: &[i64],
) -> Option<Vec<i64>> {
    let mut begin = Vec::new();
    let mut end = Vec::new();
    for (i, size) in input.iter().enumerate() {
        let axis = |v: &[i64]| usize::try_from(v[i]).ok().filter(|&v| v > 0);
        let (_, before, after) = output_length(
            (*size)?,
            axis(kernel)?,
            axis(strides)?,
            axis(dilations)?,
            Padding::Same,
        )?;
        begin.push(before as i64);
        end.push(after as i64);
    }
    begin.extend(end);
    Some(begin)
}

impl Graph {
    /// A Keras activation by name on `x` (its layout kept); `channel_axis` for softmax.
    fn activation(&mut self, layer: &dyn Layer, name: &str, x: Val, base: &str) -> Result<Val> {
        let channel_axis = if x.layout == Layout::ChannelsFirst {
            1
        } else {
            -1
        };
        let xs = x.name.as_str();
        let out = match name {
            "linear" | "" => return Ok(x),
            "relu" => self.node("Relu", base, &[xs], vec![]),
            "sigmoid" => self.node("Sigmoid", base, &[xs], vec![]),
            "tanh" => self.node("Tanh", base, &[xs], vec![]),
            "softplus" => self.node("Softplus", base, &[xs], vec![]),
            "softsign" => self.node("Softsign", base, &[xs], vec![]),
            "exponential" => self.node("Exp", base, &[xs], vec![]),
            "elu" => self.node("Elu", base, &[xs], vec![float("alpha", 1.0)]),
            "selu" => self.node(
                "Selu",
                base,
                &[xs],
                vec![float("alpha", 1.673_263_2), float("gamma", 1.050_701)],
            ),
            "leaky_relu" => self.node("LeakyRelu", base, &[xs], vec![float("alpha", 0.2)]),
            "relu6" => {
                let (low, high) = (self.scalar("zero", 0.0), self.scalar("six", 6.0));
                self.node("Clip", base, &[xs, &low, &high], vec![])
            }
            // Keras 3: relu6(x + 3) / 6.
            "hard_sigmoid" => self.node(
                "HardSigmoid",
                base,
                &[xs],
                vec![float("alpha", 1.0 / 6.0), float("beta", 0.5)],
            ),
            "hard_silu" | "hard_swish" => self.node("HardSwish", base, &[xs], vec![]),
            "silu" | "swish" => {
                let gate = self.node("Sigmoid", &format!("{base}_sigmoid"), &[xs], vec![]);
                self.node("Mul", base, &[xs, &gate], vec![])
            }
            "gelu" => {
                // Keras's default, the exact form: x · (1 + erf(x / √2)) / 2.
                let root2 = self.scalar("sqrt2", std::f32::consts::SQRT_2);
                let scaled = self.node("Div", &format!("{base}_scaled"), &[xs, &root2], vec![]);
                let erf = self.node("Erf", &format!("{base}_erf"), &[&scaled], vec![]);
                let one = self.scalar("one", 1.0);
                let shifted = self.node("Add", &format!("{base}_plus1"), &[&erf, &one], vec![]);
                let half = self.scalar("half", 0.5);
                let halfx = self.node("Mul", &format!("{base}_half"), &[xs, &half], vec![]);
                self.node("Mul", base, &[&halfx, &shifted], vec![])
            }
            "mish" => {
                let soft = self.node("Softplus", &format!("{base}_softplus"), &[xs], vec![]);
                let tanh = self.node("Tanh", &format!("{base}_tanh"), &[&soft], vec![]);
                self.node("Mul", base, &[xs, &tanh], vec![])
            }
            "celu" => self.node("Celu", base, &[xs], vec![float("alpha", 1.0)]),
            "hard_tanh" => {
                let (low, high) = (self.scalar("minus_one", -1.0), self.scalar("one", 1.0));
                self.node("Clip", base, &[xs, &low, &high], vec![])
            }
            "hard_shrink" => self.node(
                "Shrink",
                base,
                &[xs],
                vec![float("lambd", 0.5), float("bias", 0.0)],
            ),
            "soft_shrink" => self.node(
                "Shrink",
                base,
                &[xs],
                vec![float("lambd", 0.5), float("bias", 0.5)],
            ),
            "tanh_shrink" => {
                let tanh = self.node("Tanh", &format!("{base}_tanh"), &[xs], vec![]);
                self.node("Sub", base, &[xs, &tanh], vec![])
            }
            "log_sigmoid" => {
                // log σ(x) = −softplus(−x).
                let negated = self.node("Neg", &format!("{base}_neg"), &[xs], vec![]);
                let soft = self.node("Softplus", &format!("{base}_softplus"), &[&negated], vec![]);
                self.node("Neg", base, &[&soft], vec![])
            }
            "softmax" => self.node("Softmax", base, &[xs], vec![int("axis", channel_axis)]),
            "log_softmax" => self.node("LogSoftmax", base, &[xs], vec![int("axis", channel_axis)]),
            other => {
                return Err(Error::unsupported(format!(
                    "layer '{}' ({}): activation '{other}' has no ONNX form in convnet's export",
                    layer.name(),
                    layer.class_name()
                )))
            }
        };
        Ok(Val { name: out, ..x })
    }

    /// The activation a layer's config names, applied to its output `x`.
    fn layer_activation(&mut self, layer: &dyn Layer, config: &Value, x: Val) -> Result<Val> {
        let base = layer.name().to_string();
        self.activation(layer, text(config, "activation"), x, &base)
    }

    /// The name a layer's main node takes: the layer's own when nothing follows it.
    fn main_name(layer: &dyn Layer, config: &Value) -> String {
        match text(config, "activation") {
            "" | "linear" => layer.name().to_string(),
            _ => format!("{}_preact", layer.name()),
        }
    }

    /// Conv and ConvTranspose attributes: strides, dilations, and pads for `padding`.
    fn conv_attributes(
        layer: &dyn Layer,
        config: &Value,
        x: &Val,
        kernel: &[i64],
    ) -> Result<Vec<AttributeProto>> {
        let rank = kernel.len();
        let strides = sizes(layer, config, "strides", rank)?;
        let dilations = match config.get("dilation_rate") {
            Some(_) => sizes(layer, config, "dilation_rate", rank)?,
            None => vec![1; rank],
        };
        let mut attributes = vec![
            ints("kernel_shape", kernel),
            ints("strides", &strides),
            ints("dilations", &dilations),
        ];
        match text(config, "padding") {
            "valid" => attributes.push(ints("pads", &vec![0; 2 * rank])),
            // Keras's 1-D `causal`: all the padding before.
            "causal" if rank == 1 => {
                attributes.push(ints("pads", &[(kernel[0] - 1) * dilations[0], 0]))
            }
            "same" => match same_pads(&x.shape[1..=rank], kernel, &strides, &dilations) {
                Some(pads) => attributes.push(ints("pads", &pads)),
                None => attributes.push(string("auto_pad", "SAME_UPPER")),
            },
            _ => return Err(unsupported_field(layer, "padding", config.get("padding"))),
        }
        Ok(attributes)
    }

    fn weight(layer: &dyn Layer, name: &str) -> Result<Tensor> {
        layer
            .weights()
            .iter()
            .find(|w| w.name == name)
            .map(|w| w.value.clone())
            .ok_or_else(|| {
                Error::unsupported(format!(
                    "layer '{}' ({}): it has no weight '{name}' (it was never built)",
                    layer.name(),
                    layer.class_name()
                ))
            })
    }

    /// Conv2D, DepthwiseConv2D and SeparableConv2D.
    fn convolution(
        &mut self,
        layer: &dyn Layer,
        config: &Value,
        x: &Val,
        out: &Shape,
    ) -> Result<Val> {
        let x = self.inner(x);
        let class = layer.class_name();
        let base = layer.name();
        let main = Self::main_name(layer, config);
        let use_bias = config
            .get("use_bias")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let bias = if use_bias {
            Some(Self::weight(layer, "bias")?)
        } else {
            None
        };
        let conv = |g: &mut Graph,
                    name: &str,
                    input: &str,
                    weight: &Tensor,
                    group: i64,
                    attrs: Vec<AttributeProto>,
                    bias: Option<&Tensor>| {
            let w = g.constant(&format!("{base}_kernel"), weight);
            let mut inputs = vec![input.to_string(), w];
            if let Some(b) = bias {
                inputs.push(g.constant(&format!("{base}_bias"), b));
            }
            let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
            let mut attrs = attrs;
            attrs.push(int("group", group));
            g.node("Conv", name, &refs, attrs)
        };
        // Spatial axes r: Keras's kernels are (k₁…k_r, in, out); ONNX's (out, in, k₁…k_r).
        let r = x.rank() - 2;
        let to_onnx: Vec<usize> = [r + 1, r].into_iter().chain(0..r).collect();
        let spatial = |k: &[usize]| -> Vec<i64> { k[..r].iter().map(|&d| d as i64).collect() };
        let output = match class {
            "Conv1D" | "Conv2D" | "Conv3D" => {
                let kernel = Self::weight(layer, "kernel")?;
                let k = kernel.shape();
                let group = (x.shape[r + 1].unwrap_or(k[r]) / k[r].max(1)) as i64;
                let attrs = Self::conv_attributes(layer, config, &x, &spatial(k))?;
                let w = kernel.permute_axes(&to_onnx)?;
                conv(self, &main, &x.name, &w, group, attrs, bias.as_ref())
            }
            "DepthwiseConv1D" | "DepthwiseConv2D" | "SeparableConv1D" | "SeparableConv2D" => {
                let name = if class.starts_with("Depthwise") {
                    "kernel"
                } else {
                    "depthwise_kernel"
                };
                let kernel = Self::weight(layer, name)?;
                let k = kernel.shape().to_vec();
                let attrs = Self::conv_attributes(layer, config, &x, &spatial(&k))?;
                // (k…, C, M) → (C·M, 1, k…): output channel c·M + m reads channel c.
                let order: Vec<usize> = [r, r + 1].into_iter().chain(0..r).collect();
                let mut shape = vec![k[r] * k[r + 1], 1];
                shape.extend(&k[..r]);
                let w = kernel.permute_axes(&order)?.reshape(shape)?;
                if class.starts_with("Depthwise") {
                    conv(self, &main, &x.name, &w, k[r] as i64, attrs, bias.as_ref())
                } else {
                    let depthwise = conv(
                        self,
                        &format!("{base}_depthwise"),
                        &x.name,
                        &w,
                        k[r] as i64,
                        attrs,
                        None,
                    );
                    let pointwise =
                        Self::weight(layer, "pointwise_kernel")?.permute_axes(&to_onnx)?;
                    let attrs = vec![
                        ints("kernel_shape", &vec![1; r]),
                        ints("pads", &vec![0; 2 * r]),
                    ];
                    conv(self, &main, &depthwise, &pointwise, 1, attrs, bias.as_ref())
                }
            }
            "Conv1DTranspose" | "Conv2DTranspose" | "Conv3DTranspose" => {
                if !config.get("output_padding").is_none_or(Value::is_null) {
                    return Err(unsupported_field(
                        layer,
                        "output_padding",
                        config.get("output_padding"),
                    ));
                }
                let kernel = Self::weight(layer, "kernel")?;
                let k = spatial(kernel.shape());
                let strides = sizes(layer, config, "strides", r)?;
                let dilations = sizes(layer, config, "dilation_rate", r)?;
                let mut attrs = vec![
                    ints("kernel_shape", &k),
                    ints("strides", &strides),
                    ints("dilations", &dilations),
                ];
                match text(config, "padding") {
                    "valid" => attrs.push(ints("pads", &vec![0; 2 * r])),
                    "same" => {
                        // The output is the input times the stride, cropped as
                        // TensorFlow crops it: the odd pixel at the end.
                        let (mut begin, mut end, mut extra) = (Vec::new(), Vec::new(), Vec::new());
                        for i in 0..r {
                            let total = (k[i] - 1) * dilations[i] + 1 - strides[i];
                            begin.push(total.max(0) / 2);
                            end.push(total.max(0) - total.max(0) / 2);
                            extra.push((-total).max(0));
                        }
                        begin.extend(end);
                        attrs.push(ints("pads", &begin));
                        attrs.push(ints("output_padding", &extra));
                    }
                    _ => return Err(unsupported_field(layer, "padding", config.get("padding"))),
                }
                // Keras's (k…, out, in) → ONNX's (in, out, k…).
                let w = self.constant(&format!("{base}_kernel"), &kernel.permute_axes(&to_onnx)?);
                let mut inputs = vec![x.name.clone(), w];
                if let Some(b) = &bias {
                    inputs.push(self.constant(&format!("{base}_bias"), b));
                }
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                self.node("ConvTranspose", &main, &refs, attrs)
            }
            _ => unreachable!("only convolutions come here"),
        };
        let y = Val {
            name: output,
            layout: Layout::ChannelsFirst,
            shape: out.clone(),
        };
        self.layer_activation(layer, config, y)
    }

    fn dense(&mut self, layer: &dyn Layer, config: &Value, x: &Val, out: &Shape) -> Result<Val> {
        let x = self.in_layout(x, Layout::Keras);
        let kernel = self.constant(
            &format!("{}_kernel", layer.name()),
            &Self::weight(layer, "kernel")?,
        );
        let use_bias = config
            .get("use_bias")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let bias = if use_bias {
            let b = Self::weight(layer, "bias")?;
            Some(self.constant(&format!("{}_bias", layer.name()), &b))
        } else {
            None
        };
        let main = Self::main_name(layer, config);
        let output = match (x.rank(), &bias) {
            (2, Some(b)) => self.node("Gemm", &main, &[&x.name, &kernel, b], vec![]),
            (2, None) => self.node("Gemm", &main, &[&x.name, &kernel], vec![]),
            (_, Some(b)) => {
                let product = self.node(
                    "MatMul",
                    &format!("{main}_matmul"),
                    &[&x.name, &kernel],
                    vec![],
                );
                self.node("Add", &main, &[&product, b], vec![])
            }
            (_, None) => self.node("MatMul", &main, &[&x.name, &kernel], vec![]),
        };
        let y = Val {
            name: output,
            layout: Layout::Keras,
            shape: out.clone(),
        };
        self.layer_activation(layer, config, y)
    }

    fn batch_norm(
        &mut self,
        layer: &dyn Layer,
        config: &Value,
        x: &Val,
        out: &Shape,
    ) -> Result<Val> {
        require_last_axis(layer, config, x.rank())?;
        let x = self.inner(x);
        let mean = Self::weight(layer, "moving_mean")?;
        let (gamma, beta) = scale_and_offset(layer, config, mean.len())?;
        let base = layer.name();
        let inputs = [
            x.name.clone(),
            self.constant(&format!("{base}_gamma"), &gamma),
            self.constant(&format!("{base}_beta"), &beta),
            self.constant(&format!("{base}_moving_mean"), &mean),
            self.constant(
                &format!("{base}_moving_variance"),
                &Self::weight(layer, "moving_variance")?,
            ),
        ];
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let epsilon = config
            .get("epsilon")
            .and_then(Value::as_f64)
            .unwrap_or(1e-3) as f32;
        let output = self.node(
            "BatchNormalization",
            base,
            &refs,
            vec![float("epsilon", epsilon)],
        );
        Ok(Val {
            name: output,
            shape: out.clone(),
            ..x
        })
    }

    fn pooling(&mut self, layer: &dyn Layer, config: &Value, x: &Val, out: &Shape) -> Result<Val> {
        let x = self.inner(x);
        let class = layer.class_name();
        let base = layer.name();
        let output = if class.starts_with("Global") {
            let op = if class.contains("Average") {
                "GlobalAveragePool"
            } else {
                "GlobalMaxPool"
            };
            let keep = config
                .get("keepdims")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if keep {
                self.node(op, base, &[&x.name], vec![])
            } else {
                let pooled = self.node(op, &format!("{base}_pool"), &[&x.name], vec![]);
                let flat = self.node("Flatten", base, &[&pooled], vec![int("axis", 1)]);
                return Ok(Val::new(flat, Layout::Keras, out));
            }
        } else {
            let pool = sizes(layer, config, "pool_size", x.rank() - 2)?;
            let mut config = config.clone();
            if config.get("strides").is_none_or(Value::is_null) {
                config["strides"] = Value::from(pool.clone());
            }
            let mut attrs = Self::conv_attributes(layer, &config, &x, &pool)?;
            // Pooling has no dilation in Keras; ONNX's default is 1.
            attrs.retain(|a| a.name.as_deref() != Some("dilations"));
            let op = if class.starts_with("Max") {
                "MaxPool"
            } else {
                // Keras averages over the pixels inside the image only.
                attrs.push(int("count_include_pad", 0));
                "AveragePool"
            };
            self.node(op, base, &[&x.name], attrs)
        };
        Ok(Val::new(output, Layout::ChannelsFirst, out))
    }

    /// Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate.
    fn merge(&mut self, layer: &dyn Layer, config: &Value, xs: &[Val], out: &Shape) -> Result<Val> {
        let rank = xs[0].rank();
        if xs.iter().any(|x| x.rank() != rank) {
            return Err(Error::unsupported(format!(
                "layer '{}' ({}): inputs of different ranks have no ONNX form in convnet's export",
                layer.name(),
                layer.class_name()
            )));
        }
        let layout = if rank >= 3 {
            Layout::ChannelsFirst
        } else {
            Layout::Keras
        };
        let names: Vec<String> = xs.iter().map(|x| self.in_layout(x, layout).name).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let base = layer.name();
        let output = match layer.class_name() {
            "Add" => self.node("Sum", base, &refs, vec![]),
            "Subtract" => self.node("Sub", base, &refs, vec![]),
            "Multiply" => {
                let mut product = refs[0].to_string();
                for (k, other) in refs[1..].iter().enumerate() {
                    let name = if k + 2 == refs.len() {
                        base.to_string()
                    } else {
                        format!("{base}_{k}")
                    };
                    product = self.node("Mul", &name, &[&product, other], vec![]);
                }
                product
            }
            "Average" => self.node("Mean", base, &refs, vec![]),
            "Maximum" => self.node("Max", base, &refs, vec![]),
            "Minimum" => self.node("Min", base, &refs, vec![]),
            _ => {
                let axis = config.get("axis").and_then(Value::as_i64).unwrap_or(-1);
                let axis = if axis < 0 { axis + rank as i64 } else { axis };
                let axis = match layout {
                    Layout::ChannelsFirst if axis == rank as i64 - 1 => 1,
                    Layout::ChannelsFirst if axis >= 1 => axis + 1,
                    _ => axis,
                };
                self.node("Concat", base, &refs, vec![int("axis", axis)])
            }
        };
        Ok(Val {
            name: output,
            layout,
            shape: out.clone(),
        })
    }

    /// A `keras.ops` call on tensors, or on a tensor and a number.
    pub(super) fn operation(&mut self, op: &NumpyOp, xs: &[Val], out: &Shape) -> Result<Val> {
        let name = op.name().to_string();
        let opname = match op.kind {
            OpKind::Add => "Add",
            OpKind::Subtract => "Sub",
            OpKind::Multiply => "Mul",
            OpKind::TrueDivide => "Div",
        };
        let layout = if xs.iter().all(Val::spatial) {
            Layout::ChannelsFirst
        } else {
            Layout::Keras
        };
        let mut operands: Vec<String> = xs.iter().map(|x| self.in_layout(x, layout).name).collect();
        if let Some((position, constant)) = op.constant {
            let c = self.scalar(&format!("{name}_constant"), constant as f32);
            operands.insert(position.min(operands.len()), c);
        }
        if operands.len() != 2 || (xs.len() > 1 && xs[0].rank() != xs[1].rank()) {
            return Err(Error::unsupported(format!(
                "operation '{name}' ({}) on these operands has no ONNX form in convnet's export",
                op.class_name()
            )));
        }
        let output = self.node(opname, &name, &[&operands[0], &operands[1]], vec![]);
        Ok(Val {
            name: output,
            layout,
            shape: out.clone(),
        })
    }

    /// The `size` window at `start` of an image's rows and columns.
    fn window(
        &mut self,
        base: &str,
        x: &Val,
        out: &Shape,
        start: [usize; 2],
        size: [usize; 2],
    ) -> Result<Val> {
        let starts = self.int64s(
            &format!("{base}_window_starts"),
            &[start[0] as i64, start[1] as i64],
        );
        let ends = [(start[0] + size[0]) as i64, (start[1] + size[1]) as i64];
        let ends = self.int64s(&format!("{base}_window_ends"), &ends);
        let axes = self.int64s(&format!("{base}_window_axes"), &[2, 3]);
        let name = self.node("Slice", base, &[&x.name, &starts, &ends, &axes], vec![]);
        Ok(Val::new(name, Layout::ChannelsFirst, out))
    }

    /// tf.image.resize of images to the output's rows and columns (half-pixel centres,
    /// floor for nearest), from the largest centred window of the output's aspect
    /// ratio when `crop` is set (which needs the input's size).
    fn resize(
        &mut self,
        layer: &dyn Layer,
        config: &Value,
        x: &Val,
        out: &Shape,
        interpolation: &str,
        crop: bool,
    ) -> Result<Val> {
        let base = layer.name();
        let mut x = self.inner(x);
        let (height, width) = (out[1].unwrap_or(0), out[2].unwrap_or(0));
        let attrs = match interpolation {
            "bilinear" => vec![
                string("mode", "linear"),
                string("coordinate_transformation_mode", "half_pixel"),
            ],
            "nearest" => vec![
                string("mode", "nearest"),
                string("coordinate_transformation_mode", "tf_half_pixel_for_nn"),
                string("nearest_mode", "floor"),
            ],
            _ => {
                return Err(unsupported_field(
                    layer,
                    "interpolation",
                    config.get("interpolation"),
                ))
            }
        };
        if crop {
            let (Some(h), Some(w)) = (x.shape[1], x.shape[2]) else {
                return Err(unsupported_field(
                    layer,
                    "crop_to_aspect_ratio",
                    config.get("crop_to_aspect_ratio"),
                ));
            };
            // Keras's arithmetic for the window.
            let rows = (((w * height) as f64 / width as f64) as usize).clamp(1, h);
            let cols = (((h * width) as f64 / height as f64) as usize).clamp(1, w);
            let mut window_shape = x.shape.clone();
            (window_shape[1], window_shape[2]) = (Some(rows), Some(cols));
            x = self.window(
                &format!("{base}_crop"),
                &x,
                &window_shape,
                [(h - rows) / 2, (w - cols) / 2],
                [rows, cols],
            )?;
        }
        // The sizes of every axis: the batch and channels as they come.
        let shape = self.node("Shape", &format!("{base}_input_shape"), &[&x.name], vec![]);
        let start = self.int64s(&format!("{base}_start"), &[0]);
        let stop = self.int64s(&format!("{base}_stop"), &[2]);
        let kept = self.node(
            "Slice",
            &format!("{base}_batch_channels"),
            &[&shape, &start, &stop],
            vec![],
        );
        let size = self.int64s(&format!("{base}_size"), &[height as i64, width as i64]);
        let sizes = self.node(
            "Concat",
            &format!("{base}_sizes"),
            &[&kept, &size],
            vec![int("axis", 0)],
        );
        let name = self.node("Resize", base, &[&x.name, "", "", &sizes], attrs);
        Ok(Val::new(name, Layout::ChannelsFirst, out))
    }

    /// One layer call: its input values, its output's Keras shape.
    pub(super) fn layer(&mut self, layer: &dyn Layer, xs: &[Val], out: &Shape) -> Result<Val> {
        let config = layer.config();
        let base = layer.name().to_string();
        let one = || xs[0].clone();
        match layer.class_name() {
            "Conv1D" | "Conv2D" | "Conv3D" | "DepthwiseConv1D" | "DepthwiseConv2D"
            | "SeparableConv1D" | "SeparableConv2D" | "Conv1DTranspose" | "Conv2DTranspose"
            | "Conv3DTranspose" => self.convolution(layer, &config, &xs[0], out),
            "Dense" => self.dense(layer, &config, &xs[0], out),
            "BatchNormalization" => self.batch_norm(layer, &config, &xs[0], out),
            "MaxPooling1D"
            | "MaxPooling2D"
            | "MaxPooling3D"
            | "AveragePooling1D"
            | "AveragePooling2D"
            | "AveragePooling3D"
            | "GlobalAveragePooling1D"
            | "GlobalAveragePooling2D"
            | "GlobalAveragePooling3D"
            | "GlobalMaxPooling1D"
            | "GlobalMaxPooling2D"
            | "GlobalMaxPooling3D" => self.pooling(layer, &config, &xs[0], out),
            "Add" | "Subtract" | "Multiply" | "Average" | "Maximum" | "Minimum" | "Concatenate" => {
                self.merge(layer, &config, xs, out)
            }
            "Activation" => {
                let x = one();
                self.activation(layer, text(&config, "activation"), x, &base)
            }
            "ReLU" => {
                let x = one();
                let threshold = config
                    .get("threshold")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                let slope = config
                    .get("negative_slope")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                let max = config.get("max_value").and_then(Value::as_f64);
                if threshold != 0.0 {
                    return Err(unsupported_field(
                        layer,
                        "threshold",
                        config.get("threshold"),
                    ));
                }
                let y = if slope == 0.0 {
                    self.activation(layer, "relu", x, &format!("{base}_relu"))?
                } else {
                    let name = self.node(
                        "LeakyRelu",
                        &format!("{base}_leaky"),
                        &[&x.name],
                        vec![float("alpha", slope as f32)],
                    );
                    Val { name, ..x }
                };
                let y = match max {
                    Some(m) => {
                        let high = self.scalar(&format!("{base}_max"), m as f32);
                        let name = self.node("Min", &base, &[&y.name, &high], vec![]);
                        Val { name, ..y }
                    }
                    None => y,
                };
                Ok(y)
            }
            "PReLU" => {
                let x = self.in_layout(&xs[0], Layout::Keras);
                let alpha = self.constant(&format!("{base}_alpha"), &Self::weight(layer, "alpha")?);
                let name = self.node("PRelu", &base, &[&x.name, &alpha], vec![]);
                Ok(Val {
                    name,
                    shape: out.clone(),
                    ..x
                })
            }
            "Embedding" => {
                let x = self.in_layout(&xs[0], Layout::Keras);
                let table = self.constant(
                    &format!("{base}_embeddings"),
                    &Self::weight(layer, "embeddings")?,
                );
                let indices = self.node(
                    "Cast",
                    &format!("{base}_indices"),
                    &[&x.name],
                    vec![int("to", INT64 as i64)],
                );
                let name = self.node("Gather", &base, &[&table, &indices], vec![int("axis", 0)]);
                Ok(Val::new(name, Layout::Keras, out))
            }
            "LeakyReLU" => {
                let x = one();
                let slope = config
                    .get("negative_slope")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.3);
                let name = self.node(
                    "LeakyRelu",
                    &base,
                    &[&x.name],
                    vec![float("alpha", slope as f32)],
                );
                Ok(Val { name, ..x })
            }
            "ELU" => {
                let x = one();
                let alpha = config.get("alpha").and_then(Value::as_f64).unwrap_or(1.0);
                let name = self.node("Elu", &base, &[&x.name], vec![float("alpha", alpha as f32)]);
                Ok(Val { name, ..x })
            }
            "Softmax" => {
                let x = one();
                require_last_axis(layer, &config, x.rank())?;
                self.activation(layer, "softmax", x, &base)
            }
            "Flatten" => {
                let x = self.in_layout(&xs[0], Layout::Keras);
                let name = self.node("Flatten", &base, &[&x.name], vec![int("axis", 1)]);
                Ok(Val::new(name, Layout::Keras, out))
            }
            "Reshape" => {
                let x = self.in_layout(&xs[0], Layout::Keras);
                let mut target = vec![0];
                for d in &out[1..] {
                    target.push(d.map_or(-1, |d| d as i64));
                }
                let shape = self.int64s(&format!("{base}_shape"), &target);
                let name = self.node("Reshape", &base, &[&x.name, &shape], vec![]);
                Ok(Val::new(name, Layout::Keras, out))
            }
            "UnitNormalization" => {
                let x = self.in_layout(&xs[0], Layout::Keras);
                require_last_axis(layer, &config, x.rank())?;
                // Keras: x · rsqrt(max(Σx², 1e-12)) along the last axis.
                let squares = self.node(
                    "Mul",
                    &format!("{base}_squares"),
                    &[&x.name, &x.name],
                    vec![],
                );
                let axes = self.int64s(&format!("{base}_axes"), &[-1]);
                let sum = self.node(
                    "ReduceSum",
                    &format!("{base}_sum"),
                    &[&squares, &axes],
                    vec![int("keepdims", 1)],
                );
                let floor = self.scalar(&format!("{base}_floor"), 1e-12);
                let floored = self.node("Max", &format!("{base}_floored"), &[&sum, &floor], vec![]);
                let norm = self.node("Sqrt", &format!("{base}_norm"), &[&floored], vec![]);
                let name = self.node("Div", &base, &[&x.name, &norm], vec![]);
                Ok(Val {
                    name,
                    shape: out.clone(),
                    ..x
                })
            }
            "RepeatVector" => {
                let x = one();
                let n = config
                    .get("n")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| unsupported_field(layer, "n", config.get("n")))?;
                let axis = self.int64s(&format!("{base}_axis"), &[1]);
                let column = self.node(
                    "Unsqueeze",
                    &format!("{base}_column"),
                    &[&x.name, &axis],
                    vec![],
                );
                let times = self.int64s(&format!("{base}_times"), &[1, n, 1]);
                let name = self.node("Expand", &base, &[&column, &times], vec![]);
                Ok(Val::new(name, Layout::Keras, out))
            }
            "Permute" => {
                let x = self.in_layout(&xs[0], Layout::Keras);
                let dims = config
                    .get("dims")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let perm: Option<Vec<i64>> = std::iter::once(Some(0))
                    .chain(dims.iter().map(Value::as_i64))
                    .collect();
                let perm = perm
                    .filter(|p| p.len() == x.rank())
                    .ok_or_else(|| unsupported_field(layer, "dims", config.get("dims")))?;
                let name = self.node("Transpose", &base, &[&x.name], vec![ints("perm", &perm)]);
                Ok(Val::new(name, Layout::Keras, out))
            }
            "ZeroPadding1D" | "ZeroPadding2D" | "ZeroPadding3D" => {
                let x = self.inner(&xs[0]);
                let r = x.rank() - 2;
                let sides = pairs(&config, "padding", r)
                    .ok_or_else(|| unsupported_field(layer, "padding", config.get("padding")))?;
                let mut pads = vec![0; 2 * (r + 2)];
                for (axis, (before, after)) in sides.into_iter().enumerate() {
                    pads[2 + axis] = before;
                    pads[r + 4 + axis] = after;
                }
                let pads = self.int64s(&format!("{base}_pads"), &pads);
                let name = self.node(
                    "Pad",
                    &base,
                    &[&x.name, &pads],
                    vec![string("mode", "constant")],
                );
                Ok(Val::new(name, Layout::ChannelsFirst, out))
            }
            "Cropping1D" | "Cropping2D" | "Cropping3D" => {
                let x = self.inner(&xs[0]);
                let r = x.rank() - 2;
                let sides = pairs(&config, "cropping", r)
                    .ok_or_else(|| unsupported_field(layer, "cropping", config.get("cropping")))?;
                let end = |crop: i64| if crop == 0 { i64::MAX } else { -crop };
                let starts: Vec<i64> = sides.iter().map(|s| s.0).collect();
                let ends: Vec<i64> = sides.iter().map(|s| end(s.1)).collect();
                let axes: Vec<i64> = (2..r as i64 + 2).collect();
                let starts = self.int64s(&format!("{base}_starts"), &starts);
                let ends = self.int64s(&format!("{base}_ends"), &ends);
                let axes = self.int64s(&format!("{base}_axes"), &axes);
                let name = self.node("Slice", &base, &[&x.name, &starts, &ends, &axes], vec![]);
                Ok(Val::new(name, Layout::ChannelsFirst, out))
            }
            "UpSampling1D" | "UpSampling2D" | "UpSampling3D" => {
                let x = self.inner(&xs[0]);
                let size = sizes(layer, &config, "size", x.rank() - 2)?;
                let factors: Vec<f32> = [1.0, 1.0]
                    .into_iter()
                    .chain(size.iter().map(|&s| s as f32))
                    .collect();
                let scales = Tensor::new([factors.len()], factors)?;
                let scales = self.constant(&format!("{base}_scales"), &scales);
                let attrs = match config
                    .get("interpolation")
                    .and_then(Value::as_str)
                    .unwrap_or("nearest")
                {
                    "nearest" => vec![
                        string("mode", "nearest"),
                        string("coordinate_transformation_mode", "asymmetric"),
                        string("nearest_mode", "floor"),
                    ],
                    "bilinear" => vec![
                        string("mode", "linear"),
                        string("coordinate_transformation_mode", "half_pixel"),
                    ],
                    _ => {
                        return Err(unsupported_field(
                            layer,
                            "interpolation",
                            config.get("interpolation"),
                        ))
                    }
                };
                let name = self.node("Resize", &base, &[&x.name, "", &scales], attrs);
                Ok(Val::new(name, Layout::ChannelsFirst, out))
            }
            "Resizing" => {
                for flag in ["pad_to_aspect_ratio", "antialias"] {
                    if config.get(flag).and_then(Value::as_bool).unwrap_or(false) {
                        return Err(unsupported_field(layer, flag, config.get(flag)));
                    }
                }
                let crop = config
                    .get("crop_to_aspect_ratio")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                self.resize(
                    layer,
                    &config,
                    &xs[0],
                    out,
                    text(&config, "interpolation"),
                    crop,
                )
            }
            // In inference, the centred window of the output's aspect ratio, resized.
            "RandomCrop" => self.resize(layer, &config, &xs[0], out, "bilinear", true),
            "CenterCrop" => {
                let x = self.inner(&xs[0]);
                let (height, width) = (out[1].unwrap_or(0), out[2].unwrap_or(0));
                match (x.shape[1], x.shape[2]) {
                    (Some(h), Some(w)) if h >= height && w >= width => {
                        let (top, left) = ((h - height) / 2, (w - width) / 2);
                        self.window(&base, &x, out, [top, left], [height, width])
                    }
                    // Smaller along an axis: cropped to the aspect ratio and resized.
                    (Some(_), Some(_)) => self.resize(layer, &config, &x, out, "bilinear", true),
                    _ => Err(unsupported_field(layer, "height", config.get("height"))),
                }
            }
            "Rescaling" => {
                let x = one();
                let number = |f: &str, default: f64| -> Result<f32> {
                    match config.get(f) {
                        None => Ok(default as f32),
                        Some(v) => v
                            .as_f64()
                            .map(|v| v as f32)
                            .ok_or_else(|| unsupported_field(layer, f, Some(v))),
                    }
                };
                let (scale, offset) = (number("scale", 1.0)?, number("offset", 0.0)?);
                let s = self.scalar(&format!("{base}_scale"), scale);
                let scaled = self.node("Mul", &format!("{base}_scaled"), &[&x.name, &s], vec![]);
                let o = self.scalar(&format!("{base}_offset"), offset);
                let name = self.node("Add", &base, &[&scaled, &o], vec![]);
                Ok(Val {
                    name,
                    shape: out.clone(),
                    ..x
                })
            }
            "Normalization" => {
                let x = self.in_layout(&xs[0], Layout::Keras);
                if config
                    .get("invert")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                {
                    return Err(unsupported_field(layer, "invert", config.get("invert")));
                }
                let normalization = layer
                    .as_any()
                    .downcast_ref::<Normalization>()
                    .expect("the Normalization class is this type");
                // Statistics per channel (or one for all), as the last axis broadcasts.
                let channels = x.shape.last().copied().flatten().unwrap_or(1);
                let probe: Vec<usize> = x.shape.iter().map(|d| d.unwrap_or(1)).collect();
                let (mean, std) = normalization.statistics(&probe)?;
                if mean.len() != channels && mean.len() != 1 {
                    return Err(unsupported_field(layer, "axis", config.get("axis")));
                }
                let (mean, std) = (
                    Tensor::new([mean.len()], mean)?,
                    Tensor::new([std.len()], std)?,
                );
                // Keras: (x − mean) / max(√variance, 1e-7).
                let m = self.constant(&format!("{base}_mean"), &mean);
                let centred = self.node("Sub", &format!("{base}_centred"), &[&x.name, &m], vec![]);
                let d = self.constant(&format!("{base}_std"), &std);
                let name = self.node("Div", &base, &[&centred, &d], vec![]);
                Ok(Val {
                    name,
                    shape: out.clone(),
                    ..x
                })
            }
            "LayerNormalization" => {
                let x = self.in_layout(&xs[0], Layout::Keras);
                require_last_axis(layer, &config, x.rank())?;
                let channels = x.shape.last().copied().flatten().unwrap_or(1);
                let (gamma, beta) = scale_and_offset(layer, &config, channels)?;
                let g = self.constant(&format!("{base}_gamma"), &gamma);
                let b = self.constant(&format!("{base}_beta"), &beta);
                let epsilon = config
                    .get("epsilon")
                    .and_then(Value::as_f64)
                    .unwrap_or(1e-3) as f32;
                let name = self.node(
                    "LayerNormalization",
                    &base,
                    &[&x.name, &g, &b],
                    vec![int("axis", -1), float("epsilon", epsilon)],
                );
                Ok(Val {
                    name,
                    shape: out.clone(),
                    ..x
                })
            }
            "GroupNormalization" => {
                let x = self.inner(&xs[0]);
                require_last_axis(layer, &config, x.rank())?;
                let channels = x.shape.last().copied().flatten().unwrap_or(1);
                let groups = config.get("groups").and_then(Value::as_u64).unwrap_or(32) as usize;
                let epsilon = config
                    .get("epsilon")
                    .and_then(Value::as_f64)
                    .unwrap_or(1e-3) as f32;
                // Each group's channels are contiguous, as Keras groups them: normalize
                // (batch, group, everything else) per instance, then scale per channel.
                let grouped_shape =
                    self.int64s(&format!("{base}_grouped_shape"), &[0, groups as i64, -1]);
                let grouped = self.node(
                    "Reshape",
                    &format!("{base}_grouped"),
                    &[&x.name, &grouped_shape],
                    vec![],
                );
                let ones = self.constant(&format!("{base}_ones"), &Tensor::full([groups], 1.0));
                let zeros = self.constant(&format!("{base}_zeros"), &Tensor::zeros([groups]));
                let normalized = self.node(
                    "InstanceNormalization",
                    &format!("{base}_normalized"),
                    &[&grouped, &ones, &zeros],
                    vec![float("epsilon", epsilon)],
                );
                let shape = self.node("Shape", &format!("{base}_shape"), &[&x.name], vec![]);
                let mut y = self.node(
                    "Reshape",
                    &format!("{base}_ungrouped"),
                    &[&normalized, &shape],
                    vec![],
                );
                let per_channel: Vec<usize> = std::iter::once(channels)
                    .chain(std::iter::repeat_n(1, x.rank() - 2))
                    .collect();
                let flag = |f: &str| config.get(f).and_then(Value::as_bool).unwrap_or(true);
                if flag("scale") {
                    let gamma = Self::weight(layer, "gamma")?.reshape(per_channel.clone())?;
                    let g = self.constant(&format!("{base}_gamma"), &gamma);
                    let name = if flag("center") {
                        format!("{base}_scaled")
                    } else {
                        base.clone()
                    };
                    y = self.node("Mul", &name, &[&y, &g], vec![]);
                }
                if flag("center") {
                    let beta = Self::weight(layer, "beta")?.reshape(per_channel)?;
                    let b = self.constant(&format!("{base}_beta"), &beta);
                    y = self.node("Add", &base, &[&y, &b], vec![]);
                }
                Ok(Val {
                    name: y,
                    shape: out.clone(),
                    ..x
                })
            }
            "LayerScale" => {
                let x = self.in_layout(&xs[0], Layout::Keras);
                let factors = self.constant(
                    &format!("{base}_variable"),
                    &Self::weight(layer, "variable")?,
                );
                let name = self.node("Mul", &base, &[&x.name, &factors], vec![]);
                Ok(Val {
                    name,
                    shape: out.clone(),
                    ..x
                })
            }
            "CustomScaleLayer" => {
                let scale = config.get("scale").and_then(Value::as_f64).unwrap_or(1.0) as f32;
                let layout = if xs[0].spatial() {
                    Layout::ChannelsFirst
                } else {
                    Layout::Keras
                };
                let (a, b) = (
                    self.in_layout(&xs[0], layout),
                    self.in_layout(&xs[1], layout),
                );
                let s = self.scalar(&format!("{base}_scale"), scale);
                let scaled = self.node("Mul", &format!("{base}_scaled"), &[&b.name, &s], vec![]);
                let name = self.node("Add", &base, &[&a.name, &scaled], vec![]);
                Ok(Val {
                    name,
                    shape: out.clone(),
                    ..a
                })
            }
            // Training-only layers: the identity in inference.
            "Dropout" | "SpatialDropout1D" | "SpatialDropout2D" | "SpatialDropout3D"
            | "AlphaDropout" | "GaussianNoise" | "GaussianDropout" | "RandomFlip"
            | "RandomRotation" | "RandomTranslation" | "RandomZoom" | "RandomBrightness"
            | "RandomContrast" | "StochasticDepth" => Ok(one()),
            "InputLayer" => Ok(one()),
            class => Err(Error::unsupported(format!(
                "layer '{}' ({class}) has no ONNX form in convnet's export yet",
                layer.name()
            ))),
        }
    }
}
