//! Keras operations on symbolic tensors in a functional model: `x + 3.0` and
//! `x * (1 / 6)` in MobileNetV3's hard sigmoid are not layers but calls of
//! `keras.ops.add` and `keras.ops.multiply`, which Keras saves as nodes of class
//! `Add`, `Multiply`, … in module `keras.src.ops.numpy`, with the constant among the
//! call's arguments rather than in a config. [`NumpyOp`] is such a node: an elementwise
//! operation of one tensor and a number, or of two tensors that broadcast.

use super::merge::{Merge, MergeOp};
use super::{default_name, expect_inputs, infer, Layer, LayerBase, Saved, Shape};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use serde_json::{json, Map, Value};

/// The module Keras names for these operations.
pub const MODULE: &str = "keras.src.ops.numpy";

/// The elementwise operations convnet reads from `keras.src.ops.numpy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// `keras.ops.add`.
    Add,
    /// `keras.ops.subtract`.
    Subtract,
    /// `keras.ops.multiply`.
    Multiply,
    /// `keras.ops.true_divide` (Python's `/`).
    TrueDivide,
}

const KINDS: [(OpKind, &str); 4] = [
    (OpKind::Add, "Add"),
    (OpKind::Subtract, "Subtract"),
    (OpKind::Multiply, "Multiply"),
    (OpKind::TrueDivide, "TrueDivide"),
];

/// One call of a Keras elementwise operation: with a number (`constant`, at argument
/// position `constant_position`), or on two tensors.
#[derive(Clone, Debug)]
pub struct NumpyOp {
    base: LayerBase,
    /// Which operation.
    pub kind: OpKind,
    /// The number among the arguments and its position (0: `c ∘ x`, 1: `x ∘ c`); None
    /// when both arguments are tensors.
    pub constant: Option<(usize, f64)>,
}

impl NumpyOp {
    /// `x ∘ y` on two tensors that broadcast (Python's `x + y` on Keras tensors).
    pub fn new(kind: OpKind) -> Self {
        NumpyOp {
            base: LayerBase::new(&default_name(Self::class(kind))),
            kind,
            constant: None,
        }
    }

    /// `x ∘ constant` (position 1) or `constant ∘ x` (position 0).
    pub fn with_constant(kind: OpKind, position: usize, constant: f64) -> Self {
        NumpyOp {
            base: LayerBase::new(&default_name(Self::class(kind))),
            kind,
            constant: Some((position.min(1), constant)),
        }
    }

    fn class(kind: OpKind) -> &'static str {
        KINDS
            .iter()
            .find(|(k, _)| *k == kind)
            .expect("every kind is listed")
            .1
    }

    /// The merge computing the same operation on two tensors.
    fn merge(&self) -> Result<Merge> {
        let op = match self.kind {
            OpKind::Add => MergeOp::Add,
            OpKind::Subtract => MergeOp::Subtract,
            OpKind::Multiply => MergeOp::Multiply,
            OpKind::TrueDivide => {
                return Err(Error::unsupported(format!(
                    "operation '{}' (TrueDivide) of two tensors is not supported yet; a tensor divided by a number is",
                    self.name()
                )))
            }
        };
        Ok(Merge::new(op).named(self.name()))
    }

    /// Reads the node Keras writes for an operation: `class_name`, `config` (just the
    /// name) and `inbound_nodes`, whose arguments hold any constant.
    pub fn from_keras(object: &Value) -> Result<Self> {
        let class = object
            .get("class_name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let name = object
            .pointer("/config/name")
            .and_then(Value::as_str)
            .map_or_else(|| default_name(class), str::to_string);
        let kind = KINDS
            .iter()
            .find(|(_, c)| *c == class)
            .map(|(k, _)| *k)
            .ok_or_else(|| Error::UnknownClass {
                layer: name.clone(),
                class: format!("{MODULE}.{class}"),
            })?;
        let field = |message: String| Error::Config {
            layer: name.clone(),
            class: class.into(),
            field: "inbound_nodes".into(),
            message,
        };
        let nodes = object
            .get("inbound_nodes")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let constants: Vec<Option<(usize, f64)>> = nodes
            .iter()
            .map(|node| {
                let args = node.get("args").and_then(Value::as_array);
                let args = args.map(Vec::as_slice).unwrap_or_default();
                if args.len() != 2 {
                    return Err(field(format!("expected 2 arguments, found {}", args.len())));
                }
                let numbers: Vec<(usize, f64)> = args
                    .iter()
                    .enumerate()
                    .filter_map(|(i, a)| a.as_f64().map(|v| (i, v)))
                    .collect();
                match numbers.as_slice() {
                    [] => Ok(None),
                    [one] => Ok(Some(*one)),
                    _ => Err(field(
                        "both arguments are numbers; one must be a tensor".into(),
                    )),
                }
            })
            .collect::<Result<_>>()?;
        if constants.windows(2).any(|w| w[0] != w[1]) {
            return Err(field(
                "its calls use different constants, which convnet does not support".into(),
            ));
        }
        let mut base = LayerBase::new(&name);
        base.auto_named = false;
        Ok(NumpyOp {
            base,
            kind,
            constant: constants.first().copied().flatten(),
        })
    }

    /// `f(x)` for the tensor `x` and the constant.
    fn with(&self, x: f32, (position, c): (usize, f64)) -> f32 {
        let c = c as f32;
        let (a, b) = if position == 0 { (c, x) } else { (x, c) };
        match self.kind {
            OpKind::Add => a + b,
            OpKind::Subtract => a - b,
            OpKind::Multiply => a * b,
            OpKind::TrueDivide => a / b,
        }
    }

    /// d f / d x at `x`.
    fn slope(&self, x: f32, (position, c): (usize, f64)) -> f32 {
        let c = c as f32;
        match (self.kind, position) {
            (OpKind::Add, _) | (OpKind::Subtract, 1) => 1.0,
            (OpKind::Subtract, _) => -1.0,
            (OpKind::Multiply, _) => c,
            (OpKind::TrueDivide, 1) => 1.0 / c,
            (OpKind::TrueDivide, _) => -c / (x * x),
        }
    }
}

