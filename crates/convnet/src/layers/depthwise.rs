//! DepthwiseConv2D: each input channel convolved with its own `depth_multiplier`
//! filters; kernel shape (kernel_h, kernel_w, channels, depth_multiplier), output
//! channels `channels · depth_multiplier`.

use super::conv::{
    activation_grad, check_channels, nhwc, one, one_by_one, padded_geometry, require_built,
};
use super::declare::{self, ChannelsLast, LegacyGroups, NullOnly};
use super::{single, Conv2D, Fusion, Layer, LayerBase, Saved, Shape};
use crate::activations::ActivationFn;
use crate::constraints::Constraint;
use crate::error::Result;
use crate::initializers::{Initializer, Rng};
use crate::kernels::conv::ConvGeometry;
use crate::kernels::depthwise::{self, with_pointwise};
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
        let (out_shape, g) =
            padded_geometry(self, self.window(), x.shape(), padding, out_c, channels)?;
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

    /// Inference of this layer with the 1x1 Conv2D layers `before` and `after` it (each
    /// with its chain's fusion), on `x` (the input of `before`, or of this layer without
    /// it), as one pass that never makes the tensors between them whole
    /// (`kernels::depthwise::with_pointwise`); this layer's own chain is `fusion`. The
    /// output, and whether `after` was run too: a block runs without it where that
    /// layer does not suit the route. None where the block does not suit it (or a shape
    /// is wrong): the executor then runs the layers one by one, and they report any
    /// error.
    pub(crate) fn apply_with_pointwise(
        &self,
        before: Option<(&Conv2D, &Fusion)>,
        x: &Tensor,
        fusion: &Fusion,
        after: Option<(&Conv2D, &Fusion)>,
    ) -> Option<(Tensor, bool)> {
        let [n, h, w, c] = *x.shape() else {
            return None;
        };
        let epilogue = fusion.epilogue_for(self.activation)?;
        let before = match before {
            Some((conv, conv_fusion)) => Some(conv.pointwise_parts(x.shape(), conv_fusion)?),
            None => None,
        };
        let channels = before.as_ref().map_or(c, |parts| parts.filters);
        if self.depth_multiplier != 1 {
            return None;
        }
        let padding = fusion.input_padding;
        let (mut out_shape, g) = padded_geometry(
            self,
            self.window(),
            &[n, h, w, channels],
            padding,
            channels,
            channels,
        )
        .ok()?;
        require_built(self).ok()?;
        let before_kernels = match &before {
            Some(parts) => Some(parts.pointwise()?),
            None => None,
        };
        let before = before_kernels.as_ref();
        let after =
            after.and_then(|(conv, conv_fusion)| conv.pointwise_parts(&out_shape, conv_fusion));
        let after_kernels = after.as_ref().and_then(|parts| parts.pointwise());
        let after_kernels = after_kernels.filter(|p| with_pointwise::suits(&g, before, Some(p)));
        if after_kernels.is_none() && !with_pointwise::suits(&g, before, None) {
            return None;
        }
        if let (Some(parts), Some(_)) = (&after, &after_kernels) {
            out_shape[3] = parts.filters;
        }
        let mut y = Tensor::for_overwrite(out_shape);
        let bias = self.use_bias.then(|| self.base.weights[1].value.data());
        let kernel = self.base.weights[0].value.data();
        let epilogue = epilogue.with_bias(bias);
        let after = after_kernels.as_ref();
        with_pointwise::forward(before, x.data(), &g, kernel, epilogue, after, y.data_mut());
        Some((y, after.is_some()))
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

    activated_backward!();
}
