//! Layers: Keras config in, Keras config out, weights, and calls into `crate::kernels`.
//!
//! A layer has two forward paths. [`Layer::apply`] is inference: it takes `&self`, keeps
//! nothing and can serve many threads at once. [`Layer::forward`] is the training path:
//! it may update state (BatchNormalization's moving statistics, Dropout's generator) and
//! returns a [`Saved`] with whatever [`Layer::backward`] needs beyond the inputs and the
//! output. Backward is explicit per layer, written next to forward, as the design notes
//! explain backpropagation: dL/dx from dL/dy, and dL/dW accumulated into the caller's
//! buffers so that a layer applied twice adds up its gradients.

/// `class_name`, `base` and `base_mut`: the same three lines in every layer.
macro_rules! layer_common {
    ($class:literal) => {
        fn class_name(&self) -> &'static str {
            $class
        }

        layer_base!();
    };
}

/// `base`, `base_mut` and `config_fields` (from the layer's declaration), for layer
/// types that serve several Keras classes.
macro_rules! layer_base {
    () => {
        fn base(&self) -> &LayerBase {
            &self.base
        }

        fn base_mut(&mut self) -> &mut LayerBase {
            &mut self.base
        }

        fn config_fields(&self) -> serde_json::Map<String, serde_json::Value> {
            crate::layers::declare::config_fields(self)
        }
    };
}

/// `call` and `forward` for layers whose `compute` gives the output before the
/// activation: inference applies it in place, training keeps the pre-activation.
/// `activated_forward!(compute_inference)` has inference call the layer's
/// `compute_inference(x, epilogue, input_padding)` instead, which computes the same
/// from kernels it keeps prepared between calls, and can take a ZeroPadding2D before
/// it into its own padding ([`Fusion::input_padding`]).
macro_rules! activated_forward {
    () => {
        fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
            let epilogue = crate::kernels::Epilogue::of(self.activation);
            self.compute(single(self, inputs)?, epilogue)
        }

        fn apply_fused(
            &self,
            inputs: &[&Tensor],
            fusion: &crate::layers::Fusion,
        ) -> Option<Result<Tensor>> {
            let epilogue = fusion.epilogue_for(self.activation)?;
            Some(single(self, inputs).and_then(|x| self.compute(x, epilogue)))
        }

        activated_forward!(@training);
    };
    ($infer:ident) => {
        fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
            let epilogue = crate::kernels::Epilogue::of(self.activation);
            self.$infer(single(self, inputs)?, epilogue, None)
        }

        fn takes_input_padding(&self) -> bool {
            true
        }

        fn apply_fused(
            &self,
            inputs: &[&Tensor],
            fusion: &crate::layers::Fusion,
        ) -> Option<Result<Tensor>> {
            let epilogue = fusion.epilogue_for(self.activation)?;
            Some(single(self, inputs).and_then(|x| self.$infer(x, epilogue, fusion.input_padding)))
        }

        activated_forward!(@training);
    };
    (@training) => {
        fn forward(&mut self, inputs: &[&Tensor], _training: bool) -> Result<(Tensor, Saved)> {
            let x = single(self, inputs)?;
            // The activation runs inside the kernel unless backward needs the values
            // before it (for ReLU and the like the output alone gives the derivative).
            if self.activation.needs_input() {
                let z = self.compute(x, crate::kernels::Epilogue::default())?;
                Ok(crate::layers::conv::activate(self.activation, z))
            } else {
                let epilogue = crate::kernels::Epilogue::of(self.activation);
                Ok((self.compute(x, epilogue)?, Saved::none()))
            }
        }
    };
}

/// The backward side of the layers with an activation and a
/// `weight_gradients(x, dz, dweights)` method: `Layer::backward_weights_impl` (dL/dW
/// only, no input gradient), and the activation they end in for the model's backward
/// pass to apply sooner (`activation_grad` honours `Saved::activation_applied`).
macro_rules! activated_backward {
    () => {
        fn output_activation(&self) -> Option<crate::activations::ActivationFn> {
            Some(self.activation).filter(|f| !f.needs_input())
        }

        fn backward_weights_impl(
            &self,
            inputs: &[&Tensor],
            output: &Tensor,
            saved: &Saved,
            dy: &Tensor,
            dweights: &mut [Tensor],
        ) -> Result<()> {
            let x = *single(self, inputs)?;
            let dz = activation_grad(self, self.activation, saved, output, dy)?;
            self.weight_gradients(x, &dz, dweights)
        }
    };
}

/// Builder methods of the layers with a sliding window (`kernel_size`, `strides`,
/// `padding`, `dilation_rate`), and the [`conv::Window`] the kernels take.
macro_rules! window_builders {
    () => {
        /// Sets `strides`, the step of the window along (rows, columns) (Keras's default
        /// (1, 1)).
        pub fn strides(mut self, strides: (usize, usize)) -> Self {
            self.strides = strides;
            self
        }

        /// Sets `padding`: `Valid` or `Same` (Keras's default `valid`).
        pub fn padding(mut self, padding: crate::kernels::Padding) -> Self {
            self.padding = padding;
            self
        }

        /// Sets `dilation_rate`, the gap between kernel taps along (rows, columns) (Keras's
        /// default (1, 1)).
        pub fn dilation_rate(mut self, dilation: (usize, usize)) -> Self {
            self.dilation_rate = dilation;
            self
        }

        /// The sliding window as the kernels take it.
        pub fn window(&self) -> crate::layers::conv::Window {
            crate::layers::conv::Window {
                size: self.kernel_size,
                strides: self.strides,
                padding: self.padding,
                dilation: self.dilation_rate,
            }
        }
    };
}

