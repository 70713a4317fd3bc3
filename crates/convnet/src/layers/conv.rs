//! Conv2D, and the pieces every convolution layer shares: the window arithmetic
//! ([`Window`]), the NHWC input check, and the bias-plus-activation epilogue.

use super::declare::{self, ChannelsLast, NullOnly};
use super::prepared_kernel::PreparedKernel;
use super::{single, Fusion, Layer, LayerBase, OutputColumns, Saved, Shape};
use crate::activations::ActivationFn;
use crate::constraints::Constraint;
use crate::error::Result;
use crate::initializers::{Initializer, Rng};
use crate::kernels::conv::{self, output_length, ConvGeometry, Padding};
use crate::kernels::depthwise::with_pointwise::Pointwise;
use crate::kernels::Epilogue;
use crate::regularizers::Regularizer;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::borrow::Cow;

/// A sliding window: size, strides, padding and dilation, as Keras's conv and pooling
/// layers take them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub size: (usize, usize),
    pub strides: (usize, usize),
    pub padding: Padding,
    pub dilation: (usize, usize),
}

impl Window {
    pub fn new(size: (usize, usize)) -> Self {
        Window {
            size,
            strides: (1, 1),
            padding: Padding::Valid,
            dilation: (1, 1),
        }
    }

    pub(super) fn validate(&self, layer: &dyn Layer, size_name: &str) -> Result<()> {
        for (what, (a, b)) in [
            (size_name, self.size),
            ("strides", self.strides),
            ("dilation_rate", self.dilation),
        ] {
            if a == 0 || b == 0 {
                return Err(layer.shape_error(&format!("{what} must be positive, got ({a}, {b})")));
            }
        }
        if (self.strides.0 > 1 || self.strides.1 > 1)
            && (self.dilation.0 > 1 || self.dilation.1 > 1)
        {
            return Err(layer.shape_error(
                "strides > 1 cannot be combined with dilation_rate > 1 (as in Keras)",
            ));
        }
        Ok(())
    }

    /// The output length along one spatial axis (0 rows, 1 columns) and its padding,
    /// with the formula in the error when a `valid` window does not fit.
    pub(super) fn axis(
        &self,
        layer: &dyn Layer,
        axis: usize,
        input: usize,
    ) -> Result<(usize, usize)> {
        let pick = |p: (usize, usize)| if axis == 0 { p.0 } else { p.1 };
        let (k, s, d) = (pick(self.size), pick(self.strides), pick(self.dilation));
        output_length(input, k, s, d, self.padding)
            .map(|(out, before, _)| (out, before))
            .ok_or_else(|| {
                layer.shape_error(&format!(
                    "the {} window of size {} (dilated extent {}) is larger than the input's {} {} with padding 'valid'",
                    if axis == 0 { "vertical" } else { "horizontal" },
                    k,
                    (k - 1) * d + 1,
                    if axis == 0 { "height" } else { "width" },
                    input
                ))
            })
    }

    /// The spatial output shape for an NHWC input shape (sizes may be unknown).
    pub(super) fn output_hw(
        &self,
        layer: &dyn Layer,
        h: Option<usize>,
        w: Option<usize>,
    ) -> Result<(Option<usize>, Option<usize>)> {
        let out = |axis, d: Option<usize>| {
            d.map(|d| self.axis(layer, axis, d).map(|o| o.0))
                .transpose()
        };
        Ok((out(0, h)?, out(1, w)?))
    }

    /// The kernel geometry for a concrete NHWC input.
    pub(super) fn geometry(
        &self,
        layer: &dyn Layer,
        input: &[usize],
        out_c: usize,
        groups: usize,
    ) -> Result<ConvGeometry> {
        let (out_h, pad_top) = self.axis(layer, 0, input[1])?;
        let (out_w, pad_left) = self.axis(layer, 1, input[2])?;
        Ok(ConvGeometry {
            batch: input[0],
            in_h: input[1],
            in_w: input[2],
            in_c: input[3],
            out_h,
            out_w,
            out_c,
            kernel_h: self.size.0,
            kernel_w: self.size.1,
            stride_h: self.strides.0,
            stride_w: self.strides.1,
            dilation_h: self.dilation.0,
            dilation_w: self.dilation.1,
            pad_top,
            pad_left,
            groups,
        })
    }
}

