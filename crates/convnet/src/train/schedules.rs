//! Learning rates: a constant, or one of Keras's schedules evaluated at the optimizer's
//! step count.

use crate::error::{Error, Result};
use serde_json::{json, Value};

/// A learning rate: a constant, or one of Keras's `keras.optimizers.schedules`.
#[derive(Clone, Debug, PartialEq)]
pub enum LearningRate {
    /// The same rate at every step.
    Constant(f64),
    /// `initial · decay_rate^(step / decay_steps)` (the exponent floored if `staircase`).
    ExponentialDecay {
        /// The rate at step 0.
        initial_learning_rate: f64,
        /// Steps over which the rate is multiplied by `decay_rate` once.
        decay_steps: u64,
        /// What the rate is multiplied by every `decay_steps` steps.
        decay_rate: f64,
        /// Whether to decay in whole steps of `decay_steps` rather than smoothly.
        staircase: bool,
    },
    /// `values[i]` while `step ≤ boundaries[i]`, the last value after.
    PiecewiseConstantDecay {
        /// The step counts where the value changes, increasing.
        boundaries: Vec<u64>,
        /// The rate in each interval: one more than `boundaries`.
        values: Vec<f64>,
    },
    /// Linear warm-up from `initial_learning_rate` to `warmup_target` over
    /// `warmup_steps`, then a cosine from there down to `alpha ·` that over `decay_steps`.
    CosineDecay {
        /// The rate at step 0 (where the warm-up, if any, starts).
        initial_learning_rate: f64,
        /// Steps over which the cosine decays.
        decay_steps: u64,
        /// The final rate as a fraction of the decayed-from rate (Keras's default 0).
        alpha: f64,
        /// The rate the warm-up reaches; None for no warm-up (Keras's default).
        warmup_target: Option<f64>,
        /// Steps of the linear warm-up (Keras's default 0).
        warmup_steps: u64,
    },
}

impl LearningRate {
    /// The learning rate at `step` (steps taken before this one).
    pub fn at(&self, step: u64) -> f64 {
        match self {
            LearningRate::Constant(lr) => *lr,
            LearningRate::ExponentialDecay {
                initial_learning_rate,
                decay_steps,
                decay_rate,
                staircase,
            } => {
                let mut p = step as f64 / (*decay_steps).max(1) as f64;
                if *staircase {
                    p = p.floor();
                }
                initial_learning_rate * decay_rate.powf(p)
            }
            LearningRate::PiecewiseConstantDecay { boundaries, values } => {
                let i = boundaries
                    .iter()
                    .position(|&b| step <= b)
                    .unwrap_or(boundaries.len());
                values[i.min(values.len() - 1)]
            }
            LearningRate::CosineDecay {
                initial_learning_rate,
                decay_steps,
                alpha,
                warmup_target,
                warmup_steps,
            } => {
                let cosine = |step: f64, from: f64| {
                    let fraction = step / (*decay_steps).max(1) as f64;
                    let decayed =
                        (1.0 - alpha) * 0.5 * (1.0 + (std::f64::consts::PI * fraction).cos())
                            + alpha;
                    from * decayed
                };
                match warmup_target {
                    None => cosine((step.min(*decay_steps)) as f64, *initial_learning_rate),
                    Some(target) => {
                        let step = step.min(decay_steps + warmup_steps);
                        if step < *warmup_steps {
                            (target - initial_learning_rate) * step as f64 / *warmup_steps as f64
                                + initial_learning_rate
                        } else {
                            cosine((step - warmup_steps) as f64, *target)
                        }
                    }
                }
            }
        }
    }