/// Builder methods of the layers with an activation and an optional bias.
macro_rules! activation_builders {
    () => {
        /// The activation applied to the output: `.activation(ActivationFn::Relu)`, or
        /// by Keras name with `"relu".parse()?`.
        pub fn activation(mut self, activation: crate::activations::ActivationFn) -> Self {
            self.activation = activation;
            self
        }

        /// Sets `use_bias`, whether a bias is added after the product (Keras's default
        /// true).
        pub fn use_bias(mut self, use_bias: bool) -> Self {
            self.use_bias = use_bias;
            self
        }
    };
}

mod activation;
mod augmentation;
mod batch_normalization;
mod channels_first;
mod conv;
mod conv3d;
mod declare;
mod dense;
mod depthwise;
mod dropout;
mod embedding;
mod group_normalization;
mod input;
mod layer_normalization;
mod merge;
mod normalization;
mod one_d;
mod ops;
mod permute;
mod pooling;
mod prepared_kernel;
mod rescaling;
mod reshape;
mod resizing;
mod scale;
mod separable;
mod three_d;
mod transpose;
mod unit_normalization;

pub use crate::kernels::pool::PoolKind;
pub use activation::{Activation, LeakyReLU, PReLU, ReLU, Softmax};
pub use augmentation::{
    Factor, FillMode, FlipMode, Interpolation, RandomFlip, RandomIntensity, RandomRotation,
    RandomTranslation, RandomZoom,
};
pub use batch_normalization::BatchNormalization;
pub use channels_first::ChannelsFirst;
pub use conv::Conv2D;
pub use conv3d::{Conv3D, Conv3DTranspose};
pub use declare::Axes;
pub use dense::Dense;
pub use depthwise::DepthwiseConv2D;
pub use dropout::{Dropout, GaussianNoise, SpatialDropout};
pub use embedding::Embedding;
pub use group_normalization::GroupNormalization;
pub use input::InputLayer;
pub use layer_normalization::LayerNormalization;
pub use merge::{Add, Average, Concatenate, Maximum, Merge, MergeOp, Minimum, Multiply, Subtract};
pub use normalization::Normalization;
pub use one_d::OneD;
pub use ops::{NumpyOp, OpKind};
pub use permute::{Permute, RepeatVector};
pub use pooling::{
    AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, GlobalPooling2D, MaxPooling2D,
    Pooling2D,
};
pub use rescaling::Rescaling;
pub use reshape::{Cropping2D, Flatten, Reshape, UpSampling, UpSampling2D, ZeroPadding2D};
pub use resizing::{CenterCrop, RandomCrop, ResizeMethod, Resizing};
pub use scale::{CustomScaleLayer, LayerScale};
pub use separable::SeparableConv2D;
pub use three_d::ThreeD;
pub use transpose::Conv2DTranspose;
pub use unit_normalization::UnitNormalization;

use crate::error::{Error, Result};
use crate::initializers::{Initializer, Rng};
use crate::regularizers::Regularizer;
use crate::tensor::Tensor;
use serde_json::{json, Map, Value};
use std::any::Any;

/// A shape as Keras infers it before running: the batch axis first, `None` where a size
/// is not known yet (usually the batch).
pub type Shape = Vec<Option<usize>>;

/// The known shape of a concrete tensor.
pub fn shape_of(t: &Tensor) -> Shape {
    t.shape().iter().map(|&d| Some(d)).collect()
}

/// A weight: its Keras name (`kernel`, `bias`, `gamma`, `moving_mean`, …), its value, and
/// whether training changes it through gradients.
#[derive(Clone, Debug)]
pub struct Weight {
    /// The weight's Keras name within its layer (`kernel`, `bias`, `gamma`, ...), as saved
    /// in `.weights.h5`.
    pub name: String,
    /// The weight's current value.
    pub value: Tensor,
    /// Whether gradients update it (false for BatchNormalization's moving statistics).
    pub trainable: bool,
    /// Whether Keras keeps it as an integer (Normalization's `count`): its value holds
    /// whole numbers and weight files store it as int64.
    pub integer: bool,
}

/// What a training-mode forward pass keeps for backward, beyond inputs and output.
#[derive(Default)]
pub struct Saved(Option<Box<dyn Any + Send + Sync>>);

impl Saved {
    /// Nothing saved: the layer's backward needs only its inputs and output.
    pub fn none() -> Self {
        Saved(None)
    }