/// The shape of NHWC input `x` zero-padded by `padding` ((top, bottom), (left,
/// right)), and `layer`'s output shape on it, checked against the size limit.
pub(super) fn padded_shapes(
    layer: &dyn Layer,
    x: &[usize],
    padding: [[usize; 2]; 2],
) -> Result<(Vec<usize>, Vec<usize>)> {
    let [[top, bottom], [left, right]] = padding;
    let mut padded = x.to_vec();
    if let [_, h, w, _] = &mut padded[..] {
        *h += top + bottom;
        *w += left + right;
    }
    let shape: Shape = padded.iter().map(|&d| Some(d)).collect();
    let out_shape = layer.output_shape(&[shape])?;
    super::check_output_size(layer, &out_shape)?;
    Ok((padded, super::concrete(layer, out_shape)?))
}

/// The output shape and kernel geometry of a window layer on input `x`, zero-padded
/// by `padding` ((top, bottom), (left, right)) first when given: that padding joins
/// the window's own, so the padded copy is never made.
pub(super) fn padded_geometry(
    layer: &dyn Layer,
    window: Window,
    x: &[usize],
    padding: Option<[[usize; 2]; 2]>,
    out_c: usize,
    groups: usize,
) -> Result<(Vec<usize>, ConvGeometry)> {
    let [[top, bottom], [left, right]] = padding.unwrap_or_default();
    let (padded, out_shape) = padded_shapes(layer, x, padding.unwrap_or_default())?;
    let g = window.geometry(layer, &padded, out_c, groups)?;
    let geometry = ConvGeometry {
        in_h: g.in_h - top - bottom,
        in_w: g.in_w - left - right,
        pad_top: g.pad_top + top,
        pad_left: g.pad_left + left,
        ..g
    };
    Ok((out_shape, geometry))
}

/// The four NHWC dimensions of an image input, or an error naming the layer.
pub(super) fn nhwc(layer: &dyn Layer, shape: &Shape) -> Result<[Option<usize>; 4]> {
    match shape[..] {
        [n, h, w, c] => {
            if [h, w, c].contains(&Some(0)) {
                return Err(
                    layer.shape_error(&format!("input shape {shape:?} has a zero dimension"))
                );
            }
            Ok([n, h, w, c])
        }
        _ => Err(layer.shape_error(&format!(
            "expects a 4-D input (batch, height, width, channels), got shape {}",
            super::format_shape(shape)
        ))),
    }
}

/// The channel count an input must have once the layer's kernel exists.
pub(super) fn check_channels(
    layer: &dyn Layer,
    got: Option<usize>,
    expected: Option<usize>,
) -> Result<usize> {
    match (got, expected) {
        (None, _) => Err(layer.shape_error("the number of input channels must be known")),
        (Some(g), Some(e)) if g != e => Err(layer.shape_error(&format!(
            "was built for {e} input channels but the input has {g}"
        ))),
        (Some(g), _) => Ok(g),
    }
}

pub(super) use crate::kernels::bias::bias_grad;

/// Applies the activation after a layer's linear part, keeping the pre-activation values
/// for backward.
pub(super) fn activate(act: ActivationFn, mut z: Tensor) -> (Tensor, Saved) {
    let saved = Saved::new(z.clone());
    act.apply_inplace(&mut z);
    (z, saved)
}

/// dL/dz from dL/dy through the activation: `z` is the saved pre-activation, needed only
/// by activations whose derivative the output `y` does not give. `dy` is dL/dz already
/// where the model applied the activation ahead ([`Saved::activation_applied`]).
pub(super) fn activation_grad<'a>(
    layer: &dyn Layer,
    act: ActivationFn,
    saved: &Saved,
    y: &Tensor,
    dy: &'a Tensor,
) -> Result<Cow<'a, Tensor>> {
    if act == ActivationFn::Linear || saved.is_activation_applied() {
        return Ok(Cow::Borrowed(dy));
    }
    if act == ActivationFn::Relu {
        let mut dz = Tensor::for_overwrite(dy.shape());
        crate::kernels::activation::relu_backward(dy.data(), y.data(), dz.data_mut());
        return Ok(Cow::Owned(dz));
    }
    let mut dz = dy.clone();
    let z: &Tensor = if act.needs_input() {
        saved.get(layer)?
    } else {
        y
    };
    let axis = y.shape().last().copied().unwrap_or(1);
    act.backward_inplace(z.data(), y.data(), dz.data_mut(), axis);
    Ok(Cow::Owned(dz))
}

