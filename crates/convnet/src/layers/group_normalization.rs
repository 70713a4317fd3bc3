//! GroupNormalization: each sample's channels fall into `groups` runs, and each run is
//! normalised with all positions together, in training and inference alike; then scaled
//! by `gamma` and shifted by `beta`, one per channel. `groups = 1` is LayerNormalization
//! over every non-batch axis; `groups = channels` is InstanceNormalization.

use super::declare;
use super::{infer, single, Layer, LayerBase, Saved, Shape};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::initializers::{Initializer, Rng};
use crate::kernels::norm::layer::{self, Groups};
use crate::regularizers::Regularizer;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Keras's `GroupNormalization(groups=32, axis=-1, epsilon=1e-3, center=True,
/// scale=True)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupNormalization {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `groups`: how many runs the channels split into; must divide them.
    #[serde(deserialize_with = "declare::positive", default = "thirty_two")]
    pub groups: usize,
    /// Keras's `axis`: the channel axis; convnet takes the last (-1, Keras's default).
    #[serde(deserialize_with = "declare::one_axis", default = "declare::last_axis")]
    pub axis: i64,
    /// Keras's `epsilon`: added to the variance; default 1e-3.
    #[serde(default = "epsilon")]
    pub epsilon: f64,
    /// Keras's `center`: whether `beta` is added; default true.
    #[serde(default = "declare::yes")]
    pub center: bool,
    /// Keras's `scale`: whether `gamma` multiplies; default true.
    #[serde(default = "declare::yes")]
    pub scale: bool,
    /// Keras's `beta_initializer`; default `zeros`.
    #[serde(default = "Initializer::zeros")]
    pub beta_initializer: Initializer,
    /// Keras's `gamma_initializer`; default `ones`.
    #[serde(default = "Initializer::ones")]
    pub gamma_initializer: Initializer,
    /// Keras's `beta_regularizer`: its penalty joins the training loss.
    #[serde(default)]
    pub beta_regularizer: Option<Regularizer>,
    /// Keras's `gamma_regularizer`: its penalty joins the training loss.
    #[serde(default)]
    pub gamma_regularizer: Option<Regularizer>,
    /// Keras's `beta_constraint`: applied after each optimizer step.
    #[serde(default)]
    pub beta_constraint: Option<Constraint>,
    /// Keras's `gamma_constraint`: applied after each optimizer step.
    #[serde(default)]
    pub gamma_constraint: Option<Constraint>,
}

fn thirty_two() -> usize {
    32
}

fn epsilon() -> f64 {
    1e-3
}

impl GroupNormalization {
    /// A GroupNormalization of `groups` groups, Keras's defaults elsewhere.
    pub fn new(groups: usize) -> Self {
        GroupNormalization {
            groups,
            ..declare::defaults("group_normalization", json!({}))
        }
    }

    /// gamma and beta per channel (ones and zeros when absent).
    fn affine(&self, channels: usize) -> (Vec<f32>, Vec<f32>) {
        super::layer_normalization::gamma_beta(
            &self.base.weights,
            self.scale,
            self.center,
            channels,
        )
    }
}

impl Layer for GroupNormalization {
    layer_common!("GroupNormalization");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let shape = single(self, inputs)?;
        let rank = shape.len() as i64;
        if shape.len() < 2 || !(self.axis == -1 || self.axis == rank - 1) {
            return Err(self.shape_error(&format!(
                "axis {} is not supported: convnet normalises groups of the last (channel) \
                 axis of an input of rank 2 or more, got {}",
                self.axis,
                super::format_shape(shape)
            )));
        }
        if self.epsilon.is_nan() || self.epsilon <= 0.0 {
            return Err(self.shape_error("epsilon must be positive"));
        }
        match shape.last().copied().flatten() {
            Some(c) if c.is_multiple_of(self.groups) && c >= self.groups => Ok(shape.clone()),
            c => Err(self.shape_error(&format!(
                "groups = {} must divide the number of channels ({})",
                self.groups,
                c.map_or("unknown".into(), |c| c.to_string())
            ))),
        }
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.base.weights.clear();
        let shape = self.output_shape(inputs)?;
        let c = shape
            .last()
            .copied()
            .flatten()
            .expect("checked by output_shape");
        if self.scale {
            let init = self.gamma_initializer.clone();
            self.base.add_weight("gamma", &[c], &init, true, rng)?;
        }
        if self.center {
            let init = self.beta_initializer.clone();
            self.base.add_weight("beta", &[c], &init, true, rng)?;
        }
        Ok(())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        infer(self, &[x])?;
        if self.scale || self.center {
            super::conv::require_built(self)?;
        }
        let groups = Groups::channel_groups(x.shape(), self.groups);
        let moments = groups.moments(x.data(), self.epsilon);
        let (gamma, beta) = self.affine(*x.shape().last().unwrap_or(&1));
        let y = layer::normalize(&groups, x.data(), (&moments.0, &moments.1), &gamma, &beta);
        Tensor::new(x.shape().to_vec(), y)
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
        let groups = Groups::channel_groups(x.shape(), self.groups);
        let moments = groups.moments(x.data(), self.epsilon);
        let (gamma, _) = self.affine(*x.shape().last().unwrap_or(&1));
        let mut slots = dweights.iter_mut();
        let dgamma = self
            .scale
            .then(|| slots.next().expect("a gradient per weight").data_mut());
        let dbeta = self
            .center
            .then(|| slots.next().expect("a gradient per weight").data_mut());
        let dx = layer::normalize_backward(
            &groups,
            x.data(),
            dy.data(),
            (&moments.0, &moments.1),
            &gamma,
            dgamma,
            dbeta,
        );
        Ok(vec![Tensor::new(x.shape().to_vec(), dx)?])
    }
}
