//! Keras's weight initializers. Each keeps the config object Keras writes for it, so a
//! layer's config round-trips exactly, and draws from a seeded generator: its own `seed`
//! when the config has one, else the model's generator, so one seed fixes all weights.
//!
//! The variance-scaling family follows Keras: fans of a kernel of shape
//! (…receptive field…, in, out) are `in·rf` and `out·rf`; normal draws are truncated at two
//! standard deviations and widened by 1/0.8796… so the variance is the one asked for.

use crate::error::{Error, Result};
use crate::tensor::{checked_len, Tensor};
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;
use serde_json::{json, Map, Value};

/// The random generator behind every seeded draw in convnet.
pub type Rng = rand_pcg::Pcg64;

pub fn rng_from_seed(seed: u64) -> Rng {
    Rng::seed_from_u64(seed)
}

/// An initializer: the Keras class name and its config object.
#[derive(Clone, Debug, PartialEq)]
pub struct Initializer {
    class_name: String,
    config: Map<String, Value>,
}

/// String identifiers Keras accepts in place of a config object, with their classes.
pub const INITIALIZERS: &[(&str, &str)] = &[
    ("glorot_uniform", "GlorotUniform"),
    ("glorot_normal", "GlorotNormal"),
    ("he_uniform", "HeUniform"),
    ("he_normal", "HeNormal"),
    ("lecun_uniform", "LecunUniform"),
    ("lecun_normal", "LecunNormal"),
    ("zeros", "Zeros"),
    ("ones", "Ones"),
    ("constant", "Constant"),
    ("random_normal", "RandomNormal"),
    ("random_uniform", "RandomUniform"),
    ("truncated_normal", "TruncatedNormal"),
    ("variance_scaling", "VarianceScaling"),
];

/// How a draw is shaped once its scale is known.
enum Draw {
    Constant(f32),
    Uniform(f64, f64),
    Normal {
        mean: f64,
        stddev: f64,
        truncated: bool,
    },
}

impl Initializer {
    /// An initializer by Keras name (`"glorot_uniform"`, `"he_normal"`, `"zeros"`, …) or
    /// class name (`"GlorotUniform"`), with Keras's default arguments.
    pub fn new(name: &str) -> Result<Self> {
        let class = INITIALIZERS
            .iter()
            .find(|(alias, class)| *alias == name || *class == name)
            .map(|(_, class)| *class)
            .ok_or_else(|| Error::Tensor(format!("unknown initializer '{name}'")))?;
        let config = match class {
            "Zeros" | "Ones" => json!({}),
            "Constant" => json!({"value": 0.0}),
            "RandomNormal" | "TruncatedNormal" => {
                json!({"mean": 0.0, "stddev": 0.05, "seed": null})
            }
            "RandomUniform" => json!({"minval": -0.05, "maxval": 0.05, "seed": null}),
            "VarianceScaling" => json!({"scale": 1.0, "mode": "fan_in",
                                        "distribution": "truncated_normal", "seed": null}),
            "GlorotUniform" | "GlorotNormal" => {
                json!({"seed": null, "input_axes": null, "output_axes": null})
            }
            _ => json!({"seed": null}),
        };
        Ok(Initializer {
            class_name: class.to_string(),
            config: config.as_object().cloned().unwrap_or_default(),
        })
    }

    pub fn glorot_uniform() -> Self {
        Self::new("glorot_uniform").expect("built-in initializer")
    }

    pub fn zeros() -> Self {
        Self::new("zeros").expect("built-in initializer")
    }

    pub fn ones() -> Self {
        Self::new("ones").expect("built-in initializer")
    }

    /// Sets the initializer's own seed, which then wins over the model's generator.
    pub fn with_seed(mut self, seed: u64) -> Self {
        if self.config.contains_key("seed") {
            self.config.insert("seed".into(), json!(seed));
        }
        self
    }

    pub fn class_name(&self) -> &str {
        &self.class_name
    }

    /// Reads an initializer from a Keras config value: a string identifier or an object
    /// `{"class_name": …, "config": {…}}`. Errors say what is wrong; the caller adds the
    /// layer and field.
    pub fn from_config(value: &Value) -> std::result::Result<Self, String> {
        let init = match value {
            Value::String(name) => Self::new(name).map_err(|e| e.to_string())?,
            Value::Object(obj) => {
                let class = obj
                    .get("class_name")
                    .and_then(Value::as_str)
                    .ok_or("initializer object without a 'class_name'")?;
                let mut init = Self::new(class).map_err(|e| e.to_string())?;
                if let Some(cfg) = obj.get("config") {
                    let cfg = cfg
                        .as_object()
                        .ok_or("initializer 'config' is not an object")?;
                    init.config = cfg.clone();
                }
                init
            }
            other => {
                return Err(format!(
                    "expected an initializer name or object, found {other}"
                ))
            }
        };
        init.draw(1, 1)?; // validates the arguments now, not at build time
        Ok(init)
    }

