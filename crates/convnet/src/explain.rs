//! Convolution explained with the user's own numbers, as the design notes explain it:
//! the output-size formula with the numbers put in, the padded input, every output
//! element written out as its sum of products, and the output matrix.
//!
//! The sums are computed here term by term (the text is the computation); a test checks
//! them against the engine's Conv2D.

use crate::error::{Error, Result};
use crate::kernels::conv::{output_length, Padding};
use serde_json::Value;
use std::fmt::Write;

#[cfg(feature = "plots")]
mod animate;
mod inception;
mod separable;
#[cfg(feature = "plots")]
pub use animate::{conv_animation, AnimationFrame, ConvAnimation, Layout, HIGHLIGHT, MAX_STEPS};
pub use inception::InceptionBlock;
pub use separable::{
    explain_separable, separable_counts, separable_models, SeparableCounts, SeparableModels,
};

/// How the input is padded: Keras's `valid` and `same`, or `n` zeros on every side.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExplainPadding {
    /// Keras's `valid`: no padding, so the output shrinks by the kernel's reach.
    Valid,
    /// Keras's `same`: zeros around the input so that stride 1 keeps its size.
    Same,
    /// This many zeros on every side, as in the textbooks (not a Keras option).
    Zeros(usize),
}

impl std::str::FromStr for ExplainPadding {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "valid" => Ok(ExplainPadding::Valid),
            "same" => Ok(ExplainPadding::Same),
            n => n.parse().map(ExplainPadding::Zeros).map_err(|_| {
                Error::invalid(
                    "padding",
                    format!("padding must be valid, same or a number of zeros, not '{n}'"),
                )
            }),
        }
    }
}

/// A matrix written as rows separated by `;` and values by spaces or commas:
/// `"1 2 3; 4 5 6"`.
pub fn parse_matrix(text: &str, what: &str) -> Result<Vec<Vec<f64>>> {
    let rows: Vec<Vec<f64>> = text
        .split(';')
        .map(|row| {
            row.split(|c: char| c.is_whitespace() || c == ',')
                .filter(|v| !v.is_empty())
                .map(|v| {
                    v.parse::<f64>()
                        .map_err(|_| Error::invalid(what, format!("{what}: '{v}' is not a number")))
                })
                .collect::<Result<Vec<f64>>>()
        })
        .collect::<Result<_>>()?;
    let rows: Vec<Vec<f64>> = rows.into_iter().filter(|r| !r.is_empty()).collect();
    let width = rows.first().map_or(0, Vec::len);
    if rows.is_empty() || width == 0 {
        return Err(Error::invalid(
            what,
            format!("{what} is empty: write rows separated by ';', e.g. \"1 2; 3 4\""),
        ));
    }
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != width) {
        return Err(Error::invalid(
            what,
            format!(
                "{what}: row {} has {} values but row 1 has {width}",
                i + 1,
                r.len()
            ),
        ));
    }
    Ok(rows)
}

