//! BatchNormalization. In training mode each channel is normalised with the batch's
//! own mean and (biased) variance, and the moving statistics move toward them:
//! `moving = moving · momentum + batch · (1 − momentum)`. In inference mode, and always
//! when the layer is frozen (`trainable = false`, as in Keras 3), the moving statistics
//! are used instead. Weights, in Keras's order: gamma (if `scale`), beta (if `center`),
//! moving_mean, moving_variance.

use super::declare::{self, AlwaysFalse, NullOnly};
use super::{infer, single, Layer, LayerBase, Saved, Shape};
use crate::collective::Communicator;
use crate::constraints::Constraint;
use crate::error::Result;
use crate::initializers::{Initializer, Rng};
use crate::kernels::norm;
use crate::regularizers::Regularizer;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Keras's `BatchNormalization`: `gamma · (x − mean) / √(var + epsilon) + beta` per
/// channel, with the batch's statistics in training and the moving ones otherwise.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNormalization {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `axis`: the features axis, normalised per index along it; default -1 (the
    /// channels).
    #[serde(deserialize_with = "declare::one_axis", default = "declare::last_axis")]
    pub axis: i64,
    /// Keras's `momentum`: how much of the moving statistics each training batch keeps;
    /// default 0.99.
    #[serde(default = "point_99")]
    pub momentum: f64,
    /// Keras's `epsilon`: added to the variance so the division is safe; default 1e-3.
    #[serde(default = "epsilon")]
    pub epsilon: f64,
    /// Keras's `center`: whether the learned offset `beta` is added; default true.
    #[serde(default = "declare::yes")]
    pub center: bool,
    /// Keras's `scale`: whether the learned factor `gamma` multiplies; default true.
    #[serde(default = "declare::yes")]
    pub scale: bool,
    /// Keras's `beta_initializer`: how the offset starts; default `zeros`.
    #[serde(default = "Initializer::zeros")]
    pub beta_initializer: Initializer,
    /// Keras's `gamma_initializer`: how the factor starts; default `ones`.
    #[serde(default = "Initializer::ones")]
    pub gamma_initializer: Initializer,
    /// Keras's `moving_mean_initializer`: how the moving mean starts; default `zeros`.
    #[serde(default = "Initializer::zeros")]
    pub moving_mean_initializer: Initializer,
    /// Keras's `moving_variance_initializer`: how the moving variance starts; default
    /// `ones`.
    #[serde(default = "Initializer::ones")]
    pub moving_variance_initializer: Initializer,
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
    /// Keras's `synchronized`: in a data-parallel run, normalize by the statistics of the
    /// whole global batch (pooled over the ranks) rather than each rank's slice.
    #[serde(default)]
    pub synchronized: bool,
    /// The ranks a synchronized layer pools over, set by a data-parallel `fit`.
    #[serde(skip)]
    ranks: crate::collective::Ranks,
    #[serde(default)]
    renorm: AlwaysFalse,
    #[serde(default)]
    renorm_clipping: NullOnly,
    #[serde(default = "point_99")]
    renorm_momentum: f64,
}

/// Per-channel mean and variance over every rank's slice of the batch (sums and sums
/// of squares pooled in f64), and this rank's share of the samples.
fn pooled_moments(
    x: &[f32],
    channels: usize,
    inner: usize,
    ranks: &dyn Communicator,
) -> Result<(Vec<f32>, Vec<f32>, f32)> {
    let [sum, squares] = norm::sums_and_squares(x, channels, inner);
    let local = (x.len() / channels.max(1)) as f64;
    let mut sums: Vec<f64> = sum.into_iter().chain(squares).chain([local]).collect();
    ranks.allreduce_sum_f64(&mut sums)?;
    let count = sums[2 * channels].max(1.0);
    let mean: Vec<f64> = sums[..channels].iter().map(|s| s / count).collect();
    let var = sums[channels..2 * channels]
        .iter()
        .zip(&mean)
        .map(|(s, m)| (s / count - m * m).max(0.0) as f32)
        .collect();
    let mean = mean.iter().map(|&m| m as f32).collect();
    Ok((mean, var, (local / count) as f32))
}

/// The default momentum (and renorm_momentum).
fn point_99() -> f64 {
    0.99
}

fn epsilon() -> f64 {
    1e-3
}

