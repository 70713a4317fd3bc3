//! Keras 3's optimizers: the same update rules, defaults, gradient clipping and weight
//! decay, in the same order (clip, decay, update), so four steps here land where four
//! steps of Keras land. State (momenta, velocities, the step count) lives in the
//! optimizer, one slot set per variable, created on the first step.

use super::schedules::LearningRate;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use serde_json::{json, Map, Value};

/// The update rule and its hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    /// Keras's `SGD`: plain gradient descent, with optional momentum.
    Sgd {
        /// Momentum of the velocity (Keras's default 0).
        momentum: f64,
        /// Whether to use Nesterov momentum (Keras's default false).
        nesterov: bool,
    },
    /// Keras's `Adam` (and `AdamW`, with weight decay).
    Adam {
        /// Decay rate of the first-moment estimates (Keras's default 0.9).
        beta_1: f64,
        /// Decay rate of the second-moment estimates (Keras's default 0.999).
        beta_2: f64,
        /// Added to the denominator for numerical stability (Keras's default 1e-7).
        epsilon: f64,
        /// Whether to use the AMSGrad variant (Keras's default false).
        amsgrad: bool,
    },
    /// Keras's `RMSprop`.
    RmsProp {
        /// Decay rate of the running mean of squared gradients (Keras's default 0.9).
        rho: f64,
        /// Momentum of the update (Keras's default 0).
        momentum: f64,
        /// Added to the denominator for numerical stability (Keras's default 1e-7).
        epsilon: f64,
        /// Whether to divide by the gradient's estimated variance rather than its second
        /// moment (Keras's default false).
        centered: bool,
    },
    /// Keras's `Adagrad`.
    Adagrad {
        /// Starting value of the accumulated squared gradients (Keras's default 0.1).
        initial_accumulator_value: f64,
        /// Added to the denominator for numerical stability (Keras's default 1e-7).
        epsilon: f64,
    },
}

/// Keras 3's optimizer: an update rule, a learning rate or schedule, gradient clipping,
/// weight decay, and the state of its steps.
#[derive(Clone, Debug)]
pub struct Optimizer {
    /// The optimizer's name (Keras's `name`: `adam`, `sgd`, …).
    pub name: String,
    class: &'static str,
    /// The update rule and its hyper-parameters.
    pub rule: Rule,
    /// The learning rate: a constant or a schedule over the step count.
    pub learning_rate: LearningRate,
    /// Decoupled weight decay: each step multiplies every variable by `1 − weight_decay ·
    /// lr` before the update (Keras's `weight_decay`).
    pub weight_decay: Option<f64>,
    /// Clips each variable's gradient to this norm (Keras's `clipnorm`).
    pub clipnorm: Option<f64>,
    /// Clips all gradients together to this global norm (Keras's `global_clipnorm`).
    pub global_clipnorm: Option<f64>,
    /// Clips each gradient element to ±this value (Keras's `clipvalue`).
    pub clipvalue: Option<f64>,
    /// Steps taken (Keras's `iterations`).
    pub iterations: u64,
    /// Per variable: the rule's slots (momentum, velocity, …), made on the first step.
    slots: Vec<Vec<Tensor>>,
}

impl Optimizer {
    fn with_rule(class: &'static str, name: &str, learning_rate: f64, rule: Rule) -> Self {
        Optimizer {
            name: name.to_string(),
            class,
            rule,
            learning_rate: LearningRate::Constant(learning_rate),
            weight_decay: None,
            clipnorm: None,
            global_clipnorm: None,
            clipvalue: None,
            iterations: 0,
            slots: Vec::new(),
        }
    }

    /// `keras.optimizers.SGD(learning_rate=0.01, momentum=0.0, nesterov=False)`.
    pub fn sgd(learning_rate: f64) -> Self {
        Self::with_rule(
            "SGD",
            "sgd",
            learning_rate,
            Rule::Sgd {
                momentum: 0.0,
                nesterov: false,
            },
        )
    }

    /// `keras.optimizers.Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7)`.
    pub fn adam(learning_rate: f64) -> Self {
        Self::with_rule(
            "Adam",
            "adam",
            learning_rate,
            Rule::Adam {
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-7,
                amsgrad: false,
            },
        )
    }

    /// `keras.optimizers.AdamW(learning_rate=0.001, weight_decay=0.004)`.
    pub fn adamw(learning_rate: f64) -> Self {
        let mut o = Self::adam(learning_rate);
        o.class = "AdamW";
        o.name = "adamw".into();
        o.weight_decay = Some(0.004);
        o
    }

