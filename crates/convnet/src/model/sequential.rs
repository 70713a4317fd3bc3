//! Sequential models: one list of layers, each feeding the next. As the design notes
//! warn, Keras's `Sequential` takes the layers as *one list*; so does convnet's:
//!
//! ```
//! use convnet::model::{Input, Sequential};
//! use convnet::ActivationFn;
//! use convnet::layers::{Conv2D, Dense, Flatten, MaxPooling2D};
//! let model = convnet::sequential![
//!     Input::new([28, 28, 1]),
//!     Conv2D::new(32, (3, 3)).activation(ActivationFn::Relu),
//!     MaxPooling2D::new((2, 2)),
//!     Flatten::new(),
//!     Dense::new(10).activation(ActivationFn::Softmax),
//! ]?;
//! assert_eq!(model.count_params(), 54_410);
//! # Ok::<(), convnet::Error>(())
//! ```

use super::graph::{assign_names, input_layer, Model, Node};
use super::symbolic::{model_error, SymbolicTensor};
use crate::error::Result;
use crate::initializers::next_rng;
use crate::layers::{Layer, Shape};

/// One entry of a Sequential's list: an `Input` (the shape the model takes) or a layer.
pub enum SequentialItem {
    /// The input: the shape the model takes.
    Input(Box<dyn Layer>),
    /// A layer, fed by the one before it.
    Layer(Box<dyn Layer>),
}

impl<L: Layer + 'static> From<L> for SequentialItem {
    fn from(layer: L) -> Self {
        SequentialItem::Layer(Box::new(layer))
    }
}

impl From<Box<dyn Layer>> for SequentialItem {
    fn from(layer: Box<dyn Layer>) -> Self {
        SequentialItem::Layer(layer)
    }
}

/// `Input::new(shape)` in a Sequential's list sets the model's input shape.
impl From<SymbolicTensor> for SequentialItem {
    fn from(input: SymbolicTensor) -> Self {
        let layer = input.0.layer.lock().clone_layer();
        if input.is_input() {
            SequentialItem::Input(layer)
        } else {
            SequentialItem::Layer(layer)
        }
    }
}

/// Keras's `Sequential([...])`.
pub struct Sequential;

impl Sequential {
    /// A model that runs `items` in order. With an `Input` first the model is built at
    /// once (and a layer that does not fit its input is an error here); without one it
    /// is built by [`Model::build`].
    #[allow(clippy::new_ret_no_self)]
    pub fn new(items: Vec<SequentialItem>) -> Result<Model> {
        let mut model = Model::from_parts(
            "sequential",
            true,
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        let mut input = None;
        for (i, item) in items.into_iter().enumerate() {
            match item {
                SequentialItem::Input(layer) if i == 0 => input = Some(layer),
                SequentialItem::Input(_) => {
                    return Err(model_error(
                        "sequential",
                        "an Input can only come first in a Sequential's list",
                    ));
                }
                SequentialItem::Layer(layer) => model.layers.push(layer),
            }
        }
        if let Some(input) = input {
            model.layers.insert(0, input);
            model.connect()?;
        } else {
            let order: Vec<usize> = (0..model.layers.len()).collect();
            assign_names("sequential", &mut model.layers, &order)?;
        }
        Ok(model)
    }
}

impl Model {
    /// Builds an unbuilt Sequential for samples of `shape` (without the batch axis).
    pub fn build(&mut self, shape: &[usize]) -> Result<()> {
        if !self.sequential {
            return Err(model_error(
                &self.name,
                "build() is for Sequential models; a functional model is built by its Input",
            ));
        }
        if !self.nodes.is_empty() {
            return Err(model_error(&self.name, "is already built"));
        }
        self.layers.insert(0, input_layer(shape));
        self.connect()
    }

    /// Keras's `model.add(layer)` for Sequential models.
    pub fn add(&mut self, layer: impl Into<SequentialItem>) -> Result<()> {
        if !self.sequential {
            return Err(model_error(&self.name, "add() is for Sequential models"));
        }
        let layer = match layer.into() {
            SequentialItem::Layer(layer) => layer,
            SequentialItem::Input(input) if self.layers.is_empty() => {
                self.layers.push(input);
                return self.connect();
            }
            SequentialItem::Input(_) => {
                return Err(model_error(&self.name, "an Input can only come first"))
            }
        };
        self.layers.push(layer);
        let order: Vec<usize> = (0..self.layers.len()).collect();
        assign_names(&self.name.clone(), &mut self.layers, &order)?;
        if self.nodes.is_empty() {
            return Ok(());
        }
        let previous = *self.outputs.first().expect("a built model has an output");
        if let Err(e) = self.append_node(self.layers.len() - 1, previous) {
            self.layers.pop();
            return Err(e);
        }
        Ok(())
    }

    /// Names the layers and chains them from the InputLayer at index 0.
    fn connect(&mut self) -> Result<()> {
        let order: Vec<usize> = (0..self.layers.len()).collect();
        assign_names(&self.name.clone(), &mut self.layers, &order)?;
        let shape: Shape = self.layers[0].output_shape(&[])?;
        if self.layers[0].class_name() != "InputLayer" {
            return Err(model_error(&self.name, "a Sequential starts from an Input"));
        }
        self.nodes = vec![Node {
            layer: 0,
            inputs: vec![],
            shape,
            call_index: 0,
            depth: 0,
        }];
        self.inputs = vec![0];
        self.outputs = vec![0];
        for layer in 1..self.layers.len() {
            self.append_node(layer, layer - 1)?;
        }
        Ok(())
    }

    /// Builds `layer` on the output of node `previous` and makes it the model's output.
    fn append_node(&mut self, layer: usize, previous: usize) -> Result<()> {
        let input_shape = self.nodes[previous].shape.clone();
        self.layers[layer].build(std::slice::from_ref(&input_shape), &mut next_rng())?;
        let shape = self.layers[layer].output_shape(&[input_shape])?;
        crate::layers::check_output_size(self.layers[layer].as_ref(), &shape)?;
        for node in &mut self.nodes {
            node.depth += 1;
        }
        self.nodes.push(Node {
            layer,
            inputs: vec![previous],
            shape,
            call_index: 0,
            depth: 0,
        });
        self.outputs = vec![self.nodes.len() - 1];
        Ok(())
    }
}

/// Keras's `Sequential([a, b, c])` as a macro: `sequential![Input::new([28, 28, 1]),
/// Conv2D::new(32, (3, 3)), …]` — any mix of layer types, no boxing by hand.
#[macro_export]
macro_rules! sequential {
    ($($item:expr),* $(,)?) => {
        $crate::model::Sequential::new(vec![$($crate::model::SequentialItem::from($item)),*])
    };
}
