//! Conv3D and Conv3DTranspose on `(batch, depth, rows, columns, channels)` volumes (CT
//! and MRI scans, video), kernel (kernel_d, kernel_h, kernel_w, in, out) as Keras keeps
//! it. Both run on `kernels::conv::volume`, the 2-D convolution over gathered depth
//! taps; the transpose swaps the roles of its three passes as Conv2DTranspose does.

use super::conv::{activation_grad, bias_grad, check_channels, require_built, Window};
use super::declare::{self, ChannelsLast, NullOnly};
use super::{infer, single, Layer, LayerBase, Saved, Shape};
use crate::activations::ActivationFn;
use crate::constraints::Constraint;
use crate::error::Result;
use crate::initializers::{Initializer, Rng};
use crate::kernels::conv::{self, output_length, Padding, VolumeGeometry};
use crate::kernels::Epilogue;
use crate::regularizers::Regularizer;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

fn ones() -> [usize; 3] {
    [1, 1, 1]
}

const AXES: [&str; 3] = ["depth", "height", "width"];

/// The five dimensions of a volume input, or an error naming the layer.
pub(super) fn ndhwc(layer: &dyn Layer, shape: &Shape) -> Result<[Option<usize>; 5]> {
    match shape[..] {
        [n, d, h, w, c] if ![d, h, w, c].contains(&Some(0)) => Ok([n, d, h, w, c]),
        _ => Err(layer.shape_error(&format!(
            "expects a 5-D input (batch, depth, height, width, channels) with no zero size, got shape {}",
            super::format_shape(shape)
        ))),
    }
}

/// A 3-D window: size, strides, padding and dilation along (depth, rows, columns).
struct Window3 {
    size: [usize; 3],
    strides: [usize; 3],
    padding: Padding,
    dilation: [usize; 3],
}

impl Window3 {
    fn validate(&self, layer: &dyn Layer) -> Result<()> {
        if self.strides.iter().any(|&s| s > 1) && self.dilation.iter().any(|&d| d > 1) {
            return Err(layer.shape_error(
                "strides > 1 cannot be combined with dilation_rate > 1 (as in Keras)",
            ));
        }
        Ok(())
    }

    /// The output length and front padding along `axis` (0 depth, 1 rows, 2 columns).
    fn axis(&self, layer: &dyn Layer, axis: usize, input: usize) -> Result<(usize, usize)> {
        let (k, s, d) = (self.size[axis], self.strides[axis], self.dilation[axis]);
        output_length(input, k, s, d, self.padding)
            .map(|(out, before, _)| (out, before))
            .ok_or_else(|| {
                layer.shape_error(&format!(
                    "the window of size {k} (dilated extent {}) is larger than the input's {} {input} with padding 'valid'",
                    (k - 1) * d + 1,
                    AXES[axis]
                ))
            })
    }

    /// The 2-D window of one depth slice.
    fn plane(&self) -> Window {
        Window {
            size: (self.size[1], self.size[2]),
            strides: (self.strides[1], self.strides[2]),
            padding: self.padding,
            dilation: (self.dilation[1], self.dilation[2]),
        }
    }

    /// The geometry of the convolution from `x` (NDHWC) to `out_c` channels.
    fn geometry(
        &self,
        layer: &dyn Layer,
        x: &[usize],
        out_c: usize,
        groups: usize,
    ) -> Result<VolumeGeometry> {
        let (out_d, pad_front) = self.axis(layer, 0, x[1])?;
        Ok(VolumeGeometry {
            in_d: x[1],
            out_d,
            kernel_d: self.size[0],
            stride_d: self.strides[0],
            dilation_d: self.dilation[0],
            pad_front,
            plane: self
                .plane()
                .geometry(layer, &[x[0], x[2], x[3], x[4]], out_c, groups)?,
        })
    }
}

/// The fields of Keras's 3-D convolutions after `filters`, in Keras's order, up to
/// `dilation_rate`: what differs between Conv3D and Conv3DTranspose is in between.
macro_rules! volume_window_builders {
    () => {
        /// Sets `strides` along (depth, rows, columns) (Keras's default (1, 1, 1)).
        pub fn strides(mut self, strides: [usize; 3]) -> Self {
            self.strides = strides;
            self
        }

        /// Sets `padding`: `Valid` or `Same` (Keras's default `valid`).
        pub fn padding(mut self, padding: Padding) -> Self {
            self.padding = padding;
            self
        }

        /// Sets `dilation_rate` along (depth, rows, columns) (Keras's default (1, 1, 1)).
        pub fn dilation_rate(mut self, dilation: [usize; 3]) -> Self {
            self.dilation_rate = dilation;
            self
        }

        fn window(&self) -> Window3 {
            Window3 {
                size: self.kernel_size,
                strides: self.strides,
                padding: self.padding,
                dilation: self.dilation_rate,
            }
        }
    };
}