    /// `keras.optimizers.RMSprop(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7)`.
    pub fn rmsprop(learning_rate: f64) -> Self {
        Self::with_rule(
            "RMSprop",
            "rmsprop",
            learning_rate,
            Rule::RmsProp {
                rho: 0.9,
                momentum: 0.0,
                epsilon: 1e-7,
                centered: false,
            },
        )
    }

    /// `keras.optimizers.Adagrad(learning_rate=0.001, initial_accumulator_value=0.1)`.
    pub fn adagrad(learning_rate: f64) -> Self {
        Self::with_rule(
            "Adagrad",
            "adagrad",
            learning_rate,
            Rule::Adagrad {
                initial_accumulator_value: 0.1,
                epsilon: 1e-7,
            },
        )
    }

    /// An optimizer by Keras name with its default learning rate (`"adam"`, `"sgd"`, …).
    pub fn from_name(name: &str) -> Result<Self> {
        // tf.keras 2 registers its optimizers as `Custom>Adam`, `Custom>SGD`, …
        let class = name.strip_prefix("Custom>").unwrap_or(name);
        Ok(match class.to_ascii_lowercase().as_str() {
            "sgd" => Self::sgd(0.01),
            "adam" => Self::adam(0.001),
            "adamw" => Self::adamw(0.001),
            "rmsprop" => Self::rmsprop(0.001),
            "adagrad" => Self::adagrad(0.001),
            _ => {
                return Err(config_error(
                    "optimizer",
                    format!(
                        "unknown optimizer '{name}' (known: sgd, adam, adamw, rmsprop, adagrad)"
                    ),
                ))
            }
        })
    }

    /// Sets `momentum` (SGD and RMSprop; ignored by other rules).
    pub fn momentum(mut self, value: f64) -> Self {
        match &mut self.rule {
            Rule::Sgd { momentum, .. } | Rule::RmsProp { momentum, .. } => *momentum = value,
            _ => {}
        }
        self
    }

    /// Sets `nesterov` (SGD; ignored by other rules).
    pub fn nesterov(mut self, value: bool) -> Self {
        if let Rule::Sgd { nesterov, .. } = &mut self.rule {
            *nesterov = value;
        }
        self
    }

    /// Sets `amsgrad` (Adam and AdamW; ignored by other rules).
    pub fn amsgrad(mut self, value: bool) -> Self {
        if let Rule::Adam { amsgrad, .. } = &mut self.rule {
            *amsgrad = value;
        }
        self
    }

    /// Sets `centered` (RMSprop; ignored by other rules).
    pub fn centered(mut self, value: bool) -> Self {
        if let Rule::RmsProp { centered, .. } = &mut self.rule {
            *centered = value;
        }
        self
    }

    /// Sets `weight_decay`.
    pub fn weight_decay(mut self, value: f64) -> Self {
        self.weight_decay = Some(value);
        self
    }

    /// Sets `clipnorm`.
    pub fn clipnorm(mut self, value: f64) -> Self {
        self.clipnorm = Some(value);
        self
    }

    /// Sets `global_clipnorm`.
    pub fn global_clipnorm(mut self, value: f64) -> Self {
        self.global_clipnorm = Some(value);
        self
    }

    /// Sets `clipvalue`.
    pub fn clipvalue(mut self, value: f64) -> Self {
        self.clipvalue = Some(value);
        self
    }

    /// Sets the learning rate to a schedule (Keras's `learning_rate=` a
    /// `LearningRateSchedule`).
    pub fn schedule(mut self, schedule: LearningRate) -> Self {
        self.learning_rate = schedule;
        self
    }

    /// The learning rate of the next step.
    pub fn current_learning_rate(&self) -> f64 {
        self.learning_rate.at(self.iterations)
    }

    /// Sets a constant learning rate (what ReduceLROnPlateau and LearningRateScheduler do).
    pub fn set_learning_rate(&mut self, value: f64) {
        self.learning_rate = LearningRate::Constant(value);
    }

