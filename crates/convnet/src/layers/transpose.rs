//! Conv2DTranspose: the gradient of a convolution with respect to its input, used as a
//! layer ("deconvolution"). Its kernel (kernel_h, kernel_w, filters, in_channels) is the
//! kernel of the forward convolution that maps the layer's *output* back to its input, so
//! the three convolution kernels serve here with their roles swapped: forward is
//! `conv2d_backward_input`, dL/dx is `conv2d_forward`, dL/dW is `conv2d_backward_kernel`
//! with input and output gradient exchanged.

use super::conv::{activation_grad, bias_grad, check_channels, nhwc, one_by_one, require_built};
use super::declare::{self, ChannelsLast, LegacyGroups, NullOnly};
use super::{infer, single, Layer, LayerBase, Saved, Shape};
use crate::activations::ActivationFn;
use crate::constraints::Constraint;
use crate::error::Result;
use crate::initializers::{Initializer, Rng};
use crate::kernels::conv::{self, output_length, ConvGeometry, Padding};
use crate::kernels::Epilogue;
use crate::regularizers::Regularizer;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Keras's `Conv2DTranspose`: the transpose of a Conv2D, upsampling by `strides` (decoders,
/// segmentation).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv2DTranspose {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `filters`: the number of output channels.
    #[serde(deserialize_with = "declare::positive")]
    pub filters: usize,
    /// Keras's `kernel_size`: the window's (rows, columns).
    #[serde(with = "declare::pair")]
    pub kernel_size: (usize, usize),
    /// Keras's `strides`: the upsampling factor along (rows, columns); default (1, 1).
    #[serde(with = "declare::pair", default = "one_by_one")]
    pub strides: (usize, usize),
    /// Keras's `padding`: `valid` or `same` (output size = input size · stride); default
    /// `valid`.
    #[serde(with = "declare::padding", default = "declare::padding::valid")]
    pub padding: Padding,
    /// Keras's `output_padding`: extra rows and columns on one side of the output, to pick
    /// among the sizes a stride allows; default None.
    #[serde(with = "output_padding", default)]
    pub output_padding: Option<(usize, usize)>,
    #[serde(default)]
    data_format: ChannelsLast,
    /// Keras's `dilation_rate`: the gap between kernel taps along (rows, columns); default
    /// (1, 1).
    #[serde(with = "declare::pair", default = "one_by_one")]
    pub dilation_rate: (usize, usize),
    /// tf.keras 2's `groups` (always 1 there): accepted and dropped, since Keras 3 has none.
    #[allow(dead_code)]
    #[serde(default, skip_serializing)]
    groups: LegacyGroups,
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
}

/// `output_padding`: null, one non-negative integer for both axes, or a list of two.
mod output_padding {
    use super::declare::as_int;
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(p: &Option<(usize, usize)>, s: S) -> Result<S::Ok, S::Error> {
        p.map(|p| [p.0, p.1]).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<(usize, usize)>, D::Error> {
        let v = Value::deserialize(d)?;
        let nonneg = |x: &Value| as_int(x).filter(|&p| p >= 0).map(|p| p as usize);
        let pair = match &v {
            Value::Array(items) => match items.as_slice() {
                [a, b] => nonneg(a).zip(nonneg(b)),
                _ => None,
            },
            one => nonneg(one).map(|p| (p, p)),
        };
        pair.map(Some).ok_or_else(|| {
            D::Error::custom("expected null, a non-negative integer or a list of two")
        })
    }
}

impl Conv2DTranspose {
    /// A Conv2DTranspose of `filters` filters of `kernel_size`, like
    /// `keras.layers.Conv2DTranspose(filters, kernel_size)`.
    pub fn new(filters: usize, kernel_size: (usize, usize)) -> Self {
        Conv2DTranspose {
            filters,
            kernel_size,
            ..declare::defaults("conv2d_transpose", json!({"filters": 1, "kernel_size": 1}))
        }
    }

    window_builders!();

    activation_builders!();

    /// Sets `output_padding`, each less than the stride (Keras's default None).
    pub fn output_padding(mut self, output_padding: (usize, usize)) -> Self {
        self.output_padding = Some(output_padding);
        self
    }

