//! Keras's activation functions, by their Keras names, each with its derivative beside it.
//! Elementwise ones differentiate from the input and the output (whichever is cheaper);
//! softmax and log_softmax work along one axis of a tensor seen as (outer, axis, inner).

use crate::error::{Error, Result};
use crate::kernels::elementwise::copy_then;
use crate::tensor::Tensor;

const SELU_ALPHA: f32 = 1.673_263_2;
const SELU_SCALE: f32 = 1.050_701;

/// A Keras activation function, named as in Keras configs (`"relu"`, `"softmax"`, ...);
/// default `linear`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum ActivationFn {
    /// `linear`: the identity, x; Keras's default for `activation`.
    #[default]
    Linear,
    /// `relu`: max(x, 0).
    Relu,
    /// `relu6`: min(max(x, 0), 6).
    Relu6,
    /// Keras's `leaky_relu` function, whose default negative slope is 0.2.
    LeakyRelu,
    /// `elu`: x for x > 0, else exp(x) − 1 (alpha 1.0).
    Elu,
    /// `selu`: scale·elu(x, alpha) with Keras's fixed scale ≈ 1.0507 and alpha ≈ 1.6733.
    Selu,
    /// The exact form, `0.5·x·(1 + erf(x/√2))`, Keras's default (`approximate=False`).
    Gelu,
    /// `silu` (alias `swish`): x·sigmoid(x).
    Silu,
    /// `sigmoid`: 1 / (1 + exp(−x)).
    Sigmoid,
    /// Keras 3's `relu6(x + 3) / 6`.
    HardSigmoid,
    /// `hard_silu` (alias `hard_swish`): x · hard_sigmoid(x), MobileNetV3's activation.
    HardSilu,
    /// `mish`: x · tanh(softplus(x)).
    Mish,
    /// `celu` with Keras's default alpha 1.0: max(x, 0) + min(exp(x) − 1, 0).
    Celu,
    /// `log_sigmoid`: log(sigmoid(x)) = −softplus(−x).
    LogSigmoid,
    /// `tanh`: the hyperbolic tangent.
    Tanh,
    /// `hard_tanh`: x clipped to [−1, 1].
    HardTanh,
    /// `hard_shrink` (threshold 0.5): x where |x| > 0.5, else 0.
    HardShrink,
    /// `soft_shrink` (threshold 0.5): x − 0.5 above 0.5, x + 0.5 below −0.5, else 0.
    SoftShrink,
    /// `tanh_shrink`: x − tanh(x).
    TanhShrink,
    /// `sparse_plus`: 0 up to −1, (x + 1)²/4 up to 1, then x.
    SparsePlus,
    /// `sparse_sigmoid`: 0 up to −1, (x + 1)/2 up to 1, then 1.
    SparseSigmoid,
    /// `squareplus` (b = 4): (x + √(x² + 4))/2.
    Squareplus,
    /// `softplus`: ln(1 + exp(x)).
    Softplus,
    /// `softsign`: x / (1 + |x|).
    Softsign,
    /// `exponential`: exp(x).
    Exponential,
    /// `softmax`: exp(x) normalised to sum to 1 along the last axis.
    Softmax,
    /// `log_softmax`: the logarithm of softmax, along the last axis; stabler than
    /// log(softmax(x)).
    LogSoftmax,
}

/// Every name convnet accepts with its function; where two names share a function
/// (silu, swish), the first is the one written back to configs.
pub const ACTIVATIONS: &[(&str, ActivationFn)] = &[
    ("linear", ActivationFn::Linear),
    ("relu", ActivationFn::Relu),
    ("relu6", ActivationFn::Relu6),
    ("leaky_relu", ActivationFn::LeakyRelu),
    ("elu", ActivationFn::Elu),
    ("selu", ActivationFn::Selu),
    ("gelu", ActivationFn::Gelu),
    ("silu", ActivationFn::Silu),
    ("swish", ActivationFn::Silu),
    ("sigmoid", ActivationFn::Sigmoid),
    ("hard_sigmoid", ActivationFn::HardSigmoid),
    ("hard_silu", ActivationFn::HardSilu),
    ("hard_swish", ActivationFn::HardSilu),
    ("mish", ActivationFn::Mish),
    ("celu", ActivationFn::Celu),
    ("log_sigmoid", ActivationFn::LogSigmoid),
    ("tanh", ActivationFn::Tanh),
    ("hard_tanh", ActivationFn::HardTanh),
    ("hard_shrink", ActivationFn::HardShrink),
    ("soft_shrink", ActivationFn::SoftShrink),
    ("tanh_shrink", ActivationFn::TanhShrink),
    ("sparse_plus", ActivationFn::SparsePlus),
    ("sparse_sigmoid", ActivationFn::SparseSigmoid),
    ("squareplus", ActivationFn::Squareplus),
    ("softplus", ActivationFn::Softplus),
    ("softsign", ActivationFn::Softsign),
    ("exponential", ActivationFn::Exponential),
    ("softmax", ActivationFn::Softmax),
    ("log_softmax", ActivationFn::LogSoftmax),
];