impl Layer for NumpyOp {
    fn class_name(&self) -> &'static str {
        Self::class(self.kind)
    }

    fn base(&self) -> &LayerBase {
        &self.base
    }

    fn base_mut(&mut self) -> &mut LayerBase {
        &mut self.base
    }

    fn keras_module(&self) -> &'static str {
        MODULE
    }

    fn registered_name(&self) -> Option<&'static str> {
        Some(self.class_name())
    }

    fn is_operation(&self) -> bool {
        true
    }

    fn config_fields(&self) -> Map<String, Value> {
        Map::new()
    }

    /// Operations keep only their name.
    fn config(&self) -> Value {
        json!({"name": self.name()})
    }

    fn call_args(&self, tensors: Vec<Value>) -> Vec<Value> {
        match self.constant {
            Some((position, c)) => {
                let mut args = tensors;
                args.insert(position.min(args.len()), json!(c));
                args
            }
            None => tensors,
        }
    }

    fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        match self.constant {
            Some(_) => {
                expect_inputs(self, inputs, 1)?;
                Ok(inputs[0].clone())
            }
            None => {
                expect_inputs(self, inputs, 2)?;
                self.merge()?.output_shape(inputs)
            }
        }
    }

    fn apply(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        infer(self, inputs)?;
        match self.constant {
            Some(constant) => {
                let mut y = inputs[0].clone();
                y.map_inplace(|x| self.with(x, constant));
                Ok(y)
            }
            None => self.merge()?.apply(inputs),
        }
    }

    /// An operation on two tensors runs as its merge does, in place where that can.
    fn apply_fused_in_place(
        &self,
        acc: &mut Tensor,
        other: &Tensor,
        fusion: &crate::layers::Fusion,
    ) -> Option<Result<()>> {
        match self.constant {
            Some(_) => None,
            None => self.merge().ok()?.apply_fused_in_place(acc, other, fusion),
        }
    }

    fn backward_impl(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        saved: &Saved,
        dy: &Tensor,
        dweights: &mut [Tensor],
    ) -> Result<Vec<Tensor>> {
        match self.constant {
            Some(constant) => {
                let mut dx = dy.clone();
                dx.data_mut()
                    .iter_mut()
                    .zip(inputs[0].data())
                    .for_each(|(d, &x)| *d *= self.slope(x, constant));
                Ok(vec![dx])
            }
            None => self
                .merge()?
                .backward_impl(inputs, output, saved, dy, dweights),
        }
    }
}