    /// Keras's `deconv_output_length` along one axis.
    fn output_len(&self, axis: usize, input: usize) -> Result<usize> {
        let pick = |p: (usize, usize)| if axis == 0 { p.0 } else { p.1 };
        let w = self.window();
        deconv_output_length(
            input,
            (pick(w.size), pick(w.strides), pick(w.dilation)),
            w.padding,
            self.output_padding.map(pick),
        )
        .map_err(|message| self.shape_error(&message))
    }

    /// The geometry of the forward convolution from this layer's output (shape `out`)
    /// back to its input `x`.
    fn geometry(&self, x: &[usize], out: &[usize]) -> Result<ConvGeometry> {
        let axis = |a: usize| -> Result<usize> {
            let pick = |p: (usize, usize)| if a == 0 { p.0 } else { p.1 };
            let (k, s, d) = (
                pick(self.window().size),
                pick(self.window().strides),
                pick(self.window().dilation),
            );
            match output_length(out[1 + a], k, s, d, self.window().padding) {
                Some((len, pad, _)) if len == x[1 + a] => Ok(pad),
                _ => {
                    Err(self
                        .shape_error("output_padding is incompatible with the strides and padding"))
                }
            }
        };
        Ok(ConvGeometry {
            batch: x[0],
            in_h: out[1],
            in_w: out[2],
            in_c: self.filters,
            out_h: x[1],
            out_w: x[2],
            out_c: x[3],
            kernel_h: self.window().size.0,
            kernel_w: self.window().size.1,
            stride_h: self.window().strides.0,
            stride_w: self.window().strides.1,
            dilation_h: self.window().dilation.0,
            dilation_w: self.window().dilation.1,
            pad_top: axis(0)?,
            pad_left: axis(1)?,
            groups: 1,
        })
    }

    /// `activation(conv_transpose(x) + bias)`.
    fn compute(&self, x: &Tensor, epilogue: Epilogue) -> Result<Tensor> {
        let out_shape = infer(self, &[x])?;
        require_built(self)?;
        let g = self.geometry(x.shape(), &out_shape)?;
        let mut y = Tensor::for_overwrite(out_shape);
        conv::conv2d_backward_input(
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

/// Keras's `deconv_output_length`: the output length along one axis of a transposed
/// convolution with this (kernel, stride, dilation), or why `output_padding` cannot be.
pub(super) fn deconv_output_length(
    input: usize,
    (k, s, d): (usize, usize, usize),
    padding: Padding,
    output_padding: Option<usize>,
) -> std::result::Result<usize, String> {
    let extent = (k - 1) * d + 1;
    match (output_padding, padding) {
        (None, Padding::Valid) => Ok(input * s + extent.saturating_sub(s)),
        (None, Padding::Same) => Ok(input * s),
        (Some(op), _) if op >= s => Err(format!(
            "output_padding {op} must be smaller than the stride {s}"
        )),
        (Some(op), padding) => {
            let pad = if padding == Padding::Same {
                extent / 2
            } else {
                0
            };
            ((input - 1) * s + extent + op)
                .checked_sub(2 * pad)
                .ok_or_else(|| "output_padding gives a negative output size".to_string())
        }
    }
}

impl Layer for Conv2DTranspose {
    layer_common!("Conv2DTranspose");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let [n, h, w, c] = nhwc(self, single(self, inputs)?)?;
        self.window().validate(self, "kernel_size")?;
        if self.filters == 0 {
            return Err(self.shape_error("filters must be positive"));
        }
        check_channels(
            self,
            c,
            self.base.weights.first().map(|k| k.value.shape()[3]),
        )?;
        let oh = h.map(|h| self.output_len(0, h)).transpose()?;
        let ow = w.map(|w| self.output_len(1, w)).transpose()?;
        Ok(vec![n, oh, ow, Some(self.filters)])
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.output_shape(inputs)?;
        let c = inputs[0][3].expect("checked by output_shape");
        let (kh, kw) = self.window().size;
        let bias = self
            .use_bias
            .then_some((self.filters, &self.bias_initializer));
        self.base.add_kernel_and_bias(
            (
                "kernel",
                &[kh, kw, self.filters, c],
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
        let mut dx = x.zeros_like();
        conv::conv2d_forward(
            &g,
            dz.data(),
            self.base.weights[0].value.data(),
            dx.data_mut(),
        );
        conv::conv2d_backward_kernel(&g, dz.data(), x.data(), dweights[0].data_mut());
        if self.use_bias {
            bias_grad(dz.data(), dweights[1].data_mut());
        }
        Ok(vec![dx])
    }
}
