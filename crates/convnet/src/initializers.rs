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

/// A generator seeded with `seed`, so the same seed gives the same draws.
pub fn rng_from_seed(seed: u64) -> Rng {
    Rng::seed_from_u64(seed)
}

/// The generator layers draw their weights from when they are built by a call on a
/// symbolic tensor, like Keras's global seed generator.
static GLOBAL_RNG: std::sync::Mutex<Option<Rng>> = std::sync::Mutex::new(None);

/// Fixes the global generator, as `keras.utils.set_random_seed` does: layers built after
/// this draw the same weights in every run of the same program.
pub fn set_random_seed(seed: u64) {
    *GLOBAL_RNG.lock().unwrap_or_else(|e| e.into_inner()) = Some(rng_from_seed(seed));
}

/// A fresh generator drawn from the global one (seeded from the clock until
/// [`set_random_seed`] is called).
pub fn next_rng() -> Rng {
    let mut global = GLOBAL_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let global = global.get_or_insert_with(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        rng_from_seed(nanos ^ (std::process::id() as u64) << 32)
    });
    rng_from_seed(global.random())
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

/// Written to configs as Keras's initializer object.
impl serde::Serialize for Initializer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_config().serialize(s)
    }
}

/// Read from a name or an initializer object, its arguments checked.
impl<'de> serde::Deserialize<'de> for Initializer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Self::from_config(&Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl Initializer {
    /// An initializer by Keras name (`"glorot_uniform"`, `"he_normal"`, `"zeros"`, …) or
    /// class name (`"GlorotUniform"`), with Keras's default arguments.
    pub fn new(name: &str) -> Result<Self> {
        let class = INITIALIZERS
            .iter()
            .find(|(alias, class)| *alias == name || *class == name)
            .map(|(_, class)| *class)
            .ok_or_else(|| {
                Error::invalid("initializer", format!("unknown initializer '{name}'"))
            })?;
        let config = match class {
            "Zeros" | "Ones" => json!({}),
            "Constant" => json!({"value": 0.0}),
            // Keras 3.15's `get_config()`, keys in its order.
            "RandomNormal" | "TruncatedNormal" => {
                json!({"seed": null, "mean": 0.0, "stddev": 0.05})
            }
            "RandomUniform" => json!({"seed": null, "minval": -0.05, "maxval": 0.05}),
            "VarianceScaling" => json!({"seed": null, "scale": 1.0, "mode": "fan_in",
                                        "distribution": "truncated_normal",
                                        "input_axes": null, "output_axes": null}),
            "GlorotUniform" | "GlorotNormal" | "HeNormal" | "HeUniform" | "LecunNormal"
            | "LecunUniform" => json!({"seed": null, "input_axes": null, "output_axes": null}),
            _ => json!({"seed": null}),
        };
        Ok(Initializer {
            class_name: class.to_string(),
            config: config.as_object().cloned().unwrap_or_default(),
        })
    }

    /// Keras's `glorot_uniform`, the default `kernel_initializer` of Dense and the
    /// convolutions.
    pub fn glorot_uniform() -> Self {
        Self::new("glorot_uniform").expect("built-in initializer")
    }

    /// Keras's `zeros`, the default `bias_initializer`.
    pub fn zeros() -> Self {
        Self::new("zeros").expect("built-in initializer")
    }

    /// Keras's `ones`, the default `gamma_initializer` of BatchNormalization.
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

    /// Keras's class name, as written in configs (`GlorotUniform`, `Zeros`, ...).
    pub fn class_name(&self) -> &str {
        &self.class_name
    }

    /// Reads an initializer from a Keras config value: a string identifier or an object
    /// `{"class_name": …, "config": {…}}`. Errors say what is wrong; the caller adds the
    /// layer and field.
    pub fn from_config(value: &Value) -> Result<Self> {
        Self::read_config(value).map_err(|message| Error::invalid("initializer", message))
    }

    fn read_config(value: &Value) -> std::result::Result<Self, String> {
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

    /// The Keras config object `{"module", "class_name", "config", "registered_name"}`, as
    /// Keras's `serialize` writes it.
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
        let len = checked_len(shape).ok_or_else(|| {
            Error::invalid("shape", format!("weight shape {shape:?} is too large"))
        })?;
        let (fan_in, fan_out) = compute_fans(shape);
        let draw = self
            .draw(fan_in, fan_out)
            .map_err(|message| Error::invalid("initializer", message))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each initializer by name writes the config Keras 3.15's `get_config()` returns,
    /// keys in its order (as printed by Keras for the default objects).
    #[test]
    fn default_configs_are_keras_configs() {
        let axes = r#"{"seed":null,"input_axes":null,"output_axes":null}"#;
        let normal = r#"{"seed":null,"mean":0.0,"stddev":0.05}"#;
        for (name, want) in [
            ("he_normal", axes),
            ("he_uniform", axes),
            ("lecun_normal", axes),
            ("lecun_uniform", axes),
            ("glorot_uniform", axes),
            ("glorot_normal", axes),
            (
                "variance_scaling",
                r#"{"seed":null,"scale":1.0,"mode":"fan_in","distribution":"truncated_normal","input_axes":null,"output_axes":null}"#,
            ),
            ("random_normal", normal),
            ("truncated_normal", normal),
            (
                "random_uniform",
                r#"{"seed":null,"minval":-0.05,"maxval":0.05}"#,
            ),
            ("constant", r#"{"value":0.0}"#),
            ("zeros", "{}"),
            ("ones", "{}"),
        ] {
            let config = Initializer::new(name).unwrap().to_config();
            assert_eq!(config["config"].to_string(), want, "{name}");
        }
    }

    fn stats(t: &Tensor) -> (f64, f64, f32) {
        let n = t.len() as f64;
        let mean = t.data().iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = t
            .data()
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let max = t.data().iter().fold(0.0f32, |m, v| m.max(v.abs()));
        (mean, var.sqrt(), max)
    }

    #[test]
    fn fans_follow_keras() {
        assert_eq!(compute_fans(&[3, 3, 16, 32]), (144, 288));
        assert_eq!(compute_fans(&[784, 10]), (784, 10));
        assert_eq!(compute_fans(&[7]), (7, 7));
        // A depthwise kernel (kh, kw, channels, multiplier).
        assert_eq!(compute_fans(&[3, 3, 32, 1]), (288, 9));
    }

    #[test]
    fn variance_scaling_draws_have_keras_limits_and_spreads() {
        let mut rng = rng_from_seed(7);
        let shape = [3, 3, 16, 32];
        // glorot_uniform: U(±sqrt(6 / (fan_in + fan_out))), std = limit / sqrt(3).
        let limit = (6.0f64 / (144.0 + 288.0)).sqrt();
        let (mean, std, max) = stats(
            &Initializer::new("glorot_uniform")
                .unwrap()
                .sample(&shape, &mut rng)
                .unwrap(),
        );
        assert!(
            max as f64 <= limit
                && mean.abs() < 0.01
                && (std - limit / 3f64.sqrt()).abs() < 0.01 * limit
        );
        // he_normal: truncated at 2σ, σ chosen so the std is sqrt(2 / fan_in).
        let target = (2.0f64 / 144.0).sqrt();
        let (_, std, max) = stats(
            &Initializer::new("he_normal")
                .unwrap()
                .sample(&shape, &mut rng)
                .unwrap(),
        );
        assert!(
            (std - target).abs() < 0.03 * target,
            "std {std} vs {target}"
        );
        assert!((max as f64) <= 2.0 * target / 0.879_625_661_034_239_8 + 1e-6);
        // lecun_uniform: U(±sqrt(3 / fan_in)).
        let (_, _, max) = stats(
            &Initializer::new("lecun_uniform")
                .unwrap()
                .sample(&shape, &mut rng)
                .unwrap(),
        );
        assert!(max as f64 <= (3.0f64 / 144.0).sqrt());
        let ones = Initializer::new("ones")
            .unwrap()
            .sample(&[4], &mut rng)
            .unwrap();
        assert_eq!(ones.data(), &[1.0; 4]);
        let constant = Initializer::from_config(
            &serde_json::json!({"class_name": "Constant", "config": {"value": 0.5}}),
        )
        .unwrap();
        assert_eq!(constant.sample(&[2], &mut rng).unwrap().data(), &[0.5, 0.5]);
        let (mean, std, _) = stats(
            &Initializer::new("random_normal")
                .unwrap()
                .sample(&[10000], &mut rng)
                .unwrap(),
        );
        assert!(mean.abs() < 0.002 && (std - 0.05).abs() < 0.002);
    }

    #[test]
    fn seeds_fix_the_draws() {
        let init = Initializer::glorot_uniform();
        let a = init.sample(&[5, 5], &mut rng_from_seed(1)).unwrap();
        let b = init.sample(&[5, 5], &mut rng_from_seed(1)).unwrap();
        let c = init.sample(&[5, 5], &mut rng_from_seed(2)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        // An initializer's own seed wins over the generator it is given.
        let seeded = Initializer::glorot_uniform().with_seed(9);
        assert_eq!(
            seeded.sample(&[5, 5], &mut rng_from_seed(1)).unwrap(),
            seeded.sample(&[5, 5], &mut rng_from_seed(2)).unwrap()
        );
    }

    #[test]
    fn configs_round_trip_and_errors_name_the_problem() {
        let value = serde_json::json!({"module": "keras.initializers", "class_name": "HeNormal",
                                       "config": {"seed": 3}, "registered_name": null});
        assert_eq!(Initializer::from_config(&value).unwrap().to_config(), value);
        assert_eq!(
            Initializer::from_config(&serde_json::json!("he_uniform"))
                .unwrap()
                .class_name(),
            "HeUniform"
        );
        let e = Initializer::from_config(&serde_json::json!({"class_name": "Orthogonal"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("Orthogonal"), "{e}");
        let e = Initializer::from_config(&serde_json::json!({"class_name": "VarianceScaling", "config": {"mode": "fan_sideways"}})).unwrap_err().to_string();
        assert!(e.contains("fan_sideways"), "{e}");
        let e = Initializer::from_config(
            &serde_json::json!({"class_name": "RandomNormal", "config": {"stddev": "wide"}}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("stddev"), "{e}");
    }
}