    /// Reads a schedule from the object Keras writes for it.
    pub fn from_config(value: &Value) -> Result<Self> {
        let bad = |message: String| Error::Config {
            layer: "compile".into(),
            class: "optimizer".into(),
            field: "learning_rate".into(),
            message,
        };
        if let Some(lr) = value.as_f64() {
            return Ok(LearningRate::Constant(lr));
        }
        let class = value
            .get("class_name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let c = value.get("config").cloned().unwrap_or(json!({}));
        let number = |k: &str| {
            c.get(k)
                .and_then(Value::as_f64)
                .ok_or_else(|| bad(format!("{class}: '{k}' missing or not a number")))
        };
        let steps = |k: &str| {
            c.get(k)
                .and_then(Value::as_u64)
                .ok_or_else(|| bad(format!("{class}: '{k}' missing or not a step count")))
        };
        Ok(match class {
            "ExponentialDecay" => LearningRate::ExponentialDecay {
                initial_learning_rate: number("initial_learning_rate")?,
                decay_steps: steps("decay_steps")?,
                decay_rate: number("decay_rate")?,
                staircase: c.get("staircase").and_then(Value::as_bool).unwrap_or(false),
            },
            "PiecewiseConstantDecay" => {
                let list = |k: &str| {
                    c.get(k)
                        .and_then(Value::as_array)
                        .cloned()
                        .ok_or_else(|| bad(format!("{class}: '{k}' missing")))
                };
                let boundaries = list("boundaries")?
                    .iter()
                    .map(|b| {
                        b.as_u64()
                            .ok_or_else(|| bad("boundaries must be step counts".into()))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let values = list("values")?
                    .iter()
                    .map(|v| {
                        v.as_f64()
                            .ok_or_else(|| bad("values must be numbers".into()))
                    })
                    .collect::<Result<Vec<_>>>()?;
                if values.len() != boundaries.len() + 1 {
                    return Err(bad(format!(
                        "{class}: needs one more value than boundaries"
                    )));
                }
                LearningRate::PiecewiseConstantDecay { boundaries, values }
            }
            "CosineDecay" => LearningRate::CosineDecay {
                initial_learning_rate: number("initial_learning_rate")?,
                decay_steps: steps("decay_steps")?,
                alpha: c.get("alpha").and_then(Value::as_f64).unwrap_or(0.0),
                warmup_target: c.get("warmup_target").and_then(Value::as_f64),
                warmup_steps: c.get("warmup_steps").and_then(Value::as_u64).unwrap_or(0),
            },
            other => return Err(bad(format!("unknown learning-rate schedule '{other}'"))),
        })
    }

    /// The value Keras writes for this learning rate: a number, or a schedule's object.
    pub fn to_config(&self) -> Value {
        let schedule = |class: &str, config: Value| json!({"module": "keras.optimizers.schedules", "class_name": class, "config": config, "registered_name": null});
        match self {
            LearningRate::Constant(lr) => json!(lr),
            LearningRate::ExponentialDecay {
                initial_learning_rate,
                decay_steps,
                decay_rate,
                staircase,
            } => schedule(
                "ExponentialDecay",
                json!({"initial_learning_rate": initial_learning_rate, "decay_steps": decay_steps, "decay_rate": decay_rate, "staircase": staircase, "name": "ExponentialDecay"}),
            ),
            LearningRate::PiecewiseConstantDecay { boundaries, values } => schedule(
                "PiecewiseConstantDecay",
                json!({"boundaries": boundaries, "values": values, "name": "PiecewiseConstant"}),
            ),
            LearningRate::CosineDecay {
                initial_learning_rate,
                decay_steps,
                alpha,
                warmup_target,
                warmup_steps,
            } => schedule(
                "CosineDecay",
                json!({"initial_learning_rate": initial_learning_rate, "decay_steps": decay_steps, "alpha": alpha, "name": "CosineDecay", "warmup_target": warmup_target, "warmup_steps": warmup_steps}),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LearningRate;

    #[test]
    fn schedules_follow_keras_formulas() {
        let e = LearningRate::ExponentialDecay {
            initial_learning_rate: 0.1,
            decay_steps: 10,
            decay_rate: 0.5,
            staircase: false,
        };
        assert!((e.at(10) - 0.05).abs() < 1e-12 && (e.at(5) - 0.1 * 0.5f64.sqrt()).abs() < 1e-12);
        let s = LearningRate::ExponentialDecay {
            initial_learning_rate: 0.1,
            decay_steps: 10,
            decay_rate: 0.5,
            staircase: true,
        };
        assert_eq!(s.at(9), 0.1);
        let p = LearningRate::PiecewiseConstantDecay {
            boundaries: vec![100, 200],
            values: vec![1.0, 0.5, 0.1],
        };
        assert_eq!(
            (p.at(0), p.at(100), p.at(101), p.at(201)),
            (1.0, 1.0, 0.5, 0.1)
        );
        let c = LearningRate::CosineDecay {
            initial_learning_rate: 0.0,
            decay_steps: 100,
            alpha: 0.1,
            warmup_target: Some(1.0),
            warmup_steps: 10,
        };
        assert!((c.at(5) - 0.5).abs() < 1e-12, "half-way through warm-up");
        assert!((c.at(10) - 1.0).abs() < 1e-12, "warm-up reaches the target");
        assert!(
            (c.at(60) - (0.9 * 0.5 + 0.1)).abs() < 1e-12,
            "half-way down the cosine"
        );
        assert!((c.at(500) - 0.1).abs() < 1e-12, "alpha · target at the end");
    }
}
