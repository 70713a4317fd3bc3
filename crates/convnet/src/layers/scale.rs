//! The scaling layers that keras.applications registers for its own models, so that
//! their files load as Keras saves them: ConvNeXt's `LayerScale` (a learned factor per
//! channel) and InceptionResNetV2's `CustomScaleLayer` (a residual added at a fixed
//! scale).

use super::declare;
use super::{expect_inputs, infer, single, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::initializers::{Initializer, Rng};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// keras.applications.convnext's `LayerScale(init_values, projection_dim)`: `x · γ`,
/// with γ one learned factor per channel (the last axis), starting at `init_values`.
/// Keras names the weight `variable`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerScale {
    #[serde(skip)]
    base: LayerBase,
    /// The factors' starting value (ConvNeXt uses 1e-6).
    pub init_values: f64,
    /// The number of channels.
    #[serde(deserialize_with = "declare::positive")]
    pub projection_dim: usize,
}

impl LayerScale {
    /// A LayerScale of `projection_dim` channels starting at `init_values`.
    pub fn new(init_values: f64, projection_dim: usize) -> Self {
        LayerScale {
            init_values,
            projection_dim,
            ..declare::defaults(
                "layer_scale",
                json!({"init_values": 0.0, "projection_dim": 1}),
            )
        }
    }

    fn gamma(&self) -> Result<&[f32]> {
        super::conv::require_built(self)?;
        Ok(self.base.weights[0].value.data())
    }
}

impl Layer for LayerScale {
    layer_common!("LayerScale");

    fn keras_module(&self) -> &'static str {
        "keras.src.applications.convnext"
    }

    fn registered_name(&self) -> Option<&'static str> {
        Some("LayerScale")
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let shape = single(self, inputs)?;
        match shape.last() {
            Some(Some(c)) if *c == self.projection_dim => Ok(shape.clone()),
            _ => Err(self.shape_error(&format!(
                "expects {} channels on the last axis, got {}",
                self.projection_dim,
                super::format_shape(shape)
            ))),
        }
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.base.weights.clear();
        self.output_shape(inputs)?;
        let init = Initializer::from_config(&json!({
            "class_name": "Constant",
            "config": {"value": self.init_values}
        }))?;
        self.base
            .add_weight("variable", &[self.projection_dim], &init, true, rng)
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        infer(self, &[x])?;
        let gamma = self.gamma()?;
        let mut y = x.clone();
        for row in y.data_mut().chunks_exact_mut(gamma.len()) {
            row.iter_mut().zip(gamma).for_each(|(v, g)| *v *= g);
        }
        Ok(y)
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        dweights: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let x = *single(self, inputs)?;
        let gamma = self.gamma()?;
        let c = gamma.len();
        let dgamma = dweights[0].data_mut();
        let mut dx = dy.clone();
        for (d_row, x_row) in dx
            .data_mut()
            .chunks_exact_mut(c)
            .zip(x.data().chunks_exact(c))
        {
            for ((d, x), (g, dg)) in d_row
                .iter_mut()
                .zip(x_row)
                .zip(gamma.iter().zip(dgamma.iter_mut()))
            {
                *dg += *d * x;
                *d *= g;
            }
        }
        Ok(vec![dx])
    }
}

/// keras.applications.inception_resnet_v2's `CustomScaleLayer(scale)`: of two inputs of
/// one shape, `x₀ + x₁ · scale`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomScaleLayer {
    #[serde(skip)]
    base: LayerBase,
    /// The factor on the second input (the residual branch).
    pub scale: f64,
}

impl CustomScaleLayer {
    /// A CustomScaleLayer adding its second input times `scale` to its first.
    pub fn new(scale: f64) -> Self {
        CustomScaleLayer {
            scale,
            ..declare::defaults("custom_scale_layer", json!({"scale": 1.0}))
        }
    }
}

impl Layer for CustomScaleLayer {
    layer_common!("CustomScaleLayer");

    fn keras_module(&self) -> &'static str {
        "keras.src.applications.inception_resnet_v2"
    }

    fn registered_name(&self) -> Option<&'static str> {
        Some("CustomScaleLayer")
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        expect_inputs(self, inputs, 2)?;
        if inputs[0] != inputs[1] {
            return Err(self.shape_error(&format!(
                "its two inputs differ in shape: {} and {}",
                super::format_shape(&inputs[0]),
                super::format_shape(&inputs[1])
            )));
        }
        Ok(inputs[0].clone())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        infer(self, inputs)?;
        let scale = self.scale as f32;
        let mut y = inputs[0].clone();
        y.data_mut()
            .iter_mut()
            .zip(inputs[1].data())
            .for_each(|(v, r)| *v += r * scale);
        Ok(y)
    }

    fn backward_impl(
        &self,
        _: &[&Tensor],
        _: &Tensor,
        _: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let mut residual = dy.clone();
        let scale = self.scale as f32;
        residual.data_mut().iter_mut().for_each(|d| *d *= scale);
        Ok(vec![dy.clone(), residual])
    }
}
