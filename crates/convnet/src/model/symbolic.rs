//! The functional API: symbolic tensors. `Input::new([224, 224, 3])` gives a tensor with
//! a shape and no values; calling a layer on symbolic tensors builds the layer for their
//! shapes and gives the symbolic output, recording who produced it from what. A
//! [`crate::model::Model`] is then cut out of that record, from its inputs to its outputs.
//!
//! Calls never fail on the spot (so the Keras program reads the same in Rust): an error
//! — a kernel larger than its input, a merge of mismatched shapes — travels inside the
//! resulting tensor and is reported, naming the layer, by `Model::new` or `shape()`.

use crate::error::{Error, Result};
use crate::initializers::next_rng;
use crate::layers::{InputLayer, Layer, Shape};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Creation order of layers, which is the order Keras numbers them in.
static NEXT_LAYER_ID: AtomicU64 = AtomicU64::new(0);

/// A layer that symbolic calls refer to: calling it twice shares one set of weights.
/// Made by [`Call::shared`], or implicitly by [`Call::call`].
#[derive(Clone)]
pub struct SharedLayer(Arc<SharedInner>);

struct SharedInner {
    id: u64,
    layer: Mutex<Box<dyn Layer>>,
    built: Mutex<bool>,
    calls: AtomicUsize,
}

impl std::fmt::Debug for SharedLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedLayer({})", self.lock().name())
    }
}

impl SharedLayer {
    /// A layer shared between the calls made on it.
    pub fn new(layer: impl Layer + 'static) -> Self {
        Self::from_box(Box::new(layer))
    }

    /// [`SharedLayer::new`] for a boxed layer.
    pub fn from_box(layer: Box<dyn Layer>) -> Self {
        SharedLayer(Arc::new(SharedInner {
            id: NEXT_LAYER_ID.fetch_add(1, Ordering::Relaxed),
            layer: Mutex::new(layer),
            built: Mutex::new(false),
            calls: AtomicUsize::new(0),
        }))
    }

    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Box<dyn Layer>> {
        self.0.layer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies the layer to symbolic inputs. The first call builds the layer's weights
    /// for the inputs' shapes; later calls must fit those weights.
    pub fn call(&self, inputs: impl SymbolicInputs) -> SymbolicTensor {
        let inputs = inputs.tensors();
        let shape = self.output_for(&inputs);
        SymbolicTensor(Arc::new(SymbolicNode {
            layer: self.clone(),
            inputs,
            call_index: self.0.calls.fetch_add(1, Ordering::Relaxed),
            shape,
        }))
    }

    fn output_for(&self, inputs: &[SymbolicTensor]) -> Result<Shape> {
        let shapes = inputs
            .iter()
            .map(SymbolicTensor::shape)
            .collect::<Result<Vec<_>>>()?;
        let mut layer = self.lock();
        let mut built = self.0.built.lock().unwrap_or_else(|e| e.into_inner());
        if !*built {
            layer.build(&shapes, &mut next_rng())?;
            *built = true;
        }
        let shape = layer.output_shape(&shapes)?;
        crate::layers::check_output_size(layer.as_ref(), &shape)?;
        Ok(shape)
    }
}

/// A tensor known by its shape and its history only: what `Input::new` and layer calls
/// on symbolic tensors return.
#[derive(Clone)]
pub struct SymbolicTensor(pub(crate) Arc<SymbolicNode>);

pub(crate) struct SymbolicNode {
    pub(crate) layer: SharedLayer,
    pub(crate) inputs: Vec<SymbolicTensor>,
    /// Which call of its layer produced this tensor (Keras's node index).
    pub(crate) call_index: usize,
    pub(crate) shape: Result<Shape>,
}

impl std::fmt::Debug for SymbolicTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0.shape {
            Ok(shape) => write!(
                f,
                "SymbolicTensor({}, {})",
                self.0.layer.lock().name(),
                crate::layers::format_shape(shape)
            ),
            Err(e) => write!(f, "SymbolicTensor(error: {e})"),
        }
    }
}

impl SymbolicTensor {
    /// The tensor's shape (batch axis first), or the error that arose making it.
    pub fn shape(&self) -> Result<Shape> {
        self.0.shape.clone()
    }

    /// Whether two handles are the same tensor.
    pub fn same_as(&self, other: &SymbolicTensor) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    pub(crate) fn key(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    pub(crate) fn is_input(&self) -> bool {
        self.0.inputs.is_empty()
    }
}

/// Keras's `Input(shape)`: the symbolic tensor a functional model starts from.
pub struct Input;

impl Input {
    /// An input for samples of `shape` (no batch axis): `Input::new([224, 224, 3])`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(shape: impl AsRef<[usize]>) -> SymbolicTensor {
        SharedLayer::new(InputLayer::new(shape.as_ref())).call(Vec::new())
    }

    /// An input with a name of its own.
    pub fn named(shape: impl AsRef<[usize]>, name: &str) -> SymbolicTensor {
        SharedLayer::new(InputLayer::new(shape.as_ref()).named(name)).call(Vec::new())
    }
}

/// What a layer can be called on: one symbolic tensor or several.
pub trait SymbolicInputs {
    /// The symbolic tensors, in order.
    fn tensors(self) -> Vec<SymbolicTensor>;
}

impl SymbolicInputs for &SymbolicTensor {
    fn tensors(self) -> Vec<SymbolicTensor> {
        vec![self.clone()]
    }
}

impl SymbolicInputs for SymbolicTensor {
    fn tensors(self) -> Vec<SymbolicTensor> {
        vec![self]
    }
}

impl SymbolicInputs for &[SymbolicTensor] {
    fn tensors(self) -> Vec<SymbolicTensor> {
        self.to_vec()
    }
}

impl<const N: usize> SymbolicInputs for &[SymbolicTensor; N] {
    fn tensors(self) -> Vec<SymbolicTensor> {
        self.to_vec()
    }
}

impl<const N: usize> SymbolicInputs for [SymbolicTensor; N] {
    fn tensors(self) -> Vec<SymbolicTensor> {
        self.to_vec()
    }
}

impl SymbolicInputs for &Vec<SymbolicTensor> {
    fn tensors(self) -> Vec<SymbolicTensor> {
        self.clone()
    }
}

impl SymbolicInputs for Vec<SymbolicTensor> {
    fn tensors(self) -> Vec<SymbolicTensor> {
        self
    }
}

/// Calling any layer on symbolic tensors, as Keras's `layer(x)`.
pub trait Call: Layer + Sized + 'static {
    /// Applies this layer, once, to symbolic inputs.
    fn call(self, inputs: impl SymbolicInputs) -> SymbolicTensor {
        SharedLayer::new(self).call(inputs)
    }

    /// A handle for applying this layer several times with one set of weights.
    fn shared(self) -> SharedLayer {
        SharedLayer::new(self)
    }
}

impl<L: Layer + Sized + 'static> Call for L {}

/// An error about a whole model.
pub(crate) fn model_error(model: &str, message: impl Into<String>) -> Error {
    Error::Model {
        model: model.to_string(),
        message: message.into(),
    }
}