    /// Saves `value` for the layer's backward pass, read back with [`Saved::get`].
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Saved(Some(Box::new(value)))
    }

    /// Stands in for the [`Saved`] of a layer whose [`Layer::output_activation`] the
    /// model's backward pass already applied to the gradient it hands the layer (see
    /// `Model::relu_ahead`); such activations save nothing of their own.
    pub fn activation_applied() -> Self {
        Saved::new(ActivationApplied)
    }

    /// Whether this is [`Saved::activation_applied`]: `dy` is already dL/dz.
    pub fn is_activation_applied(&self) -> bool {
        self.0.as_ref().is_some_and(|b| b.is::<ActivationApplied>())
    }

    /// The saved value, or an error naming the layer when backward was called without
    /// the matching training-path forward.
    pub fn get<T: Any>(&self, layer: &dyn Layer) -> Result<&T> {
        self.0
            .as_ref()
            .and_then(|b| b.downcast_ref::<T>())
            .ok_or_else(|| {
                layer.shape_error("backward needs the state of a forward() call on this layer")
            })
    }
}

/// The marker behind [`Saved::activation_applied`].
struct ActivationApplied;

/// The most values one weight may hold (8 GiB of f32): a config asking for more is
/// refused before anything is allocated.
pub const MAX_WEIGHT_LEN: usize = 1 << 31;

/// The fields every Keras layer has, and its weights.
#[derive(Clone, Debug)]
pub struct LayerBase {
    /// Keras's `name`: unique within a model, the key of the layer's weights in saved
    /// files.
    pub name: String,
    /// Keras's `trainable`: whether `fit` updates the layer's weights; default true.
    pub trainable: bool,
    /// Keras's dtype policy object, kept as read so configs round-trip; convnet
    /// computes in f32 whatever it says.
    pub dtype: Value,
    /// The weights the layer has built, in Keras's order (empty until built).
    pub weights: Vec<Weight>,
    /// Keras's `activity_regularizer`, which any layer takes: its penalty of the layer's
    /// output, over the batch size, joins the training loss.
    pub activity_regularizer: Option<Regularizer>,
    /// Whether the name is the class's default, to be numbered by a model
    /// (`conv2d`, `conv2d_1`, …) rather than one the user or a file chose.
    pub auto_named: bool,
}

/// What a declaration's skipped `base` starts as; reading a config replaces it.
impl Default for LayerBase {
    fn default() -> Self {
        LayerBase::new("")
    }
}

impl LayerBase {
    /// The common fields for a layer called `name`: trainable, float32 dtype policy, no
    /// weights yet, auto-named.
    pub fn new(name: &str) -> Self {
        LayerBase {
            name: name.to_string(),
            trainable: true,
            dtype: json!({"module": "keras", "class_name": "DTypePolicy",
                          "config": {"name": "float32"}, "registered_name": null}),
            weights: Vec::new(),
            activity_regularizer: None,
            auto_named: true,
        }
    }

    /// A kernel and, when `bias` is given, a bias of that length: the weights of the
    /// convolution family and Dense, in Keras's order.
    fn add_kernel_and_bias(
        &mut self,
        kernel: (&str, &[usize], &Initializer),
        bias: Option<(usize, &Initializer)>,
        rng: &mut Rng,
    ) -> Result<()> {
        self.weights.clear();
        self.add_weight(kernel.0, kernel.1, kernel.2, true, rng)?;
        if let Some((len, init)) = bias {
            self.add_weight("bias", &[len], init, true, rng)?;
        }
        Ok(())
    }

    fn add_weight(
        &mut self,
        name: &str,
        shape: &[usize],
        init: &Initializer,
        trainable: bool,
        rng: &mut Rng,
    ) -> Result<()> {
        if crate::tensor::checked_len(shape).is_none_or(|n| n > MAX_WEIGHT_LEN) {
            return Err(Error::Shape {
                layer: self.name.clone(),
                class: "weight".into(),
                message: format!("weight '{name}' of shape {shape:?} is larger than convnet allows ({MAX_WEIGHT_LEN} values)"),
            });
        }
        let value = init.sample(shape, rng)?;
        self.weights.push(Weight {
            name: name.to_string(),
            value,
            trainable,
            integer: false,
        });
        Ok(())
    }
}

/// The arithmetic of the layers after a linear layer that inference folds into its
/// output pass ([`Layer::apply_fused`]).
#[derive(Clone, Debug, Default)]
pub struct Fusion {
    /// A following BatchNormalization's per-channel (scale, shift), if any.
    pub affine: Option<(Vec<f32>, Vec<f32>)>,
    /// The activation after it (`Linear`: none).
    pub activation: crate::activations::ActivationFn,
    /// Zero padding ((top, bottom), (left, right)) that a ZeroPadding2D before the
    /// layer would have added: the layer is given the unpadded input and computes as if
    /// it were padded, so the padded copy is never made.
    pub input_padding: Option<[[usize; 2]; 2]>,
}

impl Fusion {
    /// Whether the layers after this one are fused in (an affine map or an activation).
    pub fn takes_layers_after(&self) -> bool {
        self.affine.is_some() || self.activation != crate::activations::ActivationFn::Linear
    }