    /// One step: `variables[i] -= update(grads[i])`, with Keras's clipping and weight
    /// decay first.
    pub fn apply(&mut self, variables: &mut [&mut Tensor], grads: &[&Tensor]) -> Result<()> {
        if variables.len() != grads.len()
            || variables
                .iter()
                .zip(grads)
                .any(|(v, g)| v.shape() != g.shape())
        {
            return Err(Error::invalid(
                "gradients",
                format!(
                    "optimizer {}: gradients do not match the variables",
                    self.name
                ),
            ));
        }
        if self.slots.is_empty() {
            self.slots = variables.iter().map(|v| self.new_slots(v)).collect();
        } else if self.slots.len() != variables.len() {
            return Err(Error::invalid(
                "gradients",
                format!(
                    "optimizer {}: was built for {} variables, now given {}",
                    self.name,
                    self.slots.len(),
                    variables.len()
                ),
            ));
        }
        let grads = self.clip(grads);
        let lr = self.current_learning_rate();
        if let Some(wd) = self.weight_decay {
            for v in variables.iter_mut() {
                let factor = (wd * lr) as f32;
                v.map_inplace(|x| x - x * factor);
            }
        }
        let step = self.iterations + 1;
        for ((v, g), slots) in variables.iter_mut().zip(&grads).zip(&mut self.slots) {
            update(&self.rule, lr, step, v.data_mut(), g.data(), slots);
        }
        self.iterations = step;
        Ok(())
    }

    fn new_slots(&self, v: &Tensor) -> Vec<Tensor> {
        let zeros = || v.zeros_like();
        match &self.rule {
            Rule::Sgd { momentum, .. } => {
                if *momentum > 0.0 {
                    vec![zeros()]
                } else {
                    vec![]
                }
            }
            Rule::Adam { amsgrad, .. } => {
                if *amsgrad {
                    vec![zeros(), zeros(), zeros()]
                } else {
                    vec![zeros(), zeros()]
                }
            }
            Rule::RmsProp {
                momentum, centered, ..
            } => {
                let mut s = vec![zeros()];
                if *momentum > 0.0 {
                    s.push(zeros());
                }
                if *centered {
                    s.push(zeros());
                }
                s
            }
            Rule::Adagrad {
                initial_accumulator_value,
                ..
            } => vec![Tensor::full(
                v.shape().to_vec(),
                *initial_accumulator_value as f32,
            )],
        }
    }

    /// Keras's `_clip_gradients`: clipnorm per variable, else global_clipnorm, else
    /// clipvalue.
    fn clip(&self, grads: &[&Tensor]) -> Vec<Tensor> {
        let norm = |g: &Tensor| {
            g.data()
                .iter()
                .map(|&x| x as f64 * x as f64)
                .sum::<f64>()
                .sqrt()
        };
        let scaled = |g: &Tensor, s: f64| {
            let mut c = g.clone();
            c.map_inplace(|x| (x as f64 * s) as f32);
            c
        };
        if let Some(c) = self.clipnorm.filter(|&c| c > 0.0) {
            grads
                .iter()
                .map(|g| scaled(g, c / norm(g).max(c)))
                .collect()
        } else if let Some(c) = self.global_clipnorm.filter(|&c| c > 0.0) {
            let global = grads.iter().map(|g| norm(g).powi(2)).sum::<f64>().sqrt();
            let scale = c * (1.0 / global).min(1.0 / c);
            grads.iter().map(|g| scaled(g, scale)).collect()
        } else if let Some(c) = self.clipvalue.filter(|&c| c > 0.0) {
            grads
                .iter()
                .map(|g| {
                    let mut g = (*g).clone();
                    g.map_inplace(|x| x.clamp(-c as f32, c as f32));
                    g
                })
                .collect()
        } else {
            grads.iter().map(|g| (*g).clone()).collect()
        }
    }

