//! DepthwiseConv2D: each input channel convolved with its own `depth_multiplier`
//! filters; kernel shape (kernel_h, kernel_w, channels, depth_multiplier), output
//! channels `channels · depth_multiplier`.

use super::config::ConfigReader;
use super::conv::{activation_grad, check_channels, nhwc, require_built, Window};
use super::{infer, single, write_nulls, Layer, LayerBase, Saved, Shape};
use crate::activations::ActivationFn;
use crate::error::Result;
use crate::initializers::{Initializer, Rng};
use crate::kernels::conv::ConvGeometry;
use crate::kernels::depthwise;
use crate::kernels::Epilogue;
use crate::tensor::Tensor;
use serde_json::{json, Map, Value};

#[derive(Clone, Debug)]
pub struct DepthwiseConv2D {
    base: LayerBase,
    pub depth_multiplier: usize,
    pub window: Window,
    pub activation: ActivationFn,
    pub use_bias: bool,
    pub depthwise_initializer: Initializer,
    pub bias_initializer: Initializer,
}

/// The regularizers and constraints in DepthwiseConv2D's config, accepted only as null.
const NULL_FIELDS: [&str; 5] = [
    "depthwise_regularizer",
    "bias_regularizer",
    "activity_regularizer",
    "depthwise_constraint",
    "bias_constraint",
];

impl DepthwiseConv2D {
    pub fn new(kernel_size: (usize, usize)) -> Self {
        DepthwiseConv2D {
            base: LayerBase::new("depthwise_conv2d"),
            depth_multiplier: 1,
            window: Window::new(kernel_size),
            activation: ActivationFn::Linear,
            use_bias: true,
            depthwise_initializer: Initializer::glorot_uniform(),
            bias_initializer: Initializer::zeros(),
        }
    }

    window_builders!();

    activation_builders!();

    pub fn depth_multiplier(mut self, m: usize) -> Self {
        self.depth_multiplier = m;
        self
    }

    pub(super) fn from_config(c: &ConfigReader) -> Result<Self> {
        c.channels_last()?;
        c.unsupported_unless_null(&NULL_FIELDS)?;
        Ok(DepthwiseConv2D {
            base: c.base()?,
            depth_multiplier: c.positive("depth_multiplier", Some(1))?,
            window: Window::from_config(c, "kernel_size", None)?,
            activation: c.activation("activation")?,
            use_bias: c.bool("use_bias", true)?,
            depthwise_initializer: c
                .initializer("depthwise_initializer", Initializer::glorot_uniform())?,
            bias_initializer: c.initializer("bias_initializer", Initializer::zeros())?,
        })
    }

    fn geometry(&self, x: &[usize]) -> Result<ConvGeometry> {
        let c = x[3];
        self.window.geometry(self, x, c * self.depth_multiplier, c)
    }

    /// `activation(depthwise(x) + bias)`, bias and activation fused into the kernel.
    fn compute(&self, x: &Tensor, activation: ActivationFn) -> Result<Tensor> {
        let out_shape = infer(self, &[x])?;
        require_built(self)?;
        let mut y = Tensor::for_overwrite(out_shape);
        let epilogue = Epilogue {
            bias: self.use_bias.then(|| self.base.weights[1].value.data()),
            activation,
        };
        depthwise::depthwise_forward_with(
            &self.geometry(x.shape())?,
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

    fn config_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("depth_multiplier".into(), json!(self.depth_multiplier));
        m.insert(
            "kernel_size".into(),
            json!([self.window.size.0, self.window.size.1]),
        );
        self.window.write_config(&mut m);
        m.insert("activation".into(), json!(self.activation.name()));
        m.insert("use_bias".into(), json!(self.use_bias));
        m.insert(
            "depthwise_initializer".into(),
            self.depthwise_initializer.to_config(),
        );
        m.insert("bias_initializer".into(), self.bias_initializer.to_config());
        write_nulls(&mut m, &NULL_FIELDS);
        m
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        self.base.check(self.class_name())?;
        let [n, h, w, c] = nhwc(self, single(self, inputs)?)?;
        self.window.validate(self, "kernel_size")?;
        if self.depth_multiplier == 0 {
            return Err(self.shape_error("depth_multiplier must be positive"));
        }
        let c = check_channels(
            self,
            c,
            self.base.weights.first().map(|k| k.value.shape()[2]),
        )?;
        let (oh, ow) = self.window.output_hw(self, h, w)?;
        Ok(vec![n, oh, ow, Some(c * self.depth_multiplier)])
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.output_shape(inputs)?;
        let c = inputs[0][3].expect("checked by output_shape");
        let (kh, kw) = self.window.size;
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