/// Keras's `Conv3D`: `activation(conv3d(x, kernel) + bias)`, kernel shape (kernel_d,
/// kernel_h, kernel_w, in_channels / groups, filters).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv3D {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `filters`: the number of output channels.
    #[serde(deserialize_with = "declare::positive")]
    pub filters: usize,
    /// Keras's `kernel_size`: the window's (depth, rows, columns).
    #[serde(deserialize_with = "declare::triple::deserialize")]
    pub kernel_size: [usize; 3],
    /// Keras's `strides`; default (1, 1, 1).
    #[serde(deserialize_with = "declare::triple::deserialize", default = "ones")]
    pub strides: [usize; 3],
    /// Keras's `padding`: `valid` or `same`; default `valid`.
    #[serde(with = "declare::padding", default = "declare::padding::valid")]
    pub padding: Padding,
    #[serde(default)]
    data_format: ChannelsLast,
    /// Keras's `dilation_rate`; default (1, 1, 1).
    #[serde(deserialize_with = "declare::triple::deserialize", default = "ones")]
    pub dilation_rate: [usize; 3],
    /// Keras's `groups`: channels split into this many independent convolutions.
    #[serde(deserialize_with = "declare::positive", default = "super::conv::one")]
    pub groups: usize,
    /// Keras's `activation`, applied after the bias; default `linear`.
    #[serde(default)]
    pub activation: ActivationFn,
    /// Keras's `use_bias`; default true.
    #[serde(default = "declare::yes")]
    pub use_bias: bool,
    /// Keras's `kernel_initializer`; default `glorot_uniform`.
    #[serde(default = "Initializer::glorot_uniform")]
    pub kernel_initializer: Initializer,
    /// Keras's `bias_initializer`; default `zeros`.
    #[serde(default = "Initializer::zeros")]
    pub bias_initializer: Initializer,
    /// Keras's `kernel_regularizer`: kept and written back.
    #[serde(default)]
    pub kernel_regularizer: Option<Regularizer>,
    /// Keras's `bias_regularizer`: kept and written back.
    #[serde(default)]
    pub bias_regularizer: Option<Regularizer>,
    // A set `activity_regularizer` is a common field (`LayerBase`).
    #[serde(default)]
    activity_regularizer: NullOnly,
    /// Keras's `kernel_constraint`: kept and written back.
    #[serde(default)]
    pub kernel_constraint: Option<Constraint>,
    /// Keras's `bias_constraint`: kept and written back.
    #[serde(default)]
    pub bias_constraint: Option<Constraint>,
}

impl Conv3D {
    /// A Conv3D of `filters` filters of `kernel_size` (depth, rows, columns), like
    /// `keras.layers.Conv3D(filters, kernel_size)`.
    pub fn new(filters: usize, kernel_size: [usize; 3]) -> Self {
        Conv3D {
            filters,
            kernel_size,
            ..declare::defaults("conv3d", json!({"filters": 1, "kernel_size": 1}))
        }
    }

    volume_window_builders!();

    activation_builders!();

    /// Sets `groups`, which must divide both channel counts (Keras's default 1).
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    fn geometry(&self, x: &[usize]) -> Result<VolumeGeometry> {
        self.window().geometry(self, x, self.filters, self.groups)
    }

    fn compute(&self, x: &Tensor, epilogue: Epilogue) -> Result<Tensor> {
        let out_shape = infer(self, &[x])?;
        require_built(self)?;
        let g = self.geometry(x.shape())?;
        let mut y = Tensor::for_overwrite(out_shape);
        let epilogue = epilogue.with_bias(self.use_bias.then(|| self.base.weights[1].value.data()));
        conv::conv3d_forward_with(
            &g,
            x.data(),
            self.base.weights[0].value.data(),
            epilogue,
            y.data_mut(),
        );
        Ok(y)
    }

    fn weight_gradients(&self, x: &Tensor, dz: &Tensor, dweights: &mut [Tensor]) -> Result<()> {
        let g = self.geometry(x.shape())?;
        conv::conv3d_backward_kernel(&g, x.data(), dz.data(), dweights[0].data_mut());
        if self.use_bias {
            bias_grad(dz.data(), dweights[1].data_mut());
        }
        Ok(())
    }
}

impl Layer for Conv3D {
    layer_common!("Conv3D");