    /// The epilogue of a layer whose own activation is `own`, run with this fusion:
    /// the fused layers' arithmetic, or the layer's own activation where none are
    /// fused. None where there are both: only a linear output can take the next layers'
    /// arithmetic in its place.
    pub fn epilogue_for(
        &self,
        own: crate::activations::ActivationFn,
    ) -> Option<crate::kernels::Epilogue<'_>> {
        if !self.takes_layers_after() {
            Some(crate::kernels::Epilogue::of(own))
        } else if own == crate::activations::ActivationFn::Linear {
            Some(self.epilogue())
        } else {
            None
        }
    }

    /// The affine map and the activation as a kernel's epilogue (the layer adds its
    /// bias).
    pub fn epilogue(&self) -> crate::kernels::Epilogue<'_> {
        let affine = self.affine.as_ref();
        crate::kernels::Epilogue {
            bias: None,
            affine: affine.map(|(scale, shift)| crate::kernels::Affine { scale, shift }),
            activation: self.activation,
        }
    }
}

/// Columns of a wider row-major output that a layer writes its output into, in place
/// of a tensor of its own ([`Layer::apply_fused_into`]): the executor's output of a
/// Concatenate on the last axis, each input in its own columns.
pub struct OutputColumns<'a> {
    /// The wider output from the layer's first column on: row r of the layer's output
    /// goes to `data[r * row_len..]`, its other columns left as they are.
    pub data: &'a mut [f32],
    /// Values between one row's start and the next's.
    pub row_len: usize,
    /// The layer's output shape, the rows (every axis but the last) and their width.
    pub shape: Vec<usize>,
}

/// Copies a layer behind a `Box<dyn Layer>`; every layer is `Clone`.
pub trait CloneLayer {
    /// A boxed copy of the layer, so that models of `Box<dyn Layer>` can be cloned.
    fn clone_layer(&self) -> Box<dyn Layer>;

    /// The layer as `Any`, so that code above layers can recognise its own layer types
    /// (a model used as a layer) without layers knowing them.
    fn as_any(&self) -> &dyn Any;

    /// [`CloneLayer::as_any`], to change the layer.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Layer + Clone + 'static> CloneLayer for T {
    fn clone_layer(&self) -> Box<dyn Layer> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A Keras layer: its config, its shape inference, its weights, and its forward and
/// backward passes.
pub trait Layer: Send + Sync + std::fmt::Debug + CloneLayer {
    /// The Keras class name (`Conv2D`, `BatchNormalization`, …).
    fn class_name(&self) -> &'static str;

    /// The fields every Keras layer has (name, trainable, dtype) and its weights.
    fn base(&self) -> &LayerBase;

    /// The common fields and the weights, to change.
    fn base_mut(&mut self) -> &mut LayerBase;

    /// The fields of the Keras config that follow `name`, `trainable` and `dtype`, in
    /// Keras's order.
    fn config_fields(&self) -> Map<String, Value>;

    /// The output shape for these input shapes, or an error naming the layer when they
    /// cannot work (a kernel larger than a `valid` input, mismatched merge inputs, …).
    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape>;

    /// The generator a random layer (Dropout, noise, augmentation) draws from in
    /// training, so that a training run's backup can save it and put it back; None for
    /// the layers that draw nothing.
    fn random_generator(&mut self) -> Option<&mut Option<Rng>> {
        None
    }

    /// Where this training call's samples start in the global batch: a data-parallel
    /// rank's slice starts part way in, and the random layers draw per sample index so
    /// that a sample's draw does not depend on how many ranks there are.
    fn set_first_sample(&mut self, _first: usize) {}

    /// The ranks of a data-parallel run (None alone): BatchNormalization pools its
    /// batch statistics over them when it is `synchronized` or `sync_batch_norm` asks.
    fn set_ranks(
        &mut self,
        _ranks: Option<&std::sync::Arc<dyn crate::collective::Communicator>>,
        _sync_batch_norm: bool,
    ) {
    }

    /// Creates the weights for these input shapes. Layers without weights only check
    /// the shapes.
    fn build(&mut self, inputs: &[Shape], _rng: &mut Rng) -> Result<()> {
        self.output_shape(inputs).map(|_| ())
    }

    /// Inference: `training = false`, nothing kept.
    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor>;

    /// Inference with the layers that follow this one in a graph fused into its output
    /// pass: their per-channel affine map and activation are applied to each block of
    /// output while it is still in cache, so the executor skips their passes over the
    /// whole tensor. None when this layer cannot take them (the default, and any layer
    /// whose own activation is not linear); the executor then runs them one by one.
    fn apply_fused(&self, _inputs: &[&Tensor], _fusion: &Fusion) -> Option<Result<Tensor>> {
        None
    }

    /// [`Layer::apply_fused`] of two inputs written over the first, `acc`, which the
    /// executor hands over because nothing else reads it (a residual Add's output over
    /// its convolution's): no new buffer, and one pass over memory fewer. None, `acc`
    /// untouched, where the layer cannot (the default, and any but a sum or product
    /// whose `acc` has the output's shape and whose `other` lines up with it row by
    /// row).
    fn apply_fused_in_place(
        &self,
        _acc: &mut Tensor,
        _other: &Tensor,
        _fusion: &Fusion,
    ) -> Option<Result<()>> {
        None
    }

