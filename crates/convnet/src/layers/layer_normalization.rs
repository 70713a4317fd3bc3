//! LayerNormalization: each sample is normalised over `axis` (by default its last axis,
//! the features), with its own mean and variance, in training and inference alike; then
//! scaled by `gamma` and shifted by `beta`, one per position along those axes. ConvNeXt
//! and most transformers use it. Keras's deprecated `rms_scaling` divides x (not
//! centred) by √(variance + epsilon) and keeps only gamma, as Keras does.

use super::declare::{self, Axes};
use super::{infer, single, Layer, LayerBase, Saved, Shape, Weight};
use crate::constraints::Constraint;
use crate::error::Result;
use crate::initializers::{Initializer, Rng};
use crate::kernels::norm::layer::{self, Groups};
use crate::regularizers::Regularizer;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Keras's `LayerNormalization(axis=-1, epsilon=1e-3, center=True, scale=True)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerNormalization {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `axis`: the axis or axes normalised over; default -1.
    #[serde(default = "last")]
    pub axis: Axes,
    /// Keras's `epsilon`: added to the variance; default 1e-3.
    #[serde(default = "epsilon")]
    pub epsilon: f64,
    /// Keras's `center`: whether `beta` is added; default true.
    #[serde(default = "declare::yes")]
    pub center: bool,
    /// Keras's `scale`: whether `gamma` multiplies; default true.
    #[serde(default = "declare::yes")]
    pub scale: bool,
    /// Keras's deprecated `rms_scaling`: x / √(variance + epsilon) · gamma; default false.
    #[serde(default)]
    pub rms_scaling: bool,
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

fn last() -> Axes {
    Axes::One(-1)
}

fn epsilon() -> f64 {
    1e-3
}

impl Default for LayerNormalization {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerNormalization {
    /// A LayerNormalization with Keras's defaults: the last axis, epsilon 1e-3, centred
    /// and scaled.
    pub fn new() -> Self {
        declare::defaults("layer_normalization", json!({}))
    }

    /// Sets `axis`, one axis or several (Keras's default -1).
    pub fn axis(mut self, axis: Axes) -> Self {
        self.axis = axis;
        self
    }

    /// Sets `epsilon` (Keras's default 1e-3).
    pub fn epsilon(mut self, epsilon: f64) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// Sets `center`, whether `beta` is learned and added (Keras's default true).
    pub fn center(mut self, center: bool) -> Self {
        self.center = center;
        self
    }

    /// Sets `scale`, whether `gamma` is learned and multiplied (Keras's default true).
    pub fn scale(mut self, scale: bool) -> Self {
        self.scale = scale;
        self
    }

    fn axes(&self, rank: usize) -> Result<Vec<usize>> {
        self.axis.resolve(rank).map_err(|m| self.shape_error(&m))
    }

    fn has_gamma(&self) -> bool {
        self.scale || self.rms_scaling
    }

    fn has_beta(&self) -> bool {
        self.center && !self.rms_scaling
    }

