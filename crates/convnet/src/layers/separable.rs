//! SeparableConv2D: a depthwise convolution (one `depth_multiplier` set of filters per
//! input channel, with the layer's strides, padding and dilation) followed by a 1x1
//! "pointwise" convolution that mixes channels into `filters` outputs; then bias and
//! activation. Far fewer weights than a full convolution of the same window.

use super::conv::{
    activate, activation_grad, bias_grad, check_channels, nhwc, one, one_by_one, require_built,
};
use super::declare::{self, ChannelsLast, LegacyGroups, NullOnly};
use super::{infer, single, Fusion, Layer, LayerBase, Saved, Shape};
use crate::activations::ActivationFn;
use crate::constraints::Constraint;
use crate::error::Result;
use crate::initializers::{Initializer, Rng};
use crate::kernels::conv::{self, ConvGeometry};
use crate::kernels::depthwise;
use crate::kernels::Epilogue;
use crate::kernels::Padding;
use crate::regularizers::Regularizer;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Keras's `SeparableConv2D`: a depthwise convolution then a 1x1 pointwise one, far fewer
/// weights than a Conv2D of the same window.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeparableConv2D {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `depth_multiplier`: depthwise output channels per input channel; default 1.
    #[serde(deserialize_with = "declare::positive", default = "one")]
    pub depth_multiplier: usize,
    /// Keras's `filters`: the number of output channels of the pointwise step.
    #[serde(deserialize_with = "declare::positive")]
    pub filters: usize,
    /// Keras's `kernel_size`: the depthwise window's (rows, columns).
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
    /// tf.keras 2's `groups` (always 1 there): accepted and dropped, since Keras 3 has none.
    #[allow(dead_code)]
    #[serde(default, skip_serializing)]
    groups: LegacyGroups,
    /// tf.keras 2 also wrote the plain convolution's kernel fields, which no
    /// SeparableConv2D uses: accepted (the regularizer and constraint as null) and dropped.
    #[allow(dead_code)]
    #[serde(default, skip_serializing)]
    kernel_initializer: Option<Initializer>,
    #[allow(dead_code)]
    #[serde(default, skip_serializing)]
    kernel_regularizer: NullOnly,
    #[allow(dead_code)]
    #[serde(default, skip_serializing)]
    kernel_constraint: NullOnly,
    /// Keras's `activation`, applied after the bias; default `linear`.
    #[serde(default)]
    pub activation: ActivationFn,
    /// Keras's `use_bias`: whether a bias per filter is added; default true.
    #[serde(default = "declare::yes")]
    pub use_bias: bool,
    /// Keras's `depthwise_initializer`: how the depthwise kernel starts; default
    /// `glorot_uniform`.
    #[serde(default = "Initializer::glorot_uniform")]
    pub depthwise_initializer: Initializer,
    /// Keras's `pointwise_initializer`: how the 1x1 kernel starts; default
    /// `glorot_uniform`.
    #[serde(default = "Initializer::glorot_uniform")]
    pub pointwise_initializer: Initializer,
    /// Keras's `bias_initializer`: how the bias starts; default `zeros`.
    #[serde(default = "Initializer::zeros")]
    pub bias_initializer: Initializer,
    /// Keras's `depthwise_regularizer`: its penalty joins the training loss.
    #[serde(default)]
    pub depthwise_regularizer: Option<Regularizer>,
    /// Keras's `pointwise_regularizer`: its penalty joins the training loss.
    #[serde(default)]
    pub pointwise_regularizer: Option<Regularizer>,
    /// Keras's `bias_regularizer`: its penalty joins the training loss.
    #[serde(default)]
    pub bias_regularizer: Option<Regularizer>,
    // Where the convolutions write a null `activity_regularizer`. A set one is a common
    // field (`LayerBase`), read before this declaration sees it and written after `dtype`.
    #[serde(default)]
    activity_regularizer: NullOnly,
    /// Keras's `depthwise_constraint`: applied after each optimizer step.
    #[serde(default)]
    pub depthwise_constraint: Option<Constraint>,
    /// Keras's `pointwise_constraint`: applied after each optimizer step.
    #[serde(default)]
    pub pointwise_constraint: Option<Constraint>,
    /// Keras's `bias_constraint`: applied after each optimizer step.
    #[serde(default)]
    pub bias_constraint: Option<Constraint>,
}

/// What backward needs: the depthwise stage's output and the pre-activation.
struct Intermediate {
    depthwise_out: Tensor,
    activation: Saved,
}

impl SeparableConv2D {
    /// A SeparableConv2D of `filters` filters with a `kernel_size` window, like
    /// `keras.layers.SeparableConv2D(filters, kernel_size)`.
    pub fn new(filters: usize, kernel_size: (usize, usize)) -> Self {
        SeparableConv2D {
            filters,
            kernel_size,
            ..declare::defaults("separable_conv2d", json!({"filters": 1, "kernel_size": 1}))
        }
    }

    window_builders!();

    activation_builders!();

    /// Sets `depth_multiplier`, depthwise channels per input channel (Keras's default 1).
    pub fn depth_multiplier(mut self, m: usize) -> Self {
        self.depth_multiplier = m;
        self
    }

