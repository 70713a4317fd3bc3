//! Dropout: in training, each value is zeroed with probability `rate` and the survivors
//! are scaled by 1/(1 − rate), so the expected output equals the input; at inference it
//! is the identity. The mask comes from a seeded generator (the layer's `seed`, else one
//! drawn from the model's generator when the layer is built), so runs repeat exactly.

use super::declare;
use super::{single, Layer, LayerBase, Saved, Shape};
use crate::error::Result;
use crate::initializers::{rng_from_seed, Rng};
use crate::tensor::Tensor;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Keras's `Dropout(rate)`: in training, zeroes each input with probability `rate` and
/// scales the rest by 1/(1 − rate); the identity in inference.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dropout {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `rate`: the fraction of inputs dropped, in [0, 1].
    #[serde(deserialize_with = "declare::unit_interval")]
    pub rate: f64,
    /// Keras's `seed`: fixes the masks; default None (drawn from the model's generator).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Keras's `noise_shape`: the mask's shape, broadcast over axes of size 1; `None`
    /// entries take the input's size.
    #[serde(deserialize_with = "declare::sizes::optional::deserialize", default)]
    pub noise_shape: Option<Vec<Option<usize>>>,
    #[serde(skip)]
    rng: Option<Rng>,
}

impl Dropout {
    /// A Dropout of `rate`, like `keras.layers.Dropout(rate)`.
    pub fn new(rate: f64) -> Self {
        Dropout {
            rate,
            ..declare::defaults("dropout", json!({"rate": 0.5}))
        }
    }

    /// Sets `seed`, so the masks repeat from run to run (Keras's default None).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self.rng = None;
        self
    }

    /// The mask's shape for an input shape, or an error when noise_shape cannot
    /// broadcast to it.
    fn mask_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let Some(noise) = &self.noise_shape else {
            return Ok(input.to_vec());
        };
        if noise.len() != input.len() {
            return Err(self.shape_error(&format!(
                "noise_shape {noise:?} does not have the input's rank {}",
                input.len()
            )));
        }
        noise
            .iter()
            .zip(input)
            .map(|(n, &d)| match n {
                None => Ok(d),
                Some(n) if *n == d || *n == 1 => Ok(*n),
                Some(n) => Err(self.shape_error(&format!(
                    "noise_shape size {n} cannot broadcast to input size {d}"
                ))),
            })
            .collect()
    }
}

impl Layer for Dropout {
    layer_common!("Dropout");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        if !(0.0..=1.0).contains(&self.rate) {
            return Err(
                self.shape_error(&format!("rate must be between 0 and 1, got {}", self.rate))
            );
        }
        Ok(single(self, inputs)?.clone())
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.output_shape(inputs)?;
        self.rng = Some(rng_from_seed(self.seed.unwrap_or_else(|| rng.random())));
        Ok(())
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let x = *single(self, inputs)?;
        self.output_shape(&[super::shape_of(x)])?;
        Ok(x.clone())
    }

    fn forward(&mut self, inputs: &[&Tensor], training: bool) -> Result<(Tensor, Saved)> {
        let x = *single(self, inputs)?;
        self.output_shape(&[super::shape_of(x)])?;
        if !training || self.rate == 0.0 {
            return Ok((x.clone(), Saved::none()));
        }
        let keep = 1.0 - self.rate;
        let mask_shape = self.mask_shape(x.shape())?;
        let seed = self.seed.unwrap_or(0);
        let rng = self.rng.get_or_insert_with(|| rng_from_seed(seed));
        let scale = if keep > 0.0 { (1.0 / keep) as f32 } else { 0.0 };
        // Each 64-bit draw decides two cells: a cell is kept when its 32 bits fall under
        // keep·2³².
        let threshold = (keep * 4_294_967_296.0) as u64;
        let cells = mask_shape.iter().product::<usize>();
        let mut small = Vec::with_capacity(cells + 1);
        while small.len() < cells {
            let bits = rng.random::<u64>();
            for half in [bits & 0xffff_ffff, bits >> 32] {
                small.push(if half < threshold { scale } else { 0.0 });
            }
        }
        small.truncate(cells);
        let mask = if mask_shape == x.shape() {
            Tensor::new(mask_shape, small)?
        } else {
            broadcast(&small, &mask_shape, x.shape())
        };
        let mut y = x.clone();
        y.data_mut()
            .iter_mut()
            .zip(mask.data())
            .for_each(|(v, m)| *v *= m);
        Ok((y, Saved::new(mask)))
    }

    fn backward_impl(
        &self,
        _: &[&Tensor],
        _: &Tensor,
        saved: &Saved,
        dy: &Tensor,
        _: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let mut dx = dy.clone();
        if let Ok(mask) = saved.get::<Tensor>(self) {
            dx.data_mut()
                .iter_mut()
                .zip(mask.data())
                .for_each(|(d, m)| *d *= m);
        }
        Ok(vec![dx])
    }
}

/// Repeats `small` (of shape `from`, with 1 on the broadcast axes) to shape `to`.
fn broadcast(small: &[f32], from: &[usize], to: &[usize]) -> Tensor {
    let mut out = Tensor::zeros(to.to_vec());
    let rank = to.len();
    for (i, v) in out.data_mut().iter_mut().enumerate() {
        let (mut rest, mut src, mut stride) = (i, 0, 1);
        for axis in (0..rank).rev() {
            let coord = rest % to[axis];
            rest /= to[axis];
            if from[axis] != 1 {
                src += coord * stride;
            }
            stride *= from[axis];
        }
        *v = small[src];
    }
    out
}
