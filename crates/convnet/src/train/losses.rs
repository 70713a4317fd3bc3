//! Keras's losses. A loss gives, for each sample, its loss and the gradient of that loss
//! with respect to the prediction; the trainer reduces them as Keras does
//! (`sum_over_batch_size`: the weighted sum divided by the batch size). Arithmetic is in
//! f64, probabilities are clipped to [1e-7, 1 − 1e-7] as Keras clips them.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use serde_json::{json, Value};

/// Keras's `epsilon()`.
pub const EPSILON: f64 = 1e-7;

/// A loss: per-sample values and their gradients with respect to `y_pred`.
pub trait Loss: Send + Sync + std::fmt::Debug {
    /// The name Keras reports and writes (`sparse_categorical_crossentropy`).
    fn name(&self) -> String;

    /// For a batch, each sample's loss and d(loss_i)/d(y_pred) (shape of `y_pred`).
    fn per_sample(&self, y_true: &Tensor, y_pred: &Tensor) -> Result<(Vec<f64>, Tensor)>;

    /// The object Keras writes for the loss in a compile config.
    fn config(&self) -> Value {
        json!(self.name())
    }

    /// A copy behind a box.
    fn clone_loss(&self) -> Box<dyn Loss>;
}

/// The mean loss over the batch with optional per-sample weights (Keras's
/// `sum_over_batch_size`), and d(mean)/d(y_pred).
pub fn reduce(
    loss: &dyn Loss,
    y_true: &Tensor,
    y_pred: &Tensor,
    sample_weight: Option<&[f32]>,
) -> Result<(f64, Tensor)> {
    let (values, mut grad) = loss.per_sample(y_true, y_pred)?;
    let batch = values.len().max(1);
    let weight = |i: usize| sample_weight.map_or(1.0, |w| w[i] as f64);
    let value = values
        .iter()
        .enumerate()
        .map(|(i, v)| v * weight(i))
        .sum::<f64>()
        / batch as f64;
    let per = grad.len() / batch;
    for (i, chunk) in grad.data_mut().chunks_mut(per.max(1)).enumerate() {
        let scale = (weight(i) / batch as f64) as f32;
        chunk.iter_mut().for_each(|g| *g *= scale);
    }
    Ok((value, grad))
}

/// The built-in losses, by Keras's names.
#[derive(Clone, Debug, PartialEq)]
pub enum LossFn {
    /// Keras's `mean_squared_error` (`mse`).
    MeanSquaredError,
    /// Keras's `mean_absolute_error` (`mae`).
    MeanAbsoluteError,
    /// Keras's `Huber`: quadratic for errors up to `delta`, linear beyond.
    Huber {
        /// Where the loss turns from quadratic to linear (Keras's default 1).
        delta: f64,
    },
    /// Keras's `CategoricalCrossentropy`, for one-hot targets.
    CategoricalCrossentropy {
        /// Whether predictions are logits rather than probabilities (Keras's default false).
        from_logits: bool,
        /// How much of the target is spread evenly over the classes (Keras's default 0).
        label_smoothing: f64,
    },
    /// Keras's `SparseCategoricalCrossentropy`, for class-index targets.
    SparseCategoricalCrossentropy {
        /// Whether predictions are logits rather than probabilities (Keras's default false).
        from_logits: bool,
    },
    /// Keras's `BinaryCrossentropy`, for 0/1 targets.
    BinaryCrossentropy {
        /// Whether predictions are logits rather than probabilities (Keras's default false).
        from_logits: bool,
        /// How far targets are pulled towards 0.5 (Keras's default 0).
        label_smoothing: f64,
    },
}