    /// [`Layer::apply_fused`] into `out` (columns of a wider output, whose shape the
    /// layer's own output must match) rather than into a tensor of its own. False when
    /// it wrote nothing: the default, and whenever `apply_fused` would not return the
    /// output (an error included), so that running the layer as usual gives the same
    /// result or error.
    fn apply_fused_into(
        &self,
        _inputs: &[&Tensor],
        _fusion: &Fusion,
        _out: &mut OutputColumns,
    ) -> bool {
        false
    }

    /// Whether [`Layer::apply_fused`] takes [`Fusion::input_padding`], zero padding
    /// skipped before this layer, into its own (a convolution: the padding becomes part
    /// of its window's); it then always runs given that padding alone. False for any
    /// other layer.
    fn takes_input_padding(&self) -> bool {
        false
    }

    /// What this layer computes at inference when that is a per-channel map on the last
    /// axis of a rank-`rank` input, `y = x·scale + shift` (a BatchNormalization over
    /// channels): (scale, shift), for the executor to fold into the layer before it.
    /// None for any other layer.
    fn inference_affine(&self, _rank: usize) -> Option<(Vec<f32>, Vec<f32>)> {
        None
    }

    /// The element-wise activation this layer is at inference (ReLU, `Activation`),
    /// for the executor to fuse into the layer before it; None for any other layer.
    fn elementwise_activation(&self) -> Option<crate::activations::ActivationFn> {
        None
    }

    /// The activation that ends this layer, where backward reads its derivative from
    /// the output alone and takes a `dy` it was already applied to when handed
    /// [`Saved::activation_applied`] (the layers with an `activation` argument, and the
    /// activation layers): the model's backward pass may apply it sooner, where there
    /// are fewer values. None for any other layer.
    fn output_activation(&self) -> Option<crate::activations::ActivationFn> {
        None
    }

    /// Whether this layer commutes with a ReLU before it, gradient included: its output
    /// is the ReLU of what it would give on the ReLU's input, and its backward sends
    /// each output's gradient to a cell holding that output's value (max pooling). The
    /// ReLU's derivative may then be applied to this layer's gradient instead.
    fn commutes_with_relu(&self) -> bool {
        false
    }

    /// Whether [`Layer::backward_impl`] reads the layer's own output (an activation's
    /// mask, a pooling's maxima) and not only its inputs: where it does not, the
    /// training pass may write the next layer's activation over that output. True
    /// unless a layer says otherwise.
    fn backward_reads_output(&self) -> bool {
        true
    }

    /// Multiply-adds of one forward pass on these concrete input shapes, counted from
    /// the geometry the convolution kernels run on (`ConvGeometry::macs`), so what
    /// `explain` reports is what the engine does. `None` for layers without a kernel
    /// product (pooling, activations, merges) or shapes the layer refuses.
    fn forward_macs(&self, _inputs: &[Vec<usize>]) -> Option<usize> {
        None
    }

    /// The training path: Keras's `call(inputs, training=training)`, keeping what
    /// [`Layer::backward`] needs.
    fn forward(&mut self, inputs: &[&Tensor], _training: bool) -> Result<(Tensor, Saved)> {
        Ok((self.apply(inputs)?, Saved::none()))
    }

    /// The gradient arithmetic behind [`Layer::backward`], which has already checked
    /// that the input count, `dy`'s shape and the gradient buffers are right.
    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        saved: &Saved,
        dy: &Tensor,
        dweights: &mut [Tensor],
    ) -> Result<Vec<Tensor>>;

    /// [`Layer::backward_impl`] when no gradient with respect to the inputs is wanted
    /// (the layer reads the model's input, in training): only dL/dW is added. Layers
    /// whose input gradient is a pass of its own (convolutions, Dense) skip it; the
    /// default computes it and drops it.
    fn backward_weights_impl(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        saved: &Saved,
        dy: &Tensor,
        dweights: &mut [Tensor],
    ) -> Result<()> {
        self.backward_impl(inputs, output, saved, dy, dweights)
            .map(drop)
    }

    /// Gradients with respect to each input, from `dy = dL/d(output)`; adds dL/dW into
    /// `dweights` (one tensor per weight, in [`Layer::weights`] order; the non-trainable
    /// ones stay as they are). `saved` is what [`Layer::forward`] returned with `output`.
    fn backward(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        saved: &Saved,
        dy: &Tensor,
        dweights: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        self.check_backward(inputs, output, dy, dweights)?;
        self.backward_impl(inputs, output, saved, dy, dweights)
    }

    /// [`Layer::backward`] that only adds dL/dW (see [`Layer::backward_weights_impl`]).
    fn backward_weights(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        saved: &Saved,
        dy: &Tensor,
        dweights: &mut [Tensor],
    ) -> Result<()> {
        self.check_backward(inputs, output, dy, dweights)?;
        self.backward_weights_impl(inputs, output, saved, dy, dweights)
    }

