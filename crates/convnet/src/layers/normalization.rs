//! BatchNormalization. In training mode each channel is normalised with the batch's
//! own mean and (biased) variance, and the moving statistics move toward them:
//! `moving = moving · momentum + batch · (1 − momentum)`. In inference mode, and always
//! when the layer is frozen (`trainable = false`, as in Keras 3), the moving statistics
//! are used instead. Weights, in Keras's order: gamma (if `scale`), beta (if `center`),
//! moving_mean, moving_variance.

use super::config::ConfigReader;
use super::{infer, single, write_nulls, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::initializers::{Initializer, Rng};
use crate::kernels::norm;
use crate::tensor::Tensor;
use serde_json::{json, Map, Value};

#[derive(Clone, Debug)]
pub struct BatchNormalization {
    base: LayerBase,
    pub axis: i64,
    pub momentum: f64,
    pub epsilon: f64,
    pub center: bool,
    pub scale: bool,
    pub beta_initializer: Initializer,
    pub gamma_initializer: Initializer,
    pub moving_mean_initializer: Initializer,
    pub moving_variance_initializer: Initializer,
    synchronized: bool,
    renorm_momentum: f64,
}

/// The regularizers and constraints in BatchNormalization's config, accepted only as null.
const NULL_FIELDS: [&str; 4] = [
    "beta_regularizer",
    "gamma_regularizer",
    "beta_constraint",
    "gamma_constraint",
];

/// What training-mode backward needs: the normalised input and 1/√(var + ε).
struct BatchStatistics {
    x_hat: Tensor,
    inv_std: Vec<f32>,
}

impl Default for BatchNormalization {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchNormalization {
    pub fn new() -> Self {
        BatchNormalization {
            base: LayerBase::new("batch_normalization"),
            axis: -1,
            momentum: 0.99,
            epsilon: 1e-3,
            center: true,
            scale: true,
            beta_initializer: Initializer::zeros(),
            gamma_initializer: Initializer::ones(),
            moving_mean_initializer: Initializer::zeros(),
            moving_variance_initializer: Initializer::ones(),
            synchronized: false,
            renorm_momentum: 0.99,
        }
    }

    pub fn axis(mut self, axis: i64) -> Self {
        self.axis = axis;
        self
    }

    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    pub fn epsilon(mut self, epsilon: f64) -> Self {
        self.epsilon = epsilon;
        self
    }

    pub fn center(mut self, center: bool) -> Self {
        self.center = center;
        self
    }

    pub fn scale(mut self, scale: bool) -> Self {
        self.scale = scale;
        self
    }

    pub(super) fn from_config(c: &ConfigReader) -> Result<Self> {
        c.unsupported_unless_null(&NULL_FIELDS)?;
        c.unsupported_unless_null(&["renorm_clipping"])?;
        if c.bool("renorm", false)? {
            return Err(c.error(
                "renorm",
                "batch renormalization is not supported by convnet",
            ));
        }
        let axis = match c.get("axis") {
            Some(serde_json::Value::Array(items)) if items.len() == 1 => items[0].as_i64(),
            Some(v) => v.as_i64(),
            None => Some(-1),
        }
        .ok_or_else(|| c.error("axis", "expected one integer axis"))?;
        Ok(BatchNormalization {
            base: c.base()?,
            axis,
            momentum: c.f64("momentum", 0.99)?,
            epsilon: c.f64("epsilon", 1e-3)?,
            center: c.bool("center", true)?,
            scale: c.bool("scale", true)?,
            beta_initializer: c.initializer("beta_initializer", Initializer::zeros())?,
            gamma_initializer: c.initializer("gamma_initializer", Initializer::ones())?,
            moving_mean_initializer: c
                .initializer("moving_mean_initializer", Initializer::zeros())?,
            moving_variance_initializer: c
                .initializer("moving_variance_initializer", Initializer::ones())?,
            synchronized: c.bool("synchronized", false)?,
            renorm_momentum: c.f64("renorm_momentum", 0.99)?,
        })
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

    /// `y = γ · (x − mean) · inv_std + β`; also returns x̂ when asked.
    fn normalize(
        &self,
        x: &Tensor,
        mean: &[f32],
        inv_std: &[f32],
        keep_x_hat: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (channels, inner) = self.layout(x.shape())?;
        let (g, b, _, _) = self.slots();
        let (gamma, beta) = (
            self.per_channel(g, channels, 1.0),
            self.per_channel(b, channels, 0.0),
        );
        let mut y = Tensor::for_overwrite(x.shape());
        let mut x_hat = keep_x_hat.then(|| Tensor::for_overwrite(x.shape()));
        let xh = x_hat.as_mut().map(|xh| xh.data_mut());
        norm::normalize(
            x.data(),
            mean,
            inv_std,
            &gamma,
            &beta,
            inner,
            y.data_mut(),
            xh,
        );
        Ok((y, x_hat))
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

    fn config_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("axis".into(), json!(self.axis));
        m.insert("momentum".into(), json!(self.momentum));
        m.insert("epsilon".into(), json!(self.epsilon));
        m.insert("center".into(), json!(self.center));
        m.insert("scale".into(), json!(self.scale));
        m.insert("beta_initializer".into(), self.beta_initializer.to_config());
        m.insert(
            "gamma_initializer".into(),
            self.gamma_initializer.to_config(),
        );
        m.insert(
            "moving_mean_initializer".into(),
            self.moving_mean_initializer.to_config(),
        );
        m.insert(
            "moving_variance_initializer".into(),
            self.moving_variance_initializer.to_config(),
        );
        write_nulls(&mut m, &NULL_FIELDS);
        m.insert("synchronized".into(), json!(self.synchronized));
        m.insert("renorm".into(), json!(false));
        m.insert("renorm_clipping".into(), Value::Null);
        m.insert("renorm_momentum".into(), json!(self.renorm_momentum));
        m
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
        Ok(self.normalize(x, &mean, &inv_std, false)?.0)
    }

    fn forward(&mut self, inputs: &[&Tensor], training: bool) -> Result<(Tensor, Saved)> {
        if !(training && self.base.trainable) {
            return Ok((self.apply(inputs)?, Saved::none()));
        }
        let x = *single(self, inputs)?;
        infer(self, &[x])?;
        super::conv::require_built(self)?;
        let (channels, inner) = self.layout(x.shape())?;
        let (mean, var) = norm::moments(x.data(), channels, inner);
        let eps = self.epsilon as f32;
        let inv_std = norm::inv_std(&var, eps);
        let (y, x_hat) = self.normalize(x, &mean, &inv_std, true)?;
        let momentum = self.momentum as f32;
        let (_, _, m, v) = self.slots();
        for (slot, batch) in [(m, &mean), (v, &var)] {
            norm::update_moving(self.base.weights[slot].value.data_mut(), batch, momentum);
        }
        let x_hat = x_hat.expect("asked for x_hat");
        Ok((y, Saved::new(BatchStatistics { x_hat, inv_std })))
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
        let (x_hat, inv_std) = match training_stats {
            Some(s) => (s.x_hat.clone(), s.inv_std.clone()),
            None => {
                let (mean, inv_std) = self.moving_inv_std();
                let x_hat = self
                    .normalize(x, &mean, &inv_std, true)?
                    .1
                    .expect("asked for x_hat");
                // normalize() applied gamma and beta to y only; x_hat is the plain x̂.
                (x_hat, inv_std)
            }
        };
        let (sum_dy, sum_dy_xhat) = norm::grad_sums(dy.data(), x_hat.data(), channels, inner);
        if let Some(i) = g {
            norm::accumulate(dweights[i].data_mut(), &sum_dy_xhat);
        }
        if let Some(i) = b {
            norm::accumulate(dweights[i].data_mut(), &sum_dy);
        }
        let mut dx = Tensor::for_overwrite(dy.shape());
        let training = training_stats.is_some();
        let sums = (&sum_dy[..], &sum_dy_xhat[..]);
        let (g, s) = (&gamma[..], &inv_std[..]);
        norm::backward_input(
            dy.data(),
            x_hat.data(),
            g,
            s,
            sums,
            inner,
            training,
            dx.data_mut(),
        );
        Ok(vec![dx])
    }
}
