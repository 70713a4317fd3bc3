//! Keras's weight regularizers (`kernel_regularizer`, `bias_regularizer`,
//! `activity_regularizer`, …): L1, L2, L1L2 and OrthogonalRegularizer, read from and
//! written to Keras's config form with its defaults. A model that has them loads,
//! predicts and saves them back; training one is refused until their penalties join the
//! loss (see `train`), so it never trains differently from what its file says.

use crate::keras_object;
pub use crate::keras_object::Amount;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A weight penalty, as Keras configures it.
#[derive(Clone, Debug, PartialEq)]
pub enum Regularizer {
    /// `l1 · Σ|w|`.
    L1 {
        /// The factor.
        l1: Amount,
    },
    /// `l2 · Σw²`.
    L2 {
        /// The factor.
        l2: Amount,
    },
    /// `l1 · Σ|w| + l2 · Σw²`.
    L1L2 {
        /// The L1 factor.
        l1: Amount,
        /// The L2 factor.
        l2: Amount,
    },
    /// `factor` times the mean absolute cosine between distinct rows (or columns) of
    /// a 2-D weight.
    Orthogonal {
        /// The factor.
        factor: Amount,
        /// `"rows"` or `"columns"`.
        mode: OrthogonalMode,
    },
}

/// Which vectors of the weight OrthogonalRegularizer keeps apart.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrthogonalMode {
    /// The rows.
    Rows,
    /// The columns.
    Columns,
}

const CLASSES: &[(&str, &str)] = &[
    ("l1", "L1"),
    ("l2", "L2"),
    ("l1_l2", "L1L2"),
    ("orthogonal_regularizer", "OrthogonalRegularizer"),
];

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct L1Config {
    #[serde(default = "hundredth")]
    l1: Amount,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct L2Config {
    #[serde(default = "hundredth")]
    l2: Amount,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct L1L2Config {
    #[serde(default = "zero")]
    l1: Amount,
    #[serde(default = "zero")]
    l2: Amount,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrthogonalConfig {
    #[serde(default = "hundredth")]
    factor: Amount,
    #[serde(default = "rows")]
    mode: OrthogonalMode,
}

fn hundredth() -> Amount {
    Amount::of(0.01)
}
fn zero() -> Amount {
    Amount::of(0.0)
}
fn rows() -> OrthogonalMode {
    OrthogonalMode::Rows
}

impl Regularizer {
    /// `L2(l2)`, the regularizer of most CNN programs.
    pub fn l2(l2: f64) -> Self {
        Regularizer::L2 { l2: Amount::of(l2) }
    }

    /// `L1(l1)`.
    pub fn l1(l1: f64) -> Self {
        Regularizer::L1 { l1: Amount::of(l1) }
    }

    /// Keras's class name.
    pub fn class_name(&self) -> &'static str {
        match self {
            Regularizer::L1 { .. } => "L1",
            Regularizer::L2 { .. } => "L2",
            Regularizer::L1L2 { .. } => "L1L2",
            Regularizer::Orthogonal { .. } => "OrthogonalRegularizer",
        }
    }

    /// Reads a regularizer from its name (`"l2"`) or Keras object.
    pub fn from_config(value: &Value) -> Result<Self, String> {
        let (class, config) = keras_object::read(value, "regularizer", CLASSES)?;
        Ok(match class {
            "L1" => {
                let c: L1Config = keras_object::config(class, config)?;
                Regularizer::L1 { l1: c.l1 }
            }
            "L2" => {
                let c: L2Config = keras_object::config(class, config)?;
                Regularizer::L2 { l2: c.l2 }
            }
            "L1L2" => {
                let c: L1L2Config = keras_object::config(class, config)?;
                Regularizer::L1L2 { l1: c.l1, l2: c.l2 }
            }
            _ => {
                let c: OrthogonalConfig = keras_object::config(class, config)?;
                Regularizer::Orthogonal {
                    factor: c.factor,
                    mode: c.mode,
                }
            }
        })
    }

    /// The object Keras writes for it.
    pub fn to_config(&self) -> Value {
        let class = self.class_name();
        let module = "keras.regularizers";
        match self.clone() {
            Regularizer::L1 { l1 } => keras_object::write(module, class, &L1Config { l1 }),
            Regularizer::L2 { l2 } => keras_object::write(module, class, &L2Config { l2 }),
            Regularizer::L1L2 { l1, l2 } => {
                keras_object::write(module, class, &L1L2Config { l1, l2 })
            }
            Regularizer::Orthogonal { factor, mode } => {
                keras_object::write(module, class, &OrthogonalConfig { factor, mode })
            }
        }
    }
}

impl Serialize for Regularizer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_config().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Regularizer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_config(&Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_objects_and_defaults_read_as_keras_reads_them() {
        assert_eq!(
            Regularizer::from_config(&json!("l2")).unwrap(),
            Regularizer::l2(0.01)
        );
        let legacy = json!({"class_name": "L1L2", "config": {"l1": 0.0, "l2": 0.0005}});
        let r = Regularizer::from_config(&legacy).unwrap();
        assert_eq!(
            r.to_config(),
            json!({"module": "keras.regularizers", "class_name": "L1L2",
                   "config": {"l1": 0.0, "l2": 0.0005}, "registered_name": null})
        );
        let o = Regularizer::from_config(&json!({"class_name": "OrthogonalRegularizer"}));
        assert_eq!(
            o.unwrap().to_config()["config"],
            json!({"factor": 0.01, "mode": "rows"})
        );
    }

    #[test]
    fn wrong_classes_fields_and_values_are_named() {
        let e = Regularizer::from_config(&json!("l3")).unwrap_err();
        assert!(e.contains("unknown regularizer 'l3'"), "{e}");
        let e = Regularizer::from_config(&json!({"class_name": "L2", "config": {"l1": 1}}))
            .unwrap_err();
        assert!(e.contains("L2") && e.contains("l1"), "{e}");
        let e = Regularizer::from_config(&json!({"class_name": "L2", "config": {"l2": -1}}))
            .unwrap_err();
        assert!(e.contains("-1"), "{e}");
    }
}