    /// The checks shared by the backward entry points: `dy` matches the output, the
    /// gradient buffers match the weights, and the inputs give that output.
    fn check_backward(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        dy: &Tensor,
        dweights: &[Tensor],
    ) -> Result<()> {
        if dy.shape() != output.shape() {
            return Err(self.shape_error(&format!(
                "the output gradient has shape {:?} but the output has shape {:?}",
                dy.shape(),
                output.shape()
            )));
        }
        let weights = self.weights();
        let buffers_fit = dweights.len() == weights.len()
            && weights
                .iter()
                .zip(dweights.iter())
                .all(|(w, d)| w.value.shape() == d.shape());
        if !buffers_fit {
            return Err(self.shape_error("weight gradient buffers do not match the weights"));
        }
        let shapes: Vec<Shape> = inputs.iter().map(|t| shape_of(t)).collect();
        let expected = self.output_shape(&shapes)?;
        if expected
            .iter()
            .zip(output.shape())
            .any(|(e, &o)| *e != Some(o))
            || expected.len() != output.rank()
        {
            return Err(self.shape_error(&format!(
                "the inputs give an output of shape {}, not the {:?} passed to backward",
                format_shape(&expected),
                output.shape()
            )));
        }
        Ok(())
    }

    /// Keras's `name` of the layer.
    fn name(&self) -> &str {
        &self.base().name
    }

    /// Builder form of [`Layer::set_name`]: `Conv2D::new(64, (3, 3)).named("stem")`.
    fn named(mut self, name: &str) -> Self
    where
        Self: Sized,
    {
        self.set_name(name);
        self
    }

    /// Renames the layer; a chosen name is kept as is, not numbered by the model.
    fn set_name(&mut self, name: &str) {
        let base = self.base_mut();
        base.name = name.to_string();
        base.auto_named = false;
    }

    /// The module Keras writes for the class (`keras.layers` for layers).
    fn keras_module(&self) -> &'static str {
        "keras.layers"
    }

    /// Whether this is a Keras operation rather than a layer (`keras.ops.add` on a
    /// symbolic tensor): Keras writes no `build_config` for one.
    fn is_operation(&self) -> bool {
        false
    }

    /// The positional arguments Keras writes for a call, given the objects of its input
    /// tensors: one argument (a list when there are several); an operation on a number
    /// puts the number in its place.
    fn call_args(&self, mut tensors: Vec<Value>) -> Vec<Value> {
        if tensors.len() == 1 {
            tensors
        } else {
            vec![Value::Array(std::mem::take(&mut tensors))]
        }
    }

    /// Keras's `registered_name` for the class (null for built-in layers).
    fn registered_name(&self) -> Option<&'static str> {
        None
    }

    /// The layer's weights in Keras's order (a nested model's: all of its layers').
    fn weights(&self) -> Vec<&Weight> {
        self.base().weights.iter().collect()
    }

    /// The weights, to change in place (what an optimizer updates).
    fn weights_mut(&mut self) -> Vec<&mut Weight> {
        self.base_mut().weights.iter_mut().collect()
    }

    /// Replaces the weights' values, in Keras's order, checking every shape.
    fn set_weights(&mut self, values: Vec<Tensor>) -> Result<()> {
        let count = self.weights().len();
        if values.len() != count {
            return Err(self.shape_error(&format!(
                "expects {count} weights but {} were given",
                values.len()
            )));
        }
        let mismatch = self
            .weights()
            .iter()
            .zip(&values)
            .find(|(w, v)| w.value.shape() != v.shape())
            .map(|(w, v)| {
                format!(
                    "weight '{}' has shape {:?}, cannot set a value of shape {:?}",
                    w.name,
                    w.value.shape(),
                    v.shape()
                )
            });
        if let Some(message) = mismatch {
            return Err(self.shape_error(&message));
        }
        for (w, value) in self.weights_mut().into_iter().zip(values) {
            w.value = value;
        }
        Ok(())
    }

    /// The Keras config object: `name`, `trainable`, `dtype`, then the layer's own fields.
    fn config(&self) -> Value {
        let base = self.base();
        let mut map = Map::new();
        map.insert("name".into(), json!(base.name));
        map.insert("trainable".into(), json!(base.trainable));
        map.insert("dtype".into(), base.dtype.clone());
        // Keras writes a set activity regularizer with the common fields, and the
        // convolutions' own null slot for it only when it is unset.
        if let Some(regularizer) = &base.activity_regularizer {
            map.insert("activity_regularizer".into(), regularizer.to_config());
        }
        let set = base.activity_regularizer.is_some();
        map.extend(
            self.config_fields()
                .into_iter()
                .filter(|(key, _)| !(set && key == "activity_regularizer")),
        );
        Value::Object(map)
    }

    /// An error about this layer's shapes or use.
    fn shape_error(&self, message: &str) -> Error {
        Error::Shape {
            layer: self.name().to_string(),
            class: self.class_name().to_string(),
            message: message.to_string(),
        }
    }
}

/// The object Keras writes for a layer: module, class name, config.
pub fn layer_to_keras(layer: &dyn Layer) -> Value {
    json!({
        "module": layer.keras_module(),
        "class_name": layer.class_name(),
        "config": layer.config(),
        "registered_name": layer.registered_name(),
    })
}