impl LossFn {
    /// A loss by Keras name or alias (`"mse"`, `"sparse_categorical_crossentropy"`, …),
    /// with Keras's defaults.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "mean_squared_error" | "mse" | "MeanSquaredError" => LossFn::MeanSquaredError,
            "mean_absolute_error" | "mae" | "MeanAbsoluteError" => LossFn::MeanAbsoluteError,
            "huber" | "huber_loss" | "Huber" => LossFn::Huber { delta: 1.0 },
            "categorical_crossentropy" | "CategoricalCrossentropy" => {
                LossFn::CategoricalCrossentropy { from_logits: false, label_smoothing: 0.0 }
            }
            "sparse_categorical_crossentropy" | "SparseCategoricalCrossentropy" => {
                LossFn::SparseCategoricalCrossentropy { from_logits: false }
            }
            "binary_crossentropy" | "BinaryCrossentropy" => LossFn::BinaryCrossentropy { from_logits: false, label_smoothing: 0.0 },
            other => {
                return Err(Error::Config {
                    layer: "compile".into(),
                    class: "loss".into(),
                    field: "loss".into(),
                    message: format!(
                        "unknown loss '{other}' (known: mean_squared_error, mean_absolute_error, huber, \
                         categorical_crossentropy, sparse_categorical_crossentropy, binary_crossentropy)"
                    ),
                })
            }
        })
    }

    /// A loss from the value Keras writes in a compile config: a name, or an object
    /// `{"class_name": "CategoricalCrossentropy", "config": {"from_logits": true, …}}`.
    pub fn from_config(value: &Value) -> Result<Self> {
        let bad = |message: String| Error::Config {
            layer: "compile".into(),
            class: "loss".into(),
            field: "loss".into(),
            message,
        };
        let (class, config) = match value {
            Value::String(name) => return Self::from_name(name),
            Value::Object(o) => (
                o.get("class_name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("loss object without class_name".into()))?,
                o.get("config").cloned().unwrap_or(json!({})),
            ),
            other => {
                return Err(bad(format!(
                    "expected a loss name or object, found {other}"
                )))
            }
        };
        let flag = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
        let number =
            |key: &str, default: f64| config.get(key).and_then(Value::as_f64).unwrap_or(default);
        if let Some(reduction) = config.get("reduction").and_then(Value::as_str) {
            if reduction != "sum_over_batch_size" {
                return Err(bad(format!(
                    "reduction '{reduction}' is not supported; only sum_over_batch_size"
                )));
            }
        }
        if config.get("ignore_class").is_some_and(|v| !v.is_null()) {
            return Err(bad("ignore_class is not supported".into()));
        }
        if config
            .get("axis")
            .and_then(Value::as_i64)
            .is_some_and(|a| a != -1)
        {
            return Err(bad("only axis -1 is supported".into()));
        }
        Ok(match Self::from_name(class)? {
            LossFn::Huber { .. } => LossFn::Huber {
                delta: number("delta", 1.0),
            },
            LossFn::CategoricalCrossentropy { .. } => LossFn::CategoricalCrossentropy {
                from_logits: flag("from_logits"),
                label_smoothing: number("label_smoothing", 0.0),
            },
            LossFn::SparseCategoricalCrossentropy { .. } => LossFn::SparseCategoricalCrossentropy {
                from_logits: flag("from_logits"),
            },
            LossFn::BinaryCrossentropy { .. } => LossFn::BinaryCrossentropy {
                from_logits: flag("from_logits"),
                label_smoothing: number("label_smoothing", 0.0),
            },
            plain => plain,
        })
    }

    fn check_shapes(&self, y_true: &Tensor, y_pred: &Tensor) -> Result<()> {
        let fits = match self {
            LossFn::SparseCategoricalCrossentropy { .. } => {
                let t = y_true.shape();
                let p = y_pred.shape();
                (t.len() + 1 == p.len() && t == &p[..p.len() - 1])
                    || (t.len() == p.len()
                        && t.last() == Some(&1)
                        && t[..t.len() - 1] == p[..p.len() - 1])
            }
            _ => y_true.shape() == y_pred.shape(),
        };
        if fits && !y_pred.is_empty() {
            Ok(())
        } else {
            Err(Error::data(format!(
                "loss {}: targets of shape {:?} do not fit predictions of shape {:?}",
                self.name(),
                y_true.shape(),
                y_pred.shape()
            )))
        }
    }
}