/// The 2-D convolution layer: `activation(conv(x, kernel) + bias)`, kernel shape
/// (kernel_h, kernel_w, in_channels / groups, filters).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv2D {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `filters`: the number of output channels, one kernel each.
    #[serde(deserialize_with = "declare::positive")]
    pub filters: usize,
    /// Keras's `kernel_size`: the window's (rows, columns).
    #[serde(with = "declare::pair")]
    pub kernel_size: (usize, usize),
    /// Keras's `strides`: the step of the window along (rows, columns); default (1, 1).
    #[serde(with = "declare::pair", default = "one_by_one")]
    pub strides: (usize, usize),
    /// Keras's `padding`: `valid` (no padding) or `same` (output size = input size /
    /// stride); default `valid`.
    #[serde(with = "declare::padding", default = "declare::padding::valid")]
    pub padding: Padding,
    #[serde(default)]
    data_format: ChannelsLast,
    /// Keras's `dilation_rate`: the gap between kernel taps along (rows, columns); default
    /// (1, 1).
    #[serde(with = "declare::pair", default = "one_by_one")]
    pub dilation_rate: (usize, usize),
    /// Keras's `groups`: input and output channels split into this many independent
    /// convolutions; default 1.
    #[serde(deserialize_with = "declare::positive", default = "one")]
    pub groups: usize,
    /// Keras's `activation`, applied after the bias; default `linear`.
    #[serde(default)]
    pub activation: ActivationFn,
    /// Keras's `use_bias`: whether a bias per filter is added; default true.
    #[serde(default = "declare::yes")]
    pub use_bias: bool,
    /// Keras's `kernel_initializer`: how the kernel starts; default `glorot_uniform`.
    #[serde(default = "Initializer::glorot_uniform")]
    pub kernel_initializer: Initializer,
    /// Keras's `bias_initializer`: how the bias starts; default `zeros`.
    #[serde(default = "Initializer::zeros")]
    pub bias_initializer: Initializer,
    /// Keras's `kernel_regularizer`: its penalty joins the training loss.
    #[serde(default)]
    pub kernel_regularizer: Option<Regularizer>,
    /// Keras's `bias_regularizer`: its penalty joins the training loss.
    #[serde(default)]
    pub bias_regularizer: Option<Regularizer>,
    // Where the convolutions write a null `activity_regularizer`. A set one is a common
    // field (`LayerBase`), read before this declaration sees it and written after `dtype`.
    #[serde(default)]
    activity_regularizer: NullOnly,
    /// Keras's `kernel_constraint`: applied after each optimizer step.
    #[serde(default)]
    pub kernel_constraint: Option<Constraint>,
    /// Keras's `bias_constraint`: applied after each optimizer step.
    #[serde(default)]
    pub bias_constraint: Option<Constraint>,
    /// The kernel as inference's route reads it, kept between calls.
    #[serde(skip)]
    prepared: PreparedKernel,
}

/// The default strides and dilation of the convolution layers.
pub(super) fn one_by_one() -> (usize, usize) {
    (1, 1)
}

/// The default `groups` and `depth_multiplier`.
pub(super) fn one() -> usize {
    1
}

/// A 1x1 Conv2D's prepared kernel, its epilogue and its output channels
/// ([`Conv2D::pointwise_parts`]).
pub(crate) struct PointwiseParts<'a> {
    form: std::sync::Arc<conv::KernelForm>,
    epilogue: Epilogue<'a>,
    pub(crate) filters: usize,
}