    fn forward_macs(&self, inputs: &[Vec<usize>]) -> Option<usize> {
        let x = inputs.first().filter(|x| x.len() == 5)?;
        self.geometry(x).ok().map(|g| g.macs())
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let [n, d, h, w, c] = ndhwc(self, single(self, inputs)?)?;
        self.window().validate(self)?;
        let built = self
            .base
            .weights
            .first()
            .map(|k| k.value.shape()[3] * self.groups);
        let c = check_channels(self, c, built)?;
        if c % self.groups != 0 || !self.filters.is_multiple_of(self.groups) {
            return Err(self.shape_error(&format!(
                "groups = {} must divide both the input channels ({c}) and filters ({})",
                self.groups, self.filters
            )));
        }
        let out = |axis, len: Option<usize>| {
            len.map(|len| self.window().axis(self, axis, len).map(|o| o.0))
                .transpose()
        };
        Ok(vec![
            n,
            out(0, d)?,
            out(1, h)?,
            out(2, w)?,
            Some(self.filters),
        ])
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.output_shape(inputs)?;
        let c = inputs[0][4].expect("checked by output_shape");
        let [kd, kh, kw] = self.kernel_size;
        let shape = [kd, kh, kw, c / self.groups, self.filters];
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
        let g = self.geometry(x.shape())?;
        let mut dx = Tensor::for_overwrite(x.shape());
        conv::conv3d_backward_input(
            &g,
            dz.data(),
            self.base.weights[0].value.data(),
            dx.data_mut(),
        );
        Ok(vec![dx])
    }

    activated_backward!();
}

/// `output_padding` of Conv3DTranspose: null, one integer for every axis, or three.
mod output_padding {
    use super::declare::as_int;
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(p: &Option<[usize; 3]>, s: S) -> Result<S::Ok, S::Error> {
        p.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[usize; 3]>, D::Error> {
        let v = Value::deserialize(d)?;
        let nonneg = |x: &Value| as_int(x).filter(|&p| p >= 0).map(|p| p as usize);
        let three = match &v {
            Value::Null => return Ok(None),
            Value::Array(items) => items
                .iter()
                .map(nonneg)
                .collect::<Option<Vec<_>>>()
                .and_then(|p| p.try_into().ok()),
            one => nonneg(one).map(|p| [p; 3]),
        };
        three.map(Some).ok_or_else(|| {
            D::Error::custom("expected null, a non-negative integer or a list of three")
        })
    }
}

/// Keras's `Conv3DTranspose`: the transpose of a Conv3D, upsampling volumes by
/// `strides`; kernel shape (kernel_d, kernel_h, kernel_w, filters, in_channels).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv3DTranspose {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `filters`: the number of output channels.
    #[serde(deserialize_with = "declare::positive")]
    pub filters: usize,
    /// Keras's `kernel_size`: the window's (depth, rows, columns).
    #[serde(deserialize_with = "declare::triple::deserialize")]
    pub kernel_size: [usize; 3],
    /// Keras's `strides`: the upsampling factors; default (1, 1, 1).
    #[serde(deserialize_with = "declare::triple::deserialize", default = "ones")]
    pub strides: [usize; 3],
    /// Keras's `padding`: `valid` or `same` (output = input · stride); default `valid`.
    #[serde(with = "declare::padding", default = "declare::padding::valid")]
    pub padding: Padding,
    /// Keras's `output_padding`: extra positions on one side of each output axis;
    /// default None.
    #[serde(with = "output_padding", default)]
    pub output_padding: Option<[usize; 3]>,
    #[serde(default)]
    data_format: ChannelsLast,
    /// Keras's `dilation_rate`; default (1, 1, 1).
    #[serde(deserialize_with = "declare::triple::deserialize", default = "ones")]
    pub dilation_rate: [usize; 3],
    /// Keras's `activation`, applied after the bias; default `linear`.
    #[serde(default)]
    pub activation: ActivationFn,
    /// Keras's `use_bias`; default true.
    #[serde(default = "declare::yes")]
    pub use_bias: bool,
    /// Keras's `kernel_initializer`; default `glorot_uniform`.
    #[serde(default = "Initializer::glorot_uniform")]
    pub kernel_initializer: Initializer,
    /// Keras's `bias_initializer`; default `zeros`.
    #[serde(default = "Initializer::zeros")]
    pub bias_initializer: Initializer,
    /// Keras's `kernel_regularizer`: kept and written back.
    #[serde(default)]
    pub kernel_regularizer: Option<Regularizer>,
    /// Keras's `bias_regularizer`: kept and written back.
    #[serde(default)]
    pub bias_regularizer: Option<Regularizer>,
    // A set `activity_regularizer` is a common field (`LayerBase`).
    #[serde(default)]
    activity_regularizer: NullOnly,
    /// Keras's `kernel_constraint`: kept and written back.
    #[serde(default)]
    pub kernel_constraint: Option<Constraint>,
    /// Keras's `bias_constraint`: kept and written back.
    #[serde(default)]
    pub bias_constraint: Option<Constraint>,
}

