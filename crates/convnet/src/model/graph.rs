//! The model: a graph of layers cut out of the symbolic record, from its inputs to its
//! outputs, and run in topological order.
//!
//! Layers are ordered as Keras orders `model.layers` (by depth from the outputs, deepest
//! first, ties broken by a depth-first walk from the outputs), which is also the order of
//! the summary and of the weights. Nodes — one per layer call — run in decreasing depth,
//! a topological order. Inference ([`Model::apply`]) takes `&self` and frees each
//! intermediate tensor as soon as its last consumer has run; training
//! ([`Model::forward`] then [`Model::backward`]) keeps every node's output and saved
//! state on a tape, walks the nodes in reverse and sums the gradients of a tensor that
//! feeds several layers.

use super::fusion;
use super::placement::Placement;
use super::symbolic::{model_error, SymbolicInputs, SymbolicTensor};
use crate::activations::ActivationFn;
use crate::error::{Error, Result};
use crate::initializers::{rng_from_seed, Rng};
use crate::kernels::activation::relu_backward;
use crate::layers::{
    default_name, shape_of, zero_grads, Conv2D, DepthwiseConv2D, Fusion, InputLayer, Layer, Saved,
    Shape, Weight,
};
use crate::tensor::Tensor;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// One call of a layer inside the model.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    /// Index into the model's layers.
    pub(crate) layer: usize,
    /// The nodes whose outputs this call takes, in order.
    pub(crate) inputs: Vec<usize>,
    pub(crate) shape: Shape,
    /// Which call of its layer this is (Keras's node index, `conv2d[1][0]`).
    pub(crate) call_index: usize,
    /// Distance from the outputs, as Keras measures it (outputs are 0).
    pub(crate) depth: usize,
}

/// What the training path keeps for backward, and the buffers it reuses.
#[derive(Default)]
pub(crate) struct Tape {
    outputs: Vec<Option<Tensor>>,
    saved: Vec<Saved>,
    /// The nodes whose layer has an activity regularizer, in a training-mode pass.
    penalized: Vec<usize>,
    /// Their penalties, each divided by its batch size (Keras's), summed.
    pub(crate) activity_loss: f64,
}

impl Tape {
    /// The recorded outputs of `nodes`.
    pub(crate) fn values(&self, nodes: &[usize]) -> Vec<&Tensor> {
        let value = |&n: &usize| self.outputs[n].as_ref().expect("kept on the tape");
        nodes.iter().map(value).collect()
    }
}

/// A Keras model: a graph of layer calls from its inputs to its outputs, and its
/// executor (inference, and the training-mode forward and backward passes).
pub struct Model {
    pub(crate) name: String,
    /// Built by `Sequential`: the summary hides the InputLayer and `add` works.
    pub(crate) sequential: bool,
    pub(crate) layers: Vec<Box<dyn Layer>>,
    /// Execution order.
    pub(crate) nodes: Vec<Node>,
    pub(crate) inputs: Vec<usize>,
    pub(crate) outputs: Vec<usize>,
    pub(crate) tape: Tape,
    /// dL/dW per layer and weight, filled by `backward`.
    grads: Vec<Vec<Tensor>>,
    /// The names of the classes the output scores, when known (the class folders of
    /// an image dataset it was trained on).
    pub(crate) class_names: Option<Vec<String>>,
}

/// A copy with its own weights; the tape starts empty.
impl Clone for Model {
    fn clone(&self) -> Self {
        let layers = self.layers.iter().map(|l| l.clone_layer()).collect();
        let mut copy = Model::from_parts(
            &self.name,
            self.sequential,
            layers,
            self.nodes.clone(),
            self.inputs.clone(),
            self.outputs.clone(),
        );
        copy.grads.clone_from(&self.grads);
        copy.class_names.clone_from(&self.class_names);
        copy
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Model({:?}, {} layers)", self.name, self.layers.len())
    }
}

impl Model {
    /// Keras's `Model(inputs, outputs)`: the layers between the inputs and the outputs.
    /// Errors name the layers involved: an output that needs an input the model was not
    /// given, an input no output uses, a layer call that failed, two layers with one name.
    pub fn new(inputs: impl SymbolicInputs, outputs: impl SymbolicInputs) -> Result<Model> {
        build_from_symbolic("functional", &inputs.tensors(), &outputs.tensors())
    }

