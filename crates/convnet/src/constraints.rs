//! Keras's weight constraints (`kernel_constraint`, `bias_constraint`, …): MaxNorm,
//! MinMaxNorm, NonNeg and UnitNorm, read from and written to Keras's config form with
//! its defaults, and the projection `fit` applies after each optimizer step
//! (`train::penalties`).

use crate::keras_object;
use crate::layers::Axes;
use crate::regularizers::Amount;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A projection applied to a weight after each optimizer step, as Keras configures it.
#[derive(Clone, Debug, PartialEq)]
pub enum Constraint {
    /// Vectors along `axis` rescaled to a norm of at most `max_value`.
    MaxNorm {
        /// The largest norm.
        max_value: Amount,
        /// The axes the norm is taken over.
        axis: Axes,
    },
    /// Vectors along `axis` moved towards a norm within `[min_value, max_value]`, by
    /// `rate`.
    MinMaxNorm {
        /// The smallest norm.
        min_value: Amount,
        /// The largest norm.
        max_value: Amount,
        /// How far towards the bounds each step moves (1 = all the way).
        rate: Amount,
        /// The axes the norm is taken over.
        axis: Axes,
    },
    /// Negative weights set to 0.
    NonNeg,
    /// Vectors along `axis` rescaled to norm 1.
    UnitNorm {
        /// The axes the norm is taken over.
        axis: Axes,
    },
}