impl Conv3DTranspose {
    /// A Conv3DTranspose of `filters` filters of `kernel_size`, like
    /// `keras.layers.Conv3DTranspose(filters, kernel_size)`.
    pub fn new(filters: usize, kernel_size: [usize; 3]) -> Self {
        Conv3DTranspose {
            filters,
            kernel_size,
            ..declare::defaults("conv3d_transpose", json!({"filters": 1, "kernel_size": 1}))
        }
    }

    volume_window_builders!();

    activation_builders!();

    /// Sets `output_padding`, each less than its stride (Keras's default None).
    pub fn output_padding(mut self, output_padding: [usize; 3]) -> Self {
        self.output_padding = Some(output_padding);
        self
    }

    /// Keras's `deconv_output_length` along each axis.
    fn output_len(&self, axis: usize, input: usize) -> Result<usize> {
        let w = self.window();
        super::transpose::deconv_output_length(
            input,
            (w.size[axis], w.strides[axis], w.dilation[axis]),
            w.padding,
            self.output_padding.map(|p| p[axis]),
        )
        .map_err(|message| self.shape_error(&message))
    }

    /// The geometry of the forward convolution from this layer's output `out` back to
    /// its input `x`.
    fn geometry(&self, x: &[usize], out: &[usize]) -> Result<VolumeGeometry> {
        let w = self.window();
        let mut pads = [0; 3];
        for (axis, pad) in pads.iter_mut().enumerate() {
            *pad = match w.axis(self, axis, out[1 + axis]) {
                Ok((len, p)) if len == x[1 + axis] => p,
                _ => {
                    return Err(self.shape_error(
                        "output_padding is incompatible with the strides and padding",
                    ))
                }
            };
        }
        let plane = w.plane();
        Ok(VolumeGeometry {
            in_d: out[1],
            out_d: x[1],
            kernel_d: w.size[0],
            stride_d: w.strides[0],
            dilation_d: w.dilation[0],
            pad_front: pads[0],
            plane: conv::ConvGeometry {
                batch: x[0],
                in_h: out[2],
                in_w: out[3],
                in_c: self.filters,
                out_h: x[2],
                out_w: x[3],
                out_c: x[4],
                kernel_h: plane.size.0,
                kernel_w: plane.size.1,
                stride_h: plane.strides.0,
                stride_w: plane.strides.1,
                dilation_h: plane.dilation.0,
                dilation_w: plane.dilation.1,
                pad_top: pads[1],
                pad_left: pads[2],
                groups: 1,
            },
        })
    }

    fn compute(&self, x: &Tensor, epilogue: Epilogue) -> Result<Tensor> {
        let out_shape = infer(self, &[x])?;
        require_built(self)?;
        let g = self.geometry(x.shape(), &out_shape)?;
        let mut y = Tensor::for_overwrite(out_shape);
        conv::conv3d_backward_input(
            &g,
            x.data(),
            self.base.weights[0].value.data(),
            y.data_mut(),
        );
        let channels = y.shape().last().copied().unwrap_or(1);
        let bias = self.use_bias.then(|| self.base.weights[1].value.data());
        epilogue.with_bias(bias).apply_to(y.data_mut(), channels);
        Ok(y)
    }
}

impl Layer for Conv3DTranspose {
    layer_common!("Conv3DTranspose");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let [n, d, h, w, c] = ndhwc(self, single(self, inputs)?)?;
        self.window().validate(self)?;
        check_channels(
            self,
            c,
            self.base.weights.first().map(|k| k.value.shape()[4]),
        )?;
        let out = |axis, len: Option<usize>| len.map(|len| self.output_len(axis, len)).transpose();
        Ok(vec![
            n,
            out(0, d)?,
            out(1, h)?,
            out(2, w)?,
            Some(self.filters),
        ])
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.output_shape(inputs)?;
        let c = inputs[0][4].expect("checked by output_shape");
        let [kd, kh, kw] = self.kernel_size;
        let bias = self
            .use_bias
            .then_some((self.filters, &self.bias_initializer));
        self.base.add_kernel_and_bias(
            (
                "kernel",
                &[kd, kh, kw, self.filters, c],
                &self.kernel_initializer,
            ),
            bias,
            rng,
        )
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
        let g = self.geometry(x.shape(), output.shape())?;
        let mut dx = Tensor::for_overwrite(x.shape());
        let kernel = self.base.weights[0].value.data();
        conv::conv3d_forward_with(&g, dz.data(), kernel, Epilogue::default(), dx.data_mut());
        conv::conv3d_backward_kernel(&g, dz.data(), x.data(), dweights[0].data_mut());
        if self.use_bias {
            bias_grad(dz.data(), dweights[1].data_mut());
        }
        Ok(vec![dx])
    }
}