/// The accepted activation names.
pub fn activation_names() -> impl Iterator<Item = &'static str> {
    ACTIVATIONS.iter().map(|(name, _)| *name)
}

impl std::str::FromStr for ActivationFn {
    type Err = Error;

    /// The function Keras means by `name`; an unknown name is an error listing the known
    /// ones: `"relu".parse::<ActivationFn>()`.
    fn from_str(name: &str) -> Result<Self> {
        Self::from_name(name).ok_or_else(|| Error::InvalidArgument {
            argument: "activation".into(),
            message: format!(
                "unknown activation '{name}' (known: {})",
                activation_names().collect::<Vec<_>>().join(", ")
            ),
        })
    }
}

/// Written to configs by its Keras name.
impl serde::Serialize for ActivationFn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Read from configs by Keras name, with the known names in the error.
impl<'de> serde::Deserialize<'de> for ActivationFn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(|e: Error| match e {
            Error::InvalidArgument { message, .. } => serde::de::Error::custom(message),
            other => serde::de::Error::custom(other),
        })
    }
}

impl ActivationFn {
    /// The function Keras means by `name` (`None` for unknown names).
    pub fn from_name(name: &str) -> Option<Self> {
        ACTIVATIONS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
    }

    /// The name Keras writes in a config for this function.
    pub fn name(self) -> &'static str {
        ACTIVATIONS
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .expect("every activation function is in ACTIVATIONS")
    }

    /// Applies the function in place (softmax-like ones along the last axis).
    pub fn apply_inplace(self, t: &mut Tensor) {
        let axis_len = t.shape().last().copied().unwrap_or(1);
        self.apply_slice(t.data_mut(), axis_len);
    }

    /// Applies the function in place to rows of `axis_len` values.
    pub fn apply_slice(self, data: &mut [f32], axis_len: usize) {
        match self {
            ActivationFn::Linear => {}
            ActivationFn::Softmax => softmax_inplace(data, axis_len, 1),
            ActivationFn::LogSoftmax => log_softmax_inplace(data, axis_len, 1),
            // The common cases run as kernels, vectorised for the CPU at hand.
            ActivationFn::Relu => crate::kernels::activation::relu(data),
            ActivationFn::Relu6 => crate::kernels::activation::relu6(data),
            // Kernels with a vectorised exponential (EfficientNet's swish).
            ActivationFn::Sigmoid => crate::kernels::activation::sigmoid(data),
            ActivationFn::Silu => crate::kernels::activation::silu(data),
            f => data.iter_mut().for_each(|x| *x = f.scalar(*x)),
        }
    }

    /// `y = f(x)` into `y`, rows of `axis_len` values (softmax-like functions along
    /// them), in one pass over memory.
    pub fn apply_to(self, x: &[f32], y: &mut [f32], axis_len: usize) {
        copy_then(x, y, axis_len, |_, chunk| self.apply_slice(chunk, axis_len));
    }

    /// Whether the derivative needs the function's input, not only its output: layers
    /// keep the pre-activation values for backward only then.
    pub fn needs_input(self) -> bool {
        use ActivationFn::*;
        !matches!(
            self,
            Linear | Softmax | LogSoftmax | Relu | Relu6 | Sigmoid | Tanh | Exponential
        )
    }

    /// dL/dx from dL/dy, given the input `x` and output `y` of this function; the result
    /// overwrites `dy`.
    pub fn backward_inplace(self, x: &[f32], y: &[f32], dy: &mut [f32], axis_len: usize) {
        match self {
            ActivationFn::Linear => {}
            ActivationFn::Softmax => softmax_backward_inplace(y, dy, axis_len, 1),
            ActivationFn::LogSoftmax => log_softmax_backward_inplace(y, dy, axis_len, 1),
            // A loop of its own, which the compiler vectorises.
            ActivationFn::Relu => dy
                .iter_mut()
                .zip(y)
                .for_each(|(d, &y)| *d = if y > 0.0 { *d } else { 0.0 }),
            f => dy
                .iter_mut()
                .zip(x.iter().zip(y))
                .for_each(|(d, (&x, &y))| *d *= f.derivative(x, y)),
        }
    }

    /// [`backward_inplace`](Self::backward_inplace) into `dx`, leaving `dy` as it is,
    /// in one pass over memory (in parallel chunks of whole rows when large).
    pub fn backward_to(self, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32], axis_len: usize) {
        copy_then(dy, dx, axis_len, |start, chunk| {
            let part = start..start + chunk.len();
            self.backward_inplace(&x[part.clone()], &y[part], chunk, axis_len)
        });
    }

    /// f(x) for the elementwise functions.
    fn scalar(self, x: f32) -> f32 {
        use ActivationFn::*;
        match self {
            Linear | Softmax | LogSoftmax => x,
            Relu => x.max(0.0),
            Relu6 => x.clamp(0.0, 6.0),
            LeakyRelu => {
                if x > 0.0 {
                    x
                } else {
                    0.2 * x
                }
            }
            Elu | Celu => {
                if x > 0.0 {
                    x
                } else {
                    x.exp_m1()
                }
            }
            Selu => {
                if x > 0.0 {
                    SELU_SCALE * x
                } else {
                    SELU_SCALE * SELU_ALPHA * x.exp_m1()
                }
            }
            Gelu => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
            Silu => x * sigmoid(x),
            Sigmoid => sigmoid(x),
            HardSigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
            HardSilu => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
            Mish => x * softplus(x).tanh(),
            LogSigmoid => -softplus(-x),
            Tanh => x.tanh(),
            HardTanh => x.clamp(-1.0, 1.0),
            HardShrink => {
                if x.abs() > 0.5 {
                    x
                } else {
                    0.0
                }
            }
            SoftShrink => {
                if x > 0.5 {
                    x - 0.5
                } else if x < -0.5 {
                    x + 0.5
                } else {
                    0.0
                }
            }
            TanhShrink => x - x.tanh(),
            SparsePlus => {
                if x <= -1.0 {
                    0.0
                } else if x < 1.0 {
                    0.25 * (x + 1.0) * (x + 1.0)
                } else {
                    x
                }
            }
            SparseSigmoid => (0.5 * (x + 1.0)).clamp(0.0, 1.0),
            Squareplus => 0.5 * (x + (x * x + 4.0).sqrt()),
            Softplus => softplus(x),
            Softsign => x / (1.0 + x.abs()),
            Exponential => x.exp(),
        }
    }

    /// f'(x), given x and y = f(x).
    fn derivative(self, x: f32, y: f32) -> f32 {
        use ActivationFn::*;
        let step = |on: bool| if on { 1.0 } else { 0.0 };
        match self {
            Linear | Softmax | LogSoftmax => 1.0,
            // From y: 0 < y < 6 exactly when 0 < x < 6, so no input needs keeping.
            Relu => step(y > 0.0),
            Relu6 => step(y > 0.0 && y < 6.0),
            LeakyRelu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.2
                }
            }
            Elu | Celu => {
                if x > 0.0 {
                    1.0
                } else {
                    y + 1.0
                }
            }
            Selu => {
                if x > 0.0 {
                    SELU_SCALE
                } else {
                    y + SELU_SCALE * SELU_ALPHA
                }
            }
            Gelu => {
                let cdf = 0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2));
                let pdf = (-0.5 * x * x).exp() / (2.0 * std::f32::consts::PI).sqrt();
                cdf + x * pdf
            }
            Silu => {
                let s = sigmoid(x);
                s * (1.0 + x * (1.0 - s))
            }
            Sigmoid => y * (1.0 - y),
            HardSigmoid => step(x > -3.0 && x < 3.0) / 6.0,
            HardSilu => {
                if x <= -3.0 {
                    0.0
                } else if x >= 3.0 {
                    1.0
                } else {
                    (2.0 * x + 3.0) / 6.0
                }
            }
            Mish => {
                let t = softplus(x).tanh();
                t + x * (1.0 - t * t) * sigmoid(x)
            }
            LogSigmoid => sigmoid(-x),
            Tanh => 1.0 - y * y,
            // TensorFlow's clip passes the gradient on the bounds.
            HardTanh => step((-1.0..=1.0).contains(&x)),
            HardShrink | SoftShrink => step(x.abs() > 0.5),
            TanhShrink => {
                let t = x.tanh();
                t * t
            }
            SparsePlus => {
                if x <= -1.0 {
                    0.0
                } else if x < 1.0 {
                    0.5 * (x + 1.0)
                } else {
                    1.0
                }
            }
            SparseSigmoid => step(x > -1.0 && x < 1.0) * 0.5,
            Squareplus => 0.5 * (1.0 + x / (x * x + 4.0).sqrt()),
            Softplus => sigmoid(x),
            Softsign => 1.0 / ((1.0 + x.abs()) * (1.0 + x.abs())),
            Exponential => y,
        }
    }
}