impl Loss for LossFn {
    /// The name when the loss has Keras's default options, else the full object.
    fn config(&self) -> Value {
        let object = |class: &str, extra: Value| {
            let mut config = json!({"name": self.name(), "reduction": "sum_over_batch_size"});
            if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
                c.extend(e.clone());
            }
            json!({"module": "keras.losses", "class_name": class, "config": config, "registered_name": null})
        };
        match *self {
            LossFn::Huber { delta } if delta != 1.0 => object("Huber", json!({"delta": delta})),
            LossFn::CategoricalCrossentropy {
                from_logits,
                label_smoothing,
            } if from_logits || label_smoothing != 0.0 => object(
                "CategoricalCrossentropy",
                json!({"from_logits": from_logits, "label_smoothing": label_smoothing, "axis": -1}),
            ),
            LossFn::SparseCategoricalCrossentropy { from_logits: true } => object(
                "SparseCategoricalCrossentropy",
                json!({"from_logits": true, "ignore_class": null}),
            ),
            LossFn::BinaryCrossentropy {
                from_logits,
                label_smoothing,
            } if from_logits || label_smoothing != 0.0 => object(
                "BinaryCrossentropy",
                json!({"from_logits": from_logits, "label_smoothing": label_smoothing, "axis": -1}),
            ),
            _ => json!(self.name()),
        }
    }

    fn name(&self) -> String {
        match self {
            LossFn::MeanSquaredError => "mean_squared_error",
            LossFn::MeanAbsoluteError => "mean_absolute_error",
            LossFn::Huber { .. } => "huber_loss",
            LossFn::CategoricalCrossentropy { .. } => "categorical_crossentropy",
            LossFn::SparseCategoricalCrossentropy { .. } => "sparse_categorical_crossentropy",
            LossFn::BinaryCrossentropy { .. } => "binary_crossentropy",
        }
        .to_string()
    }

    fn clone_loss(&self) -> Box<dyn Loss> {
        Box::new(self.clone())
    }

    fn per_sample(&self, y_true: &Tensor, y_pred: &Tensor) -> Result<(Vec<f64>, Tensor)> {
        self.check_shapes(y_true, y_pred)?;
        let classes = *y_pred.shape().last().expect("checked non-empty");
        let rows = y_pred.len() / classes;
        let batch = y_pred.shape()[0];
        let rows_per_sample = rows / batch.max(1);
        let mut grad = y_pred.zeros_like();
        let mut row_losses = vec![0.0f64; rows];
        let (t, p) = (y_true.data(), y_pred.data());
        for r in 0..rows {
            let pr = &p[r * classes..(r + 1) * classes];
            let gr = &mut grad.data_mut()[r * classes..(r + 1) * classes];
            row_losses[r] = match self {
                LossFn::SparseCategoricalCrossentropy { from_logits } => {
                    let label = t[r];
                    if label < 0.0 || label.fract() != 0.0 || label as usize >= classes {
                        return Err(Error::data(format!(
                            "loss sparse_categorical_crossentropy: label {label} is not a class index below {classes}"
                        )));
                    }
                    let mut onehot = vec![0.0; classes];
                    onehot[label as usize] = 1.0;
                    crossentropy_row(&onehot, pr, gr, *from_logits)
                }
                _ => {
                    let tr: Vec<f64> = t[r * classes..(r + 1) * classes]
                        .iter()
                        .map(|&v| v as f64)
                        .collect();
                    self.row(&tr, pr, gr)
                }
            };
        }
        // Per-sample loss: the mean over the sample's rows (for a sample that is one row,
        // its value); Keras averages the last-axis losses of a sample's positions.
        let values = (0..batch)
            .map(|b| {
                row_losses[b * rows_per_sample..(b + 1) * rows_per_sample]
                    .iter()
                    .sum::<f64>()
                    / rows_per_sample.max(1) as f64
            })
            .collect();
        if rows_per_sample > 1 {
            let inv = 1.0 / rows_per_sample as f32;
            grad.map_inplace(|g| g * inv);
        }
        Ok((values, grad))
    }
}

