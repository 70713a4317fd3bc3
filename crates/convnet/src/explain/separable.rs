//! What depthwise separable convolution saves: a Conv2D beside DepthwiseConv2D + 1x1
//! Conv2D and Keras's SeparableConv2D, built as real models, so output shapes come from
//! shape inference, parameters from `count_params()`, multiply-adds from the engine's
//! count and times from running them.

use crate::error::{Error, Result};
use crate::kernels::Padding;
use crate::layers::{format_shape, Conv2D, DepthwiseConv2D, Layer, SeparableConv2D};
use crate::model::{thousands, Call, Input, Model};
use crate::tensor::Tensor;
use std::fmt::Write;
use std::time::{Duration, Instant};

/// The three ways to compute the same shape, as models.
pub struct SeparableModels {
    /// The standard Conv2D(N, K) model.
    pub standard: Model,
    /// DepthwiseConv2D(K) followed by a 1x1 Conv2D(N), as two layers.
    pub two_step: Model,
    /// Keras's SeparableConv2D(N, K), the two steps in one layer.
    pub separable: Model,
}

/// Conv2D(N, K) against DepthwiseConv2D(K) → Conv2D(N, 1) and SeparableConv2D(N, K),
/// each on an `input` = [H, W, C] image.
pub fn separable_models(
    input: [usize; 3],
    filters: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
) -> Result<SeparableModels> {
    if input.contains(&0) || filters == 0 || kernel == 0 || stride == 0 {
        return Err(Error::invalid(
            "sizes",
            "the input's sizes, --filters, --kernel and --stride must be at least 1",
        ));
    }
    let x = Input::new(input);
    let standard = Model::new(
        &x,
        Conv2D::new(filters, (kernel, kernel))
            .strides((stride, stride))
            .padding(padding)
            .named("conv2d")
            .call(&x),
    )?
    .named("standard");
    let x = Input::new(input);
    let depthwise = DepthwiseConv2D::new((kernel, kernel))
        .strides((stride, stride))
        .padding(padding)
        .named("depthwise_conv2d")
        .call(&x);
    let pointwise = Conv2D::new(filters, (1, 1))
        .named("conv2d_1x1")
        .call(&depthwise);
    let two_step = Model::new(&x, pointwise)?.named("depthwise_then_pointwise");
    let x = Input::new(input);
    let separable = Model::new(
        &x,
        SeparableConv2D::new(filters, (kernel, kernel))
            .strides((stride, stride))
            .padding(padding)
            .named("separable_conv2d")
            .call(&x),
    )?
    .named("separable");
    Ok(SeparableModels {
        standard,
        two_step,
        separable,
    })
}

/// Parameters and multiply-adds of each, by the formulas the explanation prints.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeparableCounts {
    /// Output rows, columns and channels, from shape inference.
    pub output: [usize; 3],
    /// The standard Conv2D's parameters: K·K·C·N weights plus N biases.
    pub standard_params: usize,
    /// The DepthwiseConv2D's parameters: K·K·C weights plus C biases.
    pub depthwise_params: usize,
    /// The 1x1 Conv2D's parameters: C·N weights plus N biases.
    pub pointwise_params: usize,
    /// SeparableConv2D: depthwise kernel, pointwise kernel and one bias.
    pub separable_params: usize,
    /// The standard Conv2D's multiply-adds per image.
    pub standard_macs: usize,
    /// The DepthwiseConv2D's multiply-adds per image.
    pub depthwise_macs: usize,
    /// The 1x1 Conv2D's multiply-adds per image.
    pub pointwise_macs: usize,
}

fn output_hwc(model: &Model) -> Result<[usize; 3]> {
    let shape = &model.output_shapes()[0];
    let d = |i: usize| {
        shape
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| Error::invalid("input", "the output shape is not fully known"))
    };
    Ok([d(1)?, d(2)?, d(3)?])
}

/// The counts by formula, from the inferred output shapes.
pub fn separable_counts(
    models: &SeparableModels,
    channels: usize,
    kernel: usize,
) -> Result<SeparableCounts> {
    let [oh, ow, n] = output_hwc(&models.standard)?;
    let (c, k2, pixels) = (channels, kernel * kernel, oh * ow);
    Ok(SeparableCounts {
        output: [oh, ow, n],
        standard_params: k2 * c * n + n,
        depthwise_params: k2 * c + c,
        pointwise_params: c * n + n,
        separable_params: k2 * c + c * n + n,
        standard_macs: pixels * k2 * c * n,
        depthwise_macs: pixels * k2 * c,
        pointwise_macs: pixels * c * n,
    })
}