/// A number as a person writes it: `6`, `-1`, `0.5`, `0.3333`.
fn number(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A factor in a product: negative numbers in parentheses, `2·(-1)`.
fn factor(v: f64) -> String {
    if v < 0.0 {
        format!("({})", number(v))
    } else {
        number(v)
    }
}

fn write_matrix(out: &mut String, title: &str, m: &[Vec<f64>]) {
    let cells: Vec<Vec<String>> = m
        .iter()
        .map(|r| r.iter().map(|&v| number(v)).collect())
        .collect();
    let width = cells.iter().flatten().map(String::len).max().unwrap_or(1);
    let _ = writeln!(
        out,
        "{title} ({}x{}):",
        m.len(),
        m.first().map_or(0, Vec::len)
    );
    for row in cells {
        let _ = writeln!(
            out,
            "  {}",
            row.iter()
                .map(|c| format!("{c:>width$}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}

/// A convolution worked out: the padded input, the kernel as it slides (rotated for
/// true convolution), and every output position's products and sum. The text of
/// [`explain_conv`] and the frames of `explain::animate` are both written from it.
#[derive(Clone, Debug)]
pub struct ConvWorking {
    /// The input matrix as given, before padding.
    pub input: Vec<Vec<f64>>,
    /// The input with its zeros around it; the kernel slides over this.
    pub padded: Vec<Vec<f64>>,
    /// Zeros added (top, bottom, left, right).
    pub pad: (usize, usize, usize, usize),
    /// The kernel as it is slid: rotated 180° when `flip`.
    pub kernel: Vec<Vec<f64>>,
    /// The step of the kernel along rows and columns (Keras's `strides`; default 1).
    pub stride: usize,
    /// The gap between kernel taps (Keras's `dilation_rate`; default 1).
    pub dilation: usize,
    /// The padding asked for, from which `pad` was worked out.
    pub padding: ExplainPadding,
    /// Whether the kernel is rotated 180° first (true convolution) instead of Keras's
    /// cross-correlation.
    pub flip: bool,
    /// The sums of products, one per output position, term by term in f64.
    pub output: Vec<Vec<f64>>,
    /// Each position's products as written (`2·(-1)`), row-major over positions, in
    /// the kernel's row-major order.
    pub terms: Vec<Vec<String>>,
}

impl ConvWorking {
    /// The output's (rows, columns).
    pub fn output_size(&self) -> (usize, usize) {
        (self.output.len(), self.output.first().map_or(0, Vec::len))
    }

    /// The padded-input cells (row, column) under the kernel's taps at output (i, j),
    /// in the kernel's row-major order.
    pub fn window(&self, i: usize, j: usize) -> Vec<(usize, usize)> {
        let (kh, kw) = (self.kernel.len(), self.kernel[0].len());
        (0..kh)
            .flat_map(|m| {
                (0..kw).map(move |n| {
                    (
                        i * self.stride + m * self.dilation,
                        j * self.stride + n * self.dilation,
                    )
                })
            })
            .collect()
    }

    /// `S(i,j) = 1·(-1) + 2·0 + … = 6`: the products at (i, j) and their sum `value`.
    pub fn sum_text(&self, i: usize, j: usize, value: f64) -> String {
        let terms = &self.terms[i * self.output_size().1 + j];
        format!("S({i},{j}) = {} = {}", terms.join(" + "), number(value))
    }
}

/// Works a convolution out: checks the settings, pads the input, and sums every
/// position's products.
pub fn work_conv(
    input: &[Vec<f64>],
    kernel: &[Vec<f64>],
    stride: usize,
    padding: ExplainPadding,
    dilation: usize,
    flip: bool,
) -> Result<ConvWorking> {
    if stride == 0 || dilation == 0 {
        return Err(Error::invalid(
            "stride",
            "stride and dilation must be at least 1",
        ));
    }
    if input.is_empty() || input[0].is_empty() || kernel.is_empty() || kernel[0].is_empty() {
        return Err(Error::invalid(
            "input",
            "the input and the kernel need values",
        ));
    }
    let (h, w) = (input.len(), input[0].len());
    let (kh, kw) = (kernel.len(), kernel[0].len());
    let kernel: Vec<Vec<f64>> = if flip {
        kernel
            .iter()
            .rev()
            .map(|r| r.iter().rev().copied().collect())
            .collect()
    } else {
        kernel.to_vec()
    };
    let (eh, ew) = ((kh - 1) * dilation + 1, (kw - 1) * dilation + 1);
    // (output, padding before, padding after) along each axis.
    let axis = |n: usize, k: usize, e: usize| -> Result<(usize, usize, usize)> {
        match padding {
            ExplainPadding::Valid => output_length(n, k, stride, dilation, Padding::Valid),
            ExplainPadding::Same => output_length(n, k, stride, dilation, Padding::Same),
            ExplainPadding::Zeros(p) => {
                (n + 2 * p >= e).then(|| ((n + 2 * p - e) / stride + 1, p, p))
            }
        }
        .ok_or_else(|| {
            Error::invalid(
                "kernel",
                format!("the kernel (extent {e}) is larger than the padded input ({n} + padding)"),
            )
        })
    };
    let (oh, top, bottom) = axis(h, kh, eh)?;
    let (ow, left, right) = axis(w, kw, ew)?;
    let padded: Vec<Vec<f64>> = (0..h + top + bottom)
        .map(|r| {
            (0..w + left + right)
                .map(|c| {
                    if r >= top && r < top + h && c >= left && c < left + w {
                        input[r - top][c - left]
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let mut working = ConvWorking {
        input: input.to_vec(),
        padded,
        pad: (top, bottom, left, right),
        kernel,
        stride,
        dilation,
        padding,
        flip,
        output: vec![vec![0.0; ow]; oh],
        terms: Vec::with_capacity(oh * ow),
    };
    for i in 0..oh {
        for j in 0..ow {
            let mut terms = Vec::with_capacity(kh * kw);
            let mut sum = 0.0;
            for (&(r, c), &k) in working
                .window(i, j)
                .iter()
                .zip(working.kernel.iter().flatten())
            {
                let v = working.padded[r][c];
                terms.push(format!("{}·{}", factor(v), factor(k)));
                sum += v * k;
            }
            working.output[i][j] = sum;
            working.terms.push(terms);
        }
    }
    Ok(working)
}

/// The whole explanation, and the output matrix.
pub fn explain_conv(
    input: &[Vec<f64>],
    kernel: &[Vec<f64>],
    stride: usize,
    padding: ExplainPadding,
    dilation: usize,
    flip: bool,
) -> Result<(String, Vec<Vec<f64>>)> {
    let working = work_conv(input, kernel, stride, padding, dilation, flip)?;
    let (h, w) = (input.len(), input[0].len());
    let (kh, kw) = (kernel.len(), kernel[0].len());
    let (eh, ew) = ((kh - 1) * dilation + 1, (kw - 1) * dilation + 1);
    let (top, bottom, left, right) = working.pad;
    let (oh, ow) = working.output_size();

    let mut out = String::new();
    let pad_name = match padding {
        ExplainPadding::Valid => "valid (no padding)".to_string(),
        ExplainPadding::Same => "same".to_string(),
        ExplainPadding::Zeros(p) => {
            format!("{p} zero{} on each side", if p == 1 { "" } else { "s" })
        }
    };
    let _ = writeln!(out, "Convolution of a {h}x{w} input with a {kh}x{kw} kernel: stride {stride}, padding {pad_name}, dilation {dilation}\n");
    let _ = writeln!(
        out,
        "Output size = (input − kernel + 2·padding) / stride + 1  (rounded down)"
    );
    if dilation > 1 {
        let _ = writeln!(out, "  with dilation {dilation} the kernel spans (k − 1)·{dilation} + 1: {eh} rows, {ew} columns");
    }
    for (name, n, e, before, after, o) in [
        ("rows", h, eh, top, bottom, oh),
        ("columns", w, ew, left, right, ow),
    ] {
        let pad = if before == after {
            format!("2·{before}")
        } else {
            format!("{before} + {after}")
        };
        let _ = writeln!(out, "  {name:<8} ({n} − {e} + {pad}) / {stride} + 1 = {o}");
    }
    if padding == ExplainPadding::Same && (top != bottom || left != right) {
        let _ = writeln!(out, "  'same' pads {top} above, {bottom} below, {left} left, {right} right: the odd row or column goes at the bottom or right, as in TensorFlow");
    }
    let _ = writeln!(out);

    write_matrix(&mut out, "Input", input);
    if top + bottom + left + right > 0 {
        write_matrix(&mut out, "Padded input", &working.padded);
    }
    write_matrix(
        &mut out,
        if flip {
            "Kernel, rotated 180°"
        } else {
            "Kernel"
        },
        &working.kernel,
    );
    let _ = writeln!(out);
    if flip {
        let _ = writeln!(out, "True convolution: the kernel is rotated 180° and then slid over the input,\nS(i,j) = Σm Σn I(m,n)·K(i−m, j−n).\n");
    } else {
        let _ = writeln!(out, "Deep-learning layers (Keras's Conv2D) compute cross-correlation: the kernel slides\nover the input as it is, S(i,j) = Σm Σn I(i·s+m, j·s+n)·K(m,n). (--flip shows true\nconvolution, which rotates the kernel 180° first.)\n");
    }
    for i in 0..oh {
        for j in 0..ow {
            let _ = writeln!(out, "{}", working.sum_text(i, j, working.output[i][j]));
        }
    }
    let _ = writeln!(out);
    write_matrix(&mut out, "Output", &working.output);
    Ok((out, working.output))
}

/// A model explained layer by layer: output-size and parameter arithmetic with the
/// numbers put in, multiply-adds, activation memory and receptive field per sample.
pub fn explain_model(model: &crate::model::Model) -> String {
    use crate::model::thousands;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Model \"{}\": each layer's arithmetic, per sample\n",
        model.name()
    );
    let (mut total_params, mut total_macs, mut total_memory) = (0usize, 0usize, 0usize);
    // Receptive field and jump (input pixels between neighbouring outputs) per layer name.
    let mut field: std::collections::HashMap<String, (usize, usize)> = Default::default();
    let output_shapes: std::collections::HashMap<String, crate::layers::Shape> =
        model.layer_output_shapes().into_iter().collect();
    for (index, layer) in model.all_layers().enumerate() {
        if model.is_sequential() && layer.class_name() == "InputLayer" {
            continue;
        }
        let config = layer.config();
        let inputs = model.first_input_shapes(index).unwrap_or_default();
        let output = output_shapes.get(layer.name()).cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "{} ({})  {} → {}",
            layer.name(),
            layer.class_name(),
            inputs
                .iter()
                .map(crate::layers::format_shape)
                .collect::<Vec<_>>()
                .join(" + "),
            crate::layers::format_shape(&output)
        );
        let input = inputs.first().cloned().unwrap_or_default();
        let dim = |s: &crate::layers::Shape, i: usize| s.get(i).copied().flatten().unwrap_or(0);
        let pair = |key: &str| -> Option<(usize, usize)> {
            let v = config.get(key)?.as_array()?;
            Some((v.first()?.as_u64()? as usize, v.get(1)?.as_u64()? as usize))
        };
        let window = pair("kernel_size").or_else(|| pair("pool_size"));
        let (stride, dilation) = (
            pair("strides").unwrap_or((1, 1)),
            pair("dilation_rate").unwrap_or((1, 1)),
        );
        let incoming = inputs.len().max(1);
        let (mut rf, mut jump) = (1usize, 1usize);
        for i in 0..incoming {
            if let Some(&(r, j)) = model
                .input_layer_names(index)
                .get(i)
                .and_then(|n| field.get(n))
            {
                rf = rf.max(r);
                jump = jump.max(j);
            }
        }
        if let (Some((kh, kw)), true) = (
            window,
            layer.class_name() != "Conv2DTranspose" && input.len() == 4,
        ) {
            let padding = config
                .get("padding")
                .and_then(Value::as_str)
                .unwrap_or("valid");
            for (name, axis, k, s, d) in [
                ("rows", 1, kh, stride.0, dilation.0),
                ("columns", 2, kw, stride.1, dilation.1),
            ] {
                let n = dim(&input, axis);
                let e = (k - 1) * d + 1;
                let total = if padding == "same" {
                    ((n.div_ceil(s).max(1) - 1) * s + e).saturating_sub(n)
                } else {
                    0
                };
                let pad = if total % 2 == 0 {
                    format!("2·{}", total / 2)
                } else {
                    format!("{} + {}", total / 2, total - total / 2)
                };
                let _ = writeln!(
                    out,
                    "  {name:<8} ({n} − {e} + {pad}) / {s} + 1 = {}",
                    dim(&output, axis)
                );
            }
            rf += (((kh - 1) * dilation.0).max((kw - 1) * dilation.1)) * jump;
            jump *= stride.0.max(stride.1);
        }
        field.insert(layer.name().to_string(), (rf, jump));

        let params: usize = layer.weights().iter().map(|w| w.value.len()).sum();
        let cin = input.last().copied().flatten().unwrap_or(0);
        let positions: usize = output
            .iter()
            .skip(1)
            .rev()
            .skip(1)
            .map(|d| d.unwrap_or(1))
            .product::<usize>()
            .max(1);
        let cout = output.last().copied().flatten().unwrap_or(0);
        let get = |key: &str| config.get(key).and_then(Value::as_u64).unwrap_or(1) as usize;
        let use_bias = config
            .get("use_bias")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let bias = |n: usize| {
            if use_bias {
                format!(" + {n}")
            } else {
                String::new()
            }
        };
        let (arithmetic, macs) = match (layer.class_name(), window) {
            ("Conv2D", Some((kh, kw))) => {
                let g = get("groups");
                (
                    format!("{kh}·{kw}·{}·{cout}{}", cin / g, bias(cout)),
                    positions * cout * kh * kw * cin / g,
                )
            }
            ("DepthwiseConv2D", Some((kh, kw))) => {
                let m = get("depth_multiplier");
                (
                    format!("{kh}·{kw}·{cin}·{m}{}", bias(cin * m)),
                    positions * cin * m * kh * kw,
                )
            }
            ("SeparableConv2D", Some((kh, kw))) => {
                let m = get("depth_multiplier");
                (
                    format!("{kh}·{kw}·{cin}·{m} + {}·{cout}{}", cin * m, bias(cout)),
                    positions * (cin * m * kh * kw + cin * m * cout),
                )
            }
            ("Conv2DTranspose", Some((kh, kw))) => (
                format!("{kh}·{kw}·{cout}·{cin}{}", bias(cout)),
                dim(&input, 1) * dim(&input, 2) * cin * kh * kw * cout,
            ),
            ("Dense", _) => (
                format!("{cin}·{cout}{}", bias(cout)),
                positions * cin * cout,
            ),
            ("BatchNormalization", _) => (
                format!(
                    "4·{} (γ, β trainable; moving mean and variance not)",
                    params / 4
                ),
                0,
            ),
            (_, Some((ph, pw))) => (String::new(), positions * cout * ph * pw),
            _ => (String::new(), 0),
        };
        if params > 0 {
            let text = if arithmetic.is_empty() {
                thousands(params)
            } else {
                format!("{arithmetic} = {}", thousands(params))
            };
            let _ = writeln!(out, "  params   {text}");
        }
        // What a standard Conv2D with the same window and channels would cost: the
        // saving of the depthwise and separable layers.
        if let (Some((kh, kw)), "SeparableConv2D" | "DepthwiseConv2D") =
            (window, layer.class_name())
        {
            let full_params = kh * kw * cin * cout + if use_bias { cout } else { 0 };
            let full_macs = positions * kh * kw * cin * cout;
            let _ = writeln!(
                out,
                "  saving   a Conv2D {kh}x{kw} from {cin} to {cout} channels: {kh}·{kw}·{cin}·{cout}{} = {} params, {} FLOPs; this layer has {:.1}% of its parameters and {:.1}% of its multiply-adds",
                bias(cout),
                thousands(full_params),
                thousands(2 * full_macs),
                100.0 * params as f64 / full_params.max(1) as f64,
                100.0 * macs as f64 / full_macs.max(1) as f64
            );
            let _ = if layer.class_name() == "SeparableConv2D" {
                writeln!(
                    out,
                    "           (without biases, 1/N + 1/K² = 1/{cout} + 1/{} = {:.4}, for a depth multiplier of 1)",
                    kh * kw,
                    1.0 / cout as f64 + 1.0 / (kh * kw) as f64
                )
            } else {
                writeln!(
                    out,
                    "           (each channel filtered alone: 1/{cin} of the full products; a 1x1 Conv2D after it mixes the channels)"
                )
            };
        }
        let memory = output
            .iter()
            .skip(1)
            .map(|d| d.unwrap_or(1))
            .product::<usize>()
            * 4;
        if macs > 0 {
            let _ = writeln!(
                out,
                "  FLOPs    {} (multiply-adds × 2)",
                thousands(2 * macs)
            );
        }
        let _ = writeln!(
            out,
            "  memory   {} for the output  ·  receptive field {rf}x{rf}\n",
            crate::model::readable_size(memory)
        );
        total_params += params;
        total_macs += macs;
        total_memory += memory;
    }
    let _ = writeln!(
        out,
        "Total: {} parameters ({}), {} FLOPs and {} of activations per sample",
        thousands(total_params),
        crate::model::readable_size(total_params * 4),
        thousands(2 * total_macs),
        crate::model::readable_size(total_memory)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worked_example_gives_six_everywhere() {
        let input = parse_matrix("1 2 3 4; 5 6 7 8; 9 10 11 12; 13 14 15 16", "input").unwrap();
        let kernel = parse_matrix("-1 0 1; -1 0 1; -1 0 1", "kernel").unwrap();
        let (text, output) =
            explain_conv(&input, &kernel, 1, ExplainPadding::Valid, 1, false).unwrap();
        assert_eq!(output, vec![vec![6.0, 6.0], vec![6.0, 6.0]]);
        assert!(
            text.contains(
                "S(0,0) = 1·(-1) + 2·0 + 3·1 + 5·(-1) + 6·0 + 7·1 + 9·(-1) + 10·0 + 11·1 = 6"
            ),
            "{text}"
        );
        assert!(
            text.contains("rows     (4 − 3 + 2·0) / 1 + 1 = 2"),
            "{text}"
        );
        // True convolution flips the kernel: the edge detector then gives −6.
        let (_, flipped) =
            explain_conv(&input, &kernel, 1, ExplainPadding::Valid, 1, true).unwrap();
        assert_eq!(flipped, vec![vec![-6.0, -6.0], vec![-6.0, -6.0]]);
    }

    #[test]
    fn same_padding_is_shown_side_by_side() {
        let input = parse_matrix("1 2 3 4; 5 6 7 8; 9 10 11 12; 13 14 15 16", "input").unwrap();
        let kernel = parse_matrix("1 1; 1 1", "kernel").unwrap();
        let (text, output) =
            explain_conv(&input, &kernel, 1, ExplainPadding::Same, 1, false).unwrap();
        assert_eq!(output.len(), 4);
        assert!(
            text.contains("(4 − 2 + 0 + 1) / 1 + 1 = 4")
                && text.contains("goes at the bottom or right"),
            "{text}"
        );
        assert_eq!(
            output[3][3], 16.0,
            "the bottom-right window holds 16 and three zeros"
        );
    }

    #[test]
    fn bad_matrices_name_the_problem() {
        assert!(parse_matrix("1 2; 3", "input")
            .unwrap_err()
            .to_string()
            .contains("row 2 has 1 values"));
        assert!(parse_matrix("1 x", "kernel")
            .unwrap_err()
            .to_string()
            .contains("'x' is not a number"));
        let big = parse_matrix("1 2 3; 4 5 6; 7 8 9", "kernel").unwrap();
        let small = parse_matrix("1 2; 3 4", "input").unwrap();
        assert!(
            explain_conv(&small, &big, 1, ExplainPadding::Valid, 1, false)
                .unwrap_err()
                .to_string()
                .contains("larger than")
        );
    }
}