impl PointwiseParts<'_> {
    /// The layer as the depthwise block's kernels read it, where its kernel is packed.
    pub(crate) fn pointwise(&self) -> Option<Pointwise<'_>> {
        match &*self.form {
            conv::KernelForm::Packed(kernel) => Some(Pointwise {
                kernel,
                epilogue: self.epilogue,
            }),
            conv::KernelForm::Winograd(_) => None,
        }
    }
}

impl Conv2D {
    /// A Conv2D of `filters` filters of `kernel_size`, like `keras.layers.Conv2D(filters,
    /// kernel_size)`, Keras's defaults elsewhere.
    pub fn new(filters: usize, kernel_size: (usize, usize)) -> Self {
        Conv2D {
            filters,
            kernel_size,
            ..declare::defaults("conv2d", json!({"filters": 1, "kernel_size": 1}))
        }
    }

    window_builders!();

    activation_builders!();

    /// Sets `groups`, which must divide both channel counts (Keras's default 1).
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Sets `kernel_initializer` (Keras's default `glorot_uniform`).
    pub fn kernel_initializer(mut self, init: Initializer) -> Self {
        self.kernel_initializer = init;
        self
    }

    /// Sets `bias_initializer` (Keras's default `zeros`).
    pub fn bias_initializer(mut self, init: Initializer) -> Self {
        self.bias_initializer = init;
        self
    }

    /// `activation(conv(x) + bias)`, bias and activation fused into the kernel.
    fn compute(&self, x: &Tensor, epilogue: Epilogue) -> Result<Tensor> {
        self.run(x, epilogue, false, None)
    }

    /// [`Conv2D::compute`] for inference, from the kernel's prepared form (kept between
    /// calls; training's steps would only make it again), on `x` zero-padded by
    /// `padding` first when given.
    fn compute_inference(
        &self,
        x: &Tensor,
        epilogue: Epilogue,
        padding: Option<[[usize; 2]; 2]>,
    ) -> Result<Tensor> {
        self.run(x, epilogue, true, padding)
    }

    fn run(
        &self,
        x: &Tensor,
        epilogue: Epilogue,
        keep_prepared: bool,
        padding: Option<[[usize; 2]; 2]>,
    ) -> Result<Tensor> {
        let (out_shape, g) = padded_geometry(
            self,
            self.window(),
            x.shape(),
            padding,
            self.filters,
            self.groups,
        )?;
        require_built(self)?;
        let mut y = Tensor::for_overwrite(out_shape);
        self.run_into(x, &g, epilogue, keep_prepared, y.data_mut(), self.filters);
        Ok(y)
    }

    /// [`Conv2D::run`] for geometry `g` into output rows `y_row_stride` apart.
    fn run_into(
        &self,
        x: &Tensor,
        g: &ConvGeometry,
        epilogue: Epilogue,
        keep_prepared: bool,
        y: &mut [f32],
        y_row_stride: usize,
    ) {
        let epilogue = epilogue.with_bias(self.use_bias.then(|| self.base.weights[1].value.data()));
        let kernel = &self.base.weights[0].value;
        let prepared = keep_prepared
            .then(|| self.prepared.get(kernel, |w| conv::prepared_kernel(g, w)))
            .flatten();
        conv::conv2d_forward_prepared(
            g,
            x.data(),
            kernel.data(),
            prepared.as_deref(),
            epilogue,
            y,
            y_row_stride,
        );
    }

    /// For inference with its chain's `fusion`, this layer's packed kernel and its
    /// epilogue, as a 1x1 layer of a block that
    /// [`DepthwiseConv2D::apply_with_pointwise`](super::DepthwiseConv2D) runs as one:
    /// None unless it is a built 1x1 layer at stride 1 in one group on input shape `x`,
    /// with a kernel packed on this CPU.
    pub(crate) fn pointwise_parts<'a>(
        &'a self,
        x: &[usize],
        fusion: &'a Fusion,
    ) -> Option<PointwiseParts<'a>> {
        let epilogue = fusion.epilogue_for(self.activation)?;
        let (_, g) =
            padded_geometry(self, self.window(), x, None, self.filters, self.groups).ok()?;
        require_built(self).ok()?;
        if !g.is_pointwise() || g.groups != 1 {
            return None;
        }
        let kernel = &self.base.weights[0].value;
        let form = self
            .prepared
            .get(kernel, |w| conv::prepared_kernel(&g, w))?;
        let bias = self.use_bias.then(|| self.base.weights[1].value.data());
        Some(PointwiseParts {
            form,
            epilogue: epilogue.with_bias(bias),
            filters: self.filters,
        })
    }

    /// Adds dL/dkernel and dL/dbias, from the input `x` and dL/d(pre-activation) `dz`.
    fn weight_gradients(&self, x: &Tensor, dz: &Tensor, dweights: &mut [Tensor]) -> Result<()> {
        let g = self
            .window()
            .geometry(self, x.shape(), self.filters, self.groups)?;
        conv::conv2d_backward_kernel(&g, x.data(), dz.data(), dweights[0].data_mut());
        if self.use_bias {
            bias_grad(dz.data(), dweights[1].data_mut());
        }
        Ok(())
    }
}