impl LossFn {
    /// The loss of one row (last axis) and its gradient, for the losses with dense targets.
    fn row(&self, t: &[f64], p: &[f32], g: &mut [f32]) -> f64 {
        let n = p.len() as f64;
        match self {
            LossFn::MeanSquaredError => {
                let mut sum = 0.0;
                for ((g, &p), &t) in g.iter_mut().zip(p).zip(t) {
                    let d = p as f64 - t;
                    sum += d * d;
                    *g = (2.0 * d / n) as f32;
                }
                sum / n
            }
            LossFn::MeanAbsoluteError => {
                let mut sum = 0.0;
                for ((g, &p), &t) in g.iter_mut().zip(p).zip(t) {
                    let d = p as f64 - t;
                    sum += d.abs();
                    *g = (d.signum() * (d != 0.0) as u8 as f64 / n) as f32;
                }
                sum / n
            }
            LossFn::Huber { delta } => {
                let mut sum = 0.0;
                for ((g, &p), &t) in g.iter_mut().zip(p).zip(t) {
                    let d = p as f64 - t;
                    if d.abs() <= *delta {
                        sum += 0.5 * d * d;
                        *g = (d / n) as f32;
                    } else {
                        sum += delta * d.abs() - 0.5 * delta * delta;
                        *g = (delta * d.signum() / n) as f32;
                    }
                }
                sum / n
            }
            LossFn::CategoricalCrossentropy {
                from_logits,
                label_smoothing,
            } => {
                let k = p.len() as f64;
                let smoothed: Vec<f64> = t
                    .iter()
                    .map(|&t| t * (1.0 - label_smoothing) + label_smoothing / k)
                    .collect();
                crossentropy_row(&smoothed, p, g, *from_logits)
            }
            LossFn::BinaryCrossentropy {
                from_logits,
                label_smoothing,
            } => {
                let mut sum = 0.0;
                for ((g, &p), &t) in g.iter_mut().zip(p).zip(t) {
                    let t = t * (1.0 - label_smoothing) + 0.5 * label_smoothing;
                    let p = p as f64;
                    if *from_logits {
                        // max(x, 0) − x·t + log(1 + e^−|x|), TensorFlow's stable form.
                        sum += p.max(0.0) - p * t + (-p.abs()).exp().ln_1p();
                        *g = ((1.0 / (1.0 + (-p).exp()) - t) / n) as f32;
                    } else {
                        let clipped = p.clamp(EPSILON, 1.0 - EPSILON);
                        sum -= t * clipped.ln() + (1.0 - t) * (1.0 - clipped).ln();
                        let inside = (EPSILON..=1.0 - EPSILON).contains(&p);
                        *g = if inside {
                            ((-t / clipped + (1.0 - t) / (1.0 - clipped)) / n) as f32
                        } else {
                            0.0
                        };
                    }
                }
                sum / n
            }
            LossFn::SparseCategoricalCrossentropy { .. } => {
                unreachable!("sparse targets are expanded by per_sample")
            }
        }
    }
}

/// −Σ t·log q for one row, with q = softmax(p) (logits) or p normalised to sum 1 and
/// clipped (probabilities), and its gradient with respect to p.
fn crossentropy_row(t: &[f64], p: &[f32], g: &mut [f32], from_logits: bool) -> f64 {
    let t_sum: f64 = t.iter().sum();
    if from_logits {
        let max = p.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let log_sum = p.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
        let mut loss = 0.0;
        for ((g, &p), &t) in g.iter_mut().zip(p).zip(t) {
            let log_q = p as f64 - log_sum;
            loss -= t * log_q;
            *g = (log_q.exp() * t_sum - t) as f32;
        }
        loss
    } else {
        let s: f64 = p.iter().map(|&v| v as f64).sum();
        let q: Vec<f64> = p.iter().map(|&v| v as f64 / s).collect();
        let mut loss = 0.0;
        // dL/dq_j = −t_j / q_j where q_j is inside the clip range, 0 where clipped.
        let dq: Vec<f64> = q
            .iter()
            .zip(t)
            .map(|(&q, &t)| {
                let c = q.clamp(EPSILON, 1.0 - EPSILON);
                loss -= t * c.ln();
                if (EPSILON..=1.0 - EPSILON).contains(&q) {
                    -t / c
                } else {
                    0.0
                }
            })
            .collect();
        // q = p / Σp: dL/dp_i = (dL/dq_i − Σ_j dL/dq_j · q_j) / Σp
        let dot: f64 = dq.iter().zip(&q).map(|(a, b)| a * b).sum();
        for (g, d) in g.iter_mut().zip(&dq) {
            *g = ((d - dot) / s) as f32;
        }
        loss
    }
}