/// What training-mode backward needs: the batch's statistics, from which it normalises
/// the input again as it goes (keeping x̂ would be another tensor of the input's size,
/// written in the forward pass and read in the backward).
struct BatchStatistics {
    /// With pooled statistics, this rank's samples over the global batch's.
    share: Option<f32>,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl Default for BatchNormalization {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchNormalization {
    /// A BatchNormalization with Keras's defaults: last axis, momentum 0.99, epsilon 1e-3,
    /// centred and scaled.
    pub fn new() -> Self {
        declare::defaults("batch_normalization", json!({}))
    }

    /// Sets `axis`, the features axis (Keras's default -1).
    pub fn axis(mut self, axis: i64) -> Self {
        self.axis = axis;
        self
    }

    /// Sets `momentum` of the moving statistics (Keras's default 0.99).
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
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

    /// The axis as an index into a shape of `rank` dimensions (never the batch axis).
    fn axis_index(&self, rank: usize) -> Result<usize> {
        let axis = if self.axis < 0 {
            rank as i64 + self.axis
        } else {
            self.axis
        };
        if axis <= 0 || axis >= rank as i64 {
            return Err(self.shape_error(&format!(
                "axis {} is out of range for an input of rank {rank}",
                self.axis
            )));
        }
        Ok(axis as usize)
    }

    /// (channels, inner): the tensor seen as (outer, channels, inner).
    fn layout(&self, shape: &[usize]) -> Result<(usize, usize)> {
        let axis = self.axis_index(shape.len())?;
        Ok((shape[axis], shape[axis + 1..].iter().product()))
    }

    /// Indices of gamma, beta, moving_mean and moving_variance in the weight list.
    fn slots(&self) -> (Option<usize>, Option<usize>, usize, usize) {
        let gamma = self.scale.then_some(0);
        let beta = self.center.then_some(self.scale as usize);
        let mean = self.scale as usize + self.center as usize;
        (gamma, beta, mean, mean + 1)
    }

    fn per_channel(&self, slot: Option<usize>, channels: usize, default: f32) -> Vec<f32> {
        slot.map_or_else(
            || vec![default; channels],
            |i| self.base.weights[i].value.data().to_vec(),
        )
    }

    /// `y = γ · (x − mean) · inv_std + β`.
    fn normalize(&self, x: &Tensor, mean: &[f32], inv_std: &[f32]) -> Result<Tensor> {
        let (channels, inner) = self.layout(x.shape())?;
        let (g, b, _, _) = self.slots();
        let (gamma, beta) = (
            self.per_channel(g, channels, 1.0),
            self.per_channel(b, channels, 0.0),
        );
        let mut y = Tensor::for_overwrite(x.shape());
        norm::normalize(x.data(), mean, inv_std, &gamma, &beta, inner, y.data_mut());
        Ok(y)
    }

    fn moving_inv_std(&self) -> (Vec<f32>, Vec<f32>) {
        let (_, _, m, v) = self.slots();
        let mean = self.base.weights[m].value.data().to_vec();
        let inv_std = norm::inv_std(self.base.weights[v].value.data(), self.epsilon as f32);
        (mean, inv_std)
    }
}

impl Layer for BatchNormalization {
    layer_common!("BatchNormalization");

    /// Its gradient comes from its input and the batch's statistics.
    fn backward_reads_output(&self) -> bool {
        false
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let shape = single(self, inputs)?;
        let axis = self.axis_index(shape.len())?;
        if self.epsilon.is_nan() || self.epsilon <= 0.0 {
            return Err(self.shape_error("epsilon must be positive"));
        }
        match (shape[axis], self.base.weights.last()) {
            (None, _) => {
                Err(self.shape_error(&format!("the size of axis {} must be known", self.axis)))
            }
            (Some(c), Some(w)) if w.value.shape() != [c] => Err(self.shape_error(&format!(
                "was built for {} features on axis {} but the input has {c}",
                w.value.shape()[0],
                self.axis
            ))),
            _ => Ok(shape.clone()),
        }
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.base.weights.clear();
        self.output_shape(inputs)?;
        let c = inputs[0][self.axis_index(inputs[0].len())?].expect("checked by output_shape");
        if self.scale {
            self.base
                .add_weight("gamma", &[c], &self.gamma_initializer.clone(), true, rng)?;
        }
        if self.center {
            self.base
                .add_weight("beta", &[c], &self.beta_initializer.clone(), true, rng)?;
        }
        self.base.add_weight(
            "moving_mean",
            &[c],
            &self.moving_mean_initializer.clone(),
            false,
            rng,
        )?;
        self.base.add_weight(
            "moving_variance",
            &[c],
            &self.moving_variance_initializer.clone(),
            false,
            rng,
        )?;
        Ok(())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        infer(self, &[x])?;
        super::conv::require_built(self)?;
        let (mean, inv_std) = self.moving_inv_std();
        self.normalize(x, &mean, &inv_std)
    }

    fn inference_affine(&self, rank: usize) -> Option<(Vec<f32>, Vec<f32>)> {
        if self.axis_index(rank).ok()? != rank - 1 || self.base.weights.is_empty() {
            return None;
        }
        let (mean, inv_std) = self.moving_inv_std();
        let (g, b, _, _) = self.slots();
        let channels = mean.len();
        let gamma = self.per_channel(g, channels, 1.0);
        let beta = self.per_channel(b, channels, 0.0);
        let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, s)| g * s).collect();
        let shift = beta
            .iter()
            .zip(&mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        Some((scale, shift))
    }

    fn set_ranks(
        &mut self,
        ranks: Option<&std::sync::Arc<dyn Communicator>>,
        sync_batch_norm: bool,
    ) {
        let pooled = self.synchronized || sync_batch_norm;
        self.ranks = crate::collective::Ranks(ranks.filter(|_| pooled).cloned());
    }

    fn forward(&mut self, inputs: &[&Tensor], training: bool) -> Result<(Tensor, Saved)> {
        if !(training && self.base.trainable) {
            return Ok((self.apply(inputs)?, Saved::none()));
        }
        let x = *single(self, inputs)?;
        infer(self, &[x])?;
        super::conv::require_built(self)?;
        let (channels, inner) = self.layout(x.shape())?;
        let (mean, var, share) = match &self.ranks.0 {
            Some(ranks) => {
                let (mean, var, share) = pooled_moments(x.data(), channels, inner, ranks.as_ref())?;
                (mean, var, Some(share))
            }
            None => {
                let (mean, var) = norm::moments(x.data(), channels, inner);
                (mean, var, None)
            }
        };
        let eps = self.epsilon as f32;
        let inv_std = norm::inv_std(&var, eps);
        let y = self.normalize(x, &mean, &inv_std)?;
        let momentum = self.momentum as f32;
        let (_, _, m, v) = self.slots();
        for (slot, batch) in [(m, &mean), (v, &var)] {
            norm::update_moving(self.base.weights[slot].value.data_mut(), batch, momentum);
        }
        Ok((
            y,
            Saved::new(BatchStatistics {
                share,
                mean,
                inv_std,
            }),
        ))
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        _output: &Tensor,
        saved: &Saved,
        dy: &Tensor,
        dweights: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let x = *single(self, inputs)?;
        let (channels, inner) = self.layout(x.shape())?;
        let (g, b, _, _) = self.slots();
        let gamma = self.per_channel(g, channels, 1.0);
        // Inference mode: a per-channel affine map of x with fixed statistics.
        let training_stats = saved.get::<BatchStatistics>(self).ok();
        let share = training_stats.and_then(|s| s.share);
        let (mean, inv_std) = match training_stats {
            Some(s) => (s.mean.clone(), s.inv_std.clone()),
            None => self.moving_inv_std(),
        };
        let statistics = (&mean[..], &inv_std[..]);
        let (sum_dy, sum_dy_xhat) = norm::grad_sums(dy.data(), x.data(), statistics, inner);
        if let Some(i) = g {
            norm::accumulate(dweights[i].data_mut(), &sum_dy_xhat);
        }
        if let Some(i) = b {
            norm::accumulate(dweights[i].data_mut(), &sum_dy);
        }
        // Pooled statistics: dx needs the sums over the whole global batch. Each rank's
        // dy is its own mean loss's gradient, so its sums are put on the global batch's
        // scale (× share) before they are added; the sum, divided by this rank's count
        // in backward_input, is then the global mean on this rank's scale.
        let (sum_dy, sum_dy_xhat) = match (&self.ranks.0, share) {
            (Some(ranks), Some(share)) => {
                let mut sums: Vec<f32> = sum_dy
                    .iter()
                    .chain(&sum_dy_xhat)
                    .map(|v| v * share)
                    .collect();
                ranks.allreduce_sum(&mut sums)?;
                let rest = sums.split_off(channels);
                (sums, rest)
            }
            _ => (sum_dy, sum_dy_xhat),
        };
        let mut dx = Tensor::for_overwrite(dy.shape());
        let training = training_stats.is_some();
        let sums = (&sum_dy[..], &sum_dy_xhat[..]);
        norm::backward_input(
            dy.data(),
            x.data(),
            statistics,
            &gamma,
            sums,
            inner,
            training,
            dx.data_mut(),
        );
        Ok(vec![dx])
    }
}