const CLASSES: &[(&str, &str)] = &[
    ("max_norm", "MaxNorm"),
    ("min_max_norm", "MinMaxNorm"),
    ("non_neg", "NonNeg"),
    ("unit_norm", "UnitNorm"),
];

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaxNormConfig {
    #[serde(default = "two")]
    max_value: Amount,
    #[serde(default = "axis_0")]
    axis: Axes,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MinMaxNormConfig {
    #[serde(default = "zero")]
    min_value: Amount,
    #[serde(default = "one")]
    max_value: Amount,
    #[serde(default = "one")]
    rate: Amount,
    #[serde(default = "axis_0")]
    axis: Axes,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NonNegConfig {}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitNormConfig {
    #[serde(default = "axis_0")]
    axis: Axes,
}

/// The axes of `axis` in a weight of `rank` dimensions, counted from the front.
fn reduced_axes(axis: &Axes, rank: usize) -> Result<Vec<usize>, String> {
    let listed = match axis {
        Axes::One(a) => std::slice::from_ref(a),
        Axes::Many(list) => list.as_slice(),
    };
    listed
        .iter()
        .map(|&a| {
            let index = if a < 0 { rank as i64 + a } else { a };
            if (0..rank as i64).contains(&index) {
                Ok(index as usize)
            } else {
                Err(format!(
                    "axis {a} is out of range for a weight of rank {rank}"
                ))
            }
        })
        .collect()
}

/// Keras's default `max_value=2`, an integer in its configs.
fn two() -> Amount {
    serde_json::from_value(2.into()).expect("2 is a valid amount")
}
fn zero() -> Amount {
    Amount::of(0.0)
}
fn one() -> Amount {
    Amount::of(1.0)
}
fn axis_0() -> Axes {
    Axes::One(0)
}

/// Keras's `backend.epsilon()`, which keeps the norms' divisions finite.
const EPSILON: f32 = 1e-7;

impl Constraint {
    /// Projects a weight of `shape` (Keras's layout) in place, as Keras's `__call__`:
    /// norms are taken over `axis` (negative counting from the end); an axis outside
    /// the weight's rank is an error naming it.
    pub fn apply(&self, values: &mut [f32], shape: &[usize]) -> Result<(), String> {
        let (axis, scale): (&Axes, Box<dyn Fn(f32) -> f32>) = match self {
            Constraint::NonNeg => {
                values.iter_mut().for_each(|v| *v = v.max(0.0));
                return Ok(());
            }
            Constraint::MaxNorm { max_value, axis } => {
                let max = max_value.get() as f32;
                (axis, Box::new(move |n| n.clamp(0.0, max) / (EPSILON + n)))
            }
            Constraint::MinMaxNorm {
                min_value,
                max_value,
                rate,
                axis,
            } => {
                let (min, max, rate) = (
                    min_value.get() as f32,
                    max_value.get() as f32,
                    rate.get() as f32,
                );
                (
                    axis,
                    Box::new(move |n| {
                        (rate * n.clamp(min, max) + (1.0 - rate) * n) / (EPSILON + n)
                    }),
                )
            }
            Constraint::UnitNorm { axis } => (axis, Box::new(|n| 1.0 / (EPSILON + n))),
        };
        let reduced = reduced_axes(axis, shape.len())?;
        // Each value's place in the array of norms: its index with the reduced axes at 0.
        let kept: Vec<usize> = shape
            .iter()
            .enumerate()
            .map(|(a, &d)| if reduced.contains(&a) { 1 } else { d })
            .collect();
        let place = |mut i: usize| {
            let (mut at, mut stride) = (0, 1);
            for a in (0..shape.len()).rev() {
                let coord = i % shape[a];
                i /= shape[a];
                if kept[a] > 1 {
                    at += coord * stride;
                }
                stride *= kept[a];
            }
            at
        };
        let mut norms = vec![0f32; kept.iter().product()];
        for (i, v) in values.iter().enumerate() {
            norms[place(i)] += v * v;
        }
        let factors: Vec<f32> = norms.iter().map(|n| scale(n.sqrt())).collect();
        for (i, v) in values.iter_mut().enumerate() {
            *v *= factors[place(i)];
        }
        Ok(())
    }

    /// Keras's class name.
    pub fn class_name(&self) -> &'static str {
        match self {
            Constraint::MaxNorm { .. } => "MaxNorm",
            Constraint::MinMaxNorm { .. } => "MinMaxNorm",
            Constraint::NonNeg => "NonNeg",
            Constraint::UnitNorm { .. } => "UnitNorm",
        }
    }

    /// Reads a constraint from its name (`"non_neg"`) or Keras object.
    pub fn from_config(value: &Value) -> Result<Self, String> {
        let (class, config) = keras_object::read(value, "constraint", CLASSES)?;
        Ok(match class {
            "MaxNorm" => {
                let c: MaxNormConfig = keras_object::config(class, config)?;
                Constraint::MaxNorm {
                    max_value: c.max_value,
                    axis: c.axis,
                }
            }
            "MinMaxNorm" => {
                let c: MinMaxNormConfig = keras_object::config(class, config)?;
                if c.min_value.get() > c.max_value.get() {
                    return Err(format!(
                        "MinMaxNorm: min_value {} is above max_value {}",
                        c.min_value.get(),
                        c.max_value.get()
                    ));
                }
                Constraint::MinMaxNorm {
                    min_value: c.min_value,
                    max_value: c.max_value,
                    rate: c.rate,
                    axis: c.axis,
                }
            }
            "NonNeg" => {
                let NonNegConfig {} = keras_object::config(class, config)?;
                Constraint::NonNeg
            }
            _ => {
                let c: UnitNormConfig = keras_object::config(class, config)?;
                Constraint::UnitNorm { axis: c.axis }
            }
        })
    }

    /// The object Keras writes for it.
    pub fn to_config(&self) -> Value {
        let class = self.class_name();
        let module = "keras.constraints";
        match self.clone() {
            Constraint::MaxNorm { max_value, axis } => {
                keras_object::write(module, class, &MaxNormConfig { max_value, axis })
            }
            Constraint::MinMaxNorm {
                min_value,
                max_value,
                rate,
                axis,
            } => keras_object::write(
                module,
                class,
                &MinMaxNormConfig {
                    min_value,
                    max_value,
                    rate,
                    axis,
                },
            ),
            Constraint::NonNeg => keras_object::write(module, class, &NonNegConfig {}),
            Constraint::UnitNorm { axis } => {
                keras_object::write(module, class, &UnitNormConfig { axis })
            }
        }
    }
}

impl Serialize for Constraint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_config().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Constraint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_config(&Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn projections_take_norms_over_keras_axes() {
        // Columns of a 2x3 matrix (axis 0): norms 5, 1 and 0.
        let mut w = [3.0f32, 1.0, 0.0, 4.0, 0.0, 0.0];
        let max_norm = Constraint::from_config(&json!({"class_name": "MaxNorm",
            "config": {"max_value": 2.0, "axis": 0}}))
        .unwrap();
        max_norm.apply(&mut w, &[2, 3]).unwrap();
        let want = [1.2f32, 1.0, 0.0, 1.6, 0.0, 0.0];
        assert!(
            w.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5),
            "{w:?}"
        );
        // Rows (axis -1) to unit norm.
        let mut w = [3.0f32, 4.0, 0.0, 1.0, 0.0, 0.0];
        Constraint::from_config(&json!({"class_name": "UnitNorm", "config": {"axis": -1}}))
            .unwrap()
            .apply(&mut w, &[2, 3])
            .unwrap();
        let want = [0.6f32, 0.8, 0.0, 1.0, 0.0, 0.0];
        assert!(
            w.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5),
            "{w:?}"
        );
        let mut w = [-1.0f32, 2.0];
        Constraint::NonNeg.apply(&mut w, &[2]).unwrap();
        assert_eq!(w, [0.0, 2.0]);
        let e = max_norm.apply(&mut [1.0], &[]).unwrap_err();
        assert!(e.contains("axis 0"), "{e}");
    }

    #[test]
    fn defaults_are_written_as_keras_writes_them() {
        let c = Constraint::from_config(&json!("max_norm")).unwrap();
        assert_eq!(c.to_config()["config"], json!({"max_value": 2, "axis": 0}));
        let c = Constraint::from_config(&json!({"class_name": "MinMaxNorm",
            "config": {"axis": [0, 1, 2]}}))
        .unwrap();
        assert_eq!(
            c.to_config()["config"],
            json!({"min_value": 0.0, "max_value": 1.0, "rate": 1.0, "axis": [0, 1, 2]})
        );
        assert_eq!(
            Constraint::from_config(&json!({"class_name": "NonNeg", "config": {}})).unwrap(),
            Constraint::NonNeg
        );
    }

    #[test]
    fn wrong_classes_and_fields_are_named() {
        let e = Constraint::from_config(&json!("positive")).unwrap_err();
        assert!(e.contains("unknown constraint 'positive'"), "{e}");
        let e = Constraint::from_config(&json!({"class_name": "UnitNorm",
            "config": {"axes": 0}}))
        .unwrap_err();
        assert!(e.contains("UnitNorm") && e.contains("axes"), "{e}");
        let e = Constraint::from_config(&json!({"class_name": "MinMaxNorm",
            "config": {"min_value": 2.0, "max_value": 1.0}}))
        .unwrap_err();
        assert!(e.contains("min_value"), "{e}");
    }
}
