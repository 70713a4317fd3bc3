//! Dense: `activation(x · kernel + bias)` on the last axis of an input of any rank, as
//! Keras applies it (a (batch, h, w, c) input gives (batch, h, w, units)).

use super::config::ConfigReader;
use super::conv::{activation_grad, bias_grad, check_channels, require_built};
use super::{infer, single, write_nulls, Layer, LayerBase, Saved, Shape};
use crate::activations::ActivationFn;
use crate::error::Result;
use crate::initializers::{Initializer, Rng};
use crate::kernels::gemm::{matmul, MatRef, Start};
use crate::kernels::Epilogue;
use crate::tensor::Tensor;
use serde_json::{json, Map, Value};

#[derive(Clone, Debug)]
pub struct Dense {
    base: LayerBase,
    pub units: usize,
    pub activation: ActivationFn,
    pub use_bias: bool,
    pub kernel_initializer: Initializer,
    pub bias_initializer: Initializer,
}

/// The fields of Dense's config that convnet accepts only as null, as Keras writes them.
const NULL_FIELDS: [&str; 5] = [
    "kernel_regularizer",
    "bias_regularizer",
    "kernel_constraint",
    "bias_constraint",
    "quantization_config",
];

impl Dense {
    pub fn new(units: usize) -> Self {
        Dense {
            base: LayerBase::new("dense"),
            units,
            activation: ActivationFn::Linear,
            use_bias: true,
            kernel_initializer: Initializer::glorot_uniform(),
            bias_initializer: Initializer::zeros(),
        }
    }

    activation_builders!();

    pub fn kernel_initializer(mut self, init: Initializer) -> Self {
        self.kernel_initializer = init;
        self
    }

    pub(super) fn from_config(c: &ConfigReader) -> Result<Self> {
        c.unsupported_unless_null(&NULL_FIELDS)?;
        c.unsupported_unless_null(&["activity_regularizer", "lora_rank"])?;
        Ok(Dense {
            base: c.base()?,
            units: c.positive("units", None)?,
            activation: c.activation("activation")?,
            use_bias: c.bool("use_bias", true)?,
            kernel_initializer: c
                .initializer("kernel_initializer", Initializer::glorot_uniform())?,
            bias_initializer: c.initializer("bias_initializer", Initializer::zeros())?,
        })
    }

    /// `activation(x · kernel + bias)`.
    fn compute(&self, x: &Tensor, activation: ActivationFn) -> Result<Tensor> {
        let out_shape = infer(self, &[x])?;
        require_built(self)?;
        let k = *x.shape().last().expect("rank checked");
        let rows = x.len() / k;
        let mut y = Tensor::for_overwrite(out_shape);
        let epilogue = Epilogue {
            bias: self.use_bias.then(|| self.base.weights[1].value.data()),
            activation,
        };
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

    fn config_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("units".into(), json!(self.units));
        m.insert("activation".into(), json!(self.activation.name()));
        m.insert("use_bias".into(), json!(self.use_bias));
        m.insert(
            "kernel_initializer".into(),
            self.kernel_initializer.to_config(),
        );
        m.insert("bias_initializer".into(), self.bias_initializer.to_config());
        write_nulls(&mut m, &NULL_FIELDS);
        m
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        self.base.check(self.class_name())?;
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

    weights_only_backward!();
}