/// Median time of one inference at batch 1 over about `budget`.
fn time_ms(model: &Model, budget: Duration) -> Result<f64> {
    let shape: Vec<usize> = std::iter::once(1)
        .chain(model.input_shapes()[0][1..].iter().map(|d| d.unwrap_or(1)))
        .collect();
    let len: usize = shape.iter().product();
    // Varied values: zeros would time the same but read as no data.
    let x = Tensor::new(shape, (0..len).map(|i| (i % 97) as f32 / 97.0).collect())?;
    model.apply(&[&x])?;
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 || (start.elapsed() < budget && times.len() < 200) {
        let t = Instant::now();
        model.apply(&[&x])?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn fraction(n: usize, d: usize) -> String {
    format!(
        "{} / {} = {:.4}",
        thousands(n),
        thousands(d),
        n as f64 / d as f64
    )
}

/// The whole comparison as text; `timing` runs each model for about that long.
pub fn explain_separable(
    input: [usize; 3],
    filters: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
    timing: Option<Duration>,
) -> Result<String> {
    let models = separable_models(input, filters, kernel, stride, padding)?;
    let counts = separable_counts(&models, input[2], kernel)?;
    let [h, w, c] = input;
    let (n, k) = (filters, kernel);
    let [oh, ow, _] = counts.output;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "A {k}x{k} convolution from {h}x{w}x{c} to {n} channels, stride {stride}, padding {}\n",
        padding.keras_name()
    );
    let _ = writeln!(out, "Output shapes (shape inference):");
    for (name, model) in [
        ("Conv2D", &models.standard),
        ("DepthwiseConv2D → 1x1 Conv2D", &models.two_step),
        ("SeparableConv2D", &models.separable),
    ] {
        let _ = writeln!(
            out,
            "  {name:<30} {}",
            format_shape(&model.output_shapes()[0])
        );
    }
    let _ = writeln!(out, "\nParameters (kernel + bias):");
    let _ = writeln!(
        out,
        "  Conv2D                 {k}·{k}·{c}·{n} + {n} = {}",
        thousands(counts.standard_params)
    );
    let _ = writeln!(
        out,
        "  DepthwiseConv2D        {k}·{k}·{c} + {c} = {}\n  1x1 Conv2D             {c}·{n} + {n} = {}   (together {})",
        thousands(counts.depthwise_params),
        thousands(counts.pointwise_params),
        thousands(counts.depthwise_params + counts.pointwise_params)
    );
    let _ = writeln!(
        out,
        "  SeparableConv2D        {k}·{k}·{c} + {c}·{n} + {n} = {}   (one bias, after the pointwise step)",
        thousands(counts.separable_params)
    );
    let _ = writeln!(
        out,
        "  ratio                  {}",
        fraction(counts.separable_params, counts.standard_params)
    );
    let _ = writeln!(
        out,
        "  without biases         ({k}²·{c} + {c}·{n}) / ({k}²·{c}·{n}) = 1/N + 1/K² = 1/{n} + 1/{} = {:.4}",
        k * k,
        1.0 / n as f64 + 1.0 / (k * k) as f64
    );
    let _ = writeln!(
        out,
        "\nMultiply-adds per image ({oh}x{ow} output positions):"
    );
    let _ = writeln!(
        out,
        "  Conv2D                 {oh}·{ow}·{k}·{k}·{c}·{n} = {}",
        thousands(counts.standard_macs)
    );
    let _ = writeln!(
        out,
        "  depthwise + pointwise  {oh}·{ow}·{k}·{k}·{c} + {oh}·{ow}·{c}·{n} = {} + {} = {}",
        thousands(counts.depthwise_macs),
        thousands(counts.pointwise_macs),
        thousands(counts.depthwise_macs + counts.pointwise_macs)
    );
    let _ = writeln!(
        out,
        "  ratio                  {}",
        fraction(
            counts.depthwise_macs + counts.pointwise_macs,
            counts.standard_macs
        )
    );
    if let Some(budget) = timing {
        let _ = writeln!(
            out,
            "\nMeasured here, one image through the engine (median):"
        );
        let standard = time_ms(&models.standard, budget)?;
        let two = time_ms(&models.two_step, budget)?;
        let separable = time_ms(&models.separable, budget)?;
        for (name, ms) in [
            ("Conv2D", standard),
            ("DepthwiseConv2D → 1x1 Conv2D", two),
            ("SeparableConv2D", separable),
        ] {
            let _ = writeln!(
                out,
                "  {name:<30} {ms:>9.3} ms   ({:.2}x the Conv2D's time)",
                ms / standard
            );
        }
    }
    Ok(out)
}