    /// gamma and beta by slot (ones and zeros when absent).
    fn affine(&self, slots: usize) -> (Vec<f32>, Vec<f32>) {
        gamma_beta(&self.base.weights, self.has_gamma(), self.has_beta(), slots)
    }
}

/// A normalisation's `gamma` and `beta` (the weights in that order, each present when
/// its flag is set), or ones and zeros of length `slots` for the absent ones.
pub(super) fn gamma_beta(
    weights: &[Weight],
    gamma: bool,
    beta: bool,
    slots: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut weights = weights.iter();
    let mut take = |present: bool, absent: f32| match present.then(|| weights.next()).flatten() {
        Some(w) => w.value.data().to_vec(),
        None => vec![absent; slots],
    };
    let gamma = take(gamma, 1.0);
    let beta = take(beta, 0.0);
    (gamma, beta)
}

impl Layer for LayerNormalization {
    layer_common!("LayerNormalization");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let shape = single(self, inputs)?;
        if self.epsilon.is_nan() || self.epsilon <= 0.0 {
            return Err(self.shape_error("epsilon must be positive"));
        }
        for axis in self.axes(shape.len())? {
            if shape[axis].is_none() {
                return Err(self.shape_error(&format!("the size of axis {axis} must be known")));
            }
        }
        Ok(shape.clone())
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.base.weights.clear();
        self.output_shape(inputs)?;
        let shape: Vec<usize> = self
            .axes(inputs[0].len())?
            .iter()
            .map(|&a| inputs[0][a].expect("checked by output_shape"))
            .collect();
        // Keras's build makes `axis` a sorted list (`-1` becomes `[-1]`), as its config
        // then writes it.
        self.axis = match &self.axis {
            Axes::One(a) => Axes::Many(vec![*a]),
            Axes::Many(list) => {
                let mut list = list.clone();
                list.sort_unstable();
                Axes::Many(list)
            }
        };
        if self.has_gamma() {
            let init = self.gamma_initializer.clone();
            self.base.add_weight("gamma", &shape, &init, true, rng)?;
        }
        if self.has_beta() {
            let init = self.beta_initializer.clone();
            self.base.add_weight("beta", &shape, &init, true, rng)?;
        }
        Ok(())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        infer(self, &[x])?;
        if self.has_gamma() || self.has_beta() {
            super::conv::require_built(self)?;
        }
        let groups = Groups::new(x.shape(), &self.axes(x.rank())?);
        let (mean, inv_std) = groups.moments(x.data(), self.epsilon);
        let (gamma, beta) = self.affine(groups.size);
        if !self.rms_scaling {
            let y = layer::normalize(&groups, x.data(), (&mean, &inv_std), &gamma, &beta);
            return Tensor::new(x.shape().to_vec(), y);
        }
        let mut y = x.clone();
        for (i, v) in y.data_mut().iter_mut().enumerate() {
            *v *= inv_std[groups.group[i]] * gamma[groups.slot[i]];
        }
        Ok(y)
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _output: &Tensor,
        _saved: &Saved,
        dy: &Tensor,
        dweights: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let x = *single(self, inputs)?;
        let groups = Groups::new(x.shape(), &self.axes(x.rank())?);
        let (mean, inv_std) = groups.moments(x.data(), self.epsilon);
        let (gamma, _) = self.affine(groups.size);
        let (x, dy) = (x.data(), dy.data());
        let mut slots = dweights.iter_mut();
        let dgamma = self
            .has_gamma()
            .then(|| slots.next().expect("a gradient per weight").data_mut());
        if !self.rms_scaling {
            let dbeta = self
                .has_beta()
                .then(|| slots.next().expect("a gradient per weight").data_mut());
            let dx =
                layer::normalize_backward(&groups, x, dy, (&mean, &inv_std), &gamma, dgamma, dbeta);
            return Tensor::new(inputs[0].shape().to_vec(), dx).map(|dx| vec![dx]);
        }
        // rms_scaling: y = x·s·γ with s = (var + ε)^-½ (var about the mean), so
        // dx = g·s − s³·(x − μ)·Σ(g·x)/n, with g = dy·γ.
        let (g_of, s_of) = (&groups.group, &groups.slot);
        let grad = |i: usize| dy[i] * gamma[s_of[i]];
        if let Some(dgamma) = dgamma {
            (0..x.len()).for_each(|i| dgamma[s_of[i]] += dy[i] * x[i] * inv_std[g_of[i]]);
        }
        let n = groups.size as f64;
        let gx = groups.sums(|i| grad(i) * x[i]);
        let dx: Vec<f32> = (0..x.len())
            .map(|i| {
                let (g, s) = (g_of[i], f64::from(inv_std[g_of[i]]));
                let centred = f64::from(x[i] - mean[g]);
                (f64::from(grad(i)) * s - s * s * s * centred * gx[g] / n) as f32
            })
            .collect();
        Ok(vec![Tensor::new(inputs[0].shape().to_vec(), dx)?])
    }
}
