//! DepthwiseConv2D: each input channel convolved with its own `depth_multiplier`
//! filters; kernel shape (kernel_h, kernel_w, channels, depth_multiplier), output
//! channels `channels · depth_multiplier`.

use super::conv::{
    activation_grad, check_channels, nhwc, one, one_by_one, padded_geometry, require_built,
};
use super::declare::{self, ChannelsLast, LegacyGroups, NullOnly};
use super::{single, Layer, LayerBase, Saved, Shape};
use crate::activations::ActivationFn;
use crate::constraints::Constraint;
use crate::error::Result;
use crate::initializers::{Initializer, Rng};
use crate::kernels::conv::ConvGeometry;
use crate::kernels::depthwise;
use crate::kernels::Epilogue;
use crate::kernels::Padding;
use crate::regularizers::Regularizer;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Keras's `DepthwiseConv2D`: each input channel convolved with its own `depth_multiplier`
/// kernels, kernel shape (kernel_h, kernel_w, channels, depth_multiplier).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepthwiseConv2D {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `depth_multiplier`: output channels per input channel; default 1.
    #[serde(deserialize_with = "declare::positive", default = "one")]
    pub depth_multiplier: usize,
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
    /// tf.keras 2's `groups` (always 1 there): accepted and dropped, since Keras 3 has none.
    #[allow(dead_code)]
    #[serde(default, skip_serializing)]
    groups: LegacyGroups,
    /// Keras's `activation`, applied after the bias; default `linear`.
    #[serde(default)]
    pub activation: ActivationFn,
    /// Keras's `use_bias`: whether a bias per output channel is added; default true.
    #[serde(default = "declare::yes")]
    pub use_bias: bool,
    /// Keras's `depthwise_initializer`: how the depthwise kernel starts; default
    /// `glorot_uniform`.
    #[serde(default = "Initializer::glorot_uniform")]
    pub depthwise_initializer: Initializer,
    /// Keras's `bias_initializer`: how the bias starts; default `zeros`.
    #[serde(default = "Initializer::zeros")]
    pub bias_initializer: Initializer,
    /// Keras's `depthwise_regularizer`: its penalty joins the training loss.
    #[serde(default)]
    pub depthwise_regularizer: Option<Regularizer>,
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
    /// Keras's `bias_constraint`: applied after each optimizer step.
    #[serde(default)]
    pub bias_constraint: Option<Constraint>,
}

impl DepthwiseConv2D {
    /// A DepthwiseConv2D with a `kernel_size` window, like
    /// `keras.layers.DepthwiseConv2D(kernel_size)`, Keras's defaults elsewhere.
    pub fn new(kernel_size: (usize, usize)) -> Self {
        DepthwiseConv2D {
            kernel_size,
            ..declare::defaults("depthwise_conv2d", json!({"kernel_size": 1}))
        }
    }

    window_builders!();

    activation_builders!();

    /// Sets `depth_multiplier`, output channels per input channel (Keras's default 1).
    pub fn depth_multiplier(mut self, m: usize) -> Self {
        self.depth_multiplier = m;
        self
    }

    fn geometry(&self, x: &[usize]) -> Result<ConvGeometry> {
        let c = x[3];
        self.window()
            .geometry(self, x, c * self.depth_multiplier, c)
    }

    /// `activation(depthwise(x) + bias)`, bias and activation fused into the kernel.
    fn compute(&self, x: &Tensor, epilogue: Epilogue) -> Result<Tensor> {
        self.compute_inference(x, epilogue, None)
    }

    /// [`DepthwiseConv2D::compute`] on `x` zero-padded by `padding` first when given.
    fn compute_inference(
        &self,
        x: &Tensor,
        epilogue: Epilogue,
        padding: Option<[[usize; 2]; 2]>,
    ) -> Result<Tensor> {
        let channels = x.shape().get(3).copied().unwrap_or(0);
        let out_c = channels * self.depth_multiplier;
        let (out_shape, g) = padded_geometry(self, self.window(), x, padding, out_c, channels)?;
        require_built(self)?;
        let mut y = Tensor::for_overwrite(out_shape);
        let epilogue = epilogue.with_bias(self.use_bias.then(|| self.base.weights[1].value.data()));
        depthwise::depthwise_forward_with(
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
        let g = self.geometry(x.shape())?;
        let (kernel, bias) = dweights.split_at_mut(1);
        let db = bias.first_mut().map(|db| db.data_mut());
        depthwise::depthwise_backward_kernel(&g, x.data(), dz.data(), kernel[0].data_mut(), db);
        Ok(())
    }
}

impl Layer for DepthwiseConv2D {
    layer_common!("DepthwiseConv2D");

    fn forward_macs(&self, inputs: &[Vec<usize>]) -> Option<usize> {
        let x = inputs.first().filter(|x| x.len() == 4)?;
        self.geometry(x).ok().map(|g| g.macs())
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let [n, h, w, c] = nhwc(self, single(self, inputs)?)?;
        self.window().validate(self, "kernel_size")?;
        if self.depth_multiplier == 0 {
            return Err(self.shape_error("depth_multiplier must be positive"));
        }
        let c = check_channels(
            self,
            c,
            self.base.weights.first().map(|k| k.value.shape()[2]),
        )?;
        let (oh, ow) = self.window().output_hw(self, h, w)?;
        Ok(vec![n, oh, ow, Some(c * self.depth_multiplier)])
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.output_shape(inputs)?;
        let c = inputs[0][3].expect("checked by output_shape");
        let (kh, kw) = self.window().size;
        let bias = self
            .use_bias
            .then_some((c * self.depth_multiplier, &self.bias_initializer));
        self.base.add_kernel_and_bias(
            (
                "kernel",
                &[kh, kw, c, self.depth_multiplier],
                &self.depthwise_initializer,
            ),
            bias,
            rng,
        )
    }

    activated_forward!(compute_inference);

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
        let mut dx = Tensor::for_overwrite(x.shape());
        depthwise::depthwise_backward_input(
            &self.geometry(x.shape())?,
            dz.data(),
            self.base.weights[0].value.data(),
            dx.data_mut(),
        );
        Ok(vec![dx])
    }

    weights_only_backward!();
}
