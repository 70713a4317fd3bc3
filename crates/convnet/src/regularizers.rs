//! Keras's weight regularizers (`kernel_regularizer`, `bias_regularizer`,
//! `activity_regularizer`, …): L1, L2, L1L2 and OrthogonalRegularizer, read from and
//! written to Keras's config form with its defaults, with the penalty and its gradient
//! that `fit` adds to the loss (`train::penalties`).

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

    /// Why `fit` cannot apply it to a value of `shape`: OrthogonalRegularizer takes
    /// rank-2 values only, as in Keras.
    pub fn check_shape(&self, shape: &[usize]) -> Result<(), String> {
        match self {
            Regularizer::Orthogonal { .. } if shape.len() != 2 => Err(format!(
                "Inputs to OrthogonalRegularizer must have rank 2. Received: shape {shape:?}"
            )),
            _ => Ok(()),
        }
    }

    /// Keras's penalty of `values` (of `shape`): `l1 · Σ|w| + l2 · Σw²`, or
    /// OrthogonalRegularizer's mean absolute cosine between distinct rows (columns).
    pub fn penalty(&self, values: &[f32], shape: &[usize]) -> f64 {
        match self {
            Regularizer::Orthogonal { factor, mode } => {
                orthogonal(values, shape, *mode, factor.get(), None)
            }
            _ => {
                let (l1, l2) = self.factors();
                let (mut abs, mut square) = (0f64, 0f64);
                for &v in values {
                    abs += f64::from(v.abs());
                    square += f64::from(v) * f64::from(v);
                }
                l1 * abs + l2 * square
            }
        }
    }

    /// Adds `scale` times the penalty's gradient to `grad`: `l1 · sign(w) + 2 · l2 · w`
    /// (TensorFlow's sign, 0 at 0), or OrthogonalRegularizer's through the
    /// normalisation.
    pub fn add_gradient(&self, values: &[f32], shape: &[usize], scale: f64, grad: &mut [f32]) {
        if let Regularizer::Orthogonal { factor, mode } = self {
            orthogonal(values, shape, *mode, scale * factor.get(), Some(grad));
            return;
        }
        let (l1, l2) = self.factors();
        let (l1, l2) = ((scale * l1) as f32, (scale * 2.0 * l2) as f32);
        for (g, &v) in grad.iter_mut().zip(values) {
            let sign = if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                0.0
            };
            *g += l1 * sign + l2 * v;
        }
    }

    /// The (l1, l2) factors of the elementwise penalties.
    fn factors(&self) -> (f64, f64) {
        match self {
            Regularizer::L1 { l1 } => (l1.get(), 0.0),
            Regularizer::L2 { l2 } => (0.0, l2.get()),
            Regularizer::L1L2 { l1, l2 } => (l1.get(), l2.get()),
            Regularizer::Orthogonal { .. } => (0.0, 0.0),
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

/// Keras's OrthogonalRegularizer on a rank-2 `values`: the vectors (rows, or columns)
/// normalised to `u = w / max(‖w‖, 1e-7)`, then `factor · Σ_{i≠j} |uᵢ·uⱼ| / (n(n − 1))`.
/// With `grad`, adds the penalty's gradient there instead (and returns 0): each
/// `2 · factor / (n(n − 1)) · Σ_{j≠i} sign(uᵢ·uⱼ) uⱼ`, taken back through the
/// normalisation.
fn orthogonal(
    values: &[f32],
    shape: &[usize],
    mode: OrthogonalMode,
    factor: f64,
    grad: Option<&mut [f32]>,
) -> f64 {
    let &[rows, cols] = shape else {
        return 0.0;
    };
    // Vector i's element k is at i·step_vector + k·step_element.
    let (n, d, vector, element) = match mode {
        OrthogonalMode::Rows => (rows, cols, cols, 1),
        OrthogonalMode::Columns => (cols, rows, 1, cols),
    };
    if n < 2 {
        return 0.0;
    }
    let at = |i: usize, k: usize| i * vector + k * element;
    let radii: Vec<f64> = (0..n)
        .map(|i| {
            let norm = (0..d)
                .map(|k| f64::from(values[at(i, k)]).powi(2))
                .sum::<f64>()
                .sqrt();
            norm.max(1e-7)
        })
        .collect();
    let u = |i: usize, k: usize| f64::from(values[at(i, k)]) / radii[i];
    let dot = |i: usize, j: usize| (0..d).map(|k| u(i, k) * u(j, k)).sum::<f64>();
    let pairs = (n * (n - 1)) as f64;
    let Some(grad) = grad else {
        let mut sum = 0.0;
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    sum += dot(i, j).abs();
                }
            }
        }
        return factor * sum / pairs;
    };
    for i in 0..n {
        // dp/duᵢ, then through uᵢ = wᵢ/rᵢ: (g − (g·uᵢ) uᵢ) / rᵢ while ‖wᵢ‖ > ε, g/ε below.
        let mut g = vec![0f64; d];
        for j in (0..n).filter(|&j| j != i) {
            let sign = dot(i, j).signum();
            for (k, gk) in g.iter_mut().enumerate() {
                *gk += 2.0 * factor / pairs * sign * u(j, k);
            }
        }
        let along = if radii[i] > 1e-7 {
            (0..d).map(|k| g[k] * u(i, k)).sum::<f64>()
        } else {
            0.0
        };
        for (k, gk) in g.iter().enumerate() {
            grad[at(i, k)] += ((gk - along * u(i, k)) / radii[i]) as f32;
        }
    }
    0.0
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
    fn penalties_and_gradients_are_keras_formulas() {
        let w = [1.5f32, -2.0, 0.0, 0.5];
        let r = Regularizer::L1L2 {
            l1: Amount::of(0.1),
            l2: Amount::of(0.01),
        };
        assert!((r.penalty(&w, &[4]) - (0.1 * 4.0 + 0.01 * 6.5)).abs() < 1e-9);
        let mut g = [0.0f32; 4];
        r.add_gradient(&w, &[4], 2.0, &mut g);
        let want = [
            2.0 * (0.1 + 0.02 * 1.5),
            2.0 * (-0.1 - 0.04),
            0.0,
            2.0 * (0.1 + 0.01),
        ];
        for (g, w) in g.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-6, "{g} vs {w}");
        }
    }

    #[test]
    fn orthogonal_penalty_and_gradient() {
        // Rows (1, 0) and (1, 1)/√2: cosine 1/√2, the only pair.
        for (mode, w, shape) in [
            ("rows", vec![2.0f32, 0.0, 3.0, 3.0], [2, 2]),
            ("columns", vec![2.0f32, 3.0, 0.0, 3.0], [2, 2]),
        ] {
            let r = Regularizer::from_config(&json!({"class_name": "OrthogonalRegularizer",
                "config": {"factor": 0.5, "mode": mode}}))
            .unwrap();
            let want = 0.5 * 2.0 * std::f64::consts::FRAC_1_SQRT_2 / 2.0;
            assert!((r.penalty(&w, &shape) - want).abs() < 1e-6, "{mode}");
            let mut g = vec![0f32; 4];
            r.add_gradient(&w, &shape, 1.0, &mut g);
            for k in 0..4 {
                let mut up = w.clone();
                up[k] += 1e-3;
                let mut down = w.clone();
                down[k] -= 1e-3;
                let numeric = (r.penalty(&up, &shape) - r.penalty(&down, &shape)) / 2e-3;
                assert!(
                    (numeric - f64::from(g[k])).abs() < 1e-4,
                    "{mode} {k}: {numeric} vs {}",
                    g[k]
                );
            }
        }
        let r = Regularizer::from_config(&json!("orthogonal_regularizer")).unwrap();
        assert!(r.check_shape(&[1, 1, 3, 4]).unwrap_err().contains("rank 2"));
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
