//! Dense: `activation(x · kernel + bias)` on the last axis of an input of any rank, as
//! Keras applies it (a (batch, h, w, c) input gives (batch, h, w, units)).

use super::conv::{activation_grad, bias_grad, check_channels, require_built};
use super::declare::{self, NullOnly};
use super::{infer, single, Layer, LayerBase, Saved, Shape};
use crate::activations::ActivationFn;
use crate::constraints::Constraint;
use crate::error::Result;
use crate::initializers::{Initializer, Rng};
use crate::kernels::gemm::{matmul, MatRef, Start};
use crate::kernels::Epilogue;
use crate::regularizers::Regularizer;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Keras's `Dense(units)`: `activation(x · kernel + bias)` on the last axis, kernel shape
/// (input features, units).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dense {
    #[serde(skip)]
    base: LayerBase,
    /// Keras's `units`: the number of outputs, the size of the last axis.
    #[serde(deserialize_with = "declare::positive")]
    pub units: usize,
    /// Keras's `activation`, applied after the bias; default `linear`.
    #[serde(default)]
    pub activation: ActivationFn,
    /// Keras's `use_bias`: whether a bias per unit is added; default true.
    #[serde(default = "declare::yes")]
    pub use_bias: bool,
    /// Keras's `kernel_initializer`: how the kernel starts; default `glorot_uniform`.
    #[serde(default = "Initializer::glorot_uniform")]
    pub kernel_initializer: Initializer,
    /// Keras's `bias_initializer`: how the bias starts; default `zeros`.
    #[serde(default = "Initializer::zeros")]
    pub bias_initializer: Initializer,
    /// Keras's `kernel_regularizer`: its penalty joins the training loss.
    #[serde(default)]
    pub kernel_regularizer: Option<Regularizer>,
    /// Keras's `bias_regularizer`: its penalty joins the training loss.
    #[serde(default)]
    pub bias_regularizer: Option<Regularizer>,
    /// Keras's `kernel_constraint`: applied after each optimizer step.
    #[serde(default)]
    pub kernel_constraint: Option<Constraint>,
    /// Keras's `bias_constraint`: applied after each optimizer step.
    #[serde(default)]
    pub bias_constraint: Option<Constraint>,
    #[serde(default)]
    quantization_config: NullOnly,
    // Accepted (as null only) when a file has it, but not written: Keras 3 leaves it out
    // of Dense's config. Its value is the check; nothing reads it after.
    #[allow(dead_code)]
    #[serde(default, skip_serializing)]
    lora_rank: NullOnly,
}

impl Dense {
    /// A Dense layer of `units` outputs, like `keras.layers.Dense(units)`, Keras's defaults
    /// elsewhere.
    pub fn new(units: usize) -> Self {
        Dense {
            units,
            ..declare::defaults("dense", json!({"units": 1}))
        }
    }

    activation_builders!();

    /// Sets `kernel_initializer` (Keras's default `glorot_uniform`).
    pub fn kernel_initializer(mut self, init: Initializer) -> Self {
        self.kernel_initializer = init;
        self
    }

    /// `activation(x · kernel + bias)`.
    fn compute(&self, x: &Tensor, epilogue: Epilogue) -> Result<Tensor> {
        let out_shape = infer(self, &[x])?;
        require_built(self)?;
        let k = *x.shape().last().expect("rank checked");
        let rows = x.len() / k;
        let mut y = Tensor::for_overwrite(out_shape);
        let epilogue = epilogue.with_bias(self.use_bias.then(|| self.base.weights[1].value.data()));
        let kernel = MatRef::row_major(self.base.weights[0].value.data(), self.units);
        matmul(
            rows,
            self.units,
            k,
            MatRef::row_major(x.data(), k),
            kernel,
            y.data_mut(),
            self.units,
            epilogue.start(0..self.units),
            true,
        );
        epilogue.finish(y.data_mut(), self.units);
        Ok(y)
    }

    /// dK += xᵀ · dz and db += Σ dz, from the input `x` and dL/d(pre-activation) `dz`.
    fn weight_gradients(&self, x: &Tensor, dz: &Tensor, dweights: &mut [Tensor]) -> Result<()> {
        let k = *x.shape().last().expect("rank checked");
        matmul(
            k,
            self.units,
            x.len() / k,
            MatRef::row_major(x.data(), k).t(),
            MatRef::row_major(dz.data(), self.units),
            dweights[0].data_mut(),
            self.units,
            Start::Dst,
            true,
        );
        if self.use_bias {
            bias_grad(dz.data(), dweights[1].data_mut());
        }
        Ok(())
    }
}

impl Layer for Dense {
    layer_common!("Dense");

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let shape = single(self, inputs)?;
        if shape.len() < 2 {
            return Err(self.shape_error(&format!(
                "expects an input of rank 2 or more (batch, …, features), got {}",
                super::format_shape(shape)
            )));
        }
        if self.units == 0 {
            return Err(self.shape_error("units must be positive"));
        }
        let built = self.base.weights.first().map(|k| k.value.shape()[0]);
        if check_channels(self, *shape.last().expect("rank ≥ 2"), built)? == 0 {
            return Err(self.shape_error("the input's last axis is empty"));
        }
        let mut out = shape.clone();
        *out.last_mut().expect("rank ≥ 2") = Some(self.units);
        Ok(out)
    }

    fn build(&mut self, inputs: &[Shape], rng: &mut Rng) -> Result<()> {
        self.output_shape(inputs)?;
        let features = inputs[0]
            .last()
            .copied()
            .flatten()
            .expect("checked by output_shape");
        let bias = self
            .use_bias
            .then_some((self.units, &self.bias_initializer));
        self.base.add_kernel_and_bias(
            ("kernel", &[features, self.units], &self.kernel_initializer),
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
        let k = *x.shape().last().expect("rank checked");
        let mut dx = Tensor::for_overwrite(x.shape());
        // dx = dz · Kᵀ
        matmul(
            x.len() / k,
            k,
            self.units,
            MatRef::row_major(dz.data(), self.units),
            MatRef::row_major(self.base.weights[0].value.data(), self.units).t(),
            dx.data_mut(),
            k,
            Start::Zeros,
            true,
        );
        Ok(vec![dx])
    }

    activated_backward!();
}