    /// Reads an optimizer from the object Keras writes for it.
    pub fn from_config(value: &Value) -> Result<Self> {
        let (class, config) = match value {
            Value::String(name) => return Self::from_name(name),
            Value::Object(o) => (
                o.get("class_name").and_then(Value::as_str).ok_or_else(|| {
                    config_error("optimizer", "optimizer object without class_name".into())
                })?,
                o.get("config")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
            ),
            other => {
                return Err(config_error(
                    "optimizer",
                    format!("expected an optimizer name or object, found {other}"),
                ))
            }
        };
        let number = |key: &str| config.get(key).and_then(Value::as_f64);
        let flag = |key: &str| config.get(key).and_then(Value::as_bool).unwrap_or(false);
        let mut o = Self::from_name(class)?;
        if let Some(Value::Object(schedule)) = config.get("learning_rate") {
            o.learning_rate = LearningRate::from_config(&Value::Object(schedule.clone()))?;
        } else if let Some(lr) = number("learning_rate") {
            o.learning_rate = LearningRate::Constant(lr);
        }
        if let Some(name) = config.get("name").and_then(Value::as_str) {
            o.name = name.to_string();
        }
        o.weight_decay = number("weight_decay");
        o.clipnorm = number("clipnorm");
        o.global_clipnorm = number("global_clipnorm");
        o.clipvalue = number("clipvalue");
        if flag("use_ema") {
            return Err(config_error(
                "use_ema",
                "exponential moving averages of weights are not supported".into(),
            ));
        }
        if config
            .get("gradient_accumulation_steps")
            .is_some_and(|v| !v.is_null())
        {
            return Err(config_error(
                "gradient_accumulation_steps",
                "gradient accumulation is not supported".into(),
            ));
        }
        o.rule = match o.rule {
            Rule::Sgd { .. } => Rule::Sgd {
                momentum: number("momentum").unwrap_or(0.0),
                nesterov: flag("nesterov"),
            },
            Rule::Adam { .. } => Rule::Adam {
                beta_1: number("beta_1").unwrap_or(0.9),
                beta_2: number("beta_2").unwrap_or(0.999),
                epsilon: number("epsilon").unwrap_or(1e-7),
                amsgrad: flag("amsgrad"),
            },
            Rule::RmsProp { .. } => Rule::RmsProp {
                rho: number("rho").unwrap_or(0.9),
                momentum: number("momentum").unwrap_or(0.0),
                epsilon: number("epsilon").unwrap_or(1e-7),
                centered: flag("centered"),
            },
            Rule::Adagrad { .. } => Rule::Adagrad {
                initial_accumulator_value: number("initial_accumulator_value").unwrap_or(0.1),
                epsilon: number("epsilon").unwrap_or(1e-7),
            },
        };
        Ok(o)
    }

    /// The object Keras writes for this optimizer.
    pub fn to_config(&self) -> Value {
        let mut c = Map::new();
        c.insert("name".into(), json!(self.name));
        c.insert("learning_rate".into(), self.learning_rate.to_config());
        c.insert("weight_decay".into(), json!(self.weight_decay));
        c.insert("clipnorm".into(), json!(self.clipnorm));
        c.insert("global_clipnorm".into(), json!(self.global_clipnorm));
        c.insert("clipvalue".into(), json!(self.clipvalue));
        c.insert("use_ema".into(), json!(false));
        c.insert("ema_momentum".into(), json!(0.99));
        c.insert("ema_overwrite_frequency".into(), Value::Null);
        c.insert("loss_scale_factor".into(), Value::Null);
        c.insert("gradient_accumulation_steps".into(), Value::Null);
        match &self.rule {
            Rule::Sgd { momentum, nesterov } => {
                c.insert("momentum".into(), json!(momentum));
                c.insert("nesterov".into(), json!(nesterov));
            }
            Rule::Adam {
                beta_1,
                beta_2,
                epsilon,
                amsgrad,
            } => {
                c.insert("beta_1".into(), json!(beta_1));
                c.insert("beta_2".into(), json!(beta_2));
                c.insert("epsilon".into(), json!(epsilon));
                c.insert("amsgrad".into(), json!(amsgrad));
            }
            Rule::RmsProp {
                rho,
                momentum,
                epsilon,
                centered,
            } => {
                c.insert("rho".into(), json!(rho));
                c.insert("momentum".into(), json!(momentum));
                c.insert("epsilon".into(), json!(epsilon));
                c.insert("centered".into(), json!(centered));
            }
            Rule::Adagrad {
                initial_accumulator_value,
                epsilon,
            } => {
                c.insert(
                    "initial_accumulator_value".into(),
                    json!(initial_accumulator_value),
                );
                c.insert("epsilon".into(), json!(epsilon));
            }
        }
        json!({"module": "keras.optimizers", "class_name": self.class, "config": c, "registered_name": null})
    }

    /// How many slot variables the rule keeps per variable (Keras's order in its
    /// `optimizer/vars`).
    pub fn slots_per_variable(&self) -> usize {
        self.new_slots(&Tensor::zeros([1])).len()
    }

    /// Keras's count of the optimizer's variables once built (after its first step, or
    /// restored): `iterations` (an int64), the learning rate (a float32, unless it is
    /// a schedule) and every slot; as (values, bytes). None before it is built.
    pub fn variable_counts(&self) -> Option<(usize, usize)> {
        if self.iterations == 0 && self.slots.is_empty() {
            return None;
        }
        let rate = usize::from(matches!(self.learning_rate, LearningRate::Constant(_)));
        let slots: usize = self.slots.iter().flatten().map(Tensor::len).sum();
        Some((1 + rate + slots, 8 + 4 * (rate + slots)))
    }