    pub fn to_config(&self) -> Value {
        json!({
            "module": "keras.initializers",
            "class_name": self.class_name,
            "config": self.config,
            "registered_name": null,
        })
    }

    fn number(&self, key: &str, default: f64) -> std::result::Result<f64, String> {
        match self.config.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| format!("{}: '{key}' must be a number, found {v}", self.class_name)),
        }
    }

    fn seed(&self) -> Option<u64> {
        self.config.get("seed").and_then(Value::as_u64)
    }

    /// What to draw for a weight with these fans.
    fn draw(&self, fan_in: usize, fan_out: usize) -> std::result::Result<Draw, String> {
        let scaling = |scale: f64, mode: &str, distribution: &str| {
            let fan = match mode {
                "fan_in" => fan_in as f64,
                "fan_out" => fan_out as f64,
                "fan_avg" => (fan_in + fan_out) as f64 / 2.0,
                other => return Err(format!("{}: unknown mode '{other}'", self.class_name)),
            };
            let variance = scale / fan.max(1.0);
            Ok(match distribution {
                "uniform" => {
                    let limit = (3.0 * variance).sqrt();
                    Draw::Uniform(-limit, limit)
                }
                "truncated_normal" => Draw::Normal {
                    mean: 0.0,
                    stddev: variance.sqrt() / 0.879_625_661_034_239_8,
                    truncated: true,
                },
                "untruncated_normal" | "normal" => Draw::Normal {
                    mean: 0.0,
                    stddev: variance.sqrt(),
                    truncated: false,
                },
                other => Err(format!(
                    "{}: unknown distribution '{other}'",
                    self.class_name
                ))?,
            })
        };
        match self.class_name.as_str() {
            "Zeros" => Ok(Draw::Constant(0.0)),
            "Ones" => Ok(Draw::Constant(1.0)),
            "Constant" => Ok(Draw::Constant(self.number("value", 0.0)? as f32)),
            "RandomUniform" => Ok(Draw::Uniform(
                self.number("minval", -0.05)?,
                self.number("maxval", 0.05)?,
            )),
            "RandomNormal" | "TruncatedNormal" => Ok(Draw::Normal {
                mean: self.number("mean", 0.0)?,
                stddev: self.number("stddev", 0.05)?,
                truncated: self.class_name == "TruncatedNormal",
            }),
            "GlorotUniform" => scaling(1.0, "fan_avg", "uniform"),
            "GlorotNormal" => scaling(1.0, "fan_avg", "truncated_normal"),
            "HeUniform" => scaling(2.0, "fan_in", "uniform"),
            "HeNormal" => scaling(2.0, "fan_in", "truncated_normal"),
            "LecunUniform" => scaling(1.0, "fan_in", "uniform"),
            "LecunNormal" => scaling(1.0, "fan_in", "truncated_normal"),
            "VarianceScaling" => {
                let text = |key: &str, default: &str| {
                    self.config
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or(default)
                        .to_string()
                };
                scaling(
                    self.number("scale", 1.0)?,
                    &text("mode", "fan_in"),
                    &text("distribution", "truncated_normal"),
                )
            }
            other => Err(format!("unknown initializer '{other}'")),
        }
    }

    /// A tensor of `shape` drawn from this initializer. `rng` is used unless the
    /// initializer carries its own seed.
    pub fn sample(&self, shape: &[usize], rng: &mut Rng) -> Result<Tensor> {
        let len = checked_len(shape)
            .ok_or_else(|| Error::Tensor(format!("weight shape {shape:?} is too large")))?;
        let (fan_in, fan_out) = compute_fans(shape);
        let draw = self.draw(fan_in, fan_out).map_err(Error::Tensor)?;
        let mut own;
        let rng = match self.seed() {
            Some(seed) => {
                own = rng_from_seed(seed);
                &mut own
            }
            None => rng,
        };
        let data = (0..len)
            .map(|_| match draw {
                Draw::Constant(v) => v,
                Draw::Uniform(lo, hi) => (lo + (hi - lo) * rng.random::<f64>()) as f32,
                Draw::Normal {
                    mean,
                    stddev,
                    truncated,
                } => loop {
                    let z: f64 = rng.sample(StandardNormal);
                    if !truncated || z.abs() <= 2.0 {
                        break (mean + stddev * z) as f32;
                    }
                },
            })
            .collect();
        Tensor::new(shape.to_vec(), data)
    }
}

/// Keras's fans: a vector's length for both; a matrix's rows and columns; for a
/// convolution kernel (…, in, out) the channels times the receptive field.
pub fn compute_fans(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        [rows, cols] => (*rows, *cols),
        [field @ .., fan_in, fan_out] => {
            let rf: usize = field.iter().product();
            (fan_in * rf, fan_out * rf)
        }
    }
}