/// Builds a layer from the object Keras writes for it (`{"class_name": …, "config": …}`).
/// An unknown class, or a missing or invalid field, is an error naming the layer. A
/// Keras operation (module `keras.src.ops.numpy`) reads its constant from the object's
/// `inbound_nodes`.
pub fn layer_from_keras(object: &Value) -> Result<Box<dyn Layer>> {
    if object.get("module").and_then(Value::as_str) == Some(ops::MODULE) {
        return Ok(Box::new(ops::NumpyOp::from_keras(object)?));
    }
    let config = object.get("config").unwrap_or(&Value::Null);
    let name = config
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    let class = object
        .get("class_name")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Config {
            layer: name.to_string(),
            class: "?".into(),
            field: "class_name".into(),
            message: "missing: every layer object names its class".into(),
        })?;
    layer_from_config(class, config)
}

/// How a layer is read from its Keras config.
type FromConfig = fn(&str, &Value) -> Result<Box<dyn Layer>>;

/// A registry entry reading the declaration of `$layer` (and, for types that serve
/// several classes, setting which one).
macro_rules! read {
    ($layer:ty) => {
        |class, config| Ok(Box::new(declare::read_layer::<$layer>(class, config)?))
    };
    ($layer:ty, $set:ident = $value:expr) => {
        |class, config| {
            Ok(Box::new(
                declare::read_layer::<$layer>(class, config)?.$set($value),
            ))
        }
    };
}

/// Every Keras class convnet implements, with its reader: the one list behind
/// [`layer_from_config`] and [`layer_classes`].
const REGISTRY: &[(&str, FromConfig)] = &[
    ("InputLayer", read!(InputLayer)),
    ("Conv2D", read!(Conv2D)),
    ("DepthwiseConv2D", read!(DepthwiseConv2D)),
    ("SeparableConv2D", read!(SeparableConv2D)),
    ("Conv2DTranspose", read!(Conv2DTranspose)),
    ("Conv3D", read!(Conv3D)),
    ("Conv3DTranspose", read!(Conv3DTranspose)),
    ("Dense", read!(Dense)),
    ("Embedding", read!(Embedding)),
    ("MaxPooling2D", read!(Pooling2D, kind = PoolKind::Max)),
    (
        "AveragePooling2D",
        read!(Pooling2D, kind = PoolKind::Average),
    ),
    (
        "GlobalAveragePooling2D",
        read!(GlobalPooling2D, kind = PoolKind::Average),
    ),
    (
        "GlobalMaxPooling2D",
        read!(GlobalPooling2D, kind = PoolKind::Max),
    ),
    ("BatchNormalization", read!(BatchNormalization)),
    ("LayerNormalization", read!(LayerNormalization)),
    ("GroupNormalization", read!(GroupNormalization)),
    ("UnitNormalization", read!(UnitNormalization)),
    ("Normalization", read!(Normalization)),
    ("LayerScale", read!(LayerScale)),
    ("CustomScaleLayer", read!(CustomScaleLayer)),
    ("Dropout", read!(Dropout)),
    ("AlphaDropout", read!(Dropout, alpha = true)),
    ("SpatialDropout1D", read!(SpatialDropout, spatial_axes = 1)),
    ("SpatialDropout2D", read!(SpatialDropout, spatial_axes = 2)),
    ("SpatialDropout3D", read!(SpatialDropout, spatial_axes = 3)),
    ("GaussianNoise", GaussianNoise::read),
    ("GaussianDropout", GaussianNoise::read),
    ("Flatten", read!(Flatten)),
    ("Reshape", read!(Reshape)),
    ("Permute", read!(Permute)),
    ("RepeatVector", read!(RepeatVector)),
    ("ZeroPadding2D", read!(ZeroPadding2D)),
    ("Cropping2D", read!(Cropping2D)),
    ("UpSampling2D", read!(UpSampling2D)),
    ("Rescaling", read!(Rescaling)),
    ("Resizing", read!(Resizing)),
    ("CenterCrop", read!(CenterCrop)),
    ("RandomCrop", read!(RandomCrop)),
    ("RandomFlip", read!(RandomFlip)),
    ("RandomRotation", read!(RandomRotation)),
    ("RandomTranslation", read!(RandomTranslation)),
    ("RandomZoom", read!(RandomZoom)),
    ("RandomContrast", read!(RandomIntensity, brightness = false)),
    (
        "RandomBrightness",
        read!(RandomIntensity, brightness = true),
    ),
    ("Concatenate", read!(Concatenate)),
    ("Add", read!(Merge, op = MergeOp::Add)),
    ("Subtract", read!(Merge, op = MergeOp::Subtract)),
    ("Multiply", read!(Merge, op = MergeOp::Multiply)),
    ("Average", read!(Merge, op = MergeOp::Average)),
    ("Maximum", read!(Merge, op = MergeOp::Maximum)),
    ("Minimum", read!(Merge, op = MergeOp::Minimum)),
    ("Activation", read!(Activation)),
    ("ReLU", read!(ReLU)),
    ("LeakyReLU", read!(LeakyReLU)),
    ("PReLU", read!(PReLU)),
    ("Softmax", read!(Softmax)),
    ("Conv1D", OneD::read),
    ("SeparableConv1D", OneD::read),
    ("DepthwiseConv1D", OneD::read),
    ("Conv1DTranspose", OneD::read),
    ("MaxPooling1D", OneD::read),
    ("AveragePooling1D", OneD::read),
    ("GlobalMaxPooling1D", OneD::read),
    ("GlobalAveragePooling1D", OneD::read),
    ("UpSampling1D", OneD::read),
    ("ZeroPadding1D", OneD::read),
    ("Cropping1D", OneD::read),
    ("MaxPooling3D", ThreeD::read),
    ("AveragePooling3D", ThreeD::read),
    ("GlobalMaxPooling3D", ThreeD::read),
    ("GlobalAveragePooling3D", ThreeD::read),
    ("UpSampling3D", ThreeD::read),
    ("ZeroPadding3D", ThreeD::read),
    ("Cropping3D", ThreeD::read),
];