    /// The optimizer's state (step count and slots), for checkpoints.
    pub fn state(&self) -> (u64, &[Vec<Tensor>]) {
        (self.iterations, &self.slots)
    }

    /// Restores a state taken by [`Optimizer::state`].
    pub fn set_state(&mut self, iterations: u64, slots: Vec<Vec<Tensor>>) {
        self.iterations = iterations;
        self.slots = slots;
    }
}

fn config_error(field: &str, message: String) -> Error {
    Error::Config {
        layer: "compile".into(),
        class: "optimizer".into(),
        field: field.into(),
        message,
    }
}

/// One variable's update, in f32 as Keras computes it in float32.
fn update(rule: &Rule, lr: f64, step: u64, v: &mut [f32], g: &[f32], slots: &mut [Tensor]) {
    let lr32 = lr as f32;
    match *rule {
        Rule::Sgd { momentum, nesterov } => {
            if momentum > 0.0 {
                let mom = momentum as f32;
                let m = slots[0].data_mut();
                for ((v, &g), m) in v.iter_mut().zip(g).zip(m.iter_mut()) {
                    *m = *m * mom - g * lr32;
                    *v += if nesterov { *m * mom - g * lr32 } else { *m };
                }
            } else {
                v.iter_mut().zip(g).for_each(|(v, &g)| *v -= g * lr32);
            }
        }
        Rule::Adam {
            beta_1,
            beta_2,
            epsilon,
            amsgrad,
        } => {
            let (b1, b2) = (beta_1 as f32, beta_2 as f32);
            let b1_power = b1.powf(step as f32);
            let b2_power = b2.powf(step as f32);
            let alpha = lr32 * (1.0 - b2_power).sqrt() / (1.0 - b1_power);
            let (first, rest) = slots.split_at_mut(1);
            let m = first[0].data_mut();
            let (second, hat) = rest.split_at_mut(1);
            let vel = second[0].data_mut();
            let mut v_hat = hat.first_mut().map(|t| t.data_mut());
            for i in 0..v.len() {
                m[i] += (g[i] - m[i]) * (1.0 - b1);
                vel[i] += (g[i] * g[i] - vel[i]) * (1.0 - b2);
                let denominator = match v_hat.as_mut() {
                    Some(h) if amsgrad => {
                        h[i] = h[i].max(vel[i]);
                        h[i]
                    }
                    _ => vel[i],
                };
                v[i] -= (m[i] * alpha) / (denominator.sqrt() + epsilon as f32);
            }
        }
        Rule::RmsProp {
            rho,
            momentum,
            epsilon,
            centered,
        } => {
            let rho = rho as f32;
            let (vel, rest) = slots.split_at_mut(1);
            let vel = vel[0].data_mut();
            let (mom_slot, avg_slot) = if momentum > 0.0 {
                let (a, b) = rest.split_at_mut(1);
                (Some(a[0].data_mut()), b.first_mut().map(|t| t.data_mut()))
            } else {
                (None, rest.first_mut().map(|t| t.data_mut()))
            };
            let mut mom_slot = mom_slot;
            let mut avg_slot = if centered { avg_slot } else { None };
            for i in 0..v.len() {
                vel[i] = rho * vel[i] + (1.0 - rho) * g[i] * g[i];
                let denominator = match avg_slot.as_mut() {
                    Some(avg) => {
                        avg[i] = rho * avg[i] + (1.0 - rho) * g[i];
                        vel[i] - avg[i] * avg[i] + epsilon as f32
                    }
                    None => vel[i] + epsilon as f32,
                };
                let increment = lr32 * g[i] / denominator.sqrt();
                match mom_slot.as_mut() {
                    Some(m) => {
                        m[i] = momentum as f32 * m[i] + increment;
                        v[i] -= m[i];
                    }
                    None => v[i] -= increment,
                }
            }
        }
        Rule::Adagrad { epsilon, .. } => {
            let acc = slots[0].data_mut();
            for i in 0..v.len() {
                acc[i] += g[i] * g[i];
                v[i] -= lr32 * g[i] / (acc[i] + epsilon as f32).sqrt();
            }
        }
    }
}