    /// Sets the model's name (Keras's `name=`).
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// The model's name (`sequential`, `functional`, or the one given).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn from_parts(
        name: &str,
        sequential: bool,
        layers: Vec<Box<dyn Layer>>,
        nodes: Vec<Node>,
        inputs: Vec<usize>,
        outputs: Vec<usize>,
    ) -> Model {
        let grads = layers.iter().map(|l| zero_grads(l.as_ref())).collect();
        Model {
            name: name.to_string(),
            sequential,
            layers,
            nodes,
            inputs,
            outputs,
            tape: Tape::default(),
            grads,
            class_names: None,
        }
    }

    /// The names of the classes the output scores, by class index, when the model keeps
    /// them (`convnet train` on an image folder stores its class folders' names, and
    /// `.keras` files convnet writes carry them in `metadata.json`).
    pub fn class_names(&self) -> Option<&[String]> {
        self.class_names.as_deref()
    }

    /// Sets the names of the output's classes, one per output unit (or two for a
    /// single sigmoid unit).
    pub fn set_class_names(&mut self, names: Vec<String>) -> Result<()> {
        let units = self
            .output_shapes()
            .first()
            .and_then(|s| s.last().copied().flatten());
        if let Some(units) = units {
            if names.len() != units && !(units == 1 && names.len() == 2) {
                return Err(crate::error::Error::invalid(
                    "class_names",
                    format!("{} names for an output of {units} classes", names.len()),
                ));
            }
        }
        self.class_names = Some(names);
        Ok(())
    }

    /// The layers, in Keras's `model.layers` order (a Sequential's InputLayer is not
    /// listed, as in Keras).
    pub fn layers(&self) -> impl Iterator<Item = &dyn Layer> {
        let hide_input = self.sequential;
        self.layers
            .iter()
            .filter(move |l| !(hide_input && l.class_name() == "InputLayer"))
            .map(|l| l.as_ref())
    }

    /// The layer called `name`, or an error listing the model's layers.
    pub fn get_layer(&self, name: &str) -> Result<&dyn Layer> {
        let index = self.layer_index(name)?;
        Ok(self.layers[index].as_ref())
    }

    /// The layer called `name`, to change it (its weights, its `trainable` flag).
    pub fn get_layer_mut(&mut self, name: &str) -> Result<&mut Box<dyn Layer>> {
        let index = self.layer_index(name)?;
        Ok(&mut self.layers[index])
    }

    fn layer_index(&self, name: &str) -> Result<usize> {
        self.layers
            .iter()
            .position(|l| l.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.layers.iter().map(|l| l.name()).collect();
                model_error(
                    &self.name,
                    format!("has no layer named '{name}' (layers: {})", names.join(", ")),
                )
            })
    }

    /// All weights, layer by layer in model order, each layer's in Keras's order.
    pub fn weights(&self) -> impl Iterator<Item = &Weight> {
        self.layers.iter().flat_map(|l| l.weights())
    }

    /// Each weight, layer by layer, with whether training changes it
    /// ([`super::weights_in_training`]).
    fn weights_with_training(&self) -> impl Iterator<Item = (&Weight, bool)> {
        self.layers.iter().flat_map(|l| {
            let training = super::weights_in_training(l.as_ref());
            l.weights().into_iter().zip(training)
        })
    }

    /// The weights training changes: trainable weights of trainable layers (inside a
    /// nested model, of trainable layers of a trainable model).
    pub fn trainable_weights(&self) -> impl Iterator<Item = &Weight> {
        self.weights_with_training()
            .filter_map(|(w, training)| training.then_some(w))
    }

    /// Everything else: moving statistics, and the weights of frozen layers.
    pub fn non_trainable_weights(&self) -> impl Iterator<Item = &Weight> {
        self.weights_with_training()
            .filter_map(|(w, training)| (!training).then_some(w))
    }

    /// Keras's `model.trainable = trainable`: every layer, nested models' layers too.
    pub fn set_trainable(&mut self, trainable: bool) {
        for layer in &mut self.layers {
            super::set_trainable(layer.as_mut(), trainable);
        }
    }

    /// Sets `trainable` ([`super::set_trainable`]) on every layer whose name is
    /// `pattern`, or starts with it when it ends in `*` (`block5_*`), nested models'
    /// layers included; returns the names matched, and an error listing the layers when
    /// none is.
    pub fn set_trainable_matching(
        &mut self,
        pattern: &str,
        trainable: bool,
    ) -> Result<Vec<String>> {
        let matches = |name: &str| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        };
        fn walk(
            model: &mut Model,
            matches: &dyn Fn(&str) -> bool,
            trainable: bool,
            found: &mut Vec<String>,
        ) {
            for layer in &mut model.layers {
                if matches(layer.name()) {
                    found.push(layer.name().to_string());
                    super::set_trainable(layer.as_mut(), trainable);
                } else if let Some(inner) = super::nested_model_mut(layer.as_mut()) {
                    walk(inner, matches, trainable, found);
                }
            }
        }
        let mut found = Vec::new();
        walk(self, &matches, trainable, &mut found);
        if found.is_empty() {
            let names: Vec<&str> = self.layers.iter().map(|l| l.name()).collect();
            return Err(model_error(
                &self.name,
                format!(
                    "has no layer matching '{pattern}' (layers: {})",
                    names.join(", ")
                ),
            ));
        }
        Ok(found)
    }

    /// Keras's `norm.adapt(x)` for each Normalization layer that reads the model's
    /// input directly (the preprocessing front of keras.io's models): learns its mean
    /// and variance from `x`. Returns their names; an error when there is none, or when
    /// one was given its statistics in its config.
    pub fn adapt_input_normalization(&mut self, x: &Tensor) -> Result<Vec<String>> {
        let readers: Vec<usize> = self
            .nodes
            .iter()
            .filter(|n| n.inputs.len() == 1 && self.inputs.contains(&n.inputs[0]))
            .map(|n| n.layer)
            .collect();
        let mut adapted = Vec::new();
        for layer in readers {
            let layer = &mut self.layers[layer];
            if let Some(norm) = layer
                .as_any_mut()
                .downcast_mut::<crate::layers::Normalization>()
            {
                norm.adapt(x)?;
                adapted.push(norm.name().to_string());
            }
        }
        if adapted.is_empty() {
            return Err(model_error(
                &self.name,
                "has no Normalization layer reading its input to adapt",
            ));
        }
        Ok(adapted)
    }

    /// Keras's `model.get_layer(name).trainable = trainable` (for a nested model, its
    /// layers too); an unknown name is an error listing the layers.
    pub fn set_layer_trainable(&mut self, name: &str, trainable: bool) -> Result<()> {
        super::set_trainable(self.get_layer_mut(name)?.as_mut(), trainable);
        Ok(())
    }

    /// Keras's `count_params()`: the number of values in all weights.
    pub fn count_params(&self) -> usize {
        self.weights().map(|w| w.value.len()).sum()
    }

    /// Multiply-adds of one forward pass on `batch` samples: every layer call's count
    /// from the geometry its kernels run on ([`Layer::forward_macs`]), nested models
    /// included. Layers without kernel products count nothing.
    pub fn forward_macs(&self, batch: usize) -> usize {
        self.nodes
            .iter()
            .filter(|n| !n.inputs.is_empty())
            .map(|node| {
                let layer = &self.layers[node.layer];
                if let Some(inner) = super::nested_model(layer.as_ref()) {
                    return inner.forward_macs(batch);
                }
                // The batch axis is unknown in a model's shapes; unknown sizes
                // elsewhere make the geometry fail, and the call counts nothing.
                let shapes: Vec<Vec<usize>> = self
                    .input_shapes_of(node)
                    .iter()
                    .map(|s| {
                        let dims = s.iter().skip(1).map(|d| d.unwrap_or(0));
                        std::iter::once(batch).chain(dims).collect()
                    })
                    .collect();
                layer.forward_macs(&shapes).unwrap_or(0)
            })
            .sum()
    }

    /// Copies of all weights, in [`Model::weights`] order.
    pub fn get_weights(&self) -> Vec<Tensor> {
        self.weights().map(|w| w.value.clone()).collect()
    }

    /// Replaces all weights, in [`Model::weights`] order; every shape must match.
    pub fn set_weights(&mut self, values: Vec<Tensor>) -> Result<()> {
        let expected = self.weights().count();
        if values.len() != expected {
            return Err(model_error(
                &self.name,
                format!("has {expected} weights but {} were given", values.len()),
            ));
        }
        let mut values = values.into_iter();
        for layer in &mut self.layers {
            let count = layer.weights().len();
            layer.set_weights(values.by_ref().take(count).collect())?;
        }
        Ok(())
    }

    /// Draws every weight again from its initializer with a generator seeded by `seed`:
    /// the same seed gives the same weights.
    pub fn initialize_weights(&mut self, seed: u64) -> Result<()> {
        let mut rng = rng_from_seed(seed);
        for node in &self.nodes {
            if node.call_index == 0 {
                let shapes = self.input_shapes_of(node);
                self.layers[node.layer].build(&shapes, &mut rng)?;
            }
        }
        Ok(())
    }

    fn input_shapes_of(&self, node: &Node) -> Vec<Shape> {
        node.inputs
            .iter()
            .map(|&i| self.nodes[i].shape.clone())
            .collect()
    }

    /// The shapes of the model's inputs (batch axis first).
    pub fn input_shapes(&self) -> Vec<Shape> {
        self.inputs
            .iter()
            .map(|&i| self.nodes[i].shape.clone())
            .collect()
    }

    /// The shapes of the model's outputs.
    pub fn output_shapes(&self) -> Vec<Shape> {
        self.outputs
            .iter()
            .map(|&i| self.nodes[i].shape.clone())
            .collect()
    }

    /// Each layer's name and output shape (of its last call), in model order.
    pub fn layer_output_shapes(&self) -> Vec<(String, Shape)> {
        self.layers()
            .map(|l| {
                let shape = self
                    .last_node_of(l.name())
                    .map(|n| n.shape.clone())
                    .unwrap_or_default();
                (l.name().to_string(), shape)
            })
            .collect()
    }

    pub(crate) fn last_node_of(&self, layer_name: &str) -> Option<&Node> {
        self.nodes
            .iter()
            .filter(|n| self.layers[n.layer].name() == layer_name)
            .max_by_key(|n| n.call_index)
    }

    /// Checks the inputs given to a run against the model's inputs.
    fn check_inputs(&self, inputs: &[&Tensor]) -> Result<()> {
        if self.nodes.is_empty() {
            return Err(model_error(
                &self.name,
                "is not built yet: give it an Input or call build() with the input shape",
            ));
        }
        if inputs.len() != self.inputs.len() {
            return Err(model_error(
                &self.name,
                format!(
                    "expects {} inputs but was given {}",
                    self.inputs.len(),
                    inputs.len()
                ),
            ));
        }
        for (&node, x) in self.inputs.iter().zip(inputs) {
            self.layers[self.nodes[node].layer].output_shape(&[shape_of(x)])?;
        }
        Ok(())
    }

    /// How many nodes read each node's output (model outputs count as readers).
    pub(crate) fn reader_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.nodes.len()];
        for node in &self.nodes {
            for &i in &node.inputs {
                counts[i] += 1;
            }
        }
        for &o in &self.outputs {
            counts[o] += 1;
        }
        counts
    }

    /// Inference: runs the model on concrete inputs (one per model input) and returns
    /// one tensor per output. Takes `&self` and keeps nothing, so threads can share a
    /// model; each intermediate tensor is dropped once its last reader has run.
    pub fn apply(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        self.apply_penalized(inputs, &mut 0.0)
    }

    /// [`Model::apply`] that also adds the activity regularizers' penalties (each
    /// divided by its batch size) to `activity_loss`, as `evaluate` reports them.
    pub(crate) fn apply_penalized(
        &self,
        inputs: &[&Tensor],
        activity_loss: &mut f64,
    ) -> Result<Vec<Tensor>> {
        let mut values = self.run_inference(inputs, false, activity_loss)?;
        // Each output is moved out of the run; only a node listed as several outputs, or
        // an input returned as an output, is copied.
        let mut outputs: Vec<Tensor> = Vec::with_capacity(self.outputs.len());
        for (k, &o) in self.outputs.iter().enumerate() {
            let value = if self.outputs[k + 1..].contains(&o) {
                values[o].clone().expect("outputs are kept")
            } else {
                values[o].take().expect("outputs are kept")
            };
            outputs.push(value.into_owned());
        }
        Ok(outputs)
    }

    /// Inference that keeps every layer's output: (layer name, output), one per layer
    /// call in execution order. For looking inside a model (feature maps).
    pub fn layer_outputs(&self, inputs: &[&Tensor]) -> Result<Vec<(String, Tensor)>> {
        let values = self.run_inference(inputs, true, &mut 0.0)?;
        Ok(self
            .nodes
            .iter()
            .zip(values)
            .map(|(n, v)| {
                (
                    self.layers[n.layer].name().to_string(),
                    v.expect("all kept").into_owned(),
                )
            })
            .collect())
    }

    /// Runs every node in order on `inputs` (borrowed, not copied), on rayon's pool
    /// (`crate::pool`). Unless `keep_all`, a node's output is dropped as soon as its
    /// last reader has run (model outputs are always kept).
    fn run_inference<'a>(
        &self,
        inputs: &[&'a Tensor],
        keep_all: bool,
        activity_loss: &mut f64,
    ) -> Result<Vec<Option<Cow<'a, Tensor>>>> {
        crate::pool::on_pool(|| self.run_nodes(inputs, keep_all, activity_loss))
    }

    /// [`Model::run_inference`]'s work, on the thread it is called on.
    fn run_nodes<'a>(
        &self,
        inputs: &[&'a Tensor],
        keep_all: bool,
        activity_loss: &mut f64,
    ) -> Result<Vec<Option<Cow<'a, Tensor>>>> {
        self.check_inputs(inputs)?;
        let mut values: Vec<Option<Cow<Tensor>>> = vec![None; self.nodes.len()];
        let mut readers = self.reader_counts();
        // Layer fusion skips outputs, so it is off when every output is asked for.
        let sole_readers = (!keep_all).then(|| fusion::sole_readers(self, &readers));
        // Nodes whose output a fused node before them has already written.
        let mut fused = vec![false; self.nodes.len()];
        // The padding of a ZeroPadding2D skipped before a node, which that node takes in.
        let mut padding_before = vec![None; self.nodes.len()];
        let mut placement = sole_readers
            .as_ref()
            .map(|sole| Placement::plan(self, sole));
        for (id, node) in self.nodes.iter().enumerate() {
            let finished = placement.as_mut().and_then(|p| p.finish(self, id, &values));
            if fused[id] {
                // Written by the node its chain starts at.
            } else if let Some(output) = finished {
                // A Concatenate that some of its inputs were written into.
                values[id] = Some(Cow::Owned(output?));
            } else if let Some(k) = self.inputs.iter().position(|&i| i == id) {
                values[id] = Some(Cow::Borrowed(inputs[k]));
            } else if let Some((reader, padding)) = sole_readers
                .as_ref()
                .and_then(|sole| fusion::padding_taken_by(self, id, sole))
            {
                // The reader gets the unpadded input (shared, not copied) and the padding.
                values[id] = values[node.inputs[0]].clone();
                padding_before[reader] = Some(padding);
            } else if let Some((members, output)) = sole_readers
                .as_ref()
                .and_then(|sole| self.merge_in_place(id, sole, &readers, &mut values))
            {
                values[members.last().copied().unwrap_or(id)] = Some(Cow::Owned(output?));
                members.iter().for_each(|&m| fused[m] = true);
            } else if let Some((members, output)) = sole_readers
                .as_ref()
                .and_then(|sole| fusion::depthwise_block(self, id, sole, padding_before[id]))
                .and_then(|block| {
                    let x = values[node.inputs[0]].as_deref().expect("inputs run first");
                    let (output, with_after) = self.depthwise_block(&block, x)?;
                    let mut members = block.members;
                    if with_after {
                        members.extend(block.after_members);
                    }
                    Some((members, output))
                })
            {
                values[members[members.len() - 1]] = Some(Cow::Owned(output));
                members.iter().for_each(|&m| fused[m] = true);
            } else {
                let args: Vec<&Tensor> = node
                    .inputs
                    .iter()
                    .map(|&i| values[i].as_deref().expect("inputs run first"))
                    .collect();
                let layer = self.layers[node.layer].as_ref();
                // With a padding taken in, the layer checks the padded input's output.
                let padding = padding_before[id];
                if padding.is_none() {
                    check_call_size(layer, &args)?;
                }
                let mut chain = sole_readers
                    .as_ref()
                    .and_then(|sole| fusion::chain_after(self, id, sole));
                if let Some(chain) = &mut chain {
                    chain.fusion.input_padding = padding;
                }
                // The node whose output this one's computes, the chain's last if any.
                let last = chain
                    .as_ref()
                    .map_or(id, |chain| chain.members[chain.members.len() - 1]);
                let alone = Fusion {
                    input_padding: padding,
                    ..Fusion::default()
                };
                let fusion = chain.as_ref().map_or(&alone, |chain| &chain.fusion);
                let written = placement
                    .as_mut()
                    .is_some_and(|p| p.write(self, last, layer, &args, fusion));
                let fused_output = chain
                    .as_ref()
                    .filter(|_| !written)
                    .and_then(|chain| layer.apply_fused(&args, &chain.fusion));
                if written {
                    // Into the Concatenate's output: the chain's outputs are never made.
                    chain
                        .iter()
                        .flat_map(|c| &c.members)
                        .for_each(|&m| fused[m] = true);
                } else if let (Some(chain), Some(output)) = (chain, fused_output) {
                    values[last] = Some(Cow::Owned(output?));
                    chain.members.iter().for_each(|&m| fused[m] = true);
                } else if padding.is_some() {
                    // A layer that takes input padding always takes it alone.
                    let output = layer.apply_fused(&args, &alone).unwrap_or_else(|| {
                        Err(layer.shape_error("cannot take the padding of the layer before it"))
                    })?;
                    values[id] = Some(Cow::Owned(output));
                } else {
                    // A nested model runs as itself, so its layers' activity penalties
                    // are counted too.
                    let output = match super::nested_model(layer) {
                        Some(inner) => inner.apply_penalized(&args, activity_loss)?.remove(0),
                        None => layer.apply(&args)?,
                    };
                    if let Some(penalty) = activity_penalty(layer, &output) {
                        *activity_loss += penalty;
                    }
                    values[id] = Some(Cow::Owned(output));
                }
            }
            for &i in &node.inputs {
                readers[i] -= 1;
                if readers[i] == 0 && !keep_all {
                    values[i] = None;
                }
            }
        }
        Ok(values)
    }

    /// Node `id`'s output written over one of its two inputs, one that only it still
    /// reads and that the executor made (not a model input): [`Layer::apply_fused_in_place`]
    /// with the chain after it, and the chain's nodes. None, `values` untouched, where
    /// the node is no such merge.
    fn merge_in_place(
        &self,
        id: usize,
        sole: &[Option<usize>],
        readers: &[usize],
        values: &mut [Option<Cow<Tensor>>],
    ) -> Option<(Vec<usize>, Result<Tensor>)> {
        let node = &self.nodes[id];
        let layer = self.layers[node.layer].as_ref();
        let &[a, b] = &node.inputs[..] else {
            return None;
        };
        let handed_over = |i: usize| readers[i] == 1 && matches!(values[i], Some(Cow::Owned(_)));
        let len = |i: usize| values[i].as_deref().map_or(0, Tensor::len);
        // Of two, the larger: the one a broadcast merge's output has the shape of.
        let (into, other) = match (handed_over(a), handed_over(b)) {
            _ if a == b || layer.base().activity_regularizer.is_some() => return None,
            (true, true) if len(b) > len(a) => (b, a),
            (true, _) => (a, b),
            (_, true) => (b, a),
            _ => return None,
        };
        let chain = fusion::chain_after(self, id, sole);
        let fusion = chain
            .as_ref()
            .map_or_else(Fusion::default, |c| c.fusion.clone());
        let mut acc = match values[into].take() {
            Some(Cow::Owned(acc)) => acc,
            value => {
                values[into] = value;
                return None;
            }
        };
        let other = values[other].as_deref().expect("inputs run first");
        match layer.apply_fused_in_place(&mut acc, other, &fusion) {
            Some(done) => {
                let members = chain.map_or_else(Vec::new, |c| c.members);
                Some((members, done.map(|()| acc)))
            }
            None => {
                values[into] = Some(Cow::Owned(acc));
                None
            }
        }
    }

    /// The output of `block` on `x` as one pass, and whether it took in the 1x1 layer
    /// after the depthwise one; None where the layers do not suit it.
    fn depthwise_block(
        &self,
        block: &fusion::DepthwiseBlock,
        x: &Tensor,
    ) -> Option<(Tensor, bool)> {
        let layer = |id: usize| self.layers[self.nodes[id].layer].as_any();
        fn conv<'a>(
            layer: &'a dyn std::any::Any,
            fusion: &'a Fusion,
        ) -> Option<(&'a Conv2D, &'a Fusion)> {
            Some((layer.downcast_ref::<Conv2D>()?, fusion))
        }
        let before = match &block.before {
            Some((id, fusion)) => Some(conv(layer(*id), fusion)?),
            None => None,
        };
        let after = block
            .after
            .as_ref()
            .and_then(|(id, fusion)| conv(layer(*id), fusion));
        let depthwise = layer(block.depthwise).downcast_ref::<DepthwiseConv2D>()?;
        depthwise.apply_with_pointwise(before, x, &block.fusion, after)
    }

    /// The training path: Keras's `model(inputs, training=training)`, keeping every
    /// node's output and saved state for [`Model::backward`]. BatchNormalization updates
    /// its moving statistics and Dropout drops when `training` is true.
    pub fn forward(&mut self, inputs: &[&Tensor], training: bool) -> Result<Vec<&Tensor>> {
        self.check_inputs(inputs)?;
        let readers = self.reader_counts();
        let in_place: Vec<Option<ActivationFn>> = (0..self.nodes.len())
            .map(|id| self.activation_in_place(id, &readers))
            .collect();
        let tape = &mut self.tape;
        tape.outputs.clear();
        tape.outputs.resize(self.nodes.len(), None);
        tape.saved.clear();
        tape.penalized.clear();
        tape.activity_loss = 0.0;
        for (id, node) in self.nodes.iter().enumerate() {
            let (output, saved) = match self.inputs.iter().position(|&i| i == id) {
                Some(k) => (inputs[k].clone(), Saved::none()),
                None => {
                    let args: Vec<&Tensor> = node
                        .inputs
                        .iter()
                        .map(|&i| tape.outputs[i].as_ref().expect("inputs run first"))
                        .collect();
                    check_call_size(self.layers[node.layer].as_ref(), &args)?;
                    match in_place[id] {
                        Some(f) => {
                            let input = node.inputs[0];
                            let mut x = tape.outputs[input].take().expect("inputs run first");
                            f.apply_inplace(&mut x);
                            tape.outputs[input] = Some(x.clone());
                            (x, Saved::none())
                        }
                        None => self.layers[node.layer].forward(&args, training)?,
                    }
                }
            };
            if training {
                let layer = self.layers[node.layer].as_ref();
                if let Some(penalty) = activity_penalty(layer, &output) {
                    tape.activity_loss += penalty;
                    tape.penalized.push(id);
                }
                // A nested model's own layers' penalties (its backward adds their
                // gradients from the tape it saved).
                if super::nested_model(layer).is_some() {
                    if let Ok(inner) = saved.get::<Tape>(layer) {
                        tape.activity_loss += inner.activity_loss;
                    }
                }
            }
            tape.outputs[id] = Some(output);
            tape.saved.push(saved);
        }
        Ok(tape.values(&self.outputs))
    }

    /// The activation that the training pass writes over node `id`'s input, where the
    /// node is an element-wise activation whose gradient needs only its output (ReLU,
    /// sigmoid, …), its input is read by nothing else, is no model input, and comes
    /// from a layer whose backward does not read its own output (BatchNormalization, a
    /// residual Add) and whose output carries no activity penalty (its gradient is
    /// taken from that output). The tape then holds one tensor for both nodes: a buffer
    /// and a pass over memory fewer per Conv → BN → ReLU.
    fn activation_in_place(&self, id: usize, readers: &[usize]) -> Option<ActivationFn> {
        let node = &self.nodes[id];
        let &[input] = &node.inputs[..] else {
            return None;
        };
        let f = self.layers[node.layer].elementwise_activation()?;
        let producer = self.layers[self.nodes[input].layer].as_ref();
        let suits = !f.needs_input()
            && self.read_only_once(input, readers)
            && !producer.backward_reads_output();
        suits.then_some(f)
    }

    /// Whether node `id` is a layer's output that one node alone reads and whose
    /// gradient nothing else adds to: no model input or output, no activity penalty.
    fn read_only_once(&self, id: usize, readers: &[usize]) -> bool {
        let layer = self.layers[self.nodes[id].layer].as_ref();
        readers[id] == 1
            && !self.inputs.contains(&id)
            && layer.base().activity_regularizer.is_none()
    }

    /// The input of node `id` where the ReLU that ends the layer before it is better
    /// applied to `id`'s gradient (see [`Layer::commutes_with_relu`]): `id` is a max
    /// pooling, a quarter of the values for 2x2 windows, and nothing else reads that
    /// layer's output or adds to its gradient (no other reader, no activity penalty).
    /// That layer then takes its gradient as it comes ([`Saved::activation_applied`]):
    /// a pass over its output's size fewer.
    fn relu_ahead(&self, id: usize, readers: &[usize]) -> Option<usize> {
        let node = &self.nodes[id];
        let &[input] = &node.inputs[..] else {
            return None;
        };
        let producer = self.layers[self.nodes[input].layer].as_ref();
        let suits = self.layers[node.layer].commutes_with_relu()
            && self.read_only_once(input, readers)
            && producer.output_activation() == Some(ActivationFn::Relu);
        suits.then_some(input)
    }

    /// Backpropagation through the last [`Model::forward`]: `output_grads` are dL/d(output)
    /// for each model output. Fills the weight gradients ([`Model::gradients`]) and returns
    /// dL/d(input) for each model input.
    pub fn backward(&mut self, output_grads: &[Tensor]) -> Result<Vec<Tensor>> {
        self.backward_filling(output_grads, true)
    }

    /// [`Model::backward`] for training: only the weight gradients, so layers reading
    /// the model's inputs skip their input gradient.
    pub(crate) fn backward_weights(&mut self, output_grads: &[Tensor]) -> Result<()> {
        self.backward_filling(output_grads, false).map(drop)
    }

    /// Zeroes (or makes) the gradient buffers and runs [`Model::backward_through`].
    fn backward_filling(
        &mut self,
        output_grads: &[Tensor],
        input_grads: bool,
    ) -> Result<Vec<Tensor>> {
        // The buffers live from step to step; they are made again only when the weights
        // they mirror changed (a layer added, weights replaced by other shapes).
        let fits = self.grads.len() == self.layers.len()
            && self.layers.iter().zip(&self.grads).all(|(l, g)| {
                let w = l.weights();
                w.len() == g.len() && w.iter().zip(g).all(|(w, g)| w.value.shape() == g.shape())
            });
        if fits {
            for layer_grads in &mut self.grads {
                layer_grads.iter_mut().for_each(|g| g.data_mut().fill(0.0));
            }
        } else {
            self.grads = self.layers.iter().map(|l| zero_grads(l.as_ref())).collect();
        }
        let mut grads = std::mem::take(&mut self.grads);
        let result = self.backward_through(&self.tape, output_grads, &mut grads, input_grads);
        self.grads = grads;
        result
    }

    /// Backpropagation through a recorded forward pass, without changing the model:
    /// adds dL/dW into `weight_grads` (per layer, per weight) and returns dL/d(input)
    /// (an empty list unless `input_grads`). A model nested as a layer runs its backward
    /// through this with the tape its forward saved.
    pub(crate) fn backward_through(
        &self,
        tape: &Tape,
        output_grads: &[Tensor],
        weight_grads: &mut [Vec<Tensor>],
        input_grads: bool,
    ) -> Result<Vec<Tensor>> {
        if tape.saved.len() != self.nodes.len() {
            return Err(model_error(
                &self.name,
                "backward() needs a forward() first",
            ));
        }
        if output_grads.len() != self.outputs.len() {
            return Err(model_error(
                &self.name,
                format!(
                    "has {} outputs but {} output gradients were given",
                    self.outputs.len(),
                    output_grads.len()
                ),
            ));
        }
        // Gradients are borrowed until two of them meet at a node and must be added.
        let mut node_grads: Vec<Option<Cow<Tensor>>> = vec![None; self.nodes.len()];
        for (&o, g) in self.outputs.iter().zip(output_grads) {
            let shape = tape.outputs[o].as_ref().expect("kept on the tape").shape();
            if g.shape() != shape {
                let layer = self.layers[self.nodes[o].layer].name();
                return Err(model_error(&self.name, format!("the gradient for output '{layer}' has shape {:?}, the output has {shape:?}", g.shape())));
            }
            accumulate(&mut node_grads[o], Cow::Borrowed(g))?;
        }
        // The gradients of the activity penalties a training-mode forward recorded.
        for &id in &tape.penalized {
            let layer = self.layers[self.nodes[id].layer].as_ref();
            let (Some(regularizer), Some(output)) = (
                &layer.base().activity_regularizer,
                tape.outputs[id].as_ref(),
            ) else {
                continue;
            };
            let mut g = output.zeros_like();
            let batch = output.shape().first().copied().unwrap_or(1).max(1);
            let scale = 1.0 / batch as f64;
            regularizer.add_gradient(output.data(), output.shape(), scale, g.data_mut());
            accumulate(&mut node_grads[id], Cow::Owned(g))?;
        }
        let readers = self.reader_counts();
        // The nodes whose ReLU was applied to the gradient of the max pooling after them.
        let mut relu_applied = vec![false; self.nodes.len()];
        let activation_applied = Saved::activation_applied();
        for id in (0..self.nodes.len()).rev() {
            let node = &self.nodes[id];
            if node.inputs.is_empty() {
                continue;
            }
            let Some(mut dy) = node_grads[id].take() else {
                continue;
            };
            let args: Vec<&Tensor> = node
                .inputs
                .iter()
                .map(|&i| tape.outputs[i].as_ref().expect("kept on the tape"))
                .collect();
            let output = tape.outputs[id].as_ref().expect("kept on the tape");
            if let Some(input) = self.relu_ahead(id, &readers) {
                let mut masked = Tensor::for_overwrite(dy.shape());
                relu_backward(dy.data(), output.data(), masked.data_mut());
                dy = Cow::Owned(masked);
                relu_applied[input] = true;
            }
            let saved = if relu_applied[id] {
                &activation_applied
            } else {
                &tape.saved[id]
            };
            if !input_grads && node.inputs.iter().all(|i| self.inputs.contains(i)) {
                self.layers[node.layer].backward_weights(
                    &args,
                    output,
                    saved,
                    &dy,
                    &mut weight_grads[node.layer],
                )?;
                continue;
            }
            let dx = self.layers[node.layer].backward(
                &args,
                output,
                saved,
                &dy,
                &mut weight_grads[node.layer],
            )?;
            for (&i, g) in node.inputs.iter().zip(dx) {
                accumulate(&mut node_grads[i], Cow::Owned(g))?;
            }
        }
        if !input_grads {
            return Ok(Vec::new());
        }
        Ok(self
            .inputs
            .iter()
            .map(|&i| {
                node_grads[i].take().map_or_else(
                    || tape.outputs[i].as_ref().expect("kept").zeros_like(),
                    Cow::into_owned,
                )
            })
            .collect())
    }

    /// Hands over the record of the last forward pass (what a nested model saves).
    pub(crate) fn take_tape(&mut self) -> Tape {
        std::mem::take(&mut self.tape)
    }

    /// Whether the model was built as a Sequential (one chain of layers).
    pub fn is_sequential(&self) -> bool {
        self.sequential
    }

    /// Every layer, a Sequential's InputLayer included.
    pub(crate) fn all_layers(&self) -> impl Iterator<Item = &dyn Layer> {
        self.layers.iter().map(|l| l.as_ref())
    }

    /// The input shapes of layer `layer`'s first call.
    pub(crate) fn first_input_shapes(&self, layer: usize) -> Option<Vec<Shape>> {
        let node = self
            .nodes
            .iter()
            .filter(|n| n.layer == layer && !n.inputs.is_empty())
            .min_by_key(|n| n.call_index)?;
        Some(self.input_shapes_of(node))
    }

    /// The names of the layers feeding layer `layer`'s first call.
    pub(crate) fn input_layer_names(&self, layer: usize) -> Vec<String> {
        self.calls_of(layer)
            .first()
            .map(|inputs| {
                inputs
                    .iter()
                    .map(|&n| self.layers[self.nodes[n].layer].name().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// For each call of layer `layer`, in call order, the nodes it takes.
    pub(crate) fn calls_of(&self, layer: usize) -> Vec<Vec<usize>> {
        let mut calls: Vec<&Node> = self
            .nodes
            .iter()
            .filter(|n| n.layer == layer && !n.inputs.is_empty())
            .collect();
        calls.sort_by_key(|n| n.call_index);
        calls.iter().map(|n| n.inputs.clone()).collect()
    }

    /// The producing layer's name, its call index and the shape of node `node`.
    pub(crate) fn node_summary(&self, node: usize) -> (String, usize, Shape) {
        let n = &self.nodes[node];
        (
            self.layers[n.layer].name().to_string(),
            n.call_index,
            n.shape.clone(),
        )
    }

    pub(crate) fn input_nodes(&self) -> Vec<usize> {
        self.inputs.clone()
    }

    /// The model's output nodes, in output order.
    pub(crate) fn outputs(&self) -> &[usize] {
        &self.outputs
    }

    pub(crate) fn output_nodes(&self) -> Vec<usize> {
        self.outputs.clone()
    }

    /// dL/dW from the last [`Model::backward`], per layer (model order) and weight.
    pub fn gradients(&self) -> &[Vec<Tensor>] {
        &self.grads
    }

    /// [`Model::gradients`], for the training loop to add the regularizers' share.
    pub(crate) fn grads_mut(&mut self) -> &mut [Vec<Tensor>] {
        &mut self.grads
    }

    /// Tells every layer where the next training call's samples start in the global
    /// batch ([`Layer::set_first_sample`]).
    pub(crate) fn set_first_sample(&mut self, first: usize) {
        for layer in &mut self.layers {
            match super::nested_model_mut(layer.as_mut()) {
                Some(inner) => inner.set_first_sample(first),
                None => layer.set_first_sample(first),
            }
        }
    }

    /// Gives every layer the ranks of a data-parallel run ([`Layer::set_ranks`]).
    pub(crate) fn set_ranks(
        &mut self,
        ranks: Option<&std::sync::Arc<dyn crate::collective::Communicator>>,
        sync_batch_norm: bool,
    ) {
        for layer in &mut self.layers {
            match super::nested_model_mut(layer.as_mut()) {
                Some(inner) => inner.set_ranks(ranks, sync_batch_norm),
                None => layer.set_ranks(ranks, sync_batch_norm),
            }
        }
    }

    /// The generators of the random layers (Dropout, noise, augmentation), nested
    /// models' included, in layer order: what a training run's backup saves beside the
    /// weights so that a resumed run draws the same masks.
    pub(crate) fn random_generators(&mut self) -> Vec<&mut Option<Rng>> {
        let mut generators = Vec::new();
        for layer in &mut self.layers {
            if super::nested_model(layer.as_ref()).is_some() {
                let inner = super::nested_model_mut(layer.as_mut()).expect("checked above");
                generators.extend(inner.random_generators());
            } else if let Some(generator) = layer.random_generator() {
                generators.push(generator);
            }
        }
        generators
    }

    /// The weights an optimizer step updates (trainable weights of trainable layers,
    /// nested models' included), with their gradients from the last
    /// [`Model::backward`], in the same order.
    pub(crate) fn weights_and_gradients(&mut self) -> (Vec<&mut Tensor>, Vec<&Tensor>) {
        let mut variables = Vec::new();
        let mut gradients = Vec::new();
        for (layer, layer_grads) in self.layers.iter_mut().zip(self.grads.iter()) {
            let training = super::weights_in_training(layer.as_ref());
            for ((w, g), training) in layer
                .weights_mut()
                .into_iter()
                .zip(layer_grads)
                .zip(training)
            {
                if training {
                    variables.push(&mut w.value);
                    gradients.push(g);
                }
            }
        }
        (variables, gradients)
    }
}

/// Refuses a call whose output, for these inputs (the batch included), would be larger
/// than a tensor may hold, before the layer allocates it.
fn check_call_size(layer: &dyn Layer, args: &[&Tensor]) -> Result<()> {
    let shapes: Vec<Shape> = args.iter().map(|t| shape_of(t)).collect();
    let shape = layer.output_shape(&shapes)?;
    crate::layers::check_output_size(layer, &shape)
}

/// Keras's activity penalty of a layer's output: its `activity_regularizer` of the
/// output over the batch size; None without one.
fn activity_penalty(layer: &dyn Layer, output: &Tensor) -> Option<f64> {
    let regularizer = layer.base().activity_regularizer.as_ref()?;
    let batch = output.shape().first().copied().unwrap_or(1).max(1);
    Some(regularizer.penalty(output.data(), output.shape()) / batch as f64)
}

/// Adds `g` into a gradient slot that may still be empty.
fn accumulate<'a>(slot: &mut Option<Cow<'a, Tensor>>, g: Cow<'a, Tensor>) -> Result<()> {
    match slot {
        Some(sum) => sum.to_mut().add_assign(&g),
        None => {
            *slot = Some(g);
            Ok(())
        }
    }
}

/// Keras's graph map: a depth-first walk from the outputs, depths measured from the
/// outputs, layers ordered deepest first (ties in walk order), then names given.
fn build_from_symbolic(
    name: &str,
    inputs: &[SymbolicTensor],
    outputs: &[SymbolicTensor],
) -> Result<Model> {
    for t in inputs {
        t.shape()?;
        if !t.is_input() {
            let layer = t.0.layer.lock().name().to_string();
            return Err(model_error(
                name,
                format!(
                    "inputs must come from Input::new, but one is the output of layer '{layer}'"
                ),
            ));
        }
    }
    if outputs.is_empty() {
        return Err(model_error(name, "needs at least one output"));
    }
    let input_keys: HashSet<usize> = inputs.iter().map(SymbolicTensor::key).collect();

    // Depth-first walk (post-order), recording the order layers are first met in.
    let mut post_order: Vec<SymbolicTensor> = Vec::new();
    let mut finished: HashSet<usize> = HashSet::new();
    let mut walk_index: HashMap<u64, usize> = HashMap::new();
    let mut stack: Vec<(SymbolicTensor, bool)> =
        outputs.iter().rev().map(|t| (t.clone(), false)).collect();
    while let Some((t, expanded)) = stack.pop() {
        if finished.contains(&t.key()) {
            continue;
        }
        if expanded {
            finished.insert(t.key());
            post_order.push(t);
            continue;
        }
        t.shape()?;
        let layer_id = t.0.layer.id();
        let next = walk_index.len();
        walk_index.entry(layer_id).or_insert(next);
        if t.is_input() && !input_keys.contains(&t.key()) {
            let layer = t.0.layer.lock().name().to_string();
            return Err(model_error(
                name,
                format!(
                    "an output depends on input '{layer}', which is not one of the model's inputs"
                ),
            ));
        }
        stack.push((t.clone(), true));
        if !input_keys.contains(&t.key()) {
            for i in t.0.inputs.iter().rev() {
                stack.push((i.clone(), false));
            }
        }
    }
    for t in inputs {
        if !finished.contains(&t.key()) {
            let layer = t.0.layer.lock().name().to_string();
            return Err(model_error(
                name,
                format!("input '{layer}' is not used by any output"),
            ));
        }
    }

    // Depths from the outputs: a node is one deeper than its deepest reader, and all
    // calls of one layer share the deepest of their depths.
    let mut node_depth: HashMap<usize, usize> = HashMap::new();
    let mut layer_depth: HashMap<u64, usize> = HashMap::new();
    for t in post_order.iter().rev() {
        let mut depth = *node_depth.entry(t.key()).or_insert(0);
        depth = depth.max(*layer_depth.get(&t.0.layer.id()).unwrap_or(&0));
        layer_depth.insert(t.0.layer.id(), depth);
        node_depth.insert(t.key(), depth);
        if !input_keys.contains(&t.key()) {
            for i in &t.0.inputs {
                let d = node_depth.entry(i.key()).or_insert(0);
                *d = (*d).max(depth + 1);
            }
        }
    }

    // Layers deepest first, ties in walk order; nodes deepest first, ties in post-order.
    let mut layer_ids: Vec<u64> = layer_depth.keys().copied().collect();
    layer_ids.sort_by_key(|id| (std::cmp::Reverse(layer_depth[id]), walk_index[id]));
    let layer_index: HashMap<u64, usize> = layer_ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i))
        .collect();
    let mut order: Vec<(usize, usize, &SymbolicTensor)> = post_order
        .iter()
        .enumerate()
        .map(|(p, t)| (node_depth[&t.key()], p, t))
        .collect();
    order.sort_by_key(|&(depth, p, _)| (std::cmp::Reverse(depth), p));
    let node_id: HashMap<usize, usize> = order
        .iter()
        .enumerate()
        .map(|(i, (_, _, t))| (t.key(), i))
        .collect();

    let mut handles: Vec<Option<super::symbolic::SharedLayer>> = vec![None; layer_ids.len()];
    let nodes: Vec<Node> = order
        .iter()
        .map(|(_, _, t)| {
            let layer = layer_index[&t.0.layer.id()];
            handles[layer] = Some(t.0.layer.clone());
            Node {
                layer,
                inputs: if input_keys.contains(&t.key()) {
                    vec![]
                } else {
                    t.0.inputs.iter().map(|i| node_id[&i.key()]).collect()
                },
                shape: t.shape().expect("checked in the walk"),
                call_index: t.0.call_index,
                depth: node_depth[&t.key()],
            }
        })
        .collect();
    let handles: Vec<_> = handles
        .into_iter()
        .map(|h| h.expect("every layer has a node"))
        .collect();
    let mut layers: Vec<Box<dyn Layer>> = handles.iter().map(|h| h.lock().clone_layer()).collect();

    // Names: auto-named layers numbered per class in creation order, as Keras does.
    let mut by_creation: Vec<usize> = (0..layers.len()).collect();
    by_creation.sort_by_key(|&i| handles[i].id());
    assign_names(name, &mut layers, &by_creation)?;

    let model_inputs = inputs.iter().map(|t| node_id[&t.key()]).collect();
    let model_outputs = outputs.iter().map(|t| node_id[&t.key()]).collect();
    Ok(Model::from_parts(
        name,
        false,
        layers,
        nodes,
        model_inputs,
        model_outputs,
    ))
}