impl Layer for Conv2D {
    layer_common!("Conv2D");

    fn forward_macs(&self, inputs: &[Vec<usize>]) -> Option<usize> {
        let x = inputs.first().filter(|x| x.len() == 4)?;
        let g = self.window().geometry(self, x, self.filters, self.groups);
        g.ok().map(|g| g.macs())
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let [n, h, w, c] = nhwc(self, single(self, inputs)?)?;
        self.window().validate(self, "kernel_size")?;
        if self.filters == 0 || self.groups == 0 {
            return Err(self.shape_error("filters and groups must be positive"));
        }
        let built = self
            .base
            .weights
            .first()
            .map(|k| k.value.shape()[2] * self.groups);
        let c = check_channels(self, c, built)?;
        if c % self.groups != 0 || !self.filters.is_multiple_of(self.groups) {
            return Err(self.shape_error(&format!(
                "groups = {} must divide both the input channels ({c}) and filters ({})",
                self.groups, self.filters
            )));
        }
        let (oh, ow) = self.window().output_hw(self, h, w)?;
        Ok(vec![n, oh, ow, Some(self.filters)])
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.output_shape(inputs)?;
        let c = inputs[0][3].expect("checked by output_shape");
        let (kh, kw) = self.kernel_size;
        let shape = [kh, kw, c / self.groups, self.filters];
        let bias = self
            .use_bias
            .then_some((self.filters, &self.bias_initializer));
        self.base
            .add_kernel_and_bias(("kernel", &shape, &self.kernel_initializer), bias, rng)
    }

    activated_forward!(compute_inference);

    fn apply_fused_into(
        &self,
        inputs: &[&Tensor],
        fusion: &Fusion,
        out: &mut OutputColumns,
    ) -> bool {
        let Some(epilogue) = fusion.epilogue_for(self.activation) else {
            return false;
        };
        let Ok(x) = single(self, inputs) else {
            return false;
        };
        let window = self.window();
        let geometry = padded_geometry(
            self,
            window,
            x.shape(),
            fusion.input_padding,
            self.filters,
            self.groups,
        );
        match geometry {
            Ok((shape, g)) if require_built(self).is_ok() && shape == out.shape => {
                self.run_into(x, &g, epilogue, true, out.data, out.row_len);
                true
            }
            _ => false,
        }
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        saved: &Saved,
        dy: &Tensor,
        dweights: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let x = *single(self, inputs)?;
        let dz = activation_grad(self, self.activation, saved, output, dy)?;
        self.weight_gradients(x, &dz, dweights)?;
        let g = self
            .window()
            .geometry(self, x.shape(), self.filters, self.groups)?;
        let mut dx = Tensor::for_overwrite(x.shape());
        conv::conv2d_backward_input(
            &g,
            dz.data(),
            self.base.weights[0].value.data(),
            dx.data_mut(),
        );
        Ok(vec![dx])
    }

    activated_backward!();
}

/// Errors for a layer that was never built but is asked to run.
pub(super) fn require_built(layer: &dyn Layer) -> Result<()> {
    if layer.weights().is_empty() {
        Err(layer
            .shape_error("has no weights yet: build it (or load its weights) before calling it"))
    } else {
        Ok(())
    }
}
