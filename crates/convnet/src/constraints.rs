//! Keras's weight constraints (`kernel_constraint`, `bias_constraint`, …): MaxNorm,
//! MinMaxNorm, NonNeg and UnitNorm, read from and written to Keras's config form with
//! its defaults. A model that has them loads, predicts and saves them back; training
//! one is refused until they are applied after each optimizer step (see `train`).

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

impl Constraint {
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