/// Gives every auto-named layer its Keras name (`conv2d`, `conv2d_1`, … in `order`),
/// skipping names the user chose, and checks that all names are unique.
pub(crate) fn assign_names(
    model: &str,
    layers: &mut [Box<dyn Layer>],
    order: &[usize],
) -> Result<()> {
    let mut taken: HashSet<String> = layers
        .iter()
        .filter(|l| !l.base().auto_named)
        .map(|l| l.name().to_string())
        .collect();
    let mut counters: HashMap<String, usize> = HashMap::new();
    for &i in order {
        if !layers[i].base().auto_named {
            continue;
        }
        let prefix = if layers[i].class_name() == "InputLayer" {
            "input_layer".to_string()
        } else {
            default_name(layers[i].class_name())
        };
        let counter = counters.entry(prefix.clone()).or_insert(0);
        let name = loop {
            let candidate = if *counter == 0 {
                prefix.clone()
            } else {
                format!("{prefix}_{counter}")
            };
            *counter += 1;
            if !taken.contains(&candidate) {
                break candidate;
            }
        };
        taken.insert(name.clone());
        layers[i].base_mut().name = name;
    }
    let mut seen = HashSet::new();
    for l in layers.iter() {
        if !seen.insert(l.name()) {
            return Err(Error::Model {
                model: model.to_string(),
                message: format!(
                    "two layers are named '{}': layer names must be unique",
                    l.name()
                ),
            });
        }
    }
    Ok(())
}

/// An InputLayer for `shape` (without the batch axis), auto-named.
pub(crate) fn input_layer(shape: &[usize]) -> Box<dyn Layer> {
    Box::new(InputLayer::new(shape))
}
