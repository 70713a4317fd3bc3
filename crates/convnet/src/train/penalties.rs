//! Regularizers and constraints in training, as Keras 3 applies them: each trainable
//! weight's regularizer penalty joins the loss that `fit` minimises and reports (and
//! `evaluate` reports), with its gradient added to the weight's; each constrained
//! weight is projected after every optimizer step. Activity regularizers are the
//! model's (`Model::forward` records their penalties, divided by the batch size, and
//! `Model::backward` adds their gradients).
//!
//! Which weight a `<name>_regularizer` or `<name>_constraint` field governs follows
//! Keras's naming: the weight called `<name>` (`kernel`, `bias`, `gamma`, `beta`,
//! `embeddings`, `alpha`), or `<name>_kernel` for SeparableConv2D's depthwise and
//! pointwise kernels (DepthwiseConv2D's is its `kernel`).

use crate::constraints::Constraint;
use crate::error::{Error, Result};
use crate::layers::Layer;
use crate::model::Model;
use crate::regularizers::Regularizer;
use serde_json::Value;

/// What governs one weight.
#[derive(Clone, Debug, Default)]
struct Governs {
    regularizer: Option<Regularizer>,
    /// The constraint, and the field that set it.
    constraint: Option<(Constraint, String)>,
}

/// What governs the weight `weight` of the model's layer `layer`.
#[derive(Clone, Debug)]
struct Rule {
    layer: usize,
    weight: usize,
    governs: Governs,
}

/// The regularizers and constraints of a model's weights, read from its layers'
/// configs once before training.
#[derive(Clone, Debug, Default)]
pub(crate) struct Penalties {
    rules: Vec<Rule>,
}

/// A layer's regularizer or constraint field, as an error.
fn field_error(layer: &dyn Layer, field: &str, message: impl Into<String>) -> Error {
    Error::Config {
        layer: layer.name().to_string(),
        class: layer.class_name().to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

/// What governs each of `layer`'s weights, in its weights' order; a nested model's are
/// its layers' in turn.
fn layer_rules(layer: &dyn Layer) -> Result<Vec<Governs>> {
    if let Some(inner) = crate::model::nested_model(layer) {
        let mut rules = Vec::new();
        for l in inner.layers() {
            rules.extend(layer_rules(l)?);
        }
        return Ok(rules);
    }
    let weights = layer.weights();
    let mut rules = vec![Governs::default(); weights.len()];
    let Value::Object(config) = layer.config() else {
        return Ok(rules);
    };
    for (field, value) in &config {
        let (name, is_constraint) = match (
            field.strip_suffix("_regularizer"),
            field.strip_suffix("_constraint"),
        ) {
            (Some(name), _) => (name, false),
            (_, Some(name)) => (name, true),
            _ => continue,
        };
        if value.is_null() || name == "activity" {
            continue;
        }
        // SeparableConv2D's `depthwise_kernel`, DepthwiseConv2D's `kernel`.
        let weight_name = match name {
            "depthwise" | "pointwise" => format!("{name}_kernel"),
            _ => name.to_string(),
        };
        let index = weights
            .iter()
            .position(|w| w.name == weight_name)
            .or_else(|| {
                (name == "depthwise")
                    .then(|| weights.iter().position(|w| w.name == "kernel"))
                    .flatten()
            });
        let Some(index) = index else {
            // Keras ignores a bias regularizer or constraint of a layer without a bias.
            if name == "bias" {
                continue;
            }
            return Err(field_error(
                layer,
                field,
                format!("the layer has no weight '{weight_name}' for it to govern"),
            ));
        };
        if is_constraint {
            let c = Constraint::from_config(value).map_err(|m| field_error(layer, field, m))?;
            rules[index].constraint = Some((c, field.clone()));
        } else {
            let r = Regularizer::from_config(value).map_err(|m| field_error(layer, field, m))?;
            r.check_shape(weights[index].value.shape())
                .map_err(|m| field_error(layer, field, m))?;
            rules[index].regularizer = Some(r);
        }
    }
    Ok(rules)
}

impl Penalties {
    /// Reads the rules of every layer of `model`; an error names a field `fit` cannot
    /// apply.
    pub(crate) fn of(model: &Model) -> Result<Penalties> {
        let mut rules = Vec::new();
        for (l, layer) in model.layers.iter().enumerate() {
            for (w, governs) in layer_rules(layer.as_ref())?.into_iter().enumerate() {
                if governs.regularizer.is_some() || governs.constraint.is_some() {
                    rules.push(Rule {
                        layer: l,
                        weight: w,
                        governs,
                    });
                }
            }
        }
        Ok(Penalties { rules })
    }

    /// The rules whose weight the optimizer updates (Keras's trainable weights, the
    /// only ones it regularizes), each layer's trainability worked out once.
    fn in_training(&self, model: &Model) -> Vec<&Rule> {
        let mut masks: Vec<Option<Vec<bool>>> = vec![None; model.layers.len()];
        self.rules
            .iter()
            .filter(|r| {
                masks[r.layer].get_or_insert_with(|| {
                    crate::model::weights_in_training(model.layers[r.layer].as_ref())
                })[r.weight]
            })
            .collect()
    }

    /// The weight penalties at the current weights.
    pub(crate) fn loss(&self, model: &Model) -> f64 {
        self.in_training(model)
            .into_iter()
            .filter_map(|r| {
                let w = &model.layers[r.layer].weights()[r.weight];
                r.governs
                    .regularizer
                    .as_ref()
                    .map(|reg| reg.penalty(w.value.data(), w.value.shape()))
            })
            .sum()
    }

    /// Adds the penalties' gradients to the model's weight gradients.
    pub(crate) fn add_gradients(&self, model: &mut Model) {
        for rule in self.in_training(model) {
            let Some(reg) = &rule.governs.regularizer else {
                continue;
            };
            let values = model.layers[rule.layer].weights()[rule.weight]
                .value
                .clone();
            let grad = &mut model.grads_mut()[rule.layer][rule.weight];
            reg.add_gradient(values.data(), values.shape(), 1.0, grad.data_mut());
        }
    }

    /// Projects every constrained weight the optimizer updates.
    pub(crate) fn constrain(&self, model: &mut Model) -> Result<()> {
        for rule in self.in_training(model) {
            let Some((constraint, field)) = &rule.governs.constraint else {
                continue;
            };
            let layer = &mut model.layers[rule.layer];
            let (name, class) = (layer.name().to_string(), layer.class_name().to_string());
            let mut weights = layer.weights_mut();
            let w = &mut weights[rule.weight];
            let shape = w.value.shape().to_vec();
            constraint
                .apply(w.value.data_mut(), &shape)
                .map_err(|message| Error::Config {
                    layer: name,
                    class,
                    field: field.clone(),
                    message,
                })?;
        }
        Ok(())
    }
}
