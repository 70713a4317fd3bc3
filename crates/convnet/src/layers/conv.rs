//! Conv2D, and the pieces every convolution layer shares: the window arithmetic
//! ([`Window`]), the NHWC input check, and the bias-plus-activation epilogue.

use super::config::ConfigReader;
use super::{infer, single, write_nulls, Layer, LayerBase, Saved, Shape};
use crate::activations::ActivationFn;
use crate::error::Result;
use crate::initializers::{Initializer, Rng};
use crate::kernels::conv::{self, output_length, ConvGeometry, Padding};
use crate::kernels::Epilogue;
use crate::tensor::Tensor;
use serde_json::{json, Map, Value};
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

    pub(super) fn from_config(
        c: &ConfigReader,
        size_field: &str,
        default_size: Option<(usize, usize)>,
    ) -> Result<Self> {
        let size = c.pair(size_field, default_size)?;
        Ok(Window {
            size,
            strides: c.pair("strides", Some((1, 1)))?,
            padding: c.padding("padding")?,
            dilation: c.pair("dilation_rate", Some((1, 1)))?,
        })
    }

    pub(super) fn write_config(&self, map: &mut Map<String, Value>) {
        map.insert("strides".into(), json!([self.strides.0, self.strides.1]));
        map.insert("padding".into(), json!(self.padding.keras_name()));
        map.insert("data_format".into(), json!("channels_last"));
        map.insert(
            "dilation_rate".into(),
            json!([self.dilation.0, self.dilation.1]),
        );
    }
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

pub(super) use crate::kernels::bias::{add_bias, bias_grad};

/// Applies the activation after a layer's linear part, keeping the pre-activation values
/// for backward.
pub(super) fn activate(act: ActivationFn, mut z: Tensor) -> (Tensor, Saved) {
    let saved = Saved::new(z.clone());
    act.apply_inplace(&mut z);
    (z, saved)
}

/// dL/dz from dL/dy through the activation: `z` is the saved pre-activation, needed only
/// by activations whose derivative the output `y` does not give.
pub(super) fn activation_grad<'a>(
    layer: &dyn Layer,
    act: ActivationFn,
    saved: &Saved,
    y: &Tensor,
    dy: &'a Tensor,
) -> Result<Cow<'a, Tensor>> {
    if act == ActivationFn::Linear {
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

/// Parses an activation given by name in Rust code; an unknown name is kept as an error
/// that the layer reports when it is built or run.
pub(super) fn activation_arg(base: &mut LayerBase, name: &str) -> ActivationFn {
    ActivationFn::from_name(name).unwrap_or_else(|| {
        base.invalid = Some(("activation".into(), format!("unknown activation '{name}'")));
        ActivationFn::Linear
    })
}

/// The regularizers and constraints in the configs of Conv2D and Conv2DTranspose,
/// accepted only as null.
pub(super) const KERNEL_EXTRAS: [&str; 5] = [
    "kernel_regularizer",
    "bias_regularizer",
    "activity_regularizer",
    "kernel_constraint",
    "bias_constraint",
];

/// The 2-D convolution layer: `activation(conv(x, kernel) + bias)`, kernel shape
/// (kernel_h, kernel_w, in_channels / groups, filters).
#[derive(Clone, Debug)]
pub struct Conv2D {
    base: LayerBase,
    pub filters: usize,
    pub window: Window,
    pub groups: usize,
    pub activation: ActivationFn,
    pub use_bias: bool,
    pub kernel_initializer: Initializer,
    pub bias_initializer: Initializer,
}

impl Conv2D {
    pub fn new(filters: usize, kernel_size: (usize, usize)) -> Self {
        Conv2D {
            base: LayerBase::new("conv2d"),
            filters,
            window: Window::new(kernel_size),
            groups: 1,
            activation: ActivationFn::Linear,
            use_bias: true,
            kernel_initializer: Initializer::glorot_uniform(),
            bias_initializer: Initializer::zeros(),
        }
    }

    window_builders!();

    activation_builders!();

    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    pub fn kernel_initializer(mut self, init: Initializer) -> Self {
        self.kernel_initializer = init;
        self
    }

    pub fn bias_initializer(mut self, init: Initializer) -> Self {
        self.bias_initializer = init;
        self
    }

    pub(super) fn from_config(c: &ConfigReader) -> Result<Self> {
        c.channels_last()?;
        c.unsupported_unless_null(&KERNEL_EXTRAS)?;
        Ok(Conv2D {
            base: c.base()?,
            filters: c.positive("filters", None)?,
            window: Window::from_config(c, "kernel_size", None)?,
            groups: c.positive("groups", Some(1))?,
            activation: c.activation("activation")?,
            use_bias: c.bool("use_bias", true)?,
            kernel_initializer: c
                .initializer("kernel_initializer", Initializer::glorot_uniform())?,
            bias_initializer: c.initializer("bias_initializer", Initializer::zeros())?,
        })
    }

    /// `activation(conv(x) + bias)`, bias and activation fused into the kernel.
    fn compute(&self, x: &Tensor, activation: ActivationFn) -> Result<Tensor> {
        let out_shape = infer(self, &[x])?;
        require_built(self)?;
        let g = self
            .window
            .geometry(self, x.shape(), self.filters, self.groups)?;
        let mut y = Tensor::for_overwrite(out_shape);
        let epilogue = Epilogue {
            bias: self.use_bias.then(|| self.base.weights[1].value.data()),
            activation,
        };
        conv::conv2d_forward_with(
            &g,
            x.data(),
            self.base.weights[0].value.data(),
            epilogue,
            y.data_mut(),
        );
        Ok(y)
    }

    /// Adds dL/dkernel and dL/dbias, from the input `x` and dL/d(pre-activation) `dz`.
    fn weight_gradients(&self, x: &Tensor, dz: &Tensor, dweights: &mut [Tensor]) -> Result<()> {
        let g = self
            .window
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
        let g = self.window.geometry(self, x, self.filters, self.groups);
        g.ok().map(|g| g.macs())
    }

    fn config_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("filters".into(), json!(self.filters));
        m.insert(
            "kernel_size".into(),
            json!([self.window.size.0, self.window.size.1]),
        );
        self.window.write_config(&mut m);
        m.insert("groups".into(), json!(self.groups));
        m.insert("activation".into(), json!(self.activation.name()));
        m.insert("use_bias".into(), json!(self.use_bias));
        m.insert(
            "kernel_initializer".into(),
            self.kernel_initializer.to_config(),
        );
        m.insert("bias_initializer".into(), self.bias_initializer.to_config());
        write_nulls(&mut m, &KERNEL_EXTRAS);
        m
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        self.base.check(self.class_name())?;
        let [n, h, w, c] = nhwc(self, single(self, inputs)?)?;
        self.window.validate(self, "kernel_size")?;
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
        let (oh, ow) = self.window.output_hw(self, h, w)?;
        Ok(vec![n, oh, ow, Some(self.filters)])
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.output_shape(inputs)?;
        let c = inputs[0][3].expect("checked by output_shape");
        let (kh, kw) = self.window.size;
        let shape = [kh, kw, c / self.groups, self.filters];
        let bias = self
            .use_bias
            .then_some((self.filters, &self.bias_initializer));
        self.base
            .add_kernel_and_bias(("kernel", &shape, &self.kernel_initializer), bias, rng)
    }

    activated_forward!();

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
            .window
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

    weights_only_backward!();
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