/// ln(1 + exp(x)), without overflow for large x.
fn softplus(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// The logistic sigmoid 1 / (1 + exp(−x)), computed without overflow for large |x|.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Calls `f(indices)` with the element indices of every 1-D line along the axis of a
/// buffer seen as (outer, axis_len, inner).
fn for_each_line(len: usize, axis_len: usize, inner: usize, mut f: impl FnMut(&[usize])) {
    let mut idx = Vec::with_capacity(axis_len);
    for o in 0..len / (axis_len * inner).max(1) {
        for i in 0..inner {
            idx.clear();
            idx.extend((0..axis_len).map(|a| (o * axis_len + a) * inner + i));
            f(&idx);
        }
    }
}

/// Softmax along the axis of a buffer seen as (outer, axis_len, inner), stabilised by
/// subtracting each line's maximum.
pub fn softmax_inplace(x: &mut [f32], axis_len: usize, inner: usize) {
    for_each_line(x.len(), axis_len, inner, |idx| {
        let max = idx.iter().map(|&i| x[i]).fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for &i in idx {
            x[i] = (x[i] - max).exp();
            sum += x[i];
        }
        idx.iter().for_each(|&i| x[i] /= sum);
    });
}

/// `dx = y · (dy − Σ dy·y)` along each line; overwrites `dy`.
pub fn softmax_backward_inplace(y: &[f32], dy: &mut [f32], axis_len: usize, inner: usize) {
    for_each_line(y.len(), axis_len, inner, |idx| {
        let dot: f32 = idx.iter().map(|&i| dy[i] * y[i]).sum();
        idx.iter().for_each(|&i| dy[i] = y[i] * (dy[i] - dot));
    });
}

/// Log-softmax along the axis of a buffer seen as (outer, axis_len, inner), stabilised by
/// subtracting each line's maximum.
pub fn log_softmax_inplace(x: &mut [f32], axis_len: usize, inner: usize) {
    for_each_line(x.len(), axis_len, inner, |idx| {
        let max = idx.iter().map(|&i| x[i]).fold(f32::NEG_INFINITY, f32::max);
        let log_sum = idx.iter().map(|&i| (x[i] - max).exp()).sum::<f32>().ln() + max;
        idx.iter().for_each(|&i| x[i] -= log_sum);
    });
}

/// `dx = dy − softmax · Σ dy` along each line, with softmax = exp(y); overwrites `dy`.
pub fn log_softmax_backward_inplace(y: &[f32], dy: &mut [f32], axis_len: usize, inner: usize) {
    for_each_line(y.len(), axis_len, inner, |idx| {
        let total: f32 = idx.iter().map(|&i| dy[i]).sum();
        idx.iter().for_each(|&i| dy[i] -= y[i].exp() * total);
    });
}
