//! A model used as a layer of another model, as Keras allows (`Sequential([base, Dense])`,
//! a pretrained feature extractor inside a functional model). Its weights are the inner
//! model's; forward runs the inner graph, and backward runs the inner graph's backward
//! from the record its forward saved.

use super::graph::{Model, Tape};
use crate::error::Result;
use crate::layers::{format_shape, Layer, LayerBase, Saved, Shape, Weight};
use crate::tensor::Tensor;
use serde_json::{Map, Value};

/// The model inside `layer`, when it is a model used as a layer.
pub fn nested_model(layer: &dyn Layer) -> Option<&Model> {
    layer
        .as_any()
        .downcast_ref::<NestedModel>()
        .map(|n| &n.model)
}

/// [`nested_model`], to change the model inside.
pub fn nested_model_mut(layer: &mut dyn Layer) -> Option<&mut Model> {
    layer
        .as_any_mut()
        .downcast_mut::<NestedModel>()
        .map(|n| &mut n.model)
}

/// Whether the optimizer updates each of `layer`'s weights, in [`Layer::weights`]
/// order: a trainable weight of a trainable layer and, inside a nested model, of a
/// trainable layer of a trainable model (Keras's `trainable_weights`).
pub fn weights_in_training(layer: &dyn Layer) -> Vec<bool> {
    let on = layer.base().trainable;
    match nested_model(layer) {
        Some(inner) => inner
            .layers
            .iter()
            .flat_map(|l| weights_in_training(l.as_ref()))
            .map(|t| t && on)
            .collect(),
        None => layer.weights().iter().map(|w| on && w.trainable).collect(),
    }
}

/// Keras's `layer.trainable = trainable` setter: the layer and, for a nested model,
/// every layer inside it, so that a frozen base's BatchNormalization layers run on their
/// moving statistics.
pub fn set_trainable(layer: &mut dyn Layer, trainable: bool) {
    layer.base_mut().trainable = trainable;
    if let Some(inner) = nested_model_mut(layer) {
        inner.set_trainable(trainable);
    }
}

#[derive(Clone, Debug)]
/// A model used as a layer of another model (Keras's nested models).
pub struct NestedModel {
    base: LayerBase,
    /// The inner model.
    pub model: Model,
}

impl NestedModel {
    /// The model as a layer, named after the model.
    pub fn new(model: Model) -> Self {
        let mut base = LayerBase::new(model.name());
        base.auto_named = false;
        NestedModel { base, model }
    }

    fn input_error(&self, inputs: &[Shape]) -> crate::error::Error {
        let want: Vec<String> = self.model.input_shapes().iter().map(format_shape).collect();
        let got: Vec<String> = inputs.iter().map(format_shape).collect();
        self.shape_error(&format!(
            "takes inputs of shape {}, got {}",
            want.join(", "),
            got.join(", ")
        ))
    }
}

impl Model {
    /// This model as a layer of another model (Keras's `model(x)` on a model).
    pub fn as_layer(self) -> NestedModel {
        NestedModel::new(self)
    }
}

impl Layer for NestedModel {
    fn class_name(&self) -> &'static str {
        if self.model.is_sequential() {
            "Sequential"
        } else {
            "Functional"
        }
    }

    fn base(&self) -> &LayerBase {
        &self.base
    }

    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }

    fn keras_module(&self) -> &'static str {
        if self.model.is_sequential() {
            "keras"
        } else {
            "keras.src.models.functional"
        }
    }

    fn registered_name(&self) -> Option<&'static str> {
        (!self.model.is_sequential()).then_some("Functional")
    }

    fn config_fields(&self) -> Map<String, Value> {
        Map::new()
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        let expected = self.model.input_shapes();
        let fits = inputs.len() == expected.len()
            && inputs.iter().zip(&expected).all(|(got, want)| {
                got.len() == want.len()
                    && got
                        .iter()
                        .zip(want)
                        .skip(1)
                        .all(|(g, w)| w.is_none() || g.is_none() || g == w)
            });
        if !fits {
            return Err(self.input_error(inputs));
        }
        match self.model.output_shapes().as_slice() {
            [one] => {
                let mut shape = one.clone();
                shape[0] = inputs[0][0];
                Ok(shape)
            }
            _ => Err(self.shape_error("a nested model must have exactly one output")),
        }
    }

    fn weights(&self) -> Vec<&Weight> {
        self.model.weights().collect()
    }

    fn weights_mut(&mut self) -> Vec<&mut Weight> {
        self.model
            .layers
            .iter_mut()
            .flat_map(|l| l.weights_mut())
            .collect()
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        Ok(self.model.apply(inputs)?.remove(0))
    }

    fn forward(&mut self, inputs: &[&Tensor], training: bool) -> Result<(Tensor, Saved)> {
        let output = self.model.forward(inputs, training)?.remove(0);
        Ok((output.clone(), Saved::new(self.model.take_tape())))
    }

    fn backward_impl(
        &self,
        _: &[&Tensor],
        _: &Tensor,
        saved: &Saved,
        dy: &Tensor,
        dweights: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        let tape: &Tape = saved.get(self)?;
        let mut grads: Vec<Vec<Tensor>> = self
            .model
            .layers
            .iter()
            .map(|l| crate::layers::zero_grads(l.as_ref()))
            .collect();
        let dx = self
            .model
            .backward_through(tape, std::slice::from_ref(dy), &mut grads, true)?;
        for (sum, g) in dweights.iter_mut().zip(grads.iter().flatten()) {
            sum.add_assign(g)?;
        }
        Ok(dx)
    }
}