    /// The depthwise stage's and the pointwise stage's geometries for input `x`.
    fn geometries(&self, x: &[usize]) -> Result<(ConvGeometry, ConvGeometry)> {
        let c = x[3];
        let mid = c * self.depth_multiplier;
        let dw = self.window().geometry(self, x, mid, c)?;
        let pw = ConvGeometry {
            in_h: dw.out_h,
            in_w: dw.out_w,
            in_c: mid,
            out_c: self.filters,
            kernel_h: 1,
            kernel_w: 1,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: 0,
            pad_left: 0,
            groups: 1,
            ..dw
        };
        Ok((dw, pw))
    }

    /// Returns the depthwise output and `activation(pointwise(depthwise) + bias)`.
    fn compute(&self, x: &Tensor, epilogue: Epilogue) -> Result<(Tensor, Tensor)> {
        let out_shape = infer(self, &[x])?;
        require_built(self)?;
        let (dw, pw) = self.geometries(x.shape())?;
        let mut mid = Tensor::for_overwrite([dw.batch, dw.out_h, dw.out_w, dw.out_c]);
        depthwise::depthwise_forward(
            &dw,
            x.data(),
            self.base.weights[0].value.data(),
            mid.data_mut(),
        );
        let mut y = Tensor::for_overwrite(out_shape);
        let epilogue = epilogue.with_bias(self.use_bias.then(|| self.base.weights[2].value.data()));
        conv::conv2d_forward_with(
            &pw,
            mid.data(),
            self.base.weights[1].value.data(),
            epilogue,
            y.data_mut(),
        );
        Ok((mid, y))
    }
}

impl Layer for SeparableConv2D {
    layer_common!("SeparableConv2D");

    /// The depthwise stage's multiply-adds plus the pointwise stage's.
    fn forward_macs(&self, inputs: &[Vec<usize>]) -> Option<usize> {
        let x = inputs.first().filter(|x| x.len() == 4)?;
        let (dw, pw) = self.geometries(x).ok()?;
        Some(dw.macs() + pw.macs())
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let [n, h, w, c] = nhwc(self, single(self, inputs)?)?;
        self.window().validate(self, "kernel_size")?;
        if self.depth_multiplier == 0 || self.filters == 0 {
            return Err(self.shape_error("filters and depth_multiplier must be positive"));
        }
        check_channels(
            self,
            c,
            self.base.weights.first().map(|k| k.value.shape()[2]),
        )?;
        let (oh, ow) = self.window().output_hw(self, h, w)?;
        Ok(vec![n, oh, ow, Some(self.filters)])
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.output_shape(inputs)?;
        let c = inputs[0][3].expect("checked by output_shape");
        let (kh, kw) = self.window().size;
        let dm = self.depth_multiplier;
        self.base.weights.clear();
        self.base.add_weight(
            "depthwise_kernel",
            &[kh, kw, c, dm],
            &self.depthwise_initializer.clone(),
            true,
            rng,
        )?;
        self.base.add_weight(
            "pointwise_kernel",
            &[1, 1, c * dm, self.filters],
            &self.pointwise_initializer.clone(),
            true,
            rng,
        )?;
        if self.use_bias {
            self.base.add_weight(
                "bias",
                &[self.filters],
                &self.bias_initializer.clone(),
                true,
                rng,
            )?;
        }
        Ok(())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = single(self, inputs)?;
        Ok(self.compute(x, Epilogue::of(self.activation))?.1)
    }

    fn apply_fused(&self, inputs: &[&Tensor], fusion: &Fusion) -> Option<Result<Tensor>> {
        (self.activation == ActivationFn::Linear).then(|| {
            let x = single(self, inputs)?;
            Ok(self.compute(x, fusion.epilogue())?.1)
        })
    }

    fn forward(&mut self, inputs: &[&Tensor], _training: bool) -> Result<(Tensor, Saved)> {
        let x = single(self, inputs)?;
        let (mid, y, activation) = if self.activation.needs_input() {
            let (mid, z) = self.compute(x, Epilogue::default())?;
            let (y, saved) = activate(self.activation, z);
            (mid, y, saved)
        } else {
            let (mid, y) = self.compute(x, Epilogue::of(self.activation))?;
            (mid, y, Saved::none())
        };
        Ok((
            y,
            Saved::new(Intermediate {
                depthwise_out: mid,
                activation,
            }),
        ))
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
        let saved: &Intermediate = saved.get(self)?;
        let dz = activation_grad(self, self.activation, &saved.activation, output, dy)?;
        let (dw, pw) = self.geometries(x.shape())?;
        let mid = &saved.depthwise_out;
        let mut dmid = Tensor::for_overwrite(mid.shape());
        conv::conv2d_backward_input(
            &pw,
            dz.data(),
            self.base.weights[1].value.data(),
            dmid.data_mut(),
        );
        conv::conv2d_backward_kernel(&pw, mid.data(), dz.data(), dweights[1].data_mut());
        if self.use_bias {
            bias_grad(dz.data(), dweights[2].data_mut());
        }
        let mut dx = Tensor::for_overwrite(x.shape());
        depthwise::depthwise_backward_input(
            &dw,
            dmid.data(),
            self.base.weights[0].value.data(),
            dx.data_mut(),
        );
        depthwise::depthwise_backward_kernel(
            &dw,
            x.data(),
            dmid.data(),
            dweights[0].data_mut(),
            None,
        );
        Ok(vec![dx])
    }
}