/// The Keras class names convnet implements.
pub fn layer_classes() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|(class, _)| *class)
}

/// Builds a layer of Keras class `class` from its config object.
pub fn layer_from_config(class: &str, config: &Value) -> Result<Box<dyn Layer>> {
    if channels_first::applies(class, config) {
        return ChannelsFirst::read(class, config);
    }
    let (_, read) = REGISTRY
        .iter()
        .find(|(name, _)| *name == class)
        .ok_or_else(|| Error::UnknownClass {
            layer: config
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| default_name(class), str::to_string),
            class: class.to_string(),
        })?;
    read(class, config)
}

/// Checks the number of inputs a layer was given.
fn expect_inputs<T>(layer: &dyn Layer, inputs: &[T], count: usize) -> Result<()> {
    if inputs.len() == count {
        Ok(())
    } else {
        Err(layer.shape_error(&format!(
            "expects {count} input{} but was given {}",
            if count == 1 { "" } else { "s" },
            inputs.len()
        )))
    }
}

/// The single input of a one-input layer.
fn single<'a, T>(layer: &dyn Layer, inputs: &'a [T]) -> Result<&'a T> {
    expect_inputs(layer, inputs, 1)?;
    Ok(&inputs[0])
}

/// The concrete shape that `output_shape` gives for concrete inputs.
fn concrete(layer: &dyn Layer, shape: Shape) -> Result<Vec<usize>> {
    shape
        .iter()
        .map(|d| d.ok_or_else(|| layer.shape_error("output size unknown for a concrete input")))
        .collect()
}

/// Runs shape inference on concrete inputs: validates them and gives the output shape.
fn infer(layer: &dyn Layer, inputs: &[&Tensor]) -> Result<Vec<usize>> {
    let shapes: Vec<Shape> = inputs.iter().map(|t| shape_of(t)).collect();
    concrete(layer, layer.output_shape(&shapes)?)
}

/// Refuses an output shape of more values than a tensor may hold
/// ([`crate::tensor::MAX_VALUES`], unknown sizes left out), naming the layer, before
/// anything is allocated.
pub fn check_output_size(layer: &dyn Layer, shape: &Shape) -> Result<()> {
    let values = shape
        .iter()
        .flatten()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match values {
        Some(n) if n <= crate::tensor::MAX_VALUES => Ok(()),
        _ => Err(layer.shape_error(&format!(
            "its output {} would hold more than {} values, the most convnet allows in one tensor",
            format_shape(shape),
            crate::tensor::MAX_VALUES
        ))),
    }
}

/// A shape as Keras prints it: `(None, 28, 28, 1)`.
pub fn format_shape(shape: &Shape) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|d| d.map_or("None".to_string(), |d| d.to_string()))
        .collect();
    if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    }
}

/// Zero gradient buffers for every weight of a layer.
pub fn zero_grads(layer: &dyn Layer) -> Vec<Tensor> {
    layer
        .weights()
        .iter()
        .map(|w| w.value.zeros_like())
        .collect()
}

/// Default layer names, as Keras derives them from the class name (`Conv2D` → `conv2d`,
/// `ReLU` → `re_lu`, `PReLU` → `p_re_lu`).
pub fn default_name(class: &str) -> String {
    let chars: Vec<char> = class.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            // Keras's two regexes: before a capitalised word, and between a lower-case
            // letter and a capital.
            if prev.is_ascii_lowercase() || (next_lower && prev != '_') {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::default_name;

    #[test]
    fn default_names_follow_keras() {
        for (class, name) in [
            ("Conv2D", "conv2d"),
            ("ReLU", "re_lu"),
            ("PReLU", "p_re_lu"),
            ("LeakyReLU", "leaky_re_lu"),
            ("MaxPooling2D", "max_pooling2d"),
            ("BatchNormalization", "batch_normalization"),
            ("Conv2DTranspose", "conv2d_transpose"),
            ("UpSampling2D", "up_sampling2d"),
            ("ZeroPadding2D", "zero_padding2d"),
            ("GlobalAveragePooling2D", "global_average_pooling2d"),
            ("SeparableConv2D", "separable_conv2d"),
            ("DepthwiseConv2D", "depthwise_conv2d"),
        ] {
            assert_eq!(default_name(class), name, "{class}");
        }
    }
}
